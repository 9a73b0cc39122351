//! The person's data, theirs to take and bring (docs/data-ownership.md): exports (GlucoSync's
//! JSON, CSV per kind, FHIR) and imports (GlucoSync, Dexcom Clarity, LibreView, Nightscout).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use glucosync_domain::accounts::Scope;
use glucosync_domain::import::{DateOrder, ImportFormat};
use glucosync_domain::limits::MAX_IMPORT_BYTES;
use glucosync_domain::ValidationError;
use glucosync_store::User;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use crate::api::{parse_unit, resolve_range};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::export::{self, CsvKind};
use crate::import::{import_file, ImportFailure, ImportReport, ImportRequest};
use crate::json::{ApiPath, ApiQuery};
use crate::state::{now_ms, AppState};

async fn own_account(state: &AppState, caller: &Caller) -> Result<User, ApiError> {
    caller.require(Scope::Read)?;
    state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)
}

fn download(body: Body, content_type: &'static str, filename: String) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn today() -> String {
    glucosync_domain::Timestamp::from_utc_ms(now_ms())
        .to_rfc3339_utc()
        .chars()
        .take(10)
        .collect()
}

/// Everything the caller has, as one JSON document (GlucoSync's export format, version 1):
/// account and settings, readings, treatments, Nightscout documents, alert state and
/// deliveries, shares, API tokens (never their secrets) and the access log. Streamed; an
/// import of it into any GlucoSync server reproduces the account's data and settings.
#[utoipa::path(get, path = "/export", tag = "data",
    responses((status = 200, description = "The export (application/json)", content_type = "application/json")))]
pub async fn export_json(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let user = own_account(&state, &caller).await?;
    let body = export::json_export(state.store.clone(), user, export::ExportFor::Person);
    Ok(download(
        body,
        "application/json",
        format!("glucosync-export-{}.json", today()),
    ))
}

/// One kind of the caller's data as CSV: `readings.csv`, `treatments.csv`, `alerts.csv`,
/// `shares.csv` or `access-log.csv`. Times are UTC with the original offset beside them.
#[utoipa::path(get, path = "/export/{file}", tag = "data",
    params(("file" = String, Path, description = "`readings.csv`, `treatments.csv`, `alerts.csv`, `shares.csv` or `access-log.csv`")),
    responses((status = 200, description = "CSV with a header row", content_type = "text/csv"),
        (status = 404, body = crate::error::Problem)))]
