//! OpenTelemetry traces (docs/observability.md) from the real binary to an OTLP/HTTP receiver
//! that decodes the protobuf with the official definitions: one server span per request named
//! by its route, continuing the caller's `traceparent` and returning one; inside it the
//! storage, Redis, SMTP, Web Push and OpenAI calls as child spans; the trace id in the
//! request's log lines and in the `traceparent` sent to OpenAI; no health data in any span.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{now_ms, rfc3339, Backend, Engine, PASSWORD};
use glucosync_testing::openai::FakeOpenAi;
use glucosync_testing::otlp::{OtlpReceiver, ReceivedSpan};
use glucosync_testing::push::{start_push_service, Device};
use glucosync_testing::smtp::{SmtpServer, SmtpTls};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(20);

/// A private redis-server on a free port, stopped on drop.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        for _ in 0..20 {
            let port = 21_000 + (now_ms() % 8_000) as u16 + rand::random::<u16>() % 500;
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server installed (scripts/services installs it)");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Redis(child, port);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start redis-server");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `traceparent` as a calling service would send it: a fresh trace and span id.
fn traceparent() -> (String, String) {
    let trace: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let span: String = (0..8)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    (format!("00-{trace}-{span}-01"), trace)
}

/// Whether `span` descends from the span `ancestor` (by parent ids among `spans`).
fn descends_from(spans: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &str) -> bool {
    let mut current = span.parent_span_id.clone();
    for _ in 0..32 {
        if current == ancestor {
            return true;
        }
        match spans.iter().find(|s| s.span_id == current) {
            Some(parent) => current = parent.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_traced_end_to_end_with_their_calls_and_log_lines() {
    let receiver = OtlpReceiver::start().await;
    let openai = FakeOpenAi::start("A steady week with one low after lunch.").await;
    let smtp = SmtpServer::start(SmtpTls::None);
    let (push_base, push) = start_push_service().await;
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::new();
    let redis_url = format!("redis://127.0.0.1:{}", redis.1);
    let smtp_url = format!("smtp://127.0.0.1:{}?tls=none", smtp.port);
    let mut engine = Engine::start_with_env(
        dir.path(),
        "info",
        &backend,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("GLUCOSYNC_REDIS_URL", redis_url.as_str()),
            ("GLUCOSYNC_SMTP_URL", smtp_url.as_str()),
            ("GLUCOSYNC_PUSH_ALLOW_LOOPBACK", "true"),
            ("GLUCOSYNC_OPENAI_BASE_URL", openai.base_url.as_str()),
            ("GLUCOSYNC_OPENAI_API_KEY", "sk-test-traces"),
        ],
    );
    let client = reqwest::Client::new();
    let email = "traced.person@example.org";
    let session = common::session(&client, &engine, email).await;
    let device = Device::new("traced-phone");
    let r = client
        .post(engine.url("/api/v1/push/subscriptions"))
        .bearer_auth(&session)
        .json(&device.subscription(&push_base))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(r.status(), 201);

    // An upload ending in an urgent low, in the caller's trace: the answer names the trace.
    let (parent, upload_trace) = traceparent();
    let now = now_ms();
    let r = client
        .post(engine.url("/api/v1/readings"))
        .bearer_auth(&session)
        .header("traceparent", &parent)
        .json(&json!([
            {"time": rfc3339(now - 600_000), "value": 80.4},
            {"time": rfc3339(now - 300_000), "value": 62.7},
            {"time": rfc3339(now - 20_000), "value": 49.3}
        ]))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let answered = r
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("a traceparent on the answer")
        .to_owned();
    assert!(
        answered.starts_with(&format!("00-{upload_trace}-")),
        "{answered}"
    );
    assert!(
        !answered.contains(&parent[36..52]),
        "the answer names the server's own span"
    );

    // An invite (SMTP) and an AI summary (OpenAI), each in a trace of its own.
    let (invite_parent, invite_trace) = traceparent();
    let r = client
        .post(engine.url("/api/v1/shares"))
        .bearer_auth(&session)
        .header("traceparent", &invite_parent)
        .json(&json!({"email": "friend@example.org", "role": "caregiver"}))
        .send()
        .await
        .expect("invite");
    assert!(r.status().is_success(), "{}", r.status());
    let r = client
        .patch(engine.url("/api/v1/me/settings"))
        .bearer_auth(&session)
        .json(&json!({"ai_insights": true}))
        .send()
        .await
        .expect("opt in");
    assert!(r.status().is_success(), "{}", r.status());
    let (ai_parent, ai_trace) = traceparent();
    let r = client
        .post(engine.url("/api/v1/insights/summary"))
        .bearer_auth(&session)
        .header("traceparent", &ai_parent)
        .send()
        .await
        .expect("summary");
    assert!(r.status().is_success(), "{}", r.status());

    // The calls went out: OpenAI was told the trace.
    let sent = openai.requests();
    let to_openai = sent
        .last()
        .and_then(|r| r.traceparent.clone())
        .expect("a traceparent sent to OpenAI");
    assert!(
        to_openai.starts_with(&format!("00-{ai_trace}-")),
        "{to_openai}"
    );
    smtp.wait_for(WITHIN, |m| m.contains("To: friend@example.org"))
        .await;
    let deadline = Instant::now() + WITHIN;
    while push.received.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no push arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The spans arrive (batched every 200 ms, the rest flushed at shutdown).
    let server = receiver
        .wait_for(WITHIN, "for the upload", |s| {
            s.trace_id == upload_trace && s.kind == 2
        })
        .await;
    let pushed = receiver
        .wait_for(WITHIN, "of the push", |s| s.name == "web push")
        .await;
    let emailed = receiver
        .wait_for(WITHIN, "of the email", |s| s.name == "smtp send")
        .await;
    receiver
        .wait_for(WITHIN, "of the OpenAI call", |s| {
            s.trace_id == ai_trace && s.name == "openai chat.completions"
        })
        .await;
    assert!(engine.terminate().success());
    let spans = receiver.spans();
    assert!(receiver.rejected.lock().expect("lock").is_empty());

    // The server span: the route, not the path; the caller's span as parent.
    assert_eq!(server.name, "POST /api/v1/readings");
    assert_eq!(server.parent_span_id, parent[36..52]);
    assert_eq!(server.attributes["http.route"], "/api/v1/readings");
    assert_eq!(server.attributes["http.request.method"], "POST");
    assert_eq!(server.attributes["http.response.status_code"], "201");
    assert_eq!(server.resource["service.name"], "glucoengine");
    // Inside it: the database and Redis, as client spans.
    let inside: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == upload_trace && descends_from(&spans, s, &server.span_id))
        .collect();
    let systems: Vec<&str> = inside
        .iter()
        .filter_map(|s| s.attributes.get("db.system.name").map(String::as_str))
        .collect();
    let database = if glucosync_testing::backend_is_postgres() {
        "postgresql"
    } else {
        "sqlite"
    };
    assert!(systems.contains(&database), "{systems:?}");
    assert!(systems.contains(&"redis"), "{systems:?}");
    assert!(
        inside
            .iter()
            .any(|s| s.name == "insert_readings" && s.kind == 3),
        "{:?}",
        inside.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // The push went out from the delivery job, a trace of its own (the alert is raised by
    // the background evaluation, not by the upload).
    assert_eq!(pushed.kind, 3);
    let job = spans
        .iter()
        .find(|s| s.trace_id == pushed.trace_id && s.name == "deliver notifications")
        .expect("the delivery job's span");
    assert!(descends_from(&spans, &pushed, &job.span_id));
    // Background polls that found nothing sent no traces: every trace has a request or a job
    // at its root.
    for span in spans.iter().filter(|s| s.parent_span_id.is_empty()) {
        assert!(
            span.kind == 2
                || ["deliver notifications", "send invite"].contains(&span.name.as_str()),
            "a lone root span: {span:?}"
        );
    }
    // The OpenAI call inside its request's span.
    let ai_request = spans
        .iter()
        .find(|s| s.trace_id == ai_trace && s.kind == 2)
        .expect("the summary's server span");
    let ai_call = spans
        .iter()
        .find(|s| s.trace_id == ai_trace && s.name == "openai chat.completions")
        .expect("the OpenAI call's span");
    assert!(descends_from(&spans, ai_call, &ai_request.span_id));
    // The invite's email is sent after its request answered: a trace of its own, whose root
    // links back to the request's span (which ended with the request).
    let invite_request = spans
        .iter()
        .find(|s| s.trace_id == invite_trace && s.kind == 2)
        .expect("the invite's server span");
    let sending = spans
        .iter()
        .find(|s| s.trace_id == emailed.trace_id && s.name == "send invite")
        .expect("the invite email's span");
    assert!(sending.parent_span_id.is_empty());
    assert!(descends_from(&spans, &emailed, &sending.span_id));
    assert_eq!(
        sending.links,
        vec![(invite_trace.clone(), invite_request.span_id.clone())]
    );
    // Nothing of the person's in any span: no events (log lines stay in the log), and no
    // attribute holds their email, a glucose value or the secret.
    for span in &spans {
        assert!(span.events.is_empty(), "{span:?}");
        for value in span.attributes.values() {
            for secret in [email, PASSWORD, "sk-test-traces", "49.3", "62.7", "80.4"] {
                assert!(!value.contains(secret), "{secret} in {span:?}");
            }
        }
    }

    // Each log line of the upload carries its trace id; lines outside requests carry none.
    let logs = engine.output();
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let upload_line = lines
        .iter()
        .find(|l| l["route"] == "/api/v1/readings" && l["method"] == "POST")
        .expect("the upload's request line");
    assert_eq!(
        upload_line["trace_id"],
        upload_trace.as_str(),
        "{upload_line}"
    );
    let started = lines
        .iter()
        .find(|l| l["message"] == "GlucoEngine ready")
        .expect("a startup line");
    assert!(started.get("trace_id").is_none(), "{started}");
}
