//! Glucose readings: what a valid one is and how uploads are deduplicated.

use crate::error::ValidationError;
use crate::limits::MAX_SHORT_TEXT_CHARS;
use crate::time::Timestamp;
use crate::units::{GlucoseMgdl, GlucoseUnit};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ReadingKind {
    /// A continuous glucose monitor's reading (interstitial, usually every 5 minutes).
    #[default]
    Cgm,
    /// A fingerstick blood glucose meter's reading.
    Meter,
}

impl ReadingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadingKind::Cgm => "cgm",
            ReadingKind::Meter => "meter",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cgm" => Some(ReadingKind::Cgm),
            "meter" => Some(ReadingKind::Meter),
            _ => None,
        }
    }
}

/// The Dexcom / Nightscout trend arrows, spelled as uploaders send them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TrendDirection {
    DoubleUp,
    SingleUp,
    FortyFiveUp,
    Flat,
    FortyFiveDown,
    SingleDown,
    DoubleDown,
    #[serde(rename = "NOT COMPUTABLE")]
    NotComputable,
    #[serde(rename = "RATE OUT OF RANGE")]
    RateOutOfRange,
}

impl TrendDirection {
    pub const ALL: [TrendDirection; 9] = [
        TrendDirection::DoubleUp,
        TrendDirection::SingleUp,
        TrendDirection::FortyFiveUp,
        TrendDirection::Flat,
        TrendDirection::FortyFiveDown,
        TrendDirection::SingleDown,
        TrendDirection::DoubleDown,
        TrendDirection::NotComputable,
        TrendDirection::RateOutOfRange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrendDirection::DoubleUp => "DoubleUp",
            TrendDirection::SingleUp => "SingleUp",
            TrendDirection::FortyFiveUp => "FortyFiveUp",
            TrendDirection::Flat => "Flat",
            TrendDirection::FortyFiveDown => "FortyFiveDown",
            TrendDirection::SingleDown => "SingleDown",
            TrendDirection::DoubleDown => "DoubleDown",
            TrendDirection::NotComputable => "NOT COMPUTABLE",
            TrendDirection::RateOutOfRange => "RATE OUT OF RANGE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A reading that passed validation, ready to store. Its identity for deduplication is
/// (user, kind, time, device): the same reading uploaded twice is stored once.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReading {
    pub time: Timestamp,
    pub value: GlucoseMgdl,
    pub kind: ReadingKind,
    pub trend: Option<TrendDirection>,
    /// Empty when the uploader did not name a device.
    pub device: String,
    /// The uploader's fields GlucoSync does not model (a JSON object), kept for Nightscout
    /// clients, which expect their own fields back.
    pub extra: Option<String>,
}

/// A stored reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub id: i64,
    pub time: Timestamp,
    pub value: GlucoseMgdl,
    pub kind: ReadingKind,
    pub trend: Option<TrendDirection>,
    pub device: String,
    pub extra: Option<String>,
    /// When the server stored it (its clock, not the reading's time).
    pub created_ms: i64,
}

impl NewReading {
    /// Builds a reading from its parts as they arrive, checking each against the documented
    /// limits. `now_ms` is the server's clock, for the future-time check.
    pub fn validate(
        time: &str,
        value: f64,
        unit: GlucoseUnit,
        kind: ReadingKind,
        trend: Option<TrendDirection>,
        device: Option<&str>,
        now_ms: i64,
    ) -> Result<Self, ValidationError> {
        let time = Timestamp::parse_event_time("time", time, now_ms)?;
        let value = GlucoseMgdl::from_unit(value, unit)?;
        let device = match device {
            Some(d) => check_short_text("device", d)?.to_owned(),
            None => String::new(),
        };
        Ok(NewReading {
            time,
            value,
            kind,
            trend,
            device,
            extra: None,
        })
    }
}

/// Checks a short free-text field: length and no control characters.
pub fn check_short_text<'a>(field: &str, s: &'a str) -> Result<&'a str, ValidationError> {
    check_text(field, s, MAX_SHORT_TEXT_CHARS)
}

