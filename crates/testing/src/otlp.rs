//! An OTLP/HTTP trace receiver for tests: takes `POST /v1/traces` as OpenTelemetry collectors
//! do (`application/x-protobuf`, an `ExportTraceServiceRequest`), decodes it with the official
//! protobuf definitions (`opentelemetry-proto`) and keeps the spans for the test to inspect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// One received span, with its ids in hex and its attributes as strings.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The OTLP `SpanKind`: 1 internal, 2 server, 3 client.
    pub kind: i32,
    pub attributes: HashMap<String, String>,
    /// The attributes of the resource the span came from (`service.name`, …).
    pub resource: HashMap<String, String>,
    /// Span events (log records inside the span), by name.
    pub events: Vec<String>,
    /// The spans this one links to: (trace id, span id).
    pub links: Vec<(String, String)>,
    /// `2`: error.
    pub status_code: i32,
}

#[derive(Clone, Default)]
pub struct OtlpReceiver {
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// Requests that were not a decodable export (wrong content type or body).
    pub rejected: Arc<Mutex<Vec<String>>>,
}

fn strings(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

async fn export(State(receiver): State<OtlpReceiver>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/x-protobuf" {
        receiver
            .rejected
            .lock()
            .expect("lock")
            .push(format!("content type {content_type}"));
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => {
            receiver.rejected.lock().expect("lock").push(e.to_string());
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let mut spans = receiver.spans.lock().expect("lock");
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| strings(&r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: strings(&span.attributes),
                    resource: resource.clone(),
                    events: span.events.into_iter().map(|e| e.name).collect(),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    status_code: span.status.map(|s| s.code).unwrap_or(0),
                });
            }
        }
    }
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl OtlpReceiver {
    /// Listens on a free loopback port; `endpoint` is the base URL to configure.
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let receiver = OtlpReceiver {
            endpoint: format!("http://{addr}"),
            ..OtlpReceiver::default()
        };
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("lock").clone()
    }

    /// Waits until a span satisfies `pred`; panics (listing what came) after `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        pred: impl Fn(&ReceivedSpan) -> bool,
    ) -> ReceivedSpan {
        let deadline = Instant::now() + within;
        loop {
            if let Some(span) = self.spans().into_iter().find(|s| pred(s)) {
                return span;
            }
            if Instant::now() > deadline {
                let names: Vec<String> = self
                    .spans()
                    .iter()
                    .map(|s| format!("{} {} ({})", s.trace_id, s.name, s.parent_span_id))
                    .collect();
                panic!("no span {what} within {within:?}; received: {names:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
