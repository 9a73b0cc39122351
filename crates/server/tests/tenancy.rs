//! Tenancy: every data endpoint, tried with another person's ids and credentials and with
//! tokens of insufficient scope. All refused, and nothing of the owner's data in any answer.

mod common;

use common::{minutes_ago, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A marker value and note that must never appear in a response to anyone but the owner.
const SECRET_VALUE: f64 = 287.0;
const SECRET_NOTE: &str = "owner-only-note-7f3a";

#[tokio::test]
async fn no_endpoint_lets_one_person_see_or_change_anothers_data() {
    let s = TestServer::start().await;
    let owner = s.user("owner@example.org").await;
    let intruder = s.user("intruder@example.org").await;
    let (_, intruder_read) = s.api_token(&intruder, &["read"]).await;
    let (owner_token_id, _) = s.api_token(&owner, &["read"]).await;
    let (_, owner_upload_only) = s.api_token(&owner, &["readings:write"]).await;
    let (_, owner_read_only) = s.api_token(&owner, &["read"]).await;

    let t = minutes_ago(30);
    let r = s
        .req(Method::POST, "/api/v1/readings", &owner)
        .json(&json!({"time": t, "value": SECRET_VALUE}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .req(Method::POST, "/api/v1/treatments", &owner)
        .json(&json!({"id": "owner-note", "time": t, "kind": "note", "text": SECRET_NOTE}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let latest: Value = s
        .req(Method::GET, "/api/v1/readings/latest", &owner)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let reading_id = latest["id"].as_i64().expect("id");

    let note_update = json!({"time": t, "kind": "note", "text": "changed by intruder"});
    let range = format!(
        "from={}&to={}",
        enc(&minutes_ago(600)),
        enc(&minutes_ago(-10))
    );
    // (method, path, body): every endpoint that reads or changes a person's data.
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/me".into(), None),
        (Method::GET, "/api/v1/me/settings".into(), None),
        (Method::GET, format!("/api/v1/readings?{range}"), None),
        (Method::GET, "/api/v1/readings/latest".into(), None),
        (
            Method::DELETE,
            format!("/api/v1/readings/{reading_id}"),
            None,
        ),
        (Method::DELETE, format!("/api/v1/readings?{range}"), None),
        (Method::GET, format!("/api/v1/treatments?{range}"), None),
        (Method::GET, "/api/v1/treatments/owner-note".into(), None),
        (
            Method::PUT,
            "/api/v1/treatments/owner-note".into(),
            Some(note_update.clone()),
        ),
        (Method::DELETE, "/api/v1/treatments/owner-note".into(), None),
        (Method::GET, "/api/v1/tokens".into(), None),
        (
            Method::GET,
            format!("/api/v1/reports/summary?{range}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/tokens/{owner_token_id}"),
            None,
        ),
    ];

    // 1. The intruder's session and read token: answers are about the intruder only (empty
    //    lists, their own profile) or not found; never the owner's data.
    for credential in [&intruder, &intruder_read] {
        for (method, path, body) in &endpoints {
            let mut req = s.req(method.clone(), path, credential);
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req.send().await.expect("send");
            let status = r.status();
            let text = r.text().await.expect("text");
            assert!(
                !text.contains(SECRET_NOTE)
                    && !text.contains("287")
                    && !text.contains("owner@example.org"),
                "{method} {path} leaked the owner's data: {text}"
            );
            assert!(
                status.is_client_error() || status.is_success(),
                "{method} {path}: {status}"
            );
            if *method != Method::GET && status.is_success() {
                // A successful write may only have touched the intruder's own (empty) data.
                assert!(
                    path.contains("readings?") && text.contains("\"deleted\":0"),
                    "{method} {path} succeeded: {text}"
                );
            }
        }
    }

    // 2. The owner's own tokens without the needed scope.
    let scoped: Vec<(&str, Method, String, Option<Value>)> = vec![
        (
            &owner_upload_only,
            Method::GET,
            format!("/api/v1/readings?{range}"),
            None,
        ),
        (
            &owner_upload_only,
            Method::GET,
            "/api/v1/readings/latest".into(),
            None,
        ),
        (
            &owner_upload_only,
            Method::GET,
            "/api/v1/treatments/owner-note".into(),
            None,
        ),
        (
            &owner_upload_only,
            Method::POST,
            "/api/v1/treatments".into(),
            Some(json!({"time": t, "kind": "carbs", "grams": 5})),
        ),
        (
            &owner_upload_only,
            Method::DELETE,
            "/api/v1/treatments/owner-note".into(),
            None,
        ),
        (&owner_upload_only, Method::GET, "/api/v1/me".into(), None),
        (
            &owner_read_only,
            Method::POST,
            "/api/v1/readings".into(),
            Some(json!({"time": t, "value": 100, "device": "x"})),
        ),
        (
            &owner_read_only,
            Method::DELETE,
            format!("/api/v1/readings/{reading_id}"),
            None,
        ),
        (
            &owner_read_only,
            Method::PUT,
            "/api/v1/treatments/owner-note".into(),
            Some(note_update.clone()),
        ),
        (
            &owner_read_only,
            Method::PATCH,
            "/api/v1/me/settings".into(),
            Some(json!({"target_high_mgdl": 200})),
        ),
        (
            &owner_read_only,
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name": "escalate", "scopes": ["read", "readings:write"]})),
        ),
        (
            &owner_read_only,
            Method::POST,
            "/api/v1/auth/password".into(),
            Some(json!({"current_password": "x", "new_password": "y"})),
        ),
    ];
    for (token, method, path, body) in scoped {
        let mut req = s.req(method.clone(), &path, token);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = req.send().await.expect("send");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let text = r.text().await.expect("text");
        assert!(
            !text.contains(SECRET_NOTE) && !text.contains("287"),
            "{text}"
        );
    }

    // 3. No credential at all.
    for (method, path, _) in &endpoints {
        let r = s.req(method.clone(), path, "").send().await.expect("send");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }

    // The owner's data is untouched by all of the above.
    let note: Value = s
        .req(Method::GET, "/api/v1/treatments/owner-note", &owner)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(note["text"], SECRET_NOTE);
    let latest: Value = s
        .req(Method::GET, "/api/v1/readings/latest", &owner)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(latest["value"], SECRET_VALUE);
    let tokens: Value = s
        .req(Method::GET, "/api/v1/tokens", &owner)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(tokens.as_array().map(Vec::len), Some(3));
    s.stop().await;
}

fn enc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
