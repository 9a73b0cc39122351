//! Reports: the consensus summary of a period. Computed by the domain's pure functions over
//! the CGM readings of the period, in the person's time zone.

use axum::extract::State;
use axum::Json;
use glucosync_domain::accounts::Scope;
use glucosync_domain::analytics::{self, GlucosePoint};
use glucosync_domain::statistics::{self, Stats};
use glucosync_domain::treatments::Treatment;
use glucosync_domain::Timestamp;
use glucosync_store::{Cursor, RangeQuery, UserId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::resolve_range;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::ApiQuery;
use crate::state::{now_ms, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SummaryParams {
    /// Whose data: a person who shares with the caller (default: the caller).
    pub person: Option<i64>,
    /// Start, inclusive (RFC 3339). Default: 14 days before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `mg/dL` (default, whatever the display unit: the summary's contract) or `mmol/L`.
    #[param(pattern = r"^(mg/dL|mmol/L)$")]
    pub unit: Option<String>,
}

/// The summary of a period. Glucose values (`mean`, `sd`, `modd`, `conga_1h`, `mage`) in
/// `unit`, bands in percent of readings; the risk indices are defined on mg/dL and unitless.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryReport {
    pub from: String,
    pub to: String,
    pub time_zone: String,
    pub unit: glucosync_domain::GlucoseUnit,
    /// CGM readings in the period.
    pub readings: usize,
    pub mean: Option<f64>,
    pub sd: Option<f64>,
    /// Coefficient of variation, % (target ≤ 36).
    pub cv: Option<f64>,
    /// True when CV > 36 % (unstable glucose).
    pub cv_above_target: Option<bool>,
    /// Glucose Management Indicator, %.
    pub gmi: Option<f64>,
    /// GMI in mmol/mol.
    pub gmi_mmol_mol: Option<f64>,
    /// % of readings 70–180 mg/dL.
    pub tir: Option<f64>,
    /// % < 54.
    pub tbr_54: Option<f64>,
    /// % < 70 (both hypoglycaemia levels).
    pub tbr_70: Option<f64>,
    /// % > 180.
    pub tar_180: Option<f64>,
    /// % > 250.
    pub tar_250: Option<f64>,
    /// Glycemia Risk Index, 0–100.
    pub gri: Option<f64>,
    pub gri_hypo: Option<f64>,
    pub gri_hyper: Option<f64>,
    /// A (best) to E.
    pub gri_zone: Option<String>,
    pub lbgi: Option<f64>,
    pub hbgi: Option<f64>,
    pub j_index: Option<f64>,
    /// Average daily risk range over the period's local days.
    pub adrr: Option<f64>,
    /// Mean of daily differences.
    pub modd: Option<f64>,
    /// Continuous overall net glycaemic action over 1 hour.
    pub conga_1h: Option<f64>,
    /// Mean amplitude of glycaemic excursions (moving-average algorithm).
    pub mage: Option<f64>,
    /// Readings a 5-minute sensor would have delivered over the period.
    pub expected_readings: usize,
    /// Readings present as a share of those expected (CGM active time), %.
    pub active_percent: f64,
    pub days_with_data: usize,
    /// The consensus rule: at least 14 days with at least 70 % of the data.
    pub sufficient: bool,
    pub insulin_bolus_per_day: f64,
    /// Basal injections plus pump basal rates.
    pub insulin_basal_per_day: f64,
    pub insulin_total_per_day: f64,
    pub carbs_per_day: f64,
}

/// Whose report it is, and in which time zone and unit.
pub(crate) struct ReportContext {
    pub subject: UserId,
    pub tz: chrono_tz::Tz,
    pub unit: glucosync_domain::GlucoseUnit,
    /// The person's target range, mg/dL.
    pub target: (f64, f64),
}

/// Authorizes the caller and reads the person's settings: their time zone, and the unit asked
/// for or else their display unit.
pub(crate) async fn context(
    state: &AppState,
    caller: &Caller,
    what: &'static str,
    person: Option<i64>,
    unit: Option<&str>,
) -> ApiResult<ReportContext> {
    let subject = readable_subject(state, caller, person, Access::Reports, what).await?;
    let user = state
        .store
        .user_by_id(subject)
        .await?
        .ok_or(ApiError::NotFound("person"))?;
    Ok(ReportContext {
        subject,
        tz: user.settings.time_zone.parse().unwrap_or(chrono_tz::UTC),
        target: (
            user.settings.target_low_mgdl,
            user.settings.target_high_mgdl,
        ),
        unit: match unit {
            Some(u) => crate::api::parse_unit(Some(u))?,
            None => user.settings.display_unit,
        },
    })
}

/// The person whose data the caller asks for (`person`, by default the caller), once the
/// caller may read it (see [`authorize_read`]).
pub(crate) async fn readable_subject(
    state: &AppState,
    caller: &Caller,
    person: Option<i64>,
    access: Access,
    what: &'static str,
) -> Result<UserId, ApiError> {
    let subject = person.unwrap_or(caller.user_id);
    authorize_read(state, caller, subject, access, what).await?;
    Ok(subject)
}

/// What a follower wants to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reports: caregivers and clinicians.
    Reports,
    /// Live data (readings, forecasts): caregivers only.
    Live,
}

