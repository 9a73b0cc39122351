//! Glucose forecasts at 5-minute steps up to 60 minutes: the baselines people use today
//! (`baselines`), GlucoSync's model (this module), and the evaluation protocol (`evaluation`).
//!
//! The model (docs/forecasting.md has the derivation and the measurements): for each step
//! ahead a separate ridge regression predicts the *change* of glucose from the current CGM
//! value, its last 12 differences, three level nonlinearities, and what the logged insulin
//! and carbohydrates will do: on board, acting now, and — known at the forecast time from the
//! doses already given — acting within the forecast window, on two activity curves each. A
//! population model, fitted on many people with their insulin and carbs scaled by their own
//! sensitivity, serves new users; a personal model is fitted on the person's own data,
//! shrunk towards the population coefficients, once three days exist. Each step carries its
//! 80 % prediction interval from out-of-sample residuals.
//!
//! Pure: no I/O, no clock. Informational only — nothing here is dosing advice.

pub mod baselines;
pub mod compression;
pub mod curves;
pub mod evaluation;
mod ridge;

use serde::{Deserialize, Serialize};

/// The grid the models work on.
pub const STEP_MS: i64 = 5 * 60_000;
/// Steps ahead forecast: 12 × 5 = 60 minutes.
pub const STEPS: usize = 12;
/// CGM differences used as inputs (60 minutes).
pub const LAGS: usize = 12;
/// How far back doses still act (8 hours): the curves' support.
pub const DOSE_HISTORY: usize = 96;
/// Rows per day on the grid.
pub const ROWS_PER_DAY: usize = 288;
/// A personal model needs this much of the person's own data.
pub const MIN_PERSONAL_DAYS: usize = 3;
/// Gaps in the CGM history up to this many missing rows are bridged linearly (15 minutes).
pub const MAX_BRIDGED_ROWS: usize = 3;

/// One person's data on a regular 5-minute grid: row `i` is `start_ms + i × 5 min`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub start_ms: i64,
    /// The CGM value of each row (mg/dL), `None` where the sensor gave none.
    pub cgm: Vec<Option<f64>>,
    /// Rapid-acting insulin given in each row beyond the usual basal (boluses, plus a pump's
    /// basal above or, negative, below the person's usual rate), units.
    pub insulin: Vec<f64>,
    /// Carbohydrates eaten in each row, grams.
    pub carbs: Vec<f64>,
    /// How this person's insulin and carbs translate into glucose (see [`Scales`]).
    pub scales: Scales,
    /// Whether treatments are logged at all; without them only the glucose-only model applies.
    pub has_treatments: bool,
}

impl Series {
    pub fn len(&self) -> usize {
        self.cgm.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cgm.is_empty()
    }

    /// The same data without treatments (what a person who logs none gives us).
    pub fn glucose_only(&self) -> Series {
        Series {
            insulin: vec![0.0; self.len()],
            carbs: vec![0.0; self.len()],
            has_treatments: false,
            ..self.clone()
        }
    }

    /// Rows `[from, to)`.
    pub fn slice(&self, from: usize, to: usize) -> Series {
        let to = to.min(self.len());
        let from = from.min(to);
        Series {
            start_ms: self.start_ms + from as i64 * STEP_MS,
            cgm: self.cgm[from..to].to_vec(),
            insulin: self.insulin[from..to].to_vec(),
            carbs: self.carbs[from..to].to_vec(),
            ..*self
        }
    }

    /// The grid row of an instant (rounded to the nearest row).
    pub fn row_of(&self, utc_ms: i64) -> Option<usize> {
        let offset = utc_ms - self.start_ms;
        if offset < -STEP_MS / 2 {
            return None;
        }
        let row = ((offset + STEP_MS / 2) / STEP_MS) as usize;
        (row < self.len()).then_some(row)
    }
}

impl Series {
    /// The grid from `start_ms` to `end_ms` (inclusive, rounded to rows) filled from stored
    /// data: CGM points, bolus insulin and carbohydrates at their rows, and a pump's basal rate
    /// as its deviation from the person's usual (median) rate while it runs. Basal injections
    /// are the usual basal and not an input. `scales` come from a longer window
    /// ([`Scales::from_treatments`]).
    pub fn from_records(
        start_ms: i64,
        end_ms: i64,
        points: &[crate::analytics::GlucosePoint],
        treatments: &[crate::treatments::Treatment],
        scales: Scales,
    ) -> Series {
        Series::from_points(start_ms, end_ms, points.iter().copied(), treatments, scales)
    }

