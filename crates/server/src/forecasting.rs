//! Forecast serving: a forecast for each CGM reading that arrives, in *data* time (a
//! backfilled or replayed reading gets the forecast it would have had then), and personal
//! models fitted as the person's data grows. The models are the domain's
//! (`glucosync_domain::forecast`, docs/forecasting.md); this module reads the history from the
//! store, stores forecasts and models, and decides when to fit.

// Maps keyed by person, looked up several times per upload: SipHash's DoS resistance buys
// nothing for server-assigned ids, and hashing showed in the per-upload instruction count.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glucosync_domain::analytics::GlucosePoint;
use glucosync_domain::forecast::{
    self, ForecastPoint, Model, ModelKind, PopulationModel, Scales, Series, DOSE_HISTORY, LAGS,
    STEP_MS,
};
use glucosync_domain::Timestamp;
use glucosync_store::{StoredForecast, StoredModel, UserId};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::{now_ms, AppState};

/// The model family; versions are `<family>/population` or `<family>/personal/<trained until>`.
pub const MODEL_FAMILY: &str = "gs-ridge-1";
/// History read for one forecast: the dose history plus the last hour of CGM.
const HISTORY_MS: i64 = (DOSE_HISTORY + LAGS) as i64 * STEP_MS;
/// Readings closer than this to the last forecast's make no new one.
const MIN_SPACING_MS: i64 = 60_000;
/// The CGM a forecast looks at: its last hour (plus a step of slack). Only this much is read,
/// however many readings an uploader sends per minute.
const CGM_WINDOW_MS: i64 = (LAGS as i64 + 2) * STEP_MS;
/// Treatments are read this far past the reading, so that the kept history also serves the
/// next day of readings (doses logged ahead of a replayed reading included).
const TREATMENTS_AHEAD_MS: i64 = 86_400_000;
/// Data a personal model is fitted on.
const TRAINING_MS: i64 = 14 * 86_400_000;
/// A personal model is refitted once this much newer data exists (data time).
const REFIT_AFTER_MS: i64 = 86_400_000;
/// Without enough data for a personal model, the next attempt waits for this much more.
const RETRY_AFTER_MS: i64 = 6 * 3_600_000;
/// However much new data arrives, a person's model is fitted at most this often (wall clock),
/// by one replica (a lease in the shared cache): a client replaying history fast would
/// otherwise start a fit every few seconds, on every replica.
const MIN_FIT_INTERVAL: Duration = Duration::from_secs(60);
/// How often made forecasts are written to the store, in one transaction.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How long the latest forecast stays in the shared cache (the store has it too).
const LATEST_TTL: Duration = Duration::from_secs(3 * 3600);

/// How long a replica trusts its cached copy of a person's model before reading the store
/// again (another replica may have fitted a newer one).
const MODEL_CACHE: Duration = Duration::from_secs(300);

/// A personal model as stored: the fitted model and the person's treatment scales.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRecord {
    pub model: Model,
    pub scales: Scales,
}

/// One forecast step as served (mg/dL).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ForecastPointOut {
    pub time: String,
    pub value: f64,
    /// The 80 % prediction interval.
    pub lower: f64,
    pub upper: f64,
}

#[derive(Clone)]
struct CachedModel {
    version: String,
    trained_until_ms: i64,
    record: Option<Arc<ModelRecord>>,
    loaded: Instant,
}

