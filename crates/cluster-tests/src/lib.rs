//! Drives `scripts/cluster` and puts load on the cluster through HAProxy, recording every
//! request's outcome, so that fault tests can say what failed, when, and what was kept.
//!
//! The tests are `#[ignore]`d in a plain `cargo test` (they need root, PostgreSQL binaries,
//! Redis and HAProxy, and take minutes); `scripts/test` runs them with `--ignored`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const PASSWORD: &str = "violet tractor harbour sings";

/// A running cluster; `down` on drop.
pub struct Cluster {
    pub env: HashMap<String, String>,
    dir: String,
    port: String,
    /// Extra environment for scripts/cluster (e.g. `GS_CLUSTER_PG=patroni`).
    extra: Vec<(String, String)>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Cluster {
    pub fn up(name: &str) -> Cluster {
        Self::up_with(name, &[])
    }

    pub fn up_with(name: &str, extra: &[(&str, &str)]) -> Cluster {
        let dir = format!("/tmp/glucosync-cluster-{name}");
        let port = std::env::var("GS_CLUSTER_PORT").unwrap_or_else(|_| "25000".into());
        let extra = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut c = Cluster {
            env: HashMap::new(),
            dir,
            port,
            extra,
        };
        let out = c.run(&["up"]);
        for line in out.lines() {
            if let Some((k, v)) = line.split_once('=') {
                c.env.insert(k.to_owned(), v.to_owned());
            }
        }
        assert!(
            c.env.contains_key("GS_CLUSTER_URL"),
            "cluster up printed no URL: {out}"
        );
        c
    }

    /// Runs `scripts/cluster ARGS`; panics with its output if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let bin = std::env::var("GLUCOENGINE_BIN").unwrap_or_else(|_| {
            repo()
                .join("target/debug/glucoengine")
                .display()
                .to_string()
        });
        let out = Command::new(repo().join("scripts/cluster"))
            .args(args)
            .env("GS_CLUSTER_DIR", &self.dir)
            .env("GS_CLUSTER_PORT", &self.port)
            .env("GLUCOENGINE_BIN", bin)
            .envs(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run scripts/cluster");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "scripts/cluster {args:?} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    pub fn url(&self) -> String {
        self.env["GS_CLUSTER_URL"].clone()
    }

    pub fn engine_url(&self, n: usize) -> String {
        self.env["GS_CLUSTER_ENGINE_URLS"]
            .split_whitespace()
            .nth(n - 1)
            .expect("engine")
            .to_owned()
    }

    /// HAProxy's view of each replica: `engine-1` → `UP` / `DOWN` / ...
    pub async fn haproxy_status(&self) -> HashMap<String, String> {
        let csv = reqwest::get(&self.env["GS_CLUSTER_STATS_URL"])
            .await
            .expect("stats")
            .text()
            .await
            .expect("text");
        csv.lines()
            .filter(|l| l.starts_with("glucoengine,engine-"))
            .filter_map(|l| {
                let cols: Vec<&str> = l.split(',').collect();
                Some((cols.get(1)?.to_string(), cols.get(17)?.to_string()))
            })
            .collect()
    }

    /// Waits until HAProxy shows `engine` with `status` (prefix match: `DOWN` matches `DOWN 1/2`).
    pub async fn wait_haproxy(&self, engine: &str, status: &str, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self
                .haproxy_status()
                .await
                .get(engine)
                .is_some_and(|s| s.starts_with(status))
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "{engine} not {status} within {within:?}: {:?}",
                self.haproxy_status().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A connection to whichever node is the writable primary now.
    pub async fn primary(&self) -> tokio_postgres::Client {
        let started = Instant::now();
        loop {
            match tokio_postgres::connect(&self.env["GS_CLUSTER_PG_BOTH"], tokio_postgres::NoTls)
                .await
            {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    return client;
                }
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "no writable primary: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/cluster"))
            .arg("down")
            .env("GS_CLUSTER_DIR", &self.dir)
            .env("GS_CLUSTER_PORT", &self.port)
            .envs(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
    }
}

pub async fn session(client: &reqwest::Client, base: &str, email: &str) -> String {
    let _ = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await;
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert!(r.status().is_success(), "login failed: {}", r.status());
    r.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// One request's fate.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub at: Instant,
    pub latency: Duration,
    /// HTTP status, or `None` for a transport error (refused, reset, timed out).
    pub status: Option<u16>,
    pub body: String,
}

/// Single-reading POSTs (the phone-uploader pattern) from `clients` tasks through `base`,
/// until stopped. Each reading is unique (device per client, time per request).
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub outcomes: Arc<Mutex<Vec<Outcome>>>,
    /// (device, time_ms) of every reading answered with 2xx.
    pub acked: Arc<Mutex<Vec<(String, i64)>>>,
}

impl Load {
    pub fn start(base: &str, token: &str, clients: usize, tag: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
        let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let start_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
        let tasks = (0..clients)
            .map(|c| {
                let (stop, outcomes, acked, client) = (
                    stop.clone(),
                    outcomes.clone(),
                    acked.clone(),
                    client.clone(),
                );
                let (url, token, device) = (
                    format!("{base}/api/v1/readings"),
                    token.to_owned(),
                    format!("{tag}-{c}"),
                );
                tokio::spawn(async move {
                    let mut i = 0i64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = start_ms + i * 100;
                        i += 1;
                        let time = chrono::DateTime::from_timestamp_millis(t)
                            .expect("time")
                            .to_rfc3339();
                        let sent = Instant::now();
                        let result = client
                            .post(&url)
                            .bearer_auth(&token)
                            .json(
                                &json!({"time": time, "value": 100 + (i % 100), "device": device}),
                            )
                            .send()
                            .await;
                        let (status, body) = match result {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                (Some(s), r.text().await.unwrap_or_default())
                            }
                            Err(e) => (None, e.to_string()),
                        };
                        if status.is_some_and(|s| (200..300).contains(&s)) {
                            acked.lock().expect("lock").push((device.clone(), t));
                        }
                        outcomes.lock().expect("lock").push(Outcome {
                            at: sent,
                            latency: sent.elapsed(),
                            status,
                            body,
                        });
                        if status.is_none_or(|s| s >= 500) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            outcomes,
            acked,
        }
    }

    pub async fn stop(self) -> (Vec<Outcome>, Vec<(String, i64)>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let outcomes = self.outcomes.lock().expect("lock").clone();
        let acked = self.acked.lock().expect("lock").clone();
        (outcomes, acked)
    }
}

pub fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes
        .iter()
        .filter(|o| o.status.is_none_or(|s| !(200..300).contains(&s)))
        .collect()
}

/// Checks in the database that every acknowledged reading is stored exactly once.
pub async fn assert_acked_stored_once(db: &tokio_postgres::Client, acked: &[(String, i64)]) {
    let devices: Vec<String> = acked.iter().map(|(d, _)| d.clone()).collect();
    let times: Vec<i64> = acked.iter().map(|(_, t)| *t).collect();
    let row = db
        .query_one(
            "SELECT COUNT(*) FILTER (WHERE n = 0), COUNT(*) FILTER (WHERE n > 1) FROM (
               SELECT (SELECT COUNT(*) FROM readings r WHERE r.device = a.device AND r.time_ms = a.time_ms) AS n
               FROM UNNEST($1::text[], $2::bigint[]) AS a(device, time_ms)) counts",
            &[&devices, &times],
        )
        .await
        .expect("query");
    let (missing, duplicated): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(
        (missing, duplicated),
        (0, 0),
        "of {} acknowledged readings, {missing} are missing and {duplicated} stored twice",
        acked.len()
    );
}
