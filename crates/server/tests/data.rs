//! Data ownership over HTTP (docs/data-ownership.md): the export imported into an empty
//! server reproduces the account; vendor files import once, idempotently, with a report; a
//! malformed file imports nothing; CSV and FHIR exports. Both storage backends.

mod common;

use common::{expect_problem, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../domain/tests/fixtures/import/"
);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture")
}

async fn import(s: &TestServer, token: &str, query: &str, body: Vec<u8>) -> reqwest::Response {
    s.req(Method::POST, &format!("/api/v1/import?{query}"), token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("import")
}

async fn export(s: &TestServer, token: &str) -> Value {
    let r = s
        .req(Method::GET, "/api/v1/export", token)
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("attachment")));
    r.json().await.expect("the export is one JSON document")
}

/// A person with a few days of everything.
async fn person_with_data(s: &TestServer, email: &str) -> String {
    let token = s.user(email).await;
    let start = chrono::Utc::now() - chrono::Duration::days(3);
    let readings: Vec<Value> = (0..600)
        .map(|i| {
            json!({
                "time": (start + chrono::Duration::minutes(5 * i))
                    .with_timezone(&chrono::FixedOffset::east_opt(3600).expect("offset"))
                    .to_rfc3339(),
                "value": 90 + (i % 40),
                "device": "xDrip-DexcomG7",
                "trend": "Flat",
            })
        })
        .collect();
    let r = s
        .req(Method::POST, "/api/v1/readings", &token)
        .json(&readings)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::CREATED);
    let meter =
        json!({"time": start.to_rfc3339(), "value": 6.1, "unit": "mmol/L", "kind": "meter"});
    let r = s
        .req(Method::POST, "/api/v1/readings", &token)
        .json(&meter)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::CREATED);
    let at = |h: i64| (start + chrono::Duration::hours(h)).to_rfc3339();
    let treatments = json!([
        {"time": at(1), "kind": "insulin", "units": 4.5, "insulin_type": "bolus", "insulin_name": "Fiasp"},
        {"time": at(1), "kind": "carbs", "grams": 45},
        {"time": at(5), "kind": "exercise", "minutes": 30, "intensity": "moderate"},
        {"time": at(7), "kind": "note", "text": "pizza, \"extra\" cheese\nsecond line"},
        {"time": at(9), "kind": "basal_rate", "units_per_hour": 0, "minutes": 30},
    ]);
    let r = s
        .req(Method::POST, "/api/v1/treatments", &token)
        .json(&treatments)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .req(Method::PATCH, "/api/v1/me/settings", &token)
        .json(
            &json!({"time_zone": "Europe/Berlin", "display_unit": "mmol/L", "target_low_mgdl": 80}),
        )
        .send()
        .await
        .expect("settings");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let r = s
        .req(Method::PATCH, "/api/v1/me", &token)
        .json(&json!({"display_name": "Alex"}))
        .send()
        .await
        .expect("profile");
    assert_eq!(r.status(), StatusCode::OK);
    token
}

