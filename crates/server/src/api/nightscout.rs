//! The caller's Nightscout-compatible site (docs/nightscout.md): where uploader and follower
//! apps point, and the API secret they are configured with.

use axum::extract::State;
use axum::Json;
use glucosync_store::{NightscoutSite, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::nightscout::access::{new_api_secret, new_handle, open, seal, secret_hash, sha1_hex};
use crate::state::{now_ms, AppState};

#[derive(Debug, Serialize, ToSchema)]
pub struct NightscoutSiteInfo {
    /// The site's path on this server, e.g. `/ns/k3v9x2m7q1ab`: uploaders take this server's
    /// address followed by it. (Loop and Trio call the server's root instead, which works
    /// too: their API secret says whose site it is.)
    pub base_url: String,
    /// The site's `API_SECRET`, what uploader apps are configured with (they send its SHA-1).
    pub api_secret: String,
    /// Whether anyone may read the site without a secret or token (off by default).
    pub public_read: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NightscoutSiteUpdate {
    /// Let anyone who knows the site's address read it without a secret or token
    /// (Nightscout's `readable` default role). Off by default.
    pub public_read: bool,
}

async fn info(state: &AppState, site: &NightscoutSite) -> ApiResult<NightscoutSiteInfo> {
    Ok(NightscoutSiteInfo {
        base_url: format!("/ns/{}", site.handle),
        api_secret: open(state, &site.secret_sealed).await?,
        public_read: site.public_read,
    })
}

/// The caller's site, created on first use with a random handle and API secret.
async fn site_of(state: &AppState, user_id: i64) -> ApiResult<NightscoutSite> {
    if let Some(site) = state.store.nightscout_site(user_id).await? {
        return Ok(site);
    }
    // A random handle is taken with negligible odds; try again then.
    for _ in 0..5 {
        let secret = new_api_secret();
        let now = now_ms();
        let candidate = NightscoutSite {
            user_id,
            handle: new_handle(),
            secret_hash: secret_hash(&sha1_hex(&secret)),
            secret_sealed: seal(state, &secret).await?,
            public_read: false,
            created_ms: now,
            updated_ms: now,
        };
        match state.store.create_nightscout_site(&candidate).await {
            Ok(site) => return Ok(site),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Internal("no free Nightscout handle".into()))
}

/// Your Nightscout-compatible site: its address and API secret (created on first call).
#[utoipa::path(get, path = "/nightscout", tag = "nightscout",
    responses((status = 200, body = NightscoutSiteInfo), (status = 403, body = crate::error::Problem)))]
pub async fn get_site(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<NightscoutSiteInfo>> {
    caller.require_session()?;
    let site = site_of(&state, caller.user_id).await?;
    Ok(Json(info(&state, &site).await?))
}

/// Turn public read of your Nightscout site on or off.
#[utoipa::path(put, path = "/nightscout", tag = "nightscout", request_body = NightscoutSiteUpdate,
    responses((status = 200, body = NightscoutSiteInfo), (status = 403, body = crate::error::Problem)))]
pub async fn update_site(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(update): ApiJson<NightscoutSiteUpdate>,
) -> ApiResult<Json<NightscoutSiteInfo>> {
    caller.require_session()?;
    let mut site = site_of(&state, caller.user_id).await?;
    site.public_read = update.public_read;
    site.updated_ms = now_ms();
    state.store.update_nightscout_site(&site).await?;
    Ok(Json(info(&state, &site).await?))
}

/// Replace your site's API secret: the old one stops working at once, on every uploader.
#[utoipa::path(post, path = "/nightscout/secret", tag = "nightscout",
    responses((status = 200, body = NightscoutSiteInfo), (status = 403, body = crate::error::Problem)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<NightscoutSiteInfo>> {
    caller.require_session()?;
    let mut site = site_of(&state, caller.user_id).await?;
    let secret = new_api_secret();
    site.secret_hash = secret_hash(&sha1_hex(&secret));
    site.secret_sealed = seal(&state, &secret).await?;
    site.updated_ms = now_ms();
    state.store.update_nightscout_site(&site).await?;
    Ok(Json(info(&state, &site).await?))
}
