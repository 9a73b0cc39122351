//! GlucoSync's own export format: one JSON document with everything a person has, which an
//! import into any GlucoSync server turns back into the same account.
//!
//! ```json
//! { "format": "glucosync-export", "version": 1, "exported_at": "…",
//!   "account": { "email": "…", "display_name": …, "created_at": "…", "settings": {…} },
//!   "readings": [ExportedReading…], "treatments": [ExportedTreatment…],
//!   "nightscout_documents": [ExportedDocument…], "nightscout_site": {…} | null,
//!   "alert_state": {…}, "alert_deliveries": […], "shares": […], "api_tokens": […],
//!   "access_log": […] }
//! ```
//!
//! Readings, treatments and Nightscout documents are the person's data and are imported; the
//! account's display name and settings too. Alerts, shares, tokens and the access log are the
//! person's record of who saw what and when: exported, never imported (they name other
//! accounts and credentials that do not exist on another server). Times keep the offset they
//! were uploaded with; glucose is in mg/dL whatever the display unit.

use serde::{Deserialize, Serialize};

use crate::readings::{NewReading, Reading, ReadingKind, TrendDirection};
use crate::treatments::{NewTreatment, Treatment, TreatmentDetail, TreatmentFields};
use crate::{GlucoseMgdl, GlucoseUnit, Timestamp, ValidationError};

pub const EXPORT_FORMAT: &str = "glucosync-export";
pub const EXPORT_VERSION: u32 = 1;

/// One reading in an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedReading {
    /// RFC 3339 with the offset it was uploaded with.
    pub time: String,
    pub value_mgdl: f64,
    pub kind: ReadingKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<TrendDirection>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    /// The uploader's own fields (Nightscout clients').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

impl ExportedReading {
    pub fn from_reading(r: &Reading) -> Self {
        Self {
            time: r.time.to_rfc3339_local(),
            value_mgdl: r.value.mgdl(),
            kind: r.kind,
            trend: r.trend,
            device: r.device.clone(),
            extra: r
                .extra
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
        }
    }

    /// Validates it as any upload is validated.
    pub fn into_new(self, now_ms: i64) -> Result<NewReading, ValidationError> {
        let time = Timestamp::parse_event_time("time", &self.time, now_ms)?;
        let value = GlucoseMgdl::from_unit(self.value_mgdl, GlucoseUnit::MgDl)?;
        if self.device.chars().count() > crate::limits::MAX_SHORT_TEXT_CHARS {
            return Err(ValidationError::new(
                "device",
                format!(
                    "must be at most {} characters",
                    crate::limits::MAX_SHORT_TEXT_CHARS
                ),
            ));
        }
        Ok(NewReading {
            time,
            value,
            kind: self.kind,
            trend: self.trend,
            device: self.device,
            extra: extra_object(self.extra)?,
        })
    }
}

/// One treatment in an export: the API's upload fields, with its id and times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ExportedTreatment {
    pub id: String,
    pub time: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insulin_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insulin_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grams: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

impl ExportedTreatment {
    pub fn from_treatment(t: &Treatment) -> Self {
        let mut out = ExportedTreatment {
            id: t.id.clone(),
            time: t.time.to_rfc3339_local(),
            kind: t.detail.kind().as_str().to_owned(),
            extra: t
                .extra
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
            ..Default::default()
        };
        match &t.detail {
            TreatmentDetail::Insulin {
                units,
                insulin_type,
                insulin_name,
            } => {
                out.units = Some(*units);
                out.insulin_type = Some(insulin_type.as_str().to_owned());
                out.insulin_name = insulin_name.clone();
            }
            TreatmentDetail::Carbs { grams } => out.grams = Some(*grams),
            TreatmentDetail::Exercise { minutes, intensity } => {
                out.minutes = Some(*minutes);
                out.intensity = intensity.map(|i| i.as_str().to_owned());
            }
            TreatmentDetail::Note { text } => out.text = Some(text.clone()),
            TreatmentDetail::BasalRate {
                units_per_hour,
                minutes,
            } => {
                out.units_per_hour = Some(*units_per_hour);
                out.minutes = Some(*minutes);
            }
        }
        out
    }

    pub fn into_new(self, now_ms: i64) -> Result<NewTreatment, ValidationError> {
        let fields = TreatmentFields {
            id: Some(&self.id),
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
        };
        let mut treatment = NewTreatment::validate(&fields, now_ms)?;
        treatment.extra = extra_object(self.extra)?;
        Ok(treatment)
    }
}

/// One Nightscout document (device status, profile, food, …) in an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedDocument {
    /// `devicestatus`, `profile`, `food`, `settings` or `entries` (non-glucose entries).
    pub collection: String,
    pub id: String,
    pub time: String,
    pub body: serde_json::Value,
}

