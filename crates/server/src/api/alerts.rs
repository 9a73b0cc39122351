//! A person's alerts: the open ones and the last day's, and acknowledging or snoozing one.
//! The person and their caregivers may do both; every device of theirs hears of it on the
//! live streams (`"type": "alert"`, reason `acknowledged` / `snoozed`).

use axum::extract::State;
use axum::Json;
use glucosync_domain::alerts::AlertKind;
use glucosync_domain::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::alerting::AlertOut;
use crate::api::forecast::PersonParams;
use crate::api::reports::{readable_subject, Access};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    /// Open alerts first (newest first), then those resolved in the last 24 hours.
    pub alerts: Vec<AlertOut>,
}

/// The person's alerts (default: the caller's own; `person` for someone who shares with the
/// caller as a caregiver).
#[utoipa::path(get, path = "/alerts", tag = "alerts", params(PersonParams),
    responses((status = 200, body = AlertList), (status = 404, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<PersonParams>,
) -> ApiResult<Json<AlertList>> {
    let subject = readable_subject(&state, &caller, params.person, Access::Live, "alerts").await?;
    let record = state.store.alert_record(subject).await?;
    let mut alerts: Vec<_> = record.book.alerts.iter().collect();
    alerts.sort_by_key(|a| (!a.is_open(), std::cmp::Reverse(a.raised_ms)));
    Ok(Json(AlertList {
        alerts: alerts
            .into_iter()
            .map(|a| AlertOut::of(subject, a))
            .collect(),
    }))
}

/// One notification of the caller's alerts and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    pub created_at: String,
    /// Who was told (the caller, or a caregiver).
    pub recipient_id: i64,
    /// `push` or `email`.
    pub channel: String,
    /// `pending`, `sent`, `failed` or `expired` (the device's subscription is gone).
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub done_at: Option<String>,
    /// What was sent: the alert's kind, `reason` and the text shown.
    pub message: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^-?[0-9]{1,18}\.-?[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Entries per page, 1–1000. Default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// The delivery log: every notification of the caller's alerts (to them and to their
/// caregivers), newest first, with its outcome.
#[utoipa::path(get, path = "/alerts/deliveries", tag = "alerts", params(DeliveryParams),
    responses((status = 200, body = DeliveryPage), (status = 422, body = crate::error::Problem)))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> ApiResult<Json<DeliveryPage>> {
    caller.require(glucosync_domain::accounts::Scope::Read)?;
    let (limit, before) = crate::api::log_page(params.limit, params.cursor.as_deref())?;
    let entries = state
        .store
        .deliveries_of(caller.user_id, before, limit)
        .await?;
    let next_cursor = crate::api::next_log_cursor(&entries, limit, |d| (d.created_ms, d.id));
    let ts = |ms: i64| glucosync_domain::Timestamp::from_utc_ms(ms).to_rfc3339_utc();
    Ok(Json(DeliveryPage {
        items: entries
            .into_iter()
            .map(|d| DeliveryOut {
                created_at: ts(d.created_ms),
                recipient_id: d.recipient_id,
                channel: d.channel.as_str().to_owned(),
                status: d.status.as_str().to_owned(),
                attempts: d.attempts,
                last_error: d.last_error,
                done_at: d.done_ms.map(ts),
                message: serde_json::from_str(&d.payload).unwrap_or_default(),
            })
            .collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnoozeRequest {
    /// 1–240.
    #[schema(minimum = 1, maximum = 240)]
    pub minutes: i64,
}

fn parse_kind(kind: &str) -> ApiResult<AlertKind> {
    AlertKind::parse(kind).ok_or(ApiError::NotFound("alert"))
}

/// Acknowledge the open alert of this kind: it stays quiet until it resolves, on every device
/// of the person and their followers.
#[utoipa::path(post, path = "/alerts/{kind}/acknowledge", tag = "alerts",
    params(("kind" = String, Path, description = "e.g. urgent_low"), PersonParams),
    responses((status = 200, body = AlertOut), (status = 404, body = crate::error::Problem)))]
pub async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(kind): ApiPath<String>,
    ApiQuery(params): ApiQuery<PersonParams>,
) -> ApiResult<Json<AlertOut>> {
    let subject = readable_subject(&state, &caller, params.person, Access::Live, "alerts").await?;
    let kind = parse_kind(&kind)?;
    state
        .alerts
        .acknowledge(&state, subject, kind, None, caller.user_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("open alert"))
}

/// Snooze the open alert of this kind for a while: it notifies again when the snooze ends if
/// its condition still holds.
#[utoipa::path(post, path = "/alerts/{kind}/snooze", tag = "alerts",
    params(("kind" = String, Path, description = "e.g. high"), PersonParams),
    request_body = SnoozeRequest,
    responses((status = 200, body = AlertOut), (status = 404, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn snooze(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(kind): ApiPath<String>,
    ApiQuery(params): ApiQuery<PersonParams>,
    ApiJson(req): ApiJson<SnoozeRequest>,
) -> ApiResult<Json<AlertOut>> {
    let subject = readable_subject(&state, &caller, params.person, Access::Live, "alerts").await?;
    let kind = parse_kind(&kind)?;
    if !(1..=240).contains(&req.minutes) {
        return Err(ApiError::validation(ValidationError::new(
            "minutes",
            "must be between 1 and 240",
        )));
    }
    state
        .alerts
        .acknowledge(&state, subject, kind, Some(req.minutes), caller.user_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("open alert"))
}