#[tokio::test]
async fn an_export_imported_into_an_empty_server_reproduces_the_account() {
    let a = TestServer::start().await;
    let token = person_with_data(&a, "alex@example.org").await;
    // Another person's data never appears in this export.
    let other = a.user("other@example.org").await;
    let exported = export(&a, &token).await;
    assert_eq!(exported["format"], "glucosync-export");
    assert_eq!(exported["readings"].as_array().map(Vec::len), Some(601));
    assert_eq!(exported["treatments"].as_array().map(Vec::len), Some(5));
    assert_eq!(export(&a, &other).await["readings"], json!([]));

    let b = TestServer::start().await;
    let newcomer = b.user("alex@example.net").await;
    let body = serde_json::to_vec(&exported).expect("bytes");
    let r = import(&b, &newcomer, "format=glucosync", body.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.expect("report");
    assert_eq!(report["readings"]["imported"], 601, "{report}");
    assert_eq!(report["treatments"]["imported"], 5, "{report}");
    assert_eq!(report["settings_applied"], true);
    assert_eq!(report["skipped_total"], 0, "{report}");

    let again = export(&b, &newcomer).await;
    for section in ["readings", "treatments", "nightscout_documents"] {
        assert_eq!(again[section], exported[section], "{section} differ");
    }
    assert_eq!(
        again["account"]["settings"],
        exported["account"]["settings"]
    );
    assert_eq!(again["account"]["display_name"], "Alex");

    // The same file again adds nothing.
    let report: Value = import(&b, &newcomer, "format=glucosync", body)
        .await
        .json()
        .await
        .expect("report");
    assert_eq!(report["readings"]["imported"], 0);
    assert_eq!(report["readings"]["duplicates"], 601);
    assert_eq!(report["treatments"]["duplicates"], 5);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_clarity_export_imports_once_with_a_report_and_a_malformed_one_not_at_all() {
    let s = TestServer::start().await;
    let token = s.user("clarity@example.org").await;
    let query = "format=clarity&time_zone=America/New_York";
    let r = import(&s, &token, query, fixture("clarity_mgdl.csv")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.expect("report");
    assert_eq!(report["readings"]["imported"], 16, "{report}");
    assert_eq!(report["treatments"]["imported"], 5, "{report}");
    assert_eq!(report["time_zone"], "America/New_York");
    assert_eq!(report["skipped_total"], 10);
    assert_eq!(report["skipped"][0]["line"], 2);
    let report: Value = import(&s, &token, query, fixture("clarity_mgdl.csv"))
        .await
        .json()
        .await
        .expect("report");
    assert_eq!(report["readings"]["imported"], 0);
    assert_eq!(report["readings"]["duplicates"], 16);
    assert_eq!(report["treatments"]["duplicates"], 5);

    let fresh = s.user("broken@example.org").await;
    let broken = String::from_utf8(fixture("clarity_mgdl.csv"))
        .expect("utf-8")
        .replacen("2025-10-22T02:25:14", "yesterday", 1);
    let r = import(&s, &fresh, query, broken.into_bytes()).await;
    let problem = expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "malformed_file").await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("line 30")),
        "{problem}"
    );
    // Rows before the bad line were not written either.
    let page: Value = s
        .req(
            Method::GET,
            "/api/v1/readings?from=2025-10-01T00:00:00Z&to=2025-11-01T00:00:00Z",
            &fresh,
        )
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(page["items"], json!([]));
    let r = import(&s, &fresh, "format=excel", b"x".to_vec()).await;
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let session = s.user("scopes@example.org").await;
    let (_, read_only) = s.api_token(&session, &["read"]).await;
    let r = import(&s, &read_only, query, fixture("clarity_mgdl.csv")).await;
    expect_problem(r, StatusCode::FORBIDDEN, "insufficient_scope").await;
    s.stop().await;
}

#[tokio::test]
async fn a_reading_already_uploaded_live_from_another_device_is_not_doubled() {
    let s = TestServer::start().await;
    let token = s.user("twice@example.org").await;
    // The phone uploaded the 06:02 reading live, 20 seconds off Clarity's timestamp.
    let r = s
        .req(Method::POST, "/api/v1/readings", &token)
        .json(&json!({"time": "2025-10-21T10:02:39Z", "value": 118, "device": "xDrip"}))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::CREATED);
    let report: Value = import(
        &s,
        &token,
        "format=clarity&time_zone=America/New_York",
        fixture("clarity_mgdl.csv"),
    )
    .await
    .json()
    .await
    .expect("report");
    assert_eq!(
        report["readings"]["already_from_another_device"], 1,
        "{report}"
    );
    assert_eq!(report["readings"]["imported"], 15);
    s.stop().await;
}

#[tokio::test]
async fn libreview_and_nightscout_files_import() {
    let s = TestServer::start().await;
    let token = s.user("libre@example.org").await;
    let report: Value = import(
        &s,
        &token,
        "format=libreview&time_zone=America/Chicago",
        fixture("libreview_mgdl.csv"),
    )
    .await
    .json()
    .await
    .expect("report");
    assert_eq!(report["date_order"], "month_first", "{report}");
    assert!(
        report["readings"]["imported"]
            .as_u64()
            .is_some_and(|n| n > 10),
        "{report}"
    );
    assert!(report["skipped_by_reason"]
        .as_object()
        .is_some_and(|m| m.keys().any(|k| k.starts_with("a scan"))));

    let entries = json!([
        {"sgv": 150, "date": 1761040939000_i64, "type": "sgv", "device": "xDrip", "direction": "Flat"},
        {"eventType": "Correction Bolus", "insulin": 2, "created_at": "2025-10-21T10:30:00Z"},
    ]);
    let report: Value = import(
        &s,
        &token,
        "format=nightscout",
        serde_json::to_vec(&entries).expect("bytes"),
    )
    .await
    .json()
    .await
    .expect("report");
    assert_eq!(report["readings"]["imported"], 1, "{report}");
    assert_eq!(report["treatments"]["imported"], 1, "{report}");
    s.stop().await;
}