    /// As [`Series::from_records`], from CGM points in any iterable.
    pub fn from_points(
        start_ms: i64,
        end_ms: i64,
        points: impl IntoIterator<Item = crate::analytics::GlucosePoint>,
        treatments: &[crate::treatments::Treatment],
        scales: Scales,
    ) -> Series {
        let mut series = Series {
            start_ms,
            cgm: Vec::new(),
            insulin: Vec::new(),
            carbs: Vec::new(),
            scales,
            has_treatments: false,
        };
        series.refill(start_ms, end_ms, points, treatments, scales);
        series
    }

    /// Makes this series [`Series::from_points`]'s, reusing its vectors: a server forecasting
    /// every reading keeps one series per thread rather than allocating three per forecast.
    pub fn refill(
        &mut self,
        start_ms: i64,
        end_ms: i64,
        points: impl IntoIterator<Item = crate::analytics::GlucosePoint>,
        treatments: &[crate::treatments::Treatment],
        scales: Scales,
    ) {
        use crate::treatments::{InsulinType, TreatmentDetail};
        let len = ((end_ms - start_ms).max(0) / STEP_MS + 1) as usize;
        let series = self;
        series.start_ms = start_ms;
        series.scales = scales;
        series.has_treatments = false;
        for v in [&mut series.insulin, &mut series.carbs] {
            v.clear();
            v.resize(len, 0.0);
        }
        series.cgm.clear();
        series.cgm.resize(len, None);
        for p in points {
            if let Some(row) = series.row_of(p.utc_ms) {
                series.cgm[row] = Some(p.mgdl);
            }
        }
        let mut rates: Vec<(i64, f64, f64)> = Vec::new();
        for t in treatments {
            match &t.detail {
                TreatmentDetail::Insulin {
                    units,
                    insulin_type: InsulinType::Bolus,
                    ..
                } => {
                    series.has_treatments = true;
                    if let Some(row) = series.row_of(t.time.utc_ms) {
                        series.insulin[row] += units;
                    }
                }
                TreatmentDetail::Carbs { grams } => {
                    series.has_treatments = true;
                    if let Some(row) = series.row_of(t.time.utc_ms) {
                        series.carbs[row] += grams;
                    }
                }
                TreatmentDetail::BasalRate {
                    units_per_hour,
                    minutes,
                } => rates.push((t.time.utc_ms, *units_per_hour, *minutes)),
                _ => {}
            }
        }
        if rates.is_empty() {
            return;
        }
        rates.sort_by_key(|r| r.0);
        let mut per_row = vec![f64::NAN; len];
        for (i, &(start, rate, minutes)) in rates.iter().enumerate() {
            let mut end = start + (minutes * 60_000.0) as i64;
            if let Some(next) = rates.get(i + 1) {
                end = end.min(next.0);
            }
            for (row, slot) in per_row.iter_mut().enumerate() {
                let t = start_ms + row as i64 * STEP_MS;
                if t >= start && t < end {
                    *slot = rate;
                }
            }
        }
        let mut known: Vec<f64> = per_row.iter().copied().filter(|v| v.is_finite()).collect();
        if !known.is_empty() {
            known.sort_by(f64::total_cmp);
            let usual = known[known.len() / 2];
            for (row, rate) in per_row.iter().enumerate() {
                if rate.is_finite() {
                    series.insulin[row] += (rate - usual) / 12.0;
                }
            }
        }
    }
}

impl Scales {
    /// From the treatments of `[from_ms, to_ms)`: all insulin (boluses, basal injections and
    /// pump basal), boluses, carbohydrates.
    pub fn from_treatments(
        treatments: &[crate::treatments::Treatment],
        from_ms: i64,
        to_ms: i64,
    ) -> Scales {
        let t = crate::statistics::treatment_totals(treatments, from_ms, to_ms);
        Scales::from_totals(
            t.bolus_units + t.basal_units,
            t.days,
            t.carbs_grams,
            t.bolus_units,
        )
    }
}

/// Per-person scaling of the treatment inputs, so that one population model fits people whose
/// insulin sensitivity differs tenfold: insulin is multiplied by ISF / 40 and carbohydrates by
/// ISF / CR / 4, with the 1800 rule's ISF = 1800 / total daily insulin and the carb ratio
/// CR = carbs / bolus insulin over the same days.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scales {
    pub insulin: f64,
    pub carbs: f64,
}

/// The insulin scale is ISF divided by this: a scaled insulin amount × this is the glucose
/// (mg/dL) it lowers.
const ISF_PER_INSULIN_SCALE: f64 = 40.0;

impl Default for Scales {
    /// A typical adult: 40 U/day (ISF 45 mg/dL/U), 10 g/U.
    fn default() -> Self {
        Scales::from_totals(40.0, 1.0, 10.0, 1.0)
    }
}

