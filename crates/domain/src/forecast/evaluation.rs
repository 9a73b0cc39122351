//! How forecasts are judged: the data format, the chronological protocol, and the metrics
//! (RMSE, MAE, MARD, Clarke and Parkes error grids, time lag, interval coverage).

use super::{
    baselines, fit_personal, fit_population, forecast, forecast_with, CompressionLows, Inputs,
    Scales, Series, LAGS, ROWS_PER_DAY, STEP_MS,
};

/// Parses a patient CSV: the columns of `shared/data/simglucose` (`time`, `cgm_mgdl`, and
/// optionally `carbs_g`, `bolus_u`, `basal_u_per_h`; `bg_mgdl` is never read), or a
/// glucose-only file with `time` and `glucose` (mg/dL). Rows are placed on the 5-minute grid
/// from the first row's time; missing rows stay gaps.
pub fn parse_csv(text: &str) -> Result<Series, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or("empty file")?
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
    let time_col = col(&["time", "timestamp"]).ok_or("no `time` column")?;
    let cgm_col =
        col(&["cgm_mgdl", "glucose", "glucose_mgdl"]).ok_or("no `cgm_mgdl` or `glucose` column")?;
    let (carbs_col, bolus_col, basal_col) = (
        col(&["carbs_g"]),
        col(&["bolus_u"]),
        col(&["basal_u_per_h"]),
    );
    let mut rows: Vec<(i64, f64, f64, f64, f64)> = Vec::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |c: usize| f.get(c).copied().unwrap_or("");
        let time = crate::Timestamp::parse_rfc3339("time", field(time_col))
            .map_err(|_| format!("line {}: bad time `{}`", n + 2, field(time_col)))?
            .utc_ms;
        let number = |c: Option<usize>| -> Result<f64, String> {
            match c.map(field) {
                None | Some("") => Ok(0.0),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("line {}: bad number `{v}`", n + 2)),
            }
        };
        let cgm = match field(cgm_col) {
            "" => f64::NAN,
            v => v
                .parse()
                .map_err(|_| format!("line {}: bad glucose `{v}`", n + 2))?,
        };
        rows.push((
            time,
            cgm,
            number(carbs_col)?,
            number(bolus_col)?,
            number(basal_col)?,
        ));
    }
    rows.sort_by_key(|r| r.0);
    let start_ms = rows.first().ok_or("no rows")?.0;
    let len = ((rows.last().map_or(start_ms, |r| r.0) - start_ms) / STEP_MS + 1) as usize;
    let mut series = Series {
        start_ms,
        cgm: vec![None; len],
        insulin: vec![0.0; len],
        carbs: vec![0.0; len],
        scales: Scales::default(),
        has_treatments: carbs_col.is_some() && bolus_col.is_some(),
    };
    let mut basal = vec![f64::NAN; len];
    for (time, cgm, carbs, bolus, basal_rate) in rows {
        let Some(i) = series.row_of(time) else {
            continue;
        };
        if cgm.is_finite() {
            series.cgm[i] = Some(cgm);
        }
        series.carbs[i] += carbs;
        series.insulin[i] += bolus;
        basal[i] = basal_rate;
    }
    if series.has_treatments {
        series.scales = scales_from(&series, &basal, len);
        // The usual basal is what the person's basal is most of the time: the median rate.
        let mut rates: Vec<f64> = basal.iter().copied().filter(|v| v.is_finite()).collect();
        rates.sort_by(f64::total_cmp);
        let usual = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
        for (i, rate) in basal.iter().enumerate() {
            if rate.is_finite() {
                series.insulin[i] += (rate - usual) / 12.0;
            }
        }
    }
    Ok(series)
}

/// Scales from the first `rows` rows (bolus in `series.insulin` before basal is added).
fn scales_from(series: &Series, basal: &[f64], rows: usize) -> Scales {
    let rows = rows.min(series.len());
    let bolus: f64 = series.insulin[..rows].iter().sum();
    let basal_total: f64 = basal[..rows]
        .iter()
        .filter(|v| v.is_finite())
        .map(|r| r / 12.0)
        .sum();
    let carbs: f64 = series.carbs[..rows].iter().sum();
    Scales::from_totals(
        bolus + basal_total,
        rows as f64 / ROWS_PER_DAY as f64,
        carbs,
        bolus,
    )
}

