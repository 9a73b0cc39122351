//! Treatments: insulin, carbohydrates, exercise, notes and pump basal rates.

use sha2::{Digest, Sha256};

use crate::error::ValidationError;
use crate::limits::{MAX_CLIENT_ID_CHARS, MAX_NOTE_CHARS};
use crate::readings::{check_short_text, check_text};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TreatmentKind {
    Insulin,
    Carbs,
    Exercise,
    Note,
    BasalRate,
}

impl TreatmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TreatmentKind::Insulin => "insulin",
            TreatmentKind::Carbs => "carbs",
            TreatmentKind::Exercise => "exercise",
            TreatmentKind::Note => "note",
            TreatmentKind::BasalRate => "basal_rate",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            TreatmentKind::Insulin,
            TreatmentKind::Carbs,
            TreatmentKind::Exercise,
            TreatmentKind::Note,
            TreatmentKind::BasalRate,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum InsulinType {
    Bolus,
    Basal,
}

impl InsulinType {
    pub fn as_str(self) -> &'static str {
        match self {
            InsulinType::Bolus => "bolus",
            InsulinType::Basal => "basal",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bolus" => Some(InsulinType::Bolus),
            "basal" => Some(InsulinType::Basal),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExerciseIntensity {
    Low,
    Moderate,
    High,
}

impl ExerciseIntensity {
    pub fn as_str(self) -> &'static str {
        match self {
            ExerciseIntensity::Low => "low",
            ExerciseIntensity::Moderate => "moderate",
            ExerciseIntensity::High => "high",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(ExerciseIntensity::Low),
            "moderate" => Some(ExerciseIntensity::Moderate),
            "high" => Some(ExerciseIntensity::High),
            _ => None,
        }
    }
}

/// What was done, with the amounts that belong to that kind and no others.
#[derive(Debug, Clone, PartialEq)]
pub enum TreatmentDetail {
    Insulin {
        units: f64,
        insulin_type: InsulinType,
        /// The product, e.g. "Fiasp"; optional.
        insulin_name: Option<String>,
    },
    Carbs {
        grams: f64,
    },
    Exercise {
        minutes: f64,
        intensity: Option<ExerciseIntensity>,
    },
    Note {
        text: String,
    },
    BasalRate {
        units_per_hour: f64,
        minutes: f64,
    },
}

impl TreatmentDetail {
    pub fn kind(&self) -> TreatmentKind {
        match self {
            TreatmentDetail::Insulin { .. } => TreatmentKind::Insulin,
            TreatmentDetail::Carbs { .. } => TreatmentKind::Carbs,
            TreatmentDetail::Exercise { .. } => TreatmentKind::Exercise,
            TreatmentDetail::Note { .. } => TreatmentKind::Note,
            TreatmentDetail::BasalRate { .. } => TreatmentKind::BasalRate,
        }
    }
}

/// A validated treatment. `id` is the client's id when it sent one; otherwise it is derived
/// from the content, so an uploader that re-sends the same event creates no duplicate
/// (Nightscout's duplicate-treatment complaint, SPEC §1.1).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTreatment {
    pub id: String,
    pub time: Timestamp,
    pub detail: TreatmentDetail,
    /// The uploader's fields GlucoSync does not model (a JSON object), kept for Nightscout
    /// clients. `None` on an update keeps what is stored.
    pub extra: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Treatment {
    pub id: String,
    pub time: Timestamp,
    pub detail: TreatmentDetail,
    pub extra: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// The fields of a treatment as they arrive, before validation. Every amount is optional here
/// so that validation can say exactly which one is missing or does not belong.
#[derive(Debug, Clone, Default)]
pub struct TreatmentFields<'a> {
    pub id: Option<&'a str>,
    pub time: &'a str,
    pub kind: &'a str,
    pub units: Option<f64>,
    pub insulin_type: Option<&'a str>,
    pub insulin_name: Option<&'a str>,
    pub grams: Option<f64>,
    pub minutes: Option<f64>,
    pub intensity: Option<&'a str>,
    pub text: Option<&'a str>,
    pub units_per_hour: Option<f64>,
}

impl NewTreatment {
    pub fn validate(f: &TreatmentFields<'_>, now_ms: i64) -> Result<Self, ValidationError> {
        let kind = TreatmentKind::parse(f.kind).ok_or_else(|| {
            ValidationError::new(
                "kind",
                "must be one of insulin, carbs, exercise, note, basal_rate",
            )
        })?;
        let time = Timestamp::parse_event_time("time", f.time, now_ms)?;
        let allowed: &[&str] = match kind {
            TreatmentKind::Insulin => &["units", "insulin_type", "insulin_name"],
            TreatmentKind::Carbs => &["grams"],
            TreatmentKind::Exercise => &["minutes", "intensity"],
            TreatmentKind::Note => &["text"],
            TreatmentKind::BasalRate => &["units_per_hour", "minutes"],
        };
        let present = [
            ("units", f.units.is_some()),
            ("insulin_type", f.insulin_type.is_some()),
            ("insulin_name", f.insulin_name.is_some()),
            ("grams", f.grams.is_some()),
            ("minutes", f.minutes.is_some()),
            ("intensity", f.intensity.is_some()),
            ("text", f.text.is_some()),
            ("units_per_hour", f.units_per_hour.is_some()),
        ];
        if let Some((name, _)) = present.iter().find(|(n, p)| *p && !allowed.contains(n)) {
            return Err(ValidationError::new(
                *name,
                format!("does not belong to a treatment of kind {}", kind.as_str()),
            ));
        }
        let detail = match kind {
            TreatmentKind::Insulin => TreatmentDetail::Insulin {
                units: amount("units", f.units, 0.0, false, 100.0)?,
                insulin_type: match f.insulin_type {
                    None => return Err(required("insulin_type", "bolus or basal")),
                    Some(s) => InsulinType::parse(s).ok_or_else(|| {
                        ValidationError::new("insulin_type", "must be bolus or basal")
                    })?,
                },
                insulin_name: f
                    .insulin_name
                    .map(|s| check_short_text("insulin_name", s).map(str::to_owned))
                    .transpose()?,
            },
            TreatmentKind::Carbs => TreatmentDetail::Carbs {
                grams: amount("grams", f.grams, 0.0, false, 500.0)?,
            },
            TreatmentKind::Exercise => TreatmentDetail::Exercise {
                minutes: amount("minutes", f.minutes, 0.0, false, 1440.0)?,
                intensity: f
                    .intensity
                    .map(|s| {
                        ExerciseIntensity::parse(s).ok_or_else(|| {
                            ValidationError::new("intensity", "must be low, moderate or high")
                        })
                    })
                    .transpose()?,
            },
            TreatmentKind::Note => {
                let text = f.text.ok_or_else(|| required("text", "the note's text"))?;
                if text.trim().is_empty() {
                    return Err(ValidationError::new("text", "must not be empty"));
                }
                TreatmentDetail::Note {
                    text: check_text("text", text, MAX_NOTE_CHARS)?.to_owned(),
                }
            }
            TreatmentKind::BasalRate => TreatmentDetail::BasalRate {
                // 0 U/h is a suspended pump, a real and important event.
                units_per_hour: amount("units_per_hour", f.units_per_hour, 0.0, true, 50.0)?,
                minutes: amount("minutes", f.minutes, 0.0, false, 1440.0)?,
            },
        };
        let id = match f.id {
            Some(id) => check_client_id(id)?.to_owned(),
            None => content_id(&time, &detail),
        };
        Ok(NewTreatment {
            id,
            time,
            detail,
            extra: None,
        })
    }
}

fn required(field: &str, what: &str) -> ValidationError {
    ValidationError::new(field, format!("is required ({what})"))
}

fn amount(
    field: &str,
    value: Option<f64>,
    min: f64,
    min_inclusive: bool,
    max: f64,
) -> Result<f64, ValidationError> {
    let v = value.ok_or_else(|| required(field, "a number"))?;
    let above_min = if min_inclusive { v >= min } else { v > min };
    if !v.is_finite() || !above_min || v > max {
        let lower = if min_inclusive {
            "at least"
        } else {
            "more than"
        };
        return Err(ValidationError::new(
            field,
            format!("must be {lower} {min} and at most {max}"),
        ));
    }
    Ok(v)
}

/// Client ids: 1–64 characters of letters, digits and `-_.:` (Nightscout's 24-hex ids and UUIDs fit).
pub fn check_client_id(id: &str) -> Result<&str, ValidationError> {
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if id.is_empty() || id.chars().count() > MAX_CLIENT_ID_CHARS || !ok_chars {
        return Err(ValidationError::new(
            "id",
            format!("must be 1–{MAX_CLIENT_ID_CHARS} characters of letters, digits and - _ . :"),
        ));
    }
    Ok(id)
}

/// A stable id from the treatment's content: the same event sent twice gets the same id.
fn content_id(time: &Timestamp, detail: &TreatmentDetail) -> String {
    let mut h = Sha256::new();
    h.update(time.utc_ms.to_le_bytes());
    h.update(detail.kind().as_str().as_bytes());
    match detail {
        TreatmentDetail::Insulin {
            units,
            insulin_type,
            insulin_name,
        } => {
            h.update(units.to_le_bytes());
            h.update(insulin_type.as_str().as_bytes());
            h.update(insulin_name.as_deref().unwrap_or("").as_bytes());
        }
        TreatmentDetail::Carbs { grams } => h.update(grams.to_le_bytes()),
        TreatmentDetail::Exercise { minutes, intensity } => {
            h.update(minutes.to_le_bytes());
            h.update(intensity.map(|i| i.as_str()).unwrap_or("").as_bytes());
        }
        TreatmentDetail::Note { text } => h.update(text.as_bytes()),
        TreatmentDetail::BasalRate {
            units_per_hour,
            minutes,
        } => {
            h.update(units_per_hour.to_le_bytes());
            h.update(minutes.to_le_bytes());
        }
    }
    format!("auto-{}", &hex::encode(h.finalize())[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000; // 2027-01-15
    const T: &str = "2026-11-20T07:05:00Z";

    fn insulin(units: f64) -> TreatmentFields<'static> {
        TreatmentFields {
            time: T,
            kind: "insulin",
            units: Some(units),
            insulin_type: Some("bolus"),
            ..Default::default()
        }
    }

    #[test]
    fn same_content_same_id_and_client_id_wins() {
        let a = NewTreatment::validate(&insulin(4.5), NOW).expect("valid");
        let b = NewTreatment::validate(&insulin(4.5), NOW).expect("valid");
        let c = NewTreatment::validate(&insulin(5.0), NOW).expect("valid");
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        let with_id = NewTreatment::validate(
            &TreatmentFields {
                id: Some("abc-1"),
                ..insulin(4.5)
            },
            NOW,
        )
        .expect("valid");
        assert_eq!(with_id.id, "abc-1");
    }

    #[test]
    fn says_what_is_missing_or_misplaced() {
        let e = NewTreatment::validate(
            &TreatmentFields {
                units: None,
                ..insulin(1.0)
            },
            NOW,
        )
        .expect_err("missing");
        assert_eq!(e.field, "units");
        let e = NewTreatment::validate(
            &TreatmentFields {
                grams: Some(10.0),
                ..insulin(1.0)
            },
            NOW,
        )
        .expect_err("misplaced");
        assert_eq!(e.field, "grams");
        let e = NewTreatment::validate(&insulin(0.0), NOW).expect_err("zero");
        assert_eq!(e.field, "units");
        let e = NewTreatment::validate(
            &TreatmentFields {
                kind: "pizza",
                ..insulin(1.0)
            },
            NOW,
        )
        .expect_err("kind");
        assert_eq!(e.field, "kind");
        let e = NewTreatment::validate(
            &TreatmentFields {
                id: Some("no spaces"),
                ..insulin(1.0)
            },
            NOW,
        )
        .expect_err("id");
        assert_eq!(e.field, "id");
    }

    #[test]
    fn suspended_pump_is_a_valid_basal_rate() {
        let t = NewTreatment::validate(
            &TreatmentFields {
                time: T,
                kind: "basal_rate",
                units_per_hour: Some(0.0),
                minutes: Some(30.0),
                ..Default::default()
            },
            NOW,
        )
        .expect("valid");
        assert_eq!(t.detail.kind(), TreatmentKind::BasalRate);
    }
}
