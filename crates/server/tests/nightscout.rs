//! The Nightscout-compatible API's conformance suite (docs/nightscout.md), written from the
//! behaviours Nightscout clients rely on: status codes, answer shapes, duplicates, default
//! counts and order, the three ways to authenticate, and tenancy between two people's sites.
//! Runs on SQLite, and on PostgreSQL with `GS_TEST_BACKEND=postgres` (scripts/test does both).
//!
//! Request bodies in the exact shapes real uploaders send are in
//! `crates/glucoengine/tests/nightscout/bodies/` (their README says where each comes from).

mod common;

use common::{expect_problem, TestServer};
use glucosync_server::nightscout::access::sha1_hex;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

const BODIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../glucoengine/tests/nightscout/bodies/"
);

fn body(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{BODIES}{name}")).expect("body file");
    serde_json::from_str(&text).expect("json")
}

/// A person with a Nightscout site: session, site path, API secret.
struct Person {
    session: String,
    base: String,
    secret: String,
}

impl Person {
    async fn new(s: &TestServer, email: &str) -> Person {
        let session = s.user(email).await;
        let site = s.nightscout_site(&session).await;
        Person {
            session,
            base: site["base_url"].as_str().expect("base").to_owned(),
            secret: site["api_secret"].as_str().expect("secret").to_owned(),
        }
    }

    /// A request to this person's site with the API secret, as uploaders send it.
    fn ns(&self, s: &TestServer, method: Method, path: &str) -> RequestBuilder {
        s.client
            .request(method, s.url(&format!("{}{path}", self.base)))
            .header("api-secret", sha1_hex(&self.secret))
    }

    fn anonymous(&self, s: &TestServer, method: Method, path: &str) -> RequestBuilder {
        s.client
            .request(method, s.url(&format!("{}{path}", self.base)))
    }
}

