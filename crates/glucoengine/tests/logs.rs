//! What must never be logged (docs/logging.md) is not logged: run the real binary at debug
//! level, send requests carrying emails, passwords, tokens, glucose values, doses and notes, and
//! search the whole log output for them. Also checks graceful shutdown on SIGTERM.

mod common;

use std::time::Duration;

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

/// What the log sweep writes into every field it can: strings carry `SECRETS`, numbers
/// `246.813`, integers `24681` (within the field's bounds), emails and URLs their own marker.
const STRING_MARK: &str = "SECRETS";
const NUMBER_MARK: f64 = 246.813;
const INTEGER_MARK: i64 = 24681;
const EMAIL_MARK: &str = "secret.marker@example.org";

/// An instance of `schema` (resolving `$ref`s in `doc`) with markers in every field.
fn marked(doc: &Value, schema: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or("");
        return marked(doc, &doc["components"]["schemas"][name], depth + 1);
    }
    for any in ["oneOf", "anyOf", "allOf"] {
        if let Some(first) = schema[any]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["type"] != "null").or_else(|| a.first()))
        {
            return marked(doc, first, depth + 1);
        }
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds
            .iter()
            .find(|k| *k != "null")
            .and_then(Value::as_str)
            .unwrap_or("object"),
        other => other.as_str().unwrap_or("object"),
    };
    match kind {
        "string" => match schema["format"].as_str() {
            Some("date-time") => json!(rfc3339(now_ms() - 600_000)),
            Some("date") => json!("2026-11-20"),
            Some("email") => json!(EMAIL_MARK),
            Some("uri") => json!("https://secret-marker.example.org/SECRETS-url"),
            _ => json!(format!("{STRING_MARK}-{depth}")),
        },
        "number" => json!(NUMBER_MARK),
        "integer" => {
            let low = schema["minimum"].as_i64().unwrap_or(i64::MIN);
            let high = schema["maximum"].as_i64().unwrap_or(i64::MAX);
            json!(INTEGER_MARK.clamp(low, high))
        }
        "boolean" => json!(true),
        "array" => json!([marked(doc, &schema["items"], depth + 1)]),
        _ => Value::Object(
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, field)| (name.clone(), marked(doc, field, depth + 1)))
                .collect(),
        ),
    }
}

