//! The latest glucose forecast. Informational only: never dosing advice.

use axum::extract::State;
use axum::Json;
use glucosync_domain::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::forecasting::ForecastPointOut;
use crate::json::ApiQuery;
use crate::state::AppState;

/// The forecast issued from the person's newest CGM reading, whatever its age (`issued_at`
/// says how old it is). mg/dL, 5-minute steps up to 60 minutes, each with its 80 % interval.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastOut {
    pub issued_at: String,
    pub model_version: String,
    pub points: Vec<ForecastPointOut>,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PersonParams {
    /// Whose forecast: a person who shares with the caller as a caregiver (default: the caller).
    pub person: Option<i64>,
}

/// The latest forecast (informational; not for dosing decisions).
#[utoipa::path(get, path = "/forecast", tag = "forecast", params(PersonParams),
    responses((status = 200, body = ForecastOut), (status = 404, body = crate::error::Problem)))]
pub async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<PersonParams>,
) -> ApiResult<Json<ForecastOut>> {
    let subject = crate::api::reports::readable_subject(
        &state,
        &caller,
        params.person,
        crate::api::reports::Access::Live,
        "forecast",
    )
    .await?;
    let stored = state
        .forecaster
        .latest(&state, subject)
        .await?
        .ok_or(ApiError::NotFound("forecast"))?;
    let points = crate::forecasting::points_out(stored.issued_ms, &stored.points)?;
    Ok(Json(ForecastOut {
        issued_at: Timestamp::from_utc_ms(stored.issued_ms).to_rfc3339_utc(),
        model_version: stored.model_version.clone(),
        points,
    }))
}
