//! Real Nightscout clients against the real binary (docs/nightscout.md): py-nightscout 1.3.3
//! (Home Assistant's client) reads a site, and nightscout-connect 0.0.12's own modules upload
//! to one, from a Dexcom Share transform and from another Nightscout site. Both are installed
//! by `scripts/nightscout-clients`; the request bodies of other uploaders are in
//! `tests/nightscout/bodies/` (see its README).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{site, Backend, Engine, Site};
use glucosync_server::nightscout::access::sha1_hex;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/nightscout")
}

/// What `scripts/nightscout-clients <what>` prints (installing the clients on first use).
fn clients(what: &str) -> String {
    let out = Command::new(repo().join("scripts/nightscout-clients"))
        .arg(what)
        .output()
        .expect("run scripts/nightscout-clients");
    assert!(
        out.status.success(),
        "scripts/nightscout-clients {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn body(name: &str) -> Value {
    let text = std::fs::read_to_string(tests_dir().join("bodies").join(name)).expect("body");
    serde_json::from_str(&text).expect("json")
}

fn report(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Site {
    async fn post(&self, client: &reqwest::Client, path: &str, body: &Value) -> Value {
        let r = client
            .post(format!("{}{path}", self.base))
            .header("api-secret", sha1_hex(&self.secret))
            .json(body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.expect("json")
    }

    async fn get(&self, client: &reqwest::Client, path: &str) -> Value {
        client
            .get(format!("{}{path}", self.base))
            .header("api-secret", sha1_hex(&self.secret))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }
}

/// Readings 5 minutes apart ending a few minutes ago, as xDrip+ uploads them.
fn recent_sgvs(n: i64, start_value: i64) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let newest = now - now % 300_000 - 300_000;
    Value::Array(
        (0..n)
            .map(|i| {
                let date = newest - (n - 1 - i) * 300_000;
                json!({"device": "xDrip-DexcomG6", "date": date, "sgv": start_value + 2 * i,
                       "direction": "FortyFiveUp", "type": "sgv", "filtered": 120000.5,
                       "unfiltered": 121000, "rssi": 100, "noise": 1})
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_nightscout_reads_a_site_with_the_secret_and_with_a_token() {
    let python = clients("python");
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::new();
    let engine = Engine::start(dir.path(), "info", &backend);
    let client = reqwest::Client::new();
    let ana = site(&engine, &client, "ana@example.org").await;
    ana.post(&client, "/api/v1/entries", &recent_sgvs(12, 100))
        .await;
    ana.post(&client, "/api/v1/treatments", &body("loop_carbs.json"))
        .await;
    ana.post(&client, "/api/v1/treatments", &body("loop_bolus.json"))
        .await;
    ana.post(
        &client,
        "/api/v1/devicestatus",
        &body("loop_devicestatus.json"),
    )
    .await;
    ana.post(
        &client,
        "/api/v1/devicestatus",
        &body("xdrip_devicestatus.json"),
    )
    .await;
    let profile = json!({"defaultProfile": "Default", "startDate": "2026-11-01T00:00:00.000Z",
        "created_at": "2026-11-01T00:00:00.000Z", "units": "mg/dl", "store": {"Default": {
        "dia": 5, "timezone": "ETC/GMT-1", "units": "mg/dl",
        "basal": [{"time": "00:00", "value": 0.85, "timeAsSeconds": 0}],
        "sens": [{"time": "00:00", "value": 40, "timeAsSeconds": 0}],
        "carbratio": [{"time": "00:00", "value": 10, "timeAsSeconds": 0}],
        "target_low": [{"time": "00:00", "value": 90, "timeAsSeconds": 0}],
        "target_high": [{"time": "00:00", "value": 110, "timeAsSeconds": 0}]}}});
    ana.post(&client, "/api/v1/profile", &profile).await;

    let script = tests_dir().join("py_nightscout_read.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&ana.base)
        .arg(&ana.secret)
        .output()
        .expect("run py-nightscout");
    assert!(out.status.success(), "{}", report(&out));
    let read: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let sgvs = read["sgvs"].as_array().expect("sgvs");
    assert_eq!(sgvs.len(), 10, "Nightscout's default count");
    assert_eq!(sgvs[0]["sgv"], 122, "newest first");
    assert_eq!(sgvs[0]["delta"], 2.0, "{read}");
    assert_eq!(sgvs[0]["date_from_dateString"], true);
    assert_eq!(sgvs[0]["direction"], "FortyFiveUp");
    assert_eq!(read["status"]["name"], "GlucoSync");
    let treatments = read["treatments"].as_array().expect("treatments");
    assert!(
        treatments
            .iter()
            .any(|t| t["eventType"] == "Carb Correction" && t["carbs"].is_number()),
        "{read}"
    );
    assert!(
        treatments.iter().any(|t| t["insulin"].is_number()),
        "{read}"
    );
    assert_eq!(read["profiles"][0]["store"][0]["dia"], 5.0, "{read}");
    assert!(
        read["devicestatus"]
            .as_object()
            .is_some_and(|d| !d.is_empty()),
        "{read}"
    );

    // A read token, the way py-nightscout can send one; and no credential at all.
    let token: Value = client
        .post(engine.url("/api/v1/tokens"))
        .bearer_auth(&ana.session)
        .json(&json!({"name": "home assistant", "scopes": ["read"]}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let token = token["token"].as_str().expect("token");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&ana.base)
        .arg("")
        .arg(token)
        .output()
        .expect("run py-nightscout");
    assert!(out.status.success(), "{}", report(&out));
    let out = Command::new(&python)
        .arg(&script)
        .arg(&ana.base)
        .arg("")
        .output()
        .expect("run py-nightscout");
    assert_eq!(out.status.code(), Some(3), "refused: {}", report(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightscout_connect_uploads_from_dexcom_share_and_from_another_site() {
    let connect_dir = clients("connect-dir");
    let driver = tests_dir().join("connect_upload.js");
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::new();
    let engine = Engine::start(dir.path(), "info", &backend);
    let client = reqwest::Client::new();
    let ana = site(&engine, &client, "ana@example.org").await;
    let bo = site(&engine, &client, "bo@example.org").await;

    // Dexcom Share records through the package's transform and its Nightscout output, the
    // newest an hour ago (newer readings come from Bo's site below).
    let an_hour_ago = (chrono::Utc::now().timestamp_millis() - 3_600_000).to_string();
    let dexcom = || {
        Command::new("node")
            .arg(&driver)
            .arg(&connect_dir)
            .arg("dexcomshare")
            .arg(&ana.base)
            .arg(&ana.secret)
            .arg("6")
            .env("GS_CONNECT_END_MS", &an_hour_ago)
            .output()
            .expect("run nightscout-connect")
    };
    let out = dexcom();
    assert!(out.status.success(), "{}", report(&out));
    let entries = ana.get(&client, "/api/v1/entries.json?count=100").await;
    assert_eq!(entries.as_array().map(Vec::len), Some(6), "{entries}");
    // The same again (a bridge polling twice) stores nothing new.
    let out = dexcom();
    assert!(out.status.success(), "{}", report(&out));
    let entries = ana.get(&client, "/api/v1/entries.json?count=100").await;
    assert_eq!(entries.as_array().map(Vec::len), Some(6));

    // Bo's site as the source (nightscout-connect reads sources anonymously: Bo turns public
    // read on), Ana's as the output: it copies what is newer than Ana's newest entry.
    bo.post(&client, "/api/v1/entries", &recent_sgvs(4, 150))
        .await;
    let r = client
        .put(engine.url("/api/v1/nightscout"))
        .bearer_auth(&bo.session)
        .json(&json!({"public_read": true}))
        .send()
        .await
        .expect("public read");
    assert!(r.status().is_success());
    let out = Command::new("node")
        .arg(&driver)
        .arg(&connect_dir)
        .arg("nightscout")
        .arg(&ana.base)
        .arg(&ana.secret)
        .arg(&bo.base)
        .output()
        .expect("run nightscout-connect");
    assert!(out.status.success(), "{}", report(&out));
    let entries = ana
        .get(&client, "/api/v1/entries/sgv.json?find[sgv][$gte]=150")
        .await;
    assert_eq!(
        entries.as_array().map(Vec::len),
        Some(4),
        "{entries}\n{}",
        report(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn android_aps_websocket_client_gets_changes_pushed_over_socket_io() {
    let prefix = clients("npm-prefix");
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::new();
    let engine = Engine::start(dir.path(), "info", &backend);
    let client = reqwest::Client::new();
    let ana = site(&engine, &client, "ana@example.org").await;
    let token: Value = client
        .post(engine.url("/api/v1/tokens"))
        .bearer_auth(&ana.session)
        .json(&json!({"name": "aaps", "scopes": ["read", "readings:write", "treatments:write"]}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    // The site's namespace (`/ns/<handle>/storage`), and the root's (`/storage`: a site
    // configured as the bare host, the token says whose).
    // The first also hears an urgent low on `/alarm`.
    for (site_url, alarm) in [(ana.base.clone(), "alarm"), (engine.url(""), "")] {
        let out = Command::new("node")
            .arg(tests_dir().join("socket_subscribe.js"))
            .arg(&prefix)
            .arg(&site_url)
            .arg(token["token"].as_str().expect("token"))
            .arg(sha1_hex(&ana.secret))
            .arg(alarm)
            .output()
            .expect("run socket.io-client");
        assert!(out.status.success(), "{site_url}: {}", report(&out));
        let result: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(result["ack"]["success"], true, "{result}");
        assert!(
            result["ack"]["collections"]
                .as_array()
                .is_some_and(|c| c.iter().any(|n| n == "entries")),
            "{result}"
        );
        assert_eq!(result["refused"]["success"], false);
    }
}

/// Runs `socket_revoked.js`: subscribes with `token`, then `DELETE revoke_path` with
/// `session`; both sockets must be disconnected with nothing sent after the revocation.
fn socket_subscription_ends(
    prefix: &str,
    engine: &Engine,
    site: &Site,
    token: &str,
    revoke_path: &str,
    session: &str,
    exhaust: Option<u32>,
) {
    let out = Command::new("node")
        .arg(tests_dir().join("socket_revoked.js"))
        .arg(prefix)
        .arg(&site.base)
        .arg(token)
        .arg(sha1_hex(&site.secret))
        .arg(engine.url(revoke_path))
        .arg(session)
        .args(exhaust.map(|n| n.to_string()))
        .output()
        .expect("run socket.io-client");
    assert!(out.status.success(), "{revoke_path}: {}", report(&out));
}

async fn api_token(engine: &Engine, client: &reqwest::Client, session: &str) -> (i64, String) {
    let token: Value = client
        .post(engine.url("/api/v1/tokens"))
        .bearer_auth(session)
        .json(&json!({"name": "aaps", "scopes": ["read"]}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    (
        token["id"].as_i64().expect("id"),
        token["token"].as_str().expect("token").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_subscribers_are_disconnected_when_their_token_or_share_is_revoked() {
    let prefix = clients("npm-prefix");
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::new();
    // A low per-person limit, which Ben's token uses up before his share ends.
    let engine = Engine::start_with_env(
        dir.path(),
        "info",
        &backend,
        &[("GLUCOSYNC_API_RATE_LIMIT_PER_MINUTE", "40")],
    );
    let client = reqwest::Client::new();
    let ana = site(&engine, &client, "ana@example.org").await;

    // Ana's own token, revoked.
    let (id, token) = api_token(&engine, &client, &ana.session).await;
    let revoke = format!("/api/v1/tokens/{id}");
    socket_subscription_ends(&prefix, &engine, &ana, &token, &revoke, &ana.session, None);

    // Ben, her caregiver, reads her site with his own token until she ends the share, having
    // used up his requests first; his subscription is in her access log.
    let ben = site(&engine, &client, "ben@example.org").await;
    let (_, bens_token) = api_token(&engine, &client, &ben.session).await;
    let invite: Value = client
        .post(engine.url("/api/v1/shares"))
        .bearer_auth(&ana.session)
        .json(&json!({"email": "ben@example.org", "role": "caregiver"}))
        .send()
        .await
        .expect("invite")
        .json()
        .await
        .expect("json");
    let share: Value = client
        .post(engine.url("/api/v1/shares/accept"))
        .bearer_auth(&ben.session)
        .json(&json!({"invite_token": invite["invite_token"]}))
        .send()
        .await
        .expect("accept")
        .json()
        .await
        .expect("json");
    let revoke = format!("/api/v1/shares/{}", share["id"].as_i64().expect("share id"));
    socket_subscription_ends(
        &prefix,
        &engine,
        &ana,
        &bens_token,
        &revoke,
        &ana.session,
        Some(45),
    );
    let log: Value = client
        .get(engine.url("/api/v1/access-log"))
        .bearer_auth(&ana.session)
        .send()
        .await
        .expect("access log")
        .json()
        .await
        .expect("json");
    let socket_reads: Vec<&Value> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|r| r["what"] == "nightscout.socket")
        .collect();
    assert_eq!(socket_reads.len(), 2, "storage and alarm: {log}");
    assert!(
        socket_reads
            .iter()
            .all(|r| r["follower_email"] == "ben@example.org"),
        "{log}"
    );
}
