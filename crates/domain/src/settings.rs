//! A person's settings, with defaults from the International Consensus on Time in Range.

use crate::error::ValidationError;
use crate::units::GlucoseUnit;

/// Stored as one JSON document per person so that later features (alerts, quiet hours) can add
/// settings without a schema change; unknown keys in stored documents are ignored and missing
/// ones take their defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct UserSettings {
    /// The unit the person sees glucose in.
    pub display_unit: GlucoseUnit,
    /// IANA time zone, e.g. `Europe/Berlin`: where "today" and "night" are for reports.
    pub time_zone: String,
    /// Target range, mg/dL (consensus: 70–180).
    pub target_low_mgdl: f64,
    pub target_high_mgdl: f64,
    /// Low and high alert thresholds, mg/dL (consensus defaults 70 and 180).
    pub low_threshold_mgdl: f64,
    pub high_threshold_mgdl: f64,
    /// Urgent-low threshold, mg/dL (default 55; never silenced).
    pub urgent_low_mgdl: f64,
}

impl Default for UserSettings {
    fn default() -> Self {
        Self {
            display_unit: GlucoseUnit::MgDl,
            time_zone: "UTC".to_owned(),
            target_low_mgdl: 70.0,
            target_high_mgdl: 180.0,
            low_threshold_mgdl: 70.0,
            high_threshold_mgdl: 180.0,
            urgent_low_mgdl: 55.0,
        }
    }
}

/// Thresholds must lie in this range, mg/dL.
const THRESHOLD_RANGE: (f64, f64) = (40.0, 400.0);

impl UserSettings {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ValidationError::new(
                "time_zone",
                format!(
                    "`{}` is not an IANA time zone name such as Europe/Berlin or America/New_York",
                    self.time_zone.chars().take(64).collect::<String>()
                ),
            ));
        }
        for (name, v) in [
            ("target_low_mgdl", self.target_low_mgdl),
            ("target_high_mgdl", self.target_high_mgdl),
            ("low_threshold_mgdl", self.low_threshold_mgdl),
            ("high_threshold_mgdl", self.high_threshold_mgdl),
            ("urgent_low_mgdl", self.urgent_low_mgdl),
        ] {
            if !v.is_finite() || v < THRESHOLD_RANGE.0 || v > THRESHOLD_RANGE.1 {
                return Err(ValidationError::new(
                    name,
                    format!(
                        "must be between {} and {} mg/dL",
                        THRESHOLD_RANGE.0, THRESHOLD_RANGE.1
                    ),
                ));
            }
        }
        if self.target_low_mgdl >= self.target_high_mgdl {
            return Err(ValidationError::new(
                "target_low_mgdl",
                "must be below target_high_mgdl",
            ));
        }
        if self.low_threshold_mgdl >= self.high_threshold_mgdl {
            return Err(ValidationError::new(
                "low_threshold_mgdl",
                "must be below high_threshold_mgdl",
            ));
        }
        if self.urgent_low_mgdl > self.low_threshold_mgdl {
            return Err(ValidationError::new(
                "urgent_low_mgdl",
                "must not be above low_threshold_mgdl",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_consensus() {
        let s = UserSettings::default();
        s.validate().expect("defaults valid");
        assert_eq!((s.target_low_mgdl, s.target_high_mgdl), (70.0, 180.0));
    }

    #[test]
    fn refuses_bad_zone_and_inverted_ranges() {
        let bad_zone = UserSettings {
            time_zone: "Mars/Olympus".into(),
            ..Default::default()
        };
        assert_eq!(bad_zone.validate().expect_err("zone").field, "time_zone");
        let inverted = UserSettings {
            target_low_mgdl: 200.0,
            ..Default::default()
        };
        assert_eq!(
            inverted.validate().expect_err("inverted").field,
            "target_low_mgdl"
        );
        let urgent = UserSettings {
            urgent_low_mgdl: 80.0,
            ..Default::default()
        };
        assert_eq!(
            urgent.validate().expect_err("urgent").field,
            "urgent_low_mgdl"
        );
        let ok = UserSettings {
            time_zone: "Europe/Berlin".into(),
            ..Default::default()
        };
        ok.validate().expect("valid");
    }

    #[test]
    fn missing_keys_take_defaults_and_unknown_keys_are_ignored() {
        let s: UserSettings =
            serde_json::from_str(r#"{"display_unit":"mmol/L","retired_setting":1}"#)
                .expect("parses");
        assert_eq!(s.display_unit, GlucoseUnit::MmolL);
        assert_eq!(s.target_high_mgdl, 180.0);
    }
}
