//! GlucoEngine's benchmark harness. Every figure is printed next to a baseline measured in the
//! same run on the same machine, because absolute times on a shared machine vary run to run.
//!
//! Figures (issue #2): batch ingest through HTTP vs raw SQLite inserts; single-reading POSTs
//! from 64 keep-alive connections (req/s, p50/p99) vs the server's own /health rate and vs
//! one-commit-per-row SQLite; GET latest p99 under that load; RSS idle and peak; startup time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
pub(crate) struct Args {
    /// The glucoengine binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/glucoengine")]
    pub(crate) engine: PathBuf,
    /// Readings per batch.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) batch: usize,
    /// Batches posted in the HTTP ingest figure.
    #[arg(long, default_value_t = 30)]
    pub(crate) batches: usize,
    /// Concurrent clients posting batches.
    #[arg(long, default_value_t = 4)]
    pub(crate) batch_clients: usize,
    /// Keep-alive connections posting single readings.
    #[arg(long, default_value_t = 64)]
    pub(crate) connections: usize,
    /// Seconds each rate measurement runs.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    /// Also measure a local cluster (PostgreSQL, Redis Sentinel, 3 replicas, HAProxy).
    #[arg(long)]
    pub(crate) cluster: bool,
    /// Only the cluster figures.
    #[arg(long)]
    pub(crate) cluster_only: bool,
    /// Only the report figures (analytics over 90 days).
    #[arg(long)]
    pub(crate) reports_only: bool,
    /// Only the forecast figures (model fitting and forecasting, in process).
    #[arg(long)]
    pub(crate) forecast_only: bool,
    /// Only the forecast's serving cost in instructions (callgrind: deterministic, slow).
    #[arg(long)]
    pub(crate) forecast_instructions: bool,
    /// Only the live WebSocket figures (and their cluster variant with --cluster).
    #[arg(long)]
    pub(crate) live_only: bool,
    /// WebSocket connections held open in the live figures.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) sockets: usize,
    /// Only the data ownership figures (import, backup, restore).
    #[arg(long)]
    pub(crate) data_only: bool,
    /// Years of 5-minute readings in the imported Clarity file.
    #[arg(long, default_value_t = 5)]
    pub(crate) import_years: i64,
    /// People in the backed-up database.
    #[arg(long, default_value_t = 1000)]
    pub(crate) backup_people: i64,
    /// Days of 5-minute readings per person in the backed-up database.
    #[arg(long, default_value_t = 90)]
    pub(crate) backup_days: i64,
    /// Only the soak: a realistic mixed load for `--soak-minutes` (bench/README.md).
    #[arg(long)]
    pub(crate) soak: bool,
    /// Soak the local cluster (through HAProxy) instead of the embedded server.
    #[arg(long)]
    pub(crate) soak_cluster: bool,
    #[arg(long, default_value_t = 30)]
    pub(crate) soak_minutes: u64,
    /// Simulated people in the soak (each with an uploader, an app and a live socket).
    #[arg(long, default_value_t = 400)]
    pub(crate) soak_people: usize,
    /// Seconds between a person's uploads (their CGM's 5 minutes).
    #[arg(long, default_value_t = 300)]
    pub(crate) soak_interval_seconds: u64,
    /// Where the soak's plots go.
    #[arg(long, default_value = "docs/soak")]
    pub(crate) soak_out: String,
}

mod cluster;
mod data;
mod forecast;
mod live;
mod reports;
mod soak;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) const PASSWORD: &str = "violet tractor harbour sings";
pub(crate) const T0: i64 = 1_700_000_000_000;

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

pub(crate) struct Engine {
    child: Child,
    pub(crate) base: String,
}

