//! The live WebSocket against the real server: own and followed streams, authorization and
//! origin checks, replay after a reconnect, revocation, slow consumers, and the exact count
//! of open sockets.

mod common;

use std::time::{Duration, Instant};

use common::{expect_problem, TestServer};
use glucosync_testing::live::{self, CloseCode, Socket};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MIN: i64 = 60_000;
const WITHIN: Duration = Duration::from_secs(10);

fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("valid")
        .to_rfc3339()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn open(s: &TestServer, token: &str, query: &str) -> Socket {
    live::open(&s.addr.to_string(), token, query, None).await
}

async fn next_of(socket: &mut Socket, types: &[&str]) -> Value {
    live::next_of(socket, types, WITHIN).await
}

async fn upload(s: &TestServer, token: &str, body: Value) {
    let r = s
        .req(Method::POST, "/api/v1/readings", token)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "{}", r.status());
}

/// An hour of readings ending `newest_age_ms` ago, 5 minutes apart.
fn hour_of_readings(value: f64, newest_age_ms: i64) -> Value {
    let newest = now_ms() - newest_age_ms;
    Value::Array(
        (0..13)
            .map(|i| json!({"time": at(newest - (12 - i) * 5 * MIN), "value": value}))
            .collect(),
    )
}

async fn open_sockets(s: &TestServer) -> i64 {
    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("glucosync_active_websocket_connections "))
        .and_then(|v| v.trim().parse().ok())
        .expect("gauge present")
}

async fn wait_for_open_sockets(s: &TestServer, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_sockets(s).await != expected {
        assert!(
            Instant::now() < deadline,
            "open sockets stayed at {} (expected {expected})",
            open_sockets(s).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caregivers_follow_live_events_until_the_share_is_revoked() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let ben = s.user("ben@example.org").await;
    let cy = s.user("cy@example.org").await;
    let dan = s.user("dan@example.org").await;
    let ana_id = s.share(&ana, &ben, "ben@example.org", "caregiver").await;
    s.share(&ana, &cy, "cy@example.org", "clinician").await;

    let mut own = open(&s, &ana, "").await;
    let hello = next_of(&mut own, &["hello"]).await;
    assert_eq!(hello["person"], ana_id);
    let mut follower = open(&s, &ben, "").await;
    let hello = next_of(&mut follower, &["hello"]).await;
    assert_eq!(
        hello["following"],
        json!([{"person": ana_id, "role": "caregiver"}])
    );
    live::send(
        &mut follower,
        json!({"type": "subscribe", "person": ana_id}),
    )
    .await;
    assert_eq!(
        next_of(&mut follower, &["subscribed", "error"]).await,
        json!({"type": "subscribed", "person": ana_id})
    );
    // A clinician (reports only) and a stranger may not follow live data.
    for token in [&cy, &dan] {
        let mut other = open(&s, token, "").await;
        live::send(&mut other, json!({"type": "subscribe", "person": ana_id})).await;
        assert_eq!(
            next_of(&mut other, &["subscribed", "error"]).await["code"],
            "not_found"
        );
        live::send(&mut other, json!({"type": "shout"})).await;
        assert_eq!(next_of(&mut other, &["error"]).await["code"], "bad_message");
    }
    wait_for_open_sockets(&s, 2).await;

    // Ana's upload: her own socket and her caregiver's get the readings and the forecast.
    upload(&s, &ana, hour_of_readings(110.0, 30_000)).await;
    for socket in [&mut own, &mut follower] {
        let reading = next_of(socket, &["reading"]).await;
        assert_eq!(reading["person"], ana_id);
        assert_eq!(reading["inserted"], 13);
        assert_eq!(reading["readings"].as_array().map(Vec::len), Some(13));
        assert_eq!(reading["readings"][12]["value"], 110.0);
        assert!(reading["cursor"].is_i64());
        let forecast = next_of(socket, &["forecast"]).await;
        assert_eq!(forecast["points"].as_array().map(Vec::len), Some(12));
    }
    // A treatment is a data change.
    let r = s
        .req(Method::POST, "/api/v1/treatments", &ana)
        .json(&json!({"time": at(now_ms() - 60_000), "kind": "carbs", "grams": 20}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let changed = next_of(&mut follower, &["data_changed"]).await;
    assert_eq!(changed["what"], "treatments");

    // Revoked: the caregiver's socket is told and closed at once; Ana's stays.
    let shares: Value = s
        .req(Method::GET, "/api/v1/shares", &ana)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let share_id = shares
        .as_array()
        .expect("shares")
        .iter()
        .find(|s| s["role"] == "caregiver")
        .and_then(|s| s["id"].as_i64())
        .expect("share");
    let r = s
        .req(Method::DELETE, &format!("/api/v1/shares/{share_id}"), &ana)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let revoked = next_of(&mut follower, &["share_revoked"]).await;
    assert_eq!(revoked["person"], ana_id);
    assert_eq!(
        live::closed_with(&mut follower, Duration::from_secs(30)).await,
        Some(CloseCode::from(4403))
    );
    wait_for_open_sockets(&s, 1).await;
    drop(own);
    wait_for_open_sockets(&s, 0).await;
    s.stop().await;
}

/// Reads an event stream until the server ends it; what it sent.
async fn sse_ended(stream: &mut reqwest::Response) -> String {
    let deadline = Instant::now() + WITHIN;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None) | Err(_)) => return seen,
            Err(_) => panic!("the event stream did not end within {WITHIN:?}; saw: {seen}"),
        }
    }
}

