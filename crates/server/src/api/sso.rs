//! Single sign-on through the configured OpenID Connect provider (`oidc.rs`): the browser is
//! sent to the provider with a fresh state, nonce and PKCE verifier, comes back to the
//! callback with a code, and leaves with a GlucoSync session. The account rules (docs/sso.md):
//!
//! 1. An identity (issuer + subject) already linked logs in to its account.
//! 2. Otherwise a provider-verified email with no account yet creates one, linked.
//! 3. An existing account is never taken over by email, verified or not (sign-up does not
//!    prove the address, and providers' `email_verified` is not always earned): its owner logs
//!    in with the password and links the provider from Settings (`POST /auth/oidc/link`).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use glucosync_domain::accounts::Email;
use glucosync_store::{AdminGrant, NewUser, StoreError, User};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::accounts::{
    check_display_name, limit, start_session, LOGIN_PER_ADDRESS, LOGIN_WINDOW,
};
use crate::auth::{cookie_value, verify_password, Caller, ClientIp, NO_PASSWORD};
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiJson, ApiQuery};
use crate::oidc::{self, Expected, Identity, Provider};
use crate::state::{now_ms, AppState};

/// The browser's half of a login in progress: the state, in a cookie only the callback path
/// receives (a login started in another browser cannot be completed in this one).
const STATE_COOKIE: &str = "glucosync_oidc";
const COOKIE_PATH: &str = "/api/v1/auth/oidc";
/// How long a login at the provider may take.
const LOGIN_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize, ToSchema)]
pub struct SsoStatus {
    /// Single sign-on is configured.
    pub enabled: bool,
    /// Email and password login is available.
    pub password_login: bool,
}

/// How this installation logs people in (no login needed).
#[utoipa::path(get, path = "/auth/oidc", tag = "sso", security(()),
    responses((status = 200, body = SsoStatus)))]
pub async fn status(State(state): State<AppState>) -> Json<SsoStatus> {
    Json(SsoStatus {
        enabled: state.oidc.is_some(),
        password_login: state.config.password_login,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LoginParams {
    /// Where in the app to land afterwards (a path under `/app/`); default `/app/`.
    pub next: Option<String>,
}

/// The login in progress, kept in the shared cache under its state for ten minutes.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    nonce: String,
    verifier: String,
    next: String,
    /// Set when a logged-in person links the identity to their account.
    link_to: Option<i64>,
}

fn provider(state: &AppState) -> ApiResult<&Provider> {
    state
        .oidc
        .as_deref()
        .ok_or(ApiError::NotFound("single sign-on"))
}

/// Only paths inside the app: an open redirect would let a link to GlucoSync's login send
/// people anywhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/app/")
                && !n.contains("//")
                && !n.contains('\\')
                // Visible ASCII only: it becomes a Location header.
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/app/".into(),
    }
}

async fn begin(state: &AppState, pending: Pending) -> ApiResult<(String, HeaderValue)> {
    let provider = provider(state)?;
    let metadata = provider.metadata().await.map_err(|e| {
        tracing::warn!(error = %e, "single sign-on provider unavailable");
        ApiError::Unavailable("the single sign-on provider cannot be reached".into())
    })?;
    let login_state = oidc::random_token();
    let url = provider.authorization_url(
        &metadata,
        &login_state,
        &pending.nonce,
        &oidc::code_challenge(&pending.verifier),
    );
    let record = serde_json::to_string(&pending).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .cache
        .put(&format!("oidc:login:{login_state}"), &record, LOGIN_TTL)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let cookie = HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={login_state}; Path={COOKIE_PATH}; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        LOGIN_TTL.as_secs()
    ))
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((url, cookie))
}

fn new_pending(next: String, link_to: Option<i64>) -> Pending {
    Pending {
        nonce: oidc::random_token(),
        verifier: oidc::random_token(),
        next,
        link_to,
    }
}

/// Starts a login at the provider: redirects there.
#[utoipa::path(get, path = "/auth/oidc/login", tag = "sso", params(LoginParams), security(()),
    responses((status = 303, description = "To the provider's login"),
              (status = 404, body = crate::error::Problem), (status = 429, description = "Too many attempts from this address", body = crate::error::Problem),
              (status = 503, body = crate::error::Problem)))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientIp,
    ApiQuery(params): ApiQuery<LoginParams>,
) -> ApiResult<Response> {
    // Each start stores a login in progress: limited per address like password logins.
    limit(
        &state,
        format!("sso:ip:{}", client.limit_key()),
        LOGIN_PER_ADDRESS,
        LOGIN_WINDOW,
    )
    .await?;
    let (url, cookie) = begin(&state, new_pending(safe_next(params.next.as_deref()), None)).await?;
    Ok(redirect(&url, Some(cookie)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The account's password: linking adds a way into the account, so it needs the key.
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkStart {
    /// Open this in the browser; the provider's login follows, then the app's settings.
    pub authorization_url: String,
}

/// Links the provider's identity to the logged-in account (after its password): returns the
/// provider URL to open.
#[utoipa::path(post, path = "/auth/oidc/link", tag = "sso", request_body = LinkRequest,
    responses((status = 200, body = LinkStart), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)))]