pub struct Forecaster {
    population: PopulationModel,
    models: Mutex<HashMap<UserId, Arc<CachedModel>>>,
    /// Per person, the data time and the moment of this replica's last fitting attempt.
    attempts: Mutex<HashMap<UserId, (i64, Instant)>>,
    fitting: Mutex<HashSet<UserId>>,
    /// Forecasts made but not yet stored (written in batches by one background task).
    pending: Mutex<Vec<(UserId, Arc<StoredForecast>)>>,
    flusher_running: Mutex<bool>,
    /// Per person, the reading time of this replica's last forecast (see `too_close`).
    last_issued: Mutex<HashMap<UserId, i64>>,
    /// Embedded mode: the latest forecast made per person (in a cluster: the shared cache).
    latest_made: Mutex<HashMap<UserId, Arc<StoredForecast>>>,
    /// People whose entry in `latest_made` also accounts for the store's latest (read once
    /// per process): their latest forecast needs no read.
    latest_seeded: Mutex<HashSet<UserId>>,
    /// Recent history per person (embedded mode only; see `remember`).
    histories: Mutex<Histories>,
}

#[derive(Default)]
struct Histories {
    kept: HashMap<UserId, History>,
    /// Per person, how often their readings or treatments changed: a history read from the
    /// store is kept only if nothing changed while it was read.
    generation: HashMap<UserId, u64>,
}

/// A person's recent CGM values and treatments as this process last read or wrote them.
struct History {
    /// Every CGM value from here on is in `points`.
    complete_from: i64,
    newest_ms: i64,
    points: std::collections::BTreeMap<i64, f64>,
    /// Every treatment of `[treatments_from − 1 day, treatments_until)` (pump basal rates reach
    /// back a day).
    treatments: Vec<glucosync_domain::treatments::Treatment>,
    treatments_from: i64,
    treatments_until: i64,
}

thread_local! {
    /// The series of the forecast being made on this thread, its vectors reused from one
    /// forecast to the next (three allocations per forecast showed in the serving cost).
    static KEPT_SERIES: std::cell::RefCell<Series> =
        std::cell::RefCell::new(Series::from_points(0, 0, [], &[], Scales::default()));
}

/// People whose history is kept; beyond it the copies are dropped (they are only a cache).
const MAX_HISTORIES: usize = 50_000;

impl Default for Forecaster {
    fn default() -> Self {
        Forecaster::new(PopulationModel::shipped())
    }
}

impl Forecaster {
    pub fn new(population: PopulationModel) -> Forecaster {
        Forecaster {
            population,
            models: Mutex::default(),
            attempts: Mutex::default(),
            fitting: Mutex::default(),
            histories: Mutex::new(Histories::default()),
            pending: Mutex::default(),
            flusher_running: Mutex::default(),
            latest_made: Mutex::default(),
            latest_seeded: Mutex::default(),
            last_issued: Mutex::default(),
        }
    }

    /// The person's model: their personal one if fitted, else the population's.
    async fn model(&self, state: &AppState, user: UserId) -> Result<Arc<CachedModel>, ApiError> {
        if let Some(m) = self.models.lock().expect("lock").get(&user) {
            if m.loaded.elapsed() < MODEL_CACHE {
                return Ok(m.clone());
            }
        }
        let stored = state.store.latest_model(user).await?;
        let cached = Arc::new(
            match stored.and_then(|s| {
                serde_json::from_str::<ModelRecord>(&s.body_json)
                    .ok()
                    .map(|r| (s, r))
            }) {
                Some((s, record)) => CachedModel {
                    version: s.version,
                    trained_until_ms: s.trained_until_ms,
                    record: Some(Arc::new(record)),
                    loaded: Instant::now(),
                },
                None => CachedModel {
                    version: format!("{MODEL_FAMILY}/population"),
                    trained_until_ms: i64::MIN,
                    record: None,
                    loaded: Instant::now(),
                },
            },
        );
        self.models
            .lock()
            .expect("lock")
            .insert(user, cached.clone());
        Ok(cached)
    }

