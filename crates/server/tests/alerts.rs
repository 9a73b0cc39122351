//! Alerts end to end: raised from uploads and from the clock, acknowledged for everyone,
//! raised from durable state when the replica that took the upload never evaluated it.

mod common;

use std::time::{Duration, Instant};

use common::{expect_problem, TestServer};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

const MIN: i64 = 60_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("valid")
        .to_rfc3339()
}

/// Readings `values`, 5 minutes apart, the last `newest_age_ms` old.
fn readings(values: &[f64], newest_age_ms: i64) -> Value {
    let newest = now_ms() - newest_age_ms;
    let n = values.len() as i64;
    Value::Array(
        values
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"time": at(newest - (n - 1 - i as i64) * 5 * MIN), "value": v}))
            .collect(),
    )
}

async fn upload(s: &TestServer, token: &str, body: &Value) {
    let r = s
        .req(Method::POST, "/api/v1/readings", token)
        .json(body)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "{}", r.status());
}

async fn alerts(s: &TestServer, token: &str, person: Option<i64>) -> Vec<Value> {
    let path = match person {
        Some(p) => format!("/api/v1/alerts?person={p}"),
        None => "/api/v1/alerts".to_owned(),
    };
    let r = s.req(Method::GET, &path, token).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    body["alerts"].as_array().expect("alerts").clone()
}