/// Clarke error grid zone (A–E) of a forecast against the reference, both mg/dL.
pub fn clarke_zone(reference: f64, predicted: f64) -> char {
    let (r, p) = (reference, predicted);
    if (r <= 70.0 && p <= 70.0) || (p <= 1.2 * r && p >= 0.8 * r) {
        'A'
    } else if (r >= 180.0 && p <= 70.0) || (r <= 70.0 && p >= 180.0) {
        'E'
    } else if ((70.0..=290.0).contains(&r) && p >= r + 110.0)
        || ((130.0..=180.0).contains(&r) && p <= 7.0 / 5.0 * r - 182.0)
    {
        'C'
    } else if (r >= 240.0 && (70.0..=180.0).contains(&p))
        || (r <= 175.0 / 3.0 && (70.0..=180.0).contains(&p))
        || ((175.0 / 3.0..=70.0).contains(&r) && p >= 6.0 / 5.0 * r)
    {
        'D'
    } else {
        'B'
    }
}

/// A polyline boundary y(x) of the Parkes grid, its last segment extended.
fn polyline(points: &[(f64, f64)], x: f64) -> Option<f64> {
    if x < points[0].0 {
        return None;
    }
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x <= x1 {
            if x1 == x0 {
                return Some(y1);
            }
            return Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0));
        }
    }
    let n = points.len();
    let ((x0, y0), (x1, y1)) = (points[n - 2], points[n - 1]);
    Some(y1 + (y1 - y0) / (x1 - x0) * (x - x1))
}

/// Parkes (consensus) error grid zone for type 1 diabetes (Parkes et al. 2000; coordinates
/// as in Pfützner et al. 2013, Table 1).
pub fn parkes_zone_type1(reference: f64, predicted: f64) -> char {
    const UPPER: [&[(f64, f64)]; 4] = [
        &[
            (0.0, 50.0),
            (30.0, 50.0),
            (140.0, 170.0),
            (280.0, 380.0),
            (430.0, 550.0),
        ],
        &[
            (0.0, 60.0),
            (30.0, 60.0),
            (50.0, 80.0),
            (70.0, 110.0),
            (260.0, 550.0),
        ],
        &[
            (0.0, 100.0),
            (25.0, 100.0),
            (50.0, 125.0),
            (80.0, 215.0),
            (125.0, 550.0),
        ],
        &[(0.0, 150.0), (35.0, 155.0), (50.0, 550.0)],
    ];
    const LOWER: [&[(f64, f64)]; 3] = [
        &[(50.0, 30.0), (170.0, 145.0), (385.0, 300.0), (550.0, 450.0)],
        &[(120.0, 30.0), (260.0, 130.0), (550.0, 250.0)],
        &[(250.0, 40.0), (550.0, 150.0)],
    ];
    let (x, y) = (reference, predicted);
    let above = |b: &[(f64, f64)]| polyline(b, x).is_some_and(|limit| y > limit);
    let below = |b: &[(f64, f64)]| polyline(b, x).is_some_and(|limit| y < limit);
    if above(UPPER[3]) {
        'E'
    } else if above(UPPER[2]) || below(LOWER[2]) {
        'D'
    } else if above(UPPER[1]) || below(LOWER[1]) {
        'C'
    } else if above(UPPER[0]) || below(LOWER[0]) {
        'B'
    } else {
        'A'
    }
}

/// The figures of one model at one horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub points: usize,
    pub rmse: f64,
    pub mae: f64,
    /// Mean absolute relative difference, %.
    pub mard: f64,
    pub clarke_a: f64,
    pub clarke_ab: f64,
    pub parkes_ab: f64,
    /// The delay, in minutes, that best aligns the forecasts with what happened: 0 for a
    /// perfect forecast, the horizon for one that repeats the current value.
    pub lag_minutes: f64,
    /// Share of actual values inside the 80 % interval, % (models with intervals).
    pub coverage: Option<f64>,
}

/// One forecast at one horizon, for scoring.
#[derive(Debug, Clone, Copy)]
struct Scored {
    /// Person and target row, for the time lag.
    person: usize,
    target_row: usize,
    actual: f64,
    predicted: f64,
    interval: Option<(f64, f64)>,
}