#[tokio::test]
async fn csv_and_fhir_exports() {
    let s = TestServer::start().await;
    let token = person_with_data(&s, "csv@example.org").await;
    let text = s
        .req(Method::GET, "/api/v1/export/readings.csv", &token)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rows
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header[..3], ["time", "utc_offset", "value_mgdl"]);
    assert_eq!(rows.records().count(), 601);
    let treatments = s
        .req(Method::GET, "/api/v1/export/treatments.csv", &token)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    let mut rows = csv::Reader::from_reader(treatments.as_bytes());
    let notes: Vec<_> = rows
        .records()
        .map(|r| r.expect("row"))
        .filter(|r| &r[3] == "note")
        .map(|r| r[10].to_owned())
        .collect();
    assert_eq!(notes, ["pizza, \"extra\" cheese\nsecond line"]);
    for kind in ["alerts", "shares", "access-log"] {
        let r = s
            .req(Method::GET, &format!("/api/v1/export/{kind}.csv"), &token)
            .send()
            .await
            .expect("csv");
        assert_eq!(r.status(), StatusCode::OK, "{kind}");
    }
    let r = s
        .req(Method::GET, "/api/v1/export/passwords.csv", &token)
        .send()
        .await
        .expect("csv");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;

    let bundle: Value = s
        .req(Method::GET, "/api/v1/export/fhir?unit=mmol/L", &token)
        .send()
        .await
        .expect("fhir")
        .json()
        .await
        .expect("json");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 1 + 601);
    assert_eq!(entries[0]["resource"]["resourceType"], "Patient");
    let codes: std::collections::BTreeSet<_> = entries[1..]
        .iter()
        .map(|e| {
            e["resource"]["code"]["coding"][0]["code"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(codes, ["105272-9", "14743-9"].map(str::to_owned).into());
    let patient = entries[0]["fullUrl"].clone();
    assert!(entries[1..]
        .iter()
        .all(|e| e["resource"]["subject"]["reference"] == patient));
    s.stop().await;
}

#[tokio::test]
async fn a_nightscout_site_is_pulled_whole_through_its_api() {
    // The source: a Nightscout site (GlucoSync's own Nightscout API is a real one).
    let source = TestServer::start().await;
    let owner = source.user("source@example.org").await;
    let site = source.nightscout_site(&owner).await;
    let secret = site["api_secret"].as_str().expect("secret").to_owned();
    let url = source.url(site["base_url"].as_str().expect("base"));
    let start = chrono::Utc::now().timestamp_millis() - 6 * 86_400_000;
    // More than one page of entries (the pull reads 1000 at a time).
    let entries: Vec<Value> = (0..1500_i64)
        .map(|i| json!({"type": "sgv", "sgv": 100 + i % 50, "date": start + i * 300_000, "device": "xDrip"}))
        .collect();
    let r = source
        .client
        .post(format!("{url}/api/v1/entries"))
        .header(
            "api-secret",
            glucosync_server::nightscout::access::sha1_hex(&secret),
        )
        .json(&entries)
        .send()
        .await
        .expect("upload");
    assert!(r.status().is_success(), "{}", r.status());
    let r = source
        .client
        .post(format!("{url}/api/v1/treatments"))
        .header("api-secret", glucosync_server::nightscout::access::sha1_hex(&secret))
        .json(&json!([{"eventType": "Carb Correction", "carbs": 20, "created_at": chrono::Utc::now().to_rfc3339()}]))
        .send()
        .await
        .expect("upload");
    assert!(r.status().is_success(), "{}", r.status());

    let target = TestServer::start_with(|c| c.import_allow_private_urls = true).await;
    let person = target.user("target@example.org").await;
    let pull = |body: Value| {
        target
            .req(Method::POST, "/api/v1/import/nightscout", &person)
            .json(&body)
            .send()
    };
    let report: Value = pull(json!({"url": url, "api_secret": secret}))
        .await
        .expect("pull")
        .json()
        .await
        .expect("report");
    assert_eq!(report["readings"]["imported"], 1500, "{report}");
    assert_eq!(report["treatments"]["imported"], 1, "{report}");
    let again: Value = pull(json!({"url": url, "api_secret": secret}))
        .await
        .expect("pull")
        .json()
        .await
        .expect("report");
    // (A record at a page's boundary time is read on both pages: one more duplicate each.)
    assert_eq!(again["readings"]["imported"], 0, "{again}");
    assert!(
        again["readings"]["duplicates"]
            .as_u64()
            .is_some_and(|n| n >= 1500),
        "{again}"
    );
    let r = pull(json!({"url": url, "api_secret": "not-the-secret-at-all"}))
        .await
        .expect("pull");
    let problem = expect_problem(r, StatusCode::BAD_GATEWAY, "upstream_failed").await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("401")),
        "{problem}"
    );

    // A server that does not allow it never fetches from its own network.
    let guarded = TestServer::start().await;
    let someone = guarded.user("guarded@example.org").await;
    let r = guarded
        .req(Method::POST, "/api/v1/import/nightscout", &someone)
        .json(&json!({"url": url, "api_secret": secret}))
        .send()
        .await
        .expect("pull");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    source.stop().await;
    target.stop().await;
    guarded.stop().await;
}