    /// Forecasts from the CGM reading at `reading_ms` and stores the forecast; `None` when the
    /// last hour of CGM has gaps longer than 15 minutes. May start fitting a personal model.
    pub async fn forecast_reading(
        self: &Arc<Self>,
        state: &AppState,
        user: UserId,
        reading_ms: i64,
    ) -> Result<Option<Arc<StoredForecast>>, ApiError> {
        // Before any lookup: a skipped reading costs nothing more.
        if self.too_close(user, reading_ms) {
            return Ok(None);
        }
        let model = self.model(state, user).await?;
        let from = reading_ms - HISTORY_MS;
        let scales = model.record.as_ref().map(|r| r.scales).unwrap_or_default();
        let kept = KEPT_SERIES.with_borrow_mut(|series| {
            self.fill_from_kept(series, user, from, reading_ms, scales)
                .then(|| self.forecast_series(state, user, reading_ms, &model, series))
        });
        let steps = match kept {
            Some(steps) => steps,
            None => {
                let generation = self.generation(user);
                let points = state
                    .store
                    .cgm_values(user, reading_ms - CGM_WINDOW_MS, reading_ms + 1)
                    .await?;
                let treatments = crate::api::reports::period_treatments(
                    state,
                    user,
                    from,
                    reading_ms + TREATMENTS_AHEAD_MS,
                )
                .await?;
                let series = Series::from_records(from, reading_ms, &points, &treatments, scales);
                self.remember(
                    state,
                    user,
                    generation,
                    (from, reading_ms),
                    points,
                    treatments,
                );
                self.forecast_series(state, user, reading_ms, &model, &series)
            }
        };
        let Some(steps) = steps else {
            return Ok(None);
        };
        // Shared, not copied, by the latest-forecast cache, the batch to store and the caller.
        let stored = Arc::new(StoredForecast {
            issued_ms: reading_ms,
            model_version: model.version.clone(),
            created_ms: now_ms(),
            points: encode_points(&steps),
        });
        self.publish(state, user, &stored).await;
        state.metrics.ml_predictions_total.inc();
        Ok(Some(stored))
    }

    /// The forecast from the last row of `series` with the person's model (the population's
    /// for their inputs until a personal one is fitted); may start a fit.
    fn forecast_series(
        self: &Arc<Self>,
        state: &AppState,
        user: UserId,
        reading_ms: i64,
        model: &CachedModel,
        series: &Series,
    ) -> Option<Vec<ForecastPoint>> {
        let chosen = match &model.record {
            Some(r) => &r.model,
            None => self.population.for_inputs(forecast::Inputs::of(series)),
        };
        self.maybe_fit(state, user, reading_ms, model);
        forecast::forecast(chosen, series, series.len().checked_sub(1)?)
    }

    /// Fills `series` for a forecast from this process's copy of the person's recent history;
    /// false when that does not cover the window.
    fn fill_from_kept(
        &self,
        series: &mut Series,
        user: UserId,
        from: i64,
        to: i64,
        scales: Scales,
    ) -> bool {
        let histories = self.histories.lock().expect("lock");
        let Some(h) = histories.kept.get(&user) else {
            return false;
        };
        if h.complete_from > to - CGM_WINDOW_MS
            || h.newest_ms > to
            || to >= h.treatments_until
            || from < h.treatments_from
        {
            return false;
        }
        let points = h
            .points
            .range(to - CGM_WINDOW_MS..=to)
            .map(|(&utc_ms, &mgdl)| GlucosePoint { utc_ms, mgdl });
        // Without treatments the dose history is all zeros, and rows before a series count as
        // no dose: the CGM lags alone give the same forecast (many people log no treatments).
        let start = if h.treatments.is_empty() {
            to - LAGS as i64 * STEP_MS
        } else {
            from
        };
        series.refill(start, to, points, &h.treatments, scales);
        true
    }

    /// Keeps what was read for a forecast, so the next reading's forecast needs no reads —
    /// only where this process sees every write (embedded mode: SQLite and no Redis; with
    /// replicas, another one may have stored readings this one never saw).
    fn remember(
        &self,
        state: &AppState,
        user: UserId,
        generation: u64,
        (from, to): (i64, i64),
        points: Vec<GlucosePoint>,
        treatments: Vec<glucosync_domain::treatments::Treatment>,
    ) {
        let history = History {
            complete_from: to - CGM_WINDOW_MS,
            newest_ms: to,
            points: points.into_iter().map(|p| (p.utc_ms, p.mgdl)).collect(),
            treatments,
            treatments_from: from,
            treatments_until: to + TREATMENTS_AHEAD_MS,
        };
        self.keep(state, user, generation, history, true);
    }

