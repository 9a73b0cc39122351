//! OpenTelemetry traces over OTLP/HTTP (docs/observability.md), when `otlp_endpoint` is set.
//!
//! `tracing` spans become OpenTelemetry spans through `tracing-opentelemetry`: the request span
//! of [`crate::telemetry::observe`] (the matched route, never the path), and the `debug` spans
//! around every storage, Redis, SMTP, Web Push and OpenAI call inside it. Only spans of
//! GlucoSync's own crates are exported, and only spans: a log event inside a span is not turned
//! into a span event, so what the log may not hold (docs/logging.md) cannot leave this way
//! either. Spans carry no arguments (`skip_all`).
//!
//! W3C `traceparent` is read from requests (the request span continues the caller's trace),
//! returned on responses, and sent on outgoing HTTP calls. The trace id of a request is in every
//! log line written inside it (`trace_id`), for the log ↔ trace correlation of the seed's Loki
//! and Tempo.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{Bytes, HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Set once traces are exported: only then are trace contexts read, written and logged.
static ENABLED: OnceLock<()> = OnceLock::new();

fn enabled() -> bool {
    ENABLED.get().is_some()
}

/// The exporter's HTTP client: the server's own reqwest client, run on the server's runtime.
/// (The SDK's batch processor exports from a thread of its own, where an async client has no
/// runtime to run on.)
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<Bytes>,
    ) -> Result<opentelemetry_http::Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let (status, headers, body) = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await??;
        let mut response = opentelemetry_http::Response::builder()
            .status(status)
            .body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// The tracer provider: kept to flush the last spans at shutdown.
pub struct Traces(SdkTracerProvider);

impl Traces {
    /// Exports the spans still waiting (at most a few seconds).
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            tracing::warn!(error = %e, "the last traces could not be exported");
        }
    }
}

/// The OpenTelemetry layer exporting to `<endpoint>/v1/traces`, exporting from `runtime`.
pub fn layer<S>(
    endpoint: &str,
    runtime: &tokio::runtime::Handle,
) -> Result<(impl Layer<S>, Traces), String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .with_timeout(Duration::from_secs(10))
        .with_http_client(OnRuntime {
            client,
            runtime: runtime.clone(),
        })
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("glucoengine");
    }
    let provider = SdkTracerProvider::builder()
        // Every request is recorded: a caller's `traceparent` may not switch tracing off with
        // its sampled flag (the default sampler follows the parent's).
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("glucosync");
    let _ = ENABLED.set(());
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(
            tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && meta.target().starts_with("glucosync")
            })
            // The calls' spans (`debug`) inside a request's or a job's (`info`): a background
            // poll's lone storage call (every second, finding nothing) is not a trace.
            .and(tracing_subscriber::filter::dynamic_filter_fn(|meta, cx| {
                *meta.level() <= tracing::Level::INFO || cx.lookup_current().is_some()
            })),
        );
    Ok((layer, Traces(provider)))
}

/// Makes `span` (a request's) continue the trace of the request's `traceparent`, and records
/// its trace id (for the log lines inside it).
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !enabled() {
        return;
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
    }
}

/// Writes the trace context of `span` (a `traceparent` header) into `headers`: a response's,
/// so that its caller can find the trace, or an outgoing request's, which continues it.
pub fn write_context(span: &tracing::Span, headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInjector(headers))
    });
}

/// Links `span` (a root made for background work a request started, which outlives the
/// request) to the current span: the trace of the work names its cause, and the request's
/// span still ends with the request (a child would keep it open).
pub fn link_to_current(span: &tracing::Span) {
    if !enabled() {
        return;
    }
    let cause = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .clone();
    if cause.is_valid() {
        span.add_link(cause);
    }
}

/// The `traceparent` of the current span, for an outgoing request (empty when not tracing).
pub fn outgoing_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    write_context(&tracing::Span::current(), &mut headers);
    headers
}

/// A span's trace id, as recorded by [`continue_trace`].
struct TraceId(String);

/// Keeps the `trace_id` recorded on a span where the log formatter can find it.
pub struct RecordTraceIds;

struct TraceIdVisitor(Option<String>);

impl Visit for TraceIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "trace_id" {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "trace_id" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for RecordTraceIds {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut visitor = TraceIdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(trace_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(TraceId(trace_id));
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut visitor = TraceIdVisitor(None);
        values.record(&mut visitor);
        if let (Some(trace_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().replace(TraceId(trace_id));
        }
    }
}

/// A log format that puts the trace id of the enclosing request first in each line written
/// inside one: `"trace_id":"…"` in a JSON line, `trace_id=… ` before a text one.
pub struct WithTraceId<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let trace_id = ctx.event_scope().and_then(|scope| {
            scope
                .from_root()
                .find_map(|span| span.extensions().get::<TraceId>().map(|t| t.0.clone()))
        });
        let Some(trace_id) = trace_id else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}"),
            None => write!(writer, "trace_id={trace_id} {line}"),
        }
    }
}
