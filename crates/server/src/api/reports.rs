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
    let to = params.to.clone();
    let from = match (&params.from, &to) {
        (Some(f), _) => Some(f.clone()),
        (None, Some(t)) => {
            let t = crate::api::parse_time_param("to", t)?;
            Some(Timestamp::from_utc_ms(t - 14 * 86_400_000).to_rfc3339_utc())
        }
        (None, None) => Some(Timestamp::from_utc_ms(now_ms() - 14 * 86_400_000).to_rfc3339_utc()),
    };
    let (from_ms, to_ms) = resolve_range(from.as_deref(), to.as_deref())?;
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