    /// Keeps `history` for `user` unless their data changed since `generation` was taken (or,
    /// without `replace`, a history is kept already).
    fn keep(
        &self,
        state: &AppState,
        user: UserId,
        generation: u64,
        history: History,
        replace: bool,
    ) {
        if !self.sole_writer(state) {
            return;
        }
        let mut histories = self.histories.lock().expect("lock");
        if histories.generation.get(&user).copied().unwrap_or(0) != generation
            || (!replace && histories.kept.contains_key(&user))
        {
            return;
        }
        if histories.kept.len() >= MAX_HISTORIES {
            histories.kept.clear();
        }
        histories.kept.insert(user, history);
    }

    fn sole_writer(&self, state: &AppState) -> bool {
        state.store.backend() == "sqlite" && state.config.redis_url.is_none()
    }

    /// New CGM readings were stored (all of them inserted, none a duplicate): add them to the
    /// kept history. Anything else that changes readings or treatments forgets it.
    pub fn readings_added(&self, user: UserId, readings: &[(i64, f64)]) {
        let mut histories = self.histories.lock().expect("lock");
        *histories.generation.entry(user).or_default() += 1;
        if let Some(h) = histories.kept.get_mut(&user) {
            for &(t, v) in readings {
                if t >= h.complete_from {
                    h.points.insert(t, v);
                    h.newest_ms = h.newest_ms.max(t);
                }
            }
            // Keep the window the next forecast needs (plus an hour of slack).
            // Trimmed an hour at a time, not at every reading.
            let keep_from = h.newest_ms - CGM_WINDOW_MS - 3_600_000;
            if keep_from > h.complete_from + 3_600_000 {
                h.points = h.points.split_off(&keep_from);
                h.complete_from = keep_from;
            }
        }
    }

    /// The CGM values of `[from, to)`: from this process's kept history when it holds every
    /// one of them (embedded mode, after a forecast or an earlier evaluation read them), else
    /// from the store. With the values comes the person's generation before a store read
    /// (`None`: they came from the kept history), for `remember_cgm`.
    pub async fn recent_cgm(
        &self,
        state: &AppState,
        user: UserId,
        from: i64,
        to: i64,
    ) -> Result<(Vec<GlucosePoint>, Option<u64>), ApiError> {
        let generation = {
            let histories = self.histories.lock().expect("lock");
            match histories.kept.get(&user) {
                Some(h) if self.sole_writer(state) && h.complete_from <= from => {
                    let kept = h
                        .points
                        .range(from..to)
                        .map(|(&utc_ms, &mgdl)| GlucosePoint { utc_ms, mgdl })
                        .collect();
                    return Ok((kept, None));
                }
                _ => histories.generation.get(&user).copied().unwrap_or(0),
            }
        };
        let read = state.store.cgm_values(user, from, to).await?;
        Ok((read, Some(generation)))
    }

    /// Keeps the CGM values of `[from, ..)` that the alert evaluation read from the store, so
    /// the next upload's evaluation needs no read (also with forecasts off). `generation` is
    /// the person's from before the read; nothing is kept if their data changed since, or if a
    /// history is kept already (a forecast's, which also holds treatments).
    pub fn remember_cgm(
        &self,
        state: &AppState,
        user: UserId,
        generation: u64,
        from: i64,
        points: &[GlucosePoint],
    ) {
        let history = History {
            complete_from: from,
            newest_ms: points.last().map_or(from, |p| p.utc_ms.max(from)),
            points: points.iter().map(|p| (p.utc_ms, p.mgdl)).collect(),
            // No treatments: a forecast reads its own history.
            treatments: Vec::new(),
            treatments_from: from,
            treatments_until: from,
        };
        self.keep(state, user, generation, history, false);
    }

