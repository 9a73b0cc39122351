//! Glycaemic metrics over CGM readings (International Consensus on Time in Range, Battelino et
//! al. 2019; GMI, Bergenstal et al. 2018; GRI, Klonoff et al. 2022; Kovatchev's risk indices).
//! `docs/analytics.md` gives each definition, formula, source and boundary convention.
//!
//! Everything is computed in mg/dL over plain slices; callers convert units at the edge.
//! Every reading counts once (no time weighting), as the reference implementation does.

use chrono::TimeZone;

/// One CGM value at an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlucosePoint {
    pub utc_ms: i64,
    pub mgdl: f64,
}

/// Percent of readings in each consensus band. The exclusive bands (`very_low` … `very_high`)
/// sum to 100; the cumulative ones are the consensus headline figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bands {
    /// < 54 mg/dL (level 2 hypoglycaemia).
    pub very_low: f64,
    /// 54 ≤ g < 70.
    pub low: f64,
    /// 70 ≤ g ≤ 180 (time in range).
    pub in_range: f64,
    /// 180 < g ≤ 250.
    pub high: f64,
    /// > 250.
    pub very_high: f64,
}

impl Bands {
    /// % < 70 (time below range, both levels).
    pub fn below_70(&self) -> f64 {
        self.very_low + self.low
    }
    /// % > 180 (time above range, both levels).
    pub fn above_180(&self) -> f64 {
        self.high + self.very_high
    }
}

pub fn bands(values: &[f64]) -> Bands {
    if values.is_empty() {
        return Bands::default();
    }
    let mut counts = [0usize; 5];
    for &g in values {
        let band = if g < 54.0 {
            0
        } else if g < 70.0 {
            1
        } else if g <= 180.0 {
            2
        } else if g <= 250.0 {
            3
        } else {
            4
        };
        counts[band] += 1;
    }
    let pct = |c: usize| 100.0 * c as f64 / values.len() as f64;
    Bands {
        very_low: pct(counts[0]),
        low: pct(counts[1]),
        in_range: pct(counts[2]),
        high: pct(counts[3]),
        very_high: pct(counts[4]),
    }
}

pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Sample standard deviation (n − 1), as CGM software and the reference use.
pub fn sd(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    Some((ss / (values.len() - 1) as f64).sqrt())
}

/// Glucose Management Indicator, % (Bergenstal et al. 2018).
pub fn gmi_percent(mean_mgdl: f64) -> f64 {
    3.31 + 0.02392 * mean_mgdl
}

/// GMI in mmol/mol (IFCC), from the same regression: 12.71 + 4.70587 × mean (mmol/L).
pub fn gmi_mmol_mol(mean_mgdl: f64) -> f64 {
    12.71 + 4.70587 * (mean_mgdl / crate::units::MGDL_PER_MMOLL)
}

/// Glycemia Risk Index (Klonoff et al. 2022) with its components and zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gri {
    pub value: f64,
    /// VLow + 0.8 × Low.
    pub hypo: f64,
    /// VHigh + 0.5 × High.
    pub hyper: f64,
    /// A (0–20) … E (80–100).
    pub zone: char,
}

pub fn gri(b: &Bands) -> Gri {
    let hypo = b.very_low + 0.8 * b.low;
    let hyper = b.very_high + 0.5 * b.high;
    let value = (3.0 * hypo + 1.6 * hyper).min(100.0);
    let zone = match value {
        v if v <= 20.0 => 'A',
        v if v <= 40.0 => 'B',
        v if v <= 60.0 => 'C',
        v if v <= 80.0 => 'D',
        _ => 'E',
    };
    Gri {
        value,
        hypo,
        hyper,
        zone,
    }
}

/// Kovatchev's symmetrised risk of one value: (low risk, high risk).
pub fn risk(g: f64) -> (f64, f64) {
    let f = 1.509 * (g.max(1.0).ln().powf(1.084) - 5.381);
    let r = 10.0 * f * f;
    if f < 0.0 {
        (r, 0.0)
    } else {
        (0.0, r)
    }
}

