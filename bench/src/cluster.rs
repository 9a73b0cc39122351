//! Cluster figures (issue #3): batch ingest into PostgreSQL through the API vs the same
//! multi-row INSERT from a plain client; single-reading POSTs through HAProxy with 1 and 3
//! replicas, and HAProxy's own overhead (1 replica direct vs through HAProxy); PostgreSQL
//! connections under load vs the configured pools. Starts its own cluster with scripts/cluster.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::{median, row, time, token, Args, T0};

const POOL_SIZE: usize = 4;
/// Rounds of the 3-replica / 1-replica / direct comparison.
const ROUNDS: usize = 15;

pub(crate) struct Cluster {
    pub(crate) env: std::collections::HashMap<String, String>,
}

fn cluster_cmd(args: &[&str], engine: &Path) -> Result<String> {
    let out = Command::new("scripts/cluster")
        .args(args)
        .env("GS_CLUSTER_DIR", "/tmp/glucosync-bench-cluster")
        .env("GS_CLUSTER_PORT", "26000")
        .env("GS_CLUSTER_POOL_SIZE", POOL_SIZE.to_string())
        .env("GS_CLUSTER_LOG_LEVEL", "warn")
        // One worker thread per replica, like a CPU limit per pod: on a small machine the
        // replicas otherwise fight over the same cores.
        .env("GS_CLUSTER_WORKER_THREADS", "1")
        .env("GLUCOENGINE_BIN", engine)
        .output()
        .context("run scripts/cluster (from the repository root)")?;
    if !out.status.success() {
        bail!(
            "scripts/cluster {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Cluster {
    /// Starts the cluster; its `GS_CLUSTER_*` variables describe it.
    pub(crate) fn up(engine: &Path) -> Result<Cluster> {
        let out = cluster_cmd(&["up"], engine)?;
        Ok(Cluster {
            env: out
                .lines()
                .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect(),
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("scripts/cluster")
            .arg("down")
            .env("GS_CLUSTER_DIR", "/tmp/glucosync-bench-cluster")
            .env("GS_CLUSTER_PORT", "26000")
            .output();
    }
}

pub(crate) async fn pg(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// The server's own statement from plain clients, as many as post batches to the API: each
/// sends multi-row INSERTs of `per_statement` rows on a connection of its own.
async fn raw_postgres(url: &str, rows: usize, per_statement: usize, clients: usize) -> Result<f64> {
    let per_client = rows / clients;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let db = pg(url).await?;
        tasks.push(tokio::spawn(async move {
            raw_inserts(&db, c * per_client, per_client, per_statement).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((per_client * clients) as f64 / started.elapsed().as_secs_f64())
}

async fn raw_inserts(
    db: &tokio_postgres::Client,
    first: usize,
    rows: usize,
    per_statement: usize,
) -> Result<()> {
    let stmt = db
        .prepare(
            "INSERT INTO readings (user_id, time_ms, utc_offset_min, kind, device, value_mgdl, trend, created_ms) \
             SELECT $1, t.*, $8 FROM UNNEST($2::bigint[], $3::smallint[], $4::text[], $5::text[], $6::float8[], $7::text[]) AS t \
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let mut done = 0;
    while done < rows {
        let n = per_statement.min(rows - done);
        let times: Vec<i64> = (first + done..first + done + n)
            .map(|i| T0 + i as i64 * 1000)
            .collect();
        let offsets = vec![0i16; n];
        let kinds = vec!["cgm"; n];
        let devices = vec!["raw"; n];
        let values: Vec<f64> = (0..n).map(|i| 100.0 + (i % 200) as f64).collect();
        let trends = vec![Some("Flat"); n];
        db.execute(
            &stmt,
            &[
                &-1i64, &times, &offsets, &kinds, &devices, &values, &trends, &T0,
            ],
        )
        .await?;
        done += n;
    }
    Ok(())
}

pub async fn run(args: &Args) -> Result<()> {
    println!("\nCluster (PostgreSQL + Redis Sentinel + HAProxy, started by scripts/cluster)\n");
    let cluster = Cluster::up(&args.engine)?;
    let haproxy = cluster
        .env
        .get("GS_CLUSTER_URL")
        .context("no cluster URL")?
        .clone();
    let engines: Vec<String> = cluster.env["GS_CLUSTER_ENGINE_URLS"]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let db = pg(&cluster.env["GS_CLUSTER_PG_PRIMARY"]).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections * 2)
        .build()?;
    let token = Arc::new(token(&client, &haproxy).await?);

    // 1. Batch ingest through the API (directly to one replica) vs raw multi-row INSERTs.
    let total = args.batch * args.batches;
    let raw = raw_postgres(
        &cluster.env["GS_CLUSTER_PG_PRIMARY"],
        total,
        args.batch,
        args.batch_clients,
    )
    .await?;
    let api = crate::post_batches(
        &client,
        &format!("{}/api/v1/readings", engines[0]),
        &token,
        crate::batch_bodies(args),
        total,
        args.batch_clients,
    )
    .await?;
    row(
        &format!(
            "PG batch ingest HTTP ({}x{}, {} clients)",
            args.batches, args.batch, args.batch_clients
        ),
        format!("{api:.0} readings/s"),
        format!("raw INSERTs {raw:.0} readings/s"),
        Some(api / raw),
    );

    // The batch ingest leaves a checkpoint to write, WAL for the standby to replay and a table
    // to analyse: settle all three before comparing configurations.
    settle(&db).await?;
    let drain = |on: bool| -> Result<()> {
        for n in ["2", "3"] {
            cluster_cmd(
                &[if on { "drain-engine" } else { "undrain-engine" }, n],
                &args.engine,
            )?;
        }
        Ok(())
    };

    // 2. The comparison: the same batch-ingest load through HAProxy with 3 replicas
    // and with 1 (the other two drained through HAProxy's runtime API, idle but running), and
    // HAProxy's overhead (1 replica through HAProxy vs directly). Every run posts new readings.
    // Many short rounds rather than a few long ones: throughput drifts by ±20 % within a run
    // (checkpoints, autovacuum, the growing table), and the median of 15 paired rounds holds
    // still where that of 5 did not. Each round posts a third of the first ingest.
    let round_total = (args.batches / 3).max(1) * args.batch;
    let next_reading = std::sync::atomic::AtomicUsize::new(total);
    let ingest = |base: String| {
        let first = next_reading.fetch_add(round_total, std::sync::atomic::Ordering::Relaxed);
        let (client, token) = (client.clone(), token.clone());
        async move {
            let rate = crate::post_batches(
                &client,
                &format!("{base}/api/v1/readings"),
                &token,
                crate::batch_bodies_from(args, first, round_total / args.batch),
                round_total,
                args.batch_clients,
            )
            .await?;
            anyhow::Ok((rate, Vec::new()))
        }
    };
    ingest(haproxy.clone()).await?;
    let batch = compare(ingest, &drain, &haproxy, &engines[0]).await?;
    batch.print("batch ingest", "readings/s");

    // 3. Single-reading uploads as CGMs send them: one person per connection, a reading every
    // 5 minutes of data time each (so each gets a forecast reading 70 minutes of history).
    let window = std::time::Duration::from_secs(args.seconds);
    let people = Arc::new(crate::people_tokens(&client, &haproxy, args.connections).await?);
    let next_time: Arc<Vec<std::sync::atomic::AtomicI64>> = Arc::new(
        (0..args.connections)
            .map(|_| std::sync::atomic::AtomicI64::new(T0 + 86_400_000 * 500))
            .collect(),
    );
    let upload_for = |window: std::time::Duration| {
        let (client, people, next_time) = (client.clone(), people.clone(), next_time.clone());
        move |base: String| {
            let (client, people, next_time) = (client.clone(), people.clone(), next_time.clone());
            async move { cgm_uploads(&client, &base, &people, &next_time, window).await }
        }
    };
    let upload = upload_for(window);
    for _ in 0..2 {
        upload(haproxy.clone()).await?;
    }
    let probe_db = db
        .clone_probe(&cluster.env["GS_CLUSTER_PG_PRIMARY"])
        .await?;
    let counter = peak_connections(&probe_db, window);
    let (_, peak) = tokio::join!(upload(haproxy.clone()), counter);
    let peak = peak?;
    let single = compare(upload_for(window / 3), &drain, &haproxy, &engines[0]).await?;
    single.print(
        &format!("single POSTs ({} people)", args.connections),
        "req/s",
    );
    let p99 = |l: &[std::time::Duration]| crate::percentile(l, 0.99).as_secs_f64() * 1000.0;
    row(
        "  p99 with 3 / with 1 replica",
        format!("{:.1} / {:.1} ms", p99(&single.lat3), p99(&single.lat1)),
        String::new(),
        None,
    );
    let (three_direct, _) = upload(engines.join(" ")).await?;
    row(
        "  3 replicas without HAProxy (client spreads)",
        format!("{three_direct:.0} req/s"),
        format!("1 replica direct {:.0} req/s", median(&single.direct)),
        Some(three_direct / median(&single.direct)),
    );
    row(
        "PG connections under load (3 replicas)",
        format!("{peak} peak"),
        format!("pools allow {}", 3 * POOL_SIZE),
        Some(peak as f64 / (3 * POOL_SIZE) as f64),
    );
    drop(cluster);
    Ok(())
}

/// Throughput of 3 replicas via HAProxy, 1 replica via HAProxy and 1 replica directly, over
/// `ROUNDS` rounds.
struct Comparison {
    three: Vec<f64>,
    one: Vec<f64>,
    direct: Vec<f64>,
    lat3: Vec<std::time::Duration>,
    lat1: Vec<std::time::Duration>,
}

/// Rounds in alternating order (3-1-direct, direct-1-3, ...), so that drift over the run
/// favours no configuration.
async fn compare<F, Fut>(
    measure: F,
    drain: &dyn Fn(bool) -> Result<()>,
    haproxy: &str,
    engine: &str,
) -> Result<Comparison>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(f64, Vec<std::time::Duration>)>>,
{
    let mut c = Comparison {
        three: Vec::new(),
        one: Vec::new(),
        direct: Vec::new(),
        lat3: Vec::new(),
        lat1: Vec::new(),
    };
    for round in 0..ROUNDS {
        let order: [u8; 3] = if round % 2 == 0 { [3, 1, 0] } else { [0, 1, 3] };
        for config in order {
            match config {
                3 => {
                    let (r, l) = measure(haproxy.to_owned()).await?;
                    c.three.push(r);
                    c.lat3.extend(l);
                }
                1 => {
                    drain(true)?;
                    let measured = measure(haproxy.to_owned()).await;
                    drain(false)?;
                    let (r, l) = measured?;
                    c.one.push(r);
                    c.lat1.extend(l);
                }
                _ => c.direct.push(measure(engine.to_owned()).await?.0),
            }
        }
    }
    c.lat3.sort();
    c.lat1.sort();
    Ok(c)
}

impl Comparison {
    /// Prints the figures and the verdict: 3 replicas may be lower than 1 by at most
    /// HAProxy's overhead (and not at all where that overhead is not measurable).
    /// Throughput drifts over a run (the table grows, autovacuum comes and goes), so ratios
    /// are taken within each round, whose configurations ran back to back, then their median.
    fn print(&self, what: &str, unit: &str) {
        let per_round = |a: &[f64], b: &[f64]| {
            median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<f64>>())
        };
        let (scaling, via_haproxy) = (
            per_round(&self.three, &self.one),
            per_round(&self.one, &self.direct),
        );
        let rounds = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        row(
            &format!("{what} via HAProxy, 3 replicas ({ROUNDS} rounds)"),
            format!("{:.0} {unit}", median(&self.three)),
            format!("1 replica {:.0} {unit}", median(&self.one)),
            Some(scaling),
        );
        row(
            "  HAProxy overhead (1 replica via HAProxy)",
            format!("{:.0} {unit}", median(&self.one)),
            format!("direct {:.0} {unit}", median(&self.direct)),
            Some(via_haproxy),
        );
        row(
            "  rounds: 3 replicas / 1 replica / direct",
            format!("{} / {}", rounds(&self.three), rounds(&self.one)),
            rounds(&self.direct),
            None,
        );
        let (lower, overhead) = (1.0 - scaling, 1.0 - via_haproxy);
        let verdict = if lower <= overhead.max(0.0) {
            "met"
        } else {
            "NOT met"
        };
        row(
            &format!("  3 vs 1 replica within HAProxy's overhead: {verdict}"),
            format!("{:.1} % lower", 100.0 * lower),
            format!("overhead {:.1} %", 100.0 * overhead),
            None,
        );
    }
}

/// One person per connection uploads a reading every 5 minutes of data time (continuing
/// where the last window stopped), for `window`; returns uploads per second and latencies.
/// `base` may list several servers (space-separated): connections are spread over them.
async fn cgm_uploads(
    client: &reqwest::Client,
    base: &str,
    people: &Arc<Vec<String>>,
    next_time: &Arc<Vec<std::sync::atomic::AtomicI64>>,
    window: std::time::Duration,
) -> Result<(f64, Vec<std::time::Duration>)> {
    let deadline = Instant::now() + window;
    let bases: Vec<&str> = base.split_whitespace().collect();
    let mut tasks = Vec::new();
    for c in 0..people.len() {
        let (client, base, people, next_time) = (
            client.clone(),
            bases[c % bases.len()].to_owned(),
            people.clone(),
            next_time.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = next_time[c].fetch_add(300_000, std::sync::atomic::Ordering::Relaxed);
                let value = 100 + (t / 300_000 + c as i64) % 150;
                let started = Instant::now();
                let r = client
                    .post(format!("{base}/api/v1/readings"))
                    .bearer_auth(&people[c])
                    .json(&json!({"time": time(t), "value": value, "device": "cgm"}))
                    .send()
                    .await?;
                let status = r.status();
                r.bytes().await?;
                anyhow::ensure!(status.is_success(), "upload failed: {status}");
                latencies.push(started.elapsed());
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
    Ok((all.len() as f64 / elapsed.as_secs_f64(), all))
}

/// Waits for what a bulk load leaves behind: a checkpoint (until which every first change of a
/// page writes a full image to the WAL), the standby's replay, and the planner's statistics.
/// (Turning autovacuum off for the comparisons was tried: the tables' statistics then go
/// stale as people's data grows, and the single uploads slowed down through the run.)
async fn settle(db: &tokio_postgres::Client) -> Result<()> {
    db.batch_execute("CHECKPOINT").await?;
    db.batch_execute("VACUUM ANALYZE readings").await?;
    for _ in 0..600 {
        let behind: bool = db
            .query_one(
                "SELECT COALESCE(bool_or(replay_lsn IS NULL OR replay_lsn < pg_current_wal_lsn()), false) FROM pg_stat_replication",
                &[],
            )
            .await?
            .get(0);
        if !behind {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("the standby did not catch up within a minute")
}

async fn peak_connections(db: &tokio_postgres::Client, window: std::time::Duration) -> Result<i64> {
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < window {
        let n: i64 = db
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = 'glucosync' AND application_name = 'glucoengine'",
                &[],
            )
            .await?
            .get(0);
        peak = peak.max(n);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(peak)
}

trait CloneProbe {
    async fn clone_probe(&self, url: &str) -> Result<tokio_postgres::Client>;
}

impl CloneProbe for tokio_postgres::Client {
    async fn clone_probe(&self, url: &str) -> Result<tokio_postgres::Client> {
        pg(url).await
    }
}

/// The live WebSocket figures on 3 replicas: sockets spread over the replicas (each socket
/// on one of them, as HAProxy would place it), readings posted through HAProxy, so most
/// events cross replicas through Redis.
pub async fn live(args: &Args) -> Result<()> {
    let limit = crate::live::raise_file_limit(args.sockets as u64 + 2048)?;
    println!("\nLive WebSocket on 3 replicas (PostgreSQL, Redis; open-file limit {limit})\n");
    let cluster = Cluster::up(&args.engine)?;
    let haproxy = cluster
        .env
        .get("GS_CLUSTER_URL")
        .context("no cluster URL")?
        .clone();
    let ws: Vec<String> = cluster.env["GS_CLUSTER_ENGINE_URLS"]
        .split_whitespace()
        .map(|u| u.trim_start_matches("http://").to_owned())
        .collect();
    let pids: Vec<u32> = (1..=ws.len())
        .filter_map(|n| {
            std::fs::read_to_string(format!("/tmp/glucosync-bench-cluster/pids/engine-{n}.pid"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .collect();
    let rss = || {
        pids.iter()
            .map(|&p| crate::rss_kib(p, "VmRSS:"))
            .sum::<u64>()
    };
    let client = reqwest::Client::new();
    let people = crate::live::people(&client, &haproxy).await?;
    let per_person = (args.sockets / people.len()).max(1);
    let baseline = crate::live::measure(&haproxy, &ws, &people, 1, args.seconds, |_| {}).await?;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let idle = rss();
    let mut connected = 0;
    let full = crate::live::measure(&haproxy, &ws, &people, per_person, args.seconds, |_| {
        connected = rss();
    })
    .await?;
    let sockets = per_person * people.len();
    crate::live::report("3 replicas: ", sockets, people.len(), &full, &baseline);
    row(
        &format!("3 replicas: memory per socket ({sockets} open)"),
        format!(
            "{:.1} KiB",
            connected.saturating_sub(idle) as f64 / sockets as f64
        ),
        format!("RSS of the 3: {} MiB open", connected / 1024),
        None,
    );
    Ok(())
}
