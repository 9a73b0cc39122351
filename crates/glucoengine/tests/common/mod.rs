//! Runs the real `glucoengine` binary as a child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "violet tractor harbour sings";

pub struct Engine {
    pub child: Child,
    pub base: String,
    /// Everything the process wrote to stdout and stderr so far.
    pub output: Arc<Mutex<String>>,
    /// The threads copying stdout and stderr into `output`.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Engine {
    /// Starts `glucoengine serve` on a free port with JSON logs at `level`, data in `dir` and
    /// the database of `backend`.
    pub fn start(dir: &Path, level: &str, backend: &Backend) -> Engine {
        Engine::start_with_env(dir, level, backend, &[])
    }

    /// As `start`, with more environment variables.
    pub fn start_with_env(
        dir: &Path,
        level: &str,
        backend: &Backend,
        env: &[(&str, &str)],
    ) -> Engine {
        let mut child = Command::new(env!("CARGO_BIN_EXE_glucoengine"))
            .arg("serve")
            .env_clear()
            .envs(backend.env())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GLUCOSYNC_LISTEN", "127.0.0.1:0")
            .env("GLUCOSYNC_DATA_DIR", dir)
            .env("GLUCOSYNC_LOG_FORMAT", "json")
            .env("GLUCOSYNC_LOG_LEVEL", level)
            // These tests put one person's load at thousands of requests a second; the API
            // rate limit has tests of its own (server/tests/redis.rs).
            .env("GLUCOSYNC_API_RATE_LIMIT_PER_MINUTE", "100000000")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start glucoengine");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let out = output.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut o) = out.lock() {
                        o.push_str(&line);
                        o.push('\n');
                    }
                }
            }));
        }
        let started = Instant::now();
        let base = loop {
            let text = output.lock().expect("lock").clone();
            if let Some(line) = text.lines().find(|l| l.contains("GlucoEngine ready")) {
                let v: serde_json::Value = serde_json::from_str(line).expect("json log line");
                break format!("http://{}", v["listen"].as_str().expect("listen field"));
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("glucoengine exited with {status}: {text}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "not ready in time: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Engine {
            child,
            base,
            output,
            readers,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn output(&self) -> String {
        self.output.lock().expect("lock").clone()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().expect("wait");
        // The pipes close with the process: the readers then have every line.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }
}

/// The database the binary under test uses: the embedded default, or a fresh PostgreSQL
/// database (dropped with this value) when `GS_TEST_BACKEND=postgres`.
pub struct Backend(Option<glucosync_testing::TestDatabase>);

impl Backend {
    pub fn new() -> Backend {
        Backend(
            glucosync_testing::backend_is_postgres().then(glucosync_testing::TestDatabase::create),
        )
    }

    /// The embedded database, whatever `GS_TEST_BACKEND` says (for what only it has).
    pub fn embedded() -> Backend {
        Backend(None)
    }

    pub fn env(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|db| ("GLUCOSYNC_DATABASE_URL".to_string(), db.url.clone()))
            .collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs up (if needed) and logs in; returns the session token.
pub async fn session(client: &reqwest::Client, engine: &Engine, email: &str) -> String {
    let _ = client
        .post(engine.url("/api/v1/auth/signup"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("signup");
    let r = client
        .post(engine.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert!(r.status().is_success());
    let v: serde_json::Value = r.json().await.expect("json");
    v["token"].as_str().expect("token").to_owned()
}

/// A person with a Nightscout site on the engine: their session, the site's base URL and its
/// API secret.
pub struct Site {
    pub session: String,
    pub base: String,
    pub secret: String,
}

/// Signs `email` up and logs in, and reads their Nightscout site.
pub async fn site(engine: &Engine, client: &reqwest::Client, email: &str) -> Site {
    let session = session(client, engine, email).await;
    let ns: serde_json::Value = client
        .get(engine.url("/api/v1/nightscout"))
        .bearer_auth(&session)
        .send()
        .await
        .expect("site")
        .json()
        .await
        .expect("json");
    Site {
        session,
        base: engine.url(ns["base_url"].as_str().expect("base")),
        secret: ns["api_secret"].as_str().expect("secret").to_owned(),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