pub async fn export_csv(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(file): ApiPath<String>,
) -> ApiResult<Response> {
    let kind = file
        .strip_suffix(".csv")
        .and_then(CsvKind::parse)
        .ok_or(ApiError::NotFound("export"))?;
    let user = own_account(&state, &caller).await?;
    let body = export::csv_export(state.store.clone(), user, kind);
    Ok(download(
        body,
        "text/csv; charset=utf-8",
        format!("glucosync-{}-{}.csv", kind.as_str(), today()),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FhirParams {
    /// Start, inclusive (RFC 3339). Default: 90 days before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `mg/dL` (default) or `mmol/L`.
    #[param(pattern = r"^(mg/dL|mmol/L)$")]
    pub unit: Option<String>,
}

/// The caller's readings as an HL7 FHIR R4 Bundle (type `collection`) of glucose
/// Observations, for clinical systems: CGM readings with LOINC 99504-3 (mg/dL) or 105272-9
/// (mmol/L) as the HL7 CGM Implementation Guide profiles them, meter readings with 41653-7
/// or 14743-9. At most 366 days per request.
#[utoipa::path(get, path = "/export/fhir", tag = "data", params(FhirParams),
    responses((status = 200, description = "A FHIR Bundle", content_type = "application/fhir+json")))]
pub async fn export_fhir(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<FhirParams>,
) -> ApiResult<Response> {
    let unit = parse_unit(params.unit.as_deref())?;
    let range = match (&params.from, &params.to) {
        (None, to) => {
            let (_, to_ms) = resolve_range(None, to.as_deref())?;
            (to_ms - 90 * 86_400_000, to_ms)
        }
        (from, to) => resolve_range(from.as_deref(), to.as_deref())?,
    };
    let user = own_account(&state, &caller).await?;
    let body = export::fhir_export(state.store.clone(), user, unit, range);
    Ok(download(
        body,
        "application/fhir+json",
        format!("glucosync-fhir-{}.json", today()),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// `glucosync`, `clarity`, `libreview` or `nightscout`.
    #[param(pattern = r"^(glucosync|clarity|libreview|nightscout)$")]
    pub format: String,
    /// IANA zone the file's wall-clock times are in (Clarity, LibreView). Default: the
    /// account's.
    pub time_zone: Option<String>,
    /// `day_first` or `month_first` (LibreView). Default: learnt from the file.
    #[param(pattern = r"^(day_first|month_first)$")]
    pub date_order: Option<String>,
    /// `apply` (default) or `keep`: whether a GlucoSync export's display name and settings
    /// replace the account's.
    #[param(pattern = r"^(apply|keep)$")]
    pub settings: Option<String>,
}

/// Imports a file, sent as the request body (up to 1 GiB): Dexcom Clarity or LibreView CSV,
/// Nightscout entries/treatments JSON, or a GlucoSync export. Idempotent (the same file
/// twice adds nothing); a malformed file is refused whole with the line at fault (422); the
/// report says what was imported and lists skipped rows with their reason.
#[utoipa::path(post, path = "/import", tag = "data", params(ImportParams),
    request_body(content = String, description = "The file", content_type = "application/octet-stream"),
    responses((status = 200, body = ImportReport),
        (status = 413, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ImportParams>,
    body: Body,
) -> ApiResult<Json<ImportReport>> {
    caller.require(Scope::ReadingsWrite)?;
    caller.require(Scope::TreatmentsWrite)?;
    let format = ImportFormat::parse(&params.format).ok_or_else(|| {
        ApiError::validation(ValidationError::new(
            "format",
            "must be glucosync, clarity, libreview or nightscout",
        ))
    })?;
    let date_order = match params.date_order.as_deref() {
        None => None,
        Some("day_first") => Some(DateOrder::DayFirst),
        Some("month_first") => Some(DateOrder::MonthFirst),
        Some(_) => {
            return Err(ApiError::validation(ValidationError::new(
                "date_order",
                "must be day_first or month_first",
            )))
        }
    };
    let apply_settings = match params.settings.as_deref() {
        None | Some("apply") => true,
        Some("keep") => false,
        Some(_) => {
            return Err(ApiError::validation(ValidationError::new(
                "settings",
                "must be apply or keep",
            )))
        }
    };
    let user = state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let time_zone = match params.time_zone.as_deref() {
        Some(name) => name.parse().map_err(|_| {
            ApiError::validation(ValidationError::new(
                "time_zone",
                "must be an IANA time zone, e.g. Europe/Berlin",
            ))
        })?,
        None => user.settings.time_zone.parse().unwrap_or(chrono_tz::UTC),
    };

    let spooled = spool(body).await?;
    let request = ImportRequest {
        format,
        time_zone,
        date_order,
        // Settings belong to the account: only its owner's login changes them.
        apply_settings: apply_settings && caller.require_session().is_ok(),
        now_ms: now_ms(),
    };
    let report = import_file(state.store.clone(), user.id, &spooled, &request)
        .await
        .map_err(|e| match e {
            ImportFailure::Malformed(e) => ApiError::MalformedFile(e.to_string()),
            ImportFailure::Store(e) => e.into(),
            ImportFailure::Io(e) => ApiError::Internal(format!("import: {e}")),
        })?;
    tracing::info!(
        format = format.as_str(),
        rows = report.rows,
        readings = report.readings.imported,
        treatments = report.treatments.imported,
        skipped = report.skipped_total,
        "import finished"
    );
    after_import(&state, user.id, &report).await;
    Ok(Json(report))
}

/// Copies the request body to a private temporary file (deleted when dropped).
async fn spool(body: Body) -> Result<tempfile::TempPath, ApiError> {
    let file = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::Internal(format!("import spool: {e}")))?;
    let (file, path) = file.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    let mut size = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::bad_request(
                "body_incomplete",
                "The upload was interrupted; send it again.",
            )
        })?;
        size += chunk.len();
        if size > MAX_IMPORT_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_IMPORT_BYTES));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("import spool: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::Internal(format!("import spool: {e}")))?;
    Ok(path)
}

