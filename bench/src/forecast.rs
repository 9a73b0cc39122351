//! Forecast figures (issue #5): fitting the population model on the nine simulated people,
//! fitting one person's model on 14 days, and forecasts per second on one core — next to a
//! the time to parse a person's CSV, and AR2's forecasts per second.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use glucosync_domain::forecast::{self, evaluation::parse_csv, Series};

use crate::median;
use crate::reports::median_time;
use crate::{row, start_engine_with, time, Args};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/domain/tests/data");

fn people() -> Result<Vec<Series>> {
    let mut files: Vec<_> = std::fs::read_dir(DATA)
        .with_context(|| format!("read {DATA}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| parse_csv(&std::fs::read_to_string(f)?).map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}

/// 14 days of one person: their 10 days, then their first 4 again.
fn fourteen_days(s: &Series) -> Series {
    let mut out = s.clone();
    let extra = s.slice(0, 4 * forecast::ROWS_PER_DAY);
    out.cgm.extend(extra.cgm);
    out.insulin.extend(extra.insulin);
    out.carbs.extend(extra.carbs);
    out
}

pub fn run() -> Result<()> {
    println!("\nForecasts (9 simulated people, 10 days each; one core)\n");
    let people = people()?;
    let training: Vec<(Series, usize)> = people.iter().map(|s| (s.clone(), s.len())).collect();
    let mut sink = 0.0;
    let population_fit = median_time(
        || sink += forecast::fit_population(&training).full.training_rows as f64,
        5,
    );
    let population = forecast::fit_population(&training);
    let person = fourteen_days(&people[3]);
    // Baseline: parsing that person's 10-day CSV (what reading the data in costs).
    let csv = std::fs::read_to_string(format!("{DATA}/adult-001.csv"))?;
    let parse = median_time(
        || sink += parse_csv(std::hint::black_box(&csv)).map_or(0.0, |s| s.len() as f64),
        21,
    );
    row(
        "population model fit (9 people x 10 days)",
        format!("{:.0} ms", population_fit.as_secs_f64() * 1000.0),
        String::new(),
        None,
    );
    let personal_fit = median_time(
        || {
            sink += forecast::fit_personal(&person, person.len(), &population)
                .map_or(0.0, |m| m.training_rows as f64)
        },
        11,
    );
    row(
        "personal model fit, 14 days (4,032 rows)",
        format!("{:.1} ms", personal_fit.as_secs_f64() * 1000.0),
        format!(
            "parsing 10 days of CSV {:.2} ms",
            parse.as_secs_f64() * 1000.0
        ),
        Some(personal_fit.as_secs_f64() / parse.as_secs_f64()),
    );
    let model = forecast::fit_personal(&person, person.len(), &population).context("model")?;
    let origins: Vec<usize> = (forecast::DOSE_HISTORY..person.len()).collect();
    let started = Instant::now();
    let mut made = 0usize;
    while started.elapsed() < Duration::from_secs(2) {
        for &t in &origins {
            if let Some(f) = forecast::forecast(&model, &person, t) {
                sink += f[11].mgdl;
                made += 1;
            }
        }
    }
    let model_rate = made as f64 / started.elapsed().as_secs_f64();
    let values: Vec<f64> = person.cgm.iter().map(|v| v.unwrap_or(100.0)).collect();
    let started = Instant::now();
    let mut made = 0usize;
    while started.elapsed() < Duration::from_secs(1) {
        for &t in &origins {
            if let Some(f) = forecast::baselines::ar2(&values[t - 1..=t]) {
                sink += f[11];
                made += 1;
            }
        }
    }
    let ar2_rate = made as f64 / started.elapsed().as_secs_f64();
    row(
        "forecasts (12 steps + intervals) per second",
        format!("{model_rate:.0}/s ({:.1} µs)", 1e6 / model_rate),
        format!("AR2 {ar2_rate:.0}/s"),
        Some(model_rate / ar2_rate),
    );
    std::hint::black_box(sink);
    Ok(())
}

/// The cost of forecasting each reading as it arrives, relative to parsing and storing it:
/// single-reading POSTs from 64 people at once (a connection each, every person's readings
/// 5 minutes apart in data time, as an uploader sends them), with forecasts on and off,
/// alternated (A B B A).
pub async fn serving(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (on, _) = start_engine_with(
        &args.engine,
        &dir.path().join("on"),
        &[
            ("GLUCOSYNC_FORECASTS", "true"),
            ("GLUCOSYNC_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await?;
    let (off, _) = start_engine_with(
        &args.engine,
        &dir.path().join("off"),
        &[
            ("GLUCOSYNC_FORECASTS", "false"),
            ("GLUCOSYNC_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections * 2)
        .build()?;
    let mut people = std::collections::HashMap::new();
    for (label, base) in [("on", &on.base), ("off", &off.base)] {
        let tokens = crate::people_tokens(&client, base, args.connections).await?;
        people.insert(label, std::sync::Arc::new(tokens));
    }
    let window = Duration::from_secs(args.seconds);
    let mut rates: std::collections::HashMap<&str, Vec<f64>> = std::collections::HashMap::new();
    // The engine's own CPU time per upload: what the forecast costs, free of the load
    // generator's share of the machine.
    let mut cpu_per_upload: std::collections::HashMap<&str, Vec<f64>> =
        std::collections::HashMap::new();
    // Pairs of windows in alternating order (off-on, on-off, ...): the machine's speed drifts
    // by more than the cost measured, so the cost is taken within each pair, whose windows ran
    // back to back, and the median of the pairs is printed.
    let order: Vec<(&str, &String)> = (0..SERVING_PAIRS)
        .flat_map(|pair| {
            if pair % 2 == 0 {
                [("off", &off.base), ("on", &on.base)]
            } else {
                [("on", &on.base), ("off", &off.base)]
            }
        })
        .collect();
    let windows = order.len() as i64;
    for (window_no, (label, base)) in order.into_iter().enumerate() {
        // Each window starts a year later in data time than the one before.
        let start = crate::now_ms() - (windows + 1) * 400 * 86_400_000
            + window_no as i64 * 365 * 86_400_000;
        let tokens = people[label].clone();
        let engine = if label == "on" { &on } else { &off };
        let cpu_before = engine.cpu_ticks()?;
        let deadline = Instant::now() + window;
        let mut tasks = Vec::new();
        for (c, token) in tokens.iter().enumerate() {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                while Instant::now() < deadline {
                    // Spans of 1.7 days, a month apart: the serving cost alone (under the
                    // 3 days that start a personal model's fit, measured above).
                    let span = (n / SPAN_READINGS) as i64;
                    let t = start
                        + span * 30 * 86_400_000
                        + (n % SPAN_READINGS) as i64 * forecast::STEP_MS;
                    let body =
                        serde_json::json!({"time": time(t), "value": 100 + (n * 7 + c) % 150});
                    let r = client
                        .post(format!("{base}/api/v1/readings"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await?;
                    anyhow::ensure!(r.status().is_success(), "upload failed: {}", r.status());
                    n += 1;
                }
                anyhow::Ok(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        cpu_per_upload
            .entry(label)
            .or_default()
            .push((engine.cpu_ticks()? - cpu_before) as f64 / total.max(1) as f64);
        rates
            .entry(label)
            .or_default()
            .push(total as f64 / window.as_secs_f64());
    }
    let (with, without) = (median(&rates["on"]), median(&rates["off"]));
    // The extra time per upload that forecasting takes, relative to an upload without it.
    let costs: Vec<f64> = rates["on"]
        .iter()
        .zip(&rates["off"])
        .map(|(on, off)| off / on - 1.0)
        .collect();
    let cost = median(&costs);
    let cpu_costs: Vec<f64> = cpu_per_upload["on"]
        .iter()
        .zip(&cpu_per_upload["off"])
        .map(|(on, off)| on / off - 1.0)
        .collect();
    let cpu_cost = median(&cpu_costs);
    let tick_us = 1e6 / 100.0;
    row(
        "  engine CPU per upload, forecasts on (median)",
        format!("{:.1} µs", median(&cpu_per_upload["on"]) * tick_us),
        format!("off {:.1} µs", median(&cpu_per_upload["off"]) * tick_us),
        Some(1.0 + cpu_cost),
    );
    row(
        "  forecast cost in engine CPU / (parse + store a reading)",
        format!("{:.1} %", cpu_cost * 100.0),
        format!(
            "per pair {} %",
            cpu_costs
                .iter()
                .map(|c| format!("{:.1}", c * 100.0))
                .collect::<Vec<_>>()
                .join(" / ")
        ),
        None,
    );
    row(
        &format!("single POSTs, 64 people, a forecast each ({SERVING_PAIRS} pairs)"),
        format!("{with:.0} req/s"),
        format!("forecasts off {without:.0} req/s"),
        Some(1.0 / (1.0 + cost)),
    );
    row(
        "  forecast cost / (parse + store a reading), median of pairs",
        format!("{:.1} %", cost * 100.0),
        "goal < 10 %".into(),
        None,
    );
    row(
        "  per pair",
        costs
            .iter()
            .map(|c| format!("{:.1}", c * 100.0))
            .collect::<Vec<_>>()
            .join(" / ")
            + " %",
        String::new(),
        None,
    );
    drop((on, off));
    Ok(())
}

const SPAN_READINGS: usize = 500;
/// Pairs of windows (forecasts on and off) in the serving-cost comparison.
const SERVING_PAIRS: usize = 6;
