//! Soak (issue 12): a realistic mixed load held for a long time (default 30 minutes) against
//! the embedded server or the local cluster, with the server's resources and the latency of
//! each route sampled every 10 s, written as CSV and plotted (PNG) by `tools/soak/plot.py`.
//!
//! The load, per simulated person: an uploader posting the newest reading every 5 minutes (with
//! an API token, like xDrip+ or a phone app); the person's app reading the latest reading and
//! the forecast every 5 minutes and the 14-day summary and AGP every 30 minutes; and a live
//! WebSocket, the person's own for half of them and a caregiver's following them for the other
//! half. Each person starts at a random moment of the first interval, so the load is even.
//!
//! Growth per hour of memory and descriptors is the slope of a least-squares line through the
//! samples after the first 5 minutes (or third of a shorter run).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::{now_ms, people_tokens, percentile, session_token, time, Args};

const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Left out of the growth figures: caches, pools and forecast models fill (a third of a short
/// run).
const WARM_UP: Duration = Duration::from_secs(300);

/// What the soak runs against: the URL people use, the processes to watch, and how to count
/// the database connections.
struct Target {
    label: &'static str,
    base: String,
    /// The engine processes, read again at every sample (a replica that restarted has a new
    /// one).
    pids: Box<dyn Fn() -> Vec<u32> + Send + Sync>,
    connections: Connections,
    /// Keeps the embedded engine or the cluster alive for the run.
    _keep: Box<dyn std::any::Any>,
}

enum Connections {
    /// The engine's own gauge (`glucosync_db_pool_connections` at `/metrics`).
    Metrics(String),
    /// `pg_stat_activity` on the primary.
    Postgres(tokio_postgres::Client),
}

impl Connections {
    async fn count(&self, client: &reqwest::Client) -> i64 {
        match self {
            Connections::Metrics(url) => {
                let Ok(r) = client.get(url).send().await else {
                    return -1;
                };
                let text = r.text().await.unwrap_or_default();
                text.lines()
                    .find_map(|l| l.strip_prefix("glucosync_db_pool_connections "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map_or(-1, |v| v as i64)
            }
            Connections::Postgres(db) => db
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = 'glucosync' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .map_or(-1, |row| row.get(0)),
        }
    }
}

fn proc_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// One request of the load: when it was due (seconds into the run), its route, how long it
/// took from when it was due (ms: a stalled server delays what follows, and that counts), and
/// whether it succeeded.
struct Request {
    due_s: f64,
    route: &'static str,
    ms: f64,
    ok: bool,
}

struct Stats {
    started: Instant,
    requests: Mutex<Vec<Request>>,
    ws_messages: AtomicU64,
    ws_reconnects: AtomicU64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            started: Instant::now(),
            requests: Mutex::new(Vec::new()),
            ws_messages: AtomicU64::new(0),
            ws_reconnects: AtomicU64::new(0),
        }
    }

    fn record(&self, route: &'static str, due: Instant, ok: bool) {
        let request = Request {
            due_s: due.saturating_duration_since(self.started).as_secs_f64(),
            route,
            ms: due.elapsed().as_secs_f64() * 1000.0,
            ok,
        };
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request);
        }
    }
}

/// Sends `request`, due at `due`, and records it.
async fn timed(stats: &Stats, route: &'static str, due: Instant, request: reqwest::RequestBuilder) {
    // The body is part of what a person waits for.
    let ok = match request.send().await {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    };
    stats.record(route, due, ok);
}

/// A plausible glucose value for person `i` at `t_ms`: a daily wave with a person's own phase.
fn glucose(i: usize, t_ms: i64) -> f64 {
    let day = (t_ms % 86_400_000) as f64 / 86_400_000.0;
    let phase = (i % 24) as f64 / 24.0;
    (140.0 + 55.0 * (std::f64::consts::TAU * (day + phase)).sin()).round()
}

async fn setup_person(
    client: &reqwest::Client,
    base: &str,
    i: usize,
    session: &str,
) -> Result<String> {
    // A day of history, so reports and forecasts have something to work on.
    let now = now_ms();
    let day: Vec<Value> = (1..=288)
        .rev()
        .map(|k| {
            let t = now - k * 300_000;
            json!({"time": time(t), "value": glucose(i, t)})
        })
        .collect();
    let r = client
        .post(format!("{base}/api/v1/readings"))
        .bearer_auth(session)
        .json(&day)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("backfill of person {i}: {}", r.status());
    }
    let token: Value = client
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(session)
        .json(&json!({"name": "uploader", "scopes": ["read", "readings:write"]}))
        .send()
        .await?
        .json()
        .await?;
    Ok(token["token"].as_str().context("no token")?.to_owned())
}

