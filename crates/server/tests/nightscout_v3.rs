//! Nightscout API v3 as AndroidAPS (NSClientV3) uses it (docs/nightscout.md): the token
//! exchange at the host's root, status with `crud` on all six collections, create with
//! dedup answers, search, read, patch, delete, and history by the server's change time with
//! its ETag. Both storage backends (scripts/test runs this with `GS_TEST_BACKEND=postgres`).
//! The bodies are AndroidAPS's shapes (`crates/glucoengine/tests/nightscout/bodies/`).

mod common;

use common::TestServer;
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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An AndroidAPS on a person's site, authenticated the way AAPS does it.
struct Aaps<'a> {
    s: &'a TestServer,
    base: String,
    jwt: String,
    secret: String,
}

impl Aaps<'_> {
    async fn new<'a>(s: &'a TestServer, email: &str, scopes: &[&str]) -> Aaps<'a> {
        let session = s.user(email).await;
        let site = s.nightscout_site(&session).await;
        let (_, token) = s.api_token(&session, scopes).await;
        // AAPS asks at the host's root, whatever the site's path.
        let exchange: Value = s
            .client
            .get(s.url(&format!("/api/v2/authorization/request/{token}")))
            .send()
            .await
            .expect("exchange")
            .json()
            .await
            .expect("json");
        Aaps {
            s,
            base: site["base_url"].as_str().expect("base").to_owned(),
            jwt: exchange["token"].as_str().expect("jwt").to_owned(),
            secret: site["api_secret"].as_str().expect("secret").to_owned(),
        }
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.s
            .client
            .request(method, self.s.url(&format!("{}/api/v3{path}", self.base)))
            .bearer_auth(&self.jwt)
            // AAPS sends the time as epoch milliseconds, not an HTTP date: ignored.
            .header("date", now_ms().to_string())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(b);
        }
        let r = r.send().await.expect("send");
        let status = r.status();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    /// A v1 upload with the API secret (xDrip+ beside AAPS).
    async fn v1_post(&self, path: &str, body: &Value) -> Value {
        let r = self
            .s
            .client
            .post(self.s.url(&format!("{}/api/v1{path}", self.base)))
            .header("api-secret", sha1_hex(&self.secret))
            .json(body)
            .send()
            .await
            .expect("v1");
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.expect("json")
    }
}

fn shifted(mut doc: Value, date: i64) -> Value {
    doc["date"] = date.into();
    doc
}

