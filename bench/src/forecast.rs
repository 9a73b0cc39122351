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
/// 5 minutes apart in data time, as an uploader sends them), with forecasts on and off in
/// alternating pairs of windows, saturated and at a fixed rate.
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
    // Each person uploads a simulated patient's CGM trace (nine patients, ten days each,
    // people spread over them and over the days), so alerts and predicted lows come at the
    // rates real traces give.
    let traces: std::sync::Arc<Vec<Vec<f64>>> = std::sync::Arc::new(
        people()?
            .iter()
            .map(|p| p.cgm.iter().flatten().copied().collect())
            .collect(),
    );
    let mut people = std::collections::HashMap::new();
    for (label, base) in [("on", &on.base), ("off", &off.base)] {
        let tokens = crate::people_tokens(&client, base, args.connections).await?;
        people.insert(label, std::sync::Arc::new(tokens));
    }
    let window = Duration::from_secs(args.seconds);
    // Pairs of windows in alternating order (off-on, on-off, ...): the machine's speed drifts
    // by more than the cost measured, so the cost is taken within each pair, whose windows ran
    // back to back, and the median of the pairs is printed.
    let order: Vec<&str> = (0..SERVING_PAIRS)
        .flat_map(|pair| {
            if pair % 2 == 0 {
                ["off", "on"]
            } else {
                ["on", "off"]
            }
        })
        .collect();
    let windows = 2 * order.len() as i64;
    let mut window_no = 0;
    // Two loads: as fast as the engine answers (throughput), and a fixed rate well below
    // either engine's capacity (CPU per upload). At saturation the engine's CPU per upload
    // depends on how requests happen to batch up (a slower engine batches more), which moves
    // it by more than the cost measured; at a fixed rate both engines see the same traffic.
    let mut measured: std::collections::HashMap<(&str, bool), Vec<(usize, u64)>> =
        std::collections::HashMap::new();
    for paced in [false, true] {
        for &label in &order {
            // Each window starts half a year later in data time than the one before (after
            // 2000, the earliest time accepted).
            let start =
                crate::now_ms() - (windows + 1) * 190 * 86_400_000 + window_no * 180 * 86_400_000;
            window_no += 1;
            let engine = if label == "on" { &on } else { &off };
            let pace = paced.then(|| Duration::from_secs_f64(args.connections as f64 / PACED_RATE));
            let result = upload_window(
                &client,
                engine,
                &people[label],
                &traces,
                start,
                window,
                pace,
            )
            .await?;
            measured.entry((label, paced)).or_default().push(result);
        }
    }
    let cpu_per_upload = |label: &str, paced: bool| -> Vec<f64> {
        measured[&(label, paced)]
            .iter()
            .map(|&(n, ticks)| ticks as f64 / n.max(1) as f64)
            .collect()
    };
    let rates = |label: &str| -> Vec<f64> {
        measured[&(label, false)]
            .iter()
            .map(|&(n, _)| n as f64 / window.as_secs_f64())
            .collect()
    };
    let per_pair = |on: &[f64], off: &[f64], cost: fn(f64, f64) -> f64| -> Vec<f64> {
        on.iter()
            .zip(off)
            .map(|(&on, &off)| cost(on, off))
            .collect()
    };
    let percents = |costs: &[f64]| {
        costs
            .iter()
            .map(|c| format!("{:.1}", c * 100.0))
            .collect::<Vec<_>>()
            .join(" / ")
            + " %"
    };
    let tick_us = 1e6 / 100.0;
    for paced in [true, false] {
        let (on_cpu, off_cpu) = (cpu_per_upload("on", paced), cpu_per_upload("off", paced));
        let costs = per_pair(&on_cpu, &off_cpu, |on, off| on / off - 1.0);
        let cost = median(&costs);
        let load = if paced {
            format!("{PACED_RATE:.0} uploads/s")
        } else {
            "saturated".to_string()
        };
        row(
            &format!("  engine CPU per upload, forecasts on, {load} (median)"),
            format!("{:.1} µs", median(&on_cpu) * tick_us),
            format!("off {:.1} µs", median(&off_cpu) * tick_us),
            Some(1.0 + cost),
        );
        row(
            &format!("  forecast cost in engine CPU / (parse + store a reading), {load}"),
            format!("{:.1} %", cost * 100.0),
            if paced {
                "goal < 10 %".into()
            } else {
                String::new()
            },
            None,
        );
        row("    per pair", percents(&costs), String::new(), None);
    }
    let (on_rates, off_rates) = (rates("on"), rates("off"));
    // The extra time per upload that forecasting takes, relative to an upload without it.
    let costs = per_pair(&on_rates, &off_rates, |on, off| off / on - 1.0);
    let cost = median(&costs);
    let (with, without) = (median(&on_rates), median(&off_rates));
    row(
        &format!("single POSTs, 64 people, a forecast each ({SERVING_PAIRS} pairs)"),
        format!("{with:.0} req/s"),
        format!("forecasts off {without:.0} req/s"),
        Some(1.0 / (1.0 + cost)),
    );
    row(
        "  throughput cost / (parse + store a reading), median of pairs",
        format!("{:.1} %", cost * 100.0),
        String::new(),
        None,
    );
    row("    per pair", percents(&costs), String::new(), None);
    drop((on, off));
    Ok(())
}