pub async fn link(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<LinkRequest>,
) -> ApiResult<Response> {
    caller.require_session()?;
    provider(&state)?;
    let stored = state.store.password_hash(caller.user_id).await?;
    if !verify_password(req.password, stored).await? {
        return Err(ApiError::forbidden(
            "wrong_password",
            "The password is not this account's.",
        ));
    }
    let pending = new_pending("/app/settings".into(), Some(caller.user_id));
    let (url, cookie) = begin(&state, pending).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, cookie);
    Ok((
        headers,
        Json(LinkStart {
            authorization_url: url,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's refusal (e.g. `access_denied`).
    pub error: Option<String>,
    /// RFC 9207: the provider that answered.
    pub iss: Option<String>,
}

/// Why a login did not complete: the app's login page explains each.
#[derive(Debug, Clone, Copy)]
enum Failure {
    /// No login of this browser is in progress (expired, replayed, or another browser's).
    State,
    /// The provider refused, or could not be reached.
    Provider,
    /// The ID token was not acceptable.
    Token,
    /// The provider has not verified the email address.
    EmailUnverified,
    /// The identity belongs to another account.
    Conflict,
    /// An account with this email exists: its owner links the provider from Settings.
    LinkRequired,
    Disabled,
    /// GlucoSync could not complete it (storage unavailable, a race): try again.
    Server,
}

impl Failure {
    fn code(self) -> &'static str {
        match self {
            Failure::State => "state",
            Failure::Provider => "provider",
            Failure::Token => "token",
            Failure::EmailUnverified => "email_unverified",
            Failure::Conflict => "conflict",
            Failure::LinkRequired => "link_required",
            Failure::Disabled => "disabled",
            Failure::Server => "server",
        }
    }
}

fn redirect(to: &str, cookie: Option<HeaderValue>) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, v);
    }
    if let Some(c) = cookie {
        headers.append(header::SET_COOKIE, c);
    }
    (StatusCode::SEE_OTHER, headers).into_response()
}

fn clear_state_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!("{STATE_COOKIE}=; Path={COOKIE_PATH}; Max-Age=0"))
        .expect("a valid cookie")
}

fn failed(failure: Failure) -> Response {
    redirect(
        &format!("/app/login?sso_error={}", failure.code()),
        Some(clear_state_cookie()),
    )
}

/// The provider sends the browser back here with a code: the login completes with a session
/// (and a redirect into the app), or the app's login page says why not.
#[utoipa::path(get, path = "/auth/oidc/callback", tag = "sso", params(CallbackParams), security(()),
    responses((status = 303, description = "Into the app with a session, or to the login page with `sso_error`"),
              (status = 404, description = "Single sign-on is not configured", body = crate::error::Problem)))]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Result<Caller, ApiError>,
    ApiQuery(params): ApiQuery<CallbackParams>,
) -> ApiResult<Response> {
    let provider = provider(&state)?;
    let Some(login_state) = params.state.as_deref() else {
        return Ok(failed(Failure::State));
    };
    // The state must be this browser's, unused, and not expired.
    if cookie_value(&headers, STATE_COOKIE) != Some(login_state) {
        tracing::warn!("single sign-on callback without this browser's state");
        return Ok(failed(Failure::State));
    }
    let key = format!("oidc:login:{login_state}");
    let first_use = state
        .cache
        .claim(&format!("oidc:used:{login_state}"), LOGIN_TTL)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let pending = state
        .cache
        .get(&key)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .and_then(|v| serde_json::from_str::<Pending>(&v).ok());
    let _ = state.cache.remove(&[key]).await;
    let Some(pending) = pending.filter(|_| first_use) else {
        tracing::warn!("single sign-on callback with an unknown or used state");
        return Ok(failed(Failure::State));
    };
    // A link started in Settings completes only in the browser still logged in to that
    // account (not in a shared browser where someone else has logged in since).
    if let Some(link_to) = pending.link_to {
        let same = session.as_ref().is_ok_and(|c| {
            c.user_id == link_to && c.kind == glucosync_store::CredentialKind::Session
        });
        if !same {
            tracing::warn!("single sign-on link completed without the linking account's session");
            return Ok(failed(Failure::State));
        }
    }
    if let Some(error) = &params.error {
        tracing::info!(error = %error, "the single sign-on provider refused the login");
        return Ok(failed(Failure::Provider));
    }
    if params
        .iss
        .as_deref()
        .is_some_and(|iss| iss != provider.issuer())
    {
        return Ok(failed(Failure::Provider));
    }
    let Some(code) = params.code.as_deref() else {
        return Ok(failed(Failure::Provider));
    };
    let id_token = match provider.exchange_code(code, &pending.verifier).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on code exchange failed");
            return Ok(failed(Failure::Provider));
        }
    };
    let identity = match verify_id_token(provider, &id_token, &pending.nonce).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on ID token refused");
            return Ok(failed(Failure::Token));
        }
    };
    let user = match account_for(&state, provider, &identity, pending.link_to).await {
        Ok(Ok(user)) => user,
        Ok(Err(failure)) => return Ok(failed(failure)),
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on could not complete");
            return Ok(failed(Failure::Server));
        }
    };
    if pending.link_to.is_some() {
        // Linked from Settings: the session there goes on.
        return Ok(redirect(&pending.next, Some(clear_state_cookie())));
    }
    let (mut headers, _) = start_session(&state, user, "single sign-on").await?;
    headers.append(header::SET_COOKIE, clear_state_cookie());
    if let Ok(v) = HeaderValue::from_str(&pending.next) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::SEE_OTHER, headers).into_response())
}

