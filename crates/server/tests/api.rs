//! The HTTP API end to end: the real server on port 0 with a fresh database per test.

mod common;

use common::{expect_problem, minutes_ago, TestServer, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn signup_login_profile_settings_and_password_change() {
    let s = TestServer::start().await;
    // Weak and malformed input get clear messages.
    let r = s
        .client
        .post(s.url("/api/v1/auth/signup"))
        .json(&json!({"email": "ana@example.org", "password": "password123"}))
        .send()
        .await
        .expect("send");
    let body = expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "password");
    let r = s
        .client
        .post(s.url("/api/v1/auth/signup"))
        .json(&json!({"email": "not-an-email", "password": PASSWORD}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let token = s.user("Ana@Example.org").await;
    let r = s
        .client
        .post(s.url("/api/v1/auth/signup"))
        .json(&json!({"email": "ana@example.org", "password": PASSWORD}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::CONFLICT, "conflict").await;

    let me: Value = s
        .req(Method::GET, "/api/v1/me", &token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["email"], "ana@example.org");
    assert_eq!(me["is_admin"], true, "the first account is an admin");
    assert_eq!(me["settings"]["target_low_mgdl"], 70.0);
    assert_eq!(me["settings"]["target_high_mgdl"], 180.0);

    let r = s.req(Method::PATCH, "/api/v1/me/settings", &token)
        .json(&json!({"display_unit": "mmol/L", "time_zone": "Europe/Berlin", "target_high_mgdl": 160}))
        .send().await.expect("patch");
    assert_eq!(r.status(), StatusCode::OK);
    let settings: Value = r.json().await.expect("json");
    assert_eq!(
        (
            settings["display_unit"].as_str(),
            settings["target_high_mgdl"].as_f64()
        ),
        (Some("mmol/L"), Some(160.0))
    );
    let r = s
        .req(Method::PATCH, "/api/v1/me/settings", &token)
        .json(&json!({"time_zone": "Mars/Base"}))
        .send()
        .await
        .expect("patch");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let r = s
        .req(Method::PATCH, "/api/v1/me", &token)
        .json(&json!({"display_name": "Ana"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(
        r.json::<Value>().await.expect("json")["display_name"],
        "Ana"
    );

    // Wrong password, then a change that logs out the other sessions.
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"email": "ana@example.org", "password": "wrong password here"}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let other = s.login("ana@example.org", PASSWORD).await;
    let r = s
        .req(Method::POST, "/api/v1/auth/password", &token)
        .json(&json!({"current_password": PASSWORD, "new_password": "quiet lantern orbit meadow"}))
        .send()
        .await
        .expect("change");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect_problem(
        s.req(Method::GET, "/api/v1/me", &other)
            .send()
            .await
            .expect("send"),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_eq!(
        s.req(Method::GET, "/api/v1/me", &token)
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK
    );
    s.login("ana@example.org", "quiet lantern orbit meadow")
        .await;

    // Logout ends the session at once.
    assert_eq!(
        s.req(Method::POST, "/api/v1/auth/logout", &token)
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::NO_CONTENT
    );
    expect_problem(
        s.req(Method::GET, "/api/v1/me", &token)
            .send()
            .await
            .expect("send"),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_for_unsafe_methods() {
    let s = TestServer::start().await;
    s.user("ana@example.org").await;
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"email": "ana@example.org", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let session_cookie = cookies
        .iter()
        .find(|c| c.starts_with("glucosync_session="))
        .expect("session cookie");
    assert!(
        session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"),
        "{session_cookie}"
    );
    let body: Value = r.json().await.expect("json");
    let cookie = format!(
        "glucosync_session={}",
        body["token"].as_str().expect("token")
    );
    let csrf = body["csrf_token"].as_str().expect("csrf").to_owned();

    let get = s
        .client
        .get(s.url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("send");
    assert_eq!(
        get.status(),
        StatusCode::OK,
        "safe methods need no CSRF token"
    );
    let reading = json!({"time": minutes_ago(5), "value": 120});
    let no_csrf = s
        .client
        .post(s.url("/api/v1/readings"))
        .header("cookie", &cookie)
        .json(&reading)
        .send()
        .await
        .expect("send");
    expect_problem(no_csrf, StatusCode::FORBIDDEN, "csrf_failed").await;
    let wrong = s
        .client
        .post(s.url("/api/v1/readings"))
        .header("cookie", &cookie)
        .header("x-csrf-token", "gsc_wrong")
        .json(&reading)
        .send()
        .await
        .expect("send");
    expect_problem(wrong, StatusCode::FORBIDDEN, "csrf_failed").await;
    let ok = s
        .client
        .post(s.url("/api/v1/readings"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&reading)
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), StatusCode::CREATED);
    s.stop().await;
}

#[tokio::test]
async fn api_tokens_have_scopes_are_shown_once_and_revoke_at_once() {
    let s = TestServer::start().await;
    let session = s.user("ana@example.org").await;
    let (id, uploader) = s.api_token(&session, &["readings:write"]).await;
    assert!(uploader.starts_with("gsa_") && uploader.len() >= 4 + 32);
    let listed: Value = s
        .req(Method::GET, "/api/v1/tokens", &session)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(
        listed[0].get("token").is_none(),
        "the secret is never listed"
    );
    assert_eq!(listed[0]["scopes"], json!(["readings:write"]));

    let r = s
        .req(Method::POST, "/api/v1/readings", &uploader)
        .json(&json!({"time": minutes_ago(0), "value": 101}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    expect_problem(
        s.req(Method::GET, "/api/v1/readings", &uploader)
            .send()
            .await
            .expect("send"),
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    expect_problem(
        s.req(Method::GET, "/api/v1/tokens", &uploader)
            .send()
            .await
            .expect("send"),
        StatusCode::FORBIDDEN,
        "session_required",
    )
    .await;

    let r = s
        .req(Method::POST, "/api/v1/tokens", &session)
        .json(&json!({"name": "x", "scopes": ["admin"]}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    assert_eq!(
        s.req(Method::DELETE, &format!("/api/v1/tokens/{id}"), &session)
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::NO_CONTENT
    );
    let r = s
        .req(Method::POST, "/api/v1/readings", &uploader)
        .json(&json!({"time": minutes_ago(0), "value": 102, "device": "b"}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    expect_problem(
        s.req(Method::DELETE, &format!("/api/v1/tokens/{id}"), &session)
            .send()
            .await
            .expect("send"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Sessions share the tokens' numbering, but this endpoint addresses API tokens only:
    // trying every nearby id never ends the caller's session (API fuzzing once did).
    for other in (1..id + 10).filter(|&other| other != id) {
        let r = s
            .req(Method::DELETE, &format!("/api/v1/tokens/{other}"), &session)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "id {other}");
    }
    assert_eq!(
        s.req(Method::GET, "/api/v1/me", &session)
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test]
async fn readings_batches_are_idempotent_validated_whole_and_paginated() {
    let s = TestServer::start().await;
    let t = s.user("ana@example.org").await;
    let batch: Vec<Value> = (0..30)
        .map(|i| json!({"time": minutes_ago(5 * (30 - i)), "value": 100 + i, "trend": "Flat", "device": "G7"}))
        .collect();
    let r = s
        .req(Method::POST, "/api/v1/readings", &t)
        .json(&batch)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"inserted": 30, "duplicates": 0})
    );
    let r = s
        .req(Method::POST, "/api/v1/readings", &t)
        .json(&batch)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"inserted": 0, "duplicates": 30})
    );

    // One bad item refuses the whole batch and is named by index; nothing is written.
    let mut bad = vec![json!({"time": minutes_ago(500), "value": 5.5, "unit": "mmol/L"})];
    bad.push(json!({"time": "2026-13-01T00:00:00Z", "value": 100}));
    let r = s
        .req(Method::POST, "/api/v1/readings", &t)
        .json(&bad)
        .send()
        .await
        .expect("send");
    let p = expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        (
            p["errors"][0]["item"].as_u64(),
            p["errors"][0]["field"].as_str()
        ),
        (Some(1), Some("time"))
    );
    for (item, field) in [
        (json!({"time": minutes_ago(0), "value": 19}), "value"),
        (json!({"time": minutes_ago(0), "value": 601}), "value"),
        (
            json!({"time": "1999-12-31T23:00:00Z", "value": 100}),
            "time",
        ),
        (json!({"time": minutes_ago(-30), "value": 100}), "time"),
        (
            json!({"time": minutes_ago(0), "value": 100, "colour": "red"}),
            "body",
        ),
        (
            json!({"time": minutes_ago(0), "value": 100, "trend": "Sideways"}),
            "body",
        ),
        (
            json!({"time": minutes_ago(0), "value": 100, "device": "x".repeat(101)}),
            "device",
        ),
    ] {
        let r = s
            .req(Method::POST, "/api/v1/readings", &t)
            .json(&json!([item]))
            .send()
            .await
            .expect("send");
        let p = expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
        assert_eq!(p["errors"][0]["item"], 0);
    }
    let r = s
        .req(Method::POST, "/api/v1/readings", &t)
        .header("content-type", "application/json")
        .body("[{\"time\":")
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::BAD_REQUEST, "malformed_json").await;
    let r = s
        .req(Method::POST, "/api/v1/readings", &t)
        .body("time=now")
        .send()
        .await
        .expect("send");
    expect_problem(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"time": minutes_ago(0), "value": 100, "device": i.to_string()}))
        .collect();
    let r = s
        .req(Method::POST, "/api/v1/readings", &t)
        .json(&too_many)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::BAD_REQUEST, "batch_too_large").await;

    // Page through with a cursor; mmol/L on request.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/api/v1/readings?limit=7&unit=mmol/L&from={}",
            urlencode(&minutes_ago(600))
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = s
            .req(Method::GET, &path, &t)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["value"].as_f64().expect("value"));
            assert_eq!(item["unit"], "mmol/L");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 30);
    assert_eq!(seen[0], 5.6, "100 mg/dL is 5.6 mmol/L");
    let r = s
        .req(Method::GET, "/api/v1/readings?limit=0", &t)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let r = s
        .req(
            Method::GET,
            "/api/v1/readings?from=2020-01-01T00:00:00Z&to=2022-01-01T00:00:00Z",
            &t,
        )
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let r = s
        .req(Method::GET, "/api/v1/readings?cursor=nonsense", &t)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // Latest with delta, then deletion of one and of a range.
    let latest: Value = s
        .req(Method::GET, "/api/v1/readings/latest", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (
            latest["value"].as_f64(),
            latest["delta"].as_f64(),
            latest["trend"].as_str()
        ),
        (Some(129.0), Some(1.0), Some("Flat"))
    );
    let id = latest["id"].as_i64().expect("id");
    assert_eq!(
        s.req(Method::DELETE, &format!("/api/v1/readings/{id}"), &t)
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::NO_CONTENT
    );
    expect_problem(
        s.req(Method::DELETE, &format!("/api/v1/readings/{id}"), &t)
            .send()
            .await
            .expect("send"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        s.req(Method::DELETE, "/api/v1/readings/abc", &t)
            .send()
            .await
            .expect("send"),
        StatusCode::BAD_REQUEST,
        "invalid_path",
    )
    .await;
    let path = format!(
        "/api/v1/readings?from={}&to={}",
        urlencode(&minutes_ago(600)),
        urlencode(&minutes_ago(-10))
    );
    let r: Value = s
        .req(Method::DELETE, &path, &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(r["deleted"], 29);
    expect_problem(
        s.req(Method::GET, "/api/v1/readings/latest", &t)
            .send()
            .await
            .expect("send"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn treatments_are_idempotent_editable_and_checked_by_kind() {
    let s = TestServer::start().await;
    let t = s.user("ana@example.org").await;
    let time = minutes_ago(60);
    let batch = json!([
        {"id": "bolus-1", "time": time, "kind": "insulin", "units": 4.5, "insulin_type": "bolus", "insulin_name": "Fiasp"},
        {"time": time, "kind": "carbs", "grams": 45},
        {"time": time, "kind": "exercise", "minutes": 30, "intensity": "moderate"},
        {"time": time, "kind": "note", "text": "new sensor"},
        {"time": time, "kind": "basal_rate", "units_per_hour": 0.8, "minutes": 60}
    ]);
    let r = s
        .req(Method::POST, "/api/v1/treatments", &t)
        .json(&batch)
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"inserted": 5, "duplicates": 0})
    );
    let r = s
        .req(Method::POST, "/api/v1/treatments", &t)
        .json(&batch)
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"inserted": 0, "duplicates": 5}),
        "a second uploader adds nothing"
    );

    let r = s
        .req(Method::POST, "/api/v1/treatments", &t)
        .json(&json!({"time": time, "kind": "carbs", "units": 3}))
        .send()
        .await
        .expect("send");
    let p = expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "units");

    let got: Value = s
        .req(Method::GET, "/api/v1/treatments/bolus-1", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (got["units"].as_f64(), got["insulin_type"].as_str()),
        (Some(4.5), Some("bolus"))
    );
    let r = s
        .req(Method::PUT, "/api/v1/treatments/bolus-1", &t)
        .json(&json!({"time": time, "kind": "insulin", "units": 5.0, "insulin_type": "bolus"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["units"], 5.0);
    let list: Value = s
        .req(Method::GET, "/api/v1/treatments", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        s.req(Method::DELETE, "/api/v1/treatments/bolus-1", &t)
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::NO_CONTENT
    );
    expect_problem(
        s.req(Method::GET, "/api/v1/treatments/bolus-1", &t)
            .send()
            .await
            .expect("send"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let r = s
        .req(Method::PUT, "/api/v1/treatments/bolus-1", &t)
        .json(&json!({"time": time, "kind": "insulin", "units": 5.0, "insulin_type": "bolus"}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    s.stop().await;
}

#[tokio::test]
async fn oversized_bodies_and_unknown_routes_get_problems_and_every_response_a_request_id() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 64 * 1024).await;
    let t = s.user("ana@example.org").await;
    let big: Vec<Value> = (0..2000)
        .map(|i| json!({"time": minutes_ago(0), "value": 100, "device": format!("device {i}")}))
        .collect();
    let r = s
        .req(Method::POST, "/api/v1/readings", &t)
        .json(&big)
        .send()
        .await
        .expect("send");
    assert!(r.headers().contains_key("x-request-id"));
    expect_problem(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let r = s
        .req(Method::GET, "/api/v1/nothing-here", &t)
        .send()
        .await
        .expect("send");
    assert!(r.headers().contains_key("x-request-id"));
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = s
        .req(Method::GET, "/api/v1/readings", "gsa_not_a_real_token")
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    s.stop().await;
}

#[tokio::test]
async fn login_is_rate_limited_per_account() {
    let s = TestServer::start().await;
    s.user("ana@example.org").await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = s
            .client
            .post(s.url("/api/v1/auth/login"))
            .json(&json!({"email": "ana@example.org", "password": "wrong guess number"}))
            .send()
            .await
            .expect("send");
        statuses.push(r.status());
    }
    assert!(
        statuses[..9].iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[11], StatusCode::TOO_MANY_REQUESTS);
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"email": "ana@example.org", "password": PASSWORD}))
        .send()
        .await
        .expect("send");
    assert!(r.headers().contains_key("retry-after"));
    expect_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    s.stop().await;
}

#[tokio::test]
async fn health_metrics_and_docs() {
    let s = TestServer::start().await;
    for path in [
        "/health",
        "/health/ready",
        "/healthz",
        "/api/docs",
        "/api/docs/app.js",
        "/api/v1/openapi.json",
        "/",
    ] {
        assert_eq!(
            s.client
                .get(s.url(path))
                .send()
                .await
                .expect("send")
                .status(),
            StatusCode::OK,
            "{path}"
        );
    }
    let t = s.user("ana@example.org").await;
    s.req(Method::POST, "/api/v1/readings", &t)
        .json(&json!({"time": minutes_ago(0), "value": 100}))
        .send()
        .await
        .expect("send");
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    for name in [
        "glucosync_glucose_readings_total 1",
        "glucosync_ml_predictions_total 0",
        "glucosync_user_signups_total 1",
        "glucosync_active_websocket_connections 0",
        "glucosync_openai_api_calls_total{outcome=\"ok\"} 0",
        "glucosync_api_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/readings\",status=\"201\"",
        "glucosync_db_pool_connections ",
        "process_resident_memory_bytes ",
    ] {
        assert!(metrics.contains(name), "missing {name}");
    }
    s.stop().await;

    let s =
        TestServer::start_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().expect("addr")))
            .await;
    let r = s.client.get(s.url("/metrics")).send().await.expect("send");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "metrics moved to their own listener"
    );
    let separate = format!(
        "http://{}/metrics",
        s.metrics_addr.expect("metrics listener")
    );
    let text = s
        .client
        .get(separate)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(text.contains("glucosync_user_signups_total 0"));
    s.stop().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn the_summary_report_uses_the_consensus_names_and_handles_no_data() {
    let s = TestServer::start().await;
    let t = s.user("ana@example.org").await;
    let empty: Value = s
        .req(Method::GET, "/api/v1/reports/summary", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(empty["readings"], 0);
    assert!(empty["mean"].is_null() && empty["tir"].is_null());
    // 4 readings: 50 (< 54), 65 (54–69), 120 (in range), 300 (> 250); a meter reading is ignored.
    let batch = json!([
        {"time": minutes_ago(20), "value": 50}, {"time": minutes_ago(15), "value": 65},
        {"time": minutes_ago(10), "value": 120}, {"time": minutes_ago(5), "value": 300},
        {"time": minutes_ago(5), "value": 400, "kind": "meter"}
    ]);
    s.req(Method::POST, "/api/v1/readings", &t)
        .json(&batch)
        .send()
        .await
        .expect("send");
    let r: Value = s
        .req(Method::GET, "/api/v1/reports/summary", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(r["readings"], 4);
    assert_eq!(r["mean"], 133.8);
    for (k, v) in [
        ("tbr_54", 25.0),
        ("tbr_70", 50.0),
        ("tir", 25.0),
        ("tar_180", 25.0),
        ("tar_250", 25.0),
    ] {
        assert_eq!(r[k].as_f64(), Some(v), "{k}");
    }
    // GRI = 3.0 × (25 + 0.8 × 25) + 1.6 × (25 + 0.5 × 0) = 175 → capped at 100, zone E.
    assert_eq!(
        (r["gri"].as_f64(), r["gri_zone"].as_str()),
        (Some(100.0), Some("E"))
    );
    for k in ["sd", "cv", "gmi", "lbgi", "hbgi", "j_index", "adrr"] {
        assert!(r[k].is_number(), "{k}");
    }
    let r = s
        .req(
            Method::GET,
            "/api/v1/reports/summary?from=2026-01-01T00:00:00Z&to=2025-01-01T00:00:00Z",
            &t,
        )
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    s.stop().await;
}

#[tokio::test]
async fn the_agp_report_has_288_bins_in_the_display_unit_and_daily_curves() {
    let s = TestServer::start().await;
    let t = s.user("ana@example.org").await;
    s.req(Method::PATCH, "/api/v1/me/settings", &t)
        .json(&json!({"display_unit": "mmol/L"}))
        .send()
        .await
        .expect("send");
    let batch: Vec<Value> = (0..48)
        .map(|i| json!({"time": minutes_ago(5 * i), "value": 90 + i}))
        .collect();
    s.req(Method::POST, "/api/v1/readings", &t)
        .json(&batch)
        .send()
        .await
        .expect("send");
    let r: Value = s
        .req(Method::GET, "/api/v1/reports/agp?smoothing=0", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(r["unit"], "mmol/L");
    let bins = r["bins"].as_array().expect("bins");
    assert_eq!(bins.len(), 288);
    assert_eq!(bins[0]["time"], "00:00");
    assert_eq!(bins[287]["time"], "23:55");
    let filled: Vec<&Value> = bins
        .iter()
        .filter(|b| b["count"].as_u64() > Some(0))
        .collect();
    assert_eq!(filled.len(), 48);
    assert!(
        filled
            .iter()
            .all(|b| b["p50"].as_f64().is_some_and(|v| (4.9..=7.7).contains(&v))),
        "values in mmol/L"
    );
    let days = r["days"].as_array().expect("days");
    let total: usize = days
        .iter()
        .map(|d| d["values"].as_array().map(Vec::len).unwrap_or(0))
        .sum();
    assert_eq!(total, 48);
    let r = s
        .req(Method::GET, "/api/v1/reports/agp?smoothing=99", &t)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    s.stop().await;
}

#[tokio::test]
async fn the_events_report_finds_a_level_two_hypo() {
    let s = TestServer::start().await;
    let t = s.user("ana@example.org").await;
    // 30 minutes below 54 mg/dL (nadir 45), then recovered.
    let values = [120, 80, 50, 48, 45, 47, 50, 52, 90, 110, 120, 125];
    let batch: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"time": minutes_ago(5 * (values.len() - i) as i64), "value": v}))
        .collect();
    s.req(Method::POST, "/api/v1/readings", &t)
        .json(&batch)
        .send()
        .await
        .expect("send");
    let r: Value = s
        .req(Method::GET, "/api/v1/reports/events?unit=mg/dL", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let events = r["events"].as_array().expect("events");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, vec!["hypo_level1", "hypo_level2"], "{r}");
    let level2 = &events[1];
    assert_eq!(
        (
            level2["duration_minutes"].as_f64(),
            level2["extreme"].as_f64(),
            level2["open"].as_bool()
        ),
        (Some(30.0), Some(45.0), Some(false))
    );
    s.stop().await;
}

#[tokio::test]
async fn daily_and_hourly_statistics_csv_download_and_treatment_totals() {
    let s = TestServer::start().await;
    let t = s.user("ana@example.org").await;
    let batch: Vec<Value> = (0..24)
        .map(|i| json!({"time": minutes_ago(5 * i), "value": 100 + 2 * i}))
        .collect();
    s.req(Method::POST, "/api/v1/readings", &t)
        .json(&batch)
        .send()
        .await
        .expect("send");
    let treatments = json!([
        {"time": minutes_ago(60), "kind": "insulin", "units": 7, "insulin_type": "bolus"},
        {"time": minutes_ago(60), "kind": "carbs", "grams": 56},
        {"time": minutes_ago(30), "kind": "insulin", "units": 14, "insulin_type": "basal"}
    ]);
    s.req(Method::POST, "/api/v1/treatments", &t)
        .json(&treatments)
        .send()
        .await
        .expect("send");

    let mgdl: Value = s
        .req(Method::GET, "/api/v1/reports/daily?unit=mg/dL", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let mmol: Value = s
        .req(Method::GET, "/api/v1/reports/daily?unit=mmol/L", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let total: u64 = mgdl["days"]
        .as_array()
        .expect("days")
        .iter()
        .filter_map(|d| d["count"].as_u64())
        .sum();
    assert_eq!(total, 24);
    // The same statistics in both units: mmol/L is mg/dL divided by 18.016, to one decimal.
    for (a, b) in mgdl["days"]
        .as_array()
        .expect("days")
        .iter()
        .zip(mmol["days"].as_array().expect("days"))
    {
        for k in ["mean", "min", "median", "max"] {
            let (x, y) = (
                a[k].as_f64().expect("mg/dL"),
                b[k].as_f64().expect("mmol/L"),
            );
            assert!(
                (x / 18.016 - y).abs() <= 0.05 + 1e-9,
                "{k}: {x} mg/dL vs {y} mmol/L"
            );
        }
        assert_eq!(a["from_70_to_180"], b["from_70_to_180"]);
    }

    let r = s
        .req(
            Method::GET,
            "/api/v1/reports/daily?format=csv&unit=mg/dL",
            &t,
        )
        .send()
        .await
        .expect("send");
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/csv"));
    assert!(r.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .contains("attachment"));
    let csv = r.text().await.expect("text");
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .expect("header")
        .starts_with("date,hours,count,mean_mgdl,"));
    assert!(lines.all(|l| l.split(',').count() == 15));

    let hourly: Value = s
        .req(Method::GET, "/api/v1/reports/hourly", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(hourly["hours"].as_array().map(Vec::len), Some(24));

    let summary: Value = s
        .req(Method::GET, "/api/v1/reports/summary", &t)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    // 14 days: 7 U bolus, 14 U basal, 56 g carbs in the period.
    assert_eq!(
        (
            summary["insulin_bolus_per_day"].as_f64(),
            summary["insulin_basal_per_day"].as_f64()
        ),
        (Some(0.5), Some(1.0))
    );
    assert_eq!(
        (
            summary["insulin_total_per_day"].as_f64(),
            summary["carbs_per_day"].as_f64()
        ),
        (Some(1.5), Some(4.0))
    );
    assert_eq!(
        (
            summary["expected_readings"].as_u64(),
            summary["sufficient"].as_bool()
        ),
        (Some(4032), Some(false))
    );
    s.stop().await;
}

/// Three days of 5-minute readings with meals and a night-time low: a deterministic series.
fn three_days() -> Vec<Value> {
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-27T00:00:00Z").expect("time");
    (0..864i64)
        .map(|i| {
            let t = start + chrono::Duration::minutes(5 * i);
            let wave = 150.0 + 70.0 * (i as f64 / 19.0).sin() + 25.0 * (i as f64 / 3.7).cos();
            let noise = ((i * 7919) % 23) as f64 - 11.0;
            let value = (wave + noise).clamp(45.0, 390.0).round();
            json!({"time": t.to_rfc3339(), "value": value})
        })
        .collect()
}

async fn get_json(s: &TestServer, token: &str, path: &str) -> Value {
    let r = s.req(Method::GET, path, token).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.expect("json")
}

/// The reports of a period in both units: summary, AGP, events, daily and hourly statistics.
async fn all_reports(s: &TestServer, token: &str, unit: &str) -> Vec<Value> {
    // Spans the spring-forward night of 2026-03-29 in Berlin.
    let period = "from=2026-03-26T00:00:00Z&to=2026-03-31T00:00:00Z";
    let mut out = Vec::new();
    for report in ["summary", "agp", "events", "daily", "hourly"] {
        let path = format!(
            "/api/v1/reports/{report}?{period}&unit={}",
            unit.replace('/', "%2F")
        );
        out.push(get_json(s, token, &path).await);
    }
    out
}

#[tokio::test]
async fn reports_ignore_upload_order_and_duplicated_uploads_and_agree_between_units() {
    let s = TestServer::start().await;
    let in_order = s.user("ana@example.org").await;
    let shuffled = s.user("ben@example.org").await;
    for t in [&in_order, &shuffled] {
        s.req(Method::PATCH, "/api/v1/me/settings", t)
            .json(&json!({"time_zone": "Europe/Berlin"}))
            .send()
            .await
            .expect("send");
    }
    let readings = three_days();
    let r = s
        .req(Method::POST, "/api/v1/readings", &in_order)
        .json(&readings)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success());

    // The same readings in a shuffled order, in chunks, a third of them uploaded twice and
    // everything once more at the end, newest first.
    let mut order: Vec<usize> = (0..readings.len()).collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..order.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        order.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let chunks: Vec<Vec<Value>> = order
        .chunks(97)
        .map(|c| c.iter().map(|&i| readings[i].clone()).collect())
        .collect();
    let mut uploads: Vec<Vec<Value>> = Vec::new();
    for (n, chunk) in chunks.iter().enumerate() {
        uploads.push(chunk.clone());
        if n % 3 == 0 {
            uploads.push(chunk.clone());
        }
    }
    uploads.push(readings.iter().rev().cloned().collect());
    for upload in &uploads {
        let r = s
            .req(Method::POST, "/api/v1/readings", &shuffled)
            .json(upload)
            .send()
            .await
            .expect("send");
        assert!(r.status().is_success());
    }

    let mgdl = all_reports(&s, &in_order, "mg/dL").await;
    assert_eq!(mgdl[0]["readings"], 864);
    assert!(mgdl[0]["mage"].is_number() && mgdl[0]["modd"].is_number());
    assert_eq!(
        all_reports(&s, &shuffled, "mg/dL").await,
        mgdl,
        "order and duplicates change nothing"
    );

    // mmol/L reports are the mg/dL ones converted at the edge: every glucose value agrees to
    // within the display rounding (0.05 mmol/L, plus the mg/dL figure's own 0.05 rounding).
    let mmol = all_reports(&s, &in_order, "mmol/L").await;
    let agree = |a: &Value, b: &Value, what: &str| {
        let (a, b) = (a.as_f64().expect(what), b.as_f64().expect(what));
        assert!(
            (a / 18.016 - b).abs() <= 0.05 + 0.05 / 18.016 + 1e-9,
            "{what}: {a} mg/dL vs {b} mmol/L"
        );
    };
    for k in ["mean", "sd", "modd", "conga_1h", "mage"] {
        agree(&mgdl[0][k], &mmol[0][k], k);
    }
    for k in [
        "tir", "tbr_54", "tbr_70", "tar_180", "tar_250", "gri", "gmi", "cv", "adrr",
    ] {
        assert_eq!(mgdl[0][k], mmol[0][k], "{k} does not depend on the unit");
    }
    let bins = |r: &Value| r["bins"].as_array().expect("bins").clone();
    for (a, b) in bins(&mgdl[1]).iter().zip(bins(&mmol[1]).iter()) {
        assert_eq!(a["count"], b["count"]);
        for p in ["p5", "p25", "p50", "p75", "p95"] {
            if a["count"].as_u64() > Some(0) {
                agree(&a[p], &b[p], p);
            }
        }
    }
    let events = |r: &Value| r["events"].as_array().expect("events").clone();
    assert!(!events(&mgdl[2]).is_empty());
    assert_eq!(events(&mgdl[2]).len(), events(&mmol[2]).len());
    for (a, b) in events(&mgdl[2]).iter().zip(events(&mmol[2]).iter()) {
        assert_eq!(
            (&a["kind"], &a["start"], &a["end"]),
            (&b["kind"], &b["start"], &b["end"])
        );
        agree(&a["extreme"], &b["extreme"], "extreme");
    }
    let days = |r: &Value| r["days"].as_array().expect("days").clone();
    // Berlin local days: 27th–30th (the 29th has 23 hours).
    assert_eq!(days(&mgdl[3]).len(), 4, "{}", mgdl[3]);
    for (a, b) in days(&mgdl[3]).iter().zip(days(&mmol[3]).iter()) {
        assert_eq!(a["date"], b["date"]);
        for k in ["mean", "min", "median", "max"] {
            agree(&a[k], &b[k], k);
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn invites_are_accepted_once_listed_and_revoked() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let ben = s.user("ben@example.org").await;
    let r = s
        .req(Method::POST, "/api/v1/shares", &ana)
        .json(&json!({"email": "ben@example.org", "role": "nurse"}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let r = s
        .req(Method::POST, "/api/v1/shares", &ana)
        .json(&json!({"email": "ben@example.org", "role": "caregiver"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let invite: Value = r.json().await.expect("json");
    assert_eq!(invite["status"], "pending");
    let token = invite["invite_token"].as_str().expect("token").to_owned();
    // Ana cannot follow herself.
    let r = s
        .req(Method::POST, "/api/v1/shares/accept", &ana)
        .json(&json!({"invite_token": token}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::CONFLICT, "conflict").await;
    let r = s
        .req(Method::POST, "/api/v1/shares/accept", &ben)
        .json(&json!({"invite_token": token}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let share: Value = r.json().await.expect("json");
    assert_eq!(share["status"], "active");
    // Single use.
    let r = s
        .req(Method::POST, "/api/v1/shares/accept", &ben)
        .json(&json!({"invite_token": token}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let following: Value = s
        .req(Method::GET, "/api/v1/following", &ben)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(following.as_array().map(Vec::len), Some(1));
    assert_eq!(following[0]["owner_id"], share["owner_id"]);
    let listed: Value = s
        .req(Method::GET, "/api/v1/shares", &ana)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(listed[0]["status"], "active");
    assert!(
        listed[0].get("invite_token").is_none(),
        "the token is shown once"
    );
    // Ben, a caregiver now, reads Ana's reports; a stranger cannot.
    let owner = share["owner_id"].as_i64().expect("owner");
    let summary = format!("/api/v1/reports/summary?person={owner}");
    let r = s
        .req(Method::GET, &summary, &ben)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let cy = s.user("cy@example.org").await;
    let r = s
        .req(Method::GET, &summary, &cy)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    // Ben cannot revoke Ana's share; Ana can, at once.
    let id = share["id"].as_i64().expect("id");
    let r = s
        .req(Method::DELETE, &format!("/api/v1/shares/{id}"), &ben)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = s
        .req(Method::DELETE, &format!("/api/v1/shares/{id}"), &ana)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let following: Value = s
        .req(Method::GET, "/api/v1/following", &ben)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(following.as_array().map(Vec::len), Some(0));
    let r = s
        .req(Method::GET, &summary, &ben)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    // Sharing needs a login session, not an API token.
    let (_, api_token) = s.api_token(&ana, &["read"]).await;
    let r = s
        .req(Method::GET, "/api/v1/shares", &api_token)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::FORBIDDEN, "session_required").await;
    s.stop().await;
}

/// Ana shares her data with `follower` in `role`; returns Ana's id.
async fn get_status(s: &TestServer, path: &str, who: &str) -> (StatusCode, Value) {
    let r = s.req(Method::GET, path, who).send().await.expect("send");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn followers_read_live_data_by_role_and_every_read_is_in_the_owners_access_log() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let ben = s.user("ben@example.org").await;
    let cy = s.user("cy@example.org").await;
    let dan = s.user("dan@example.org").await;
    let readings: Vec<Value> = (0..3)
        .map(|i| json!({"time": minutes_ago(15 - 5 * i), "value": 100 + i * 10}))
        .collect();
    let r = s
        .req(Method::POST, "/api/v1/readings", &ana)
        .json(&readings)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let owner = s.share(&ana, &ben, "ben@example.org", "caregiver").await;
    s.share(&ana, &cy, "cy@example.org", "clinician").await;
    let readings_path = format!("/api/v1/readings?person={owner}");
    let latest_path = format!("/api/v1/readings/latest?person={owner}");
    let treatments_path = format!("/api/v1/treatments?person={owner}");
    let summary_path = format!("/api/v1/reports/summary?person={owner}");
    // A caregiver reads live data and reports.
    let (status, page) = get_status(&s, &readings_path, &ben).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(3));
    let (status, latest) = get_status(&s, &latest_path, &ben).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["value"], 120.0);
    assert_eq!(
        get_status(&s, &treatments_path, &ben).await.0,
        StatusCode::OK
    );
    assert_eq!(get_status(&s, &summary_path, &ben).await.0, StatusCode::OK);
    // A clinician reads reports only; a stranger nothing (as if Ana did not exist).
    assert_eq!(
        get_status(&s, &readings_path, &cy).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get_status(&s, &summary_path, &cy).await.0, StatusCode::OK);
    for path in [
        &readings_path,
        &latest_path,
        &treatments_path,
        &summary_path,
    ] {
        assert_eq!(get_status(&s, path, &dan).await.0, StatusCode::NOT_FOUND);
    }
    // Ana's own reads are not logged; her followers' are, newest first, refusals not at all.
    assert_eq!(
        get_status(&s, "/api/v1/readings", &ana).await.0,
        StatusCode::OK
    );
    let (status, log) = get_status(&s, "/api/v1/access-log", &ana).await;
    assert_eq!(status, StatusCode::OK);
    let seen: Vec<(String, String)> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            (
                e["follower_email"].as_str().unwrap_or("").to_owned(),
                e["what"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("cy", "reports.summary"),
        ("ben", "reports.summary"),
        ("ben", "treatments"),
        ("ben", "readings.latest"),
        ("ben", "readings"),
    ]
    .iter()
    .map(|(who, what)| (format!("{who}@example.org"), (*what).to_owned()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(log["next_cursor"], Value::Null);
    // Pages of two: 2 + 2 + 1, nothing lost or repeated.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..3 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/access-log?limit=2&cursor={c}"),
            None => "/api/v1/access-log?limit=2".to_owned(),
        };
        let (status, page) = get_status(&s, &path, &ana).await;
        assert_eq!(status, StatusCode::OK);
        for e in page["items"].as_array().expect("items") {
            paged.push(e["what"].as_str().unwrap_or("").to_owned());
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(paged.len(), 5);
    assert_eq!(cursor, None);
    let (status, problem) = get_status(&s, "/api/v1/access-log?cursor=nonsense", &ana).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "validation_failed");
    // Each person sees their own log only; it needs a login session.
    let (_, ben_log) = get_status(&s, "/api/v1/access-log", &ben).await;
    assert_eq!(ben_log["items"].as_array().map(Vec::len), Some(0));
    let (_, api_token) = s.api_token(&ana, &["read"]).await;
    let (status, problem) = get_status(&s, "/api/v1/access-log", &api_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(problem["code"], "session_required");
    s.stop().await;
}
