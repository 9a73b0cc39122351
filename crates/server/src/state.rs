//! What every handler can reach: the store, the shared-state services, metrics, configuration.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use glucosync_shared_state::{Cache, EventBus, RateLimiter, RedisConnection};
use glucosync_store::Store;

use crate::config::Config;
use crate::telemetry::Metrics;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub cache: Arc<dyn Cache>,
    /// Login and sign-up limits (exact).
    pub limiter: Arc<dyn RateLimiter>,
    /// The per-person API limit, checked on every request (approximate across replicas).
    pub api_limiter: Arc<dyn RateLimiter>,
    pub bus: Arc<dyn EventBus>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    /// The Redis connection behind the shared state, when configured: readiness pings it.
    pub redis: Option<Arc<RedisConnection>>,
    /// Set on SIGTERM: readiness fails so load balancers stop sending requests, while the
    /// server still answers them, for `shutdown_drain_seconds`.
    pub draining: std::sync::atomic::AtomicBool,
    /// Becomes true when the server stops accepting: long-lived streams end then, so that
    /// shutdown does not wait for them.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// When each credential's `last_used` was last written, to write it at most every few
    /// minutes instead of on every request.
    pub touched: Mutex<HashMap<i64, Instant>>,
    /// Forecasts per reading and the fitting of personal models.
    pub forecaster: Arc<crate::forecasting::Forecaster>,
    /// Alert evaluation and its timers.
    pub alerts: Arc<crate::alerting::Alerting>,
    /// Web Push (and email) notifications from the outbox.
    pub notifier: Arc<crate::delivery::Notifier>,
    /// The single sign-on provider, when configured.
    pub oidc: Option<Arc<crate::oidc::Provider>>,
    /// The OpenAI-compatible API for summaries and questions, when configured.
    pub ai: Option<Arc<crate::ai::AiClient>>,
    /// The keys that seal Nightscout API secrets and sign Nightscout JWTs.
    pub nightscout_keys: crate::nightscout::Keys,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        shared: SharedState,
        metrics: Arc<Metrics>,
        config: Arc<Config>,
    ) -> Self {
        let oidc = crate::oidc::Provider::from_config(&config).map(Arc::new);
        let ai = crate::ai::AiClient::from_config(&config).map(Arc::new);
        AppState(Arc::new(Inner {
            oidc,
            ai,
            store,
            cache: shared.cache,
            limiter: shared.limiter,
            api_limiter: shared.api_limiter,
            bus: shared.bus,
            redis: shared.redis,
            metrics,
            config,
            touched: Mutex::new(HashMap::new()),
            forecaster: Arc::new(crate::forecasting::Forecaster::default()),
            alerts: Arc::new(crate::alerting::Alerting::default()),
            notifier: Arc::new(crate::delivery::Notifier::default()),
            draining: std::sync::atomic::AtomicBool::new(false),
            stopping: tokio::sync::watch::channel(false).0,
            nightscout_keys: crate::nightscout::Keys::default(),
        }))
    }
}

/// The shared-state services: in-process, or in Redis for a cluster.
pub struct SharedState {
    pub cache: Arc<dyn Cache>,
    /// Login and sign-up limits (exact).
    pub limiter: Arc<dyn RateLimiter>,
    /// The per-person API limit, checked on every request (approximate across replicas).
    pub api_limiter: Arc<dyn RateLimiter>,
    pub bus: Arc<dyn EventBus>,
    pub redis: Option<Arc<RedisConnection>>,
}

/// The server's clock, in ms since the epoch. The domain never reads a clock itself.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
