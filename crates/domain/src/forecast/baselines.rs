//! The forecasts people use today, kept for comparison.

use super::{MAX_MGDL, MIN_MGDL, STEPS};

/// The last value, held.
pub fn last_value(history: &[f64]) -> Option<Vec<f64>> {
    let last = *history.last()?;
    Some(vec![last; STEPS])
}

/// The least-squares line through the last three readings, extended.
pub fn linear(history: &[f64]) -> Option<Vec<f64>> {
    if history.len() < 3 {
        return None;
    }
    let y = &history[history.len() - 3..];
    // x = −2, −1, 0: slope = (y2 − y0) / 2, value at 0 = mean + slope.
    let slope = (y[2] - y[0]) / 2.0;
    let level = (y[0] + y[1] + y[2]) / 3.0 + slope;
    Some(
        (1..=STEPS)
            .map(|s| (level + slope * s as f64).clamp(MIN_MGDL, MAX_MGDL))
            .collect(),
    )
}

/// Nightscout's AR2: in y = ln(BG / 140), y[t+1] = −0.723·y[t−1] + 1.716·y[t] per 5 minutes,
/// from the last two readings; 140·e^y clamped to 36–400 mg/dL.
pub fn ar2(history: &[f64]) -> Option<Vec<f64>> {
    if history.len() < 2 {
        return None;
    }
    let ln = |v: f64| (v / 140.0).ln();
    let (mut prev, mut cur) = (
        ln(history[history.len() - 2]),
        ln(history[history.len() - 1]),
    );
    Some(
        (0..STEPS)
            .map(|_| {
                let next = -0.723 * prev + 1.716 * cur;
                prev = cur;
                cur = next;
                (140.0 * next.exp()).clamp(36.0, 400.0)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ar2_follows_nightscouts_recursion() {
        // Flat at 140: ln(1) = 0 stays 0.
        assert!(ar2(&[140.0, 140.0])
            .expect("two")
            .iter()
            .all(|v| (v - 140.0).abs() < 1e-9));
        // Rising 100 → 110: the first step is 140·exp(−0.723·ln(100/140) + 1.716·ln(110/140)).
        let first =
            140.0 * (-0.723 * (100.0f64 / 140.0).ln() + 1.716 * (110.0f64 / 140.0).ln()).exp();
        let f = ar2(&[100.0, 110.0]).expect("two");
        assert!((f[0] - first).abs() < 1e-9 && f[0] > 110.0);
        assert!(f.iter().all(|v| (36.0..=400.0).contains(v)));
        assert!(ar2(&[100.0]).is_none());
    }

    #[test]
    fn linear_and_last_value() {
        assert_eq!(linear(&[100.0, 105.0, 110.0]).expect("three")[1], 120.0);
        assert_eq!(last_value(&[100.0, 105.0]).expect("one")[11], 105.0);
    }
}
