//! Compression lows: a sensor pressed on (a sleeper lying on it) reads far below the real
//! glucose for a while, then recovers. The onset is a sudden steep fall straight out of a
//! steady stretch — steeper than insulin, which builds up over tens of minutes, produces from
//! a steady level. Extrapolating it would forecast a severe low and wake the person for
//! nothing; ignoring a real fall would be worse. So a fall is treated as a suspected
//! compression only where nothing explains it: the CGM was steady for the 30 minutes before,
//! not pinned at the sensor's ceiling (a saturated sensor looks steady while glucose falls),
//! and no meaningful insulin is still acting (an insulin-driven fall can look sudden behind
//! the CGM's lag). Then the forecast does not carry the fall's momentum forward (its point
//! follows the current value as if the level had been steady there), and its interval spans
//! both readings of the situation: a continued fall and a rebound. Without logged
//! treatments, insulin cannot be ruled out and nothing is suspected.
//!
//! docs/forecasting.md reports the effect on simulated compression lows injected into the
//! test data, and how often the rule fires on data without them.

use super::LAGS;

/// The steady stretch required before the fall, in rows.
const STEADY_ROWS: usize = 6;
/// Before the fall no fall may be under way: no 5-minute step down by more than this (CGM
/// noise), and no decline across the stretch of more than that (a slow decline may be a real
/// fall speeding up), mg/dL. A rise before a sudden fall is allowed: insulin turns a rise
/// around gradually.
const STEADY_STEP_MGDL: f64 = 10.0;
const STEADY_NET_MGDL: f64 = 15.0;
/// A fall over `k` rows (1–3) is sudden when it takes this share of the level per row (after
/// the first, whose share is `SUDDEN_FIRST_SHARE`), and at least 15 mg/dL.
const SUDDEN_FIRST_SHARE: f64 = 0.2;
const SUDDEN_SHARE_PER_ROW: f64 = 0.05;
const SUDDEN_MIN_MGDL: f64 = 15.0;
/// Readings at or above this are near the sensor's ceiling (400): steadiness there says
/// nothing.
const CEILING_MGDL: f64 = 380.0;
/// Insulin still to act, as the glucose it will lower (mg/dL, the model's scaled insulin on
/// board), above which a fall is explained.
const EXPLAINING_INSULIN_MGDL: f64 = 25.0;

/// A suspected compression low in the glucose history (rows `t − LAGS ..= t`, oldest first):
/// the row where its fall ended, how many rows it took (1–3), and the level before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Onset {
    pub fall_end: usize,
    pub falling_rows: usize,
    pub level_before: f64,
}

/// The compression low suspected in `history`, given the insulin still to act (`None` when
/// treatments are unknown: nothing is suspected then).
pub fn suspected_onset(history: &[f64; LAGS + 1], insulin_to_act: Option<f64>) -> Option<Onset> {
    if insulin_to_act.is_none_or(|i| i > EXPLAINING_INSULIN_MGDL) {
        return None;
    }
    sudden_fall(history)
}

/// The glucose-only part of the rule: a sudden fall after 30 minutes without a fall, within
/// the last hour, with the readings since then level (no further fall, no rebound yet).
pub fn sudden_fall(history: &[f64; LAGS + 1]) -> Option<Onset> {
    let no_fall = |rows: &[f64]| rows.windows(2).all(|w| w[1] - w[0] >= -STEADY_STEP_MGDL);
    let level = |rows: &[f64]| {
        rows.windows(2)
            .all(|w| (w[1] - w[0]).abs() <= STEADY_STEP_MGDL)
    };
    (1 + STEADY_ROWS..=LAGS).find_map(|end| {
        if !level(&history[end..]) {
            return None;
        }
        (1..=3).filter(|&k| end >= k + STEADY_ROWS).find_map(|k| {
            let before = history[end - k];
            let fall = before - history[end];
            let share = SUDDEN_FIRST_SHARE + SUDDEN_SHARE_PER_ROW * (k - 1) as f64;
            if fall < SUDDEN_MIN_MGDL.max(share * before) {
                return None;
            }
            let stretch = &history[end - k - STEADY_ROWS..=end - k];
            let below_ceiling = stretch.iter().all(|&v| v < CEILING_MGDL);
            let no_decline = stretch[STEADY_ROWS] - stretch[0] >= -STEADY_NET_MGDL;
            (no_fall(stretch) && no_decline && below_ceiling).then_some(Onset {
                fall_end: end,
                falling_rows: k,
                level_before: before,
            })
        })
    })
}

