//! Data ownership figures (issue 11): importing a five-year Dexcom Clarity export (readings/s
//! against raw SQLite inserts of as many rows in this run; peak memory against an import of
//! one day, to show it does not grow with the file), and backing up and restoring a database
//! of 1,000 people × 90 days (against copying the database file in this run).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use glucosync_domain::accounts::Email;
use glucosync_domain::readings::{NewReading, ReadingKind};
use glucosync_domain::{GlucoseMgdl, Timestamp};
use glucosync_store::{AdminGrant, NewUser, Store};

use crate::{row, Args};

const KEY: &str = "the benchmark's backup passphrase";
const FIVE_MIN: i64 = 300_000;
const DAY_MS: i64 = 86_400_000;

/// Writes a Clarity export of `days` days of 5-minute readings (and five treatments a day).
fn clarity_file(path: &Path, days: i64) -> Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,\
         Source Device ID,Glucose Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration \
         (hh:mm:ss),Glucose Rate of Change (mg/dL/min),Transmitter Time (Long Integer),\
         Transmitter ID"
    )?;
    writeln!(out, "1,,FirstName,,Bench,,,,,,,,")?;
    writeln!(out, "2,,Device,,,Dexcom G7 Mobile App,iOS G7,,,,,,")?;
    let start = chrono::NaiveDate::from_ymd_opt(2021, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 2, 0))
        .context("start")?;
    let mut index = 3;
    let mut readings = 0;
    for i in 0..days * 288 {
        let local = start + chrono::Duration::minutes(5 * i);
        let value = 120.0 + 60.0 * ((i as f64) / 40.0).sin();
        writeln!(
            out,
            "{index},{},EGV,,,,iOS G7,{},,,,,{},ABCDEF",
            local.format("%Y-%m-%dT%H:%M:%S"),
            value.round(),
            i * 300
        )?;
        index += 1;
        readings += 1;
        if i % 58 == 0 {
            writeln!(
                out,
                "{index},{},Insulin,Fast-Acting,,,iOS G7,,{:.2},,,,,",
                local.format("%Y-%m-%dT%H:%M:%S"),
                2.0 + (i % 5) as f64
            )?;
            index += 1;
        }
    }
    out.flush()?;
    Ok(readings)
}

fn glucoengine(args: &Args, dir: &Path, command: &[&str]) -> Result<Duration> {
    Ok(measured(args, dir, command)?.0)
}

/// Runs a command of the binary; returns its wall time and its peak resident set (VmHWM,
/// KiB, read from /proc every 2 ms while it runs: a one-day import can be over in 10 ms, and a
/// process that has exited has no VmHWM left to read).
fn measured(args: &Args, dir: &Path, command: &[&str]) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let mut child = Command::new(&args.engine)
        .args(command)
        .env("GLUCOSYNC_DATA_DIR", dir)
        .env("GLUCOSYNC_LOG_LEVEL", "warn")
        .env("GLUCOSYNC_BACKUP_KEY", KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut peak = 0;
    let status = loop {
        peak = peak.max(crate::rss_kib(child.id(), "VmHWM:"));
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = started.elapsed();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            e.read_to_string(&mut err)?;
        }
        bail!("glucoengine {command:?}: {err}");
    }
    Ok((took, peak))
}

pub(crate) async fn run(args: &Args) -> Result<()> {
    import(args)?;
    backup(args).await
}

