//! Treatments: insulin, carbs, exercise, notes, basal rates. Idempotent by client id.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use glucosync_domain::accounts::Scope;
use glucosync_domain::limits::MAX_TREATMENTS_PER_BATCH;
use glucosync_domain::treatments::{
    ExerciseIntensity, InsulinType, NewTreatment, Treatment, TreatmentDetail, TreatmentFields,
    TreatmentKind,
};
use glucosync_domain::{Timestamp, ValidationError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{paginate, upload_response, Page, RangeParams, UploadResult};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{one_or_many, ApiJson, ApiPath, ApiQuery, JsonBytes};
use crate::state::{now_ms, AppState};

/// A treatment as a client sends it. Which amounts are required depends on `kind`:
/// insulin `units` + `insulin_type` (+ optional `insulin_name`); carbs `grams`; exercise
/// `minutes` (+ optional `intensity`); note `text`; basal_rate `units_per_hour` + `minutes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TreatmentInput {
    /// The client's id for idempotency (1–64 of letters, digits, `-_.:`). Without one, the
    /// server derives an id from the content, so identical re-sends are still deduplicated.
    pub id: Option<String>,
    #[schema(example = "2026-11-26T12:30:00+01:00", format = DateTime)]
    pub time: String,
    #[schema(value_type = TreatmentKind)]
    pub kind: String,
    /// Insulin units, more than 0 and at most 100.
    pub units: Option<f64>,
    #[schema(value_type = Option<InsulinType>)]
    pub insulin_type: Option<String>,
    pub insulin_name: Option<String>,
    /// Carbohydrates in grams, more than 0 and at most 500.
    pub grams: Option<f64>,
    /// Exercise or basal-rate duration in minutes, more than 0 and at most 1440.
    pub minutes: Option<f64>,
    #[schema(value_type = Option<ExerciseIntensity>)]
    pub intensity: Option<String>,
    /// A note's text, up to 2000 characters.
    pub text: Option<String>,
    /// Basal rate in units per hour, 0 (suspended) to 50.
    pub units_per_hour: Option<f64>,
}

/// The same fields without `id`, for replacing a treatment at its URL.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TreatmentReplace {
    pub time: String,
    #[schema(value_type = TreatmentKind)]
    pub kind: String,
    pub units: Option<f64>,
    #[schema(value_type = Option<InsulinType>)]
    pub insulin_type: Option<String>,
    pub insulin_name: Option<String>,
    pub grams: Option<f64>,
    pub minutes: Option<f64>,
    #[schema(value_type = Option<ExerciseIntensity>)]
    pub intensity: Option<String>,
    pub text: Option<String>,
    pub units_per_hour: Option<f64>,
}

/// One treatment, or an array of up to 1,000.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)]
pub enum TreatmentsUpload {
    One(TreatmentInput),
    Many(Vec<TreatmentInput>),
}