impl Scales {
    /// From totals over `days`: all insulin (bolus and basal), bolus insulin alone, carbs.
    pub fn from_totals(total_insulin: f64, days: f64, carbs: f64, bolus: f64) -> Scales {
        let tdd = if days > 0.0 {
            total_insulin / days
        } else {
            0.0
        };
        // NaN fails these comparisons too.
        if tdd.is_nan()
            || tdd <= 1.0
            || bolus.is_nan()
            || bolus <= 0.0
            || carbs.is_nan()
            || carbs <= 0.0
        {
            return Scales::default_scales();
        }
        let isf = 1800.0 / tdd;
        let cr = (carbs / bolus).clamp(2.0, 50.0);
        Scales {
            insulin: isf / ISF_PER_INSULIN_SCALE,
            carbs: isf / cr / 4.0,
        }
    }

    fn default_scales() -> Scales {
        let isf = 1800.0 / 40.0;
        Scales {
            insulin: isf / 40.0,
            carbs: isf / 10.0 / 4.0,
        }
    }
}

/// Which inputs a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inputs {
    /// Glucose history, insulin and carbohydrates.
    Full,
    /// Glucose history only (people who log no treatments).
    GlucoseOnly,
}

impl Inputs {
    /// The inputs a person's series supports: treatments when they were logged.
    pub fn of(series: &Series) -> Inputs {
        if series.has_treatments {
            Inputs::Full
        } else {
            Inputs::GlucoseOnly
        }
    }

    fn features(self) -> usize {
        match self {
            Inputs::Full => FULL_FEATURES,
            Inputs::GlucoseOnly => GLUCOSE_FEATURES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Population,
    Personal,
}

/// The model of one step ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepModel {
    /// Standardisation of the features (from the population's training rows).
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
    /// Intercept, then one coefficient per standardised feature.
    pub beta: Vec<f64>,
    /// The 10th and 90th percentiles of out-of-sample errors (actual − forecast), mg/dL: the
    /// 80 % prediction interval around a forecast.
    pub error_p10: f64,
    pub error_p90: f64,
    /// `beta` folded into the standardisation for serving ([`ridge::fold`]), made on first use.
    #[serde(skip)]
    folded: Folded,
}

impl StepModel {
    pub fn new(
        mean: Vec<f64>,
        sd: Vec<f64>,
        beta: Vec<f64>,
        error_p10: f64,
        error_p90: f64,
    ) -> Self {
        StepModel {
            mean,
            sd,
            beta,
            error_p10,
            error_p90,
            folded: Folded::default(),
        }
    }

    fn folded(&self) -> &[f64] {
        self.folded
            .0
            .get_or_init(|| ridge::fold(&self.beta, &self.mean, &self.sd).into())
    }
}

/// Derived from the other fields, so it takes no part in comparisons.
#[derive(Debug, Clone, Default)]
struct Folded(std::sync::OnceLock<Box<[f64]>>);

impl PartialEq for Folded {
    fn eq(&self, _: &Folded) -> bool {
        true
    }
}

/// A fitted model: one [`StepModel`] per step ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub kind: ModelKind,
    pub inputs: Inputs,
    pub steps: Vec<StepModel>,
    /// Rows the model was fitted on (all steps together count once).
    pub training_rows: usize,
}

/// The population models: one with treatments and one without.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopulationModel {
    pub full: Model,
    pub glucose_only: Model,
}

impl PopulationModel {
    pub fn for_inputs(&self, inputs: Inputs) -> &Model {
        match inputs {
            Inputs::Full => &self.full,
            Inputs::GlucoseOnly => &self.glucose_only,
        }
    }
}

/// The population model GlucoSync ships: fitted on the nine simulated people of
/// `shared/data/simglucose` (all ten days each) by `glucoengine model fit-population`; a test
/// checks that refitting gives exactly this file.
pub const SHIPPED_POPULATION_JSON: &str = include_str!("population.json");

impl PopulationModel {
    pub fn shipped() -> PopulationModel {
        serde_json::from_str(SHIPPED_POPULATION_JSON).expect("the shipped population model parses")
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a model serialises")
    }
}

/// One step of a forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastPoint {
    /// Minutes ahead of the forecast's origin (5, 10, …, 60).
    pub minutes: i64,
    pub mgdl: f64,
    /// The 80 % prediction interval.
    pub lower: f64,
    pub upper: f64,
}

/// Sensor range: forecasts are clamped to what a CGM can show.
pub const MIN_MGDL: f64 = 40.0;
pub const MAX_MGDL: f64 = 400.0;

/// Below 100 mg/dL, forecasts up to 30 minutes ahead are lowered by up to this much (the full
/// amount at ≤ 70): missing a coming low is the costly error (Clarke zone D), so the forecast
/// leans towards warning. Chosen on training folds (docs/forecasting.md).
pub const HYPO_LEAN_MGDL: f64 = 15.0;
const HYPO_LEAN_STEPS: usize = 6;

