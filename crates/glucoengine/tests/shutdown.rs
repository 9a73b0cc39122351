//! Graceful shutdown: on SIGTERM the server stops accepting, lets requests in flight finish
//! with their normal answer, flushes storage and exits 0; everything acknowledged is kept.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{now_ms, rfc3339, session, Backend, Engine};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_requests_in_flight_and_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::new();
    let mut engine = Engine::start(
        dir.path(),
        "warn,glucosync_server=info,glucosync_server::telemetry=warn",
        &backend,
    );
    // A new connection per request, so that no request races the closing of an idle one.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let token = session(&client, &engine, "shutdown@example.org").await;
    let base_ms = now_ms() - 60_000;
    let acked = Arc::new(Mutex::new(0usize));
    // (sent before the signal, answered after it) with 2xx: requests that were in flight.
    let finished_after_signal = Arc::new(Mutex::new(0usize));
    let signal_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..8i64 {
        let (client, token, url) = (
            client.clone(),
            token.clone(),
            engine.url("/api/v1/readings"),
        );
        let (acked, after, signal_at) = (
            acked.clone(),
            finished_after_signal.clone(),
            signal_at.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0i64.. {
                let body: Vec<Value> = (0..2000)
                    .map(|j| json!({"time": rfc3339(base_ms - (i * 2000 + j) * 1000), "value": 110, "device": format!("c{c}")}))
                    .collect();
                let sent = Instant::now();
                match client.post(&url).bearer_auth(&token).json(&body).send().await {
                    Ok(r) => {
                        assert!(r.status().is_success(), "a request got {} during shutdown", r.status());
                        *acked.lock().expect("lock") += body.len();
                        if signal_at.lock().expect("lock").is_some_and(|s| sent < s) {
                            *after.lock().expect("lock") += 1;
                        }
                    }
                    Err(_) => break, // refused: the listener is closed
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    *signal_at.lock().expect("lock") = Some(Instant::now());
    let status = tokio::task::spawn_blocking(move || {
        let status = engine.terminate();
        (status, engine)
    })
    .await
    .expect("join");
    for t in tasks {
        t.await.expect("client");
    }
    assert!(status.0.success(), "exit status {}", status.0);
    assert!(status
        .1
        .output()
        .contains("stopped; storage flushed and closed"));
    assert!(
        *finished_after_signal.lock().expect("lock") > 0,
        "no request was in flight at the signal"
    );

    let engine = Engine::start(
        dir.path(),
        "warn,glucosync_server=info,glucosync_server::telemetry=warn",
        &backend,
    );
    let token = session(&client, &engine, "shutdown@example.org").await;
    let mut stored = 0usize;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = engine.url(&format!(
            "/api/v1/readings?limit=10000&from={}&to={}",
            rfc3339(base_ms - 86_400_000 * 30),
            rfc3339(base_ms + 1)
        ));
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        stored += page["items"].as_array().map(Vec::len).unwrap_or(0);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(
        stored >= *acked.lock().expect("lock"),
        "stored {stored} < acknowledged"
    );
}
