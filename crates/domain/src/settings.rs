//! A person's settings, with defaults from the International Consensus on Time in Range.

use chrono::NaiveTime;

use crate::alerts::AlertKind;
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
    /// Everything else about alerts.
    pub alerts: AlertPreferences,
    /// The person agreed to send aggregates of their data (never identifiers or notes) to the
    /// AI service the installation configured, for summaries and questions. Off by default.
    pub ai_insights: bool,
}

/// How a person's alerts behave beyond the thresholds above.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct AlertPreferences {
    /// A rate of change beyond this, mg/dL per minute over 15 minutes, is a rapid fall or
    /// rise (default 3; 1–10).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub rapid_rate_mgdl_per_min: f64,
    /// How far ahead a forecast reaching urgent low raises a predicted low, minutes (default
    /// 30; 20–30).
    #[cfg_attr(feature = "openapi", schema(minimum = 20, maximum = 30))]
    pub predicted_low_minutes: i64,
    /// Alert kinds turned off. Urgent low cannot be turned off.
    pub disabled: Vec<AlertKind>,
    /// Local times (in `time_zone`) between which non-urgent alerts are raised and shown but
    /// not pushed, e.g. `{"start": "22:00:00", "end": "07:00:00"}`; may span midnight.
    pub quiet_hours: Option<QuietHours>,
    /// An urgent alert nobody acknowledged is notified again this often, minutes (default 5;
    /// 1–60).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 60))]
    pub renotify_minutes: i64,
    /// Web Push to the person's own subscribed devices (default on).
    pub push: bool,
    /// Email to the account's address (default off).
    pub email: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuietHours {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "22:00:00"))]
    pub start: NaiveTime,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "07:00:00"))]
    pub end: NaiveTime,
}

impl Default for AlertPreferences {
    fn default() -> Self {
        Self {
            rapid_rate_mgdl_per_min: 3.0,
            predicted_low_minutes: 30,
            disabled: Vec::new(),
            quiet_hours: None,
            renotify_minutes: 5,
            push: true,
            email: false,
        }
    }
}

impl AlertPreferences {
    fn validate(&self) -> Result<(), ValidationError> {
        let r = self.rapid_rate_mgdl_per_min;
        if !r.is_finite() || !(1.0..=10.0).contains(&r) {
            return Err(ValidationError::new(
                "alerts.rapid_rate_mgdl_per_min",
                "must be between 1 and 10 mg/dL per minute",
            ));
        }
        if !(20..=30).contains(&self.predicted_low_minutes) {
            return Err(ValidationError::new(
                "alerts.predicted_low_minutes",
                "must be between 20 and 30 minutes",
            ));
        }
        if !(1..=60).contains(&self.renotify_minutes) {
            return Err(ValidationError::new(
                "alerts.renotify_minutes",
                "must be between 1 and 60 minutes",
            ));
        }
        if self.disabled.contains(&AlertKind::UrgentLow) {
            return Err(ValidationError::new(
                "alerts.disabled",
                "urgent low cannot be turned off",
            ));
        }
        if let Some(q) = self.quiet_hours {
            if q.start == q.end {
                return Err(ValidationError::new(
                    "alerts.quiet_hours",
                    "start and end must differ",
                ));
            }
        }
        Ok(())
    }
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
            alerts: AlertPreferences::default(),
            ai_insights: false,
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
        self.alerts.validate()
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
        assert_eq!(s.alerts, AlertPreferences::default());
    }

    #[test]
    fn alert_preferences_are_checked_and_quiet_hours_parse() {
        let s: UserSettings = serde_json::from_str(
            r#"{"alerts":{"quiet_hours":{"start":"22:00:00","end":"07:00:00"},"disabled":["high"]}}"#,
        )
        .expect("parses");
        s.validate().expect("valid");
        assert_eq!(s.alerts.disabled, vec![AlertKind::High]);
        let mut bad = s.clone();
        bad.alerts.disabled.push(AlertKind::UrgentLow);
        assert_eq!(bad.validate().expect_err("urgent").field, "alerts.disabled");
        let mut bad = s.clone();
        bad.alerts.predicted_low_minutes = 60;
        assert_eq!(
            bad.validate().expect_err("horizon").field,
            "alerts.predicted_low_minutes"
        );
        let mut bad = s;
        bad.alerts.rapid_rate_mgdl_per_min = f64::NAN;
        assert!(bad.validate().is_err());
    }
}
