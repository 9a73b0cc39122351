//! Glucose readings: idempotent batch upload, range listing, latest with delta, deletion.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use glucosync_domain::accounts::Scope;
use glucosync_domain::limits::MAX_READINGS_PER_BATCH;
use glucosync_domain::readings::{delta, NewReading, Reading, ReadingKind, TrendDirection};
use glucosync_domain::GlucoseUnit;
use glucosync_store::InsertOutcome;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{
    paginate, parse_unit, resolve_range, upload_response, Page, RangeParams, UploadResult,
};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{one_or_many, ApiPath, ApiQuery, JsonBytes};
use crate::state::{now_ms, AppState};

/// One reading as an uploader sends it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadingInput {
    /// When the sensor or meter measured (RFC 3339 with offset); not before 2000, at most
    /// 5 minutes in the future.
    #[schema(example = "2026-11-26T08:05:00+01:00", format = DateTime)]
    pub time: String,
    /// 20–600 mg/dL (1.1–33.3 mmol/L).
    #[schema(example = 112)]
    pub value: f64,
    /// Unit of `value`; default mg/dL.
    pub unit: Option<GlucoseUnit>,
    /// Default `cgm`.
    pub kind: Option<ReadingKind>,
    pub trend: Option<TrendDirection>,
    /// The sending device or app, up to 100 characters.
    pub device: Option<String>,
}

/// One reading, or an array of up to 10,000. (Documentation only: the body is parsed by
/// [`one_or_many`] so that errors name the bad item.)
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)]
pub enum ReadingsUpload {
    One(ReadingInput),
    Many(Vec<ReadingInput>),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadingOut {
    pub id: i64,
    /// UTC, millisecond precision.
    pub time: String,
    /// The UTC offset the reading was uploaded with, e.g. `+01:00`.
    pub utc_offset: String,
    pub value: f64,
    pub unit: GlucoseUnit,
    pub kind: ReadingKind,
    pub trend: Option<TrendDirection>,
    pub device: Option<String>,
}

impl ReadingOut {
    fn new(r: Reading, unit: GlucoseUnit) -> Self {
        ReadingOut {
            id: r.id,
            time: r.time.to_rfc3339_utc(),
            utc_offset: r.time.offset_string(),
            value: r.value.display(unit),
            unit,
            kind: r.kind,
            trend: r.trend,
            device: (!r.device.is_empty()).then_some(r.device),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LatestReading {
    #[serde(flatten)]
    pub reading: ReadingOut,
    /// Change from the previous reading (if it is at most 15 minutes older), in `unit`.
    pub delta: Option<f64>,
    /// Time of that previous reading.
    pub previous_time: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UnitParam {
    /// `mg/dL` (default) or `mmol/L`.
    #[param(pattern = r"^(mg/dL|mmol/L)$")]
    pub unit: Option<String>,
    /// Whose data (a person who shares it with the caller as a caregiver); default: the
    /// caller's own.
    pub person: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteRangeParams {
    /// Start, inclusive (RFC 3339).
    #[param(format = DateTime)]
    pub from: String,
    /// End, exclusive (RFC 3339).
    #[param(format = DateTime)]
    pub to: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: u64,
}

/// Upload one reading or a batch. Idempotent: a reading the account already has (same kind,
/// time and device) is counted as a duplicate. A batch with any invalid item is refused whole.
#[utoipa::path(post, path = "/readings", tag = "readings", request_body = ReadingsUpload,
    responses((status = 201, description = "Some readings were new", body = UploadResult),
              (status = 200, description = "All were duplicates", body = UploadResult),
              (status = 422, description = "An item is invalid; `errors[0].item` is its index", body = crate::error::Problem),
              (status = 413, body = crate::error::Problem)))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    JsonBytes(body): JsonBytes,
) -> ApiResult<(StatusCode, Json<UploadResult>)> {
    caller.require(Scope::ReadingsWrite)?;
    let inputs: Vec<ReadingInput> = one_or_many(&body, MAX_READINGS_PER_BATCH, "readings")?;
    let now = now_ms();
    let readings = inputs
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            NewReading::validate(
                &r.time,
                r.value,
                r.unit.unwrap_or_default(),
                r.kind.unwrap_or_default(),
                r.trend,
                r.device.as_deref(),
                now,
            )
            .map_err(|e| ApiError::item(i, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pending = AfterUpload::before_store(&state, caller.user_id, &readings);
    let outcome = state
        .store
        .insert_readings(caller.user_id, readings, now)
        .await?;
    pending.stored(&state, outcome).await;
    Ok(upload_response(outcome))
}

/// What an upload of readings sets going once they are stored (every upload path: this API
/// and Nightscout's): forecasts, alert evaluation, live events.
pub(crate) struct AfterUpload {
    person: glucosync_store::UserId,
    cgm: Vec<(i64, f64)>,
    event: Option<serde_json::Value>,
}

impl AfterUpload {
    /// Taken before the readings move into the store.
    pub(crate) fn before_store(
        state: &AppState,
        person: glucosync_store::UserId,
        readings: &[NewReading],
    ) -> Self {
        let cgm = readings
            .iter()
            .filter(|r| r.kind == ReadingKind::Cgm)
            .map(|r| (r.time.utc_ms, r.value.mgdl()))
            .collect();
        // Built now, sent only if something was new.
        let event = crate::live::listened(state, person)
            .then(|| crate::live::reading_event(person, readings, 0));
        AfterUpload { person, cgm, event }
    }

    pub(crate) async fn stored(self, state: &AppState, outcome: InsertOutcome) {
        let AfterUpload { person, cgm, event } = self;
        let newest_cgm = cgm.iter().map(|r| r.0).max();
        state.metrics.readings_total.inc_by(outcome.inserted);
        if outcome.duplicates == 0 {
            state.forecaster.readings_added(person, &cgm);
        } else {
            // A duplicate keeps the stored value, which may differ from the one sent.
            state.forecaster.forget_history(person);
        }
        if outcome.inserted == 0 {
            return;
        }
        let forecast = if state.config.forecasts {
            forecast_newest(state, person, &newest_cgm).await
        } else {
            None
        };
        if newest_cgm.is_some() {
            // After the forecast, which a predicted low needs. Durable without this: the
            // upload made the person due for the timers.
            state.alerts.evaluate_soon(state, person);
        }
        let first = match event {
            Some(mut event) => {
                event["inserted"] = outcome.inserted.into();
                Some(event)
            }
            // Someone subscribed since the upload began (their replay from storage may have
            // missed these readings): they reload them.
            None => crate::live::listened(state, person)
                .then(|| crate::live::data_changed_event(person, "readings")),
        };
        if let Some(first) = first {
            let forecast = forecast
                .as_ref()
                .map(|f| crate::live::forecast_event(person, f));
            let events: Vec<_> = std::iter::once(first).chain(forecast).collect();
            crate::live::publish(state, person, &events).await;
        }
    }
}

/// Readings in a time range, a page at a time.
#[utoipa::path(get, path = "/readings", tag = "readings", params(RangeParams),
    responses((status = 200, body = Page<ReadingOut>), (status = 422, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<RangeParams>,
) -> ApiResult<Json<Page<ReadingOut>>> {
    let subject = crate::api::reports::readable_subject(
        &state,
        &caller,
        params.person,
        crate::api::reports::Access::Live,
        "readings",
    )
    .await?;
    let unit = params.unit()?;
    let query = params.to_query()?;
    let fetched = state.store.list_readings(subject, &query).await?;
    Ok(Json(paginate(
        fetched,
        &query,
        |r| (r.time.utc_ms, r.id.to_string()),
        |r| ReadingOut::new(r, unit),
    )))
}

/// The newest reading, its trend, and the change from the one before.
#[utoipa::path(get, path = "/readings/latest", tag = "readings", params(UnitParam),
    responses((status = 200, body = LatestReading), (status = 404, description = "No readings yet", body = crate::error::Problem)))]
pub async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<UnitParam>,
) -> ApiResult<Json<LatestReading>> {
    let subject = crate::api::reports::readable_subject(
        &state,
        &caller,
        params.person,
        crate::api::reports::Access::Live,
        "readings.latest",
    )
    .await?;
    let unit = parse_unit(params.unit.as_deref())?;
    let mut newest = state.store.latest_readings(subject, 2).await?.into_iter();
    let latest = newest.next().ok_or(ApiError::NotFound("reading"))?;
    let previous = newest.next();
    let change = delta(&latest, previous.as_ref()).map(|d| match unit {
        GlucoseUnit::MgDl => glucosync_domain::units::round_to(d, 1),
        GlucoseUnit::MmolL => {
            glucosync_domain::units::round_to(d / glucosync_domain::units::MGDL_PER_MMOLL, 1)
        }
    });
    Ok(Json(LatestReading {
        previous_time: change.and(previous.as_ref().map(|p| p.time.to_rfc3339_utc())),
        delta: change,
        reading: ReadingOut::new(latest, unit),
    }))
}

/// Delete one reading.
#[utoipa::path(delete, path = "/readings/{id}", tag = "readings", params(("id" = i64, Path, description = "Reading id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = crate::error::Problem)))]
pub async fn delete_one(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::ReadingsWrite)?;
    state.forecaster.forget_history(caller.user_id);
    if state.store.delete_reading(caller.user_id, id).await? {
        readings_deleted(&state, caller.user_id).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("reading"))
    }
}

/// Delete every reading in a time range (at most 366 days).
#[utoipa::path(delete, path = "/readings", tag = "readings", params(DeleteRangeParams),
    responses((status = 200, body = Deleted), (status = 422, body = crate::error::Problem)))]