fn score(
    points: &[Scored],
    actual_of: &dyn Fn(usize, usize) -> Option<f64>,
    steps: usize,
) -> Scores {
    let n = points.len().max(1) as f64;
    let pct =
        |f: &dyn Fn(&Scored) -> bool| 100.0 * points.iter().filter(|p| f(p)).count() as f64 / n;
    let rmse = (points
        .iter()
        .map(|p| (p.predicted - p.actual).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let mae = points
        .iter()
        .map(|p| (p.predicted - p.actual).abs())
        .sum::<f64>()
        / n;
    let mard = 100.0
        * points
            .iter()
            .map(|p| (p.predicted - p.actual).abs() / p.actual)
            .sum::<f64>()
        / n;
    // Time lag: the shift s (in steps) minimising the mean squared difference between the
    // forecast for time τ and what was measured at τ − s.
    let lag_steps = (0..=2 * steps)
        .map(|s| {
            let (sum, count) = points.iter().fold((0.0, 0usize), |(sum, count), p| {
                match p
                    .target_row
                    .checked_sub(s)
                    .and_then(|r| actual_of(p.person, r))
                {
                    Some(a) => (sum + (p.predicted - a).powi(2), count + 1),
                    None => (sum, count),
                }
            });
            (s, sum / count.max(1) as f64)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(s, _)| s);
    let with_interval: Vec<&Scored> = points.iter().filter(|p| p.interval.is_some()).collect();
    Scores {
        points: points.len(),
        rmse,
        mae,
        mard,
        clarke_a: pct(&|p| clarke_zone(p.actual, p.predicted) == 'A'),
        clarke_ab: pct(&|p| matches!(clarke_zone(p.actual, p.predicted), 'A' | 'B')),
        parkes_ab: pct(&|p| matches!(parkes_zone_type1(p.actual, p.predicted), 'A' | 'B')),
        lag_minutes: lag_steps as f64 * 5.0,
        coverage: (!with_interval.is_empty()).then(|| {
            100.0
                * with_interval
                    .iter()
                    .filter(|p| {
                        p.interval
                            .is_some_and(|(lo, hi)| lo <= p.actual && p.actual <= hi)
                    })
                    .count() as f64
                / with_interval.len() as f64
        }),
    }
}

/// The models compared.
pub const MODELS: [&str; 6] = [
    "ar2",
    "last_value",
    "linear",
    "population",
    "personal",
    "personal_glucose_only",
];

/// Horizons reported, in steps (30 and 60 minutes).
pub const HORIZONS: [usize; 2] = [6, 12];

/// The evaluation's result: per model and horizon.
#[derive(Debug, Clone)]
pub struct Report {
    pub people: usize,
    /// `(model, horizon minutes, scores)`.
    pub rows: Vec<(&'static str, i64, Scores)>,
}

impl Report {
    pub fn get(&self, model: &str, minutes: i64) -> Option<&Scores> {
        self.rows
            .iter()
            .find(|(m, h, _)| *m == model && *h == minutes)
            .map(|(_, _, s)| s)
    }
}

/// The chronological protocol: for each person, models are fitted on the first 70 % of their
/// days (the population model on the other people's first 70 %), and every model forecasts
/// from each row of the remaining days where all of them can; no forecast sees a row after
/// its origin.
pub fn evaluate(people: &[Series]) -> Report {
    let mut scored: Vec<Vec<Vec<Scored>>> = vec![vec![Vec::new(); HORIZONS.len()]; MODELS.len()];
    for (i, person) in people.iter().enumerate() {
        let end = train_end(person);
        let population = population_without(people, i);
        let inputs = Inputs::of(person);
        let personal = fit_personal(person, end, &population);
        let glucose_only = person.glucose_only();
        let personal_glucose = fit_personal(&glucose_only, end, &population);
        for t in end..person.len().saturating_sub(1) {
            let Some(history) = recent_values(person, t) else {
                continue;
            };
            let forecasts: [Option<Vec<Step>>; 6] = [
                baselines::ar2(&history).map(no_interval),
                baselines::last_value(&history).map(no_interval),
                baselines::linear(&history).map(no_interval),
                forecast(population.for_inputs(inputs), person, t).map(with_interval),
                personal
                    .as_ref()
                    .and_then(|m| forecast(m, person, t))
                    .map(with_interval),
                personal_glucose
                    .as_ref()
                    .and_then(|m| forecast(m, &glucose_only, t))
                    .map(with_interval),
            ];
            if forecasts.iter().any(Option::is_none) {
                continue;
            }
            for (h, &steps) in HORIZONS.iter().enumerate() {
                let Some(actual) = person.cgm.get(t + steps).copied().flatten() else {
                    continue;
                };
                for (m, f) in forecasts.iter().enumerate() {
                    let (predicted, interval) = f.as_ref().expect("checked")[steps - 1];
                    scored[m][h].push(Scored {
                        person: i,
                        target_row: t + steps,
                        actual,
                        predicted,
                        interval,
                    });
                }
            }
        }
    }
    let actual_of = |person: usize, row: usize| {
        people
            .get(person)
            .and_then(|s| s.cgm.get(row).copied().flatten())
    };
    let mut rows = Vec::new();
    for (m, model) in MODELS.iter().enumerate() {
        for (h, &steps) in HORIZONS.iter().enumerate() {
            rows.push((
                *model,
                steps as i64 * 5,
                score(&scored[m][h], &actual_of, steps),
            ));
        }
    }
    Report {
        people: people.len(),
        rows,
    }
}

/// The population model fitted on everyone's training days but person `i`'s (a single person
/// can only be their own population).
fn population_without(people: &[Series], i: usize) -> super::PopulationModel {
    let others: Vec<(Series, usize)> = people
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i || people.len() == 1)
        .map(|(_, s)| (s.clone(), train_end(s)))
        .collect();
    fit_population(&others)
}

/// Where a person's training days end: 70 % of their days.
fn train_end(s: &Series) -> usize {
    let days = s.len() / ROWS_PER_DAY;
    ((days as f64 * 0.7).round() as usize).max(1) * ROWS_PER_DAY
}

/// A forecast value and its interval, if the model gives one.
type Step = (f64, Option<(f64, f64)>);

fn no_interval(v: Vec<f64>) -> Vec<Step> {
    v.into_iter().map(|p| (p, None)).collect()
}

fn with_interval(v: Vec<super::ForecastPoint>) -> Vec<Step> {
    v.into_iter()
        .map(|p| (p.mgdl, Some((p.lower, p.upper))))
        .collect()
}

/// The last three CGM values up to row `t`, consecutive (what the baselines need).
fn recent_values(series: &Series, t: usize) -> Option<Vec<f64>> {
    if t < 2 {
        return None;
    }
    series.cgm[t - 2..=t].iter().copied().collect()
}

// ---------------------------------------------------------------- compression lows

/// How the compression-low rule does on simulated compression lows (injected into each
/// person's test days) and on the untouched data.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressionReport {
    pub episodes: usize,
    /// Episodes whose onset the rule suspected (at the first or second falling reading).
    pub suspected: usize,
    /// Forecast origins inside the injected episodes, and of those, the ones whose forecast
    /// reached urgent low (55 mg/dL) within 30 minutes from a reading above it while the real
    /// glucose stayed ≥ 70: false predicted-low alarms, with the rule and without it.
    pub origins: usize,
    pub false_alarms_handled: usize,
    pub false_alarms_ignored: usize,
    /// RMSE at 30 minutes against the real glucose at those origins.
    pub rmse30_handled: f64,
    pub rmse30_ignored: f64,
    /// On the untouched test days: origins where the rule fired, and those of them followed
    /// by a real low (< 70 mg/dL) within an hour.
    pub clean_origins: usize,
    pub clean_suspected: usize,
    pub clean_suspected_before_low: usize,
    /// RMSE at 30 minutes on the untouched test days, with the rule and without it.
    pub clean_rmse30_handled: f64,
    pub clean_rmse30_ignored: f64,
}

/// Urgent low (mg/dL), the level a predicted-low alarm looks for.
const URGENT_LOW: f64 = 55.0;

/// A small deterministic generator (the injected episodes must be the same every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One simulated compression low: from `start` the readings fall to `depth` × the real
/// glucose over two readings, stay there for `hold` readings, and recover over two.
#[derive(Debug, Clone, Copy)]
struct Episode {
    start: usize,
    depth: f64,
    hold: usize,
}

impl Episode {
    fn len(&self) -> usize {
        2 + self.hold + 2
    }

    /// The factor applied to the real glucose `i` rows after `start`.
    fn factor(&self, i: usize) -> f64 {
        let fall = 1.0 - self.depth;
        match i {
            0 => 1.0 - fall / 2.0,
            i if i < 2 + self.hold => self.depth,
            i if i == 2 + self.hold => 1.0 - fall * 2.0 / 3.0,
            _ => 1.0 - fall / 3.0,
        }
    }
}

/// Two episodes a night (one in 00:00–03:00 and one in 03:00–06:00 of the series' days) in
/// rows `[from, to)`, at random times where the real glucose is 80–250 mg/dL from an hour
/// before to an hour after.
fn injected_episodes(series: &Series, from: usize, to: usize, seed: u64) -> Vec<Episode> {
    let mut rng = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = Vec::new();
    const HALF_NIGHT: usize = ROWS_PER_DAY / 8;
    for half in (2 * from.div_ceil(ROWS_PER_DAY))..usize::MAX {
        let window = (half / 2) * ROWS_PER_DAY + (half % 2) * HALF_NIGHT;
        if window + HALF_NIGHT + 3 * LAGS >= to {
            break;
        }
        for _attempt in 0..30 {
            let start = window + LAGS + (rng.next() * (HALF_NIGHT - LAGS) as f64) as usize;
            let depth = 0.55 + 0.15 * rng.next();
            let hold = 3 + (rng.next() * 6.0) as usize;
            let e = Episode { start, depth, hold };
            let around = &series.cgm[start - LAGS..(start + e.len() + LAGS).min(series.len())];
            if around
                .iter()
                .all(|v| v.is_some_and(|g| (80.0..=250.0).contains(&g)))
            {
                out.push(e);
                break;
            }
        }
    }
    out
}

/// The chronological protocol of [`evaluate`] (personal models on the first 70 % of the
/// days), on each person's test days with simulated compression lows, and without.
pub fn evaluate_compression_lows(people: &[Series]) -> CompressionReport {
    let mut r = CompressionReport {
        episodes: 0,
        suspected: 0,
        origins: 0,
        false_alarms_handled: 0,
        false_alarms_ignored: 0,
        rmse30_handled: 0.0,
        rmse30_ignored: 0.0,
        clean_origins: 0,
        clean_suspected: 0,
        clean_suspected_before_low: 0,
        clean_rmse30_handled: 0.0,
        clean_rmse30_ignored: 0.0,
    };
    let (mut sq_h, mut sq_i, mut clean_sq_h, mut clean_sq_i) = (0.0, 0.0, 0.0, 0.0);
    for (i, person) in people.iter().enumerate() {
        let end = train_end(person);
        let population = population_without(people, i);
        let inputs = Inputs::of(person);
        let model = fit_personal(person, end, &population)
            .unwrap_or_else(|| population.for_inputs(inputs).clone());
        let six = HORIZONS[0];
        // The untouched test days.
        for t in end..person.len().saturating_sub(six) {
            let (Some(h), Some(ig)) = (
                forecast_with(&model, person, t, CompressionLows::Handled),
                forecast_with(&model, person, t, CompressionLows::Ignored),
            ) else {
                continue;
            };
            let Some(actual) = person.cgm[t + six] else {
                continue;
            };
            r.clean_origins += 1;
            clean_sq_h += (h[six - 1].mgdl - actual).powi(2);
            clean_sq_i += (ig[six - 1].mgdl - actual).powi(2);
            if h != ig {
                r.clean_suspected += 1;
                let low_ahead = person.cgm[t + 1..(t + 13).min(person.len())]
                    .iter()
                    .any(|v| v.is_some_and(|g| g < 70.0));
                if low_ahead {
                    r.clean_suspected_before_low += 1;
                }
            }
        }
        // The same days with compression lows.
        let episodes = injected_episodes(person, end + LAGS, person.len(), i as u64 + 1);
        let mut injected = person.clone();
        for e in &episodes {
            for k in 0..e.len() {
                let row = e.start + k;
                injected.cgm[row] = person.cgm[row].map(|g| (g * e.factor(k)).round());
            }
        }
        for e in &episodes {
            r.episodes += 1;
            let mut suspected = false;
            for t in e.start..e.start + e.len() {
                let (Some(h), Some(ig)) = (
                    forecast_with(&model, &injected, t, CompressionLows::Handled),
                    forecast_with(&model, &injected, t, CompressionLows::Ignored),
                ) else {
                    continue;
                };
                // Recognised at the first or second falling reading.
                if t <= e.start + 1 && h != ig {
                    suspected = true;
                }
                let real: Vec<f64> = person.cgm[t + 1..=t + six]
                    .iter()
                    .flatten()
                    .copied()
                    .collect();
                let Some(actual) = person.cgm[t + six] else {
                    continue;
                };
                r.origins += 1;
                sq_h += (h[six - 1].mgdl - actual).powi(2);
                sq_i += (ig[six - 1].mgdl - actual).powi(2);
                let alarm =
                    |f: &[super::ForecastPoint]| f[..six].iter().any(|p| p.mgdl <= URGENT_LOW);
                // An alarm the forecast raises: the reading itself is not urgent low.
                let reading_above = injected.cgm[t].is_some_and(|g| g > URGENT_LOW);
                let stays_up = reading_above && real.iter().all(|&g| g >= 70.0);
                if stays_up && alarm(&h) {
                    r.false_alarms_handled += 1;
                }
                if stays_up && alarm(&ig) {
                    r.false_alarms_ignored += 1;
                }
            }
            if suspected {
                r.suspected += 1;
            }
        }
    }
    let rms = |sq: f64, n: usize| (sq / n.max(1) as f64).sqrt();
    r.rmse30_handled = rms(sq_h, r.origins);
    r.rmse30_ignored = rms(sq_i, r.origins);
    r.clean_rmse30_handled = rms(clean_sq_h, r.clean_origins);
    r.clean_rmse30_ignored = rms(clean_sq_i, r.clean_origins);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clarke_zones_at_known_points() {
        assert_eq!(clarke_zone(100.0, 110.0), 'A');
        assert_eq!(clarke_zone(60.0, 65.0), 'A');
        assert_eq!(clarke_zone(100.0, 130.0), 'B');
        assert_eq!(clarke_zone(200.0, 60.0), 'E');
        assert_eq!(clarke_zone(60.0, 200.0), 'E');
        assert_eq!(clarke_zone(100.0, 220.0), 'C');
        assert_eq!(clarke_zone(60.0, 100.0), 'D');
        assert_eq!(clarke_zone(300.0, 150.0), 'D');
    }

    #[test]
    fn parkes_zones_at_known_points() {
        assert_eq!(parkes_zone_type1(100.0, 105.0), 'A');
        // The A/B boundary at 100 mg/dL lies at 50 + 120 × 70/110 ≈ 126.4.
        assert_eq!(parkes_zone_type1(100.0, 125.0), 'A');
        assert_eq!(parkes_zone_type1(100.0, 128.0), 'B');
        assert_eq!(parkes_zone_type1(100.0, 150.0), 'B');
        assert_eq!(parkes_zone_type1(100.0, 250.0), 'C');
        assert_eq!(parkes_zone_type1(40.0, 200.0), 'D');
        assert_eq!(parkes_zone_type1(20.0, 300.0), 'E');
        assert_eq!(parkes_zone_type1(300.0, 100.0), 'C');
        assert_eq!(parkes_zone_type1(400.0, 60.0), 'D');
    }

    #[test]
    fn csv_with_and_without_treatments() {
        let full = "time,cgm_mgdl,bg_mgdl,carbs_g,bolus_u,basal_u_per_h\n\
            2025-03-03T00:00:00Z,144,149.0,0.0,0.0,0.8\n\
            2025-03-03T00:10:00Z,150,151.0,30.0,3.0,0.8\n";
        let s = parse_csv(full).expect("parses");
        assert_eq!(s.cgm, vec![Some(144.0), None, Some(150.0)]);
        assert_eq!(
            (s.carbs[2], s.insulin[2], s.has_treatments),
            (30.0, 3.0, true)
        );
        let glucose = "time,glucose\n2025-03-03T00:00:00Z,144\n2025-03-03T00:05:00Z,146\n";
        let s = parse_csv(glucose).expect("parses");
        assert_eq!((s.len(), s.has_treatments), (2, false));
        assert!(parse_csv("time,glucose\nyesterday,100\n").is_err());
    }
}