fn hypo_lean(step: usize, mgdl: f64) -> f64 {
    if step > HYPO_LEAN_STEPS {
        return mgdl;
    }
    mgdl - HYPO_LEAN_MGDL * ((100.0 - mgdl) / 30.0).clamp(0.0, 1.0)
}

// ---------------------------------------------------------------- features

const GLUCOSE_FEATURES: usize = 1 + LAGS + 3;
const FULL_FEATURES: usize = GLUCOSE_FEATURES + 10;

/// Insulin: oref0's exponential curve, 6 h duration, peaks at 100 and 50 minutes.
const INSULIN_DURATION_MIN: f64 = 360.0;
const INSULIN_PEAKS_MIN: [f64; 2] = [100.0, 50.0];
/// Carbohydrates: gamma(2) absorption peaking at 25 and 10 minutes.
const CARB_PEAKS_MIN: [f64; 2] = [25.0, 10.0];

/// The dose kernels: for each row `k` rows back (τ = 5k min), the fraction on board, the
/// fraction acting in the next 5 minutes, and the fraction acting within each step's window.
#[derive(Debug, Clone)]
struct Kernels {
    on_board: Vec<f64>,
    acting_now: Vec<f64>,
    /// `ahead[s][k]`: the fraction acting in (t, t + 5(s+1) min].
    ahead: Vec<Vec<f64>>,
}

impl Kernels {
    fn new(remaining: impl Fn(f64) -> f64) -> Kernels {
        let tau = |k: usize| 5.0 * k as f64;
        Kernels {
            on_board: (0..DOSE_HISTORY).map(|k| remaining(tau(k))).collect(),
            acting_now: (0..DOSE_HISTORY)
                .map(|k| remaining(tau(k)) - remaining(tau(k) + 5.0))
                .collect(),
            ahead: (1..=STEPS)
                .map(|s| {
                    (0..DOSE_HISTORY)
                        .map(|k| remaining(tau(k)) - remaining(tau(k) + 5.0 * s as f64))
                        .collect()
                })
                .collect(),
        }
    }
}

struct AllKernels {
    insulin: [Kernels; 2],
    carbs: [Kernels; 2],
}

fn kernels() -> &'static AllKernels {
    static K: std::sync::OnceLock<AllKernels> = std::sync::OnceLock::new();
    K.get_or_init(|| AllKernels {
        insulin: INSULIN_PEAKS_MIN.map(|peak| {
            Kernels::new(move |t| curves::insulin_on_board(t, INSULIN_DURATION_MIN, peak))
        }),
        carbs: CARB_PEAKS_MIN.map(|peak| Kernels::new(move |t| curves::carbs_unabsorbed(t, peak))),
    })
}

/// Σ_k x[t−k]·kernel[k] for each of `kernels`, over the history of row `t` (rows before the
/// series count as 0), nearest dose first. Doses are few: one pass over the history visits
/// each dose once for all the kernels, rather than 26 passes over all 96 rows.
fn convolve_all<const N: usize>(x: &[f64], t: usize, kernels: &[&[f64]; N]) -> [f64; N] {
    let mut sums = [0.0; N];
    for k in 0..DOSE_HISTORY.min(t + 1) {
        let v = x[t - k];
        if v != 0.0 {
            for (sum, kernel) in sums.iter_mut().zip(kernels) {
                *sum += v * kernel[k];
            }
        }
    }
    sums
}

/// The kernels of one kind of dose convolved at an origin: on board and acting now (slow
/// curve), then the slow and the fast curve's fraction acting within each step's window.
const DOSE_SUMS: usize = 2 + 2 * STEPS;

fn dose_kernels(k: &[Kernels; 2]) -> [&[f64]; DOSE_SUMS] {
    std::array::from_fn(|i| match i {
        0 => &k[0].on_board[..],
        1 => &k[0].acting_now[..],
        _ => &k[(i - 2) % 2].ahead[(i - 2) / 2][..],
    })
}

/// The CGM values of rows `t − LAGS ..= t`, short gaps bridged; `None` when the current value
/// is missing or a gap is too long.
fn glucose_history(cgm: &[Option<f64>], t: usize) -> Option<[f64; LAGS + 1]> {
    if t < LAGS {
        return None;
    }
    let window = &cgm[t - LAGS..=t];
    window[LAGS]?;
    let mut out = [0.0; LAGS + 1];
    let mut last_known: Option<usize> = None;
    for i in 0..=LAGS {
        if let Some(v) = window[i] {
            {
                if let Some(j) = last_known {
                    if i - j > MAX_BRIDGED_ROWS + 1 {
                        return None;
                    }
                    let from = out[j];
                    // Empty unless a value is missing (the `take`/`skip` chain this
                    // replaced cost ~40 instructions per row even when empty).
                    for (k, slot) in out[j + 1..i].iter_mut().enumerate() {
                        let f = (k + 1) as f64 / (i - j) as f64;
                        *slot = from + f * (v - from);
                    }
                } else if i > MAX_BRIDGED_ROWS {
                    return None;
                } else {
                    // Missing oldest values: hold the first known one.
                    out[..i].fill(v);
                }
                out[i] = v;
                last_known = Some(i);
            }
        }
    }
    Some(out)
}