/// Verifies an ID token for this client and login (exposed for tests of the rules).
pub async fn verify_id_token(
    provider: &Provider,
    token: &str,
    nonce: &str,
) -> Result<Identity, oidc::TokenError> {
    let claims = provider
        .verify(
            token,
            &Expected {
                audience: &provider.client_id,
                nonce: Some(nonce),
                now_s: now_ms() / 1000,
            },
        )
        .await?;
    oidc::identity(&claims)
}

/// The account the identity logs in to, by the rules at the top of this file.
async fn account_for(
    state: &AppState,
    provider: &Provider,
    identity: &Identity,
    link_to: Option<i64>,
) -> ApiResult<Result<User, Failure>> {
    let issuer = provider.issuer();
    let now = now_ms();
    let mut user = if let Some(user_id) = link_to {
        // Linking from Settings: the account's owner proved the password to start it.
        state
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(ApiError::NotFound("account"))?
    } else if let Some(user) = state
        .store
        .user_by_identity(issuer, &identity.subject)
        .await?
    {
        user
    } else {
        let Some(email) = identity
            .email
            .as_deref()
            .filter(|_| identity.email_verified)
            .and_then(|e| Email::parse(e).ok())
        else {
            return Ok(Err(Failure::EmailUnverified));
        };
        if state.store.user_by_email(email.as_str()).await?.is_some() {
            return Ok(Err(Failure::LinkRequired));
        }
        let created = state
            .store
            .create_user(NewUser {
                email,
                password_hash: NO_PASSWORD.into(),
                admin: AdminGrant::No,
                now_ms: now,
            })
            .await?;
        // The provider's name, if it passes the rules of one typed in the app.
        if let Ok(Some(name)) = check_display_name(identity.name.as_deref()) {
            state
                .store
                .set_display_name(created.id, Some(&name))
                .await?;
        }
        state
            .store
            .user_by_id(created.id)
            .await?
            .ok_or(ApiError::NotFound("account"))?
    };
    if user.disabled {
        return Ok(Err(Failure::Disabled));
    }
    match state
        .store
        .link_identity(user.id, issuer, &identity.subject, now)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Ok(Err(Failure::Conflict)),
        Err(e) => return Err(e.into()),
    }
    // The provider's groups decide who is an administrator, at every single sign-on.
    if let Some(admin) = oidc::is_admin(provider, identity) {
        if admin != user.is_admin {
            state.store.set_admin(user.id, admin).await?;
            user.is_admin = admin;
        }
    }
    Ok(Ok(user))
}

/// Sends the browser to the provider to end its session there too (after `POST /auth/logout`
/// ended GlucoSync's), back to the app afterwards.
#[utoipa::path(get, path = "/auth/oidc/logout", tag = "sso", security(()),
    responses((status = 303, description = "To the provider's end-session endpoint, or to the app"),
              (status = 404, description = "Single sign-on is not configured", body = crate::error::Problem)))]
pub async fn logout(State(state): State<AppState>) -> ApiResult<Response> {
    let provider = provider(&state)?;
    let back = format!("{}/app/", state.config.public_url.trim_end_matches('/'));
    let to = provider
        .end_session_url(&back)
        .await
        .unwrap_or_else(|| "/app/".into());
    Ok(redirect(&to, None))
}
