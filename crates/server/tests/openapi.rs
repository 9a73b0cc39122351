//! The OpenAPI document is generated from the route registry; this snapshot makes every API
//! change visible in review. After an intended change, regenerate with
//! `UPDATE_SNAPSHOTS=1 cargo test -p glucosync-server --test openapi`.

use std::path::PathBuf;

#[test]
fn openapi_document_matches_the_snapshot() {
    let json = glucosync_server::app::openapi_json() + "\n";
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

/// What client generators rely on (the PWA's types are generated from this document):
/// every operation id unique, and every `$ref` pointing at a schema that exists.
#[test]
fn openapi_document_is_well_formed_for_client_generators() {
    let value: serde_json::Value =
        serde_json::from_str(&glucosync_server::app::openapi_json()).expect("valid json");
    let mut ids = std::collections::BTreeMap::<String, String>::new();
    for (path, item) in value["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Some(id) = op.get("operationId").and_then(|v| v.as_str()) else {
                panic!("{method} {path} has no operationId");
            };
            if let Some(other) = ids.insert(id.to_owned(), format!("{method} {path}")) {
                panic!("operationId {id} is used by {other} and {method} {path}");
            }
        }
    }
    // Every link names its target as OpenAPI spells it.
    let mut links = 0;
    for item in value["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("path item").values() {
            for response in op["responses"].as_object().into_iter().flatten() {
                for (name, link) in response.1["links"].as_object().into_iter().flatten() {
                    assert!(link["operationId"].is_string(), "link {name}: {link}");
                    assert!(link.get("operation_id").is_none(), "link {name}: {link}");
                    links += 1;
                }
            }
        }
    }
    assert!(links >= 12, "{links} links");
    let mut refs = Vec::new();
    collect_refs(&value, &mut refs);
    assert!(!refs.is_empty(), "the document uses $refs");
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            value["components"]["schemas"].get(name).is_some(),
            "$ref {r} points at no schema"
        );
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => out.push(r.to_owned()),
                    _ => collect_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
