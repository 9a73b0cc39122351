//! Sweeps over every operation of the served OpenAPI document, so that an endpoint added later
//! is covered without anyone remembering to list it:
//! - tenancy: another person (by session, read token and all-scope token) pointing each
//!   operation at the owner (`?person=`, the owner's ids in the path; valid bodies, so that no
//!   validation answers first) is refused with 404 or 403, nothing of the
//!   owner's appears in any answer, and the owner's data is unchanged afterwards;
//! - authentication: every operation not marked public answers 401 without a credential;
//! - CSRF: every unsafe operation with a cookie session and no (or a wrong) `X-CSRF-Token` is
//!   refused before it does anything.
//!
//! Parameters are filled by name from the tables below; an operation with a required parameter
//! the tables do not know fails the test, with the name to add.

mod common;

use common::{minutes_ago, TestServer, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SECRET_NOTE: &str = "owner-only-note-7f3a";
const SECRET_NAME: &str = "Oona Markerly";
const OWNER_EMAIL: &str = "owner@example.org";

/// One operation of the document.
struct Operation {
    method: Method,
    path: String,
    public: bool,
    /// Query parameters: (name, required).
    query: Vec<(String, bool)>,
    has_body: bool,
}

async fn operations(s: &TestServer) -> Vec<Operation> {
    let doc: Value = s
        .client
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let method = match method.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "put" => Method::PUT,
                "patch" => Method::PATCH,
                "delete" => Method::DELETE,
                _ => continue,
            };
            let query = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| {
                    (
                        p["name"].as_str().expect("name").to_owned(),
                        p["required"] == true,
                    )
                })
                .collect();
            ops.push(Operation {
                method,
                path: path.clone(),
                public: op["security"] == json!([{}]),
                query,
                has_body: op.get("requestBody").is_some(),
            });
        }
    }
    assert!(
        ops.len() >= 60,
        "the document lists {} operations",
        ops.len()
    );
    ops
}

/// The owner's things the sweep points at.
struct Owner {
    id: i64,
    reading_id: i64,
    token_id: i64,
    share_id: i64,
    push_id: i64,
}

impl Owner {
    /// The operation's URL with the owner's ids in the path and `person` set to the owner;
    /// whether it points at the owner at all.
    fn url(&self, op: &Operation) -> (String, bool) {
        let mut path = op.path.clone();
        let mut at_owner = false;
        while let Some(start) = path.find('{') {
            let end = path[start..].find('}').expect("closing brace") + start;
            let name = &path[start + 1..end];
            let value = match (name, op.path.as_str()) {
                ("id", p) if p.starts_with("/api/v1/readings/") => self.reading_id.to_string(),
                ("id", p) if p.starts_with("/api/v1/treatments/") => "owner-note".to_owned(),
                ("id", p) if p.starts_with("/api/v1/tokens/") => self.token_id.to_string(),
                ("id", p) if p.starts_with("/api/v1/shares/") => self.share_id.to_string(),
                ("id", p) if p.starts_with("/api/v1/push/subscriptions/") => {
                    self.push_id.to_string()
                }
                ("owner_id", _) => self.id.to_string(),
                // Not the owner's: the caller's own alerts of this kind, or export file.
                ("kind", _) => {
                    path.replace_range(start..=end, "high");
                    continue;
                }
                ("file", _) => {
                    path.replace_range(start..=end, "readings.csv");
                    continue;
                }
                (other, p) => panic!("the sweep needs a value for path parameter `{other}` of {p}"),
            };
            at_owner = true;
            path.replace_range(start..=end, &value);
        }
        let range = [("from", minutes_ago(600)), ("to", minutes_ago(-10))];
        let mut query: Vec<String> = Vec::new();
        for (name, required) in &op.query {
            let value = match name.as_str() {
                "person" => {
                    at_owner = true;
                    self.id.to_string()
                }
                "format" if op.path == "/api/v1/import" => "glucosync".to_owned(),
                "from" | "to" => range
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.replace('+', "%2B").replace(':', "%3A"))
                    .expect("range"),
                _ if !required => continue,
                other => panic!(
                    "the sweep needs a value for required query parameter `{other}` of {} {}",
                    op.method, op.path
                ),
            };
            query.push(format!("{name}={value}"));
        }
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        (path, at_owner)
    }
}