const SPAN_READINGS: usize = 500;
/// The fixed load of the CPU-per-upload windows (all connections together): about a quarter of
/// what one engine answers here with forecasts on.
const PACED_RATE: f64 = 1000.0;

/// One window of single-reading uploads from every person at once, each person's readings
/// 5 minutes apart in data time from `start`; `pace` spaces each connection's uploads (none:
/// as fast as the engine answers). Returns the uploads made and the engine's CPU ticks.
async fn upload_window(
    client: &reqwest::Client,
    engine: &crate::Engine,
    tokens: &std::sync::Arc<Vec<String>>,
    traces: &std::sync::Arc<Vec<Vec<f64>>>,
    start: i64,
    window: Duration,
    pace: Option<Duration>,
) -> Result<(usize, u64)> {
    let cpu_before = engine.cpu_ticks()?;
    let deadline = Instant::now() + window;
    let mut tasks = Vec::new();
    for (c, token) in tokens.iter().enumerate() {
        let (client, base, token) = (client.clone(), engine.base.clone(), token.clone());
        let trace = traces[c % traces.len()].clone();
        // People on the same trace start days apart.
        let offset = (c / traces.len()) * forecast::ROWS_PER_DAY + c * 37;
        tasks.push(tokio::spawn(async move {
            let mut ticks = pace.map(|p| {
                // Connections spread over the interval, not all at once.
                let first = tokio::time::Instant::now() + p.mul_f64(c as f64 / 64.0);
                let mut i = tokio::time::interval_at(first, p);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            let mut n = 0usize;
            while Instant::now() < deadline {
                if let Some(ticks) = ticks.as_mut() {
                    ticks.tick().await;
                }
                // Spans of 1.7 days, a month apart: the serving cost alone (under the
                // 3 days that start a personal model's fit, measured above).
                let span = (n / SPAN_READINGS) as i64;
                let t =
                    start + span * 30 * 86_400_000 + (n % SPAN_READINGS) as i64 * forecast::STEP_MS;
                let value = trace[(offset + n) % trace.len()].round();
                let body = serde_json::json!({"time": time(t), "value": value});
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
    Ok((total, engine.cpu_ticks()? - cpu_before))
}
/// Pairs of windows (forecasts on and off) in the serving-cost comparison.
const SERVING_PAIRS: usize = 6;

/// People uploading in the instruction count (each sign-up hashes a password, slow under
/// callgrind).
const INSTRUCTION_PEOPLE: usize = 8;
/// Uploads before counting starts (first reads of each person's history, caches filled).
const INSTRUCTION_WARMUP: usize = 200;
/// Uploads counted.
const INSTRUCTION_UPLOADS: usize = 1_000;
/// Rounds of (off, on). Counts still vary by up to ±1.5 % between rounds (timers fire by
/// the wall clock, background reads of the alert timers, group commits of different sizes):
/// the median of five is printed, with the range.
const INSTRUCTION_ROUNDS: usize = 5;

/// The forecast's serving cost as the engine's instructions per upload, forecasts on vs off,
/// counted by callgrind: unlike CPU time on this shared machine, the count repeats run to run.
/// Uploads go one at a time (no batching effects), each person's readings 5 minutes apart in
/// data time, values from the simulated traces. Counters are zeroed after the warm-up and
/// dumped after the last upload (`callgrind_control`), so start-up and sign-ups are not
/// counted; timers that run meanwhile are (in both engines; the slower one runs longer, which
/// counts against forecasts). Kernel work (sockets, fsync) is not counted by callgrind: that
/// shrinks the denominator, parsing and storing the reading, so the ratio errs against
/// forecasts too.
pub async fn instructions(args: &Args) -> Result<()> {
    let traces: Vec<Vec<f64>> = people()?
        .iter()
        .map(|p| p.cgm.iter().flatten().copied().collect())
        .collect();
    let client = reqwest::Client::new();
    let mut per_upload = std::collections::HashMap::new();
    for round in 0..INSTRUCTION_ROUNDS {
        for label in ["off", "on"] {
            let dir = tempfile::tempdir()?;
            let out = dir.path().join("callgrind.out");
            let out_arg = format!("--callgrind-out-file={}", out.display());
            let (engine, _) = crate::start_engine_under(
                &["valgrind", "--tool=callgrind", &out_arg],
                &args.engine,
                &dir.path().join("data"),
                &[
                    (
                        "GLUCOSYNC_FORECASTS",
                        if label == "on" { "true" } else { "false" },
                    ),
                    ("GLUCOSYNC_TRUSTED_PROXIES", "127.0.0.1"),
                ],
                Duration::from_secs(300),
            )
            .await?;
            let tokens = crate::people_tokens(&client, &engine.base, INSTRUCTION_PEOPLE).await?;
            let start = crate::now_ms() - 400 * 86_400_000;
            let upload = |n: usize| {
                let person = n % tokens.len();
                let step = (n / tokens.len()) as i64;
                let trace = &traces[person % traces.len()];
                let value = trace[(person * 1_000 + step as usize) % trace.len()].round();
                let body = serde_json::json!({"time": time(start + step * forecast::STEP_MS), "value": value});
                client
                    .post(format!("{}/api/v1/readings", engine.base))
                    .bearer_auth(&tokens[person])
                    .json(&body)
                    .send()
            };
            for n in 0..INSTRUCTION_WARMUP {
                anyhow::ensure!(upload(n).await?.status().is_success(), "upload failed");
            }
            callgrind_control(&["-z", &engine.pid().to_string()])?;
            for n in INSTRUCTION_WARMUP..INSTRUCTION_WARMUP + INSTRUCTION_UPLOADS {
                anyhow::ensure!(upload(n).await?.status().is_success(), "upload failed");
            }
            callgrind_control(&["-d", &engine.pid().to_string()])?;
            let total = dumped_instructions(dir.path())?;
            drop(engine);
            // For a look with callgrind_annotate: GS_BENCH_CALLGRIND_DIR=/some/dir keeps the dumps.
            if let Some(keep) = std::env::var_os("GS_BENCH_CALLGRIND_DIR") {
                for entry in std::fs::read_dir(dir.path())? {
                    let path = entry?.path();
                    if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                        if name.starts_with("callgrind.out") {
                            std::fs::copy(
                                &path,
                                std::path::Path::new(&keep).join(format!("{label}-{round}-{name}")),
                            )?;
                        }
                    }
                }
            }
            let ir = total as f64 / INSTRUCTION_UPLOADS as f64;
            println!("  round {round} forecasts {label}: {ir:.0} instructions per upload");
            per_upload.entry(label).or_insert_with(Vec::new).push(ir);
        }
    }
    let (on, off) = (median(&per_upload["on"]), median(&per_upload["off"]));
    let ratios: Vec<f64> = per_upload["on"]
        .iter()
        .zip(&per_upload["off"])
        .map(|(on, off)| (on / off - 1.0) * 100.0)
        .collect();
    let (low, high) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    println!("  rounds' forecast cost: {low:.1} % to {high:.1} %");
    row(
        "engine instructions per upload, forecasts on (callgrind)",
        format!("{on:.0}"),
        format!("off {off:.0}"),
        Some(on / off),
    );
    row(
        "  forecast cost in instructions / (parse + store a reading)",
        format!("{:.1} %", (on / off - 1.0) * 100.0),
        "goal < 10 %".into(),
        None,
    );
    Ok(())
}

fn callgrind_control(args: &[&str]) -> Result<()> {
    let status = std::process::Command::new("callgrind_control")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "callgrind_control {args:?} failed");
    Ok(())
}

/// The instructions of the dump `callgrind_control -d` wrote (the file whose name ends in
/// `.1` beside the out file; its `summary:` or `totals:` line).
fn dumped_instructions(dir: &std::path::Path) -> Result<u64> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("callgrind.out") && name.ends_with(".1")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        for line in text.lines() {
            if let Some(v) = line
                .strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
            {
                return Ok(v
                    .split_whitespace()
                    .next()
                    .context("empty summary")?
                    .parse()?);
            }
        }
    }
    anyhow::bail!("no callgrind dump in {}", dir.display())
}
