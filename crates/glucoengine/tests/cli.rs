//! The operator command line on the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

mod common;

thread_local! {
    /// This test's database; the test runs on one thread.
    static BACKEND: common::Backend = common::Backend::new();
}

fn glucoengine(
    dir: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glucoengine"));
    cmd.args(args)
        .env_clear()
        .env("GLUCOSYNC_DATA_DIR", dir)
        .env("GLUCOSYNC_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run glucoengine");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn user_management_migrate_and_configuration_commands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();

    let out = glucoengine(d, &["migrate"], None, &[]);
    assert!(out.status.success(), "{out:?}");
    // "database at migration N of N": every migration this binary knows is applied.
    let text = stdout(&out);
    let numbers: Vec<&str> = text
        .trim()
        .trim_start_matches("database at migration ")
        .split(" of ")
        .collect();
    assert!(
        numbers.len() == 2 && numbers[0] == numbers[1] && numbers[0].parse::<u32>().is_ok(),
        "{text}"
    );

    let out = glucoengine(
        d,
        &[
            "user",
            "create",
            "--email",
            "ops@example.org",
            "--password-stdin",
        ],
        Some("violet tractor harbour sings\n"),
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("ops@example.org") && stdout(&out).contains("admin"),
        "first account is admin: {}",
        stdout(&out)
    );

    let out = glucoengine(
        d,
        &[
            "user",
            "create",
            "--email",
            "weak@example.org",
            "--password-stdin",
        ],
        Some("password1\n"),
        &[],
    );
    assert!(!out.status.success(), "weak password refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password"),
        "{out:?}"
    );

    let out = glucoengine(
        d,
        &["user", "create", "--email", "nurse@example.org"],
        None,
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(!text.contains("admin"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("password: ") && l.len() > 20),
        "a generated password is printed once: {text}"
    );

    for (args, expect) in [
        (
            vec!["user", "promote", "nurse@example.org"],
            "is now an admin",
        ),
        (
            vec!["user", "demote", "nurse@example.org"],
            "no longer an admin",
        ),
        (vec!["user", "disable", "nurse@example.org"], "is disabled"),
        (vec!["user", "enable", "nurse@example.org"], "is enabled"),
    ] {
        let out = glucoengine(d, &args, None, &[]);
        assert!(
            out.status.success() && stdout(&out).contains(expect),
            "{args:?}: {out:?}"
        );
    }
    let out = glucoengine(d, &["user", "promote", "nobody@example.org"], None, &[]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no account"),
        "{out:?}"
    );

    // default-config prints a commented file that is itself valid configuration.
    let out = glucoengine(d, &["default-config"], None, &[]);
    let example = d.join("example.toml");
    std::fs::write(&example, stdout(&out)).expect("write");
    assert!(stdout(&out).contains("# "), "commented");
    let out = glucoengine(
        d,
        &["--config", example.to_str().expect("utf8"), "show-config"],
        None,
        &[],
    );
    assert!(out.status.success(), "{out:?}");

    // show-config layers the environment over the file and redacts secrets.
    let out = glucoengine(
        d,
        &["--config", example.to_str().expect("utf8"), "show-config"],
        None,
        &[
            ("GLUCOSYNC_DATABASE_URL", "postgres://app:s3cr3t-pw@db/gs"),
            ("GLUCOSYNC_LISTEN", "127.0.0.1:9999"),
        ],
    );
    let text = stdout(&out);
    assert!(
        text.contains("127.0.0.1:9999")
            && text.contains("postgres://app:***@db/gs")
            && !text.contains("s3cr3t-pw"),
        "{text}"
    );

    // A mistake in the configuration stops startup with a message that says how to fix it.
    let out = glucoengine(d, &["serve"], None, &[("GLUCOSYNC_LISTEN", "localhost")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:8080"),
        "{out:?}"
    );
}

#[test]
fn model_eval_prints_every_model_at_30_and_60_minutes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../domain/tests/data");
    let out = glucoengine(dir.path(), &["model", "eval", "--data", data], None, &[]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("9 people"), "{text}");
    for model in [
        "ar2",
        "last_value",
        "linear",
        "population",
        "personal",
        "personal_glucose_only",
    ] {
        assert_eq!(
            text.lines()
                .filter(|l| l.split_whitespace().next() == Some(model))
                .count(),
            2,
            "{model} at 30 and 60 minutes:\n{text}"
        );
    }
    // Glucose-only files (time + glucose) work too.
    let glucose_dir = dir.path().join("glucose-only");
    std::fs::create_dir(&glucose_dir).expect("mkdir");
    for name in ["adult-001", "child-002"] {
        let csv = std::fs::read_to_string(format!("{data}/{name}.csv")).expect("read");
        let mut out = String::from("time,glucose\n");
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            out.push_str(&format!("{},{}\n", f[0], f[1]));
        }
        std::fs::write(glucose_dir.join(format!("{name}.csv")), out).expect("write");
    }
    let out = glucoengine(
        dir.path(),
        &[
            "model",
            "eval",
            "--data",
            glucose_dir.to_str().expect("utf-8"),
        ],
        None,
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).starts_with("2 people"), "{}", stdout(&out));
    let out = glucoengine(
        dir.path(),
        &["model", "eval", "--data", "/nonexistent"],
        None,
        &[],
    );
    assert!(!out.status.success());
}

#[test]
fn healthcheck_exits_zero_only_while_the_server_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut engine = BACKEND.with(|b| common::Engine::start(dir.path(), "info", b));
    let health = engine.url("/health");
    let ok = glucoengine(dir.path(), &["healthcheck", "--url", &health], None, &[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout(&ok).contains("healthy"), "{}", stdout(&ok));
    // The default URL follows GLUCOSYNC_LISTEN, with an unspecified address asked on loopback.
    let port = health
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/health");
    let listen = format!("0.0.0.0:{port}");
    let by_listen = glucoengine(
        dir.path(),
        &["healthcheck"],
        None,
        &[("GLUCOSYNC_LISTEN", &listen)],
    );
    assert!(
        by_listen.status.success(),
        "{}",
        String::from_utf8_lossy(&by_listen.stderr)
    );
    // A route that is not 2xx, then no server at all.
    let missing = engine.url("/no-such-page");
    let not_found = glucoengine(dir.path(), &["healthcheck", "--url", &missing], None, &[]);
    assert_eq!(not_found.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("status 404"));
    engine.terminate();
    let down = glucoengine(
        dir.path(),
        &["healthcheck", "--url", &health, "--timeout", "1"],
        None,
        &[],
    );
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}