    pub fn forget_history(&self, user: UserId) {
        let mut histories = self.histories.lock().expect("lock");
        *histories.generation.entry(user).or_default() += 1;
        histories.kept.remove(&user);
    }

    fn generation(&self, user: UserId) -> u64 {
        let histories = self.histories.lock().expect("lock");
        histories.generation.get(&user).copied().unwrap_or(0)
    }

    /// The upload of a reading within a minute of the last forecast's (an uploader sending
    /// every few seconds, or several devices at once) makes no new forecast: forecasts are on a
    /// 5-minute grid, and this bounds the work a flood of readings can cause.
    fn too_close(&self, user: UserId, reading_ms: i64) -> bool {
        let mut issued = self.last_issued.lock().expect("lock");
        if issued.len() >= MAX_HISTORIES {
            issued.clear();
        }
        match issued.get(&user) {
            Some(&last) if (reading_ms - last).abs() < MIN_SPACING_MS => true,
            _ => {
                issued.insert(user, reading_ms);
                false
            }
        }
    }

    /// Forgets the spacing of a person's last forecast, so that the next call forecasts again
    /// (a new treatment or model changes the forecast of the same reading).
    fn allow_again(&self, user: UserId) {
        self.last_issued.lock().expect("lock").remove(&user);
    }

    /// A logged treatment changes the forecast of the newest reading when it falls within that
    /// forecast's history (a bolus just given, a meal just eaten): forecast it again.
    pub async fn treatments_changed(
        self: &Arc<Self>,
        state: &AppState,
        user: UserId,
        newest_treatment_ms: i64,
    ) {
        let newest_reading = match self.latest(state, user).await {
            Ok(Some(f)) => f.issued_ms,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the latest forecast");
                return;
            }
        };
        if newest_treatment_ms > newest_reading || newest_treatment_ms < newest_reading - HISTORY_MS
        {
            return;
        }
        self.allow_again(user);
        match self.forecast_reading(state, user, newest_reading).await {
            Ok(Some(f)) => {
                crate::live::publish(state, user, &[crate::live::forecast_event(user, &f)]).await
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not forecast"),
        }
    }

    /// Makes a forecast the latest: into the shared cache at once (when it is newer than the
    /// cached one), and into the store with the next batch (within `FLUSH_EVERY`). A forecast
    /// is derived data, recomputable from the readings: the upload does not wait for a
    /// second commit, and a crash loses at most the last half second of forecasts.
    async fn publish(self: &Arc<Self>, state: &AppState, user: UserId, f: &Arc<StoredForecast>) {
        if self.sole_writer(state) {
            // Embedded mode: this process makes every forecast, so it knows the latest.
            self.remember_made(user, f);
        } else {
            self.publish_shared(state, user, f).await;
        }
        self.store_later(state, user, f);
    }

    /// With replicas: the latest forecast goes into the shared cache (Redis), for all of them,
    /// unless a later one is there (a backfilled reading's forecast is not the latest).
    async fn publish_shared(&self, state: &AppState, user: UserId, f: &StoredForecast) {
        if let Err(e) = state
            .cache
            .put_ranked(&latest_key(user), rank(f), &to_cached(f), LATEST_TTL)
            .await
        {
            tracing::warn!(error = %e, "could not cache the latest forecast");
        }
    }

    fn store_later(self: &Arc<Self>, state: &AppState, user: UserId, f: &Arc<StoredForecast>) {
        let start_flusher = {
            let mut pending = self.pending.lock().expect("lock");
            pending.push((user, f.clone()));
            !std::mem::replace(&mut *self.flusher_running.lock().expect("lock"), true)
        };
        if start_flusher {
            let (me, state) = (self.clone(), state.clone());
            tokio::spawn(async move { me.flush_forever(&state).await });
        }
    }