/// Low and high blood glucose indices: the mean over all readings of the low / high risk.
pub fn lbgi_hbgi(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let (lo, hi) = values.iter().fold((0.0, 0.0), |(l, h), &g| {
        let (rl, rh) = risk(g);
        (l + rl, h + rh)
    });
    let n = values.len() as f64;
    Some((lo / n, hi / n))
}

/// J-index: 0.001 × (mean + SD)².
pub fn j_index(mean: f64, sd: f64) -> f64 {
    0.001 * (mean + sd) * (mean + sd)
}

/// Average Daily Risk Range: the mean over calendar days (in `tz`) of the day's maximum low
/// risk plus its maximum high risk (Kovatchev et al. 2006).
pub fn adrr<Tz: TimeZone>(points: &[GlucosePoint], tz: &Tz) -> Option<f64> {
    let mut days: std::collections::BTreeMap<chrono::NaiveDate, (f64, f64)> = Default::default();
    for p in points {
        let Some(t) = tz.timestamp_millis_opt(p.utc_ms).single() else {
            continue;
        };
        let (rl, rh) = risk(p.mgdl);
        let day = days.entry(t.date_naive()).or_insert((0.0, 0.0));
        day.0 = day.0.max(rl);
        day.1 = day.1.max(rh);
    }
    if days.is_empty() {
        return None;
    }
    Some(days.values().map(|(l, h)| l + h).sum::<f64>() / days.len() as f64)
}

/// CGM values on a regular grid, as the reference implementation (iglu's `CGMS2DayByDay`)
/// builds it for the metrics that compare a reading with the one a fixed time earlier:
/// steps of the median reading interval (rounded to whole minutes) starting one step after
/// local midnight of the first reading's day, for whole days; values linearly interpolated
/// between readings, and missing (`None`) outside the data and inside gaps longer than
/// `max_gap_min` minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub step_min: i64,
    pub values: Vec<Option<f64>>,
}

pub fn grid<Tz: TimeZone>(points: &[GlucosePoint], tz: &Tz, max_gap_min: i64) -> Option<Grid> {
    let mut sorted: Vec<GlucosePoint> = points.to_vec();
    sorted.sort_by_key(|p| p.utc_ms);
    sorted.dedup_by_key(|p| p.utc_ms);
    if sorted.len() < 2 {
        return None;
    }
    let mut diffs: Vec<i64> = sorted
        .windows(2)
        .map(|w| w[1].utc_ms - w[0].utc_ms)
        .collect();
    diffs.sort_unstable();
    let median_ms = if diffs.len() % 2 == 1 {
        diffs[diffs.len() / 2] as f64
    } else {
        (diffs[diffs.len() / 2 - 1] + diffs[diffs.len() / 2]) as f64 / 2.0
    };
    let step_min = ((median_ms / 60_000.0).round() as i64).max(1);
    let step_ms = step_min * 60_000;
    let first = sorted[0].utc_ms;
    let last = sorted[sorted.len() - 1].utc_ms;
    let first_local = tz.timestamp_millis_opt(first).single()?;
    let midnight = first_local.date_naive().and_hms_opt(0, 0, 0)?;
    let start = tz
        .from_local_datetime(&midnight)
        .earliest()?
        .timestamp_millis();
    let days = ((last - first) as f64 / 86_400_000.0 + 1.0).ceil() as i64;
    let n = (days * 1440 / step_min) as usize;
    let max_gap_ms = max_gap_min * 60_000;
    let mut values = Vec::with_capacity(n);
    let mut j = 0; // sorted[j] <= t < sorted[j + 1]
    for k in 1..=n as i64 {
        let t = start + k * step_ms;
        if t < first || t > last {
            values.push(None);
            continue;
        }
        while j + 1 < sorted.len() && sorted[j + 1].utc_ms <= t {
            j += 1;
        }
        let a = sorted[j];
        if a.utc_ms == t {
            values.push(Some(a.mgdl));
            continue;
        }
        let b = sorted[j + 1];
        if b.utc_ms - a.utc_ms > max_gap_ms {
            values.push(None);
            continue;
        }
        let w = (t - a.utc_ms) as f64 / (b.utc_ms - a.utc_ms) as f64;
        values.push(Some(a.mgdl + w * (b.mgdl - a.mgdl)));
    }
    Some(Grid { step_min, values })
}