pub async fn delete_range(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<DeleteRangeParams>,
) -> ApiResult<Json<Deleted>> {
    caller.require(Scope::ReadingsWrite)?;
    state.forecaster.forget_history(caller.user_id);
    let (from_ms, to_ms) = resolve_range(Some(&params.from), Some(&params.to))?;
    let deleted = state
        .store
        .delete_readings_in_range(caller.user_id, from_ms, to_ms)
        .await?;
    if deleted > 0 {
        readings_deleted(&state, caller.user_id).await;
    }
    Ok(Json(Deleted { deleted }))
}

/// Deleted readings may end alerts (or make data stale) and change what devices show.
async fn readings_deleted(state: &AppState, user: glucosync_store::UserId) {
    state.alerts.evaluate_soon(state, user);
    crate::live::publish(
        state,
        user,
        &[crate::live::data_changed_event(user, "readings")],
    )
    .await;
}

/// Forecasts from the newest CGM reading of an upload (in data time: a backfilled reading gets
/// the forecast it would have had). The readings are stored whatever happens here: a forecast
/// that cannot be made is logged, never an upload error.
async fn forecast_newest(
    state: &AppState,
    user: glucosync_store::UserId,
    newest_cgm: &Option<i64>,
) -> Option<std::sync::Arc<glucosync_store::StoredForecast>> {
    let reading_ms = (*newest_cgm)?;
    match state
        .forecaster
        .forecast_reading(state, user, reading_ms)
        .await
    {
        Ok(forecast) => forecast,
        Err(e) => {
            tracing::warn!(error = %e, "could not forecast");
            None
        }
    }
}
