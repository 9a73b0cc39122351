//! Logs and metrics.
//!
//! One log line per request with the *matched route* (never the raw path or query, which can
//! hold emails or ids), status, latency and the request id that is also returned in the
//! `x-request-id` header. `docs/logging.md` lists what must never be logged; nothing in this
//! module reads a request or response body.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tracing::Instrument;

use crate::config::LogFormat;
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Libraries that log query parameters or payloads at debug level (tokio-postgres logs every
/// statement's parameters: emails, glucose values). They are capped at `info` whatever the
/// configured level, so that debugging never leaks health data (docs/logging.md).
const LEAKY_AT_DEBUG: &[&str] = &["tokio_postgres", "postgres_protocol", "redis"];

pub fn init_logging(format: LogFormat, filter: &str) {
    let _ = init(format, filter, None);
}

/// Logs to stdout in `format`, filtered by `filter`; and, with `traces` (the OTLP endpoint and
/// the runtime to export from), traces (see [`crate::traces`]), whose provider is returned to
/// be shut down last.
pub fn init(
    format: LogFormat,
    filter: &str,
    traces: Option<(&str, &tokio::runtime::Handle)>,
) -> Option<crate::traces::Traces> {
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, Layer, Registry};

    let mut filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for target in LEAKY_AT_DEBUG {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let log = match format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(true)
            .with_writer(std::io::stdout)
            .map_event_format(crate::traces::WithTraceId)
            .with_filter(filter.or(request_span()))
            .boxed(),
        LogFormat::Text => fmt::layer()
            .with_target(true)
            .with_writer(std::io::stdout)
            .map_event_format(crate::traces::WithTraceId)
            .with_filter(filter.or(request_span()))
            .boxed(),
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![
        log,
        crate::traces::RecordTraceIds
            .with_filter(request_span())
            .boxed(),
    ];
    let mut provider = None;
    if let Some((endpoint, runtime)) = traces {
        match crate::traces::layer(endpoint, runtime) {
            Ok((layer, traces)) => {
                layers.push(layer.boxed());
                provider = Some(traces);
            }
            // Logging is not set up yet: say it where the log goes.
            Err(e) => eprintln!("traces are off: the OTLP exporter could not be set up: {e}"),
        }
    }
    // Already initialised (tests that start several servers in one process): keep the first.
    let _ = tracing_subscriber::registry().with(layers).try_init();
    provider
}

/// The name of the span around each request (see [`observe`]).
const REQUEST_SPAN: &str = "request";

/// Selects the request span, which the log layer always sees (whatever the level: the lines of
/// a request carry its trace id at `warn` too) and whose trace id is kept for them.
fn request_span() -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span() && meta.name() == REQUEST_SPAN && meta.target() == module_path!()
    })
}

/// The seed's metric names (SPEC §5) and the process and storage gauges.
/// The outcomes `glucosync_openai_api_calls_total` counts.
pub const OPENAI_OUTCOMES: [&str; 7] = [
    "ok",
    "rate_limited",
    "server_error",
    "client_error",
    "timeout",
    "network_error",
    "circuit_open",
];

/// What `glucosync_notification_deliveries_total` counts, by channel and outcome.
pub const DELIVERY_OUTCOMES: [&str; 4] = ["sent", "retry", "failed", "expired"];
/// Why `glucosync_alert_notifications_total` counts a notification.
pub const NOTIFY_REASONS: [&str; 4] = ["raised", "repeated", "snooze_ended", "resolved"];
/// The token kinds `glucosync_openai_tokens_total` counts.
pub const TOKEN_KINDS: [&str; 2] = ["prompt", "completion"];

