//! The one place where failures become HTTP responses: `application/problem+json` (RFC 9457)
//! with a stable machine-readable `code` and a sentence a person understands.
//!
//! Internal details (storage messages) are logged, never sent to the client; the request line
//! logged right after carries the request id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use glucosync_domain::ValidationError;
use glucosync_shared_state::SharedStateError;
use glucosync_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// One problem with one field of the input; `item` is the position in a batch.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct FieldProblem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    pub field: String,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:glucosync:problem:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation_failed`, `not_found`.
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid input")]
    Validation(Vec<FieldProblem>),
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("authentication required")]
    Unauthenticated,
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    #[error("not found")]
    NotFound(&'static str),
    /// It existed and was deleted (Nightscout API v3 answers 410 for those).
    #[error("gone")]
    Gone,
    #[error("{0}")]
    Conflict(String),
    /// An imported file is not what its format says; the text names the line.
    #[error("malformed file: {0}")]
    MalformedFile(String),
    #[error("request body too large")]
    PayloadTooLarge(usize),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Another server this request needed (a Nightscout site being imported) failed; the
    /// text says how, for the person.
    #[error("upstream: {0}")]
    BadGateway(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(e: ValidationError) -> Self {
        ApiError::Validation(vec![FieldProblem {
            item: None,
            field: e.field,
            message: e.message,
        }])
    }

    pub fn item(index: usize, e: ValidationError) -> Self {
        ApiError::Validation(vec![FieldProblem {
            item: Some(index),
            field: e.field,
            message: e.message,
        }])
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Forbidden {
            code,
            detail: detail.into(),
        }
    }

    pub(crate) fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Validation(errors) => {
                let first = errors
                    .first()
                    .map(|e| match e.item {
                        Some(i) => format!("item {i}: {}: {}", e.field, e.message),
                        None => format!("{}: {}", e.field, e.message),
                    })
                    .unwrap_or_default();
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", first)
            }
            ApiError::BadRequest { code, detail } => (StatusCode::BAD_REQUEST, code, detail.clone()),
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Log in, or send an API token as `Authorization: Bearer <token>`.".into(),
            ),
            ApiError::Forbidden { code, detail } => (StatusCode::FORBIDDEN, code, detail.clone()),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", format!("No such {what}.")),
            ApiError::Gone => (StatusCode::GONE, "gone", "It was deleted.".into()),
            ApiError::Conflict(detail) => (StatusCode::CONFLICT, "conflict", detail.clone()),
            ApiError::MalformedFile(detail) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "malformed_file",
                format!("Nothing was imported: {detail}."),
            ),
            ApiError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The request body exceeds the limit of {limit} bytes; split the upload into smaller batches."),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with `Content-Type: application/json`.".into(),
            ),
            ApiError::RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many attempts; try again in {retry_after_secs} seconds."),
            ),
            ApiError::BadGateway(detail) => (StatusCode::BAD_GATEWAY, "upstream_failed", detail.clone()),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The service is temporarily unavailable; try again shortly.".into(),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong on our side; it has been logged.".into(),
            ),
        }
    }
}

pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    errors: Vec<FieldProblem>,
) -> Response {
    let body = Problem {
        type_uri: format!("urn:glucosync:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        errors,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        )],
        json,
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = self.parts();
        match &self {
            // The message may hold SQL or a driver's text: log it, send a generic sentence.
            ApiError::Internal(msg) => tracing::error!(error = %msg, "internal error"),
            ApiError::Unavailable(msg) => tracing::warn!(error = %msg, "dependency unavailable"),
            _ => {}
        }
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Unavailable(_) => Some(5),
            _ => None,
        };
        let errors = match self {
            ApiError::Validation(errors) => errors,
            _ => Vec::new(),
        };
        let mut response = problem_response(status, code, detail, errors);
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(msg) => ApiError::Conflict(msg),
            StoreError::Unavailable(msg) => ApiError::Unavailable(msg),
            StoreError::Internal(msg) => ApiError::Internal(msg),
        }
    }
}

impl From<SharedStateError> for ApiError {
    fn from(e: SharedStateError) -> Self {
        match e {
            SharedStateError::Unavailable(msg) => ApiError::Unavailable(msg),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