fn clarity_header() -> String {
    "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,\
     Source Device ID,Glucose Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration \
     (hh:mm:ss),Glucose Rate of Change (mg/dL/min),Transmitter Time (Long Integer),\
     Transmitter ID\n"
        .to_owned()
}

#[tokio::test]
async fn a_receiver_and_a_phone_recording_the_same_readings_import_once() {
    let s = TestServer::start().await;
    let token = s.user("two-devices@example.org").await;
    let mut file = clarity_header();
    for i in 0..100 {
        let at = |seconds: i64| {
            (chrono::NaiveDate::from_ymd_opt(2025, 6, 1)
                .expect("date")
                .and_hms_opt(8, 0, 0)
                .expect("time")
                + chrono::Duration::seconds(i * 300 + seconds))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
        };
        file.push_str(&format!(
            "{},{},EGV,,,,Receiver,{},,,,,,\n",
            2 * i,
            at(0),
            100 + i
        ));
        file.push_str(&format!(
            "{},{},EGV,,,,iOS G6,{},,,,,,\n",
            2 * i + 1,
            at(12),
            100 + i
        ));
    }
    let report: Value = import(
        &s,
        &token,
        "format=clarity&time_zone=UTC",
        file.into_bytes(),
    )
    .await
    .json()
    .await
    .expect("report");
    assert_eq!(report["readings"]["imported"], 100, "{report}");
    assert_eq!(
        report["readings"]["already_from_another_device"], 100,
        "{report}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_file_larger_than_the_json_body_limit_imports() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 64 * 1024).await;
    let token = s.user("large@example.org").await;
    let mut file = clarity_header();
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .expect("date")
        .and_hms_opt(0, 0, 0)
        .expect("time");
    let rows = 20_000;
    for i in 0..rows {
        let t = start + chrono::Duration::minutes(5 * i);
        file.push_str(&format!(
            "{i},{},EGV,,,,iOS G7,{},,,,,{},ABC\n",
            t.format("%Y-%m-%dT%H:%M:%S"),
            80 + i % 150,
            i * 300
        ));
    }
    assert!(file.len() > 16 * 64 * 1024, "{} bytes", file.len());
    let r = import(
        &s,
        &token,
        "format=clarity&time_zone=UTC",
        file.into_bytes(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.expect("report");
    assert_eq!(report["readings"]["imported"], rows, "{report}");
    s.stop().await;
}

/// Runs the independent FHIR validators (scripts/fhir-validator) on a Bundle.
fn fhir_validation(bundle: &Value) -> std::process::Output {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let node_path = std::process::Command::new(format!("{root}/scripts/fhir-validator"))
        .arg("node-path")
        .output()
        .expect("scripts/fhir-validator");
    assert!(node_path.status.success(), "{node_path:?}");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), serde_json::to_vec(bundle).expect("json")).expect("write");
    std::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fhir/validate-bundle.js"
        ))
        .arg(file.path())
        .env(
            "NODE_PATH",
            String::from_utf8_lossy(&node_path.stdout).trim(),
        )
        .output()
        .expect("node")
}

#[tokio::test]
async fn the_fhir_export_passes_independent_r4_validation() {
    let s = TestServer::start().await;
    let token = person_with_data(&s, "fhir@example.org").await;
    for unit in ["mg/dL", "mmol/L"] {
        let bundle: Value = s
            .req(
                Method::GET,
                &format!("/api/v1/export/fhir?unit={unit}"),
                &token,
            )
            .send()
            .await
            .expect("fhir")
            .json()
            .await
            .expect("json");
        let out = fhir_validation(&bundle);
        assert!(
            out.status.success(),
            "{unit}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The validators can fail: an Observation without its status does.
        let mut broken = bundle.clone();
        broken["entry"][1]["resource"]
            .as_object_mut()
            .expect("observation")
            .remove("status");
        assert!(!fhir_validation(&broken).status.success());
    }
    s.stop().await;
}
