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
            .or_else(|e| retry_with_integral_floats(&bytes, e))
            .map(ApiJson)
            .map_err(|e| serde_problem(None, e))
    }
}

/// JSON has one number type: `66.0` is the integer 66 to JSON Schema (and so to the OpenAPI
/// document) and to clients that write every number with a fraction (Python's `json.dumps` of
/// a float), but serde refuses it for an integer field. Only on that error is the body read
/// again, with such numbers as integers; any other error stands.
fn retry_with_integral_floats<T: DeserializeOwned>(
    bytes: &[u8],
    error: serde_json::Error,
) -> Result<T, serde_json::Error> {
    if !error
        .to_string()
        .starts_with("invalid type: floating point")
    {
        return Err(error);
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    integral_floats_as_integers(&mut value);
    serde_json::from_value(value).map_err(|_| error)
}

fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                // Exactly representable integers only (|f| < 2^53).
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_as_integers),
        _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Snooze {
        minutes: i64,
        rate: f64,
    }

    fn parse(body: &str) -> Result<Snooze, serde_json::Error> {
        serde_json::from_slice(body.as_bytes())
            .or_else(|e| retry_with_integral_floats(body.as_bytes(), e))
    }

    #[test]
    fn an_integral_float_is_taken_for_an_integer_and_other_errors_stand() {
        assert_eq!(
            parse(r#"{"minutes": 66.0, "rate": 2.0}"#).expect("integral"),
            Snooze {
                minutes: 66,
                rate: 2.0
            }
        );
        assert_eq!(
            parse(r#"{"minutes": 66, "rate": 2.5}"#)
                .expect("plain")
                .rate,
            2.5
        );
        let fraction = parse(r#"{"minutes": 66.5, "rate": 1}"#).expect_err("a fraction");
        assert!(
            fraction.to_string().contains("floating point `66.5`"),
            "{fraction}"
        );
        let huge = parse(r#"{"minutes": 1e300, "rate": 1}"#).expect_err("out of range");
        assert!(huge.to_string().contains("floating point"), "{huge}");
        assert!(parse(r#"{"minutes": "66", "rate": 1}"#).is_err());
    }
}
