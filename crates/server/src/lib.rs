//! GlucoEngine's server: HTTP API, authentication, telemetry, configuration and startup.
//!
//! This crate owns the edge: parsing and authorizing requests, mapping errors to
//! problem+json (in [`error`] only), and the process lifecycle. It must never contain SQL or
//! domain rules; those live in the store crates and the domain crate.

pub mod accounts;
pub mod ai;
pub mod alerting;
pub mod api;
mod api_errors_doc;
mod api_links_doc;
pub mod app;
pub mod auth;
pub mod backup;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod error;
pub mod export;
pub mod forecasting;
pub mod import;
pub mod json;
pub mod live;
pub mod mail;
pub mod mlflow;
pub mod nightscout;
pub mod oidc;
mod outbound;
pub mod push;
pub mod state;
pub mod telemetry;
pub mod traces;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glucosync_shared_state::{
    BatchingRateLimiter, MemoryBus, MemoryCache, MemoryRateLimiter, RateLimiter, RedisBus,
    RedisCache, RedisConnection, RedisRateLimiter,
};
use glucosync_store::{Store, StoreError};
use glucosync_store_postgres::{PostgresOptions, PostgresStore};
use glucosync_store_sqlite::{SqliteOptions, SqliteStore};
use tokio::net::TcpListener;

pub use config::Config;
use state::{AppState, SharedState};
use telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error(
        "cannot listen on {addr}: {source} (is another process using it? set GLUCOSYNC_LISTEN)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Opens the store the database URL names. Does not migrate.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let url = config.database_url.expose();
    if url.starts_with("sqlite:") {
        let options =
            SqliteOptions::from_url(url).map_err(|e| StartError::Config(config::ConfigError(e)))?;
        return Ok(Arc::new(SqliteStore::open(&options)?));
    }
    let mut options = PostgresOptions::new(url);
    options.read_url = config
        .database_read_url
        .as_ref()
        .map(|u| u.expose().to_owned());
    options.pool_size = config.database_pool_size;
    Ok(Arc::new(PostgresStore::open(&options)?))
}

/// A server bound to its port(s), ready to run.
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    state: AppState,
    started: Instant,
    pub demo: Option<demo::DemoAccount>,
}

impl Server {
    /// Opens and migrates storage, seeds the demo account if configured, and binds.
    pub async fn build(config: Config) -> Result<Server, StartError> {
        let started = Instant::now();
        let store = open_store(&config)?;
        store.migrate().await?;
        let demo = if config.demo {
            Some(demo::refresh(store.as_ref(), state::now_ms()).await?)
        } else {
            None
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        let shared = match &config.redis_url {
            None => {
                let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new());
                SharedState {
                    cache: Arc::new(MemoryCache::new()),
                    api_limiter: limiter.clone(),
                    limiter,
                    bus: Arc::new(MemoryBus::new()),
                    redis: None,
                }
            }
            Some(url) => {
                let redis = RedisConnection::open(url.expose())
                    .map_err(|e| StartError::Unsupported(e.to_string()))?;
                let limiter: Arc<dyn RateLimiter> = Arc::new(RedisRateLimiter::new(redis.clone()));
                SharedState {
                    cache: Arc::new(RedisCache::new(redis.clone())),
                    // Checked on every request: counted here, settled with Redis in batches.
                    api_limiter: Arc::new(BatchingRateLimiter::new(limiter.clone())),
                    limiter,
                    bus: Arc::new(RedisBus::new(redis.clone())),
                    redis: Some(redis),
                }
            }
        };
        let mailer = mail::Mailer::from_config(&config).map_err(StartError::Unsupported)?;
        let state = AppState::new(store, shared, Metrics::new()?, Arc::new(config));
        state.notifier.set_mailer(mailer);
        if let Some(demo) = &demo {
            // The seeded data arrived without uploads: fit the demo person's model and forecast
            // their newest reading, so the dashboard shows a forecast from the first look.
            if let Err(e) = state
                .forecaster
                .fit(&state, demo.user_id, demo.last_reading_ms)
                .await
            {
                tracing::warn!(error = %e, "could not forecast for the demo account");
            }
        }
        Ok(Server {
            listener,
            metrics_listener,
            state,
            started,
            demo,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.listen)
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// Serves until `shutdown` completes; then stops accepting, lets requests in flight finish
    /// (up to the configured grace period), and flushes and closes storage.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let Server {
            listener,
            metrics_listener,
            state,
            started,
            ..
        } = self;
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let drain = Duration::from_secs(state.config.shutdown_drain_seconds);
        let drain_state = state.clone();
        tokio::spawn(async move {
            shutdown.await;
            if !drain.is_zero() {
                // Fail readiness first so a load balancer moves traffic away, then stop.
                tracing::info!(seconds = drain.as_secs(), "draining: readiness now fails");
                drain_state
                    .draining
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(drain).await;
            }
            drain_state.stopping.send_replace(true);
            let _ = stop_tx.send(true);
        });
        let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        };
        if let Some(ml) = metrics_listener {
            let router = app::metrics_router(state.clone());
            let rx = stop_rx.clone();
            tokio::spawn(async move {
                let _ = axum::serve(ml, router)
                    .with_graceful_shutdown(wait_stop(rx))
                    .await;
            });
        }
        // The Web Push identity exists before the first alert (created by the first replica).
        if let Err(e) = state.notifier.vapid(&state).await {
            tracing::warn!(error = %e, "no Web Push key yet; pushes will retry");
        }
        let timers = tokio::spawn(state.alerts.clone().run_timers(state.clone()));
        let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let deletions = tokio::spawn(accounts::run_deletions(state.clone(), holder.clone()));
        tokio::spawn(backup::run_schedule(state.clone(), holder));
        let router = app::router(state.clone());
        web::log_missing_builds(&state.config);
        tracing::info!(
            listen = %addr,
            backend = state.store.backend(),
            ready_ms = started.elapsed().as_millis() as u64,
            "GlucoEngine ready"
        );
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(wait_stop(stop_rx.clone()));
        let grace = Duration::from_secs(state.config.shutdown_grace_seconds);
        let deadline = async move {
            wait_stop(stop_rx).await;
            tracing::info!("shutting down: finishing requests in flight");
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = serve => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "server error");
                }
            }
            _ = deadline => tracing::warn!("grace period over; dropping the requests still in flight"),
        }
        state.stopping.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), timers).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), deletions).await;
        state.forecaster.flush(&state).await;
        state.store.close().await;
        tracing::info!("stopped; storage flushed and closed");
        Ok(())
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
