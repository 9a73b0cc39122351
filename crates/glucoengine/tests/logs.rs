//! What must never be logged (docs/logging.md) is not logged: run the real binary at debug
//! level, send requests carrying emails, passwords, tokens, glucose values, doses and notes, and
//! search the whole log output for them. Also checks graceful shutdown on SIGTERM.

mod common;

use common::{now_ms, rfc3339, Backend, Engine, PASSWORD};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_health_data_or_secrets_in_logs_and_sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::new();
    let mut engine = Engine::start(dir.path(), "debug", &backend);
    let client = reqwest::Client::new();
    let email = "leaky.person@example.org";
    let r = client
        .post(engine.url("/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("signup");
    assert!(r.status().is_success());
    let login: Value = client
        .post(engine.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["token"].as_str().expect("token").to_owned();
    let csrf = login["csrf_token"].as_str().expect("csrf").to_owned();
    let api: Value = client
        .post(engine.url("/api/v1/tokens"))
        .bearer_auth(&token)
        .json(&json!({"name": "phone", "scopes": ["readings:write"]}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let api_token = api["token"].as_str().expect("token").to_owned();

    let t = rfc3339(now_ms() - 60_000);
    let sent = [
        client
            .post(engine.url("/api/v1/readings"))
            .bearer_auth(&api_token)
            .json(&json!({"time": t, "value": 123.456, "device": "LeakyDevice"})),
        client
            .post(engine.url("/api/v1/readings"))
            .bearer_auth(&api_token)
            .json(&json!({"time": t, "value": 777.7})), // rejected: the value is in the answer, not the log
        client
            .post(engine.url("/api/v1/treatments"))
            .bearer_auth(&token)
            .json(
                &json!([{"time": t, "kind": "insulin", "units": 7.77, "insulin_type": "bolus"},
                          {"time": t, "kind": "note", "text": "SECRETNOTE hypo at school"},
                          {"time": t, "kind": "carbs", "grams": 43.21}]),
            ),
        client
            .get(engine.url(&format!("/api/v1/readings?email={email}")))
            .bearer_auth(&token),
        client
            .post(engine.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": "wrong-but-secret-pw"})),
        client
            .post(engine.url("/api/v1/readings"))
            .header("cookie", format!("glucosync_session={token}"))
            .header("x-csrf-token", &csrf)
            .json(&json!({"time": t, "value": 145.5})),
        client
            .post(engine.url("/api/v1/readings"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{\"time\": \"SECRETBROKEN"),
    ];
    for request in sent {
        request.send().await.expect("send");
    }
    let status = engine.terminate();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let logs = engine.output();
    assert!(
        logs.contains("\"route\":\"/api/v1/readings\""),
        "request lines are logged: {logs}"
    );
    assert!(logs.contains("request_id"), "{logs}");
    assert!(
        logs.contains("stopped; storage flushed and closed"),
        "{logs}"
    );
    // Timings and clock readings are numbers the server makes up itself: a latency of 7.77 ms
    // or a timestamp at second 17.77 is not a leaked dose, so they are left out of the search.
    let searched = without_timing_fields(&logs);
    for secret in [
        email,
        "leaky.person",
        PASSWORD,
        "wrong-but-secret-pw",
        &token,
        &token[4..20],
        &csrf,
        &api_token,
        &api_token[4..20],
        "123.456",
        "777.7",
        "7.77",
        "43.21",
        "145.5",
        "SECRETNOTE",
        "LeakyDevice",
        "SECRETBROKEN",
    ] {
        assert!(
            !searched.contains(secret),
            "the log contains `{secret}`:\n{logs}"
        );
    }
}

/// The log with the fields that hold timings or clock readings (`timestamp`, `*_ms`) removed
/// from every JSON line; lines that are not JSON are kept whole.
fn without_timing_fields(logs: &str) -> String {
    logs.lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(mut fields)) => {
                fields.retain(|key, _| key != "timestamp" && !key.ends_with("_ms"));
                Value::Object(fields).to_string()
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