/// Polls the alert list until `pred` holds (alerts are evaluated in the background).
async fn wait_for_alerts(
    s: &TestServer,
    token: &str,
    within: Duration,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let list = alerts(s, token, None).await;
        if pred(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "alerts never got there: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn of_kind<'a>(list: &'a [Value], kind: &str) -> Vec<&'a Value> {
    list.iter().filter(|a| a["kind"] == kind).collect()
}

/// Reads a live event stream until an event containing all of `needles` arrives.
async fn next_event_with(stream: &mut Response, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    loop {
        if let Some(line) = seen
            .lines()
            .find(|l| l.starts_with("data:") && needles.iter().all(|n| l.contains(n)))
        {
            return line.to_owned();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => panic!("no event with {needles:?}; saw: {seen}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_low_is_raised_once_and_a_caregivers_acknowledgement_quiets_it_for_everyone() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let ben = s.user("ben@example.org").await;
    let cy = s.user("cy@example.org").await;
    let ana_id = s.share(&ana, &ben, "ben@example.org", "caregiver").await;
    s.share(&ana, &cy, "cy@example.org", "clinician").await;
    let mut stream = s
        .req(Method::GET, "/api/v1/events", &ana)
        .send()
        .await
        .expect("subscribe");
    next_event_with(&mut stream, &["ready"]).await;

    upload(&s, &ana, &readings(&[95.0, 80.0, 68.0, 50.0], 30_000)).await;
    let raised = next_event_with(&mut stream, &["\"alert\"", "urgent_low", "raised"]).await;
    assert!(raised.contains("\"audible\":true"), "{raised}");
    assert!(raised.contains("\"value_mgdl\":50"), "{raised}");
    let list = wait_for_alerts(&s, &ana, Duration::from_secs(5), |l| {
        !of_kind(l, "urgent_low").is_empty()
    })
    .await;
    assert_eq!(of_kind(&list, "urgent_low")[0]["state"], "active");
    assert_eq!(of_kind(&list, "low")[0]["state"], "active");
    assert_eq!(of_kind(&list, "urgent_low")[0]["urgent"], true);

    // Hovering around the threshold raises nothing new.
    upload(
        &s,
        &ana,
        &json!([{"time": at(now_ms() - 10_000), "value": 57}]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let list = alerts(&s, &ana, None).await;
    assert_eq!(of_kind(&list, "urgent_low").len(), 1, "{list:?}");

    // The caregiver sees and acknowledges it; Ana's devices hear of it.
    let theirs = alerts(&s, &ben, Some(ana_id)).await;
    assert_eq!(of_kind(&theirs, "urgent_low").len(), 1);
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/alerts/urgent_low/acknowledge?person={ana_id}"),
            &ben,
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let acked: Value = r.json().await.expect("json");
    assert_eq!(acked["state"], "acknowledged");
    let event = next_event_with(&mut stream, &["urgent_low", "acknowledged"]).await;
    assert!(event.contains("\"by\":"), "{event}");
    let list = alerts(&s, &ana, None).await;
    assert_eq!(of_kind(&list, "urgent_low")[0]["state"], "acknowledged");

    // A clinician may not; nothing open of a kind is 404; an unknown kind is 404; a bad
    // snooze is 422.
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/alerts/low/acknowledge?person={ana_id}"),
            &cy,
        )
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = s
        .req(Method::POST, "/api/v1/alerts/high/acknowledge", &ana)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = s
        .req(Method::POST, "/api/v1/alerts/bogus/acknowledge", &ana)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = s
        .req(Method::POST, "/api/v1/alerts/low/snooze", &ana)
        .json(&json!({"minutes": 0}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let r = s
        .req(Method::POST, "/api/v1/alerts/low/snooze", &ana)
        .json(&json!({"minutes": 30}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let snoozed: Value = r.json().await.expect("json");
    assert_eq!(snoozed["state"], "snoozed");

    // Back in range: both resolve.
    upload(
        &s,
        &ana,
        &json!([{"time": at(now_ms() - 5_000), "value": 90}]),
    )
    .await;
    let list = wait_for_alerts(&s, &ana, Duration::from_secs(5), |l| {
        l.iter()
            .filter(|a| a["kind"] == "urgent_low" || a["kind"] == "low")
            .all(|a| a["state"] == "resolved")
    })
    .await;
    assert_eq!(of_kind(&list, "urgent_low").len(), 1);

    // The caregiver's reads are in Ana's access log.
    let log: Value = s
        .req(Method::GET, "/api/v1/access-log", &ana)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let whats: Vec<&str> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["what"].as_str())
        .collect();
    assert!(whats.contains(&"alerts"), "{whats:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_data_is_raised_by_the_clock_without_a_new_reading() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    // The newest reading turns 15 minutes old four seconds from now.
    upload(
        &s,
        &ana,
        &readings(&[120.0, 121.0, 122.0], 15 * MIN - 4_000),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(of_kind(&alerts(&s, &ana, None).await, "stale_data").is_empty());
    let list = wait_for_alerts(&s, &ana, Duration::from_secs(15), |l| {
        !of_kind(l, "stale_data").is_empty()
    })
    .await;
    assert_eq!(of_kind(&list, "stale_data")[0]["state"], "active");
    assert!(of_kind(&list, "urgent_stale_data").is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_no_replica_evaluated_is_alerted_from_durable_state() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let me: Value = s
        .req(Method::GET, "/api/v1/me", &ana)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let id = me["id"].as_i64().expect("id");
    // Written behind the server's back, as by a replica that died after answering 201: no
    // evaluation ran, only the upload's own mark in the store.
    let now = now_ms();
    let low = (0..3)
        .map(|i| glucosync_domain::readings::NewReading {
            time: glucosync_domain::Timestamp::from_utc_ms(now - 30_000 - (2 - i) * 5 * MIN),
            value: glucosync_domain::GlucoseMgdl::from_stored(52.0 - i as f64),
            kind: glucosync_domain::readings::ReadingKind::Cgm,
            trend: None,
            device: String::new(),
            extra: None,
        })
        .collect();
    s.store.insert_readings(id, low, now).await.expect("insert");
    let list = wait_for_alerts(&s, &ana, Duration::from_secs(10), |l| {
        !of_kind(l, "urgent_low").is_empty()
    })
    .await;
    assert_eq!(of_kind(&list, "urgent_low").len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_preferences_are_settings_and_are_checked() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let r = s
        .req(Method::PATCH, "/api/v1/me/settings", &ana)
        .json(&json!({"alerts": {"disabled": ["urgent_low"]}}))
        .send()
        .await
        .expect("send");
    let problem = expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(problem.to_string().contains("alerts.disabled"), "{problem}");
    let r = s
        .req(Method::PATCH, "/api/v1/me/settings", &ana)
        .json(&json!({"alerts": {
            "disabled": ["high"],
            "quiet_hours": {"start": "22:00:00", "end": "07:00:00"},
            "predicted_low_minutes": 20
        }}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let settings: Value = r.json().await.expect("json");
    assert_eq!(settings["alerts"]["predicted_low_minutes"], 20);
    assert_eq!(settings["alerts"]["renotify_minutes"], 5);
    assert_eq!(settings["alerts"]["quiet_hours"]["start"], "22:00:00");
    // Settings changes evaluate alerts; someone who never uploaded a reading has none (no
    // "no data" alarm for a new account).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(alerts(&s, &ana, None).await.is_empty());
    s.stop().await;
}
