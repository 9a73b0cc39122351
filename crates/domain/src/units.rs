//! Glucose units. Glucose is stored canonically in mg/dL; mmol/L is a display and input unit.

use crate::error::ValidationError;
use crate::limits::{MAX_GLUCOSE_MGDL, MIN_GLUCOSE_MGDL};

/// mg/dL per mmol/L for glucose (molar mass 180.16 g/mol). SPEC §4 fixes this factor.
pub const MGDL_PER_MMOLL: f64 = 18.016;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum GlucoseUnit {
    #[default]
    #[serde(rename = "mg/dL")]
    MgDl,
    #[serde(rename = "mmol/L")]
    MmolL,
}

impl GlucoseUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            GlucoseUnit::MgDl => "mg/dL",
            GlucoseUnit::MmolL => "mmol/L",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mg/dL" | "mg/dl" | "mgdl" => Some(GlucoseUnit::MgDl),
            "mmol/L" | "mmol/l" | "mmol" => Some(GlucoseUnit::MmolL),
            _ => None,
        }
    }
}

/// A glucose concentration in mg/dL that lies in the accepted physiologic range.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct GlucoseMgdl(f64);

impl GlucoseMgdl {
    /// Parses a value given in `unit`, refusing non-finite values and values outside
    /// [`MIN_GLUCOSE_MGDL`, `MAX_GLUCOSE_MGDL`].
    pub fn from_unit(value: f64, unit: GlucoseUnit) -> Result<Self, ValidationError> {
        if !value.is_finite() {
            return Err(ValidationError::new("value", "must be a finite number"));
        }
        let mgdl = to_mgdl(value, unit);
        if !(MIN_GLUCOSE_MGDL..=MAX_GLUCOSE_MGDL).contains(&mgdl) {
            let (lo, hi) = match unit {
                GlucoseUnit::MgDl => (MIN_GLUCOSE_MGDL, MAX_GLUCOSE_MGDL),
                GlucoseUnit::MmolL => (
                    round_to(MIN_GLUCOSE_MGDL / MGDL_PER_MMOLL, 1),
                    round_to(MAX_GLUCOSE_MGDL / MGDL_PER_MMOLL, 1),
                ),
            };
            return Err(ValidationError::new(
                "value",
                format!(
                    "{value} {} is outside the range a sensor or meter reports ({lo}–{hi} {})",
                    unit.as_str(),
                    unit.as_str()
                ),
            ));
        }
        Ok(GlucoseMgdl(mgdl))
    }

    /// Wraps a value read back from storage, which was validated when it was written.
    pub fn from_stored(mgdl: f64) -> Self {
        GlucoseMgdl(mgdl)
    }

    pub fn mgdl(self) -> f64 {
        self.0
    }

    /// The value for display in `unit`: mg/dL to 1 decimal at most, mmol/L to 1 decimal.
    pub fn display(self, unit: GlucoseUnit) -> f64 {
        match unit {
            GlucoseUnit::MgDl => round_to(self.0, 1),
            GlucoseUnit::MmolL => round_to(self.0 / MGDL_PER_MMOLL, 1),
        }
    }
}

pub fn to_mgdl(value: f64, unit: GlucoseUnit) -> f64 {
    match unit {
        GlucoseUnit::MgDl => value,
        GlucoseUnit::MmolL => value * MGDL_PER_MMOLL,
    }
}

pub fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// SPEC §4: a value entered in mmol/L with one decimal must round-trip exactly.
        #[test]
        fn mmol_with_one_decimal_round_trips(tenths in 12u32..=333) {
            let mmol = f64::from(tenths) / 10.0;
            let stored = GlucoseMgdl::from_unit(mmol, GlucoseUnit::MmolL).expect("in range");
            prop_assert_eq!(stored.display(GlucoseUnit::MmolL), mmol);
        }

        /// Whole mg/dL values survive storage and display unchanged.
        #[test]
        fn integer_mgdl_round_trips(v in 20u32..=600) {
            let stored = GlucoseMgdl::from_unit(f64::from(v), GlucoseUnit::MgDl).expect("in range");
            prop_assert_eq!(stored.display(GlucoseUnit::MgDl), f64::from(v));
        }

        /// mg/dL → mmol/L → mg/dL loses at most the rounding of one mmol/L decimal (0.9 mg/dL).
        #[test]
        fn mgdl_via_mmol_is_close(v in 20.0f64..=600.0) {
            let shown = GlucoseMgdl::from_unit(v, GlucoseUnit::MgDl).expect("in range").display(GlucoseUnit::MmolL);
            prop_assert!((shown * MGDL_PER_MMOLL - v).abs() <= 0.05 * MGDL_PER_MMOLL + 1e-9);
        }
    }

    #[test]
    fn refuses_out_of_range_and_non_finite() {
        assert!(GlucoseMgdl::from_unit(19.9, GlucoseUnit::MgDl).is_err());
        assert!(GlucoseMgdl::from_unit(600.1, GlucoseUnit::MgDl).is_err());
        assert!(GlucoseMgdl::from_unit(f64::NAN, GlucoseUnit::MgDl).is_err());
        assert!(GlucoseMgdl::from_unit(f64::INFINITY, GlucoseUnit::MmolL).is_err());
        assert!(GlucoseMgdl::from_unit(1.0, GlucoseUnit::MmolL).is_err());
        let err = GlucoseMgdl::from_unit(40.0, GlucoseUnit::MmolL).expect_err("too high");
        assert!(err.message.contains("1.1–33.3 mmol/L"), "{}", err.message);
    }
}
