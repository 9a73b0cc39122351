//! Forecast serving: a forecast for each CGM reading that arrives, in *data* time (a
//! backfilled or replayed reading gets the forecast it would have had then), and personal
//! models fitted as the person's data grows. The models are the domain's
//! (`glucosync_domain::forecast`, docs/forecasting.md); this module reads the history from the
//! store, stores forecasts and models, and decides when to fit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
/// Data a personal model is fitted on.
const TRAINING_MS: i64 = 14 * 86_400_000;
/// A personal model is refitted once this much newer data exists (data time).
const REFIT_AFTER_MS: i64 = 86_400_000;
/// Without enough data for a personal model, the next attempt waits for this much more.
const RETRY_AFTER_MS: i64 = 6 * 3_600_000;
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
    models: Mutex<HashMap<UserId, CachedModel>>,
    /// Per person, the data time of this replica's last fitting attempt.
    attempts: Mutex<HashMap<UserId, i64>>,
    fitting: Mutex<HashSet<UserId>>,
}

impl Default for Forecaster {
    fn default() -> Self {
        Forecaster::new(PopulationModel::shipped())
    }
}

impl Forecaster {
    pub fn new(population: PopulationModel) -> Forecaster {
        Forecaster {
            population,
            models: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
            fitting: Mutex::new(HashSet::new()),
        }
    }

    /// The person's model: their personal one if fitted, else the population's.
    async fn model(&self, state: &AppState, user: UserId) -> Result<CachedModel, ApiError> {
        if let Some(m) = self.models.lock().expect("lock").get(&user) {
            if m.loaded.elapsed() < MODEL_CACHE {
                return Ok(m.clone());
            }
        }
        let stored = state.store.latest_model(user).await?;
        let cached = match stored.and_then(|s| {
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
        };
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
    ) -> Result<Option<StoredForecast>, ApiError> {
        let model = self.model(state, user).await?;
        let from = reading_ms - HISTORY_MS;
        let points = state.store.cgm_values(user, from, reading_ms + 1).await?;
        let treatments =
            crate::api::reports::period_treatments(state, user, from, reading_ms + 1).await?;
        let scales = model.record.as_ref().map(|r| r.scales).unwrap_or_default();
        let series = Series::from_records(from, reading_ms, &points, &treatments, scales);
        let chosen = match &model.record {
            Some(r) => &r.model,
            None => self.population.for_inputs(if series.has_treatments {
                forecast::Inputs::Full
            } else {
                forecast::Inputs::GlucoseOnly
            }),
        };
        self.maybe_fit(state, user, reading_ms, &model);
        let Some(steps) = forecast::forecast(chosen, &series, series.len() - 1) else {
            return Ok(None);
        };
        let stored = StoredForecast {
            issued_ms: reading_ms,
            model_version: model.version.clone(),
            created_ms: now_ms(),
            points_json: serde_json::to_string(&points_out(reading_ms, &steps))
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        };
        state.store.save_forecast(user, &stored).await?;
        state.metrics.ml_predictions_total.inc();
        Ok(Some(stored))
    }

    /// A logged treatment changes the forecast of the newest reading when it falls within that
    /// forecast's history (a bolus just given, a meal just eaten): forecast it again.
    pub async fn treatments_changed(
        self: &Arc<Self>,
        state: &AppState,
        user: UserId,
        newest_treatment_ms: i64,
    ) {
        let newest_reading = match state.store.latest_forecast(user).await {
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
        if let Err(e) = self.forecast_reading(state, user, newest_reading).await {
            tracing::warn!(error = %e, "could not forecast");
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
            if let Some(&last) = attempts.get(&user) {
                // Backfilled older readings never trigger a fit; newer data does once enough
                // of it has arrived since the last attempt.
                let wait = if current.record.is_none() {
                    RETRY_AFTER_MS
                } else {
                    REFIT_AFTER_MS
                };
                if now_data_ms < last + wait {
                    return;
                }
            }
            attempts.insert(user, now_data_ms);
        }
        if !self.fitting.lock().expect("lock").insert(user) {
            return;
        }
        let (me, state) = (self.clone(), state.clone());
        tokio::spawn(async move {
            if let Err(e) = me.fit(&state, user, now_data_ms).await {
                tracing::warn!(error = %e, "could not fit a forecast model");
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
            CachedModel {
                version: version.clone(),
                trained_until_ms: until_ms,
                record: Some(Arc::new(record)),
                loaded: Instant::now(),
            },
        );
        tracing::info!(version = %version, "fitted a personal forecast model");
        self.forecast_reading(state, user, until_ms).await?;
        Ok(Some(version))
    }
}

fn points_out(issued_ms: i64, steps: &[ForecastPoint]) -> Vec<ForecastPointOut> {
    let r1 = |v: f64| (v * 10.0).round() / 10.0;
    steps
        .iter()
        .map(|p| ForecastPointOut {
            time: Timestamp::from_utc_ms(issued_ms + p.minutes * 60_000).to_rfc3339_utc(),
            value: r1(p.mgdl),
            lower: r1(p.lower),
            upper: r1(p.upper),
        })
        .collect()
}
