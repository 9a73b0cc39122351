//! Live WebSocket figures (issue 6): many open sockets on one engine (and on 3 replicas), the
//! engine's memory per socket, and the latency from a reading's POST to its event at every
//! subscriber (p50/p99), against the same load with one socket per person (same run).
//!
//! Topology: `people` people, each with `sockets / people` sockets open on their own stream
//! (their devices and followers' screens), and a reading posted for one of them every
//! `1 / rate` s, round robin. Every socket of that person must receive that reading's event;
//! the latency is from just before the POST is sent to the event's arrival at each socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::{now_ms, row, Args};

/// People whose streams the sockets follow (each signs up: argon2 makes this the slow part).
const PEOPLE: usize = 200;
/// Readings posted per second across all people.
const POSTS_PER_SECOND: u64 = 50;
/// Sockets opened at once while connecting.
const CONNECTING_AT_ONCE: usize = 256;

/// Raises this process's open-file limit (the engines it starts inherit it): every socket is
/// a file descriptor on both ends. Through util-linux's `prlimit` (no unsafe code here).
pub fn raise_file_limit(wanted: u64) -> Result<u64> {
    let (soft, hard) = open_file_limits()?;
    if hard < wanted {
        bail!(
            "{wanted} open files are needed but the hard limit is {hard}; raise it (e.g. \
             `ulimit -Hn {wanted}` as root) or pass a smaller --sockets"
        );
    }
    if soft < wanted {
        // Soft limit only (`wanted:` keeps the hard one): needs no privilege.
        let status = std::process::Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                &format!("--nofile={wanted}:"),
            ])
            .status()
            .context("run prlimit (util-linux)")?;
        if !status.success() {
            bail!("cannot raise the open-file limit to {wanted}");
        }
    }
    Ok(open_file_limits()?.0)
}

/// The soft and hard open-file limits of this process, from /proc/self/limits.
fn open_file_limits() -> Result<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no open-file limit in /proc/self/limits")?;
    let mut numbers = line
        .split_whitespace()
        .skip(3)
        .filter_map(|v| v.parse().ok());
    match (numbers.next(), numbers.next()) {
        (Some(soft), Some(hard)) => Ok((soft, hard)),
        _ => bail!("unreadable open-file limit: {line}"),
    }
}

/// When each posted reading left, by (person id, reading time).
type Sent = Arc<Mutex<HashMap<(i64, i64), Instant>>>;

/// The engine-side and client-side figures of one run at `sockets` sockets.
pub struct LiveFigures {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub delivered: u64,
    pub expected: u64,
}

/// Opens `per_person` sockets for each person, spread over `ws_addrs` (host:port), posts
/// readings through `post_base` for `seconds`, and measures every delivery.
pub async fn measure(
    post_base: &str,
    ws_addrs: &[String],
    people: &[(i64, String)],
    per_person: usize,
    seconds: u64,
    on_connected: impl FnOnce(usize),
) -> Result<LiveFigures> {
    let sent: Sent = Arc::new(Mutex::new(HashMap::new()));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let delivered = Arc::new(AtomicU64::new(0));
    let total = people.len() * per_person;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    // Connect in waves; each socket's task records the deliveries of its person's events.
    let mut tasks = Vec::with_capacity(total);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<()>>(total.max(1));
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING_AT_ONCE));
    for i in 0..total {
        let token = people[i % people.len()].1.clone();
        let addr = ws_addrs[i % ws_addrs.len()].clone();
        let (sent, latencies, delivered, ready_tx, gate) = (
            sent.clone(),
            latencies.clone(),
            delivered.clone(),
            ready_tx.clone(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let mut request = match format!("ws://{addr}/api/v1/ws").into_client_request() {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into())).await;
                    return;
                }
            };
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
            let socket =
                tokio_tungstenite::connect_async_with_config(request, Some(config), false).await;
            let mut socket = match socket {
                Ok((s, _)) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into())).await;
                    return;
                }
            };
            // Ready once the server has subscribed it (its hello comes after).
            let _ = socket.next().await;
            drop(permit);
            let _ = ready_tx.send(Ok(())).await;
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(body) = message else {
                    continue;
                };
                if !body.contains("\"type\":\"reading\"") {
                    continue;
                }
                let (Some(p), Some(c)) = (field(&body, "\"person\":"), field(&body, "\"cursor\":"))
                else {
                    continue;
                };
                let left = sent.lock().expect("lock").get(&(p, c)).copied();
                if let Some(left) = left {
                    latencies
                        .lock()
                        .expect("lock")
                        .push(left.elapsed().as_secs_f64() * 1000.0);
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..total {
        ready_rx
            .recv()
            .await
            .context("a socket task ended early")?
            .context("a socket did not open")?;
    }
    on_connected(total);

    // Post readings: one every 1/rate s, round robin over the people, through `post_base`.
    let expected = post_for(post_base, people, per_person, seconds, &sent).await?;
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in &tasks {
        t.abort();
    }
    let mut all = std::mem::take(&mut *latencies.lock().expect("lock"));
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if all.is_empty() {
            f64::NAN
        } else {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
        }
    };
    Ok(LiveFigures {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        delivered: delivered.load(Ordering::Relaxed),
        expected,
    })
}

