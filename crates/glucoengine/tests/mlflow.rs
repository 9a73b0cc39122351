//! Experiment tracking against a real MLflow tracking server (installed by `scripts/mlflow`
//! into a cache on first use, started here on a free port with a SQLite backend): evaluation
//! and population fits from the command line, personal fits from the server, each read back
//! through MLflow's REST API; and nothing breaks when MLflow is unreachable.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{now_ms, rfc3339, session, Backend, Engine};
use serde_json::{json, Value};

struct MlflowServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl MlflowServer {
    fn start() -> MlflowServer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mlflow");
        let out = Command::new(script)
            .arg("bin")
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/mlflow runs");
        assert!(out.status.success(), "scripts/mlflow bin failed");
        let bin = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        // Fixed-range ports below 32768 (above is the machine's range for outgoing
        // connections); another one if the first is taken.
        for _ in 0..5 {
            let port: u16 = rand::Rng::gen_range(&mut rand::thread_rng(), 21_000..29_000);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let dir = tempfile::tempdir().expect("temp dir");
            let child = Command::new(&bin)
                .args([
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--workers",
                    "1",
                ])
                .arg("--backend-store-uri")
                .arg(format!("sqlite:///{}/mlflow.db", dir.path().display()))
                .arg("--artifacts-destination")
                .arg(dir.path().join("artifacts"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, so that its gunicorn workers stop with it.
                .process_group(0)
                .spawn()
                .expect("start mlflow server");
            let mut server = MlflowServer {
                child,
                url: format!("http://127.0.0.1:{port}"),
                _dir: dir,
            };
            let started = Instant::now();
            loop {
                if reqwest::blocking_health(&server.url) {
                    return server;
                }
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // lost the port: try another
                }
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "MLflow not up in 120 s"
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        panic!("could not start an MLflow server");
    }

    async fn get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/api/2.0/{path}", self.url))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json")
    }

    /// The runs of an experiment (by name), newest first.
    async fn runs(&self, experiment: &str) -> Vec<Value> {
        let e = self
            .get(&format!(
                "mlflow/experiments/get-by-name?experiment_name={experiment}"
            ))
            .await;
        let Some(id) = e["experiment"]["experiment_id"].as_str() else {
            return Vec::new();
        };
        let r: Value = reqwest::Client::new()
            .post(format!("{}/api/2.0/mlflow/runs/search", self.url))
            .json(&json!({"experiment_ids": [id]}))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        r["runs"].as_array().cloned().unwrap_or_default()
    }

