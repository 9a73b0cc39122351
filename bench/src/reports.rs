//! Report figures (issue #4): summary + AGP + events for 90 days of 5-minute data for one
//! person, computed in process, next to the time to read those readings from the store and to
//! a single pass that only sums the values (the lower bound for touching the data); then the
//! summary endpoint for 10 people at once on 64 connections.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use glucosync_domain::analytics::GlucosePoint;
use glucosync_store::Store;
use serde_json::{json, Value};

use crate::{percentile, rate, row, time, Args, Req, PASSWORD};

const DAYS: i64 = 90;
const USERS: usize = 10;

/// 90 days of simulated CGM: the demo person's ten days, repeated.
fn ninety_days(end_ms: i64) -> Vec<GlucosePoint> {
    let csv = include_str!("../../crates/server/demo/adult-001.csv");
    let values: Vec<f64> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1)?.parse().ok())
        .collect();
    let n = (DAYS * 288) as usize;
    (0..n)
        .map(|i| GlucosePoint {
            utc_ms: end_ms - (n - i) as i64 * 300_000,
            mgdl: values[i % values.len()],
        })
        .collect()
}

/// The median duration of `runs` calls of `f`.
pub(crate) fn median_time(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

pub async fn run(args: &Args, engine_bin: &Path) -> Result<()> {
    println!("\nReports (90 days of 5-minute CGM, 25,920 readings per person)\n");
    let end_ms = crate::now_ms() - 60_000;
    let points = ninety_days(end_ms);
    let tz = chrono_tz::Europe::Berlin;

    // 1. Compute in process vs a bare sum over the same values.
    let mut sink = 0.0;
    let compute = median_time(
        || {
            let s = glucosync_domain::analytics::summary(&points, &tz);
            let a = glucosync_domain::agp::agp(&points, &tz, 3);
            let e = glucosync_domain::events::events(&points);
            sink += s.map(|s| s.mean).unwrap_or(0.0) + a.len() as f64 + e.len() as f64;
        },
        21,
    );
    let sum = median_time(
        || {
            sink += std::hint::black_box(&points)
                .iter()
                .map(|p| p.mgdl)
                .sum::<f64>();
        },
        201,
    );
    let part = |f: &mut dyn FnMut() -> f64| {
        let mut sink = 0.0;
        let d = median_time(|| sink += f(), 21);
        std::hint::black_box(sink);
        d
    };
    let t_summary = part(&mut || {
        glucosync_domain::analytics::summary(&points, &tz)
            .map(|s| s.mean)
            .unwrap_or(0.0)
    });
    let t_agp = part(&mut || glucosync_domain::agp::agp(&points, &tz, 3).len() as f64);
    let t_events = part(&mut || glucosync_domain::events::events(&points).len() as f64);
    std::hint::black_box(sink);

    // 2. Reading the same readings from the embedded store.
    let dir = tempfile::tempdir()?;
    let store =
        glucosync_store_sqlite::SqliteStore::open_and_migrate(&dir.path().join("r.db")).await?;
    let user = store
        .create_user(glucosync_store::NewUser {
            email: glucosync_domain::accounts::Email::parse("r@example.org")?,
            password_hash: "x".into(),
            admin: glucosync_store::AdminGrant::No,
            now_ms: end_ms,
        })
        .await?;
    let readings: Vec<_> = points
        .iter()
        .map(|p| glucosync_domain::readings::NewReading {
            time: glucosync_domain::Timestamp::from_utc_ms(p.utc_ms),
            value: glucosync_domain::GlucoseMgdl::from_stored(p.mgdl),
            kind: glucosync_domain::readings::ReadingKind::Cgm,
            trend: None,
            device: String::new(),
            extra: None,
        })
        .collect();
    store.insert_readings(user.id, readings, end_ms).await?;
    let mut read_times = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        let got = store
            .cgm_values(user.id, points[0].utc_ms, end_ms + 1)
            .await?;
        read_times.push(t.elapsed());
        anyhow::ensure!(
            got.len() == points.len(),
            "read {} of {}",
            got.len(),
            points.len()
        );
    }
    read_times.sort();
    let read = read_times[5];
    store.close().await;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    row(
        "summary + AGP + events, compute (goal < 20 ms)",
        format!("{:.2} ms", ms(compute)),
        format!("bare sum {:.3} ms", ms(sum)),
        Some(ms(compute) / ms(sum)),
    );
    row(
        "  of which summary / AGP / events",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            ms(t_summary),
            ms(t_agp),
            ms(t_events)
        ),
        String::new(),
        None,
    );
    row(
        "  reading those 25,920 values (SQLite cgm_values)",
        format!("{:.2} ms", ms(read)),
        format!("compute {:.2} ms", ms(compute)),
        Some(ms(read) / ms(compute)),
    );

    // 3. Over HTTP: 10 people with 90 days each, 64 connections asking for their summary.
    let (engine, _) = crate::start_engine(engine_bin, &dir.path().join("engine")).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections * 2)
        .build()?;
    let mut tokens = Vec::new();
    for u in 0..USERS {
        let email = format!("reports{u}@example.org");
        client
            .post(format!("{}/api/v1/auth/signup", engine.base))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?;
        let v: Value = client
            .post(format!("{}/api/v1/auth/login", engine.base))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        let token = v["token"].as_str().context("token")?.to_owned();
        for chunk in points.chunks(10_000) {
            let body: Vec<Value> = chunk
                .iter()
                .map(|p| json!({"time": time(p.utc_ms), "value": p.mgdl}))
                .collect();
            client
                .post(format!("{}/api/v1/readings", engine.base))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await?
                .error_for_status()?;
        }
        tokens.push(token);
    }
    let from = time(points[0].utc_ms);
    let path = format!(
        "/api/v1/reports/summary?from={}",
        from.replace(':', "%3A").replace('+', "%2B")
    );
    let tokens = Arc::new(tokens);
    let window = Duration::from_secs(args.seconds);
    let (rps, lat) = rate_per_user(
        &client,
        &engine.base,
        &path,
        args.connections,
        window,
        tokens.clone(),
    )
    .await?;
    let (health, _) = rate(
        &client,
        &engine.base,
        args.connections,
        window,
        |_, _| Req::Get("/health".into()),
        None,
    )
    .await?;
    row(
        &format!(
            "90-day summary over HTTP, {USERS} people, {} conns",
            args.connections
        ),
        format!("{rps:.0} req/s"),
        format!("GET /health {health:.0} req/s"),
        Some(rps / health),
    );
    row(
        "  p50 / p99",
        format!(
            "{:.1} / {:.1} ms",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
        String::new(),
        None,
    );
    drop(engine);
    Ok(())
}

/// Like `rate`, but connection c authenticates as person c mod n.
async fn rate_per_user(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    connections: usize,
    window: Duration,
    tokens: Arc<Vec<String>>,
) -> Result<(f64, Vec<Duration>)> {
    let deadline = Instant::now() + window;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (client, url, tokens) = (client.clone(), format!("{base}{path}"), tokens.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = client
                    .get(&url)
                    .bearer_auth(&tokens[c % tokens.len()])
                    .send()
                    .await?;
                let status = r.status();
                r.bytes().await?;
                anyhow::ensure!(status.is_success(), "summary failed: {status}");
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok((
        all.len() as f64 / started.elapsed().max(window).as_secs_f64(),
        all,
    ))
}
