//! Deleting an account (docs/data-ownership.md): asking cuts every way in at once, the owner
//! can come back and keep it during the grace period, and afterwards everything is gone.
//! Both storage backends.

mod common;

use common::{expect_problem, TestServer, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn upload(s: &TestServer, token: &str) {
    let r = s
        .req(Method::POST, "/api/v1/readings", token)
        .json(&json!({"time": common::minutes_ago(5), "value": 120}))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn status(s: &TestServer, path: &str, token: &str) -> StatusCode {
    s.req(Method::GET, path, token)
        .send()
        .await
        .expect("send")
        .status()
}

#[tokio::test]
async fn asking_cuts_every_way_in_at_once_and_the_owner_can_keep_the_account() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let ben = s.user("ben@example.org").await;
    upload(&s, &ana).await;
    let ana_id = s.share(&ana, &ben, "ben@example.org", "caregiver").await;
    let (_, uploader) = s.api_token(&ana, &["readings:write"]).await;
    let as_ben = format!("/api/v1/readings/latest?person={ana_id}");
    assert_eq!(status(&s, &as_ben, &ben).await, StatusCode::OK);

    let r = s
        .req(Method::DELETE, "/api/v1/me", &ana)
        .json(&json!({"confirm_email": "someone@example.org"}))
        .send()
        .await
        .expect("delete");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let r = s
        .req(Method::DELETE, "/api/v1/me", &uploader)
        .json(&json!({"confirm_email": "ana@example.org"}))
        .send()
        .await
        .expect("delete");
    expect_problem(r, StatusCode::FORBIDDEN, "session_required").await;

    let r = s
        .req(Method::DELETE, "/api/v1/me", &ana)
        .json(&json!({"confirm_email": "Ana@Example.org"}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let scheduled: Value = r.json().await.expect("json");
    let due =
        chrono::DateTime::parse_from_rfc3339(scheduled["deletion_due"].as_str().expect("due"))
            .expect("time");
    let days = (due.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((6.9..=7.0).contains(&days), "{days}");

    // At once: the session, the uploader's token and the follower's view all end.
    assert_eq!(
        status(&s, "/api/v1/me", &ana).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&s, "/api/v1/readings/latest", &uploader).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(matches!(
        status(&s, &as_ben, &ben).await,
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    ));

    // The owner logs in again, sees the date, and keeps the account with its data.
    let back = s.login("ana@example.org", PASSWORD).await;
    let me: Value = s
        .req(Method::GET, "/api/v1/me", &back)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["deletion_due"], scheduled["deletion_due"]);
    let kept: Value = s
        .req(Method::POST, "/api/v1/me/keep", &back)
        .send()
        .await
        .expect("keep")
        .json()
        .await
        .expect("json");
    assert_eq!(kept["deletion_due"], Value::Null);
    assert_eq!(
        status(&s, "/api/v1/readings/latest", &back).await,
        StatusCode::OK
    );
    let r = s
        .req(Method::POST, "/api/v1/me/keep", &back)
        .send()
        .await
        .expect("keep");
    expect_problem(r, StatusCode::CONFLICT, "conflict").await;
    s.stop().await;
}

#[tokio::test]
async fn without_a_grace_period_the_account_is_gone_at_once() {
    let s = TestServer::start_with(|c| c.account_deletion_grace_days = 0).await;
    let ana = s.user("ana@example.org").await;
    upload(&s, &ana).await;
    let r = s
        .req(Method::DELETE, "/api/v1/me", &ana)
        .json(&json!({"confirm_email": "ana@example.org"}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"email": "ana@example.org", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(s
        .store
        .user_by_email("ana@example.org")
        .await
        .expect("read")
        .is_none());
    // The address is free again, and the new account starts empty.
    let again = s.user("ana@example.org").await;
    let latest = status(&s, "/api/v1/readings/latest", &again).await;
    assert_eq!(latest, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn deletions_that_fall_due_are_carried_out_by_the_background_job() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    upload(&s, &ana).await;
    let r = s
        .req(Method::DELETE, "/api/v1/me", &ana)
        .json(&json!({"confirm_email": "ana@example.org"}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = s
        .store
        .user_by_email("ana@example.org")
        .await
        .expect("read")
        .expect("pending")
        .0
        .id;
    // The grace period passes (moved into the past behind the server's back).
    let now = chrono::Utc::now().timestamp_millis();
    s.store
        .request_deletion(id, now - 1, now)
        .await
        .expect("due");
    // The next start's job deletes it (the stopping server hands its lease back).
    let (url, keep) = s.stop_keeping_data().await;
    let next = TestServer::start_with(move |c| {
        c.database_url = glucosync_server::config::SecretUrl::new(url)
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let gone = next
            .store
            .user_by_email("ana@example.org")
            .await
            .expect("read")
            .is_none();
        if gone {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not deleted within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    next.stop().await;
    drop(keep);
}
