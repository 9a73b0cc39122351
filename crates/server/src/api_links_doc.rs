//! OpenAPI links (OpenAPI 3.1 §4.8.20) between operations: which value of one answer is what
//! another operation takes. A client generated from the document can follow them, and the API
//! fuzzer's stateful phase (`scripts/fuzz-api`) chains real ids (a token just made, a treatment
//! just listed) instead of guessing them, so the operations on ids are fuzzed on things that
//! exist. Each link's target is checked to exist (`document_links` panics in the OpenAPI
//! snapshot test otherwise).

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::{OpenApi, RefOr};

/// (from operation, its status, to operation, the parameter, the runtime expression giving it).
const LINKS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "tokens_create",
        "201",
        "tokens_revoke",
        "id",
        "$response.body#/id",
    ),
    (
        "tokens_list",
        "200",
        "tokens_revoke",
        "id",
        "$response.body#/0/id",
    ),
    (
        "readings_latest",
        "200",
        "readings_delete_one",
        "id",
        "$response.body#/id",
    ),
    (
        "treatments_list",
        "200",
        "treatments_get_one",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "treatments_list",
        "200",
        "treatments_replace",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "treatments_list",
        "200",
        "treatments_delete_one",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "sharing_invite",
        "201",
        "sharing_revoke",
        "id",
        "$response.body#/id",
    ),
    (
        "sharing_list",
        "200",
        "sharing_revoke",
        "id",
        "$response.body#/0/id",
    ),
    (
        "sharing_following",
        "200",
        "sharing_set_channels",
        "owner_id",
        "$response.body#/0/owner_id",
    ),
    (
        "notifications_list",
        "200",
        "notifications_unsubscribe",
        "id",
        "$response.body#/0/id",
    ),
    (
        "alerts_list",
        "200",
        "alerts_acknowledge",
        "kind",
        "$response.body#/alerts/0/kind",
    ),
    (
        "alerts_list",
        "200",
        "alerts_snooze",
        "kind",
        "$response.body#/alerts/0/kind",
    ),
];

/// utoipa 5.5 writes a Link object's `operationId` as `operation_id` (its other fields are
/// not used here); tools ignore or refuse that. Renamed in the serialized document, as text so
/// that the document keeps its order, and only while no other `operation_id` key is in it
/// (the count is the links'); otherwise the document is served as it is, which the OpenAPI
/// snapshot test refuses.
pub(crate) fn camel_case_links(json: &str) -> String {
    const SNAKE: &str = "\"operation_id\": ";
    if json.matches(SNAKE).count() == LINKS.len() {
        json.replace(SNAKE, "\"operationId\": ")
    } else {
        json.to_owned()
    }
}

/// Adds [`LINKS`] to the responses of `doc`.
pub(crate) fn document_links(doc: &mut OpenApi) {
    let ids: Vec<String> = crate::api_errors_doc::operations_mut(doc)
        .filter_map(|op| op.operation_id.clone())
        .collect();
    for (from, status, to, parameter, value) in LINKS {
        assert!(
            ids.iter().any(|id| id == to),
            "OpenAPI link to an unknown operation {to}"
        );
        let op = crate::api_errors_doc::operations_mut(doc)
            .find(|op| op.operation_id.as_deref() == Some(*from))
            .unwrap_or_else(|| panic!("OpenAPI link from an unknown operation {from}"));
        let Some(RefOr::T(response)) = op.responses.responses.get_mut(*status) else {
            panic!("OpenAPI link from {from}'s undocumented {status}");
        };
        response.links.insert(
            to.to_string(),
            RefOr::T(
                LinkBuilder::new()
                    .operation_id(*to)
                    .parameter(*parameter, *value)
                    .build(),
            ),
        );
    }
}
