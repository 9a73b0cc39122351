//! The column form of a treatment's detail, shared by every relational backend so that they
//! store and read treatments identically.

use glucosync_domain::treatments::{ExerciseIntensity, InsulinType, TreatmentDetail};

use crate::StoreError;

/// The Nightscout `eventType` kept in a treatment's extra fields, if any (xDrip+'s `<none>`
/// is none): with the time and kind, what decides that two uploads are the same treatment.
pub fn event_type(extra: Option<&str>) -> Option<String> {
    let fields: serde_json::Value = serde_json::from_str(extra?).ok()?;
    fields["eventType"]
        .as_str()
        .filter(|e| !e.is_empty() && *e != "<none>")
        .map(str::to_owned)
}

/// One nullable column per amount; only those of the treatment's kind are set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreatmentColumns {
    pub kind: String,
    pub units: Option<f64>,
    pub insulin_type: Option<String>,
    pub insulin_name: Option<String>,
    pub grams: Option<f64>,
    pub minutes: Option<f64>,
    pub intensity: Option<String>,
    pub text: Option<String>,
    pub units_per_hour: Option<f64>,
}

impl TreatmentColumns {
    pub fn from_detail(detail: &TreatmentDetail) -> Self {
        let kind = detail.kind().as_str().to_owned();
        match detail {
            TreatmentDetail::Insulin {
                units,
                insulin_type,
                insulin_name,
            } => TreatmentColumns {
                kind,
                units: Some(*units),
                insulin_type: Some(insulin_type.as_str().to_owned()),
                insulin_name: insulin_name.clone(),
                ..Default::default()
            },
            TreatmentDetail::Carbs { grams } => TreatmentColumns {
                kind,
                grams: Some(*grams),
                ..Default::default()
            },
            TreatmentDetail::Exercise { minutes, intensity } => TreatmentColumns {
                kind,
                minutes: Some(*minutes),
                intensity: intensity.map(|i| i.as_str().to_owned()),
                ..Default::default()
            },
            TreatmentDetail::Note { text } => TreatmentColumns {
                kind,
                text: Some(text.clone()),
                ..Default::default()
            },
            TreatmentDetail::BasalRate {
                units_per_hour,
                minutes,
            } => TreatmentColumns {
                kind,
                units_per_hour: Some(*units_per_hour),
                minutes: Some(*minutes),
                ..Default::default()
            },
        }
    }

    /// Rebuilds the detail. Columns that do not make a valid treatment are an internal error
    /// (they can only come from a bug or tampering, never from the API).
    pub fn into_detail(self) -> Result<TreatmentDetail, StoreError> {
        let bad = |what: &str| StoreError::Internal(format!("stored treatment has invalid {what}"));
        match self.kind.as_str() {
            "insulin" => match (
                self.units,
                self.insulin_type.as_deref().and_then(InsulinType::parse),
            ) {
                (Some(units), Some(insulin_type)) => Ok(TreatmentDetail::Insulin {
                    units,
                    insulin_type,
                    insulin_name: self.insulin_name,
                }),
                _ => Err(bad("insulin fields")),
            },
            "carbs" => self
                .grams
                .map(|grams| TreatmentDetail::Carbs { grams })
                .ok_or_else(|| bad("grams")),
            "exercise" => self
                .minutes
                .map(|minutes| TreatmentDetail::Exercise {
                    minutes,
                    intensity: self.intensity.as_deref().and_then(ExerciseIntensity::parse),
                })
                .ok_or_else(|| bad("minutes")),
            "note" => self
                .text
                .map(|text| TreatmentDetail::Note { text })
                .ok_or_else(|| bad("text")),
            "basal_rate" => match (self.units_per_hour, self.minutes) {
                (Some(units_per_hour), Some(minutes)) => Ok(TreatmentDetail::BasalRate {
                    units_per_hour,
                    minutes,
                }),
                _ => Err(bad("basal rate fields")),
            },
            _ => Err(bad("kind")),
        }
    }
}