    /// Writes pending forecasts in batches, one transaction every `FLUSH_EVERY` at most.
    async fn flush_forever(&self, state: &AppState) {
        loop {
            tokio::time::sleep(FLUSH_EVERY).await;
            if !self.flush(state).await {
                let mut running = self.flusher_running.lock().expect("lock");
                if self.pending.lock().expect("lock").is_empty() {
                    *running = false;
                    return;
                }
            }
        }
    }

    /// Stores the forecasts not yet stored; false when there were none. Called at shutdown
    /// too, before the store closes.
    pub async fn flush(&self, state: &AppState) -> bool {
        let batch = std::mem::take(&mut *self.pending.lock().expect("lock"));
        if batch.is_empty() {
            return false;
        }
        let forecasts = batch.len();
        if let Err(e) = state.store.save_forecasts(batch).await {
            tracing::warn!(error = %e, forecasts, "could not store forecasts");
        }
        true
    }

    /// The latest forecast: the newer of the shared cache's and the store's.
    pub async fn latest(
        &self,
        state: &AppState,
        user: UserId,
    ) -> Result<Option<Arc<StoredForecast>>, ApiError> {
        if self.sole_writer(state) {
            // Embedded: this process makes every forecast; the store is read once per person
            // for what was made before it started.
            if !self.latest_seeded.lock().expect("lock").contains(&user) {
                if let Some(stored) = state.store.latest_forecast(user).await? {
                    self.remember_made(user, &Arc::new(stored));
                }
                self.latest_seeded.lock().expect("lock").insert(user);
            }
            return Ok(self.latest_made.lock().expect("lock").get(&user).cloned());
        }
        let cached = match state.cache.get(&latest_key(user)).await {
            Ok(Some(text)) => from_cached(&text),
            _ => None,
        };
        let stored = state.store.latest_forecast(user).await?;
        Ok([cached, stored]
            .into_iter()
            .flatten()
            .max_by_key(rank)
            .map(Arc::new))
    }

    /// Keeps `f` as the person's latest forecast in this process unless a later one is
    /// there (a backfilled reading's forecast is not the latest).
    fn remember_made(&self, user: UserId, f: &Arc<StoredForecast>) {
        let mut latest = self.latest_made.lock().expect("lock");
        if latest.len() >= MAX_HISTORIES {
            latest.clear();
            self.latest_seeded.lock().expect("lock").clear();
        }
        if latest.get(&user).is_none_or(|c| rank(f) >= rank(c)) {
            latest.insert(user, f.clone());
        }
    }

    /// Starts fitting a personal model in the background when one is due in data time: none
    /// yet (and no attempt in the last 6 hours of data), or the current one a day behind.
    fn maybe_fit(
        self: &Arc<Self>,
        state: &AppState,
        user: UserId,
        now_data_ms: i64,
        current: &CachedModel,
    ) {
        let due =
            current.record.is_none() || now_data_ms - current.trained_until_ms >= REFIT_AFTER_MS;
        if !due {
            return;
        }
        {
            let mut attempts = self.attempts.lock().expect("lock");
            if let Some(&(last, when)) = attempts.get(&user) {
                // Backfilled older readings never trigger a fit; newer data does once enough
                // of it has arrived since the last attempt, and not more than once a minute.
                let wait = if current.record.is_none() {
                    RETRY_AFTER_MS
                } else {
                    REFIT_AFTER_MS
                };
                if now_data_ms < last + wait || when.elapsed() < MIN_FIT_INTERVAL {
                    return;
                }
            }
            attempts.insert(user, (now_data_ms, Instant::now()));
        }
        if !self.fitting.lock().expect("lock").insert(user) {
            return;
        }
        let (me, state) = (self.clone(), state.clone());
        tokio::spawn(async move {
            // With replicas, one of them fits (a lease in the shared cache for as long as the
            // fitting interval); without the shared cache, fitting twice is harmless.
            let leased = me.sole_writer(&state)
                || state
                    .cache
                    .claim(&format!("forecast:fit:{user}"), MIN_FIT_INTERVAL)
                    .await
                    .unwrap_or(true);
            if leased {
                if let Err(e) = me.fit(&state, user, now_data_ms).await {
                    tracing::warn!(error = %e, "could not fit a forecast model");
                }
            }
            me.fitting.lock().expect("lock").remove(&user);
        });
    }

