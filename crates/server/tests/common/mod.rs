//! Starts the real server on port 0 with its own fresh database, and talks to it over HTTP.
#![allow(dead_code)]

use std::net::SocketAddr;

use glucosync_server::config::Config;
use glucosync_server::Server;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

pub struct TestServer {
    pub addr: SocketAddr,
    pub database_url: String,
    pub metrics_addr: Option<SocketAddr>,
    pub client: Client,
    /// The server's own store, for writing behind its back (as another replica would).
    pub store: std::sync::Arc<dyn glucosync_store::Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    _database: Option<glucosync_testing::TestDatabase>,
}

pub const PASSWORD: &str = "violet tractor harbour sings";

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server on a fresh database: SQLite in a temporary directory, or a new PostgreSQL
    /// database when `GS_TEST_BACKEND=postgres`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env = vec![
            ("GLUCOSYNC_LISTEN".to_string(), "127.0.0.1:0".to_string()),
            (
                "GLUCOSYNC_DATA_DIR".to_string(),
                dir.path().display().to_string(),
            ),
        ];
        let database =
            glucosync_testing::backend_is_postgres().then(glucosync_testing::TestDatabase::create);
        if let Some(db) = &database {
            env.push(("GLUCOSYNC_DATABASE_URL".to_string(), db.url.clone()));
        }
        let mut config = Config::load(None, env).expect("config");
        adjust(&mut config);
        let database_url = config.database_url.expose().to_owned();
        let server = Server::build(config).await.expect("server starts");
        let addr = server.local_addr();
        let metrics_addr = server.metrics_addr();
        let store = server.store();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        TestServer {
            addr,
            database_url,
            metrics_addr,
            client: Client::new(),
            store,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
            _database: database,
        }
    }

    /// A second replica on the same database as `other` (same SQLite file or PostgreSQL
    /// database), as in a cluster.
    pub async fn start_sharing(other: &TestServer, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let url = other.database_url.clone();
        Self::start_with(move |c| {
            c.database_url = glucosync_server::config::SecretUrl::new(url);
            adjust(c);
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn req(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        let r = self.client.request(method, self.url(path));
        if token.is_empty() {
            r
        } else {
            r.bearer_auth(token)
        }
    }

    /// Signs up and logs in; returns the session token.
    pub async fn user(&self, email: &str) -> String {
        let r = self
            .client
            .post(self.url("/api/v1/auth/signup"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("signup");
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap_or_default()
        );
        self.login(email, PASSWORD).await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.expect("json")["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Creates a personal API token with `scopes` using a session token.
    pub async fn api_token(&self, session: &str, scopes: &[&str]) -> (i64, String) {
        let r = self
            .req(Method::POST, "/api/v1/tokens", session)
            .json(&json!({"name": "test", "scopes": scopes}))
            .send()
            .await
            .expect("create token");
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.expect("json");
        (
            v["id"].as_i64().expect("id"),
            v["token"].as_str().expect("token").to_owned(),
        )
    }

    /// The person's Nightscout site (`base_url`, `api_secret`, ...), read with their session.
    pub async fn nightscout_site(&self, session: &str) -> Value {
        self.req(Method::GET, "/api/v1/nightscout", session)
            .send()
            .await
            .expect("site")
            .json()
            .await
            .expect("json")
    }

    /// `owner` invites `email` (whose session is `follower`) as `role`, and they accept;
    /// returns the owner's id.
    pub async fn share(&self, owner: &str, follower: &str, email: &str, role: &str) -> i64 {
        let invite: Value = self
            .req(Method::POST, "/api/v1/shares", owner)
            .json(&json!({"email": email, "role": role}))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let share: Value = self
            .req(Method::POST, "/api/v1/shares/accept", follower)
            .json(&json!({"invite_token": invite["invite_token"]}))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        share["owner_id"].as_i64().expect("owner")
    }

    /// Stops the server but keeps its database, for a next server on the same data (started
    /// with `start_with` and this `database_url`).
    pub async fn stop_keeping_data(mut self) -> (String, Box<dyn std::any::Any>) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let keep: Box<dyn std::any::Any> = Box::new((
            std::mem::replace(&mut self._dir, tempfile::tempdir().expect("temp dir")),
            self._database.take(),
        ));
        (self.database_url.clone(), keep)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Asserts an error response is problem+json with `code`; returns the body.
pub async fn expect_problem(r: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status, "wrong status for expected {code}");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(ct, "application/problem+json");
    let body: Value = r.json().await.expect("problem json");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

/// An RFC 3339 time `minutes_ago` minutes before now, on a 5-minute boundary.
pub fn minutes_ago(minutes: i64) -> String {
    let now = chrono::Utc::now().timestamp_millis();
    let t = now - now.rem_euclid(300_000) - minutes * 60_000;
    chrono::DateTime::from_timestamp_millis(t)
        .expect("valid")
        .to_rfc3339()
}