async fn post_for(
    post_base: &str,
    people: &[(i64, String)],
    per_person: usize,
    seconds: u64,
    sent: &Sent,
) -> Result<u64> {
    let client = reqwest::Client::new();
    let interval = Duration::from_micros(1_000_000 / POSTS_PER_SECOND);
    let mut ticker = tokio::time::interval(interval);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut posts = Vec::new();
    let mut n: i64 = 0;
    // Reading times: a fresh millisecond per post, just behind the clock (all accepted).
    let base_time = now_ms() - 60_000;
    while Instant::now() < end {
        ticker.tick().await;
        let (person, token) = &people[n as usize % people.len()];
        let time = base_time + n;
        n += 1;
        let body = json!({
            "time": chrono::DateTime::from_timestamp_millis(time)
                .context("time")?
                .to_rfc3339(),
            "value": 100 + n % 100,
            "device": "live-bench",
        });
        sent.lock()
            .expect("lock")
            .insert((*person, time), Instant::now());
        let request = client
            .post(format!("{post_base}/api/v1/readings"))
            .bearer_auth(token)
            .json(&body);
        posts.push(tokio::spawn(async move { request.send().await }));
    }
    for p in posts {
        let r = p.await??;
        if !r.status().is_success() {
            bail!("a POST failed: {}", r.status());
        }
    }
    Ok(n as u64 * per_person as u64)
}

/// The integer after `key` in a JSON text (no full parse per message: 10,000 sockets share
/// the benchmark's CPU with the server).
fn field(body: &str, key: &str) -> Option<i64> {
    let rest = &body[body.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// People with their ids and sessions.
pub async fn people(client: &reqwest::Client, base: &str) -> Result<Vec<(i64, String)>> {
    let tokens = crate::people_tokens(client, base, PEOPLE).await?;
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        let me: serde_json::Value = client
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(&t)
            .send()
            .await?
            .json()
            .await?;
        out.push((me["id"].as_i64().context("id")?, t));
    }
    Ok(out)
}

/// The embedded figures: one engine, `args.sockets` sockets vs one socket per person.
pub async fn run(args: &Args) -> Result<()> {
    let limit = raise_file_limit(args.sockets as u64 + 2048)?;
    println!("\nLive WebSocket (one engine, SQLite; open-file limit {limit})\n");
    let dir = tempfile::tempdir()?;
    // People sign up from addresses of their own (X-Forwarded-For from the loopback).
    let (engine, _) = crate::start_engine_with(
        &args.engine,
        &dir.path().join("engine"),
        &[("GLUCOSYNC_TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await?;
    let client = reqwest::Client::new();
    let people = people(&client, &engine.base).await?;
    let ws = vec![engine.base.trim_start_matches("http://").to_owned()];
    let per_person = (args.sockets / people.len()).max(1);
    let pid = engine.pid();
    let rss = |pid| crate::rss_kib(pid, "VmRSS:");
    let before = rss(pid);
    let baseline = measure(&engine.base, &ws, &people, 1, args.seconds, |_| {}).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss(pid);
    let mut connected_rss = 0;
    let full = measure(&engine.base, &ws, &people, per_person, args.seconds, |_| {
        connected_rss = rss(pid);
    })
    .await?;
    let sockets = per_person * people.len();
    report("", sockets, people.len(), &full, &baseline);
    row(
        &format!("engine memory per socket ({sockets} open)"),
        format!(
            "{:.1} KiB",
            connected_rss.saturating_sub(idle) as f64 / sockets as f64
        ),
        format!(
            "RSS {} MiB before, {} MiB open",
            before / 1024,
            connected_rss / 1024
        ),
        None,
    );
    Ok(())
}

pub fn report(prefix: &str, sockets: usize, people: usize, full: &LiveFigures, base: &LiveFigures) {
    row(
        &format!("{prefix}POST→event p50, {sockets} sockets"),
        format!("{:.1} ms", full.p50_ms),
        format!("{:.1} ms ({people} sockets)", base.p50_ms),
        Some(full.p50_ms / base.p50_ms),
    );
    row(
        &format!("{prefix}POST→event p99, {sockets} sockets"),
        format!("{:.1} ms", full.p99_ms),
        format!("{:.1} ms ({people} sockets)", base.p99_ms),
        Some(full.p99_ms / base.p99_ms),
    );
    row(
        &format!("{prefix}  goal p99 < 250 ms at {sockets}"),
        if full.p99_ms < 250.0 {
            "met"
        } else {
            "NOT met"
        }
        .to_owned(),
        String::new(),
        None,
    );
    row(
        &format!("{prefix}events delivered / expected"),
        format!("{} / {}", full.delivered, full.expected),
        format!("{} / {}", base.delivered, base.expected),
        None,
    );
}