    /// Fits the person's model on the 14 days up to `until_ms`, stores it, and forecasts the
    /// reading at `until_ms` again with it.
    pub async fn fit(
        self: &Arc<Self>,
        state: &AppState,
        user: UserId,
        until_ms: i64,
    ) -> Result<Option<String>, ApiError> {
        let from = until_ms - TRAINING_MS;
        let points = state.store.cgm_values(user, from, until_ms + 1).await?;
        let treatments =
            crate::api::reports::period_treatments(state, user, from, until_ms + 1).await?;
        let population = self.population.clone();
        let fitted = tokio::task::spawn_blocking(move || {
            let scales = Scales::from_treatments(&treatments, from, until_ms + 1);
            // The grid ends at the newest reading; it starts where the data does.
            let first = points.first().map_or(until_ms, |p| p.utc_ms);
            let start = until_ms - (until_ms - first) / STEP_MS * STEP_MS;
            let series = Series::from_records(start, until_ms, &points, &treatments, scales);
            forecast::fit_personal(&series, series.len(), &population)
                .map(|model| ModelRecord { model, scales })
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        let Some(record) = fitted else {
            return Ok(None);
        };
        debug_assert_eq!(record.model.kind, ModelKind::Personal);
        let version = format!(
            "{MODEL_FAMILY}/personal/{}",
            Timestamp::from_utc_ms(until_ms).to_rfc3339_utc()
        );
        let stored = StoredModel {
            version: version.clone(),
            trained_until_ms: until_ms,
            created_ms: now_ms(),
            body_json: serde_json::to_string(&record)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        };
        state.store.save_model(user, &stored).await?;
        self.models.lock().expect("lock").insert(
            user,
            Arc::new(CachedModel {
                version: version.clone(),
                trained_until_ms: until_ms,
                record: Some(Arc::new(record)),
                loaded: Instant::now(),
            }),
        );
        tracing::info!(version = %version, "fitted a personal forecast model");
        if let Some(url) = &state.config.mlflow_url {
            let run = personal_run(user, &version, &stored.body_json, until_ms);
            let url = url.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::mlflow::Mlflow::new(&url).log(&run, now_ms()).await {
                    tracing::warn!(error = %e, "could not log the fit to MLflow; the model is fitted and stored");
                }
            });
        }
        self.allow_again(user);
        if let Some(f) = self.forecast_reading(state, user, until_ms).await? {
            crate::live::publish(state, user, &[crate::live::forecast_event(user, &f)]).await;
        }
        Ok(Some(version))
    }
}

/// The stored form of a forecast's points: per 5-minute step the value, lower and upper
/// bound in tenths of mg/dL as little-endian u16 (72 bytes for 12 steps; times follow from
/// the issue time). Written for every reading, so it is kept small.
fn encode_points(steps: &[ForecastPoint]) -> Vec<u8> {
    // Values are non-negative: adding a half and truncating rounds them (`f64::round` is a
    // library call, 36 of them per forecast). `as` saturates: no clamp needed.
    let tenths = |v: f64| ((v * 10.0 + 0.5) as u16).to_le_bytes();
    let mut out = vec![0; steps.len() * 6];
    for (p, slot) in steps.iter().zip(out.chunks_exact_mut(6)) {
        slot[0..2].copy_from_slice(&tenths(p.mgdl));
        slot[2..4].copy_from_slice(&tenths(p.lower));
        slot[4..6].copy_from_slice(&tenths(p.upper));
    }
    out
}

