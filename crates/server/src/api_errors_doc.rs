//! The OpenAPI document's errors, documented in one place as the server really sends them
//! (`crate::error`): every error body is `application/problem+json`, and each operation lists
//! the error statuses any request to it can meet (a malformed body or parameter, a missing or
//! insufficient credential, an unknown id, a body too large or of the wrong type, a failed
//! validation, the rate limit), besides those its handler documents. API fuzzing
//! (`scripts/fuzz-api`) checks every answer against this.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};

const PROBLEM_JSON: &str = "application/problem+json";
const PROBLEM_SCHEMA: &str = "#/components/schemas/Problem";

/// Rewrites `doc` as described in the module's documentation.
pub(crate) fn document_errors(doc: &mut OpenApi) {
    for op in operations_mut(doc) {
        problem_bodies_as_problem_json(op);
        add_common_errors(op);
    }
}

/// Every operation of the document (the API uses these five methods).
pub(crate) fn operations_mut(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// Handlers document error bodies as `body = Problem`, which utoipa lists as
/// `application/json`; the server sends `application/problem+json` (RFC 9457).
fn problem_bodies_as_problem_json(op: &mut Operation) {
    for response in op.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let is_problem = response
            .content
            .get("application/json")
            .and_then(|c| c.schema.as_ref())
            .is_some_and(|s| matches!(s, RefOr::Ref(r) if r.ref_location == PROBLEM_SCHEMA));
        if is_problem {
            if let Some(content) = response.content.shift_remove("application/json") {
                response.content.insert(PROBLEM_JSON.to_owned(), content);
            }
        }
    }
}

fn add_common_errors(op: &mut Operation) {
    let has_body = op.request_body.is_some();
    let has = |place: ParameterIn| {
        op.parameters
            .as_ref()
            .is_some_and(|ps| ps.iter().any(|p| p.parameter_in == place))
    };
    let (in_path, in_query) = (has(ParameterIn::Path), has(ParameterIn::Query));
    // `person=` reads someone else's data through a share: 404 when there is no such person
    // or no active share (the same answer, so that nobody learns who has an account).
    let names_a_person = op.parameters.as_ref().is_some_and(|ps| {
        ps.iter()
            .any(|p| p.parameter_in == ParameterIn::Query && p.name == "person")
    });
    // No `security` of its own: the document's (a bearer token or the session cookie).
    // `security(())` marks a public operation.
    let needs_credential = op.security.is_none();
    let mut add = |status: &str, applies: bool, description: &str| {
        if applies && !op.responses.responses.contains_key(status) {
            op.responses
                .responses
                .insert(status.to_owned(), RefOr::T(problem(description)));
        }
    };
    add(
        "400",
        has_body || in_path || in_query,
        "Malformed: a body that is not valid JSON, or a path or query parameter of the wrong type",
    );
    add(
        "401",
        needs_credential,
        "No credential, or one that is unknown, revoked or expired",
    );
    add(
        "403",
        needs_credential,
        "The API token lacks the scope this needs, or a cookie session sent no valid \
         X-CSRF-Token with an unsafe method",
    );
    add(
        "404",
        in_path || names_a_person,
        "No such resource, or not one of yours (or not shared with you)",
    );
    add(
        "413",
        has_body,
        "The body is larger than the server accepts",
    );
    add(
        "415",
        has_body,
        "The body is not of the documented content type",
    );
    add(
        "422",
        has_body || in_query,
        "A value fails validation: `errors` names each field and why",
    );
    add(
        "429",
        needs_credential,
        "Too many requests for this credential: retry after `Retry-After` seconds",
    );
}

fn problem(description: &str) -> Response {
    let mut response = Response::new(description);
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        Content::new(Some(RefOr::Ref(Ref::new(PROBLEM_SCHEMA)))),
    );
    response
}