async fn sse(s: &TestServer, token: &str) -> reqwest::Response {
    let mut stream = s
        .req(Method::GET, "/api/v1/events", token)
        .send()
        .await
        .expect("subscribe");
    assert_eq!(stream.status(), StatusCode::OK);
    let first = tokio::time::timeout(WITHIN, stream.chunk())
        .await
        .expect("ready in time")
        .expect("chunk")
        .expect("a first event");
    assert!(String::from_utf8_lossy(&first).contains("ready"));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_credential_ends_its_own_streams_at_once_and_no_others() {
    let s = TestServer::start().await;
    let first = s.user("ana@example.org").await;
    let second = s.login("ana@example.org", common::PASSWORD).await;
    let (token_id, token) = s.api_token(&second, &["read"]).await;
    let mut by_first = open(&s, &first, "").await;
    let mut by_second = open(&s, &second, "").await;
    let mut by_token = open(&s, &token, "").await;
    for socket in [&mut by_first, &mut by_second, &mut by_token] {
        next_of(socket, &["hello"]).await;
    }
    let mut sse_by_token = sse(&s, &token).await;
    let mut sse_by_second = sse(&s, &second).await;
    wait_for_open_sockets(&s, 3).await;

    // The API token is revoked: its socket closes with 4401 (log in again) and its event
    // stream ends, on the event, not a minute later.
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/tokens/{token_id}"),
            &second,
        )
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        live::closed_with(&mut by_token, WITHIN).await,
        Some(CloseCode::from(4401))
    );
    let sent = sse_ended(&mut sse_by_token).await;
    assert!(!sent.contains("credentials_revoked"), "{sent}");

    // The sessions' streams carry on, and never hear the internal event.
    upload(&s, &first, hour_of_readings(120.0, 30_000)).await;
    for socket in [&mut by_first, &mut by_second] {
        let next = next_of(socket, &["reading", "credentials_revoked"]).await;
        assert_eq!(next["type"], "reading", "{next}");
        assert_eq!(next["inserted"], 13);
    }

    // Logging out ends the first session's socket.
    let r = s
        .req(Method::POST, "/api/v1/auth/logout", &first)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        live::closed_with(&mut by_first, WITHIN).await,
        Some(CloseCode::from(4401))
    );

    // A password change made from a new session ends every other one's streams.
    let third = s.login("ana@example.org", common::PASSWORD).await;
    let r = s
        .req(Method::POST, "/api/v1/auth/password", &third)
        .json(&json!({"current_password": common::PASSWORD, "new_password": "quiet lantern orbit meadow"}))
        .send()
        .await
        .expect("change");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        live::closed_with(&mut by_second, WITHIN).await,
        Some(CloseCode::from(4401))
    );
    let sent = sse_ended(&mut sse_by_second).await;
    assert!(sent.contains("\"inserted\":13"), "{sent}");
    assert!(!sent.contains("credentials_revoked"), "{sent}");
    wait_for_open_sockets(&s, 0).await;

    // The one still standing opens a socket that lives.
    let mut by_third = open(&s, &third, "").await;
    next_of(&mut by_third, &["hello"]).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_checks_credentials_origin_and_protocol() {
    let s = TestServer::start_with(|c| c.allowed_origins = vec!["https://app.example.org".into()])
        .await;
    let ana = s.user("ana@example.org").await;
    let handshake = |origin: Option<&str>, token: &str| {
        let mut r = s
            .req(Method::GET, "/api/v1/ws", token)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    let r = handshake(None, "").await.expect("send");
    expect_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let r = handshake(Some("https://evil.example"), &ana)
        .await
        .expect("send");
    expect_problem(r, StatusCode::FORBIDDEN, "origin_not_allowed").await;
    let own_origin = format!("http://{}", s.addr);
    for origin in [
        Some(own_origin.as_str()),
        Some("https://app.example.org"),
        None,
    ] {
        let r = handshake(origin, &ana).await.expect("send");
        assert_eq!(r.status(), StatusCode::SWITCHING_PROTOCOLS, "{origin:?}");
    }
    // A browser: the session cookie, and the page's origin — ours, not another site's.
    let with_cookie = |origin: &str| {
        s.client
            .get(s.url("/api/v1/ws"))
            .header("cookie", format!("glucosync_session={ana}"))
            .header("origin", origin)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
    };
    let r = with_cookie(&own_origin).await.expect("send");
    assert_eq!(r.status(), StatusCode::SWITCHING_PROTOCOLS);
    let r = with_cookie("https://evil.example").await.expect("send");
    expect_problem(r, StatusCode::FORBIDDEN, "origin_not_allowed").await;
    // Plain HTTP is refused with a problem.
    let r = s
        .req(Method::GET, "/api/v1/ws", &ana)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::BAD_REQUEST, "websocket_required").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_since_replays_what_was_missed() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let mut socket = open(&s, &ana, "").await;
    next_of(&mut socket, &["hello"]).await;
    upload(&s, &ana, hour_of_readings(100.0, 11 * MIN)).await;
    let cursor = next_of(&mut socket, &["reading"]).await["cursor"]
        .as_i64()
        .expect("cursor");
    drop(socket);
    // While away: two readings, the second an urgent low.
    upload(
        &s,
        &ana,
        json!([
            {"time": at(cursor + 5 * MIN), "value": 70},
            {"time": at(cursor + 10 * MIN), "value": 50},
        ]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: Value = s
            .req(Method::GET, "/api/v1/alerts", &ana)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        if list["alerts"].to_string().contains("urgent_low") {
            break;
        }
        assert!(Instant::now() < deadline, "no alert: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut socket = open(&s, &ana, &format!("?since={cursor}")).await;
    next_of(&mut socket, &["hello"]).await;
    let replayed = next_of(&mut socket, &["reading"]).await;
    assert_eq!(replayed["replay"], true);
    let values: Vec<f64> = replayed["readings"]
        .as_array()
        .expect("readings")
        .iter()
        .filter_map(|r| r["value"].as_f64())
        .collect();
    assert_eq!(values, vec![70.0, 50.0]);
    assert_eq!(replayed["cursor"], cursor + 10 * MIN);
    let forecast = next_of(&mut socket, &["forecast"]).await;
    assert_eq!(
        forecast["issued_at"],
        at(cursor + 10 * MIN).replace("+00:00", "Z")
    );
    let alert = next_of(&mut socket, &["alert"]).await;
    assert_eq!(alert["reason"], "replay");
    assert!(["urgent_low", "low", "rapid_fall"]
        .contains(&alert["alert"]["kind"].as_str().unwrap_or("")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_others_keep_up() {
    let s = TestServer::start_with(|c| c.forecasts = false).await;
    let ana = s.user("ana@example.org").await;
    let mut slow = live::open(&s.addr.to_string(), &ana, "", Some(4096)).await;
    let mut fast = open(&s, &ana, "").await;
    next_of(&mut fast, &["hello"]).await;
    wait_for_open_sockets(&s, 2).await;
    // Big events (288 readings each) until the slow client's buffers and queue are full.
    let start = now_ms() - 45 * 86_400_000;
    let uploads = 400;
    let reader = tokio::spawn(async move {
        let mut received = 0;
        while received < uploads {
            next_of(&mut fast, &["reading"]).await;
            received += 1;
        }
        received
    });
    for u in 0..uploads {
        let body: Vec<Value> = (0..288)
            .map(|i| json!({"time": at(start + (u * 288 + i) * 5 * MIN / 10), "value": 100 + i % 50}))
            .collect();
        upload(&s, &ana, Value::Array(body)).await;
    }
    assert_eq!(reader.await.expect("fast reader"), uploads);
    // The slow one was let go; reading what its buffers hold ends in a close or a reset.
    let code = live::closed_with(&mut slow, Duration::from_secs(30)).await;
    assert!(
        code.is_none() || code == Some(CloseCode::from(4008)),
        "{code:?}"
    );
    wait_for_open_sockets(&s, 0).await;
    s.stop().await;
}
