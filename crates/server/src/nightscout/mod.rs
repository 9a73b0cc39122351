//! The Nightscout-compatible API (docs/nightscout.md): every person's data as a Nightscout
//! site at `/ns/<handle>`, so uploaders (xDrip+, Loop, Trio, AndroidAPS, nightscout-connect)
//! and followers (Nightguard, py-nightscout) work unchanged.
//!
//! The site's API is one catch-all route per site that dispatches on method and path itself:
//! Nightscout's paths carry format suffixes (`entries.json`, `entries/sgv.csv`) and ids in
//! the same segments, which a route table would spell out many times over. Loop and Trio drop
//! the site's path and call `/api/v1/...` at the host's root; [`root_rewrite`] sends those
//! requests to the site of their credential.

pub mod access;
mod socket;
mod v1;
mod v3;

pub use socket::layer as socket_layer;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

use crate::state::AppState;

pub use access::Keys;

/// The routes of every person's site.
pub fn routes() -> Router<AppState> {
    Router::new().route("/ns/{handle}/api/{*rest}", any(dispatch))
}

/// A request to a site, as the handlers see it.
pub(crate) struct NsRequest {
    pub method: Method,
    /// After `/api/`, e.g. `v1/entries/sgv.json`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl NsRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn dispatch(
    State(state): State<AppState>,
    Path((handle, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let query = raw.as_deref().map(parse_query).unwrap_or_default();
    let request = NsRequest {
        method,
        path: rest,
        query,
        headers,
        body,
    };
    match v1::handle(&state, &handle, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// `a=1&find[sgv][$gte]=100`, percent-decoded; pairs that do not decode are dropped.
fn parse_query(raw: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw).unwrap_or_else(|_| {
        raw.split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8()
                        .ok()
                        .map(|c| c.into_owned())
                };
                Some((decode(k)?, decode(v)?))
            })
            .collect()
    })
}

/// Paths only Nightscout has at the root: they always go to the credential's site.
const NIGHTSCOUT_ONLY: [&str; 10] = [
    "/api/v1/entries",
    "/api/v1/devicestatus",
    "/api/v1/profile",
    "/api/v1/status",
    "/api/v1/verifyauth",
    "/api/v1/experiments/",
    "/api/v1/food",
    "/api/v1/treatments.",
    "/api/v2/",
    "/api/v3/",
];

/// Sends a root-level Nightscout request (`/api/v1/entries`, ...) to the site of its
/// credential. `/api/v1/treatments` is also GlucoSync's own path: it goes to Nightscout only
/// when the request carries a Nightscout credential (`api-secret`, `?token=`, `?secret=`),
/// which GlucoSync's own clients never send.
pub async fn root_rewrite(mut request: Request) -> Request {
    let path = request.uri().path();
    if !path.starts_with("/api/v") {
        return request;
    }
    let nightscout_only = NIGHTSCOUT_ONLY.iter().any(|p| path.starts_with(p));
    let shared = (path == "/api/v1/treatments" || path.starts_with("/api/v1/treatments/")) && {
        let query = request.uri().query().map(parse_query).unwrap_or_default();
        access::Presented::from_request(request.headers(), &query).is_nightscout()
    };
    if !(nightscout_only || shared) {
        return request;
    }
    let rewritten = format!(
        "/ns/{}{}",
        access::ROOT_HANDLE,
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(path)
    );
    if let Ok(uri) = rewritten.parse() {
        *request.uri_mut() = uri;
    }
    request
}

/// Announces that a kept Nightscout collection changed: the dashboard reloads device status,
/// socket.io subscribers get the change.
pub(crate) async fn documents_changed(
    state: &AppState,
    owner: glucosync_store::UserId,
    collection: glucosync_store::DocumentCollection,
) {
    crate::live::publish(
        state,
        owner,
        &[crate::live::data_changed_event(owner, collection.as_str())],
    )
    .await;
}