    async fn artifacts(&self, run_id: &str) -> Vec<String> {
        let list = self
            .get(&format!("mlflow/artifacts/list?run_id={run_id}"))
            .await;
        list["files"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|x| x["path"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // `mlflow server` runs gunicorn workers in its process group.
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on a pid we spawned; no memory effects.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGTERM);
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// A tiny blocking health probe (the test's own runtime is not running yet).
mod reqwest {
    pub use ::reqwest::*;
    pub fn blocking_health(url: &str) -> bool {
        use std::io::{Read, Write};
        let addr = url.trim_start_matches("http://");
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        if s.write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .is_err()
        {
            return false;
        }
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200")
    }
}

fn metric(run: &Value, key: &str) -> Option<f64> {
    run["data"]["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["key"] == key)?["value"]
        .as_f64()
}

fn glucoengine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glucoengine"))
        .args(args)
        .env_remove("GLUCOSYNC_MLFLOW_URL")
        .output()
        .expect("run glucoengine")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_and_fits_are_logged_to_mlflow_and_read_back() {
    let mlflow = MlflowServer::start();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../domain/tests/data");

    // An evaluation from the command line: parameters, every metric, the table as an artifact.
    let out = glucoengine(&["model", "eval", "--data", data, "--mlflow-url", &mlflow.url]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("MLflow: logged run"));
    let runs = mlflow.runs("glucosync-forecast-evaluation").await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["info"]["status"], "FINISHED");
    let rmse30 = metric(run, "personal.rmse.30min").expect("RMSE at 30 min");
    let ar2 = metric(run, "ar2.rmse.30min").expect("AR2 RMSE at 30 min");
    assert!(rmse30 <= 0.70 * ar2, "{rmse30} vs {ar2}");
    for key in [
        "personal.clarke_ab.30min",
        "personal.parkes_ab.60min",
        "personal.interval_coverage.60min",
        "personal.lag_minutes.30min",
        "personal_glucose_only.rmse_vs_ar2.60min",
    ] {
        assert!(metric(run, key).is_some(), "{key}");
    }
    let params = run["data"]["params"].as_array().expect("params");
    assert!(params
        .iter()
        .any(|p| p["key"] == "people" && p["value"] == "9"));
    let run_id = run["info"]["run_id"].as_str().expect("run id");
    let files = mlflow.artifacts(run_id).await;
    assert!(
        files.contains(&"evaluation.tsv".to_owned())
            && files.contains(&"population.json".to_owned()),
        "{files:?}"
    );

    // A population fit: the model is the artifact.
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("population.json");
    let out = glucoengine(&[
        "model",
        "fit-population",
        "--data",
        data,
        "--output",
        output.to_str().expect("utf-8"),
        "--mlflow-url",
        &mlflow.url,
    ]);
    assert!(out.status.success(), "{out:?}");
    let runs = mlflow.runs("glucosync-forecast-population").await;
    assert_eq!(runs.len(), 1);
    let files = mlflow
        .artifacts(runs[0]["info"]["run_id"].as_str().expect("id"))
        .await;
    assert_eq!(files, vec!["population.json".to_owned()]);

    // A personal fit in the server, triggered by an uploaded history.
    let backend = Backend::new();
    let engine_dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::start_with_env(
        engine_dir.path(),
        "warn,glucosync_server=info,glucosync_server::telemetry=warn",
        &backend,
        &[("GLUCOSYNC_MLFLOW_URL", &mlflow.url)],
    );
    let client = ::reqwest::Client::new();
    let token = session(&client, &engine, "ml@example.org").await;
    let csv = std::fs::read_to_string(format!("{data}/adult-002.csv")).expect("csv");
    let end = now_ms() - 60_000;
    let rows: Vec<(i64, f64, f64, f64)> = csv
        .lines()
        .skip(1)
        .take(4 * 288)
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split(',').collect();
            let t = end - (4 * 288 - 1 - i as i64) * 300_000;
            (
                t,
                f[1].parse().expect("cgm"),
                f[3].parse().expect("carbs"),
                f[4].parse().expect("bolus"),
            )
        })
        .collect();
    let treatments: Vec<Value> = rows
        .iter()
        .flat_map(|&(t, _, carbs, bolus)| {
            let mut v = Vec::new();
            if carbs > 0.0 {
                v.push(json!({"time": rfc3339(t), "kind": "carbs", "grams": carbs}));
            }
            if bolus > 0.0 {
                v.push(json!({"time": rfc3339(t), "kind": "insulin", "units": bolus, "insulin_type": "bolus"}));
            }
            v
        })
        .collect();
    let r = client
        .post(engine.url("/api/v1/treatments"))
        .bearer_auth(&token)
        .json(&treatments)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "{}", r.status());
    let readings: Vec<Value> = rows
        .iter()
        .map(|&(t, v, _, _)| json!({"time": rfc3339(t), "value": v}))
        .collect();
    let r = client
        .post(engine.url("/api/v1/readings"))
        .bearer_auth(&token)
        .json(&readings)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "{}", r.status());
    let started = Instant::now();
    let run = loop {
        // Finished: the run is created first, its metrics and artifact follow.
        if let Some(run) = mlflow
            .runs("glucosync-forecast-personal")
            .await
            .into_iter()
            .find(|r| r["info"]["status"] == "FINISHED")
        {
            break run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no finished personal fit in MLflow after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        run["info"]["run_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("gs-ridge-1/personal/")),
        "{run}"
    );
    assert!(metric(&run, "training_rows").is_some_and(|n| n > 800.0));
    let tags = run["data"]["tags"].as_array().expect("tags");
    let person = tags
        .iter()
        .find(|t| t["key"] == "person")
        .expect("pseudonym tag");
    assert!(!person["value"]
        .as_str()
        .unwrap_or("")
        .contains("ml@example.org"));
    let files = mlflow
        .artifacts(run["info"]["run_id"].as_str().expect("id"))
        .await;
    assert_eq!(files, vec!["model.json".to_owned()]);
}

#[test]
fn an_unreachable_mlflow_is_reported_and_nothing_fails() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../domain/tests/data");
    let out = glucoengine(&[
        "model",
        "eval",
        "--data",
        data,
        "--mlflow-url",
        "http://127.0.0.1:9",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("personal_glucose_only"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MLflow unreachable"));
}