/// Gap longer than which the grid does not interpolate, minutes (the reference's default).
pub const INTERPOLATION_GAP_MIN: i64 = 45;

impl Grid {
    /// Differences between grid values `lag_min` minutes apart, where both exist.
    fn lagged_differences(&self, lag_min: i64) -> Vec<f64> {
        let lag = (lag_min / self.step_min) as usize;
        if lag == 0 || lag >= self.values.len() {
            return Vec::new();
        }
        self.values[lag..]
            .iter()
            .zip(&self.values)
            .filter_map(|(later, earlier)| Some((*later)? - (*earlier)?))
            .collect()
    }
}

/// Mean Of Daily Differences: the mean absolute difference between values 24 hours apart
/// (Molnar et al. 1972), on the interpolated grid.
pub fn modd(grid: &Grid) -> Option<f64> {
    let d = grid.lagged_differences(24 * 60);
    mean(&d.iter().map(|x| x.abs()).collect::<Vec<_>>())
}

/// Continuous Overall Net Glycaemic Action over `hours`: the sample SD of the differences
/// between values `hours` apart (McDonnell et al. 2005), on the interpolated grid.
pub fn conga(grid: &Grid, hours: i64) -> Option<f64> {
    sd(&grid.lagged_differences(hours * 60))
}

/// Mean Amplitude of Glycaemic Excursions by the moving-average algorithm of Fernandes et al.
/// (2022), as the reference implementation computes it: on the 5-minute interpolated grid,
/// split into segments at gaps longer than 3 hours; per segment, turning points are searched
/// between the crossings of a short (5-point) and a long (32-point) moving average, and the
/// excursions between them that exceed one SD are averaged upward (MAGE+) and downward
/// (MAGE−); the result is the mean of MAGE+ and MAGE− weighted by segment duration.
pub fn mage(grid: &Grid) -> Option<f64> {
    const SHORT: usize = 5;
    const LONG: usize = 32;
    const MAX_GAP_MIN: i64 = 180;
    let values = &grid.values;
    let first = values.iter().position(Option::is_some)?;
    let last = values.iter().rposition(Option::is_some)?;
    let trace = &values[first..=last];
    // Segments: runs of data separated by missing runs longer than the maximum gap.
    let mut segments: Vec<&[Option<f64>]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < trace.len() {
        if trace[i].is_none() {
            let gap_start = i;
            while i < trace.len() && trace[i].is_none() {
                i += 1;
            }
            if (i - gap_start) as i64 * grid.step_min > MAX_GAP_MIN {
                segments.push(&trace[start..gap_start]);
                start = i;
            }
        } else {
            i += 1;
        }
    }
    segments.push(&trace[start..]);
    // (value, duration) of every direction of every segment that has one.
    let mut parts: Vec<(f64, f64)> = Vec::new();
    for seg in segments.iter().filter(|s| !s.is_empty()) {
        let duration = (seg.len() - 1) as f64;
        let (plus, minus) = mage_segment(seg, SHORT, LONG);
        for v in [plus, minus].into_iter().flatten() {
            parts.push((v, duration));
        }
    }
    let total: f64 = parts.iter().map(|(_, d)| d).sum();
    if parts.is_empty() {
        return None;
    }
    if total == 0.0 {
        return mean(&parts.iter().map(|(v, _)| *v).collect::<Vec<_>>());
    }
    Some(parts.iter().map(|(v, d)| v * d / total).sum())
}