pub fn check_text<'a>(
    field: &str,
    s: &'a str,
    max_chars: usize,
) -> Result<&'a str, ValidationError> {
    if s.chars().count() > max_chars {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s)
}

/// How glucose changed to `latest` from the reading before it, when that one is recent
/// enough for the difference to mean something (Nightscout shows no delta across gaps).
pub fn delta(latest: &Reading, previous: Option<&Reading>) -> Option<f64> {
    const MAX_GAP_MS: i64 = 15 * 60 * 1000;
    let previous = previous?;
    let gap = latest.time.utc_ms - previous.time.utc_ms;
    if gap <= 0 || gap > MAX_GAP_MS {
        return None;
    }
    Some(latest.value.mgdl() - previous.value.mgdl())
}

/// The trend arrow for a rate of change in mg/dL per minute, with Dexcom's thresholds
/// (±1, ±2, ±3 mg/dL/min).
pub fn trend_from_rate(mgdl_per_min: f64) -> TrendDirection {
    match mgdl_per_min {
        r if !r.is_finite() => TrendDirection::NotComputable,
        r if r > 3.0 => TrendDirection::DoubleUp,
        r if r > 2.0 => TrendDirection::SingleUp,
        r if r > 1.0 => TrendDirection::FortyFiveUp,
        r if r >= -1.0 => TrendDirection::Flat,
        r if r >= -2.0 => TrendDirection::FortyFiveDown,
        r if r >= -3.0 => TrendDirection::SingleDown,
        _ => TrendDirection::DoubleDown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000; // 2027-01-15

    #[test]
    fn trend_names_round_trip() {
        for t in TrendDirection::ALL {
            assert_eq!(TrendDirection::parse(t.as_str()), Some(t));
        }
        assert_eq!(TrendDirection::parse("flat"), None);
    }

    #[test]
    fn validates_each_part() {
        let ok = NewReading::validate(
            "2026-11-26T07:05:00Z",
            5.5,
            GlucoseUnit::MmolL,
            ReadingKind::Cgm,
            Some(TrendDirection::Flat),
            Some("xDrip+ G7"),
            NOW,
        )
        .expect("valid");
        assert!((ok.value.mgdl() - 99.088).abs() < 1e-9);
        let long = "x".repeat(101);
        let err = NewReading::validate(
            "2026-11-26T07:05:00Z",
            100.0,
            GlucoseUnit::MgDl,
            ReadingKind::Cgm,
            None,
            Some(&long),
            NOW,
        )
        .expect_err("too long");
        assert_eq!(err.field, "device");
        let err = NewReading::validate(
            "2026-11-26T07:05:00Z",
            100.0,
            GlucoseUnit::MgDl,
            ReadingKind::Cgm,
            None,
            Some("a\u{0}b"),
            NOW,
        )
        .expect_err("control char");
        assert_eq!(err.field, "device");
    }

    #[test]
    fn trend_thresholds() {
        assert_eq!(trend_from_rate(0.5), TrendDirection::Flat);
        assert_eq!(trend_from_rate(-1.5), TrendDirection::FortyFiveDown);
        assert_eq!(trend_from_rate(2.5), TrendDirection::SingleUp);
        assert_eq!(trend_from_rate(-3.5), TrendDirection::DoubleDown);
        assert_eq!(trend_from_rate(f64::NAN), TrendDirection::NotComputable);
    }

    #[test]
    fn delta_only_across_short_gaps() {
        let r = |id, min: i64, v| Reading {
            id,
            time: Timestamp::from_utc_ms(NOW + min * 60_000),
            value: GlucoseMgdl::from_stored(v),
            kind: ReadingKind::Cgm,
            trend: None,
            extra: None,
            created_ms: 0,
            device: String::new(),
        };
        assert_eq!(delta(&r(2, 5, 110.0), Some(&r(1, 0, 100.0))), Some(10.0));
        assert_eq!(delta(&r(2, 20, 110.0), Some(&r(1, 0, 100.0))), None);
        assert_eq!(delta(&r(2, 5, 110.0), None), None);
    }
}
