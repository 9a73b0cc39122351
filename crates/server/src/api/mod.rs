//! The REST API under `/api/v1`. Handlers are thin: parse and authorize at the edge
//! (extractors), call the domain and the store, map the result.

pub mod accounts;
pub mod alerts;
pub mod data;
pub mod device_status;
pub mod events;
pub mod forecast;
pub mod insights;
pub mod nightscout;
pub mod push;
pub mod readings;
pub mod reports;
pub mod shares;
pub mod sso;
pub mod tokens;
pub mod treatments;
pub mod ws;

use glucosync_domain::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_RANGE_DAYS};
use glucosync_domain::{Timestamp, ValidationError};
use glucosync_store::{Cursor, RangeQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::state::now_ms;

/// Sort order of a listing.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// A time range and a page of it. `from` is inclusive, `to` exclusive.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    /// Start, inclusive (RFC 3339). Default: 24 hours before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Items per page, 1–10000. Default 1000.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `asc` (default) or `desc` by time.
    #[param(inline)]
    pub order: Option<Order>,
    /// Unit of returned glucose values: `mg/dL` (default) or `mmol/L`.
    #[param(pattern = r"^(mg/dL|mmol/L)$")]
    pub unit: Option<String>,
    /// Whose data (a person who shares it with the caller as a caregiver); default: the
    /// caller's own.
    pub person: Option<i64>,
}

/// A page of a listing. Pass `next_cursor` back as `cursor` for the next page; it is null on
/// the last page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

pub(crate) fn parse_time_param(field: &str, s: &str) -> Result<i64, ApiError> {
    Timestamp::parse_rfc3339(field, s)
        .map(|t| t.utc_ms)
        .map_err(ApiError::validation)
}

/// Resolves `from`/`to` with their defaults and checks the range's length.
pub(crate) fn resolve_range(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), ApiError> {
    const DAY_MS: i64 = 86_400_000;
    let to_ms = match to {
        Some(s) => parse_time_param("to", s)?,
        // Include readings stamped by a fast clock (accepted up to the future-skew limit).
        None => now_ms() + glucosync_domain::limits::MAX_FUTURE_SKEW_MS + 1,
    };
    let from_ms = match from {
        Some(s) => parse_time_param("from", s)?,
        None => to_ms - DAY_MS,
    };
    if from_ms >= to_ms {
        return Err(ApiError::validation(ValidationError::new(
            "from",
            "must be before `to`",
        )));
    }
    if to_ms - from_ms > MAX_RANGE_DAYS * DAY_MS {
        return Err(ApiError::validation(ValidationError::new(
            "to",
            format!(
                "the range may span at most {MAX_RANGE_DAYS} days; page through longer periods"
            ),
        )));
    }
    Ok((from_ms, to_ms))
}

impl RangeParams {
    pub(crate) fn to_query(&self) -> Result<RangeQuery, ApiError> {
        let (from_ms, to_ms) = resolve_range(self.from.as_deref(), self.to.as_deref())?;
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if limit == 0 || limit > MAX_PAGE_SIZE {
            return Err(ApiError::validation(ValidationError::new(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            )));
        }
        Ok(RangeQuery {
            from_ms,
            to_ms,
            after: self.cursor.as_deref().map(decode_cursor).transpose()?,
            // One more than asked, to know whether another page follows.
            limit: limit + 1,
            descending: self.order.unwrap_or_default() == Order::Desc,
        })
    }

    pub(crate) fn unit(&self) -> Result<glucosync_domain::GlucoseUnit, ApiError> {
        parse_unit(self.unit.as_deref())
    }
}

pub(crate) fn parse_unit(unit: Option<&str>) -> Result<glucosync_domain::GlucoseUnit, ApiError> {
    match unit {
        None => Ok(glucosync_domain::GlucoseUnit::MgDl),
        Some(u) => glucosync_domain::GlucoseUnit::parse(u).ok_or_else(|| {
            ApiError::validation(ValidationError::new("unit", "must be mg/dL or mmol/L"))
        }),
    }
}