/// The features shared by every step, and the per-step dose sums.
struct Origin {
    /// The CGM values of rows `t − LAGS ..= t`, gaps bridged.
    history: [f64; LAGS + 1],
    glucose: [f64; GLUCOSE_FEATURES],
    /// iob, iact (fast curve's on-board and activity are not used), cob, crate.
    on_board: [f64; 4],
    /// Per step: ifut (slow), ifut (fast), cfut (slow), cfut (fast).
    ahead: [[f64; 4]; STEPS],
}

/// The glucose features: the current value, the lag differences and the level terms.
fn glucose_features(h: &[f64; LAGS + 1]) -> [f64; GLUCOSE_FEATURES] {
    let c = h[LAGS];
    let mut glucose = [0.0; GLUCOSE_FEATURES];
    glucose[0] = c;
    for k in 1..=LAGS {
        glucose[k] = h[LAGS - k] - c;
    }
    glucose[LAGS + 1] = (c - 120.0).powi(2) / 100.0;
    glucose[LAGS + 2] = (c - 180.0).max(0.0);
    glucose[LAGS + 3] = (70.0 - c).max(0.0);
    glucose
}

fn origin(series: &Series, t: usize, inputs: Inputs) -> Option<Origin> {
    let history = glucose_history(&series.cgm, t)?;
    let glucose = glucose_features(&history);
    if inputs == Inputs::GlucoseOnly {
        return Some(Origin {
            history,
            glucose,
            on_board: [0.0; 4],
            ahead: [[0.0; 4]; STEPS],
        });
    }
    let k = kernels();
    let s = series.scales;
    let insulin =
        convolve_all(&series.insulin, t, &dose_kernels(&k.insulin)).map(|v| s.insulin * v);
    let carbs = convolve_all(&series.carbs, t, &dose_kernels(&k.carbs)).map(|v| s.carbs * v);
    Some(Origin {
        history,
        glucose,
        on_board: [insulin[0], insulin[1], carbs[0], carbs[1]],
        ahead: std::array::from_fn(|step| {
            let (slow, fast) = (2 + 2 * step, 3 + 2 * step);
            [insulin[slow], insulin[fast], carbs[slow], carbs[fast]]
        }),
    })
}

impl Origin {
    /// The dose features for one step (0-based) ahead, which follow the glucose features.
    fn dose_features(&self, step: usize) -> [f64; FULL_FEATURES - GLUCOSE_FEATURES] {
        let c = self.glucose[0];
        let [iob, iact, cob, crate_] = self.on_board;
        let [ifut, ifut_fast, cfut, cfut_fast] = self.ahead[step];
        [
            iob,
            iact,
            ifut,
            ifut * (c - 120.0) / 100.0,
            ifut_fast,
            cob,
            crate_,
            cfut,
            cfut * (c - 120.0) / 100.0,
            cfut_fast,
        ]
    }

    /// The feature vector for one step (0-based) ahead.
    fn features(&self, step: usize, inputs: Inputs, out: &mut Vec<f64>) {
        out.clear();
        out.extend_from_slice(&self.glucose);
        if inputs == Inputs::Full {
            out.extend_from_slice(&self.dose_features(step));
        }
    }

    /// A step model's prediction (the change over the step) from its folded coefficients.
    fn predict(&self, step: usize, inputs: Inputs, folded: &[f64]) -> f64 {
        let (w0, w) = (folded[0], &folded[1..]);
        // A model's coefficients match its inputs (fitted so, or the population's).
        let glucose_w: &[f64; GLUCOSE_FEATURES] = w[..GLUCOSE_FEATURES]
            .try_into()
            .expect("a coefficient per glucose feature");
        let glucose = ridge::dot(glucose_w, &self.glucose);
        if inputs == Inputs::Full {
            let dose_w: &[f64; FULL_FEATURES - GLUCOSE_FEATURES] = w
                [GLUCOSE_FEATURES..FULL_FEATURES]
                .try_into()
                .expect("a coefficient per dose feature");
            w0 + glucose + ridge::dot(dose_w, &self.dose_features(step))
        } else {
            w0 + glucose
        }
    }
}

// ---------------------------------------------------------------- fitting

