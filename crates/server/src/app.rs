//! The route registry: one list of handlers serves both routing and the OpenAPI document, so
//! the document can never describe an API the server does not have.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{
    accounts, alerts, data, device_status, events, forecast, insights, nightscout, push, readings,
    reports, shares, sso, tokens, treatments, ws,
};
use crate::error::problem_response;
use crate::state::AppState;
use crate::telemetry::{metrics_handler, observe};
use crate::web;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "GlucoEngine API",
        description = "GlucoSync's API: readings, treatments, accounts and tokens. Errors are \
                       application/problem+json with a stable `code`. Authenticate with \
                       `Authorization: Bearer <token>` (login token or personal API token) or the \
                       session cookie plus `X-CSRF-Token` on unsafe methods.",
        license(name = "AGPL-3.0-or-later")
    ),
    modifiers(&Security),
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "accounts", description = "Sign up, log in, profile and settings"),
        (name = "sso", description = "Single sign-on through an OpenID Connect provider"),
        (name = "tokens", description = "Personal API tokens for uploaders and scripts"),
        (name = "readings", description = "Glucose readings"),
        (name = "treatments", description = "Insulin, carbohydrates, exercise, notes, basal rates"),
        (name = "reports", description = "Consensus metrics over a period"),
        (name = "forecast", description = "Glucose forecasts (informational, never dosing advice)"),
        (name = "insights", description = "Patterns in a person's data, with their evidence (observations for a care team, never dosing advice)"),
        (name = "alerts", description = "Alerts: list, acknowledge, snooze"),
        (name = "live", description = "Live events over WebSocket"),
        (name = "notifications", description = "Web Push subscriptions and the delivery log"),
        (name = "sharing", description = "Followers: invites, acceptance, revocation"),
        (name = "nightscout", description = "Your Nightscout-compatible site for uploader and follower apps"),
        (name = "health", description = "Liveness and readiness")
    ),
    components(schemas(crate::error::Problem))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
    }
}

fn v1_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(accounts::signup))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::change_password))
        .routes(routes!(
            accounts::me,
            accounts::update_me,
            accounts::delete_me
        ))
        .routes(routes!(accounts::keep_me))
        .routes(routes!(accounts::settings, accounts::update_settings))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke))
        .routes(routes!(
            readings::upload,
            readings::list,
            readings::delete_range
        ))
        .routes(routes!(readings::latest))
        .routes(routes!(readings::delete_one))
        .routes(routes!(treatments::upload, treatments::list))
        .routes(routes!(
            treatments::get_one,
            treatments::replace,
            treatments::delete_one
        ))
        .routes(routes!(events::stream))
        .routes(routes!(ws::connect))
        .routes(routes!(reports::summary))
        .routes(routes!(reports::agp))
        .routes(routes!(reports::events))
        .routes(routes!(reports::daily))
        .routes(routes!(reports::hourly))
        .routes(routes!(forecast::latest))
        .routes(routes!(insights::patterns))
        .routes(routes!(insights::ai_status))
        .routes(routes!(insights::summary))
        .routes(routes!(insights::ask))
        .routes(routes!(sso::status))
        .routes(routes!(sso::login))
        .routes(routes!(sso::link))
        .routes(routes!(sso::callback))
        .routes(routes!(sso::logout))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(alerts::snooze))
        .routes(routes!(alerts::deliveries))
        .routes(routes!(push::vapid_public_key))
        .routes(routes!(push::subscribe, push::list))
        .routes(routes!(push::unsubscribe))
        .routes(routes!(shares::invite, shares::list))
        .routes(routes!(shares::revoke))
        .routes(routes!(shares::accept))
        .routes(routes!(shares::following))
        .routes(routes!(shares::set_channels))
        .routes(routes!(shares::access_log))
        .routes(routes!(nightscout::get_site, nightscout::update_site))
        .routes(routes!(nightscout::rotate_secret))
        .routes(routes!(device_status::latest))
        .routes(routes!(data::export_json))
        .routes(routes!(data::export_fhir))
        .routes(routes!(data::export_csv))
        .routes(routes!(data::import))
        .routes(routes!(data::import_nightscout))
}

fn registry() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1_routes())
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(healthz))
}

/// The OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = registry().split_for_parts().1;
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    qualify_operation_ids(&mut doc);
    crate::api_errors_doc::document_errors(&mut doc);
    crate::api_links_doc::document_links(&mut doc);
    doc
}

/// utoipa names an operation after its handler function, and several modules have a `list`
/// or a `revoke`: OpenAPI requires operation ids to be unique, and client generators (the
/// PWA's types) silently merge operations that share one. Each id becomes `<tag>_<handler>`.
fn qualify_operation_ids(doc: &mut utoipa::openapi::OpenApi) {
    for op in crate::api_errors_doc::operations_mut(doc) {
        if let (Some(id), Some(tag)) = (&op.operation_id, op.tags.as_ref().and_then(|t| t.first()))
        {
            op.operation_id = Some(format!("{tag}_{id}"));
        }
    }
}

/// The OpenAPI document as JSON: what `/api/v1/openapi.json` serves and `docs/openapi.json`
/// holds.
pub fn openapi_json() -> String {
    crate::api_links_doc::camel_case_links(&openapi().to_pretty_json().unwrap_or_default())
}

