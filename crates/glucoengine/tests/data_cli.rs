//! `glucoengine import`, `export` and `user delete` on the real binary (SQLite; the same
//! code runs behind the HTTP API, which is tested on both backends).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../domain/tests/fixtures/import/"
);

fn glucoengine(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_glucoengine"))
        .args(args)
        .env_clear()
        .env("GLUCOSYNC_DATA_DIR", dir)
        .env("GLUCOSYNC_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run glucoengine");
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

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn create(dir: &Path, email: &str) {
    ok(glucoengine(
        dir,
        &["user", "create", "--email", email, "--password-stdin"],
        Some("violet tractor harbour sings\n"),
    ));
}

fn export(dir: &Path, email: &str) -> serde_json::Value {
    let text = ok(glucoengine(dir, &["export", "--user", email], None));
    serde_json::from_str(&text).expect("the export is JSON")
}

#[test]
fn import_export_all_and_restore_into_an_empty_data_directory() {
    let first = tempfile::tempdir().expect("temp dir");
    create(first.path(), "ana@example.org");
    create(first.path(), "ben@example.org");
    let clarity = format!("{FIXTURES}clarity_mgdl.csv");
    let report = ok(glucoengine(
        first.path(),
        &[
            "import",
            "--user",
            "ana@example.org",
            "--format",
            "clarity",
            "--time-zone",
            "America/New_York",
            &clarity,
        ],
        None,
    ));
    assert!(report.contains("readings 16 new"), "{report}");
    assert!(
        report.contains("10 skipped")
            && report.contains("skipped 7: a row describing the export (Alert)"),
        "{report}"
    );
    let libre = format!("{FIXTURES}libreview_mmol.csv");
    ok(glucoengine(
        first.path(),
        &[
            "import",
            "--user",
            "ben@example.org",
            "--format",
            "libreview",
            &libre,
        ],
        None,
    ));
    // A malformed file: an error naming the line, exit status 1, nothing imported.
    let broken = first.path().join("broken.csv");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&clarity)
            .expect("fixture")
            .replacen("2025-10-22T02:25:14", "soon", 1),
    )
    .expect("write");
    create(first.path(), "cy@example.org");
    let out = glucoengine(
        first.path(),
        &[
            "import",
            "--user",
            "cy@example.org",
            "--format",
            "clarity",
            broken.to_str().expect("path"),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing was imported") && err.contains("line 30"),
        "{err}"
    );
    assert_eq!(
        export(first.path(), "cy@example.org")["readings"],
        serde_json::json!([])
    );

    // The logical backup, restored into an empty data directory.
    let backup = tempfile::tempdir().expect("temp dir");
    let out = ok(glucoengine(
        first.path(),
        &[
            "export",
            "--all",
            "--output",
            backup.path().to_str().expect("path"),
        ],
        None,
    ));
    assert!(out.contains("exported 3 accounts"), "{out}");
    let second = tempfile::tempdir().expect("temp dir");
    let out = ok(glucoengine(
        second.path(),
        &["import", "--all", backup.path().to_str().expect("path")],
        None,
    ));
    assert!(out.contains("ana@example.org"), "{out}");
    for email in ["ana@example.org", "ben@example.org", "cy@example.org"] {
        let (before, after) = (export(first.path(), email), export(second.path(), email));
        for section in ["account", "readings", "treatments", "nightscout_documents"] {
            let strip = |v: &serde_json::Value| {
                let mut v = v[section].clone();
                if let Some(account) = v.as_object_mut() {
                    account.remove("created_at");
                }
                v
            };
            assert_eq!(strip(&before), strip(&after), "{email}: {section}");
        }
    }

    // Deletion by the operator: scheduled, or at once.
    let out = ok(glucoengine(
        second.path(),
        &["user", "delete", "ben@example.org"],
        None,
    ));
    assert!(out.contains("will be deleted on"), "{out}");
    let out = ok(glucoengine(
        second.path(),
        &["user", "delete", "ben@example.org", "--now"],
        None,
    ));
    assert!(out.contains("is deleted"), "{out}");
    let out = glucoengine(
        second.path(),
        &["export", "--user", "ben@example.org"],
        None,
    );
    assert!(!out.status.success());
}
