//! Timestamps: UTC milliseconds plus the UTC offset the client wrote them with.

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};

use crate::error::ValidationError;
use crate::limits::{EARLIEST_TIME_MS, MAX_FUTURE_SKEW_MS};

/// An instant with millisecond precision and the original UTC offset (SPEC §4). Two
/// timestamps are the same instant when their `utc_ms` agree, whatever their offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    pub utc_ms: i64,
    pub offset_minutes: i16,
}

impl Timestamp {
    pub fn from_utc_ms(utc_ms: i64) -> Self {
        Self {
            utc_ms,
            offset_minutes: 0,
        }
    }

    /// Parses RFC 3339 (`2026-11-26T08:05:00.123+01:00`). Sub-millisecond digits are truncated.
    pub fn parse_rfc3339(field: &str, s: &str) -> Result<Self, ValidationError> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|_| {
            ValidationError::new(
                field,
                "must be an RFC 3339 timestamp with a time zone, e.g. 2026-11-26T08:05:00Z",
            )
        })?;
        let offset_seconds = dt.offset().local_minus_utc();
        Ok(Self {
            utc_ms: dt.timestamp_millis(),
            // |offset| < 24 h, so minutes fit easily in i16.
            offset_minutes: (offset_seconds / 60) as i16,
        })
    }

    /// Parses and checks the time lies between 2000-01-01 and a few minutes after `now_ms`.
    pub fn parse_event_time(field: &str, s: &str, now_ms: i64) -> Result<Self, ValidationError> {
        let t = Self::parse_rfc3339(field, s)?;
        t.check_event_time(field, now_ms)?;
        Ok(t)
    }

    pub fn check_event_time(&self, field: &str, now_ms: i64) -> Result<(), ValidationError> {
        if self.utc_ms < EARLIEST_TIME_MS {
            return Err(ValidationError::new(field, "must not be before 2000-01-01"));
        }
        if self.utc_ms > now_ms + MAX_FUTURE_SKEW_MS {
            return Err(ValidationError::new(
                field,
                format!(
                    "lies more than {} minutes in the future; check the device's clock",
                    MAX_FUTURE_SKEW_MS / 60_000
                ),
            ));
        }
        Ok(())
    }

    pub fn utc(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.utc_ms)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// RFC 3339 in UTC with millisecond precision: `2026-11-26T07:05:00.123Z`.
    pub fn to_rfc3339_utc(&self) -> String {
        self.utc().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// RFC 3339 in the original offset with millisecond precision:
    /// `2026-11-26T08:05:00.123+01:00`.
    pub fn to_rfc3339_local(&self) -> String {
        let offset = FixedOffset::east_opt(i32::from(self.offset_minutes) * 60)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset is valid"));
        self.utc()
            .with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::Millis, false)
    }

    /// The original offset, formatted `+01:00`.
    pub fn offset_string(&self) -> String {
        let offset = FixedOffset::east_opt(i32::from(self.offset_minutes) * 60)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset is valid"));
        offset.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_offset_and_millis() {
        let t = Timestamp::parse_rfc3339("time", "2026-11-26T08:05:00.1239+01:00").expect("valid");
        assert_eq!(t.offset_minutes, 60);
        assert_eq!(t.to_rfc3339_utc(), "2026-11-26T07:05:00.123Z");
        assert_eq!(t.offset_string(), "+01:00");
        let z = Timestamp::parse_rfc3339("time", "2026-11-26T07:05:00.123Z").expect("valid");
        assert_eq!(z.utc_ms, t.utc_ms);
        assert_eq!(z.offset_string(), "+00:00");
    }

    #[test]
    fn refuses_bad_and_out_of_window_times() {
        let now = Timestamp::parse_rfc3339("t", "2026-11-26T00:00:00Z")
            .expect("valid")
            .utc_ms;
        assert!(Timestamp::parse_event_time("time", "yesterday", now).is_err());
        assert!(Timestamp::parse_event_time("time", "2026-11-26T00:00:00", now).is_err());
        assert!(Timestamp::parse_event_time("time", "1999-12-31T23:59:59Z", now).is_err());
        assert!(Timestamp::parse_event_time("time", "2026-11-26T00:04:59Z", now).is_ok());
        let err =
            Timestamp::parse_event_time("time", "2026-11-26T00:05:01Z", now).expect_err("future");
        assert!(err.message.contains("future"));
    }
}