pub struct Metrics {
    registry: Registry,
    pub readings_total: IntCounter,
    pub ml_predictions_total: IntCounter,
    pub user_signups_total: IntCounter,
    pub request_duration: HistogramVec,
    pub active_websocket_connections: IntGauge,
    /// Calls to the OpenAI-compatible API by outcome (`OPENAI_OUTCOMES`).
    pub openai_api_calls_total: IntCounterVec,
    /// Tokens used, by kind (`prompt`, `completion`).
    pub openai_tokens_total: IntCounterVec,
    /// AI replies not shown because they named an amount of insulin.
    pub ai_replies_withheld_total: IntCounter,
    pub alert_notifications_total: IntCounterVec,
    pub alert_shards_held: IntGauge,
    pub deliveries_total: IntCounterVec,
    /// The scheduled backups (docs/data-ownership.md): when the last one succeeded (Unix
    /// seconds), its size and how long it took; and the failures.
    pub backup_last_success_timestamp_seconds: IntGauge,
    pub backup_size_bytes: IntGauge,
    pub backup_duration_seconds: prometheus::Gauge,
    pub backup_failures_total: IntCounter,
    db_connections: IntGauge,
    db_connections_in_use: IntGauge,
    db_queued_writes: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "glucosync_api_request_duration_seconds",
                "API request latency by method, matched route and status",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let alert_notifications_total = IntCounterVec::new(
            Opts::new(
                "glucosync_alert_notifications_total",
                "Alert notifications by kind and reason (raised, repeated, snooze_ended, resolved)",
            ),
            &["kind", "reason"],
        )?;
        registry.register(Box::new(alert_notifications_total.clone()))?;
        for kind in glucosync_domain::alerts::AlertKind::ALL {
            for reason in NOTIFY_REASONS {
                alert_notifications_total
                    .with_label_values(&[kind.as_str(), reason])
                    .inc_by(0);
            }
        }
        let deliveries_total = IntCounterVec::new(
            Opts::new(
                "glucosync_notification_deliveries_total",
                "Attempts to deliver alert notifications by channel and outcome (sent, retry, failed, expired)",
            ),
            &["channel", "outcome"],
        )?;
        registry.register(Box::new(deliveries_total.clone()))?;
        for channel in [
            glucosync_store::DeliveryChannel::Push,
            glucosync_store::DeliveryChannel::Email,
        ] {
            for outcome in DELIVERY_OUTCOMES {
                deliveries_total
                    .with_label_values(&[channel.as_str(), outcome])
                    .inc_by(0);
            }
        }
        let openai_api_calls_total = IntCounterVec::new(
            Opts::new(
                "glucosync_openai_api_calls_total",
                "Calls to the OpenAI-compatible API by outcome (ok, rate_limited, server_error, client_error, timeout, network_error, circuit_open)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(openai_api_calls_total.clone()))?;
        // Every known series shows from the start, at 0: dashboards and alert rules need it, and
        // rate() cannot see a counter's first increment from nothing.
        for outcome in OPENAI_OUTCOMES {
            openai_api_calls_total
                .with_label_values(&[outcome])
                .inc_by(0);
        }
        let openai_tokens_total = IntCounterVec::new(
            Opts::new(
                "glucosync_openai_tokens_total",
                "Tokens used by the OpenAI-compatible API, by kind (prompt, completion)",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(openai_tokens_total.clone()))?;
        for kind in TOKEN_KINDS {
            openai_tokens_total.with_label_values(&[kind]).inc_by(0);
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let backup_duration_seconds = prometheus::Gauge::with_opts(Opts::new(
            "glucosync_backup_duration_seconds",
            "How long the last successful backup took",
        ))?;
        registry.register(Box::new(backup_duration_seconds.clone()))?;
        Ok(Arc::new(Metrics {
            backup_last_success_timestamp_seconds: gauge(
                "glucosync_backup_last_success_timestamp_seconds",
                "When the last scheduled backup succeeded (Unix time; 0: none since start)",
            )?,
            backup_size_bytes: gauge(
                "glucosync_backup_size_bytes",
                "Size of the last successful backup (compressed and encrypted)",
            )?,
            backup_duration_seconds,
            backup_failures_total: counter(
                "glucosync_backup_failures_total",
                "Scheduled backups that failed",
            )?,
            readings_total: counter(
                "glucosync_glucose_readings_total",
                "Glucose readings stored (duplicates not counted)",
            )?,
            ml_predictions_total: counter(
                "glucosync_ml_predictions_total",
                "Glucose forecasts issued",
            )?,
            user_signups_total: counter("glucosync_user_signups_total", "Accounts created")?,
            active_websocket_connections: gauge(
                "glucosync_active_websocket_connections",
                "WebSocket connections open on this replica",
            )?,
            alert_shards_held: gauge(
                "glucosync_alert_shards_held",
                "Shards of the alert timers whose lease this replica holds (of 16)",
            )?,
            openai_api_calls_total,
            openai_tokens_total,
            ai_replies_withheld_total: counter(
                "glucosync_ai_replies_withheld_total",
                "AI replies withheld because they named an amount of insulin",
            )?,
            db_connections: gauge("glucosync_db_pool_connections", "Database connections open")?,
            db_connections_in_use: gauge(
                "glucosync_db_pool_connections_in_use",
                "Database connections busy",
            )?,
            db_queued_writes: gauge(
                "glucosync_db_queued_writes",
                "Writes waiting for the database writer",
            )?,
            request_duration,
            alert_notifications_total,
            deliveries_total,
            registry,
        }))
    }

    pub fn render(&self, pool: glucosync_store::PoolStats) -> String {
        self.db_connections.set(pool.connections as i64);
        self.db_connections_in_use.set(pool.in_use as i64);
        self.db_queued_writes.set(pool.queued_writes as i64);
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

pub async fn metrics_handler(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(state.store.pool_stats()),
    )
        .into_response()
}

/// Assigns the request id, times the request, records the histogram and writes the log line.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = uuid::Uuid::new_v4().simple().to_string();
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        REQUEST_SPAN,
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    crate::traces::continue_trace(&span, request.headers());
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    let elapsed = started.elapsed();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    crate::traces::write_context(&span, response.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    state
        .metrics
        .request_duration
        .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
        .observe(elapsed.as_secs_f64());
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let _in_request = span.enter();
    if status.is_server_error() {
        tracing::error!(request_id = %id, method = %method, route = %route, status = status.as_u16(), latency_ms, "request");
    } else if status == StatusCode::NOT_FOUND && route == "unmatched" {
        tracing::debug!(request_id = %id, method = %method, route = %route, status = status.as_u16(), latency_ms, "request");
    } else {
        tracing::info!(request_id = %id, method = %method, route = %route, status = status.as_u16(), latency_ms, "request");
    }
    drop(_in_request);
    response
}