/// A valid body for the operations that point at the owner (validation must not answer
/// before authorization does); `{}` elsewhere, which only concerns the caller's own data.
fn body_for(op: &Operation) -> Value {
    match (op.method.as_str(), op.path.as_str()) {
        ("PUT", "/api/v1/treatments/{id}") => {
            json!({"time": minutes_ago(30), "kind": "note", "text": "changed by intruder"})
        }
        ("POST", "/api/v1/alerts/{kind}/snooze") => json!({"minutes": 30}),
        ("PATCH", "/api/v1/following/{owner_id}") => json!({"push": true, "email": true}),
        _ => json!({}),
    }
}

/// Operations the intruder does not run: they end the intruder's own session or account
/// (covered by the CSRF and unauthenticated passes, and by their own tests).
fn ends_the_callers_session(op: &Operation) -> bool {
    matches!(
        (op.method.as_str(), op.path.as_str()),
        ("DELETE", "/api/v1/me")
            | ("POST", "/api/v1/auth/logout")
            | ("POST", "/api/v1/auth/password")
    )
}

async fn send(
    s: &TestServer,
    op: &Operation,
    url: &str,
    credential: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut req = s.client.request(op.method.clone(), s.url(url));
    if let Some(token) = credential {
        req = req.bearer_auth(token);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if op.has_body {
        req = req.json(&body_for(op));
    }
    let r = req.send().await.expect("send");
    let status = r.status();
    let streaming = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    // An event stream does not end: its status is the answer.
    let text = if streaming {
        String::new()
    } else {
        r.text().await.expect("text")
    };
    (status, text)
}

/// The start of an answer, for a failure's message.
fn head(text: &str) -> &str {
    let mut end = text.len().min(400);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

async fn get_json(s: &TestServer, path: &str, token: &str) -> Value {
    let r = s.req(Method::GET, path, token).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_refuses_other_people_anonymous_callers_and_cross_site_requests() {
    let s = TestServer::start().await;
    let owner = s.user(OWNER_EMAIL).await;
    let cara = s.user("cara@example.org").await;
    let intruder = s.user("intruder@example.org").await;
    let (_, intruder_read) = s.api_token(&intruder, &["read"]).await;
    let (_, intruder_all) = s
        .api_token(&intruder, &["read", "readings:write", "treatments:write"])
        .await;

    // The owner's data: a profile, a reading, a note, a token, a share, a device, an alert.
    let r = s
        .req(Method::PATCH, "/api/v1/me", &owner)
        .json(&json!({"display_name": SECRET_NAME}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::POST, "/api/v1/readings", &owner)
        .json(&json!([{"time": minutes_ago(10), "value": 287}]))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .req(Method::POST, "/api/v1/treatments", &owner)
        .json(&json!({"id": "owner-note", "time": minutes_ago(30), "kind": "note", "text": SECRET_NOTE}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let (token_id, _) = s.api_token(&owner, &["read"]).await;
    let id = s
        .share(&owner, &cara, "cara@example.org", "caregiver")
        .await;
    let share_id = get_json(&s, "/api/v1/shares", &owner).await[0]["id"]
        .as_i64()
        .expect("share id");
    let push_id = s
        .store
        .add_push_subscription(
            id,
            "https://push.example.org/owner-device",
            "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
            "tBHItJI5svbpez7KI4CCXg",
            chrono::Utc::now().timestamp_millis(),
        )
        .await
        .expect("push subscription")
        .id;
    let reading_id = get_json(&s, "/api/v1/readings/latest", &owner).await["id"]
        .as_i64()
        .expect("reading id");
    let owner_things = Owner {
        id,
        reading_id,
        token_id,
        share_id,
        push_id,
    };
    let before = snapshot(&s, &owner).await;
    let ops = operations(&s).await;

    // 1. Another person, with each of their credentials.
    for credential in [&intruder, &intruder_read, &intruder_all] {
        for op in ops.iter().filter(|op| !ends_the_callers_session(op)) {
            let (url, at_owner) = owner_things.url(op);
            let (status, text) = send(&s, op, &url, Some(credential), &[]).await;
            let what = format!("{} {url}: {status}", op.method);
            assert!(!status.is_server_error(), "{what} {}", head(&text));
            for marker in [SECRET_NOTE, SECRET_NAME, OWNER_EMAIL, "\":287"] {
                assert!(
                    !text.contains(marker),
                    "{what} leaked {marker}: {}",
                    head(&text)
                );
            }
            if at_owner {
                assert!(
                    matches!(status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                    "{what} pointed at another person (only 404 or 403): {}",
                    head(&text)
                );
            }
        }
    }
    assert_eq!(
        snapshot(&s, &owner).await,
        before,
        "the owner's data changed"
    );

    // 2. No credential: 401 for everything not public, and public ones answer.
    for op in &ops {
        let (url, _) = owner_things.url(op);
        let (status, text) = send(&s, op, &url, None, &[]).await;
        if op.public {
            assert!(
                !status.is_server_error(),
                "{} {url}: {status} {text}",
                op.method
            );
        } else {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {url}: {text}",
                op.method
            );
        }
    }

    // 3. A cookie session without (or with a wrong) CSRF token: every unsafe operation is
    //    refused before it does anything; the session and the owner's data are intact.
    let login = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"email": OWNER_EMAIL, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let login: Value = login.json().await.expect("json");
    let cookie = format!(
        "glucosync_session={}",
        login["token"].as_str().expect("token")
    );
    let mut unsafe_ops = 0;
    for op in ops
        .iter()
        .filter(|op| op.method != Method::GET && !op.public)
    {
        unsafe_ops += 1;
        let (url, _) = owner_things.url(op);
        for csrf in [None, Some("gsc_not_the_token")] {
            let mut headers = vec![("cookie", cookie.as_str())];
            if let Some(token) = csrf {
                headers.push(("x-csrf-token", token));
            }
            let (status, text) = send(&s, op, &url, None, &headers).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{} {url}: {text}", op.method);
            let problem: Value = serde_json::from_str(&text).expect("problem json");
            assert_eq!(problem["code"], "csrf_failed", "{} {url}", op.method);
        }
    }
    assert!(unsafe_ops >= 25, "{unsafe_ops} unsafe operations");
    let me = s
        .client
        .get(s.url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "the cookie session still stands"
    );
    assert_eq!(
        snapshot(&s, &owner).await,
        before,
        "the owner's data changed"
    );
    s.stop().await;
}

/// What of the owner's the sweep could change, as the owner reads it.
async fn snapshot(s: &TestServer, owner: &str) -> Value {
    let range = format!(
        "from={}&to={}",
        minutes_ago(600).replace('+', "%2B").replace(':', "%3A"),
        minutes_ago(-10).replace('+', "%2B").replace(':', "%3A")
    );
    let mut alerts = get_json(s, "/api/v1/alerts", owner).await;
    // Evaluated again as time passes; what matters is who changed them.
    strip(&mut alerts, &["evaluated_at", "updated_at", "value_mgdl"]);
    json!({
        "me": get_json(s, "/api/v1/me", owner).await,
        "settings": get_json(s, "/api/v1/me/settings", owner).await,
        "readings": get_json(s, &format!("/api/v1/readings?{range}"), owner).await,
        "treatments": get_json(s, &format!("/api/v1/treatments?{range}"), owner).await,
        "tokens": get_json(s, "/api/v1/tokens", owner).await.as_array().map(Vec::len),
        "shares": get_json(s, "/api/v1/shares", owner).await,
        "push": get_json(s, "/api/v1/push/subscriptions", owner).await,
        "alerts": alerts,
        "nightscout": get_json(s, "/api/v1/nightscout", owner).await,
    })
}

fn strip(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(map) => {
            for key in keys {
                map.remove(*key);
            }
            for value in map.values_mut() {
                strip(value, keys);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| strip(i, keys)),
        _ => {}
    }
}
