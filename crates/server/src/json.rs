//! Request bodies: JSON only, within the size limit, and every rejection in the problem format.
//! A batch is parsed fast as a whole; only when it fails is it parsed again item by item, so
//! that the error names the first bad item's index.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldProblem};
use crate::state::AppState;

/// A JSON body deserialized into `T`, unknown fields refused where `T` says so.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = json_bytes(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| serde_problem(None, e))
    }
}

/// The raw bytes of a JSON body, for handlers that parse batches themselves.
pub struct JsonBytes(pub Bytes);

impl FromRequest<AppState> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        json_bytes(req, state).await.map(JsonBytes)
    }
}

async fn json_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.config.max_body_bytes)
        } else {
            ApiError::bad_request("unreadable_body", "The request body could not be read.")
        }
    })
}

/// Syntax errors are 400 (not JSON); a well-formed value of the wrong shape is 422 and names
/// the field serde complained about.
pub fn serde_problem(item: Option<usize>, e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request("malformed_json", format!("The body is not valid JSON: {e}"))
        }
        Category::Data => ApiError::Validation(vec![FieldProblem {
            item,
            field: "body".into(),
            message: e.to_string(),
        }]),
    }
}

/// Parses either one object or an array of at most `max` objects.
pub fn one_or_many<T: DeserializeOwned>(
    bytes: &[u8],
    max: usize,
    what: &str,
) -> Result<Vec<T>, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        Some(b'{') => serde_json::from_slice::<T>(bytes)
            .map(|one| vec![one])
            .map_err(|e| serde_problem(None, e)),
        Some(b'[') => match serde_json::from_slice::<Vec<T>>(bytes) {
            Ok(items) => {
                if items.is_empty() {
                    return Err(ApiError::bad_request(
                        "empty_batch",
                        format!("The array holds no {what}."),
                    ));
                }
                if items.len() > max {
                    return Err(ApiError::bad_request(
                        "batch_too_large",
                        format!(
                            "A batch holds at most {max} {what}; this one holds {}. Split it.",
                            items.len()
                        ),
                    ));
                }
                Ok(items)
            }
            Err(e) => Err(locate_batch_error::<T>(bytes, e)),
        },
        _ => Err(ApiError::bad_request(
            "malformed_json",
            format!("The body must be one JSON object or an array of {what}."),
        )),
    }
}

fn locate_batch_error<T: DeserializeOwned>(bytes: &[u8], whole: serde_json::Error) -> ApiError {
    let Ok(values) = serde_json::from_slice::<Vec<serde_json::Value>>(bytes) else {
        return serde_problem(None, whole);
    };
    for (i, v) in values.into_iter().enumerate() {
        if let Err(e) = serde_json::from_value::<T>(v) {
            return ApiError::Validation(vec![FieldProblem {
                item: Some(i),
                field: "body".into(),
                message: e.to_string(),
            }]);
        }
    }
    serde_problem(None, whole)
}

/// Query parameters, with rejections in the problem format.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str::<T>(query)
            .map(ApiQuery)
            .map_err(|e| {
                ApiError::Validation(vec![FieldProblem {
                    item: None,
                    field: "query".into(),
                    message: e.to_string(),
                }])
            })
    }
}

/// Path parameters, with rejections in the problem format.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}
