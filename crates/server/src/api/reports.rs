//! Reports: the consensus summary of a period. Computed by the domain's pure functions over
//! the CGM readings of the period, in the person's time zone.

use axum::extract::State;
use axum::Json;
use glucosync_domain::accounts::Scope;
use glucosync_domain::analytics::{self, GlucosePoint};
use glucosync_domain::readings::ReadingKind;
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
pub struct PeriodParams {
    /// Start, inclusive (RFC 3339). Default: 14 days before `to`.
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    pub to: Option<String>,
}

/// The summary of a period. Glucose in mg/dL, bands in percent of readings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryReport {
    pub from: String,
    pub to: String,
    pub time_zone: String,
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
    /// Mean of daily differences, mg/dL.
    pub modd: Option<f64>,
    /// Continuous overall net glycaemic action over 1 hour, mg/dL.
    pub conga_1h: Option<f64>,
    /// Mean amplitude of glycaemic excursions (moving-average algorithm), mg/dL.
    pub mage: Option<f64>,
}

/// Who may read whose reports. Today: the person themself; shares (followers, clinicians)
/// extend this one check.
fn authorize_read(caller: &Caller, subject: UserId) -> Result<(), ApiError> {
    caller.require(Scope::Read)?;
    if caller.user_id == subject {
        Ok(())
    } else {
        Err(ApiError::NotFound("person"))
    }
}

async fn cgm_points(
    state: &AppState,
    user_id: UserId,
    from_ms: i64,
    to_ms: i64,
) -> ApiResult<Vec<GlucosePoint>> {
    let mut points = Vec::new();
    let mut query = RangeQuery {
        from_ms,
        to_ms,
        after: None,
        limit: 10_000,
        descending: false,
    };
    loop {
        let page = state.store.list_readings(user_id, &query).await?;
        let Some(last) = page.last() else { break };
        query.after = Some(Cursor {
            time_ms: last.time.utc_ms,
            key: last.id.to_string(),
        });
        let full = page.len() == query.limit;
        points.extend(
            page.iter()
                .filter(|r| r.kind == ReadingKind::Cgm)
                .map(|r| GlucosePoint {
                    utc_ms: r.time.utc_ms,
                    mgdl: r.value.mgdl(),
                }),
        );
        if !full {
            break;
        }
    }
    Ok(points)
}

/// The consensus summary of a period (default: the last 14 days), in the person's time zone.
#[utoipa::path(get, path = "/reports/summary", tag = "reports", params(PeriodParams),
    responses((status = 200, body = SummaryReport), (status = 422, body = crate::error::Problem)))]
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<PeriodParams>,
) -> ApiResult<Json<SummaryReport>> {
    let subject = caller.user_id;
    authorize_read(&caller, subject)?;
    let user = state
        .store
        .user_by_id(subject)
        .await?
        .ok_or(ApiError::NotFound("person"))?;
    let tz: chrono_tz::Tz = user.settings.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let (from_ms, to_ms) = period(params.from.as_deref(), params.to.as_deref())?;
    let points = cgm_points(&state, subject, from_ms, to_ms).await?;
    let s = analytics::summary(&points, &tz);
    let r1 = |v: f64| (v * 10.0).round() / 10.0;
    let r2 = |v: f64| (v * 100.0).round() / 100.0;
    Ok(Json(SummaryReport {
        from: Timestamp::from_utc_ms(from_ms).to_rfc3339_utc(),
        to: Timestamp::from_utc_ms(to_ms).to_rfc3339_utc(),
        time_zone: tz.name().to_owned(),
        readings: points.len(),
        mean: s.as_ref().map(|s| r1(s.mean)),
        sd: s.as_ref().and_then(|s| s.sd).map(r1),
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
        modd: s.as_ref().and_then(|s| s.modd).map(r1),
        conga_1h: s.as_ref().and_then(|s| s.conga_1h).map(r1),
        mage: s.as_ref().and_then(|s| s.mage).map(r1),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AgpParams {
    /// Start, inclusive (RFC 3339). Default: 14 days before `to`.
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    pub to: Option<String>,
    /// Circular moving average of each percentile curve over 2k + 1 five-minute bins,
    /// k = 0 (raw) to 12. Default 3 (35 minutes).
    pub smoothing: Option<usize>,
    /// `mg/dL` or `mmol/L`; default: the person's display unit.
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
    let subject = caller.user_id;
    authorize_read(&caller, subject)?;
    let user = state
        .store
        .user_by_id(subject)
        .await?
        .ok_or(ApiError::NotFound("person"))?;
    let tz: chrono_tz::Tz = user.settings.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let unit = match params.unit.as_deref() {
        Some(u) => crate::api::parse_unit(Some(u))?,
        None => user.settings.display_unit,
    };
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

/// `from`/`to` with the reports' default of the 14 days before `to`.
fn period(from: Option<&str>, to: Option<&str>) -> ApiResult<(i64, i64)> {
    let default_from = match to {
        Some(t) => crate::api::parse_time_param("to", t)? - 14 * 86_400_000,
        None => now_ms() - 14 * 86_400_000,
    };
    let from = match from {
        Some(f) => f.to_owned(),
        None => Timestamp::from_utc_ms(default_from).to_rfc3339_utc(),
    };
    resolve_range(Some(&from), to)
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
    let subject = caller.user_id;
    authorize_read(&caller, subject)?;
    let user = state
        .store
        .user_by_id(subject)
        .await?
        .ok_or(ApiError::NotFound("person"))?;
    let unit = match params.unit.as_deref() {
        Some(u) => crate::api::parse_unit(Some(u))?,
        None => user.settings.display_unit,
    };
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
    /// Start, inclusive (RFC 3339). Default: 14 days before `to`.
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    pub to: Option<String>,
    /// `mg/dL` or `mmol/L`; default: the person's display unit.
    pub unit: Option<String>,
}
