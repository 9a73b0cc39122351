//! Forecast figures (issue #5): fitting the population model on the nine simulated people,
//! fitting one person's model on 14 days, and forecasts per second on one core — next to a
//! the time to parse a person's CSV, and AR2's forecasts per second.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use glucosync_domain::forecast::{self, evaluation::parse_csv, Series};

use crate::row;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/domain/tests/data");

fn median_time(mut f: impl FnMut(), runs: usize) -> Duration {
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
