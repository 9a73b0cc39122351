//! Insights: the patterns the domain finds in a person's last weeks
//! (`glucosync_domain::insights`), each with its evidence. Always available: no external
//! service is involved.

use axum::extract::State;
use axum::Json;
use glucosync_domain::insights::{self, PatternKind, Severity};
use glucosync_domain::{GlucoseMgdl, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::reports::{cgm_points, context, period_treatments, ReportContext};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::json::ApiQuery;
use crate::state::{now_ms, AppState};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PatternParams {
    /// Whose data: a person who shares with the caller (default: the caller).
    pub person: Option<i64>,
    /// The end of the weeks looked at (RFC 3339); default: now.
    pub to: Option<String>,
    /// `mg/dL` or `mmol/L`, for the text and the values; default: the person's display unit.
    pub unit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PatternsReport {
    /// The end of the period looked at; the time-of-day rules look at its last 14 days, the
    /// weekday rule at 28.
    pub to: String,
    pub time_zone: String,
    pub unit: glucosync_domain::GlucoseUnit,
    /// The attention-worthy first.
    pub patterns: Vec<PatternOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PatternOut {
    pub kind: PatternKind,
    pub severity: Severity,
    pub title: String,
    pub detail: String,
    pub evidence: Vec<EvidenceOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceOut {
    /// The person's local date.
    pub date: String,
    pub from: String,
    pub to: String,
    pub note: String,
    pub readings: Vec<EvidenceReadingOut>,
    pub treatment_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceReadingOut {
    pub time: String,
    /// In the report's unit.
    pub value: f64,
}

/// Patterns in the last weeks of a person's data: recurring lows or highs by time of day and
/// weekday, rises after meals, night lows after evening insulin, overnight drift, sensor gaps
/// and the week-over-week comparison. Deterministic rules (docs/insights.md); each pattern
/// carries the days and readings that show it. Observations to discuss with a care team,
/// never dosing advice.
#[utoipa::path(get, path = "/insights/patterns", tag = "insights", params(PatternParams),
    responses((status = 200, body = PatternsReport), (status = 404, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn patterns(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<PatternParams>,
) -> ApiResult<Json<PatternsReport>> {
    let ReportContext {
        subject,
        tz,
        unit,
        target: (low_mgdl, high_mgdl),
    } = context(
        &state,
        &caller,
        "insights.patterns",
        params.person,
        params.unit.as_deref(),
    )
    .await?;
    let to_ms = match params.to.as_deref() {
        Some(t) => crate::api::parse_time_param("to", t)?,
        None => now_ms(),
    };
    let from_ms = to_ms - insights::WEEKDAY_WINDOW_DAYS * DAY_MS;
    let points = cgm_points(&state, subject, from_ms, to_ms).await?;
    let treatments = period_treatments(&state, subject, from_ms, to_ms).await?;
    let found = insights::patterns(&insights::Input {
        points: &points,
        treatments: &treatments,
        tz: &tz,
        now_ms: to_ms,
        low_mgdl,
        high_mgdl,
        unit,
    });
    let value = |mgdl: f64| GlucoseMgdl::from_stored(mgdl).display(unit);
    Ok(Json(PatternsReport {
        to: Timestamp::from_utc_ms(to_ms).to_rfc3339_utc(),
        time_zone: tz.name().to_owned(),
        unit,
        patterns: found
            .into_iter()
            .map(|p| PatternOut {
                kind: p.kind,
                severity: p.severity,
                title: p.title,
                detail: p.detail,
                evidence: p
                    .evidence
                    .into_iter()
                    .map(|e| EvidenceOut {
                        date: e.date,
                        from: e.from,
                        to: e.to,
                        note: e.note,
                        readings: e
                            .readings
                            .iter()
                            .map(|r| EvidenceReadingOut {
                                time: Timestamp::from_utc_ms(r.time).to_rfc3339_utc(),
                                value: value(r.mgdl),
                            })
                            .collect(),
                        treatment_ids: e.treatment_ids,
                    })
                    .collect(),
            })
            .collect(),
    }))
}