/// Regularisation, chosen on training folds (docs/forecasting.md): the population fit, and
/// the personal fit's pull towards the population coefficients, for steps up to 30 minutes
/// and beyond.
fn lambda_population(step: usize) -> f64 {
    if step < 6 {
        0.1
    } else {
        1.0
    }
}

fn lambda_personal(step: usize, inputs: Inputs) -> f64 {
    match (inputs, step < 6) {
        (Inputs::Full, true) => 1.0,
        (Inputs::Full, false) => 30.0,
        (Inputs::GlucoseOnly, true) => 30.0,
        (Inputs::GlucoseOnly, false) => 100.0,
    }
}

/// The training rows of one step: features, target (the change over the step) and the
/// origin row of each.
#[derive(Default)]
struct StepRows {
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
    origin: Vec<usize>,
}

/// Training rows for every step, for origins `t < to` whose target row is also before `to`.
/// Origins start once the doses' history is covered (8 h, or a quarter of a short series).
fn training_rows(series: &Series, to: usize, inputs: Inputs) -> Vec<StepRows> {
    let mut rows: Vec<StepRows> = (0..STEPS).map(|_| StepRows::default()).collect();
    let to = to.min(series.len());
    let from = DOSE_HISTORY.min(to / 4).max(LAGS);
    let mut buf = Vec::with_capacity(FULL_FEATURES);
    for t in from..to.saturating_sub(1) {
        let Some(o) = origin(series, t, inputs) else {
            continue;
        };
        let c = o.glucose[0];
        for (step, r) in rows.iter_mut().enumerate() {
            let target_row = t + step + 1;
            if target_row >= to {
                break;
            }
            if let Some(target) = series.cgm[target_row] {
                o.features(step, inputs, &mut buf);
                r.x.push(buf.clone());
                r.y.push(target - c);
                r.origin.push(t);
            }
        }
    }
    rows
}

/// Fits the population models on many people's training rows `[0, end)` each. Prediction
/// intervals come from leave-one-person-out errors.
pub fn fit_population(people: &[(Series, usize)]) -> PopulationModel {
    PopulationModel {
        full: fit_population_inputs(people, Inputs::Full),
        glucose_only: fit_population_inputs(people, Inputs::GlucoseOnly),
    }
}

fn fit_population_inputs(people: &[(Series, usize)], inputs: Inputs) -> Model {
    let per_person: Vec<Vec<StepRows>> = people
        .iter()
        .map(|(s, end)| {
            let s = if inputs == Inputs::GlucoseOnly {
                s.glucose_only()
            } else {
                s.clone()
            };
            training_rows(&s, *end, inputs)
        })
        .collect();
    let mut steps = Vec::with_capacity(STEPS);
    let mut training_rows_total = 0;
    for step in 0..STEPS {
        let grams: Vec<ridge::Gram> = per_person
            .iter()
            .map(|p| p[step].gram(inputs, |_| true))
            .collect();
        let mut all = ridge::Gram::new(inputs.features());
        grams.iter().for_each(|g| all.merge(g));
        if step == 0 {
            training_rows_total = all.rows() as usize;
        }
        let (mean, sd) = all.standardisation();
        let lambda = lambda_population(step);
        let beta = all.fit(&mean, &sd, lambda, None);
        // Out-of-sample errors: each person predicted by a fit on the others.
        let mut errors = Vec::new();
        for (person, gram) in per_person.iter().zip(&grams) {
            let others = if grams.len() > 1 {
                all.minus(gram).fit(&mean, &sd, lambda, None)
            } else {
                beta.clone()
            };
            let r = &person[step];
            for (row, target) in r.x.iter().zip(&r.y) {
                errors.push(target - ridge::predict(&others, &mean, &sd, row));
            }
        }
        let (error_p10, error_p90) = error_quantiles(&mut errors);
        steps.push(StepModel::new(mean, sd, beta, error_p10, error_p90));
    }
    Model {
        kind: ModelKind::Population,
        inputs,
        steps,
        training_rows: training_rows_total,
    }
}

impl StepRows {
    fn gram(&self, inputs: Inputs, keep: impl Fn(usize) -> bool) -> ridge::Gram {
        let mut g = ridge::Gram::new(inputs.features());
        for i in 0..self.y.len() {
            if keep(self.origin[i]) {
                g.add(&self.x[i], self.y[i]);
            }
        }
        g
    }
}

fn error_quantiles(errors: &mut [f64]) -> (f64, f64) {
    errors.sort_by(f64::total_cmp);
    (
        crate::agp::percentile(errors, 10.0).unwrap_or(-20.0),
        crate::agp::percentile(errors, 90.0).unwrap_or(20.0),
    )
}

