//! Web Push subscriptions: a browser or phone registers where alerts may be pushed to it.
//! The service worker subscribes with the server's VAPID public key
//! (`GET /push/vapid-public-key`) and posts the subscription here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use glucosync_domain::accounts::Scope;
use glucosync_domain::{Timestamp, ValidationError};
use glucosync_store::PushSubscription;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiJson, ApiPath};
use crate::push::unb64;
use crate::state::{now_ms, AppState};

/// Devices one person may subscribe.
const MAX_SUBSCRIPTIONS: usize = 20;
const MAX_ENDPOINT: usize = 2048;

#[derive(Debug, Serialize, ToSchema)]
pub struct VapidKey {
    /// The `applicationServerKey` for `PushManager.subscribe` (base64url, uncompressed P-256).
    pub public_key: String,
}

/// The server's Web Push public key.
#[utoipa::path(get, path = "/push/vapid-public-key", tag = "notifications", security(()),
    responses((status = 200, body = VapidKey)))]
pub async fn vapid_public_key(State(state): State<AppState>) -> ApiResult<Json<VapidKey>> {
    let vapid = state.notifier.vapid(&state).await?;
    Ok(Json(VapidKey {
        public_key: vapid.public_key.clone(),
    }))
}

/// A `PushSubscription` as the browser serialises it (`subscription.toJSON()`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionRequest {
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    /// Ignored (browsers send it).
    #[serde(rename = "expirationTime")]
    #[allow(dead_code)]
    pub expiration_time: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    pub p256dh: String,
    pub auth: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionOut {
    pub id: i64,
    pub endpoint: String,
    pub created_at: String,
}

impl From<PushSubscription> for SubscriptionOut {
    fn from(s: PushSubscription) -> Self {
        SubscriptionOut {
            id: s.id,
            endpoint: s.endpoint,
            created_at: Timestamp::from_utc_ms(s.created_ms).to_rfc3339_utc(),
        }
    }
}

/// Where this installation may push: `https://` endpoints of push services on the public
/// internet (never an address inside the server's network: see `crate::outbound`), and
/// `http://` loopback ones only when configured (a local push service in tests).
fn check_endpoint(state: &AppState, endpoint: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::validation(ValidationError::new("endpoint", why));
    if endpoint.len() > MAX_ENDPOINT {
        return Err(bad("is too long"));
    }
    let url = reqwest::Url::parse(endpoint).map_err(|_| bad("is not a URL"))?;
    match crate::delivery::push_endpoint_allowed(&url, state.config.push_allow_loopback) {
        Ok(()) => Ok(()),
        Err(why) => Err(bad(why)),
    }
}

/// Register (or renew) this device for alert notifications.
#[utoipa::path(post, path = "/push/subscriptions", tag = "notifications",
    request_body = SubscriptionRequest,
    responses((status = 201, body = SubscriptionOut), (status = 422, body = crate::error::Problem)))]
pub async fn subscribe(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SubscriptionRequest>,
) -> ApiResult<(StatusCode, Json<SubscriptionOut>)> {
    caller.require(Scope::Read)?;
    check_endpoint(&state, &req.endpoint)?;
    let key_ok =
        unb64(&req.keys.p256dh).is_some_and(|k| p256::PublicKey::from_sec1_bytes(&k).is_ok());
    if !key_ok {
        return Err(ApiError::validation(ValidationError::new(
            "keys.p256dh",
            "must be the browser's P-256 key (base64url)",
        )));
    }
    if unb64(&req.keys.auth).is_none_or(|a| a.len() != 16) {
        return Err(ApiError::validation(ValidationError::new(
            "keys.auth",
            "must be the browser's 16-byte auth secret (base64url)",
        )));
    }
    let existing = state.store.push_subscriptions(caller.user_id).await?;
    if existing.len() >= MAX_SUBSCRIPTIONS && !existing.iter().any(|s| s.endpoint == req.endpoint) {
        return Err(ApiError::Conflict(format!(
            "at most {MAX_SUBSCRIPTIONS} devices; remove one first"
        )));
    }
    let sub = state
        .store
        .add_push_subscription(
            caller.user_id,
            &req.endpoint,
            &req.keys.p256dh,
            &req.keys.auth,
            now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(sub.into())))
}

/// The caller's subscribed devices.
#[utoipa::path(get, path = "/push/subscriptions", tag = "notifications",
    responses((status = 200, body = Vec<SubscriptionOut>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<SubscriptionOut>>> {
    caller.require(Scope::Read)?;
    let subs = state.store.push_subscriptions(caller.user_id).await?;
    Ok(Json(subs.into_iter().map(SubscriptionOut::from).collect()))
}

/// Stop pushing to a device.
#[utoipa::path(delete, path = "/push/subscriptions/{id}", tag = "notifications",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Read)?;
    if state
        .store
        .delete_push_subscription(caller.user_id, id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("subscription"))
    }
}