/// Rolling mean over the `width` values ending at each position, ignoring missing ones; the
/// first `width` positions take the value of the first full window.
fn rolling_mean(values: &[Option<f64>], width: usize) -> Vec<Option<f64>> {
    // A running sum and count over the window: O(n) whatever the width.
    let (mut sum, mut count) = (0.0, 0usize);
    let mut out: Vec<Option<f64>> = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            sum += v;
            count += 1;
        }
        if i >= width {
            if let Some(old) = values[i - width] {
                sum -= old;
                count -= 1;
            }
        }
        out.push((i + 1 >= width && count > 0).then(|| sum / count as f64));
    }
    if values.len() >= width {
        let fill = out[width - 1];
        for v in out.iter_mut().take(width) {
            *v = fill;
        }
    }
    out
}

/// MAGE+ and MAGE− of one segment without long gaps.
fn mage_segment(seg: &[Option<f64>], short: usize, long: usize) -> (Option<f64>, Option<f64>) {
    let n = seg.len();
    if n < 7 || n < long || seg.iter().all(Option::is_none) {
        return (None, None);
    }
    let ma_short = rolling_mean(seg, short);
    let ma_long = rolling_mean(seg, long);
    let delta: Vec<Option<f64>> = ma_short
        .iter()
        .zip(&ma_long)
        .map(|(s, l)| Some((*s)? - (*l)?))
        .collect();
    // Crossings of the two averages: (position, true for a maximum to look for).
    let is_max = |d: Option<f64>| d.is_some_and(|d| d > 0.0);
    let mut crosses: Vec<(usize, bool)> = vec![(0, is_max(delta[0]))];
    for i in 1..n {
        let (Some(_), Some(_), Some(d), Some(d_prev)) =
            (seg[i], seg[i - 1], delta[i], delta[i - 1])
        else {
            continue;
        };
        if d * d_prev < 0.0 {
            crosses.push((i, d >= d_prev));
        } else if let Some(last_delta) = delta[crosses.last().map(|c| c.0).unwrap_or(0)] {
            if d * last_delta < 0.0 {
                crosses.push((i, d >= last_delta));
            }
        }
    }
    crosses.push((n - 1, is_max(delta[n - 1])));
    // The turning point between each crossing and the next.
    let mut extrema: Vec<f64> = Vec::with_capacity(crosses.len());
    let mut turning: Vec<usize> = Vec::with_capacity(crosses.len());
    for k in 0..crosses.len() - 1 {
        let from = if k == 0 { crosses[0].0 } else { turning[k - 1] };
        let to = crosses[k + 1].0;
        let mut best: Option<(usize, f64)> = None;
        for (idx, v) in seg.iter().enumerate().take(to + 1).skip(from) {
            let Some(v) = *v else { continue };
            let better = match best {
                None => true,
                Some((_, b)) => {
                    if crosses[k].1 {
                        v > b
                    } else {
                        v < b
                    }
                }
            };
            if better {
                best = Some((idx, v));
            }
        }
        let Some((idx, v)) = best else {
            return (None, None);
        };
        extrema.push(v);
        turning.push(idx);
    }
    let data: Vec<f64> = seg.iter().flatten().copied().collect();
    let Some(sd) = sd(&data) else {
        return (None, None);
    };
    let m = extrema.len();
    let diff = |i: usize, j: usize| extrema[j] - extrema[i];

    // Upward excursions: from the lowest point since the last one to the next peak that the
    // trace then falls away from by more than one SD (or the end).
    let mut plus = Vec::new();
    let (mut j, mut prev_j) = (0usize, 0usize);
    while j < m {
        let (i, max_v) = (prev_j..=j)
            .map(|i| (i, diff(i, j)))
            .fold((prev_j, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        if max_v >= sd {
            // The scan runs from the excursion's start; `j` then follows the highest (lowest) point.
            let scan_from = j;
            for k in scan_from..m {
                if extrema[k] > extrema[j] {
                    j = k;
                }
                if diff(j, k) < -sd || k == m - 1 {
                    plus.push(extrema[j] - extrema[i]);
                    prev_j = k;
                    j = k;
                    break;
                }
            }
        } else {
            j += 1;
        }
    }
    // Downward excursions, symmetrically.
    let mut minus = Vec::new();
    let (mut j, mut prev_j) = (0usize, 0usize);
    while j < m {
        let (i, min_v) = (prev_j..=j)
            .map(|i| (i, diff(i, j)))
            .fold((prev_j, f64::MAX), |a, b| if b.1 < a.1 { b } else { a });
        if min_v <= -sd {
            // The scan runs from the excursion's start; `j` then follows the highest (lowest) point.
            let scan_from = j;
            for k in scan_from..m {
                if extrema[k] < extrema[j] {
                    j = k;
                }
                if diff(j, k) > sd || k == m - 1 {
                    minus.push(extrema[j] - extrema[i]);
                    prev_j = j;
                    j = k;
                    break;
                }
            }
        } else {
            j += 1;
        }
    }
    let avg = |v: &[f64]| mean(v).map(f64::abs);
    (avg(&plus), avg(&minus))
}

/// The summary metrics of one period (the values of SPEC §5.1's summary endpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub sd: Option<f64>,
    /// 100 × SD / mean, %.
    pub cv: Option<f64>,
    pub gmi_percent: f64,
    pub gmi_mmol_mol: f64,
    pub bands: Bands,
    pub gri: Gri,
    pub lbgi: f64,
    pub hbgi: f64,
    pub j_index: Option<f64>,
    pub adrr: Option<f64>,
    pub modd: Option<f64>,
    pub conga_1h: Option<f64>,
    pub mage: Option<f64>,
}

/// Computes the summary; `None` without readings. Readings with the same instant are expected
/// to be deduplicated by the caller (the store does).
pub fn summary<Tz: TimeZone>(points: &[GlucosePoint], tz: &Tz) -> Option<Summary> {
    let values: Vec<f64> = points.iter().map(|p| p.mgdl).collect();
    let mean = mean(&values)?;
    let sd = sd(&values);
    let bands = bands(&values);
    let (lbgi, hbgi) = lbgi_hbgi(&values)?;
    let grid = grid(points, tz, INTERPOLATION_GAP_MIN);
    Some(Summary {
        n: values.len(),
        mean,
        sd,
        cv: sd.map(|s| 100.0 * s / mean),
        gmi_percent: gmi_percent(mean),
        gmi_mmol_mol: gmi_mmol_mol(mean),
        gri: gri(&bands),
        bands,
        lbgi,
        hbgi,
        j_index: sd.map(|s| j_index(mean, s)),
        adrr: adrr(points, tz),
        modd: grid.as_ref().and_then(modd),
        conga_1h: grid.as_ref().and_then(|g| conga(g, 1)),
        mage: grid.as_ref().and_then(mage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn band_boundaries_follow_the_consensus() {
        let b = bands(&[53.9, 54.0, 69.9, 70.0, 180.0, 180.1, 250.0, 250.1]);
        assert_eq!(
            (b.very_low, b.low, b.in_range, b.high, b.very_high),
            (12.5, 25.0, 25.0, 25.0, 12.5)
        );
    }

    #[test]
    fn edge_cases_no_data_and_one_reading() {
        assert!(summary(&[], &chrono::Utc).is_none());
        let one = summary(
            &[GlucosePoint {
                utc_ms: 0,
                mgdl: 100.0,
            }],
            &chrono::Utc,
        )
        .expect("one reading");
        assert_eq!((one.n, one.mean, one.sd, one.cv), (1, 100.0, None, None));
        assert_eq!(one.bands.in_range, 100.0);
    }

    #[test]
    fn variability_metrics_need_enough_data() {
        let few: Vec<_> = (0..6)
            .map(|i| GlucosePoint {
                utc_ms: i * 300_000,
                mgdl: 100.0 + i as f64,
            })
            .collect();
        let g = grid(&few, &chrono::Utc, INTERPOLATION_GAP_MIN).expect("grid");
        assert_eq!(mage(&g), None, "fewer than 7 points");
        assert_eq!(modd(&g), None, "no two values 24 h apart");
        assert!(grid(&few[..1], &chrono::Utc, INTERPOLATION_GAP_MIN).is_none());
    }

    #[test]
    fn the_grid_does_not_bridge_long_gaps() {
        // Readings every 5 minutes with one 10-minute gap (bridged) and one 100-minute gap (not).
        let pts = [0, 5, 10, 20, 120, 125, 130, 135].map(|m| GlucosePoint {
            utc_ms: 1_780_012_800_000 + m * 60_000,
            mgdl: 100.0 + m as f64,
        });
        let g = grid(&pts, &chrono::Utc, INTERPOLATION_GAP_MIN).expect("grid");
        assert_eq!(g.step_min, 5);
        assert_eq!(g.values[0], Some(105.0)); // 00:05 (the grid starts one step after midnight)
        assert_eq!(g.values[2], Some(115.0)); // 00:15, halfway between 110 and 120
        assert_eq!(g.values[3], Some(120.0)); // 00:20
        assert_eq!(g.values[4], None); // 00:25, inside the long gap
        assert_eq!(g.values[23], Some(220.0)); // 02:00
    }

    #[test]
    fn a_regular_oscillation_has_its_amplitude_as_mage() {
        // A 4-hour sine wave of amplitude 60 (120 peak to nadir) over two days.
        let pts: Vec<_> = (0..576)
            .map(|i| GlucosePoint {
                utc_ms: 1_780_012_800_000 + i * 300_000,
                mgdl: 150.0 + 60.0 * (i as f64 * 2.0 * std::f64::consts::PI / 48.0).sin(),
            })
            .collect();
        let g = grid(&pts, &chrono::Utc, INTERPOLATION_GAP_MIN).expect("grid");
        let m = mage(&g).expect("mage");
        assert!((m - 120.0).abs() < 1.0, "MAGE {m}");
    }

    #[test]
    fn gri_zones_and_cap() {
        let worst = gri(&Bands {
            very_low: 100.0,
            ..Default::default()
        });
        assert_eq!((worst.value, worst.zone), (100.0, 'E'));
        let best = gri(&Bands {
            in_range: 100.0,
            ..Default::default()
        });
        assert_eq!((best.value, best.zone), (0.0, 'A'));
        // 2 % < 54, 3 % 54–69, 10 % 181–250, 5 % > 250 → hypo 4.4, hyper 10, GRI 29.2 (zone B).
        let g = gri(&Bands {
            very_low: 2.0,
            low: 3.0,
            in_range: 80.0,
            high: 10.0,
            very_high: 5.0,
        });
        assert!(
            (g.hypo - 4.4).abs() < 1e-9
                && (g.hyper - 10.0).abs() < 1e-9
                && (g.value - 29.2).abs() < 1e-9
        );
        assert_eq!(g.zone, 'B');
    }

    #[test]
    fn gmi_in_both_units() {
        // 154 mg/dL is the classic 7.0 %, 53 mmol/mol.
        assert!((gmi_percent(154.0) - 6.99368).abs() < 1e-4);
        assert!((gmi_mmol_mol(154.0) - 52.94).abs() < 0.05);
    }

    #[test]
    fn a_sensor_warm_up_gap_is_neither_bridged_nor_counted() {
        // Two days of readings with a new sensor's 2-hour warm-up in the middle; the old sensor
        // ended low and the new one starts low: without the gap rule those would join into one
        // long hypoglycaemia.
        let t0 = 1_780_012_800_000i64;
        let pts: Vec<GlucosePoint> = (0..576i64)
            .filter(|i| !(288..312).contains(i))
            .map(|i| GlucosePoint {
                utc_ms: t0 + i * 300_000,
                mgdl: if (280..320).contains(&i) {
                    62.0
                } else {
                    110.0 + (i % 40) as f64
                },
            })
            .collect();
        let s = summary(&pts, &chrono::Utc).expect("data");
        assert_eq!(s.n, 552);
        let hypos: Vec<_> = crate::events::events(&pts)
            .into_iter()
            .filter(|e| e.kind == crate::events::EventKind::HypoLevel1)
            .collect();
        assert_eq!(hypos.len(), 2, "{hypos:?}");
        assert!(hypos.iter().all(|e| e.duration_min() == 40.0));
        let coverage =
            crate::statistics::sufficiency(&pts, t0, t0 + 2 * 86_400_000, 300_000, &chrono::Utc);
        assert!((coverage.active_percent - 100.0 * 552.0 / 576.0).abs() < 1e-9);
        // The interpolation grid leaves the gap empty.
        let g = grid(&pts, &chrono::Utc, INTERPOLATION_GAP_MIN).expect("grid");
        let missing = g.values.iter().filter(|v| v.is_none()).count();
        assert!(missing >= 23, "{missing}");
    }

    proptest! {
        #[test]
        fn bands_sum_to_100(values in proptest::collection::vec(20.0f64..600.0, 1..500)) {
            let b = bands(&values);
            prop_assert!((b.very_low + b.low + b.in_range + b.high + b.very_high - 100.0).abs() < 1e-9);
        }

        #[test]
        fn order_does_not_matter(values in proptest::collection::vec(40.0f64..400.0, 2..300), seed in 0u64..1000) {
            let points: Vec<_> = values.iter().enumerate().map(|(i, &v)| GlucosePoint { utc_ms: i as i64 * 300_000, mgdl: v }).collect();
            let a = summary(&points, &chrono::Utc).expect("data");
            let mut shuffled = points.clone();
            let k = (seed as usize) % shuffled.len();
            shuffled.rotate_left(k);
            shuffled.reverse();
            let b = summary(&shuffled, &chrono::Utc).expect("data");
            prop_assert!((a.mean - b.mean).abs() < 1e-9);
            prop_assert!((a.sd.unwrap_or(0.0) - b.sd.unwrap_or(0.0)).abs() < 1e-9);
            prop_assert_eq!(a.bands, b.bands);
            let same = |x: Option<f64>, y: Option<f64>| match (x, y) {
                (Some(x), Some(y)) => (x - y).abs() < 1e-9,
                (x, y) => x.is_none() && y.is_none(),
            };
            prop_assert!(same(a.adrr, b.adrr));
            prop_assert!(same(a.modd, b.modd) && same(a.conga_1h, b.conga_1h) && same(a.mage, b.mage));
        }

        #[test]
        fn whole_day_shifts_keep_the_daily_metrics(values in proptest::collection::vec(40.0f64..400.0, 1..300), days in -30i64..30) {
            let points: Vec<_> = values.iter().enumerate().map(|(i, &v)| GlucosePoint { utc_ms: 1_780_000_000_000 + i as i64 * 300_000, mgdl: v }).collect();
            let shifted: Vec<_> = points.iter().map(|p| GlucosePoint { utc_ms: p.utc_ms + days * 86_400_000, ..*p }).collect();
            // In UTC a whole-day shift keeps every reading on the same time of day, so the
            // per-day metric cannot change. (In a zone with DST a shift across the change moves
            // local midnight by an hour; the DST tests of the daily statistics cover that.)
            let (a, b) = (adrr(&points, &chrono::Utc).expect("data"), adrr(&shifted, &chrono::Utc).expect("data"));
            prop_assert!((a - b).abs() < 1e-9);
        }
    }
}
