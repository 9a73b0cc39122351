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

use crate::{rate, row, time, token, Args, Req, T0};

const POOL_SIZE: usize = 4;
/// Rounds of the 3-replica / 1-replica / direct comparison.
const ROUNDS: usize = 5;

struct Cluster {
    env: std::collections::HashMap<String, String>,
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

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("scripts/cluster")
            .arg("down")
            .env("GS_CLUSTER_DIR", "/tmp/glucosync-bench-cluster")
            .env("GS_CLUSTER_PORT", "26000")
            .output();
    }
}

async fn pg(url: &str) -> Result<tokio_postgres::Client> {
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
    let out = cluster_cmd(&["up"], &args.engine)?;
    let cluster = Cluster {
        env: out
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
    };
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

    // 2. Single-reading POSTs: 3 replicas via HAProxy, 1 replica via HAProxy (the other two
    // drained through HAProxy's runtime API, idle but running), and 1 replica direct.
    let window = std::time::Duration::from_secs(args.seconds);
    let single = |c: usize, i: usize| {
        let t = T0 + 86_400_000 * 500 + (c as i64) * 10_000_000 + (i as i64) * 1000;
        Req::Post(
            json!({"time": time(t), "value": 120, "device": format!("phone-{c}")}).to_string(),
        )
    };
    // The batch ingest leaves a checkpoint to write, WAL for the standby to replay and a table
    // to analyse: settle all three before measuring, then warm up.
    settle(&db).await?;
    let post = |base: String| {
        let (client, token) = (client.clone(), token.clone());
        async move {
            rate(
                &client,
                &base,
                args.connections,
                window,
                single,
                Some(token),
            )
            .await
        }
    };
    for _ in 0..3 {
        post(haproxy.clone()).await?;
    }
    let drain = |on: bool| -> Result<()> {
        for n in ["2", "3"] {
            cluster_cmd(
                &[if on { "drain-engine" } else { "undrain-engine" }, n],
                &args.engine,
            )?;
        }
        Ok(())
    };
    // Rounds in alternating order (3-1-direct, direct-1-3, ...), so that drift over the run
    // favours no configuration; medians of the rounds.
    let (mut three, mut one, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lat3, mut lat1) = (Vec::new(), Vec::new());
    let probe_db = db
        .clone_probe(&cluster.env["GS_CLUSTER_PG_PRIMARY"])
        .await?;
    let mut peak = 0;
    for round in 0..ROUNDS {
        let order: [u8; 3] = if round % 2 == 0 { [3, 1, 0] } else { [0, 1, 3] };
        for config in order {
            match config {
                3 => {
                    let counter = peak_connections(&probe_db, window);
                    let (measured, p) = tokio::join!(post(haproxy.clone()), counter);
                    let (r, l) = measured?;
                    peak = peak.max(p?);
                    three.push(r);
                    lat3.extend(l);
                }
                1 => {
                    drain(true)?;
                    let measured = post(haproxy.clone()).await;
                    drain(false)?;
                    let (r, l) = measured?;
                    one.push(r);
                    lat1.extend(l);
                }
                _ => direct.push(post(engines[0].clone()).await?.0),
            }
        }
    }
    let (three_direct, _) = post(engines.join(" ")).await?;
    let (three_m, one_m, direct_m) = (median(&three), median(&one), median(&direct));
    // Throughput drifts over a run (the table grows, autovacuum comes and goes): ratios are
    // taken within each round, whose configurations ran back to back, then their median.
    let per_round =
        |a: &[f64], b: &[f64]| median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<f64>>());
    let (scaling, via_haproxy) = (per_round(&three, &one), per_round(&one, &direct));
    lat3.sort();
    lat1.sort();
    let p99 = |l: &[std::time::Duration]| crate::percentile(l, 0.99).as_secs_f64() * 1000.0;
    let rounds = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    row(
        &format!("single POSTs via HAProxy, 3 replicas ({ROUNDS} rounds)"),
        format!("{three_m:.0} req/s"),
        format!("1 replica {one_m:.0} req/s"),
        Some(scaling),
    );
    row(
        "  rounds: 3 replicas",
        format!("{} req/s", rounds(&three)),
        format!("1 replica {} req/s", rounds(&one)),
        None,
    );
    row(
        "  p99 with 3 / with 1 replica",
        format!("{:.1} / {:.1} ms", p99(&lat3), p99(&lat1)),
        String::new(),
        None,
    );
    row(
        "HAProxy overhead (1 replica via HAProxy)",
        format!("{one_m:.0} req/s"),
        format!("direct {direct_m:.0} req/s"),
        Some(via_haproxy),
    );
    row(
        "  rounds: direct",
        format!("{} req/s", rounds(&direct)),
        String::new(),
        None,
    );
    // The criterion: 3 replicas lower than 1 by no more than HAProxy costs (and not
    // lower at all where HAProxy costs nothing measurable).
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
    row(
        "3 replicas without HAProxy (client spreads)",
        format!("{three_direct:.0} req/s"),
        format!("1 replica direct {direct_m:.0} req/s"),
        Some(three_direct / direct_m),
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

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Waits for what a bulk load leaves behind: a checkpoint (until which every first change of a
/// page writes a full image to the WAL), the standby's replay, and the planner's statistics.
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
