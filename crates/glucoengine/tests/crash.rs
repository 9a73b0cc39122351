//! Crash test (SPEC §6: nothing acknowledged is lost). Start the real binary, post readings
//! from many concurrent clients, `kill -9` it at a random moment, restart, and check that every
//! reading that got a 2xx is stored. Several rounds on the same data directory.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{now_ms, rfc3339, session, Backend, Engine};
use rand::Rng;
use serde_json::{json, Value};

const ROUNDS: usize = 4;
const CLIENTS: usize = 16;
/// Startup and shutdown lines only: the ready line carries the port.
const QUIET: &str = "warn,glucosync_server=info,glucosync_server::telemetry=warn";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_reading_survives_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::new();
    let client = reqwest::Client::new();
    // (device, time_ms) of every reading whose POST returned 2xx.
    let acknowledged: Arc<Mutex<HashSet<(String, i64)>>> = Arc::default();
    let base_ms = now_ms() - 60_000;
    let mut rng = rand::thread_rng();
    let mut total_attempted = 0usize;

    for round in 0..ROUNDS {
        let mut engine = Engine::start(dir.path(), QUIET, &backend);
        let token = session(&client, &engine, "crash@example.org").await;
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (client, token, url, acked) = (
                client.clone(),
                token.clone(),
                engine.url("/api/v1/readings"),
                acknowledged.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let device = format!("r{round}-c{c}");
                let mut attempted = 0usize;
                for i in 0i64.. {
                    // Half the clients post single readings (a phone uploader), half batches of 50.
                    let batch: Vec<(String, i64)> = if c % 2 == 0 {
                        vec![(device.clone(), base_ms - i * 1000)]
                    } else {
                        (0..50).map(|j| (device.clone(), base_ms - (i * 50 + j) * 1000)).collect()
                    };
                    let body: Vec<Value> = batch
                        .iter()
                        .map(|(d, t)| json!({"time": rfc3339(*t), "value": 100 + (t / 1000 % 200), "device": d}))
                        .collect();
                    attempted += batch.len();
                    match client.post(&url).bearer_auth(&token).json(&body).timeout(Duration::from_secs(10)).send().await {
                        Ok(r) if r.status().is_success() => acked.lock().expect("lock").extend(batch),
                        Ok(r) => panic!("unexpected status {} before the kill", r.status()),
                        Err(_) => break, // the server died under us
                    }
                }
                attempted
            }));
        }
        let delay = rng.gen_range(300..1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        engine.kill_9();
        for t in tasks {
            total_attempted += t.await.expect("client task");
        }
    }

    // Restart and read everything back.
    let engine = Engine::start(dir.path(), QUIET, &backend);
    let token = session(&client, &engine, "crash@example.org").await;
    let acked = acknowledged.lock().expect("lock").clone();
    let min_t = acked
        .iter()
        .map(|(_, t)| *t)
        .min()
        .expect("some readings acknowledged");
    let mut stored = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = engine.url(&format!(
            "/api/v1/readings?limit=10000&from={}&to={}",
            rfc3339(min_t),
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
        for item in page["items"].as_array().expect("items") {
            let t = chrono::DateTime::parse_from_rfc3339(item["time"].as_str().expect("time"))
                .expect("rfc3339");
            stored.insert((
                item["device"].as_str().expect("device").to_owned(),
                t.timestamp_millis(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let lost: Vec<_> = acked.difference(&stored).take(5).collect();
    println!(
        "crash test: {ROUNDS} rounds, {total_attempted} readings attempted, {} acknowledged, {} stored, {} lost",
        acked.len(),
        stored.len(),
        acked.difference(&stored).count()
    );
    assert!(
        lost.is_empty(),
        "acknowledged readings lost after kill -9: {lost:?}"
    );
    assert!(
        acked.len() > 100,
        "the load was too small to mean anything: {}",
        acked.len()
    );
}