fn import(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("engine");
    std::fs::create_dir_all(&data)?;
    let create = |email: &str| -> Result<()> {
        let mut child = Command::new(&args.engine)
            .args(["user", "create", "--email", email, "--password-stdin"])
            .env("GLUCOSYNC_DATA_DIR", &data)
            .env("GLUCOSYNC_LOG_LEVEL", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(format!("{}\n", crate::PASSWORD).as_bytes())?;
        if !child.wait()?.success() {
            bail!("user create failed");
        }
        Ok(())
    };
    let one_day = dir.path().join("clarity-1d.csv");
    clarity_file(&one_day, 1)?;
    let years = args.import_years;
    let long = dir.path().join("clarity-long.csv");
    let readings = clarity_file(&long, years * 365)?;
    let bytes = std::fs::metadata(&long)?.len();
    create("small@example.org")?;
    create("large@example.org")?;
    let import = |email: &str, file: &Path| -> Result<(Duration, u64)> {
        measured(
            args,
            &data,
            &[
                "import",
                "--user",
                email,
                "--format",
                "clarity",
                "--time-zone",
                "America/New_York",
                file.to_str().context("path")?,
            ],
        )
    };
    let (_, small_peak) = import("small@example.org", &one_day)?;
    let (took, large_peak) = import("large@example.org", &long)?;
    let (again, _) = import("large@example.org", &long)?;

    let raw_dir = tempfile::tempdir()?;
    let raw = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(crate::raw_sqlite(
            raw_dir.path(),
            readings as usize,
            5000,
        ))
    })?;
    let rate = readings as f64 / took.as_secs_f64();
    row(
        &format!(
            "import: Clarity, {years} years ({readings} readings, {} MB)",
            bytes / 1_000_000
        ),
        format!("{rate:.0} readings/s"),
        format!("raw SQLite {raw:.0} rows/s"),
        Some(rate / raw),
    );
    row(
        "import: the same file again (all duplicates)",
        format!("{:.1} s", again.as_secs_f64()),
        format!("first import {:.1} s", took.as_secs_f64()),
        Some(again.as_secs_f64() / took.as_secs_f64()),
    );
    row(
        &format!("import: peak RSS, {years} years"),
        format!("{:.1} MiB", large_peak as f64 / 1024.0),
        format!("one day {:.1} MiB", small_peak as f64 / 1024.0),
        Some(large_peak as f64 / small_peak as f64),
    );
    Ok(())
}

async fn backup(args: &Args) -> Result<()> {
    let dir =
        tempfile::tempdir_in(std::env::var("GS_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))?;
    let data = dir.path().join("engine");
    std::fs::create_dir_all(&data)?;
    let db = data.join("glucosync.db");
    let (people, days) = (args.backup_people, args.backup_days);
    let store = glucosync_store_sqlite::SqliteStore::open_and_migrate(&db).await?;
    let filled = Instant::now();
    let start = crate::now_ms() - days * DAY_MS;
    for p in 0..people {
        let user = store
            .create_user(NewUser {
                email: Email::parse(&format!("p{p}@example.org"))?,
                password_hash: "$argon2id$bench".into(),
                admin: AdminGrant::No,
                now_ms: crate::now_ms(),
            })
            .await?;
        let readings: Vec<NewReading> = (0..days * 288)
            .map(|i| NewReading {
                time: Timestamp::from_utc_ms(start + i * FIVE_MIN + p * 1000),
                value: GlucoseMgdl::from_stored(100.0 + ((i + p) % 150) as f64),
                kind: ReadingKind::Cgm,
                trend: None,
                device: "bench".into(),
                extra: None,
            })
            .collect();
        for chunk in readings.chunks(10_000) {
            store
                .insert_readings(user.id, chunk.to_vec(), crate::now_ms())
                .await?;
        }
    }
    store.close().await;
    let db_bytes = std::fs::metadata(&db)?.len();
    println!(
        "(filled {people} people × {days} days = {} readings, {:.1} GB, in {:.0} s)",
        people * days * 288,
        db_bytes as f64 / 1e9,
        filled.elapsed().as_secs_f64()
    );

    let copied = Instant::now();
    std::fs::copy(&db, dir.path().join("copy.db"))?;
    std::fs::File::open(dir.path().join("copy.db"))?.sync_all()?;
    let copy = copied.elapsed();
    std::fs::remove_file(dir.path().join("copy.db"))?;

    let out = dir.path().join("backups");
    let took = glucoengine(
        args,
        &data,
        &["backup", "--output", out.to_str().context("path")?],
    )?;
    let file = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "gsb"))
        .context("no backup written")?;
    let backup_bytes = std::fs::metadata(&file)?.len();
    row(
        &format!(
            "backup: {people} people × {days} days ({:.1} GB)",
            db_bytes as f64 / 1e9
        ),
        format!("{:.1} s", took.as_secs_f64()),
        format!("file copy + fsync {:.1} s", copy.as_secs_f64()),
        Some(took.as_secs_f64() / copy.as_secs_f64()),
    );
    row(
        "backup size (zstd, encrypted)",
        format!("{:.0} MB", backup_bytes as f64 / 1e6),
        format!("database {:.0} MB", db_bytes as f64 / 1e6),
        Some(backup_bytes as f64 / db_bytes as f64),
    );
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored)?;
    let took = glucoengine(
        args,
        &restored,
        &["restore", file.to_str().context("path")?],
    )?;
    row(
        "restore into an empty data directory",
        format!("{:.1} s", took.as_secs_f64()),
        format!("file copy + fsync {:.1} s", copy.as_secs_f64()),
        Some(took.as_secs_f64() / copy.as_secs_f64()),
    );
    writes_during_backup(args, &data, &out).await
}