impl TreatmentInput {
    fn fields(&self) -> TreatmentFields<'_> {
        TreatmentFields {
            id: self.id.as_deref(),
            time: &self.time,
            kind: &self.kind,
            units: self.units,
            insulin_type: self.insulin_type.as_deref(),
            insulin_name: self.insulin_name.as_deref(),
            grams: self.grams,
            minutes: self.minutes,
            intensity: self.intensity.as_deref(),
            text: self.text.as_deref(),
            units_per_hour: self.units_per_hour,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TreatmentOut {
    pub id: String,
    pub time: String,
    pub utc_offset: String,
    pub kind: TreatmentKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insulin_type: Option<InsulinType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insulin_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grams: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intensity: Option<ExerciseIntensity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units_per_hour: Option<f64>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Treatment> for TreatmentOut {
    fn from(t: Treatment) -> Self {
        let mut out = TreatmentOut {
            id: t.id,
            time: t.time.to_rfc3339_utc(),
            utc_offset: t.time.offset_string(),
            kind: t.detail.kind(),
            units: None,
            insulin_type: None,
            insulin_name: None,
            grams: None,
            minutes: None,
            intensity: None,
            text: None,
            units_per_hour: None,
            created_at: Timestamp::from_utc_ms(t.created_ms).to_rfc3339_utc(),
            updated_at: Timestamp::from_utc_ms(t.updated_ms).to_rfc3339_utc(),
        };
        match t.detail {
            TreatmentDetail::Insulin {
                units,
                insulin_type,
                insulin_name,
            } => {
                out.units = Some(units);
                out.insulin_type = Some(insulin_type);
                out.insulin_name = insulin_name;
            }
            TreatmentDetail::Carbs { grams } => out.grams = Some(grams),
            TreatmentDetail::Exercise { minutes, intensity } => {
                out.minutes = Some(minutes);
                out.intensity = intensity;
            }
            TreatmentDetail::Note { text } => out.text = Some(text),
            TreatmentDetail::BasalRate {
                units_per_hour,
                minutes,
            } => {
                out.units_per_hour = Some(units_per_hour);
                out.minutes = Some(minutes);
            }
        }
        out
    }
}

/// Record one treatment or a batch. An id the account already has is a duplicate and changes
/// nothing (two uploaders sending the same bolus create one). Any invalid item refuses the batch.
#[utoipa::path(post, path = "/treatments", tag = "treatments", request_body = TreatmentsUpload,
    responses((status = 201, body = UploadResult), (status = 200, description = "All were duplicates", body = UploadResult),
              (status = 422, body = crate::error::Problem)))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    JsonBytes(body): JsonBytes,
) -> ApiResult<(StatusCode, Json<UploadResult>)> {
    caller.require(Scope::TreatmentsWrite)?;
    state.forecaster.forget_history(caller.user_id);
    let inputs: Vec<TreatmentInput> = one_or_many(&body, MAX_TREATMENTS_PER_BATCH, "treatments")?;
    let now = now_ms();
    let treatments = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| NewTreatment::validate(&t.fields(), now).map_err(|e| ApiError::item(i, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let newest_treatment = treatments.iter().map(|t| t.time.utc_ms).max();
    let outcome = state
        .store
        .insert_treatments(caller.user_id, treatments, now)
        .await?;
    if outcome.inserted > 0 && state.config.forecasts {
        if let Some(t) = newest_treatment {
            state
                .forecaster
                .treatments_changed(&state, caller.user_id, t)
                .await;
        }
    }
    if outcome.inserted > 0 {
        treatments_changed(&state, caller.user_id).await;
    }
    Ok(upload_response(outcome))
}

/// Treatments in a time range, a page at a time.
#[utoipa::path(get, path = "/treatments", tag = "treatments", params(RangeParams),
    responses((status = 200, body = Page<TreatmentOut>), (status = 422, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<RangeParams>,
) -> ApiResult<Json<Page<TreatmentOut>>> {
    let subject = crate::api::reports::readable_subject(
        &state,
        &caller,
        params.person,
        crate::api::reports::Access::Live,
        "treatments",
    )
    .await?;
    if params.unit.is_some() {
        return Err(ApiError::validation(ValidationError::new(
            "unit",
            "treatments have no glucose unit",
        )));
    }
    let query = params.to_query()?;
    let fetched = state.store.list_treatments(subject, &query).await?;
    Ok(Json(paginate(
        fetched,
        &query,
        |t| (t.time.utc_ms, t.id.clone()),
        TreatmentOut::from,
    )))
}

/// One treatment.
#[utoipa::path(get, path = "/treatments/{id}", tag = "treatments", params(("id" = String, Path, description = "Treatment id")),
    responses((status = 200, body = TreatmentOut), (status = 404, body = crate::error::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TreatmentOut>> {
    caller.require(Scope::Read)?;
    let t = state
        .store
        .treatment(caller.user_id, &id)
        .await?
        .ok_or(ApiError::NotFound("treatment"))?;
    Ok(Json(t.into()))
}

/// Replace a treatment's time and content.
#[utoipa::path(put, path = "/treatments/{id}", tag = "treatments", params(("id" = String, Path, description = "Treatment id")),
    request_body = TreatmentReplace,
    responses((status = 200, body = TreatmentOut), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TreatmentReplace>,
) -> ApiResult<Json<TreatmentOut>> {
    caller.require(Scope::TreatmentsWrite)?;
    state.forecaster.forget_history(caller.user_id);
    let now = now_ms();
    let fields = TreatmentFields {
        id: Some(&id),
        time: &body.time,
        kind: &body.kind,
        units: body.units,
        insulin_type: body.insulin_type.as_deref(),
        insulin_name: body.insulin_name.as_deref(),
        grams: body.grams,
        minutes: body.minutes,
        intensity: body.intensity.as_deref(),
        text: body.text.as_deref(),
        units_per_hour: body.units_per_hour,
    };
    let treatment = NewTreatment::validate(&fields, now).map_err(|e| {
        // An id that could never have been issued is simply not found.
        if e.field == "id" {
            ApiError::NotFound("treatment")
        } else {
            ApiError::validation(e)
        }
    })?;
    let updated = state
        .store
        .update_treatment(caller.user_id, treatment, now)
        .await?
        .ok_or(ApiError::NotFound("treatment"))?;
    treatments_changed(&state, caller.user_id).await;
    Ok(Json(updated.into()))
}

/// Tells the person's devices and caregivers to reload treatments.
pub(crate) async fn treatments_changed(state: &AppState, user: glucosync_store::UserId) {
    crate::live::publish(
        state,
        user,
        &[crate::live::data_changed_event(user, "treatments")],
    )
    .await;
}

/// Delete a treatment.
#[utoipa::path(delete, path = "/treatments/{id}", tag = "treatments", params(("id" = String, Path, description = "Treatment id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = crate::error::Problem)))]
pub async fn delete_one(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::TreatmentsWrite)?;
    state.forecaster.forget_history(caller.user_id);
    if state.store.delete_treatment(caller.user_id, &id).await? {
        treatments_changed(&state, caller.user_id).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("treatment"))
    }
}