async fn json_of(r: RequestBuilder) -> (StatusCode, Value) {
    let r = r.send().await.expect("send");
    let status = r.status();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn sgv(date: i64, value: i64, device: &str) -> Value {
    json!({"type": "sgv", "sgv": value, "date": date, "direction": "Flat", "device": device})
}

#[tokio::test]
async fn a_site_is_made_once_its_secret_shown_to_its_owner_and_rotated() {
    let s = TestServer::start().await;
    let ana = Person::new(&s, "ana@example.org").await;
    assert!(ana.base.starts_with("/ns/"), "{}", ana.base);
    let handle = ana.base.trim_start_matches("/ns/");
    assert!(handle
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    assert!(ana.secret.len() >= 12, "Nightscout needs 12 characters");
    let (status, again) = json_of(s.req(Method::GET, "/api/v1/nightscout", &ana.session)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (again["base_url"].as_str(), again["api_secret"].as_str()),
        (Some(ana.base.as_str()), Some(ana.secret.as_str()))
    );
    assert_eq!(again["public_read"], false);

    // An API token (an uploader's) cannot read the secret.
    let (_, token) = s.api_token(&ana.session, &["read"]).await;
    let r = s
        .req(Method::GET, "/api/v1/nightscout", &token)
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::FORBIDDEN, "session_required").await;

    let (status, _) = json_of(ana.ns(&s, Method::GET, "/api/v1/entries.json")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, rotated) =
        json_of(s.req(Method::POST, "/api/v1/nightscout/secret", &ana.session)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(rotated["api_secret"], ana.secret.as_str());
    assert_eq!(rotated["base_url"], ana.base.as_str());
    let (status, _) = json_of(ana.ns(&s, Method::GET, "/api/v1/entries.json")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old secret stops at once"
    );
    let new_secret = rotated["api_secret"].as_str().expect("secret");
    let r = ana
        .anonymous(&s, Method::GET, "/api/v1/entries.json")
        .header("api-secret", sha1_hex(new_secret))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn entries_answer_in_request_order_with_ids_and_are_stored_once() {
    let s = TestServer::start().await;
    let ana = Person::new(&s, "ana@example.org").await;
    let t = now_ms() - now_ms() % 300_000 - 3_600_000;
    let first = json!([
        sgv(t, 100, "xDrip-DexcomG6"),
        sgv(t + 300_000, 104, "xDrip-DexcomG6")
    ]);
    let (status, answer) = json_of(ana.ns(&s, Method::POST, "/api/v1/entries").json(&first)).await;
    assert_eq!(status, StatusCode::OK, "Loop needs 200, not 201: {answer}");
    let answer = answer.as_array().expect("an array").clone();
    assert_eq!(answer.len(), 2);
    assert!(answer.iter().all(|e| e["_id"].is_string()));
    assert_eq!(answer[1]["sgv"], 104, "the answer is the request, in order");

    // A second uploader (nightscout-connect) sends the same reading as another device, in a
    // batch with a new one: same length and order, the duplicate carries the stored `_id`.
    let second = json!([sgv(t + 600_000, 110, "share2"), sgv(t, 101, "share2")]);
    let (_, answer2) = json_of(
        ana.ns(&s, Method::POST, "/api/v1/entries.json")
            .json(&second),
    )
    .await;
    let answer2 = answer2.as_array().expect("array").clone();
    assert_eq!(answer2.len(), 2);
    assert_eq!(answer2[1]["_id"], answer[0]["_id"]);

    let (_, entries) = json_of(ana.ns(&s, Method::GET, "/api/v1/entries.json")).await;
    let entries = entries.as_array().expect("array").clone();
    let values: Vec<i64> = entries
        .iter()
        .map(|e| e["sgv"].as_i64().expect("sgv"))
        .collect();
    assert_eq!(values, vec![110, 104, 100], "newest first, stored once");
    assert_eq!(
        entries[0]["delta"].as_f64(),
        Some(6.0),
        "delta from the previous reading"
    );
    assert_eq!(
        entries[2]["delta"].as_f64(),
        Some(0.0),
        "py-nightscout needs a number even without one"
    );
    assert_eq!(entries[0]["date"], t + 600_000);
    assert_eq!(entries[0]["type"], "sgv");
    assert!(entries[0]["dateString"].is_string());

    // The same store as GlucoSync's own API: the PWA sees them.
    let (_, readings) = json_of(s.req(Method::GET, "/api/v1/readings", &ana.session)).await;
    assert_eq!(readings["items"].as_array().map(Vec::len), Some(3));

    // count, current, sgv, find filters and the text forms.
    let (_, two) = json_of(ana.ns(&s, Method::GET, "/api/v1/entries/sgv.json?count=2")).await;
    assert_eq!(two.as_array().map(Vec::len), Some(2));
    let (_, current) = json_of(ana.ns(&s, Method::GET, "/api/v1/entries/current.json")).await;
    assert_eq!(current[0]["sgv"], 110);
    let path = format!(
        "/api/v1/entries.json?find[sgv][$gte]=104&find[date][$lte]={}",
        t + 300_000
    );
    let (_, found) = json_of(ana.ns(&s, Method::GET, &path)).await;
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found[0]["sgv"], 104);
    let r = ana
        .ns(&s, Method::GET, "/api/v1/entries.csv?count=1")
        .send()
        .await
        .expect("send");
    let csv = r.text().await.expect("text");
    assert_eq!(csv.split(',').nth(2), Some("110"), "{csv}");
    let r = ana
        .ns(&s, Method::GET, "/api/v1/entries/sgv.txt?count=1")
        .send()
        .await
        .expect("send");
    assert_eq!(r.text().await.expect("text").split('\t').count(), 5);

    // Deleting by id; deleting everything at once is refused.
    let id = entries[0]["_id"].as_str().expect("id");
    let (status, deleted) =
        json_of(ana.ns(&s, Method::DELETE, &format!("/api/v1/entries/{id}"))).await;
    assert_eq!((status, deleted["n"].as_i64()), (StatusCode::OK, Some(1)));
    let (status, _) = json_of(ana.ns(&s, Method::DELETE, "/api/v1/entries")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    s.stop().await;
}

#[tokio::test]
async fn real_uploader_bodies_are_stored_and_their_own_fields_come_back() {
    let s = TestServer::start().await;
    let ana = Person::new(&s, "ana@example.org").await;
    for (file, path) in [
        ("xdrip_entries.json", "/api/v1/entries"),
        ("xdrip_entries_calibration.json", "/api/v1/entries"),
        ("loop_entries.json", "/api/v1/entries"),
        ("connect_entries.json", "/api/v1/entries.json"),
        ("connect_librelinkup_entries.json", "/api/v1/entries.json"),
        ("loop_carbs.json", "/api/v1/treatments"),
        ("loop_bolus.json", "/api/v1/treatments"),
        ("loop_temp_basal.json", "/api/v1/treatments"),
        ("trio_treatments.json", "/api/v1/treatments.json"),
        ("trio_connect_note.json", "/api/v1/treatments.json"),
        ("loop_devicestatus.json", "/api/v1/devicestatus"),
        ("xdrip_devicestatus.json", "/api/v1/devicestatus"),
        (
            "xdrip_devicestatus_transmitter.json",
            "/api/v1/devicestatus",
        ),
    ] {
        let sent = body(file);
        let (status, answer) = json_of(ana.ns(&s, Method::POST, path).json(&sent)).await;
        assert_eq!(status, StatusCode::OK, "{file}: {answer}");
        let expected = sent.as_array().map_or(1, Vec::len);
        let answer = answer
            .as_array()
            .unwrap_or_else(|| panic!("{file}: {answer}"));
        assert_eq!(answer.len(), expected, "{file}");
        assert!(
            answer
                .iter()
                .all(|a| a["_id"].as_str().is_some_and(|id| !id.is_empty())),
            "{file}: {answer:?}"
        );
    }
    // xDrip+ PUTs its treatments one at a time.
    for t in body("xdrip_treatments.json").as_array().expect("array") {
        let (status, answer) = json_of(ana.ns(&s, Method::PUT, "/api/v1/treatments").json(t)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    // Loop's carbs come back with Loop's own fields.
    let (_, treatments) =
        json_of(ana.ns(&s, Method::GET, "/api/v1/treatments.json?count=1000")).await;
    let treatments = treatments.as_array().expect("array").clone();
    let loop_carbs = &body("loop_carbs.json")[0];
    let back = treatments
        .iter()
        .find(|t| t["syncIdentifier"] == loop_carbs["syncIdentifier"])
        .expect("Loop's carb entry is there");
    assert_eq!(back["carbs"].as_f64(), loop_carbs["carbs"].as_f64());
    assert_eq!(back["absorptionTime"], loop_carbs["absorptionTime"]);
    assert_eq!(back["eventType"], "Carb Correction");
    // Sending everything again stores nothing new.
    let before = treatments.len();
    for (file, path) in [
        ("loop_carbs.json", "/api/v1/treatments"),
        ("trio_treatments.json", "/api/v1/treatments.json"),
    ] {
        let (status, _) = json_of(ana.ns(&s, Method::POST, path).json(&body(file))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, again) = json_of(ana.ns(&s, Method::GET, "/api/v1/treatments.json?count=1000")).await;
    assert_eq!(again.as_array().map(Vec::len), Some(before));
    // The calibration is kept as an entry of its own type.
    let (_, cal) = json_of(ana.ns(&s, Method::GET, "/api/v1/entries/cal.json")).await;
    assert_eq!(cal.as_array().map(Vec::len), Some(1), "{cal}");
    // Device status comes back newest first with a created_at.
    let (_, statuses) = json_of(ana.ns(&s, Method::GET, "/api/v1/devicestatus.json")).await;
    let statuses = statuses.as_array().expect("array");
    assert!(!statuses.is_empty());
    assert!(statuses.iter().all(|d| d["created_at"].is_string()));
    s.stop().await;
}

#[tokio::test]
async fn treatments_dedup_across_uploaders_edit_and_delete_like_loop() {
    let s = TestServer::start().await;
    let ana = Person::new(&s, "ana@example.org").await;
    let at = "2026-11-27T09:00:00Z";
    let loop_carbs = json!([{"eventType": "Carb Correction", "carbs": 30, "created_at": at,
        "syncIdentifier": "loop-1", "absorptionTime": 180, "enteredBy": "Loop"}]);
    let (status, answer) = json_of(
        ana.ns(&s, Method::POST, "/api/v1/treatments")
            .json(&loop_carbs),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let id = answer[0]["_id"].as_str().expect("id").to_owned();
    // The same meal from a careportal, no identifiers: created_at + event decide.
    let careportal = json!({"eventType": "Carb Correction", "carbs": 30, "created_at": at});
    let (_, answer) = json_of(
        ana.ns(&s, Method::POST, "/api/v1/treatments")
            .json(&careportal),
    )
    .await;
    assert_eq!(answer[0]["_id"], id.as_str());
    // Loop edits by `_id`, then deletes.
    let edit = json!({"_id": id, "eventType": "Carb Correction", "carbs": 45, "created_at": at,
        "syncIdentifier": "loop-1"});
    let (status, _) = json_of(ana.ns(&s, Method::PUT, "/api/v1/treatments").json(&edit)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = json_of(ana.ns(&s, Method::GET, "/api/v1/treatments")).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["carbs"], 45.0);
    // A carb entry made in GlucoSync's own API is a Nightscout treatment too.
    let (status, _) = json_of(
        s.req(Method::POST, "/api/v1/treatments", &ana.session)
            .json(&json!({"time": "2026-11-27T09:30:00Z", "kind": "carbs", "grams": 12})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, list) = json_of(ana.ns(&s, Method::GET, "/api/v1/treatments")).await;
    assert_eq!(list[0]["carbs"], 12.0, "{list}");
    assert_eq!(list[0]["eventType"], "Carb Correction");
    let (status, deleted) =
        json_of(ana.ns(&s, Method::DELETE, &format!("/api/v1/treatments/{id}"))).await;
    assert_eq!((status, deleted["n"].as_i64()), (StatusCode::OK, Some(1)));
    let (_, list) = json_of(ana.ns(&s, Method::GET, "/api/v1/treatments")).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    s.stop().await;
}

#[tokio::test]
async fn credentials_secret_token_and_jwt_work_where_clients_send_them() {
    let s = TestServer::start().await;
    let ana = Person::new(&s, "ana@example.org").await;
    let (token_id, read_token) = s.api_token(&ana.session, &["read"]).await;
    let (_, uploader) = s
        .api_token(
            &ana.session,
            &["read", "readings:write", "treatments:write"],
        )
        .await;
    let entries = "/api/v1/entries.json";
    let get = |r: RequestBuilder| async move { r.send().await.expect("send").status() };

    // Nothing, a wrong secret, an empty bearer (AndroidAPS's first try): 401.
    assert_eq!(
        get(ana.anonymous(&s, Method::GET, entries)).await,
        StatusCode::UNAUTHORIZED
    );
    let wrong = ana
        .anonymous(&s, Method::GET, entries)
        .header("api-secret", sha1_hex("not the secret"));
    assert_eq!(get(wrong).await, StatusCode::UNAUTHORIZED);
    let empty = ana
        .anonymous(&s, Method::GET, entries)
        .header("authorization", "Bearer ");
    assert_eq!(get(empty).await, StatusCode::UNAUTHORIZED);
    // The secret: upper-case SHA-1, or `?secret=`.
    let upper = ana
        .anonymous(&s, Method::GET, entries)
        .header("API-SECRET", sha1_hex(&ana.secret).to_uppercase());
    assert_eq!(get(upper).await, StatusCode::OK);
    let in_query = ana.anonymous(
        &s,
        Method::GET,
        &format!("{entries}?secret={}", sha1_hex(&ana.secret)),
    );
    assert_eq!(get(in_query).await, StatusCode::OK);
    // A read token: `?token=`, `api-secret: token=…` (py-nightscout), or Nightscout's
    // `name-<token>` form; it reads but cannot write.
    for r in [
        ana.anonymous(&s, Method::GET, &format!("{entries}?token={read_token}")),
        ana.anonymous(&s, Method::GET, entries)
            .header("api-secret", format!("token={read_token}")),
        ana.anonymous(
            &s,
            Method::GET,
            &format!("{entries}?token=phone-{read_token}"),
        ),
    ] {
        assert_eq!(get(r).await, StatusCode::OK);
    }
    let write = ana
        .anonymous(
            &s,
            Method::POST,
            &format!("/api/v1/entries?token={read_token}"),
        )
        .json(&json!([sgv(now_ms() - 60_000, 100, "x")]));
    assert_eq!(get(write).await, StatusCode::FORBIDDEN);
    let write = ana
        .anonymous(
            &s,
            Method::POST,
            &format!("/api/v1/entries?token={uploader}"),
        )
        .json(&json!([sgv(now_ms() - 60_000, 100, "x")]));
    assert_eq!(get(write).await, StatusCode::OK);

    // The JWT exchange, at the site and at the root (AndroidAPS asks the root), also with
    // `token=` in front (Nightguard).
    for path in [
        format!("{}/api/v2/authorization/request/{uploader}", ana.base),
        format!("/api/v2/authorization/request/{uploader}"),
        format!("/api/v2/authorization/request/token={uploader}"),
    ] {
        let (status, jwt) = json_of(s.client.get(s.url(&path))).await;
        assert_eq!(status, StatusCode::OK, "{path}: {jwt}");
        assert_eq!(
            jwt["exp"].as_i64().expect("exp") - jwt["iat"].as_i64().expect("iat"),
            8 * 3600
        );
        assert_eq!(jwt["sub"], "test");
        let bearer = ana
            .anonymous(&s, Method::GET, entries)
            .bearer_auth(jwt["token"].as_str().expect("token"));
        assert_eq!(get(bearer).await, StatusCode::OK);
    }
    let (status, _) = json_of(
        s.client
            .get(s.url("/api/v2/authorization/request/gsa_unknown")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A JWT ends with its token.
    let (_, jwt) = json_of(
        s.client
            .get(s.url(&format!("/api/v2/authorization/request/{read_token}"))),
    )
    .await;
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/tokens/{token_id}"),
            &ana.session,
        )
        .send()
        .await
        .expect("revoke");
    assert!(r.status().is_success());
    let bearer = ana
        .anonymous(&s, Method::GET, entries)
        .bearer_auth(jwt["token"].as_str().expect("token"));
    assert_eq!(get(bearer).await, StatusCode::UNAUTHORIZED);

    // verifyauth always answers 200; experiments/test is Loop's check of the secret.
    let (status, v) = json_of(ana.ns(&s, Method::GET, "/api/v1/verifyauth")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["message"]["canRead"], true);
    assert_eq!(v["message"]["isAdmin"], true);
    let (status, v) = json_of(ana.anonymous(&s, Method::GET, "/api/v1/verifyauth")).await;
    assert_eq!(
        (status, &v["message"]["canRead"]),
        (StatusCode::OK, &json!(false))
    );
    let (status, _) = json_of(ana.ns(&s, Method::GET, "/api/v1/experiments/test")).await;
    assert_eq!(status, StatusCode::OK);
    let test = ana.anonymous(
        &s,
        Method::GET,
        &format!("/api/v1/experiments/test?token={uploader}"),
    );
    assert_eq!(get(test).await, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test]
async fn loop_and_trio_at_the_root_reach_the_secrets_site_and_glucosync_keeps_its_paths() {
    let s = TestServer::start().await;
    let ana = Person::new(&s, "ana@example.org").await;
    let bo = Person::new(&s, "bo@example.org").await;
    let secret = |p: &Person| sha1_hex(&p.secret);
    let carbs = json!([{"eventType": "Carb Correction", "carbs": 20,
        "created_at": "2026-11-27T08:00:00Z", "syncIdentifier": "root-1"}]);
    let (status, answer) = json_of(
        s.client
            .post(s.url("/api/v1/treatments"))
            .header("api-secret", secret(&ana))
            .json(&carbs),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer[0]["_id"], "root-1");
    let (status, _) = json_of(
        s.client
            .post(s.url("/api/v1/entries"))
            .header("api-secret", secret(&ana))
            .json(&json!([sgv(now_ms() - 120_000, 123, "loop")])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, on_site) = json_of(ana.ns(&s, Method::GET, "/api/v1/treatments.json")).await;
    assert_eq!(on_site[0]["_id"], "root-1");
    let (_, bos) = json_of(bo.ns(&s, Method::GET, "/api/v1/treatments.json")).await;
    assert_eq!(bos.as_array().map(Vec::len), Some(0), "Bo's site is Bo's");
    // Anonymous at the root is refused even with public read on (whose site would it be?).
    let (status, _) = json_of(s.client.get(s.url("/api/v1/entries.json"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // GlucoSync's own treatments API at the same path is unchanged.
    let (status, own) = json_of(s.req(
        Method::GET,
        "/api/v1/treatments?from=2026-11-26T00:00:00Z&to=2026-11-28T00:00:00Z",
        &ana.session,
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["items"][0]["id"], "root-1");
    s.stop().await;
}

#[tokio::test]
async fn nobody_reaches_another_persons_site_without_a_share() {
    let s = TestServer::start().await;
    let ana = Person::new(&s, "ana@example.org").await;
    let bo = Person::new(&s, "bo@example.org").await;
    let (_, bo_token) = s
        .api_token(&bo.session, &["read", "readings:write", "treatments:write"])
        .await;
    let (status, _) = json_of(
        ana.ns(&s, Method::POST, "/api/v1/entries")
            .json(&json!([sgv(now_ms() - 60_000, 150, "x")])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let ana_entries = format!("{}/api/v1/entries.json", ana.base);
    // Bo's secret and Bo's token on Ana's site, for every collection and method.
    for (method, path) in [
        (Method::GET, "/api/v1/entries.json"),
        (Method::POST, "/api/v1/entries"),
        (Method::GET, "/api/v1/treatments.json"),
        (Method::POST, "/api/v1/treatments"),
        (Method::GET, "/api/v1/devicestatus.json"),
        (Method::GET, "/api/v1/profile.json"),
        (Method::GET, "/api/v1/status.json"),
        (Method::DELETE, "/api/v1/entries?find[sgv][$gte]=0"),
        (Method::GET, "/api/v3/status"),
        (Method::GET, "/api/v3/lastModified"),
        (Method::GET, "/api/v3/entries"),
        (Method::GET, "/api/v3/entries/history/0"),
        (Method::POST, "/api/v3/treatments"),
        (Method::GET, "/api/v3/devicestatus"),
    ] {
        let url = s.url(&format!("{}{path}", ana.base));
        let with_secret = s
            .client
            .request(method.clone(), &url)
            .header("api-secret", sha1_hex(&bo.secret))
            .json(&json!([]));
        assert_eq!(
            with_secret.send().await.expect("send").status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        let with_token = s
            .client
            .request(
                method.clone(),
                format!(
                    "{url}{}token={bo_token}",
                    if path.contains('?') { '&' } else { '?' }
                ),
            )
            .json(&json!([]));
        assert_eq!(
            with_token.send().await.expect("send").status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    // A site that does not exist is 404 whoever asks.
    let (status, _) = json_of(
        s.client
            .get(s.url("/ns/nosuchsite/api/v1/entries.json"))
            .header("api-secret", sha1_hex(&ana.secret)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // With a share, Bo's token reads Ana's site (and the read is in Ana's access log), but
    // does not write.
    s.share(&ana.session, &bo.session, "bo@example.org", "caregiver")
        .await;
    let (status, read) = json_of(
        s.client
            .get(s.url(&format!("{ana_entries}?token={bo_token}"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read[0]["sgv"], 150);
    let (_, log) = json_of(s.req(Method::GET, "/api/v1/access-log", &ana.session)).await;
    assert!(log.to_string().contains("nightscout.entries"), "{log}");
    let (status, _) = json_of(
        s.client
            .post(s.url(&format!("{}/api/v1/entries?token={bo_token}", ana.base)))
            .json(&json!([sgv(now_ms() - 30_000, 99, "x")])),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Public read: anonymous reads the site, still cannot write.
    let (status, _) = json_of(ana.anonymous(&s, Method::GET, "/api/v1/entries.json")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "nothing is public by default"
    );
    let (status, _) = json_of(
        s.req(Method::PUT, "/api/v1/nightscout", &ana.session)
            .json(&json!({"public_read": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, read) = json_of(ana.anonymous(&s, Method::GET, "/api/v1/entries.json")).await;
    assert_eq!((status, &read[0]["sgv"]), (StatusCode::OK, &json!(150)));
    let (status, _) = json_of(
        ana.anonymous(&s, Method::POST, "/api/v1/entries")
            .json(&json!([sgv(now_ms() - 20_000, 99, "x")])),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn devicestatus_profile_and_status_answer_like_nightscout() {
    let s = TestServer::start().await;
    let ana = Person::new(&s, "ana@example.org").await;
    let base = now_ms() - 3_600_000;
    let statuses: Vec<Value> = (0..12)
        .map(|i| json!({"device": "loop://iPhone", "created_at": chrono::DateTime::from_timestamp_millis(base + i * 300_000).expect("t").to_rfc3339(), "pump": {"reservoir": 100 - i}}))
        .collect();
    let (status, answer) = json_of(
        ana.ns(&s, Method::POST, "/api/v1/devicestatus")
            .json(&statuses),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer.as_array().map(Vec::len), Some(12));
    let (_, got) = json_of(ana.ns(&s, Method::GET, "/api/v1/devicestatus.json")).await;
    let got = got.as_array().expect("array");
    assert_eq!(got.len(), 10, "default count");
    assert_eq!(got[0]["pump"]["reservoir"], 89, "newest first");

    // The dashboard's view of it: the newest value of each field, for the person and their
    // caregivers only.
    let (status, summary) =
        json_of(s.req(Method::GET, "/api/v1/device-status", &ana.session)).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["pump_reservoir_units"], 89.0);
    assert!(summary["updated_at"].is_string());
    let stranger = s.user("eve@example.org").await;
    let owner_id = s
        .req(Method::GET, "/api/v1/me", &ana.session)
        .send()
        .await
        .expect("me")
        .json::<Value>()
        .await
        .expect("json")["id"]
        .as_i64()
        .expect("id");
    let (status, _) = json_of(s.req(
        Method::GET,
        &format!("/api/v1/device-status?person={owner_id}"),
        &stranger,
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no share, no data");
    let (status, _) = json_of(s.req(Method::GET, "/api/v1/device-status", &stranger)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing reported");

    let profile = json!({"defaultProfile": "Default", "startDate": "2026-11-01T00:00:00.000Z",
        "units": "mg/dl", "store": {"Default": {"dia": 6, "timezone": "Europe/Berlin",
        "basal": [{"time": "00:00", "value": 0.8, "timeAsSeconds": 0}]}}});
    let (status, _) = json_of(ana.ns(&s, Method::POST, "/api/v1/profile").json(&profile)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, profiles) = json_of(ana.ns(&s, Method::GET, "/api/v1/profile.json")).await;
    assert_eq!(profiles[0]["store"]["Default"]["dia"], 6);
    let (_, current) = json_of(ana.ns(&s, Method::GET, "/api/v1/profile/current")).await;
    assert_eq!(current["defaultProfile"], "Default");

    for path in ["/api/v1/status.json", "/api/v1/status"] {
        let (status, st) = json_of(ana.ns(&s, Method::GET, path)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(st["status"], "ok");
        assert_eq!(st["apiEnabled"], true);
        assert_eq!(st["settings"]["units"], "mg/dl");
        assert!(st["settings"]["thresholds"]["bgHigh"].is_number());
        assert!(st["serverTimeEpoch"].is_i64());
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_nothing_is_written() {
    let s = TestServer::start().await;
    let ana = Person::new(&s, "ana@example.org").await;
    let cases: Vec<(Method, &str, reqwest::Body, StatusCode)> = vec![
        (
            Method::POST,
            "/api/v1/entries",
            "not json".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/v1/entries",
            "[1, 2]".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/entries",
            json!([sgv(now_ms() - 60_000, 120, "x"), {"sgv": 100}])
                .to_string()
                .into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/entries",
            json!([{"sgv": 100, "date": now_ms() + 3_600_000}])
                .to_string()
                .into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/treatments",
            json!([{"eventType": "Bolus", "insulin": 900, "created_at": "2026-11-27T08:00:00Z"}])
                .to_string()
                .into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/api/v1/entries.json?count=lots",
            "".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/api/v1/entries.json?find[sgv][$where]=1",
            "".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/api/v1/nosuchthing",
            "".into(),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, body, expected) in cases {
        let r = ana
            .ns(&s, method.clone(), path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), expected, "{method} {path}");
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert_eq!(ct, "application/problem+json", "{method} {path}");
    }
    let (_, entries) = json_of(ana.ns(&s, Method::GET, "/api/v1/entries.json")).await;
    assert_eq!(
        entries.as_array().map(Vec::len),
        Some(0),
        "a refused batch writes nothing"
    );
    s.stop().await;
}