/// Every operation of the served OpenAPI document, called by a logged-in person with markers in
/// its path, query and body (and once more with a malformed body), at debug level: none of the
/// markers, nor the person's email, password or tokens, may reach the log. Nightscout's API
/// (not in the document) gets its uploads and queries the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_operation_logs_what_it_was_sent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::new();
    let mut engine = Engine::start(dir.path(), "debug", &backend);
    let client = reqwest::Client::new();
    let email = "sweep.person@example.org";
    let common::Site {
        session: token,
        base: ns_base,
        secret: ns_secret,
    } = common::site(&engine, &client, email).await;
    let ns_sha1 = glucosync_server::nightscout::access::sha1_hex(&ns_secret);
    let doc: Value = client
        .get(engine.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");

    let mut calls = 0;
    let mut last: Vec<(reqwest::Method, String, Option<Value>)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let Ok(method) = method.to_ascii_uppercase().parse::<reqwest::Method>() else {
                continue;
            };
            let mut url = path.clone();
            let mut query = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().expect("name");
                let value = match marked(&doc, &p["schema"], 0) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                if p["in"] == "path" {
                    url = url.replace(&format!("{{{name}}}"), &value);
                } else if p["in"] == "query" {
                    query.push(format!("{name}={}", value.replace('+', "%2B")));
                }
            }
            if !query.is_empty() {
                url = format!("{url}?{}", query.join("&"));
            }
            let body = op["requestBody"]["content"]["application/json"]["schema"]
                .is_object()
                .then(|| {
                    marked(
                        &doc,
                        &op["requestBody"]["content"]["application/json"]["schema"],
                        0,
                    )
                });
            let ends_session = matches!(
                (method.as_str(), path.as_str()),
                ("DELETE", "/api/v1/me") | ("POST", "/api/v1/auth/logout")
            );
            if ends_session {
                last.push((method, url, body));
                continue;
            }
            calls += sweep_call(&client, &engine, &token, &method, &url, body.as_ref(), op).await;
        }
    }
    for (method, url, body) in &last {
        calls += sweep_call(
            &client,
            &engine,
            &token,
            method,
            url,
            body.as_ref(),
            &json!({}),
        )
        .await;
    }
    assert!(calls >= 80, "{calls} calls");

    // Nightscout's API: uploads with values and notes, queries with them, the API secret.
    let entry = json!([{"type": "sgv", "sgv": 246, "date": now_ms() - 60_000, "device": "SECRETS-ns-device",
                        "noise": 1, "direction": "Flat"}]);
    let treatment = json!([{"eventType": "Note", "notes": "SECRETS-ns-note", "carbs": 24.681,
                            "created_at": rfc3339(now_ms() - 60_000)}]);
    for (method, path, body) in [
        (reqwest::Method::POST, "/api/v1/entries", Some(entry)),
        (reqwest::Method::POST, "/api/v1/treatments", Some(treatment)),
        (
            reqwest::Method::GET,
            "/api/v1/entries.json?find[sgv][$gte]=SECRETS-q&count=5",
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/treatments.json?find[notes]=SECRETS-q2",
            None,
        ),
        (
            reqwest::Method::POST,
            "/api/v3/treatments",
            Some(json!({"eventType": "Note", "notes": "SECRETS-v3",
            "date": now_ms(), "app": "SECRETS-app"})),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/entries",
            Some(json!("SECRETS-not-a-list")),
        ),
    ] {
        let mut req = client
            .request(method, format!("{ns_base}{path}"))
            .header("api-secret", &ns_sha1);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("send");
    }
    let r = client
        .get(format!(
            "{ns_base}/api/v1/entries.json?secret=SECRETS-wrong-secret"
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);

    assert!(engine.terminate().success());
    let logs = engine.output();
    // Each call was logged, under its route (not its path, which carries markers).
    let routes: std::collections::HashSet<String> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["route"].as_str().map(str::to_owned))
        .collect();
    assert!(routes.contains("/api/v1/treatments/{id}"), "{routes:?}");
    assert!(
        routes.len() >= 50,
        "{} routes logged: {routes:?}",
        routes.len()
    );
    let searched = without_timing_fields(&logs);
    for secret in [
        STRING_MARK,
        "246.81",
        "24.681",
        &INTEGER_MARK.to_string(),
        EMAIL_MARK,
        "secret-marker",
        email,
        PASSWORD,
        &token,
        &token[4..20],
        &ns_secret,
        &ns_sha1,
    ] {
        if let Some(line) = searched.lines().find(|l| l.contains(secret)) {
            panic!("the log contains `{secret}`: {line}");
        }
    }
}

/// One operation, with its marked body and then a malformed one: how many calls were made.
async fn sweep_call(
    client: &reqwest::Client,
    engine: &Engine,
    token: &str,
    method: &reqwest::Method,
    url: &str,
    body: Option<&Value>,
    op: &Value,
) -> usize {
    let request = || {
        client
            .request(method.clone(), engine.url(url))
            .bearer_auth(token)
    };
    let mut calls = 0;
    let r = match body {
        Some(body) => request().json(body),
        None if op["requestBody"].is_object() => request().body("SECRETS raw body 246.813"),
        None => request(),
    };
    // An event stream's answer is its status: dropped without reading on.
    let _ = tokio::time::timeout(Duration::from_secs(10), r.send()).await;
    calls += 1;
    if op["requestBody"].is_object() {
        let broken = request()
            .header("content-type", "application/json")
            .body("{\"SECRETS\": 246.813, \"broken");
        let _ = tokio::time::timeout(Duration::from_secs(10), broken.send()).await;
        calls += 1;
    }
    calls
}