/// `owner` shares with a new caregiver; the caregiver's session.
async fn caregiver(client: &reqwest::Client, base: &str, i: usize, owner: &str) -> Result<String> {
    let email = format!("carer-{i}@example.org");
    let address = format!("10.1.{}.{}", i / 250, i % 250 + 1);
    let session = session_token(client, base, &email, Some(&address)).await?;
    let invite: Value = client
        .post(format!("{base}/api/v1/shares"))
        .bearer_auth(owner)
        .json(&json!({"email": email, "role": "caregiver"}))
        .send()
        .await?
        .json()
        .await?;
    let r = client
        .post(format!("{base}/api/v1/shares/accept"))
        .bearer_auth(&session)
        .json(&json!({"invite_token": invite["invite_token"]}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("share accept: {}", r.status());
    }
    Ok(session)
}

/// Holds a live socket open until `deadline`, following `person` if given, reconnecting when
/// dropped; counts what arrives.
async fn hold_socket(
    base: String,
    token: String,
    person: Option<i64>,
    stats: Arc<Stats>,
    deadline: Instant,
) {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let url = format!("{}/api/v1/ws", base.replacen("http", "ws", 1));
    while Instant::now() < deadline {
        let Ok(mut request) = url.as_str().into_client_request() else {
            return;
        };
        if let Ok(v) = format!("Bearer {token}").parse() {
            request.headers_mut().insert("authorization", v);
        }
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(request).await else {
            stats.ws_reconnects.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if let Some(person) = person {
            use futures::SinkExt;
            let subscribe = json!({"type": "subscribe", "person": person}).to_string();
            if socket.send(Message::Text(subscribe.into())).await.is_err() {
                continue;
            }
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, socket.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(_)))) => {
                    stats.ws_messages.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => {
                    stats.ws_reconnects.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// One person's uploader and app until `deadline`.
#[allow(clippy::too_many_arguments)]
async fn person_load(
    client: reqwest::Client,
    base: String,
    i: usize,
    uploader: String,
    session: String,
    interval: Duration,
    stats: Arc<Stats>,
    deadline: Instant,
) {
    let start = Instant::now() + interval.mul_f64(rand_fraction(i));
    let mut next = start;
    let mut round = 0u64;
    let range = |days: i64| {
        let to = now_ms();
        format!(
            "from={}&to={}",
            time(to - days * 86_400_000).replace(':', "%3A"),
            time(to).replace(':', "%3A")
        )
    };
    while next < deadline {
        tokio::time::sleep_until(next.into()).await;
        let t = now_ms();
        let upload = client
            .post(format!("{base}/api/v1/readings"))
            .bearer_auth(&uploader)
            .json(&json!({"time": time(t), "value": glucose(i, t), "device": "soak"}));
        timed(&stats, "POST /readings", next, upload).await;
        let latest = client
            .get(format!("{base}/api/v1/readings/latest"))
            .bearer_auth(&session);
        timed(&stats, "GET /readings/latest", Instant::now(), latest).await;
        let forecast = client
            .get(format!("{base}/api/v1/forecast"))
            .bearer_auth(&session);
        timed(&stats, "GET /forecast", Instant::now(), forecast).await;
        if round % 6 == (i as u64) % 6 {
            let summary = client
                .get(format!("{base}/api/v1/reports/summary?{}", range(14)))
                .bearer_auth(&session);
            timed(&stats, "GET /reports/summary", Instant::now(), summary).await;
            let agp = client
                .get(format!("{base}/api/v1/reports/agp?{}", range(14)))
                .bearer_auth(&session);
            timed(&stats, "GET /reports/agp", Instant::now(), agp).await;
        }
        round += 1;
        next += interval;
    }
}

/// A fraction in [0, 1) spread over people (a deterministic scatter, not a generator).
fn rand_fraction(i: usize) -> f64 {
    ((i as f64 * 0.618_033_988_75) % 1.0).abs()
}

struct Sample {
    seconds: f64,
    rss_kib: u64,
    fds: u64,
    connections: i64,
    ws_messages: u64,
    ws_reconnects: u64,
}

/// Slope per hour of a least-squares line through (seconds, value).
fn per_hour(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), (a, b)| (x + a / n, y + b / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den * 3600.0
    }
}

async fn embedded(args: &Args) -> Result<Target> {
    let dir = tempfile::tempdir()?;
    let (engine, _) = crate::start_engine_with(
        &args.engine,
        dir.path(),
        &[("GLUCOSYNC_TRUSTED_PROXIES", "127.0.0.1/32")],
    )
    .await?;
    let pid = engine.pid();
    Ok(Target {
        label: "embedded",
        pids: Box::new(move || vec![pid]),
        connections: Connections::Metrics(format!("{}/metrics", engine.base)),
        base: engine.base.clone(),
        _keep: Box::new((engine, dir)),
    })
}

async fn cluster(args: &Args) -> Result<Target> {
    let cluster = crate::cluster::Cluster::up(&args.engine)?;
    let base = cluster
        .env
        .get("GS_CLUSTER_URL")
        .context("no cluster URL")?
        .clone();
    let dir = PathBuf::from(
        cluster
            .env
            .get("GS_CLUSTER_DIR")
            .context("no cluster dir")?,
    );
    let pids = move || {
        (1..)
            .map_while(|n| std::fs::read_to_string(dir.join(format!("pids/engine-{n}.pid"))).ok())
            .filter_map(|pid| pid.trim().parse().ok())
            .collect::<Vec<u32>>()
    };
    if pids().is_empty() {
        bail!("no engine pid files in the cluster's directory");
    }
    let primary = cluster
        .env
        .get("GS_CLUSTER_PG_PRIMARY")
        .context("no primary")?
        .clone();
    Ok(Target {
        label: "cluster",
        base,
        pids: Box::new(pids),
        connections: Connections::Postgres(crate::cluster::pg(&primary).await?),
        _keep: Box::new(cluster),
    })
}

pub async fn run(args: &Args) -> Result<()> {
    let target = if args.soak_cluster {
        cluster(args).await?
    } else {
        embedded(args).await?
    };
    let people = args.soak_people;
    let interval = Duration::from_secs(args.soak_interval_seconds);
    let run_for = Duration::from_secs(args.soak_minutes * 60);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()?;
    println!(
        "Soak ({}): {people} people, an upload and app reads every {} s each, reports every {} s, {} live sockets, {} minutes",
        target.label,
        interval.as_secs(),
        interval.as_secs() * 6,
        people,
        args.soak_minutes
    );
    let sessions = people_tokens(&client, &target.base, people).await?;
    let mut uploaders = Vec::with_capacity(people);
    let mut ids = Vec::with_capacity(people);
    for (i, session) in sessions.iter().enumerate() {
        uploaders.push(setup_person(&client, &target.base, i, session).await?);
        let me: Value = client
            .get(format!("{}/api/v1/me", target.base))
            .bearer_auth(session)
            .send()
            .await?
            .json()
            .await?;
        ids.push(me["id"].as_i64().context("no id")?);
    }
    let mut carers = Vec::new();
    for i in (0..people).step_by(2) {
        carers.push((i, caregiver(&client, &target.base, i, &sessions[i]).await?));
    }
    println!(
        "set up: {people} people with a day of history each, {} caregivers",
        carers.len()
    );

    let stats = Arc::new(Stats::new());
    let started = stats.started;
    let deadline = started + run_for;
    let mut tasks = Vec::new();
    for (i, (session, uploader)) in sessions.iter().zip(&uploaders).enumerate() {
        tasks.push(tokio::spawn(person_load(
            client.clone(),
            target.base.clone(),
            i,
            uploader.clone(),
            session.clone(),
            interval,
            stats.clone(),
            deadline,
        )));
        if i % 2 == 1 {
            tasks.push(tokio::spawn(hold_socket(
                target.base.clone(),
                session.clone(),
                None,
                stats.clone(),
                deadline,
            )));
        }
    }
    for (i, carer) in &carers {
        tasks.push(tokio::spawn(hold_socket(
            target.base.clone(),
            carer.clone(),
            Some(ids[*i]),
            stats.clone(),
            deadline,
        )));
    }

    let mut samples: Vec<Sample> = Vec::new();
    let mut next = started + SAMPLE_EVERY;
    while next <= deadline {
        tokio::time::sleep_until(next.into()).await;
        next += SAMPLE_EVERY;
        samples.push(Sample {
            seconds: started.elapsed().as_secs_f64(),
            rss_kib: (target.pids)()
                .iter()
                .map(|p| crate::rss_kib(*p, "VmRSS:"))
                .sum(),
            fds: (target.pids)().iter().map(|p| proc_fds(*p)).sum(),
            connections: target.connections.count(&client).await,
            ws_messages: stats.ws_messages.load(Ordering::Relaxed),
            ws_reconnects: stats.ws_reconnects.load(Ordering::Relaxed),
        });
    }
    for task in tasks {
        let _ = task.await;
    }
    let requests = std::mem::take(
        &mut *stats
            .requests
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?,
    );
    report(
        &target,
        &samples,
        &requests,
        WARM_UP.min(run_for / 3),
        Path::new(&args.soak_out),
    )
}

fn report(
    target: &Target,
    samples: &[Sample],
    requests: &[Request],
    warm_up: Duration,
    out: &Path,
) -> Result<()> {
    let csv_dir = PathBuf::from("target/soak").join(target.label);
    std::fs::create_dir_all(&csv_dir)?;
    let mut resources =
        String::from("seconds,rss_mib,fds,db_connections,ws_messages,ws_reconnects\n");
    let mut latencies = String::from("due_s,route,ms,ok\n");
    for r in requests {
        latencies.push_str(&format!(
            "{:.3},{},{:.3},{}\n",
            r.due_s, r.route, r.ms, r.ok
        ));
    }
    for s in samples {
        resources.push_str(&format!(
            "{:.0},{:.1},{},{},{},{}\n",
            s.seconds,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.connections,
            s.ws_messages,
            s.ws_reconnects
        ));
    }
    std::fs::write(csv_dir.join("resources.csv"), &resources)?;
    std::fs::write(csv_dir.join("requests.csv"), &latencies)?;

    let after: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.seconds >= warm_up.as_secs_f64())
        .collect();
    let line = |f: &dyn Fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        after.iter().map(|s| (s.seconds, f(s))).collect()
    };
    let rss_growth = per_hour(&line(&|s| s.rss_kib as f64 / 1024.0));
    let fd_growth = per_hour(&line(&|s| s.fds as f64));
    let conn_growth = per_hour(&line(&|s| s.connections as f64));
    let (first, last) = (
        after.first().context("no samples after the warm-up")?,
        after.last().context("no samples")?,
    );
    println!(
        "\nafter the {} s warm-up, over {:.0} s:",
        warm_up.as_secs(),
        last.seconds - first.seconds
    );
    // The baseline of this run: the level right after the warm-up.
    let of = |growth: f64, level: f64| {
        if level > 0.0 {
            format!("{:+.2} % of it", growth / level * 100.0)
        } else {
            "—".to_owned()
        }
    };
    let rss_level = first.rss_kib as f64 / 1024.0;
    println!(
        "  RSS {rss_level:.1} → {:.1} MiB: {rss_growth:+.2} MiB per hour (least squares; {} per hour)",
        last.rss_kib as f64 / 1024.0,
        of(rss_growth, rss_level)
    );
    println!(
        "  open descriptors {} → {}: {fd_growth:+.2} per hour ({} per hour)",
        first.fds,
        last.fds,
        of(fd_growth, first.fds as f64)
    );
    println!(
        "  database connections {} → {}: {conn_growth:+.2} per hour",
        first.connections, last.connections
    );
    println!(
        "  WebSocket messages received: {}, reconnects: {}",
        last.ws_messages, last.ws_reconnects
    );
    // Each route over the whole run after the warm-up: percentiles of all its requests.
    let mut by_route: HashMap<&str, (Vec<Duration>, u64)> = HashMap::new();
    for r in requests.iter().filter(|r| r.due_s >= warm_up.as_secs_f64()) {
        let entry = by_route.entry(r.route).or_default();
        if r.ok {
            entry.0.push(Duration::from_secs_f64(r.ms / 1000.0));
        } else {
            entry.1 += 1;
        }
    }
    let mut routes: Vec<_> = by_route.into_iter().collect();
    routes.sort_by_key(|r| r.0);
    println!(
        "  {:<24} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "route", "requests", "errors", "p50 ms", "p99 ms", "max ms"
    );
    for (route, (latencies, errors)) in &mut routes {
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {route:<24} {:>9} {errors:>7} {:>9.2} {:>9.2} {:>9.2}",
            latencies.len(),
            ms(percentile(latencies, 0.5)),
            ms(percentile(latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default())
        );
    }
    let errors = requests.iter().filter(|r| !r.ok).count();
    std::fs::create_dir_all(out)?;
    let plot = std::env::var("GS_SOAK_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = std::process::Command::new(&plot)
        .arg("tools/soak/plot.py")
        .arg(&csv_dir)
        .arg(out.join(target.label))
        .arg(format!(
            "{} · RSS {rss_growth:+.1} MiB/h · fds {fd_growth:+.1}/h",
            target.label
        ))
        .status()
        .context("run tools/soak/plot.py")?;
    if !status.success() {
        bail!("plotting failed");
    }
    println!(
        "  plots: {}-resources.png, {}-latency.png",
        out.join(target.label).display(),
        out.join(target.label).display()
    );
    if errors > 0 {
        bail!("{errors} requests failed during the soak");
    }
    Ok(())
}