fn extra_object(extra: Option<serde_json::Value>) -> Result<Option<String>, ValidationError> {
    match extra {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => Ok(Some(v.to_string())),
        Some(_) => Err(ValidationError::new("extra", "must be a JSON object")),
    }
}

/// HL7 FHIR R4: a person's readings as glucose `Observation`s for clinical systems
/// (docs/export-backup-research.md, part A).
pub mod fhir {
    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};

    use crate::readings::{Reading, ReadingKind};
    use crate::GlucoseUnit;

    /// A CGM reading: LOINC 99504-3 "Glucose [Mass/volume] in Interstitial fluid" (mg/dL) or
    /// 105272-9 "Glucose [Moles/volume] in Interstitial fluid" (mmol/L), as the HL7 CGM
    /// Implementation Guide 1.0.0 profiles them.
    pub const CGM_MGDL: (&str, &str) = ("99504-3", "Glucose [Mass/volume] in Interstitial fluid");
    pub const CGM_MMOLL: (&str, &str) =
        ("105272-9", "Glucose [Moles/volume] in Interstitial fluid");
    /// A fingerstick meter reading: 41653-7 (mg/dL) or 14743-9 (mmol/L), "Glucose in
    /// Capillary blood by Glucometer". (2339-0 is a lab's blood glucose, not a meter's.)
    pub const METER_MGDL: (&str, &str) = (
        "41653-7",
        "Glucose [Mass/volume] in Capillary blood by Glucometer",
    );
    pub const METER_MMOLL: (&str, &str) = (
        "14743-9",
        "Glucose [Moles/volume] in Capillary blood by Glucometer",
    );
    const CGM_PROFILE_MGDL: &str =
        "http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-sensor-reading-mass-per-volume";
    const CGM_PROFILE_MMOLL: &str =
        "http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-sensor-reading-moles-per-volume";

    /// A stable `urn:uuid:` for a thing of a person (the same export names it the same way).
    pub fn urn(parts: &[&str]) -> String {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p.as_bytes());
            h.update([0]);
        }
        let mut b: [u8; 16] = h.finalize()[..16].try_into().unwrap_or([0; 16]);
        // RFC 9562 layout: version 8 (custom), variant 10.
        b[6] = (b[6] & 0x0F) | 0x80;
        b[8] = (b[8] & 0x3F) | 0x80;
        let hex = hex::encode(b);
        format!(
            "urn:uuid:{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// The bundle's Patient: only GlucoSync's id for them, and their display name if set.
    pub fn patient(user_id: i64, display_name: Option<&str>) -> Value {
        let mut patient = json!({
            "resourceType": "Patient",
            "identifier": [{ "system": "urn:glucosync:user", "value": user_id.to_string() }],
        });
        if let Some(name) = display_name {
            patient["name"] = json!([{ "text": name }]);
        }
        json!({ "fullUrl": urn(&["patient", &user_id.to_string()]), "resource": patient })
    }

    /// One reading as a Bundle entry, in `unit`.
    pub fn observation(user_id: i64, reading: &Reading, unit: GlucoseUnit) -> Value {
        let cgm = reading.kind == ReadingKind::Cgm;
        let ((code, display), ucum, ucum_unit) = match (cgm, unit) {
            (true, GlucoseUnit::MgDl) => (CGM_MGDL, "mg/dL", "mg/dl"),
            (true, GlucoseUnit::MmolL) => (CGM_MMOLL, "mmol/L", "mmol/l"),
            (false, GlucoseUnit::MgDl) => (METER_MGDL, "mg/dL", "mg/dl"),
            (false, GlucoseUnit::MmolL) => (METER_MMOLL, "mmol/L", "mmol/l"),
        };
        let user = user_id.to_string();
        let mut resource = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory",
                "display": "Laboratory",
            }] }],
            "code": { "coding": [{ "system": "http://loinc.org", "code": code, "display": display }] },
            "subject": { "reference": urn(&["patient", &user]) },
            "effectiveDateTime": reading.time.to_rfc3339_local(),
            "valueQuantity": {
                "value": reading.value.display(unit),
                "unit": ucum_unit,
                "system": "http://unitsofmeasure.org",
                "code": ucum,
            },
        });
        if cgm {
            let profile = match unit {
                GlucoseUnit::MgDl => CGM_PROFILE_MGDL,
                GlucoseUnit::MmolL => CGM_PROFILE_MMOLL,
            };
            resource["meta"] = json!({ "profile": [profile] });
        }
        if !reading.device.is_empty() {
            resource["device"] = json!({ "display": reading.device });
        }
        json!({
            "fullUrl": urn(&["reading", &user, &reading.id.to_string()]),
            "resource": resource,
        })
    }
}