impl Engine {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the engine process has used (user + system, all threads), in clock ticks.
    pub(crate) fn cpu_ticks(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) async fn start_engine(bin: &Path, dir: &Path) -> Result<(Engine, Duration)> {
    start_engine_with(bin, dir, &[]).await
}

pub(crate) async fn start_engine_with(
    bin: &Path,
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<(Engine, Duration)> {
    start_engine_under(&[], bin, dir, env, Duration::from_secs(30)).await
}

/// Starts the engine under `wrapper` (e.g. valgrind and its options; empty: directly), ready
/// within `ready_within`.
pub(crate) async fn start_engine_under(
    wrapper: &[&str],
    bin: &Path,
    dir: &Path,
    env: &[(&str, &str)],
    ready_within: Duration,
) -> Result<(Engine, Duration)> {
    let port = free_port()?;
    let started = Instant::now();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let child = command
        .arg("serve")
        .envs(env.iter().copied())
        .env("GLUCOSYNC_LISTEN", format!("127.0.0.1:{port}"))
        .env("GLUCOSYNC_DATA_DIR", dir)
        .env("GLUCOSYNC_LOG_LEVEL", "warn")
        // One person's load at thousands of requests a second: the limit stays on (its cost
        // is measured) but high enough never to refuse.
        .env("GLUCOSYNC_API_RATE_LIMIT_PER_MINUTE", "100000000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let engine = Engine {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client
            .get(format!("{}/health/ready", engine.base))
            .send()
            .await
        {
            if r.status().is_success() {
                return Ok((engine, started.elapsed()));
            }
        }
        if started.elapsed() > ready_within {
            bail!("glucoengine not ready after {} s", ready_within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub(crate) fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

pub(crate) async fn token(client: &reqwest::Client, base: &str) -> Result<String> {
    session_token(client, base, "bench@example.org", None).await
}

/// Sessions of people 0..n, signed up sixteen at a time (password hashing is slow on purpose:
/// a thousand at once would outlast a proxy's timeouts), each from an address of their own (the
/// engines trust the loopback proxy's X-Forwarded-For; signups are limited per address).
pub(crate) async fn people_tokens(
    client: &reqwest::Client,
    base: &str,
    n: usize,
) -> Result<Vec<String>> {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| {
            let (client, base) = (client.clone(), base.to_owned());
            async move {
                let address = format!("10.0.{}.{}", i / 250, i % 250 + 1);
                session_token(
                    &client,
                    &base,
                    &format!("person-{i}@example.org"),
                    Some(&address),
                )
                .await
            }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Signs `email` up (if new) and logs in; `address` is sent as X-Forwarded-For (for engines
/// that trust the loopback proxy: signups are limited per address).
pub(crate) async fn session_token(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    address: Option<&str>,
) -> Result<String> {
    let post = |path: &str| {
        let r = client.post(format!("{base}{path}"));
        match address {
            Some(a) => r.header("x-forwarded-for", a),
            None => r,
        }
    };
    post("/api/v1/auth/signup")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    let v: Value = post("/api/v1/auth/login")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["token"].as_str().context("no token")?.to_owned())
}

pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn row(figure: &str, value: String, baseline: String, ratio: Option<f64>) {
    let ratio = ratio
        .map(|r| format!("{:.1} %", r * 100.0))
        .unwrap_or_else(|| "—".into());
    println!("{figure:<46} {value:>18}   {baseline:>28}   {ratio:>8}");
}

/// Raw SQLite: prepared inserts into the same schema, `per_tx` rows per transaction.
pub(crate) async fn raw_sqlite(dir: &Path, rows: usize, per_tx: usize) -> Result<f64> {
    let path = dir.join("raw.db");
    let store = glucosync_store_sqlite::SqliteStore::open_and_migrate(&path).await?;
    glucosync_store::Store::close(&store).await;
    tokio::task::block_in_place(|| raw_inserts(&path, rows, per_tx))
}

fn raw_inserts(path: &Path, rows: usize, per_tx: usize) -> Result<f64> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let started = Instant::now();
    let mut done = 0;
    while done < rows {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO readings (user_id, time_ms, utc_offset_min, kind, device, value_mgdl, trend, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            )?;
            for i in done..(done + per_tx).min(rows) {
                stmt.execute(rusqlite::params![
                    1,
                    T0 + i as i64 * 1000,
                    0,
                    "cgm",
                    "bench",
                    100.0 + (i % 200) as f64,
                    "Flat",
                    T0
                ])?;
            }
        }
        tx.commit()?;
        done += per_tx;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

async fn run(args: Args) -> Result<()> {
    if args.soak || args.soak_cluster {
        return soak::run(&args).await;
    }
    println!(
        "GlucoEngine benchmark — {} cores; every ratio is against a baseline from this run\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<46} {:>18}   {:>28}   {:>8}",
        "figure", "value", "baseline (same run)", "ratio"
    );
    if args.reports_only {
        return reports::run(&args, &args.engine).await;
    }
    if args.data_only {
        return data::run(&args).await;
    }
    if args.forecast_instructions {
        return forecast::instructions(&args).await;
    }
    if args.forecast_only {
        forecast::run()?;
        return forecast::serving(&args).await;
    }
    if args.live_only {
        live::run(&args).await?;
        if args.cluster {
            cluster::live(&args).await?;
        }
        return Ok(());
    }
    if !args.cluster_only {
        embedded(&args).await?;
        reports::run(&args, &args.engine).await?;
        forecast::run()?;
        forecast::serving(&args).await?;
        live::run(&args).await?;
    }
    if args.cluster || args.cluster_only {
        cluster::run(&args).await?;
    }
    Ok(())
}

async fn embedded(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;

    // Startup and idle memory on an empty database.
    let (engine, startup) = start_engine(&args.engine, &dir.path().join("engine")).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections * 2)
        .build()?;
    let idle_rss = rss_kib(engine.pid(), "VmRSS:");
    row(
        "startup to ready (empty database)",
        format!("{:.0} ms", startup.as_secs_f64() * 1000.0),
        String::new(),
        None,
    );
    row(
        "RSS idle",
        format!("{:.1} MiB", idle_rss as f64 / 1024.0),
        String::new(),
        None,
    );
    let token = Arc::new(token(&client, &engine.base).await?);

    // 1. Batch ingest through HTTP vs raw inserts, same rows per transaction.
    let total = args.batch * args.batches;
    let raw = raw_sqlite(dir.path(), total, args.batch).await?;
    let http_batch = post_batches(
        &client,
        &format!("{}/api/v1/readings", engine.base),
        &token,
        batch_bodies(args),
        total,
        args.batch_clients,
    )
    .await?;
    row(
        &format!(
            "batch ingest HTTP ({}x{} readings, {} clients)",
            args.batches, args.batch, args.batch_clients
        ),
        format!("{http_batch:.0} readings/s"),
        format!("raw SQLite {raw:.0} readings/s"),
        Some(http_batch / raw),
    );

    // 2. Single-reading POSTs on keep-alive connections, with GET latest alongside.
    let window = Duration::from_secs(args.seconds);
    let health_rps = rate(
        &client,
        &engine.base,
        args.connections,
        window,
        |_, _| Req::Get("/health".into()),
        None,
    )
    .await?
    .0;
    let single = |c: usize, i: usize| {
        let t = T0 + 86_400_000 * 400 + (i as i64) * 1000;
        Req::Post(
            json!({"time": time(t), "value": 120, "device": format!("phone-{c}")}).to_string(),
        )
    };
    let latest_clients = 4;
    let latest_base = engine.base.clone();
    let latest_client = client.clone();
    let latest_token = token.clone();
    let latest = tokio::spawn(async move {
        rate(
            &latest_client,
            &latest_base,
            latest_clients,
            window,
            |_, _| Req::Get("/api/v1/readings/latest".into()),
            Some(latest_token),
        )
        .await
    });
    let (post_rps, post_lat) = rate(
        &client,
        &engine.base,
        args.connections,
        window,
        single,
        Some(token.clone()),
    )
    .await?;
    let (_, latest_lat) = latest.await??;
    let peak_rss = rss_kib(engine.pid(), "VmHWM:");
    let raw_commit_each = raw_sqlite(&dir.path().join("raw-each"), 2_000, 1).await?;
    row(
        &format!("single-reading POST, {} connections", args.connections),
        format!("{post_rps:.0} req/s"),
        format!("GET /health {health_rps:.0} req/s"),
        Some(post_rps / health_rps),
    );
    row(
        "  same, vs one fsync'd commit per row",
        format!("{post_rps:.0} req/s"),
        format!("raw commit/row {raw_commit_each:.0}/s"),
        Some(post_rps / raw_commit_each),
    );
    row(
        "  POST latency p50 / p99",
        format!(
            "{:.1} / {:.1} ms",
            ms(percentile(&post_lat, 0.5)),
            ms(percentile(&post_lat, 0.99))
        ),
        String::new(),
        None,
    );
    row(
        "GET latest p99 under that load (4 clients)",
        format!("{:.1} ms", ms(percentile(&latest_lat, 0.99))),
        format!("p50 {:.1} ms", ms(percentile(&latest_lat, 0.5))),
        None,
    );
    row(
        "RSS peak (VmHWM) after the load",
        format!("{:.1} MiB", peak_rss as f64 / 1024.0),
        format!("idle {:.1} MiB", idle_rss as f64 / 1024.0),
        None,
    );
    drop(engine);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The batch-ingest bodies: `batches` JSON arrays of `batch` readings, one per second from T0.
pub(crate) fn batch_bodies(args: &Args) -> Vec<String> {
    batch_bodies_from(args, 0, args.batches)
}

/// `batches` bodies of `args.batch` readings `first ..` (one a second of data time from T0).
pub(crate) fn batch_bodies_from(args: &Args, first: usize, batches: usize) -> Vec<String> {
    (0..batches)
        .map(|b| {
            let items: Vec<Value> = (0..args.batch)
                .map(|i| {
                    let n = (first + b * args.batch + i) as i64;
                    json!({"time": time(T0 + n * 1000), "value": 100 + n % 200, "trend": "Flat", "device": "bench"})
                })
                .collect();
            serde_json::to_string(&items).unwrap_or_default()
        })
        .collect()
}

/// Posts every body (`readings` readings in all) to `url` from `clients` concurrent clients;
/// returns readings per second.
pub(crate) async fn post_batches(
    client: &reqwest::Client,
    url: &str,
    token: &Arc<String>,
    bodies: Vec<String>,
    readings: usize,
    clients: usize,
) -> Result<f64> {
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, token, queue, url) =
            (client.clone(), token.clone(), queue.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return anyhow::Ok(());
                };
                let r = client
                    .post(&url)
                    .bearer_auth(token.as_str())
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("batch rejected: {}", r.status());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(readings as f64 / started.elapsed().as_secs_f64())
}

pub(crate) enum Req {
    Get(String),
    Post(String),
}

/// The middle value (the upper one of an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `connections` clients for `window`, each sending requests made by `make(client, n)`
/// back to back; returns requests/s and sorted latencies. Any non-2xx is an error.
pub(crate) async fn rate(
    client: &reqwest::Client,
    base: &str,
    connections: usize,
    window: Duration,
    make: impl Fn(usize, usize) -> Req + Send + Sync + Copy + 'static,
    token: Option<Arc<String>>,
) -> Result<(f64, Vec<Duration>)> {
    let deadline = Instant::now() + window;
    let mut tasks = Vec::new();
    // `base` may list several servers (space-separated): connections are spread over them.
    let bases: Vec<String> = base.split_whitespace().map(str::to_owned).collect();
    for c in 0..connections {
        let (client, base, token) = (
            client.clone(),
            bases[c % bases.len()].clone(),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let request = match make(c, n) {
                    Req::Get(path) => client.get(format!("{base}{path}")),
                    Req::Post(body) => client
                        .post(format!("{base}/api/v1/readings"))
                        .header("content-type", "application/json")
                        .body(body),
                };
                let request = match &token {
                    Some(t) => request.bearer_auth(t.as_str()),
                    None => request,
                };
                let started = Instant::now();
                let r = request.send().await?;
                let status = r.status();
                let body = r.bytes().await?;
                if !status.is_success() {
                    bail!(
                        "request failed with {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                latencies.push(started.elapsed());
                n += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed().max(window);
    all.sort();
    Ok((all.len() as f64 / elapsed.as_secs_f64(), all))
}
