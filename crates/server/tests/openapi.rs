//! The OpenAPI document is generated from the route registry; this snapshot makes every API
//! change visible in review. After an intended change, regenerate with
//! `UPDATE_SNAPSHOTS=1 cargo test -p glucosync-server --test openapi`.

use std::path::PathBuf;

#[test]
fn openapi_document_matches_the_snapshot() {
    let doc = glucosync_server::app::openapi();
    let json = doc.to_pretty_json().expect("serializes") + "\n";
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid json");
    assert!(
        value["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1"
    );
    for path in [
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/tokens",
        "/api/v1/readings",
        "/api/v1/readings/latest",
        "/api/v1/treatments",
        "/health/ready",
    ] {
        assert!(value["paths"].get(path).is_some(), "{path} documented");
    }
    let snapshot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &json).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert!(
        expected == json,
        "the API changed: review the difference and run UPDATE_SNAPSHOTS=1 cargo test -p glucosync-server --test openapi"
    );
}
