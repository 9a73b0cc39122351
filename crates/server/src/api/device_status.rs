//! The latest status of a person's devices (pump, phone, loop), as Nightscout uploaders report
//! it (docs/nightscout.md): what the dashboard shows beside the glucose.

use axum::extract::State;
use axum::Json;
use glucosync_domain::nightscout::{DeviceStatusSummary, Object};
use glucosync_domain::Timestamp;
use glucosync_store::{DocumentCollection, RangeQuery};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::forecast::PersonParams;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::ApiQuery;
use crate::state::{now_ms, AppState};

/// Reports older than this are not current: the dashboard shows none.
const RECENT_MS: i64 = 60 * 60_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceStatusOut {
    /// The newest report's time.
    pub updated_at: String,
    /// When the loop last ran.
    pub loop_at: Option<String>,
    /// When the loop's prediction starts (5-minute steps).
    pub predicted_start: Option<String>,
    #[serde(flatten)]
    pub status: DeviceStatusSummary,
}

/// The latest device status (pump reservoir and battery, phone battery, the loop's insulin
/// and carbs on board and prediction), from the last hour's reports; 404 when there are none.
#[utoipa::path(get, path = "/device-status", tag = "nightscout", params(PersonParams),
    responses((status = 200, body = DeviceStatusOut), (status = 404, body = crate::error::Problem)))]
pub async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<PersonParams>,
) -> ApiResult<Json<DeviceStatusOut>> {
    let subject = crate::api::reports::readable_subject(
        &state,
        &caller,
        params.person,
        crate::api::reports::Access::Live,
        "device_status",
    )
    .await?;
    let now = now_ms();
    let query = RangeQuery {
        from_ms: now - RECENT_MS,
        to_ms: now + glucosync_domain::limits::MAX_FUTURE_SKEW_MS,
        after: None,
        limit: 50,
        descending: true,
    };
    let docs = state
        .store
        .list_documents(subject, DocumentCollection::DeviceStatus, &query)
        .await?;
    let parsed: Vec<(i64, Object)> = docs
        .iter()
        .filter_map(|d| Some((d.time_ms, serde_json::from_str(&d.body).ok()?)))
        .collect();
    let status = DeviceStatusSummary::from_documents(parsed.iter().map(|(t, o)| (*t, o)))
        .ok_or(ApiError::NotFound("recent device status"))?;
    let time = |ms: i64| Timestamp::from_utc_ms(ms).to_rfc3339_utc();
    Ok(Json(DeviceStatusOut {
        updated_at: time(status.updated_ms),
        loop_at: status.loop_ms.map(time),
        predicted_start: status.predicted_start_ms.map(time),
        status,
    }))
}