/// Turns items fetched with `limit + 1` into a page with the cursor of its last item.
pub(crate) fn paginate<S, T>(
    mut fetched: Vec<S>,
    query: &RangeQuery,
    position: impl Fn(&S) -> (i64, String),
    render: impl Fn(S) -> T,
) -> Page<T> {
    let page_size = query.limit - 1;
    let more = fetched.len() > page_size;
    fetched.truncate(page_size);
    let next_cursor = if more {
        fetched.last().map(|last| {
            let (time_ms, key) = position(last);
            encode_cursor(&Cursor { time_ms, key })
        })
    } else {
        None
    };
    Page {
        items: fetched.into_iter().map(render).collect(),
        next_cursor,
    }
}

fn encode_cursor(c: &Cursor) -> String {
    hex::encode(format!("{}:{}", c.time_ms, c.key))
}

fn decode_cursor(s: &str) -> Result<Cursor, ApiError> {
    let bad = || {
        ApiError::validation(ValidationError::new(
            "cursor",
            "is not a cursor this server issued",
        ))
    };
    let raw = hex::decode(s).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (time, key) = text.split_once(':').ok_or_else(bad)?;
    Ok(Cursor {
        time_ms: time.parse().map_err(|_| bad())?,
        key: key.to_owned(),
    })
}

/// A page of a log listed newest first (the access log, the delivery log): `limit` (1–1000,
/// default 100) and the cursor of the previous page (`<time ms>.<id>` of its last entry).
pub(crate) fn log_page(
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<(usize, (i64, i64)), ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation(ValidationError::new(
            "limit",
            "must be between 1 and 1000",
        )));
    }
    let before = match cursor {
        Some(c) => c
            .split_once('.')
            .and_then(|(t, id)| Some((t.parse().ok()?, id.parse().ok()?)))
            .ok_or_else(|| {
                ApiError::validation(ValidationError::new("cursor", "not a cursor of this list"))
            })?,
        None => (i64::MAX, i64::MAX),
    };
    Ok((limit, before))
}

/// The cursor after a full page of a log; `None` after the last page.
pub(crate) fn next_log_cursor<T>(
    entries: &[T],
    limit: usize,
    position: impl Fn(&T) -> (i64, i64),
) -> Option<String> {
    (entries.len() == limit)
        .then(|| {
            entries.last().map(|e| {
                let (time, id) = position(e);
                format!("{time}.{id}")
            })
        })
        .flatten()
}

/// How many of an upload were new and how many the server already had.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadResult {
    pub inserted: u64,
    pub duplicates: u64,
}

/// The answer to an idempotent upload: 201 when something was new, 200 when all of it was
/// already stored.
pub(crate) fn upload_response(
    outcome: glucosync_store::InsertOutcome,
) -> (axum::http::StatusCode, axum::Json<UploadResult>) {
    let status = if outcome.inserted > 0 {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    };
    (
        status,
        axum::Json(UploadResult {
            inserted: outcome.inserted,
            duplicates: outcome.duplicates,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            time_ms: 1_780_000_000_000,
            key: "meal:1".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)).expect("valid"), c);
        for bad in ["zz", "", &hex::encode("no-colon"), &hex::encode("abc:1")] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_are_checked() {
        assert!(resolve_range(Some("2026-01-02T00:00:00Z"), Some("2026-01-01T00:00:00Z")).is_err());
        assert!(resolve_range(Some("2024-01-01T00:00:00Z"), Some("2026-01-01T00:00:00Z")).is_err());
        let (f, t) = resolve_range(Some("2026-01-01T00:00:00Z"), Some("2026-01-02T00:00:00Z"))
            .expect("valid");
        assert_eq!(t - f, 86_400_000);
    }
}