/// Who may read whose data: the person themself, and followers with an active share (any
/// role for reports, caregivers for live data). Anyone else gets 404, as if the person did
/// not exist. A follower's read is written to the person's access log (as `what`) before
/// any data is returned.
pub(crate) async fn authorize_read(
    state: &AppState,
    caller: &Caller,
    subject: UserId,
    access: Access,
    what: &'static str,
) -> Result<(), ApiError> {
    caller.require(Scope::Read)?;
    if caller.user_id == subject {
        return Ok(());
    }
    match state.store.active_share(subject, caller.user_id).await? {
        Some(share)
            if access == Access::Reports || share.role == glucosync_store::ShareRole::Caregiver =>
        {
            state
                .store
                .record_access(subject, caller.user_id, what, crate::state::now_ms())
                .await?;
            Ok(())
        }
        _ => Err(ApiError::NotFound("person")),
    }
}

pub(crate) async fn cgm_points(
    state: &AppState,
    user_id: UserId,
    from_ms: i64,
    to_ms: i64,
) -> ApiResult<Vec<GlucosePoint>> {
    Ok(state.store.cgm_values(user_id, from_ms, to_ms).await?)
}

/// The consensus summary of a period (default: the last 14 days), in the person's time zone.
#[utoipa::path(get, path = "/reports/summary", tag = "reports", params(SummaryParams),
    responses((status = 200, body = SummaryReport), (status = 422, body = crate::error::Problem)))]
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<SummaryParams>,
) -> ApiResult<Json<SummaryReport>> {
    let unit = params.unit.as_deref().unwrap_or("mg/dL");
    let ReportContext {
        subject, tz, unit, ..
    } = context(
        &state,
        &caller,
        "reports.summary",
        params.person,
        Some(unit),
    )
    .await?;
    let (from_ms, to_ms) = period(params.from.as_deref(), params.to.as_deref())?;
    let points = cgm_points(&state, subject, from_ms, to_ms).await?;
    let s = analytics::summary(&points, &tz);
    let coverage = statistics::sufficiency(&points, from_ms, to_ms, statistics_interval_ms(), &tz);
    let totals = statistics::treatment_totals(
        &period_treatments(&state, subject, from_ms, to_ms).await?,
        from_ms,
        to_ms,
    );
    let r1 = |v: f64| (v * 10.0).round() / 10.0;
    let r2 = |v: f64| (v * 100.0).round() / 100.0;
    let show = |mgdl: f64| glucosync_domain::GlucoseMgdl::from_stored(mgdl).display(unit);
    Ok(Json(SummaryReport {
        from: Timestamp::from_utc_ms(from_ms).to_rfc3339_utc(),
        to: Timestamp::from_utc_ms(to_ms).to_rfc3339_utc(),
        time_zone: tz.name().to_owned(),
        unit,
        readings: points.len(),
        mean: s.as_ref().map(|s| show(s.mean)),
        sd: s.as_ref().and_then(|s| s.sd).map(show),
        cv: s.as_ref().and_then(|s| s.cv).map(r1),
        cv_above_target: s.as_ref().and_then(|s| s.cv).map(|cv| cv > 36.0),
        gmi: s.as_ref().map(|s| r1(s.gmi_percent)),
        gmi_mmol_mol: s.as_ref().map(|s| s.gmi_mmol_mol.round()),
        tir: s.as_ref().map(|s| r1(s.bands.in_range)),
        tbr_54: s.as_ref().map(|s| r1(s.bands.very_low)),
        tbr_70: s.as_ref().map(|s| r1(s.bands.below_70())),
        tar_180: s.as_ref().map(|s| r1(s.bands.above_180())),
        tar_250: s.as_ref().map(|s| r1(s.bands.very_high)),
        gri: s.as_ref().map(|s| r1(s.gri.value)),
        gri_hypo: s.as_ref().map(|s| r1(s.gri.hypo)),
        gri_hyper: s.as_ref().map(|s| r1(s.gri.hyper)),
        gri_zone: s.as_ref().map(|s| s.gri.zone.to_string()),
        lbgi: s.as_ref().map(|s| r2(s.lbgi)),
        hbgi: s.as_ref().map(|s| r2(s.hbgi)),
        j_index: s.as_ref().and_then(|s| s.j_index).map(r1),
        adrr: s.as_ref().and_then(|s| s.adrr).map(r1),
        modd: s.as_ref().and_then(|s| s.modd).map(show),
        conga_1h: s.as_ref().and_then(|s| s.conga_1h).map(show),
        mage: s.as_ref().and_then(|s| s.mage).map(show),
        expected_readings: coverage.expected,
        active_percent: r1(coverage.active_percent),
        days_with_data: coverage.days_with_data,
        sufficient: coverage.sufficient,
        insulin_bolus_per_day: r2(totals.per_day(totals.bolus_units)),
        insulin_basal_per_day: r2(totals.per_day(totals.basal_units)),
        insulin_total_per_day: r2(totals.per_day(totals.bolus_units + totals.basal_units)),
        carbs_per_day: r1(totals.per_day(totals.carbs_grams)),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AgpParams {
    /// Whose data: a person who shares with the caller (default: the caller).
    pub person: Option<i64>,
    /// Start, inclusive (RFC 3339). Default: 14 days before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Circular moving average of each percentile curve over 2k + 1 five-minute bins,
    /// k = 0 (raw) to 12. Default 3 (35 minutes).
    #[param(maximum = 12)]
    pub smoothing: Option<usize>,
    /// `mg/dL` or `mmol/L`; default: the person's display unit.
    #[param(pattern = r"^(mg/dL|mmol/L)$")]
    pub unit: Option<String>,
}

/// One 5-minute bin of the day.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgpBinOut {
    /// Local time of day the bin starts, `HH:MM`.
    pub time: String,
    /// Readings in the bin.
    pub count: usize,
    pub p5: Option<f64>,
    pub p25: Option<f64>,
    pub p50: Option<f64>,
    pub p75: Option<f64>,
    pub p95: Option<f64>,
}

/// One local day's readings: parallel arrays of minute of the day and value.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayProfile {
    pub date: String,
    pub minutes: Vec<u32>,
    pub values: Vec<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgpReport {
    pub from: String,
    pub to: String,
    pub time_zone: String,
    pub unit: glucosync_domain::GlucoseUnit,
    pub smoothing: usize,
    /// 288 bins from 00:00 to 23:55.
    pub bins: Vec<AgpBinOut>,
    /// The daily overlay: one curve per local day.
    pub days: Vec<DayProfile>,
}

/// The Ambulatory Glucose Profile of a period (default: the last 14 days) in the person's time
/// zone: 5th–95th percentiles per 5-minute bin, and each day's curve.
#[utoipa::path(get, path = "/reports/agp", tag = "reports", params(AgpParams),
    responses((status = 200, body = AgpReport), (status = 422, body = crate::error::Problem)))]
pub async fn agp(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AgpParams>,
) -> ApiResult<Json<AgpReport>> {
    use chrono::{TimeZone, Timelike};
    let ReportContext {
        subject, tz, unit, ..
    } = context(
        &state,
        &caller,
        "reports.agp",
        params.person,
        params.unit.as_deref(),
    )
    .await?;
    let smoothing = params.smoothing.unwrap_or(3);
    if smoothing > 12 {
        return Err(ApiError::validation(
            glucosync_domain::ValidationError::new("smoothing", "must be 0–12 bins"),
        ));
    }
    let (from_ms, to_ms) = period(params.from.as_deref(), params.to.as_deref())?;
    let points = cgm_points(&state, subject, from_ms, to_ms).await?;
    let show = |mgdl: f64| glucosync_domain::GlucoseMgdl::from_stored(mgdl).display(unit);
    let bins = glucosync_domain::agp::agp(&points, &tz, smoothing)
        .into_iter()
        .map(|b| {
            let p = b.percentiles.map(|p| p.map(show));
            AgpBinOut {
                time: format!("{:02}:{:02}", b.minute / 60, b.minute % 60),
                count: b.count,
                p5: p.map(|p| p[0]),
                p25: p.map(|p| p[1]),
                p50: p.map(|p| p[2]),
                p75: p.map(|p| p[3]),
                p95: p.map(|p| p[4]),
            }
        })
        .collect();
    let days = glucosync_domain::agp::daily_profiles(&points, &tz)
        .into_iter()
        .map(|(date, pts)| DayProfile {
            date: date.to_string(),
            minutes: pts
                .iter()
                .filter_map(|p| tz.timestamp_millis_opt(p.utc_ms).single())
                .map(|t| t.hour() * 60 + t.minute())
                .collect(),
            values: pts.iter().map(|p| show(p.mgdl)).collect(),
        })
        .collect();
    Ok(Json(AgpReport {
        from: Timestamp::from_utc_ms(from_ms).to_rfc3339_utc(),
        to: Timestamp::from_utc_ms(to_ms).to_rfc3339_utc(),
        time_zone: tz.name().to_owned(),
        unit,
        smoothing,
        bins,
        days,
    }))
}

/// `from`/`to` with the reports' default: the 14 days before `to` (default now).
fn period(from: Option<&str>, to: Option<&str>) -> ApiResult<(i64, i64)> {
    let to_ms = match to {
        Some(t) => crate::api::parse_time_param("to", t)?,
        None => now_ms(),
    };
    let from = match from {
        Some(f) => f.to_owned(),
        None => Timestamp::from_utc_ms(to_ms - 14 * 86_400_000).to_rfc3339_utc(),
    };
    resolve_range(
        Some(&from),
        Some(&Timestamp::from_utc_ms(to_ms).to_rfc3339_utc()),
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    pub kind: glucosync_domain::events::EventKind,
    pub start: String,
    pub end: String,
    pub duration_minutes: f64,
    /// Nadir (hypoglycaemia) or peak (hyperglycaemia), in `unit`.
    pub extreme: f64,
    /// True when the data ended (or a gap over 45 minutes began) before recovery.
    pub open: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsReport {
    pub from: String,
    pub to: String,
    pub unit: glucosync_domain::GlucoseUnit,
    pub events: Vec<EventOut>,
}

/// Glycaemic events of a period (default: the last 14 days) by the consensus definitions:
/// level 1 and 2 hypo- and hyperglycaemia and extended hypoglycaemia.
#[utoipa::path(get, path = "/reports/events", tag = "reports", params(PeriodUnitParams),
    responses((status = 200, body = EventsReport), (status = 422, body = crate::error::Problem)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<PeriodUnitParams>,
) -> ApiResult<Json<EventsReport>> {
    let ReportContext { subject, unit, .. } = context(
        &state,
        &caller,
        "reports.events",
        params.person,
        params.unit.as_deref(),
    )
    .await?;
    let (from_ms, to_ms) = period(params.from.as_deref(), params.to.as_deref())?;
    let points = cgm_points(&state, subject, from_ms, to_ms).await?;
    let events = glucosync_domain::events::events(&points)
        .into_iter()
        .map(|e| EventOut {
            kind: e.kind,
            start: Timestamp::from_utc_ms(e.start_ms).to_rfc3339_utc(),
            end: Timestamp::from_utc_ms(e.end_ms).to_rfc3339_utc(),
            duration_minutes: e.duration_min(),
            extreme: glucosync_domain::GlucoseMgdl::from_stored(e.extreme_mgdl).display(unit),
            open: e.open,
        })
        .collect();
    Ok(Json(EventsReport {
        from: Timestamp::from_utc_ms(from_ms).to_rfc3339_utc(),
        to: Timestamp::from_utc_ms(to_ms).to_rfc3339_utc(),
        unit,
        events,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PeriodUnitParams {
    /// Whose data: a person who shares with the caller (default: the caller).
    pub person: Option<i64>,
    /// Start, inclusive (RFC 3339). Default: 14 days before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `mg/dL` or `mmol/L`; default: the person's display unit.
    #[param(pattern = r"^(mg/dL|mmol/L)$")]
    pub unit: Option<String>,
}

/// The sensor interval the sufficiency figures assume (Dexcom, Libre 2/3, Medtronic: 5 min).
fn statistics_interval_ms() -> i64 {
    glucosync_domain::events::NOMINAL_INTERVAL_MS
}

/// Treatments that count for a period: those in it, and pump basal rates that began up to a
/// day before it and may still run.
pub(crate) async fn period_treatments(
    state: &AppState,
    user_id: UserId,
    from_ms: i64,
    to_ms: i64,
) -> ApiResult<Vec<Treatment>> {
    let mut out = Vec::new();
    let mut query = RangeQuery {
        from_ms: from_ms - 86_400_000,
        to_ms,
        after: None,
        limit: 10_000,
        descending: false,
    };
    loop {
        let page = state.store.list_treatments(user_id, &query).await?;
        let Some(last) = page.last() else { break };
        query.after = Some(Cursor {
            time_ms: last.time.utc_ms,
            key: last.id.clone(),
        });
        let full = page.len() == query.limit;
        out.extend(page);
        if !full {
            break;
        }
    }
    Ok(out)
}

/// Descriptive statistics, in `unit`; bands in percent.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsOut {
    pub count: usize,
    pub mean: f64,
    pub sd: Option<f64>,
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
    /// % < 54, 54–69, 70–180, 181–250, > 250.
    pub below_54: f64,
    pub from_54_to_69: f64,
    pub from_70_to_180: f64,
    pub from_181_to_250: f64,
    pub above_250: f64,
}

fn stats_out(s: &Stats, unit: glucosync_domain::GlucoseUnit) -> StatsOut {
    let g = |v: f64| glucosync_domain::GlucoseMgdl::from_stored(v).display(unit);
    let r1 = |v: f64| (v * 10.0).round() / 10.0;
    StatsOut {
        count: s.count,
        mean: g(s.mean),
        sd: s.sd.map(g),
        min: g(s.min),
        q1: g(s.q1),
        median: g(s.median),
        q3: g(s.q3),
        max: g(s.max),
        below_54: r1(s.bands.very_low),
        from_54_to_69: r1(s.bands.low),
        from_70_to_180: r1(s.bands.in_range),
        from_181_to_250: r1(s.bands.high),
        above_250: r1(s.bands.very_high),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayOut {
    /// Local calendar date.
    pub date: String,
    /// 24, or 23 / 25 on the days the clocks change.
    pub hours: f64,
    #[serde(flatten)]
    pub stats: StatsOut,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DailyReport {
    pub time_zone: String,
    pub unit: glucosync_domain::GlucoseUnit,
    pub days: Vec<DayOut>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DailyParams {
    /// Whose data: a person who shares with the caller (default: the caller).
    pub person: Option<i64>,
    /// Start, inclusive (RFC 3339). Default: 14 days before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `mg/dL` or `mmol/L`; default: the person's display unit.
    #[param(pattern = r"^(mg/dL|mmol/L)$")]
    pub unit: Option<String>,
    /// `json` (default) or `csv` (a download, one row per day).
    #[param(pattern = r"^(json|csv)$")]
    pub format: Option<String>,
}

/// Statistics per local calendar day (DST days have 23 or 25 hours), as JSON or a CSV download.
#[utoipa::path(get, path = "/reports/daily", tag = "reports", params(DailyParams),
    responses((status = 200, body = DailyReport, description = "JSON, or text/csv with format=csv"),
              (status = 422, body = crate::error::Problem)))]
pub async fn daily(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<DailyParams>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let ReportContext {
        subject, tz, unit, ..
    } = context(
        &state,
        &caller,
        "reports.daily",
        params.person,
        params.unit.as_deref(),
    )
    .await?;
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::validation(
                glucosync_domain::ValidationError::new("format", "must be json or csv"),
            ))
        }
    };
    let (from_ms, to_ms) = period(params.from.as_deref(), params.to.as_deref())?;
    let points = cgm_points(&state, subject, from_ms, to_ms).await?;
    let days: Vec<DayOut> = statistics::daily(&points, &tz)
        .into_iter()
        .map(|d| DayOut {
            date: d.date.to_string(),
            hours: d.hours,
            stats: stats_out(&d.stats, unit),
        })
        .collect();
    if !csv {
        return Ok(Json(DailyReport {
            time_zone: tz.name().to_owned(),
            unit,
            days,
        })
        .into_response());
    }
    let u = unit.as_str();
    let mut body = format!(
        "date,hours,count,mean_{u},sd_{u},min_{u},q1_{u},median_{u},q3_{u},max_{u},pct_below_54,pct_54_69,pct_70_180,pct_181_250,pct_above_250\n"
    )
    .replace("mg/dL", "mgdl")
    .replace("mmol/L", "mmoll");
    for d in &days {
        let s = &d.stats;
        body.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            d.date,
            d.hours,
            s.count,
            s.mean,
            s.sd.map(|v| v.to_string()).unwrap_or_default(),
            s.min,
            s.q1,
            s.median,
            s.q3,
            s.max,
            s.below_54,
            s.from_54_to_69,
            s.from_70_to_180,
            s.from_181_to_250,
            s.above_250
        ));
    }
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"glucosync-daily.csv\"".to_owned(),
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HourOut {
    /// Local hour of day, 0–23.
    pub hour: u32,
    pub stats: Option<StatsOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HourlyReport {
    pub time_zone: String,
    pub unit: glucosync_domain::GlucoseUnit,
    pub hours: Vec<HourOut>,
}

/// Statistics per local hour of day over a period (default: the last 14 days).
#[utoipa::path(get, path = "/reports/hourly", tag = "reports", params(PeriodUnitParams),
    responses((status = 200, body = HourlyReport), (status = 422, body = crate::error::Problem)))]
pub async fn hourly(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<PeriodUnitParams>,
) -> ApiResult<Json<HourlyReport>> {
    let ReportContext {
        subject, tz, unit, ..
    } = context(
        &state,
        &caller,
        "reports.hourly",
        params.person,
        params.unit.as_deref(),
    )
    .await?;
    let (from_ms, to_ms) = period(params.from.as_deref(), params.to.as_deref())?;
    let points = cgm_points(&state, subject, from_ms, to_ms).await?;
    let hours = statistics::hourly(&points, &tz)
        .into_iter()
        .enumerate()
        .map(|(h, s)| HourOut {
            hour: h as u32,
            stats: s.map(|s| stats_out(&s, unit)),
        })
        .collect();
    Ok(Json(HourlyReport {
        time_zone: tz.name().to_owned(),
        unit,
        hours,
    }))
}