/// Whether a person's series has enough data for a personal model.
pub fn enough_for_personal(series: &Series, end: usize) -> bool {
    let present = series.cgm[..end.min(series.len())]
        .iter()
        .filter(|v| v.is_some())
        .count();
    present >= MIN_PERSONAL_DAYS * ROWS_PER_DAY * 7 / 10
}

/// Fits a person's model on rows `[0, end)`, shrunk towards `population`. Its prediction
/// intervals come from forward folds: each of the last (up to) three days predicted by a fit
/// on the days before it. `None` with too little data.
pub fn fit_personal(series: &Series, end: usize, population: &PopulationModel) -> Option<Model> {
    let end = end.min(series.len());
    if !enough_for_personal(series, end) {
        return None;
    }
    let inputs = Inputs::of(series);
    let prior = population.for_inputs(inputs);
    let rows = training_rows(series, end, inputs);
    let days = end / ROWS_PER_DAY;
    let fold_ends: Vec<usize> = (1..=3usize)
        .filter(|k| days > k + 1)
        .map(|k| end - k * ROWS_PER_DAY)
        .collect();
    let mut steps = Vec::with_capacity(STEPS);
    for (step, (r, p)) in rows.iter().zip(&prior.steps).enumerate() {
        let lambda = lambda_personal(step, inputs);
        let beta = r
            .gram(inputs, |_| true)
            .fit(&p.mean, &p.sd, lambda, Some(&p.beta));
        let mut errors = Vec::new();
        for &fold_end in &fold_ends {
            // Train on rows whose target precedes the fold's day; predict that day.
            let b = r.gram(inputs, |origin| origin + step + 1 < fold_end).fit(
                &p.mean,
                &p.sd,
                lambda,
                Some(&p.beta),
            );
            for i in (0..r.y.len())
                .filter(|&i| (fold_end..fold_end + ROWS_PER_DAY).contains(&r.origin[i]))
            {
                errors.push(r.y[i] - ridge::predict(&b, &p.mean, &p.sd, &r.x[i]));
            }
        }
        let (error_p10, error_p90) = if errors.len() >= 100 {
            error_quantiles(&mut errors)
        } else {
            (p.error_p10, p.error_p90)
        };
        steps.push(StepModel::new(
            p.mean.clone(),
            p.sd.clone(),
            beta,
            error_p10,
            error_p90,
        ));
    }
    Some(Model {
        kind: ModelKind::Personal,
        inputs,
        steps,
        training_rows: rows[0].y.len(),
    })
}

/// Whether a forecast treats a suspected compression low as one (see [`compression`]); the
/// evaluation compares both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionLows {
    Handled,
    Ignored,
}

/// The forecast from row `t` (its CGM value must be present): 12 steps of 5 minutes.
/// `None` when the last hour of CGM has gaps longer than 15 minutes.
pub fn forecast(model: &Model, series: &Series, t: usize) -> Option<Vec<ForecastPoint>> {
    forecast_with(model, series, t, CompressionLows::Handled)
}

pub fn forecast_with(
    model: &Model,
    series: &Series,
    t: usize,
    compression_lows: CompressionLows,
) -> Option<Vec<ForecastPoint>> {
    let o = origin(series, t, model.inputs)?;
    let plain = forecast_from(model, &o, true);
    // Insulin still to act (as the glucose it will lower) is known only when treatments are.
    let insulin_to_act = (model.inputs == Inputs::Full && series.has_treatments)
        .then(|| o.on_board[0] * ISF_PER_INSULIN_SCALE);
    let onset = match compression_lows {
        CompressionLows::Handled => compression::suspected_onset(&o.history, insulin_to_act),
        CompressionLows::Ignored => None,
    };
    let Some(onset) = onset else {
        return Some(plain);
    };
    // The point as if the level had been steady, without the lean towards lows (it is for
    // real lows, which the model underestimates); the interval spanning a continued fall
    // and a rebound to where the fall started.
    let steady_history = compression::without_the_fall(&o.history, onset);
    let steady = Origin {
        history: steady_history,
        glucose: glucose_features(&steady_history),
        ..o
    };
    let rebound = onset.level_before.clamp(MIN_MGDL, MAX_MGDL);
    Some(
        forecast_from(model, &steady, false)
            .into_iter()
            .zip(plain)
            .map(|(s, p)| ForecastPoint {
                minutes: s.minutes,
                mgdl: s.mgdl,
                lower: s.lower.min(p.lower),
                upper: s.upper.max(p.upper).max(rebound),
            })
            .collect(),
    )
}