pub fn router(state: AppState) -> Router {
    let socket_state = state.clone();
    let hsts = served_over_tls(&state);
    let (routes, _) = registry().split_for_parts();
    let spec = Arc::new(openapi_json());
    let mut router = routes
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        spec.as_str().to_owned(),
                    )
                }
            }),
        )
        .route(
            "/api/docs",
            get(|| async { Html(include_str!("../assets/api-docs.html")) }),
        )
        .route(
            "/api/docs/app.js",
            get(|| async { asset("text/javascript", include_str!("../assets/api-docs.js")) }),
        )
        .route(
            "/api/docs/style.css",
            get(|| async { asset("text/css", include_str!("../assets/api-docs.css")) }),
        )
        .route("/", get(web::site))
        .route("/app", get(web::app_redirect))
        .route("/app/", get(web::app))
        .route("/app/{*path}", get(web::app))
        .merge(crate::nightscout::routes());
    if state.config.metrics_listen.is_none() {
        router = router.route("/metrics", get(metrics_handler));
    }
    let app = router
        // The site answers GETs outside the API; the rest keeps the API's 404.
        .fallback(web::site)
        .method_not_allowed_fallback(|| async {
            problem_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This path does not accept that method; see /api/docs.".into(),
                Vec::new(),
            )
        })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            problem_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong on our side; it has been logged.".into(),
                Vec::new(),
            )
        }))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state);
    // Nightscout's socket.io (`/socket.io/`, AndroidAPS's websockets) beside the routes; and
    // before routing, root-level Nightscout requests go to their credential's site. The
    // security headers go around all of it, so socket.io's answers carry them too.
    let router = Router::new()
        .fallback_service(app)
        .layer(crate::nightscout::socket_layer(socket_state))
        .layer(middleware::map_request(crate::nightscout::root_rewrite));
    with_security_headers(router, hsts)
}

/// A router with only `/metrics`, for a separate metrics listener.
pub fn metrics_router(state: AppState) -> Router {
    let hsts = served_over_tls(&state);
    let router = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(state);
    with_security_headers(router, hsts)
}

/// Whether browsers reach this server over TLS (terminated here or at a proxy in front):
/// `public_url`, the address people use, says so.
fn served_over_tls(state: &AppState) -> bool {
    state.config.public_url.starts_with("https://")
}

/// The headers every response carries (docs/security.md), unless a handler set its own.
fn with_security_headers(router: Router, hsts: bool) -> Router {
    let set = |name, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    let router = router
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
        // Older browsers ignore CSP's frame-ancestors.
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        // No other site's window keeps a handle on ours (SSO uses redirects, not popups).
        .layer(set(
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ))
        // What did not say how to be cached (API answers: health data, errors) is kept by no
        // browser cache or proxy. Files of the site and the app say it themselves (web.rs);
        // the PWA keeps its offline copies in its own Cache Storage, which this does not touch.
        .layer(set(header::CACHE_CONTROL, "no-store"))
        // Powerful features the app never uses, off for it and anything it could embed.
        .layer(set(
            header::HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ))
        .layer(set(
            header::CONTENT_SECURITY_POLICY,
            // The PWA's needs, spelled out although default-src covers most: icons and
            // charts as data:/blob: images, its service worker, manifest and API calls (the
            // live WebSocket to the same origin is 'self' too). Scripts and styles stay
            // 'self' only: no inline code.
            "default-src 'self'; img-src 'self' data: blob:; worker-src 'self'; \
             manifest-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'self'",
        ));
    if hsts {
        // A year; not includeSubDomains: other hosts of the operator's domain are theirs.
        router.layer(set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"))
    } else {
        router
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[derive(Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` or `ready`.
    pub status: String,
    pub storage: String,
    pub migrations: String,
    /// `ok`, or `not configured` in embedded mode.
    pub redis: String,
}

/// Liveness: the process answers. Never depends on the database, so it does not flap.
#[utoipa::path(get, path = "/health", tag = "health", security(()),
    responses((status = 200, body = HealthStatus)))]
pub async fn health() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok".into(),
        storage: "not checked".into(),
        migrations: "not checked".into(),
        redis: "not checked".into(),
    })
}

/// Whether this replica can serve: not draining, storage reachable and migrated. With
/// `include_redis`, Redis must answer too.
async fn readiness(state: &AppState, include_redis: bool) -> Result<(), &'static str> {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err("shutting down");
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.readiness()).await {
        Ok(Ok(r)) if r.migrations_applied() => {}
        Ok(Ok(_)) => return Err("migrations pending"),
        Ok(Err(_)) => return Err("storage unreachable"),
        Err(_) => return Err("storage timed out"),
    }
    if let Some(redis) = state.redis.as_ref().filter(|_| include_redis) {
        match tokio::time::timeout(Duration::from_secs(2), redis.ping()).await {
            Ok(Ok(())) => {}
            _ => return Err("Redis unreachable"),
        }
    }
    Ok(())
}

/// Readiness: storage reachable, every migration applied, and Redis reachable when configured.
#[utoipa::path(get, path = "/health/ready", tag = "health", security(()),
    responses((status = 200, body = HealthStatus), (status = 503, body = crate::error::Problem)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    match readiness(&state, true).await {
        Ok(()) => Json(HealthStatus {
            status: "ready".into(),
            storage: "ok".into(),
            migrations: "applied".into(),
            redis: if state.redis.is_some() {
                "ok"
            } else {
                "not configured"
            }
            .into(),
        })
        .into_response(),
        Err(why) => problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("Not ready: {why}."),
            Vec::new(),
        ),
    }
}

/// For load balancers (HAProxy `option httpchk GET /healthz`), as plain text: whether this
/// replica can serve requests. Unlike `/health/ready` it ignores Redis: without Redis every
/// replica still serves (logins fail closed, the rest goes on), and taking all of them out of
/// rotation at once would turn that degradation into an outage.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "ok", body = String), (status = 503, description = "not ready", body = String)))]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match readiness(&state, false).await {
        Ok(()) => (StatusCode::OK, "ok\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
    }
}