#[tokio::test]
async fn status_says_crud_on_all_six_collections_to_an_uploader_and_r_to_a_reader() {
    let s = TestServer::start().await;
    let (status, version) = {
        let r = s
            .client
            .get(s.url("/api/v3/version"))
            .send()
            .await
            .expect("send");
        (r.status(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(status, StatusCode::OK, "version is public");
    assert_eq!(version["result"]["apiVersion"], "3.0.5");

    let aaps = Aaps::new(
        &s,
        "ana@example.org",
        &["read", "readings:write", "treatments:write"],
    )
    .await;
    // AAPS's first call carries an empty bearer and expects 401 to start the exchange.
    let r = s
        .client
        .get(s.url(&format!("{}/api/v3/status", aaps.base)))
        .header("authorization", "Bearer ")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let envelope: Value = r.json().await.expect("v3 envelope");
    assert_eq!(envelope["status"], 401);
    let (status, st, _) = aaps.call(Method::GET, "/status", None).await;
    assert_eq!(status, StatusCode::OK);
    let permissions = &st["result"]["apiPermissions"];
    for c in [
        "devicestatus",
        "entries",
        "food",
        "profile",
        "settings",
        "treatments",
    ] {
        assert_eq!(permissions[c], "crud", "{c}: {st}");
    }
    let reader = Aaps::new(&s, "bo@example.org", &["read"]).await;
    let (_, st, _) = reader.call(Method::GET, "/status", None).await;
    assert_eq!(st["result"]["apiPermissions"]["entries"], "r");
    let (status, _, _) = reader
        .call(Method::POST, "/entries", Some(&body("aaps_v3_entry.json")))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test]
async fn create_dedups_search_reads_and_deletes_softly() {
    let s = TestServer::start().await;
    let aaps = Aaps::new(
        &s,
        "ana@example.org",
        &["read", "readings:write", "treatments:write"],
    )
    .await;
    let t = now_ms() - now_ms() % 300_000 - 600_000;
    let entry = shifted(body("aaps_v3_entry.json"), t);
    let (status, created, headers) = aaps.call(Method::POST, "/entries", Some(&entry)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["identifier"]
        .as_str()
        .expect("identifier")
        .to_owned();
    assert!(headers["location"]
        .to_str()
        .expect("location")
        .ends_with(&id));
    let (status, again, _) = aaps.call(Method::POST, "/entries", Some(&entry)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["isDeduplication"], true);
    assert_eq!(again["identifier"], id.as_str());

    for (file, collection) in [
        ("aaps_v3_treatment_bolus.json", "treatments"),
        ("aaps_v3_treatment_carbs.json", "treatments"),
        ("aaps_v3_devicestatus.json", "devicestatus"),
    ] {
        let (status, created, _) = aaps
            .call(
                Method::POST,
                &format!("/{collection}"),
                Some(&shifted(body(file), t)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{file}: {created}");
    }
    let (_, bolus, _) = aaps
        .call(
            Method::POST,
            "/treatments",
            Some(&shifted(body("aaps_v3_treatment_bolus.json"), t)),
        )
        .await;
    assert_eq!(
        bolus["isDeduplication"], true,
        "pumpId + pumpType + pumpSerial"
    );

    // Search as AAPS does: newest sgv, and a first load in ascending date order.
    let newer = shifted(body("aaps_v3_entry.json"), t + 300_000);
    aaps.call(Method::POST, "/entries", Some(&newer)).await;
    let (_, latest, _) = aaps
        .call(
            Method::GET,
            "/entries?sort$desc=date&type=sgv&limit=1",
            None,
        )
        .await;
    assert_eq!(latest["result"].as_array().map(Vec::len), Some(1));
    assert_eq!(latest["result"][0]["date"], t + 300_000);
    assert!(latest["result"][0]["srvModified"].is_i64());
    let (_, first_load, _) = aaps
        .call(
            Method::GET,
            &format!("/entries?sort=date&date$gt={}&limit=500", t - 1),
            None,
        )
        .await;
    let dates: Vec<i64> = first_load["result"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["date"].as_i64().expect("date"))
        .collect();
    assert_eq!(dates, vec![t, t + 300_000]);
    let (_, projected, _) = aaps
        .call(Method::GET, "/entries?limit=1&fields=sgv,date", None)
        .await;
    let keys: Vec<&String> = projected["result"][0]
        .as_object()
        .expect("object")
        .keys()
        .collect();
    assert_eq!(keys.len(), 2, "{projected}");
    let (status, _, _) = aaps.call(Method::GET, "/entries?limit=0", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, _) = aaps.call(Method::GET, "/entries?sgv$re=1", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Read, patch, delete.
    let (status, read, _) = aaps
        .call(Method::GET, &format!("/entries/{id}"), None)
        .await;
    assert_eq!(
        (status, &read["result"]["sgv"]),
        (StatusCode::OK, &json!(114))
    );
    let (_, list, _) = aaps
        .call(Method::GET, "/treatments?sort$desc=date", None)
        .await;
    let carbs = list["result"]
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["carbs"].is_number())
        .expect("carbs")
        .clone();
    let carbs_id = carbs["identifier"].as_str().expect("id").to_owned();
    let (status, _, _) = aaps
        .call(
            Method::PATCH,
            &format!("/treatments/{carbs_id}"),
            Some(&json!({"carbs": 25, "notes": "bigger"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, read, _) = aaps
        .call(Method::GET, &format!("/treatments/{carbs_id}"), None)
        .await;
    assert_eq!(
        (read["result"]["carbs"].as_f64(), &read["result"]["notes"]),
        (Some(25.0), &json!("bigger"))
    );
    let (status, _, _) = aaps
        .call(Method::DELETE, &format!("/treatments/{carbs_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, gone, _) = aaps
        .call(Method::GET, &format!("/treatments/{carbs_id}"), None)
        .await;
    assert_eq!((status, &gone["status"]), (StatusCode::GONE, &json!(410)));
    let (status, _, _) = aaps
        .call(
            Method::PATCH,
            &format!("/entries/{id}"),
            Some(&json!({"isValid": false})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "AAPS invalidates an entry by patching isValid"
    );
    let (status, _, _) = aaps
        .call(Method::GET, &format!("/entries/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::GONE);
    let (status, _, _) = aaps
        .call(Method::DELETE, "/treatments/no-such-id", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, bad, _) = aaps
        .call(Method::POST, "/treatments", Some(&json!({})))
        .await;
    assert_eq!(
        (status, &bad["message"]),
        (
            StatusCode::BAD_REQUEST,
            &json!("Bad or missing request body")
        )
    );
    s.stop().await;
}

#[tokio::test]
async fn history_reports_every_change_in_server_order_including_v1_uploads_and_deletions() {
    let s = TestServer::start().await;
    let aaps = Aaps::new(
        &s,
        "ana@example.org",
        &["read", "readings:write", "treatments:write"],
    )
    .await;
    let start = now_ms();
    // xDrip+ (v1) uploads a reading two days old: AAPS must still see it (Nightscout's bug).
    let old = now_ms() - 2 * 86_400_000;
    let ids = aaps
        .v1_post(
            "/entries",
            &json!([{"type": "sgv", "sgv": 140, "date": old, "device": "xDrip"}]),
        )
        .await;
    let old_id = ids[0]["_id"].as_str().expect("id").to_owned();
    let (status, history, headers) = aaps
        .call(
            Method::GET,
            &format!("/entries/history/{}", start - 1),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let items = history["result"].as_array().expect("array").clone();
    assert_eq!(items.len(), 1, "{history}");
    assert_eq!(items[0]["identifier"], old_id.as_str());
    let modified = items[0]["srvModified"].as_i64().expect("srvModified");
    assert!(
        modified >= start,
        "stamped with the upload's server time, not the reading's"
    );
    // AAPS cuts `W/"` and `"` off the ETag to get the next `since`.
    let etag = headers["etag"].to_str().expect("etag");
    assert_eq!(etag, format!("W/\"{modified}\""));
    let (_, next, headers) = aaps
        .call(Method::GET, &format!("/entries/history/{modified}"), None)
        .await;
    assert_eq!(next["result"].as_array().map(Vec::len), Some(0));
    assert!(headers.get("etag").is_none());

    // A deletion through v1 is a change too.
    let r = s
        .client
        .delete(s.url(&format!("{}/api/v1/entries/{old_id}", aaps.base)))
        .header("api-secret", sha1_hex(&aaps.secret))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    let (_, history, _) = aaps
        .call(Method::GET, &format!("/entries/history/{modified}"), None)
        .await;
    assert_eq!(history["result"][0]["identifier"], old_id.as_str());
    assert_eq!(history["result"][0]["isValid"], false);

    // Two uploads of three readings each: a page of four holds the first upload whole, and
    // the next page the second.
    let batch = |from: i64| {
        Value::Array(
            (0..3)
                .map(|i| json!({"type": "sgv", "sgv": 100 + i, "date": from + i * 300_000, "device": "xDrip"}))
                .collect(),
        )
    };
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(3));
    pause().await;
    let before = now_ms();
    pause().await;
    aaps.v1_post("/entries", &batch(old + 3_600_000)).await;
    pause().await;
    aaps.v1_post("/entries", &batch(old + 7_200_000)).await;
    let (_, page1, headers) = aaps
        .call(
            Method::GET,
            &format!("/entries/history/{before}?limit=4"),
            None,
        )
        .await;
    let page1 = page1["result"].as_array().expect("array").clone();
    assert_eq!(page1.len(), 3, "one upload is never split");
    let etag = headers["etag"].to_str().expect("etag").to_owned();
    let since = &etag[3..etag.len() - 1];
    let (_, page2, _) = aaps
        .call(
            Method::GET,
            &format!("/entries/history/{since}?limit=4"),
            None,
        )
        .await;
    assert_eq!(page2["result"].as_array().map(Vec::len), Some(3), "{page2}");
    // Ids are never handed out again: the deleted reading's stays its own.
    assert!(page1
        .iter()
        .chain(page2["result"].as_array().expect("array"))
        .all(|e| e["identifier"] != old_id.as_str()));

    // Treatments: v1 uploads, changes and deletions, in order; lastModified agrees.
    let carbs = json!([{"eventType": "Carb Correction", "carbs": 20, "created_at": "2026-11-01T08:00:00Z", "syncIdentifier": "h1"}]);
    aaps.v1_post("/treatments", &carbs).await;
    let (_, th, _) = aaps
        .call(Method::GET, &format!("/treatments/history/{before}"), None)
        .await;
    assert_eq!(th["result"][0]["identifier"], "h1");
    let (_, lm, _) = aaps.call(Method::GET, "/lastModified", None).await;
    let collections = &lm["result"]["collections"];
    assert_eq!(collections["treatments"], th["result"][0]["srvModified"]);
    assert!(collections["entries"].as_i64().expect("entries") >= before);
    s.stop().await;
}
