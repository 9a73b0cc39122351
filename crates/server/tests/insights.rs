//! Insights over HTTP: the patterns of an uploaded history, with evidence in the person's
//! unit, readable by followers and by nobody else.

mod common;

use common::{expect_problem, TestServer};
use glucosync_domain::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const STEP: i64 = 300_000;
const DAY: i64 = 86_400_000;

/// 20 days of 5-minute readings up to now, with 40-minute lows at 03:30 UTC on six of the last
/// 14 days.
fn history(now_ms: i64) -> Vec<Value> {
    let midnight = now_ms - now_ms.rem_euclid(DAY);
    let start = midnight - 20 * DAY;
    let low_days = [7, 9, 12, 14, 16, 18];
    (0..)
        .map(|i| start + i * STEP)
        .take_while(|&t| t < now_ms - STEP)
        .map(|t| {
            let (day, minute) = ((t - start) / DAY, (t - start) % DAY / 60_000);
            let value = if low_days.contains(&day) && (210..250).contains(&minute) {
                58
            } else {
                125
            };
            json!({"time": Timestamp::from_utc_ms(t).to_rfc3339_utc(), "value": value})
        })
        .collect()
}

#[tokio::test]
async fn an_uploaded_history_shows_its_recurring_lows_with_evidence() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let now = glucosync_server::state::now_ms();
    let r = s
        .req(Method::POST, "/api/v1/readings", &ana)
        .json(&history(now))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);

    let r = s
        .req(Method::GET, "/api/v1/insights/patterns", &ana)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.expect("json");
    assert_eq!(report["unit"], "mg/dL");
    let patterns = report["patterns"].as_array().expect("patterns");
    let lows = &patterns[0];
    assert_eq!(lows["kind"], "recurring_lows", "{report}");
    assert_eq!(lows["severity"], "attention");
    assert_eq!(lows["title"], "Lows between 03:00 and 06:00");
    let evidence = lows["evidence"].as_array().expect("evidence");
    assert_eq!(evidence.len(), 6, "{lows}");
    assert_eq!(evidence[0]["readings"][0]["value"], 58.0);
    assert!(patterns.iter().any(|p| p["kind"] == "weekly_trend"));

    // In mmol/L, text and values follow.
    let report: Value = s
        .req(Method::GET, "/api/v1/insights/patterns?unit=mmol/L", &ana)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let lows = &report["patterns"][0];
    assert!(
        lows["detail"]
            .as_str()
            .expect("detail")
            .contains("lowest 3.2 mmol/L"),
        "{lows}"
    );
    assert_eq!(lows["evidence"][0]["readings"][0]["value"], 3.2);

    // A stranger learns nothing; a follower sees the same patterns.
    let ben = s.user("ben@example.org").await;
    let me: Value = s
        .req(Method::GET, "/api/v1/me", &ana)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let path = format!("/api/v1/insights/patterns?person={}", me["id"]);
    expect_problem(
        s.req(Method::GET, &path, &ben).send().await.expect("send"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let owner = s.share(&ana, &ben, "ben@example.org", "caregiver").await;
    assert_eq!(Some(owner), me["id"].as_i64());
    let seen: Value = s
        .req(Method::GET, &path, &ben)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(seen["patterns"][0]["kind"], "recurring_lows");

    // Bad input is a clear 422.
    expect_problem(
        s.req(Method::GET, "/api/v1/insights/patterns?to=yesterday", &ana)
            .send()
            .await
            .expect("send"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    s.stop().await;
}
