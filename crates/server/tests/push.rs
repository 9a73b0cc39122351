//! Web Push end to end: a local push service (`glucosync_testing::push`) stands in for the
//! browsers' push services; every message is decrypted with the subscribing device's keys
//! (by an RFC 8291 implementation of the testing crate's own), the VAPID signature checked,
//! and the service answers as a real one would (201, 410 for a gone device, 503 once for a
//! flaky one).

mod common;

use std::time::{Duration, Instant};

use common::{expect_problem, TestServer};
use glucosync_server::push::verify_vapid;
use glucosync_testing::push::{b64, start_push_service, Device};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn subscribe(s: &TestServer, token: &str, device: &Device, push_base: &str) -> i64 {
    let r = s
        .req(Method::POST, "/api/v1/push/subscriptions", token)
        .json(&device.subscription(push_base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id")
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("valid")
        .to_rfc3339()
}

async fn get(s: &TestServer, token: &str, path: &str) -> Value {
    let r = s.req(Method::GET, path, token).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_pushed_encrypted_to_the_person_and_caregivers_devices() {
    let (push_base, service) = start_push_service().await;
    let s = TestServer::start_with(|c| c.push_allow_loopback = true).await;
    let ana = s.user("ana@example.org").await;
    let ben = s.user("ben@example.org").await;
    let ana_id = s.share(&ana, &ben, "ben@example.org", "caregiver").await;
    let phone = Device::new("ana-phone");
    let flaky = Device::new("flaky-ana-tablet");
    let parent = Device::new("ben-phone");
    let gone = Device::new("gone-ben-old-phone");
    subscribe(&s, &ana, &phone, &push_base).await;
    subscribe(&s, &ana, &flaky, &push_base).await;
    subscribe(&s, &ben, &parent, &push_base).await;
    let gone_id = subscribe(&s, &ben, &gone, &push_base).await;
    // Subscribing the same endpoint again renews it instead of adding a device.
    subscribe(&s, &ben, &parent, &push_base).await;
    assert_eq!(
        get(&s, &ben, "/api/v1/push/subscriptions")
            .await
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // An urgent low: pushed to Ana's devices and to her caregiver's.
    let now = chrono::Utc::now().timestamp_millis();
    let r = s
        .req(Method::POST, "/api/v1/readings", &ana)
        .json(&json!([
            {"time": at(now - 600_000), "value": 80},
            {"time": at(now - 300_000), "value": 62},
            {"time": at(now - 20_000), "value": 50},
        ]))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let urgent_for = |device: &Device| {
        device
            .messages(&service)
            .into_iter()
            .filter(|(_, m)| m["kind"] == "urgent_low" && m["reason"] == "raised")
            .collect::<Vec<_>>()
    };
    wait_until("the pushes", Duration::from_secs(10), || {
        !urgent_for(&phone).is_empty() && !urgent_for(&parent).is_empty()
    })
    .await;
    let (headers, message) = &urgent_for(&phone)[0];
    assert_eq!(message["title"], "Urgent low");
    assert_eq!(message["body"], "50 mg/dL");
    assert_eq!(message["audible"], true);
    assert_eq!(headers["urgency"], "high");
    assert_eq!(headers["content-encoding"], "aes128gcm");
    assert_eq!(headers["ttl"], "1800");
    // RFC 8030 Topic: 32 characters of the URL-safe alphabet.
    assert_eq!(headers["topic"].len(), 32);
    assert!(headers["topic"].bytes().all(|b| b.is_ascii_alphanumeric()));
    // The VAPID header verifies, names this push service, and carries the server's key.
    let claims = verify_vapid(&headers["authorization"]).expect("VAPID verifies");
    assert_eq!(claims["aud"], push_base);
    let key = get(&s, "", "/api/v1/push/vapid-public-key").await["public_key"].clone();
    assert!(headers["authorization"].ends_with(&format!("k={}", key.as_str().expect("key"))));
    let (_, for_parent) = &urgent_for(&parent)[0];
    assert_eq!(for_parent["title"], "ana: Urgent low");
    assert_eq!(for_parent["person"], ana_id);

    // The flaky device got it on the second attempt (503 first); the gone one was removed.
    wait_until("the retry", Duration::from_secs(20), || {
        !urgent_for(&flaky).is_empty()
    })
    .await;
    let subs = get(&s, &ben, "/api/v1/push/subscriptions").await;
    assert!(
        !subs.to_string().contains(&format!("\"id\":{gone_id}")),
        "{subs}"
    );
    let log = get(&s, &ana, "/api/v1/alerts/deliveries").await;
    let items = log["items"].as_array().expect("items").clone();
    let of = |status: &str| {
        items
            .iter()
            .filter(|d| d["status"] == status && d["message"]["kind"] == "urgent_low")
            .count()
    };
    assert_eq!(of("sent"), 3, "{log}");
    assert_eq!(of("expired"), 1, "{log}");
    assert!(items
        .iter()
        .any(|d| d["attempts"] == 2 && d["status"] == "sent" && d["last_error"].is_null()));

    // The caregiver acknowledges: every device is told to take it down, silently.
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
    let cleared = |device: &Device| {
        device
            .messages(&service)
            .iter()
            .any(|(_, m)| m["reason"] == "acknowledged" && m["audible"] == false)
    };
    wait_until(
        "the acknowledgement pushes",
        Duration::from_secs(10),
        || cleared(&phone) && cleared(&parent),
    )
    .await;

    // The caregiver turns push off for Ana: the resolution reaches Ana's phone only.
    let r = s
        .req(Method::PATCH, &format!("/api/v1/following/{ana_id}"), &ben)
        .json(&json!({"push": false, "email": false}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["notify_push"], false);
    let before = parent.messages(&service).len();
    s.req(Method::POST, "/api/v1/readings", &ana)
        .json(&json!({"time": at(chrono::Utc::now().timestamp_millis() - 5_000), "value": 110}))
        .send()
        .await
        .expect("send");
    let resolved = |device: &Device| {
        device
            .messages(&service)
            .iter()
            .any(|(_, m)| m["kind"] == "urgent_low" && m["reason"] == "resolved")
    };
    wait_until("the resolution", Duration::from_secs(10), || {
        resolved(&phone)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(parent.messages(&service).len(), before);
    s.stop().await;
}

#[tokio::test]
async fn subscriptions_are_checked_and_removable() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let device = Device::new("x");
    let post = |body: Value| {
        s.req(Method::POST, "/api/v1/push/subscriptions", &ana)
            .json(&body)
            .send()
    };
    // Plain HTTP is refused unless loopback endpoints are allowed (off by default).
    let r = post(device.subscription("http://127.0.0.1:9"))
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // Nor an endpoint inside the server's network (the server would post there and show the
    // outcome in the delivery log: a probe of internal services).
    for inside in [
        "https://10.0.0.5/push",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]:8443/push",
        "https://[::ffff:192.168.0.1]/push",
        "https://localhost/push",
        "https://metadata.localhost/push",
        "https://0.0.0.0/push",
    ] {
        let r = post(device.subscription(inside)).await.expect("send");
        let problem =
            expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(
            problem.to_string().contains("public internet"),
            "{inside}: {problem}"
        );
    }
    let mut bad_key = device.subscription("https://push.example.net");
    bad_key["keys"]["p256dh"] = json!("AAAA");
    let r = post(bad_key).await.expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let mut bad_auth = device.subscription("https://push.example.net");
    bad_auth["keys"]["auth"] = json!(b64(&[1u8; 8]));
    let r = post(bad_auth).await.expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let r = post(device.subscription("https://push.example.net"))
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    let other = s.user("ben@example.org").await;
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/push/subscriptions/{id}"),
            &other,
        )
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/push/subscriptions/{id}"),
            &ana,
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Following channels only for someone the caller follows.
    let r = s
        .req(Method::PATCH, "/api/v1/following/999", &ana)
        .json(&json!({"push": true, "email": false}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    s.stop().await;
}