/// How many backups the stall figure is measured over: its maximum is a rare event, and the
/// machine's own noise makes single runs vary.
const STALL_ROUNDS: usize = 3;

/// One client uploading single readings, each acknowledged before the next: the slowest
/// acknowledgement while `glucoengine backup` runs beside the server, against the slowest in
/// as long a stretch without it; over `STALL_ROUNDS` backups.
async fn writes_during_backup(args: &Args, data: &Path, out: &Path) -> Result<()> {
    let (engine, _) = crate::start_engine(&args.engine, data).await?;
    let client = reqwest::Client::new();
    let token = crate::token(&client, &engine.base).await?;
    let write = |stop: std::sync::Arc<std::sync::atomic::AtomicBool>| {
        let (client, url, token) = (
            client.clone(),
            format!("{}/api/v1/readings", engine.base),
            token.clone(),
        );
        tokio::spawn(async move {
            // Each acknowledgement's latency and when its upload was sent.
            let mut latencies: Vec<(Duration, Instant)> = Vec::new();
            let mut t = crate::now_ms() - DAY_MS;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                t += 1000;
                let started = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"time": crate::time(t), "value": 120}))
                    .send()
                    .await?;
                if r.status() != 201 {
                    bail!("upload answered {}", r.status());
                }
                latencies.push((started.elapsed(), started));
            }
            Ok::<_, anyhow::Error>(latencies)
        })
    };
    let (mut during, mut quiet, mut backups_took) = (Vec::new(), Vec::new(), Duration::ZERO);
    for _ in 0..STALL_ROUNDS {
        // During a backup.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = write(stop.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (args2, data2, out2) = (args.engine.clone(), data.to_owned(), out.to_owned());
        let backup_started = Instant::now();
        let backup_took = tokio::task::spawn_blocking(move || -> Result<Duration> {
            let started = Instant::now();
            let status = Command::new(&args2)
                .args(["backup", "--output", out2.to_str().context("path")?])
                .env("GLUCOSYNC_DATA_DIR", &data2)
                .env("GLUCOSYNC_LOG_LEVEL", "warn")
                .env("GLUCOSYNC_BACKUP_KEY", KEY)
                .stdout(std::process::Stdio::null())
                .status()?;
            if !status.success() {
                bail!("backup failed");
            }
            Ok(started.elapsed())
        })
        .await??;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let during_sent = writer.await??;
        // Where the slowest acknowledgements fell relative to the backup tells what caused them
        // (its start, its snapshot, its end).
        let mut slowest = during_sent.clone();
        slowest.sort_by_key(|(latency, _)| std::cmp::Reverse(*latency));
        for (latency, sent) in slowest.iter().take(3) {
            let at = sent.saturating_duration_since(backup_started).as_secs_f64()
                - backup_started
                    .saturating_duration_since(*sent)
                    .as_secs_f64();
            eprintln!(
            "  slow upload: {:.1} ms, sent {at:.2} s after the backup started (it took {:.2} s)",
            latency.as_secs_f64() * 1000.0,
            backup_took.as_secs_f64()
        );
        }
        during.extend(during_sent.into_iter().map(|(l, _)| l));
        // As long without one.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = write(stop.clone());
        tokio::time::sleep(backup_took).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        quiet.extend(writer.await??.into_iter().map(|(l, _)| l));
        backups_took += backup_took;
    }
    during.sort();
    quiet.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (max_during, max_quiet) = (
        during.last().copied().unwrap_or_default(),
        quiet.last().copied().unwrap_or_default(),
    );
    row(
        &format!(
            "single uploads during {STALL_ROUNDS} backups ({} acks)",
            during.len()
        ),
        format!("max {:.1} ms", ms(max_during)),
        format!("no backup: max {:.1} ms", ms(max_quiet)),
        Some(ms(max_during) / ms(max_quiet)),
    );
    let p99 = |v: &[Duration]| crate::percentile(v, 0.99);
    row(
        "  the same, p99",
        format!("{:.1} ms", ms(p99(&during))),
        format!("no backup: {:.1} ms", ms(p99(&quiet))),
        Some(ms(p99(&during)) / ms(p99(&quiet))),
    );
    row(
        "  uploads acknowledged per second",
        format!("{:.0}", during.len() as f64 / backups_took.as_secs_f64()),
        format!(
            "no backup: {:.0}",
            quiet.len() as f64 / backups_took.as_secs_f64()
        ),
        Some(during.len() as f64 / quiet.len().max(1) as f64),
    );
    drop(engine);
    Ok(())
}