/// The history as if the level had not fallen: the stretch before the fall keeps its shape,
/// shifted down to where the fall ended, and the falling rows take that level.
pub fn without_the_fall(history: &[f64; LAGS + 1], onset: Onset) -> [f64; LAGS + 1] {
    let level = history[onset.fall_end];
    let first_falling = onset.fall_end + 1 - onset.falling_rows;
    let shift = onset.level_before - level;
    let mut out = *history;
    for v in &mut out[..first_falling] {
        *v -= shift;
    }
    for v in &mut out[first_falling..onset.fall_end] {
        *v = level;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(values: &[f64]) -> [f64; LAGS + 1] {
        let mut h = [0.0; LAGS + 1];
        h.copy_from_slice(values);
        h
    }

    #[test]
    fn a_sudden_fall_from_a_steady_level_is_suspected() {
        let h = history(&[
            121.0, 119.0, 118.0, 116.0, 114.0, 112.0, 110.0, 112.0, 111.0, 110.0, 110.0, 85.0, 62.0,
        ]);
        let onset = suspected_onset(&h, Some(0.0)).expect("suspected");
        assert_eq!(onset.fall_end, LAGS);
        assert_eq!(onset.falling_rows, 2);
        assert_eq!(onset.level_before, 110.0);
        let flat = without_the_fall(&h, onset);
        assert_eq!(flat[LAGS], 62.0);
        assert_eq!(flat[LAGS - 1], 62.0);
        assert_eq!(flat[LAGS - 2], 62.0);
        assert_eq!(flat[LAGS - 3], 110.0 - 48.0);
    }

    #[test]
    fn the_low_stays_suspected_while_it_is_level_and_not_once_it_rebounds() {
        let mut values = vec![
            112.0, 111.0, 110.0, 112.0, 111.0, 110.0, 110.0, 85.0, 62.0, 63.0, 61.0, 62.0, 60.0,
        ];
        let onset = suspected_onset(&history(&values), Some(0.0)).expect("suspected");
        assert_eq!((onset.fall_end, onset.falling_rows), (8, 2));
        let flat = without_the_fall(&history(&values), onset);
        assert_eq!(&flat[6..], &[62.0, 62.0, 62.0, 63.0, 61.0, 62.0, 60.0]);
        values.remove(0);
        values.push(85.0);
        assert!(suspected_onset(&history(&values), Some(0.0)).is_none());
    }

    #[test]
    fn falls_with_an_explanation_are_not_suspected() {
        let sudden = history(&[
            121.0, 119.0, 118.0, 116.0, 114.0, 112.0, 110.0, 112.0, 111.0, 110.0, 110.0, 85.0, 62.0,
        ]);
        // Insulin acting, or treatments unknown.
        assert!(suspected_onset(&sudden, Some(60.0)).is_none());
        assert!(suspected_onset(&sudden, None).is_none());
        // A fall that builds up over the hour.
        let gradual = history(&[
            180.0, 178.0, 175.0, 171.0, 166.0, 160.0, 153.0, 145.0, 136.0, 126.0, 115.0, 103.0,
            90.0,
        ]);
        assert!(suspected_onset(&gradual, Some(0.0)).is_none());
        // A saturated sensor (400) that starts to fall.
        let saturated = history(&[
            400.0, 400.0, 400.0, 400.0, 400.0, 400.0, 400.0, 400.0, 400.0, 400.0, 400.0, 400.0,
            370.0,
        ]);
        assert!(suspected_onset(&saturated, Some(0.0)).is_none());
        // A small dip is noise, not a fall.
        let dip = history(&[
            110.0, 111.0, 110.0, 112.0, 111.0, 110.0, 111.0, 110.0, 112.0, 111.0, 110.0, 104.0,
            99.0,
        ]);
        assert!(suspected_onset(&dip, Some(0.0)).is_none());
    }
}
