//! Backups of the embedded database against a real S3 server (s3s-fs, `scripts/s3`) and a
//! directory, with the real binary (docs/data-ownership.md): a backup taken during a
//! continuous write load restores into a new data directory with every reading acknowledged
//! before it; a damaged backup or a wrong key is refused and restores nothing; retention
//! deletes exactly the expired backups; the server's schedule takes backups and reports them
//! in its metrics.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glucosync_testing::s3::{S3Server, ACCESS_KEY, SECRET_KEY};

const KEY: &str = "a passphrase for the test backups";

fn s3_env(s3: &S3Server) -> Vec<(String, String)> {
    vec![
        ("GLUCOSYNC_BACKUP_KEY".into(), KEY.into()),
        ("GLUCOSYNC_S3_ENDPOINT".into(), s3.endpoint()),
        ("GLUCOSYNC_S3_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
        ("GLUCOSYNC_S3_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
    ]
}

fn glucoengine(dir: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glucoengine"))
        .args(args)
        .env_clear()
        .env("GLUCOSYNC_DATA_DIR", dir)
        .env("GLUCOSYNC_LOG_LEVEL", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("run glucoengine")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// The readings of an account in a data directory, as (time, value), via the CLI's export.
fn readings(dir: &Path, email: &str) -> Vec<(String, f64)> {
    let out = glucoengine(dir, &["export", "--user", email], &[]);
    assert!(out.status.success(), "{out:?}");
    let export: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    export["readings"]
        .as_array()
        .expect("readings")
        .iter()
        .map(|r| {
            let time = chrono::DateTime::parse_from_rfc3339(r["time"].as_str().expect("time"))
                .expect("time")
                .with_timezone(&chrono::Utc);
            (
                common::rfc3339(time.timestamp_millis()),
                r["value_mgdl"].as_f64().expect("value"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_reading_and_damage_is_refused() {
    let s3 = S3Server::start(&["backups"]);
    let env = s3_env(&s3);
    let live = tempfile::tempdir().expect("temp dir");
    let engine = common::Engine::start_with_env(
        live.path(),
        "info",
        &common::Backend::embedded(),
        &[("GLUCOSYNC_BACKUP_KEY", KEY)],
    );
    let client = reqwest::Client::new();
    let token = common::session(&client, &engine, "load@example.org").await;
    // A history first, so the snapshot is more than a few pages.
    let start = common::now_ms() - 30 * 86_400_000;
    for day in 0..30 {
        let batch: Vec<_> = (0..288)
            .map(|i| {
                serde_json::json!({
                    "time": common::rfc3339(start + day * 86_400_000 + i * 300_000),
                    "value": 80 + (i % 120),
                })
            })
            .collect();
        let r = client
            .post(engine.url("/api/v1/readings"))
            .bearer_auth(&token)
            .json(&batch)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 201);
    }
    // Then a writer that never stops while the backup runs: one reading at a time, each
    // acknowledged (201) before the next, with the moment it was acknowledged.
    let acknowledged: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, url, token) = (
            client.clone(),
            engine.url("/api/v1/readings"),
            token.clone(),
        );
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        tokio::spawn(async move {
            let mut t = common::now_ms() - 3_600_000;
            while !stop.load(Ordering::Relaxed) {
                t += 1000;
                let time = common::rfc3339(t);
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"time": time, "value": 150}))
                    .send()
                    .await
                    .expect("upload");
                assert_eq!(r.status(), 201);
                acknowledged
                    .lock()
                    .expect("lock")
                    .push((time, common::now_ms()));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backup_started = common::now_ms();
    let out = {
        let (dir, env) = (live.path().to_owned(), env.clone());
        tokio::task::spawn_blocking(move || {
            glucoengine(&dir, &["backup", "--output", "s3://backups/nightly"], &env)
        })
        .await
        .expect("backup")
    };
    let backup_ended = common::now_ms();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert!(out.status.success(), "{out:?}");
    let location = stdout(&out);
    assert!(
        location.starts_with("s3://backups/nightly/glucosync-backup-"),
        "{location}"
    );
    let acked = acknowledged.lock().expect("lock").clone();
    let during = acked
        .iter()
        .filter(|(_, at)| (backup_started..backup_ended).contains(at))
        .count();
    assert!(
        during > 0,
        "the writer was not stalled for the backup's length"
    );
    let objects = s3.objects("backups", "nightly");
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert!(objects[1].ends_with(".gsb.sha256"), "{objects:?}");

    // Restore into a new data directory.
    let restored = tempfile::tempdir().expect("temp dir");
    let out = glucoengine(restored.path(), &["restore", &location], &env);
    assert!(out.status.success(), "{out:?}");
    let have: std::collections::HashSet<String> = readings(restored.path(), "load@example.org")
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert!(have.len() >= 30 * 288, "{}", have.len());
    let before: Vec<&String> = acked
        .iter()
        .filter(|(_, at)| *at < backup_started)
        .map(|(t, _)| t)
        .collect();
    assert!(!before.is_empty());
    let missing: Vec<_> = before.iter().filter(|t| !have.contains(**t)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing: {missing:?}"
    );
    // A restore never overwrites a database.
    let out = glucoengine(restored.path(), &["restore", &location], &env);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty data directory"));

    // The wrong key opens nothing.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let mut wrong = env.clone();
    wrong[0].1 = "not the passphrase it was taken with".into();
    let out = glucoengine(elsewhere.path(), &["restore", &location], &wrong);
    assert!(!out.status.success(), "{out:?}");
    assert!(!elsewhere.path().join("glucosync.db").exists());

    // A damaged backup (one byte changed in storage) is refused before anything is written.
    let key = location.trim_start_matches("s3://backups/");
    let stored = s3.object_path("backups", key);
    let mut bytes = std::fs::read(&stored).expect("stored object");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&stored, bytes).expect("damage");
    let out = glucoengine(elsewhere.path(), &["restore", &location], &env);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SHA-256") && err.contains("damaged"), "{err}");
    assert!(!elsewhere.path().join("glucosync.db").exists());
    drop(engine);
}

#[test]
fn retention_deletes_exactly_the_expired_backups() {
    let s3 = S3Server::start(&["backups"]);
    let env = {
        let mut env = s3_env(&s3);
        env.push(("GLUCOSYNC_BACKUP_RETENTION_DAYS".into(), "30".into()));
        env
    };
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(glucoengine(dir.path(), &["migrate"], &[]).status.success());
    // Backups taken 40, 31, 29 and 1 days ago, with their checksums, and a file of the
    // operator's, put there through storage.
    let day = 86_400_000;
    let now = common::now_ms();
    let name = |days: i64| {
        let t = chrono::DateTime::from_timestamp_millis(now - days * day).expect("time");
        format!("glucosync-backup-{}.gsb", t.format("%Y%m%dT%H%M%S%.3fZ"))
    };
    let prefix = s3.root.join("backups").join("keep");
    std::fs::create_dir_all(&prefix).expect("prefix");
    for days in [40, 31, 29, 1] {
        std::fs::write(prefix.join(name(days)), b"old").expect("object");
        std::fs::write(prefix.join(format!("{}.sha256", name(days))), b"x").expect("object");
    }
    std::fs::write(prefix.join("README.txt"), b"the operator's").expect("object");
    let out = glucoengine(
        dir.path(),
        &["backup", "--output", "s3://backups/keep"],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&name(40)) && stderr.contains(&name(31)),
        "{stderr}"
    );
    let left = s3.objects("backups", "keep");
    let new = stdout(&out).rsplit('/').next().expect("name").to_owned();
    let mut expected = vec![
        "README.txt".to_owned(),
        name(29),
        format!("{}.sha256", name(29)),
        name(1),
        format!("{}.sha256", name(1)),
        new.clone(),
        format!("{new}.sha256"),
    ];
    expected.sort();
    assert_eq!(left, expected);
}

#[tokio::test]
async fn the_server_takes_scheduled_backups_into_a_directory_and_reports_them() {
    let live = tempfile::tempdir().expect("temp dir");
    let target = tempfile::tempdir().expect("temp dir");
    let target_path = target.path().display().to_string();
    let engine = common::Engine::start_with_env(
        live.path(),
        "info",
        &common::Backend::embedded(),
        &[
            ("GLUCOSYNC_BACKUP_KEY", KEY),
            ("GLUCOSYNC_BACKUP_OUTPUT", &target_path),
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let backups = loop {
        let names: Vec<String> = std::fs::read_dir(target.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".gsb.sha256"))
            .collect();
        if !names.is_empty() {
            break names;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no backup: {}",
            engine.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(backups.len(), 1);
    let metrics = reqwest::get(engine.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
    };
    assert!(value("glucosync_backup_last_success_timestamp_seconds") > 1.7e9);
    assert!(value("glucosync_backup_size_bytes") > 100.0);
    assert_eq!(value("glucosync_backup_failures_total"), 0.0);
    // The backup restores.
    let restored = tempfile::tempdir().expect("temp dir");
    let file = target
        .path()
        .join(backups[0].trim_end_matches(".sha256"))
        .display()
        .to_string();
    let out = glucoengine(
        restored.path(),
        &["restore", &file],
        &[("GLUCOSYNC_BACKUP_KEY".into(), KEY.into())],
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_directory_backup_leaves_the_backup_and_its_checksum_and_nothing_else() {
    let env = vec![("GLUCOSYNC_BACKUP_KEY".to_owned(), KEY.to_owned())];
    let backups = tempfile::tempdir().expect("temp dir");
    let into = backups.path().join("nightly");
    // No database to back up: refused, and nothing written.
    let empty = tempfile::tempdir().expect("temp dir");
    let out = glucoengine(
        empty.path(),
        &["backup", "--output", into.to_str().expect("path")],
        &env,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no database"), "{err}");
    assert!(!into.exists());

    let dir = tempfile::tempdir().expect("temp dir");
    assert!(glucoengine(dir.path(), &["migrate"], &[]).status.success());
    let out = glucoengine(
        dir.path(),
        &["backup", "--output", into.to_str().expect("path")],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let name = stdout(&out).rsplit('/').next().expect("name").to_owned();
    let mut left: Vec<String> = std::fs::read_dir(&into)
        .expect("backups")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec![name.clone(), format!("{name}.sha256")]);
    // The checksum is in sha256sum's format, so an operator can check it with that.
    let check = Command::new("sha256sum")
        .args(["-c", &format!("{name}.sha256")])
        .current_dir(&into)
        .output()
        .expect("run sha256sum");
    assert!(check.status.success(), "{check:?}");
    let restored = tempfile::tempdir().expect("temp dir");
    let out = glucoengine(
        restored.path(),
        &["restore", into.join(&name).to_str().expect("path")],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
}