fn forecast_from(model: &Model, o: &Origin, lean_towards_lows: bool) -> Vec<ForecastPoint> {
    let c = o.glucose[0];
    let clamp = |v: f64| v.clamp(MIN_MGDL, MAX_MGDL);
    let mut points = Vec::with_capacity(model.steps.len());
    for (step, m) in model.steps.iter().enumerate() {
        let raw = c + o.predict(step, model.inputs, m.folded());
        let point = clamp(if lean_towards_lows {
            hypo_lean(step + 1, raw)
        } else {
            raw
        });
        points.push(ForecastPoint {
            minutes: 5 * (step as i64 + 1),
            mgdl: point,
            lower: clamp(raw + m.error_p10).min(point),
            upper: clamp(raw + m.error_p90).max(point),
        });
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_gaps_are_bridged_and_long_ones_refused() {
        let mut cgm: Vec<Option<f64>> = (0..20).map(|i| Some(100.0 + i as f64)).collect();
        cgm[15] = None;
        cgm[16] = None;
        let h = glucose_history(&cgm, 19).expect("bridged");
        assert!((h[LAGS - 4] - 115.0).abs() < 1e-9, "{h:?}");
        cgm[10..16].fill(None);
        assert!(glucose_history(&cgm, 19).is_none());
        cgm[19] = None;
        assert!(glucose_history(&cgm, 19).is_none(), "no current value");
    }

    #[test]
    fn the_hypo_lean_applies_below_100_up_to_30_minutes() {
        assert_eq!(hypo_lean(1, 120.0), 120.0);
        assert_eq!(hypo_lean(6, 70.0), 55.0);
        assert_eq!(hypo_lean(6, 85.0), 85.0 - 7.5);
        assert_eq!(hypo_lean(7, 70.0), 70.0);
    }

    #[test]
    fn scales_follow_the_1800_rule_and_fall_back_to_typical_values() {
        let s = Scales::from_totals(400.0, 10.0, 2000.0, 200.0);
        assert!((s.insulin - 45.0 / 40.0).abs() < 1e-9);
        assert!((s.carbs - 45.0 / 10.0 / 4.0).abs() < 1e-9);
        assert_eq!(Scales::from_totals(0.0, 10.0, 0.0, 0.0), Scales::default());
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use crate::analytics::GlucosePoint;
    use crate::treatments::{InsulinType, Treatment, TreatmentDetail};
    use crate::Timestamp;

    fn treatment(utc_ms: i64, detail: TreatmentDetail) -> Treatment {
        Treatment {
            id: format!("t{utc_ms}"),
            time: Timestamp::from_utc_ms(utc_ms),
            detail,
            extra: None,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn stored_records_land_on_the_grid() {
        let t0 = 1_780_000_000_000i64;
        let points = [
            GlucosePoint {
                utc_ms: t0 + 60_000,
                mgdl: 100.0,
            },
            GlucosePoint {
                utc_ms: t0 + 2 * STEP_MS,
                mgdl: 110.0,
            },
        ];
        let treatments = [
            treatment(
                t0 + STEP_MS,
                TreatmentDetail::Insulin {
                    units: 4.0,
                    insulin_type: InsulinType::Bolus,
                    insulin_name: None,
                },
            ),
            treatment(
                t0 + STEP_MS,
                TreatmentDetail::Insulin {
                    units: 20.0,
                    insulin_type: InsulinType::Basal,
                    insulin_name: None,
                },
            ),
            treatment(t0 + 2 * STEP_MS, TreatmentDetail::Carbs { grams: 30.0 }),
            // Usual basal 1.0 U/h; 2.2 U/h for 10 minutes (rows 4 and 5).
            treatment(
                t0,
                TreatmentDetail::BasalRate {
                    units_per_hour: 1.0,
                    minutes: 20.0,
                },
            ),
            treatment(
                t0 + 4 * STEP_MS,
                TreatmentDetail::BasalRate {
                    units_per_hour: 2.2,
                    minutes: 10.0,
                },
            ),
            treatment(
                t0 + 6 * STEP_MS,
                TreatmentDetail::BasalRate {
                    units_per_hour: 1.0,
                    minutes: 60.0,
                },
            ),
        ];
        let s = Series::from_records(
            t0,
            t0 + 7 * STEP_MS,
            &points,
            &treatments,
            Scales::default(),
        );
        assert_eq!(s.len(), 8);
        assert_eq!(s.cgm[..3], [Some(100.0), None, Some(110.0)]);
        assert!(s.has_treatments);
        assert_eq!(s.carbs[2], 30.0);
        assert!(
            (s.insulin[1] - 4.0).abs() < 1e-9,
            "bolus only; the basal injection is the usual basal"
        );
        assert!((s.insulin[4] - 0.1).abs() < 1e-9 && (s.insulin[5] - 0.1).abs() < 1e-9);
        assert_eq!((s.insulin[0], s.insulin[6]), (0.0, 0.0));
    }
}