/// What a live upload sets going, once for the whole import: forecasts forget their cached
/// history, alerts look again, open dashboards reload.
async fn after_import(state: &AppState, person: glucosync_store::UserId, report: &ImportReport) {
    state
        .metrics
        .readings_total
        .inc_by(report.readings.imported);
    if report.readings.imported == 0 && report.treatments.imported == 0 {
        return;
    }
    state.forecaster.forget_history(person);
    state.alerts.evaluate_soon(state, person);
    if crate::live::listened(state, person) {
        let events = [
            crate::live::data_changed_event(person, "readings"),
            crate::live::data_changed_event(person, "treatments"),
        ];
        crate::live::publish(state, person, &events).await;
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NightscoutPullRequest {
    /// The Nightscout site's address, e.g. `https://me.example.org`.
    pub url: String,
    /// An access token with read rights (Nightscout's admin tools make one), or…
    pub token: Option<String>,
    /// …the site's API secret.
    pub api_secret: Option<String>,
    /// Only records from this time on (RFC 3339); default: the whole history.
    pub since: Option<String>,
}

/// Imports the whole history (or since a time) of a Nightscout site: entries and treatments,
/// read through its API with the token or API secret given, then imported as a Nightscout
/// file would be (idempotent; the same report). The site must be on the public internet
/// unless the operator allows private addresses.
#[utoipa::path(post, path = "/import/nightscout", tag = "data", request_body = NightscoutPullRequest,
    responses((status = 200, body = ImportReport),
        (status = 422, body = crate::error::Problem),
        (status = 502, body = crate::error::Problem)))]
pub async fn import_nightscout(
    State(state): State<AppState>,
    caller: Caller,
    crate::json::ApiJson(req): crate::json::ApiJson<NightscoutPullRequest>,
) -> ApiResult<Json<ImportReport>> {
    use crate::import::nightscout_pull::{pull_into, Pull, PullError};
    caller.require(Scope::ReadingsWrite)?;
    caller.require(Scope::TreatmentsWrite)?;
    let since_ms = req
        .since
        .as_deref()
        .map(|s| crate::api::parse_time_param("since", s))
        .transpose()?;
    let pull = Pull {
        url: req.url,
        token: req.token.filter(|t| !t.is_empty()),
        api_secret: req.api_secret.filter(|s| !s.is_empty()),
        since_ms,
        allow_private_addresses: state.config.import_allow_private_urls,
    };
    let spool = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::Internal(format!("import spool: {e}")))?;
    let (file, path) = spool.into_parts();
    let mut writer = std::io::BufWriter::new(file);
    let pulled = pull_into(&pull, &mut writer).await.map_err(|e| match e {
        PullError::BadUrl(m) => ApiError::validation(ValidationError::new("url", m)),
        PullError::Io(e) => ApiError::Internal(format!("import spool: {e}")),
        other => ApiError::BadGateway(other.to_string()),
    })?;
    drop(writer);
    let request = ImportRequest {
        format: ImportFormat::Nightscout,
        time_zone: chrono_tz::UTC,
        date_order: None,
        apply_settings: false,
        now_ms: now_ms(),
    };
    let report = import_file(state.store.clone(), caller.user_id, &path, &request)
        .await
        .map_err(|e| match e {
            ImportFailure::Malformed(e) => ApiError::BadGateway(format!(
                "the Nightscout site sent records that do not read: {e}"
            )),
            ImportFailure::Store(e) => e.into(),
            ImportFailure::Io(e) => ApiError::Internal(format!("import: {e}")),
        })?;
    tracing::info!(
        pulled,
        readings = report.readings.imported,
        treatments = report.treatments.imported,
        "Nightscout pull finished"
    );
    after_import(&state, caller.user_id, &report).await;
    Ok(Json(report))
}