/// The points of a stored forecast; `None` when the encoding is broken.
pub fn decode_points(encoded: &[u8]) -> Option<Vec<ForecastPoint>> {
    if !encoded.len().is_multiple_of(6) {
        return None;
    }
    let value = |b: &[u8]| f64::from(u16::from_le_bytes([b[0], b[1]])) / 10.0;
    Some(
        encoded
            .chunks_exact(6)
            .enumerate()
            .map(|(i, c)| ForecastPoint {
                minutes: (i as i64 + 1) * STEP_MS / 60_000,
                mgdl: value(&c[0..2]),
                lower: value(&c[2..4]),
                upper: value(&c[4..6]),
            })
            .collect(),
    )
}

/// The served points of a stored forecast.
pub fn points_out(issued_ms: i64, encoded: &[u8]) -> Result<Vec<ForecastPointOut>, ApiError> {
    let points = decode_points(encoded)
        .ok_or_else(|| ApiError::Internal("stored forecast: bad length".into()))?;
    Ok(points
        .into_iter()
        .map(|p| ForecastPointOut {
            time: Timestamp::from_utc_ms(issued_ms + p.minutes * 60_000).to_rfc3339_utc(),
            value: p.mgdl,
            lower: p.lower,
            upper: p.upper,
        })
        .collect())
}

/// Which of two forecasts is the later: by the reading it was issued from, then when it was
/// made.
fn rank(f: &StoredForecast) -> (i64, i64) {
    (f.issued_ms, f.created_ms)
}

fn latest_key(user: UserId) -> String {
    format!("forecast:latest:{user}")
}

/// A [`StoredForecast`] in the shared cache, as `issued created version points-in-hex`.
fn to_cached(f: &StoredForecast) -> String {
    format!(
        "{} {} {} {}",
        f.issued_ms,
        f.created_ms,
        f.model_version,
        hex::encode(&f.points)
    )
}

fn from_cached(text: &str) -> Option<StoredForecast> {
    let mut parts = text.splitn(4, ' ');
    Some(StoredForecast {
        issued_ms: parts.next()?.parse().ok()?,
        created_ms: parts.next()?.parse().ok()?,
        model_version: parts.next()?.to_owned(),
        points: hex::decode(parts.next()?).ok()?,
    })
}

/// The MLflow run of a personal fit. The person appears only as a pseudonym (a hash of their
/// id); the model's body is the artifact.
fn personal_run(user: UserId, version: &str, body: &str, until_ms: i64) -> crate::mlflow::Run {
    use sha2::Digest;
    let pseudonym = hex::encode(&sha2::Sha256::digest(format!("glucosync-mlflow:{user}"))[..6]);
    let record: Option<ModelRecord> = serde_json::from_str(body).ok();
    let mut metrics = Vec::new();
    let mut params = vec![
        ("model_family".to_owned(), MODEL_FAMILY.to_owned()),
        (
            "training_days".to_owned(),
            (TRAINING_MS / 86_400_000).to_string(),
        ),
        (
            "trained_until".to_owned(),
            Timestamp::from_utc_ms(until_ms).to_rfc3339_utc(),
        ),
    ];
    if let Some(r) = &record {
        params.push(("inputs".to_owned(), format!("{:?}", r.model.inputs)));
        metrics.push(("training_rows".to_owned(), r.model.training_rows as f64));
        for (step, m) in r.model.steps.iter().enumerate() {
            let minutes = 5 * (step + 1);
            metrics.push((format!("interval_p10.{minutes}min"), m.error_p10));
            metrics.push((format!("interval_p90.{minutes}min"), m.error_p90));
        }
    }
    crate::mlflow::Run {
        experiment: "glucosync-forecast-personal".into(),
        name: version.to_owned(),
        params,
        metrics,
        tags: vec![("person".into(), pseudonym)],
        artifacts: vec![("model.json".into(), body.as_bytes().to_vec())],
    }
}
