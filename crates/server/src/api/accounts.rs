//! Sign up, log in and out, change password, profile and settings.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::SecondsFormat;
use glucosync_domain::accounts::{check_password_policy, Email, Scope};
use glucosync_domain::readings::check_short_text;
use glucosync_domain::settings::UserSettings;
use glucosync_domain::{GlucoseUnit, Timestamp, ValidationError};
use glucosync_shared_state::RateDecision;
use glucosync_store::{AdminGrant, CredentialKind, NewCredential, NewUser, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{
    forget_credentials, hash_password, hash_secret, new_secret, verify_password, Caller, ClientIp,
    CSRF_COOKIE, SESSION_COOKIE,
};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::{now_ms, AppState};

/// Login attempts per account per window, and per client address.
const LOGIN_PER_ACCOUNT: u32 = 10;
pub(crate) const LOGIN_PER_ADDRESS: u32 = 50;
pub(crate) const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
const SIGNUPS_PER_ADDRESS: u32 = 20;
const SIGNUP_WINDOW: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[schema(example = "ana@example.org")]
    pub email: String,
    /// At least 10 characters and not easy to guess.
    #[schema(example = "violet tractor harbour sings")]
    pub password: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Session token: send as `Authorization: Bearer <token>` (browsers use the cookie instead).
    pub token: String,
    /// Browsers echo this in `X-CSRF-Token` on unsafe requests authenticated by the cookie.
    pub csrf_token: String,
    pub expires_at: String,
    pub user: Profile,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub id: i64,
    pub email: String,
    pub display_name: Option<String>,
    pub is_admin: bool,
    pub created_at: String,
    pub settings: UserSettings,
    /// When the account will be deleted, if its owner asked (`POST /me/keep` cancels).
    pub deletion_due: Option<String>,
}

impl From<User> for Profile {
    fn from(u: User) -> Self {
        Profile {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            is_admin: u.is_admin,
            created_at: Timestamp::from_utc_ms(u.created_ms).to_rfc3339_utc(),
            settings: u.settings,
            deletion_due: u
                .deletion_due_ms
                .map(|ms| Timestamp::from_utc_ms(ms).to_rfc3339_utc()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountRequest {
    /// The account's email address, typed again to confirm.
    pub confirm_email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionScheduled {
    /// When the account and all its data will be deleted; until then, logging in and
    /// `POST /me/keep` cancel.
    pub deletion_due: String,
}

/// Delete my account. At once, every session and token stops working, every share (both
/// ways) ends, the Nightscout site and push subscriptions go. After the grace period
/// (`account_deletion_grace_days`, default 7) the account and everything in it are deleted;
/// until then, logging in again and `POST /me/keep` keep it. Needs a login session.
#[utoipa::path(delete, path = "/me", tag = "accounts", request_body = DeleteAccountRequest,
    responses((status = 202, body = DeletionScheduled), (status = 422, body = crate::error::Problem)))]
pub async fn delete_me(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<DeleteAccountRequest>,
) -> ApiResult<(StatusCode, Json<DeletionScheduled>)> {
    caller.require_session()?;
    let user = state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if !req.confirm_email.trim().eq_ignore_ascii_case(&user.email) {
        return Err(ApiError::validation(
            glucosync_domain::ValidationError::new(
                "confirm_email",
                "must be this account's email address",
            ),
        ));
    }
    let due = crate::accounts::request_deletion(&state, user.id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(DeletionScheduled {
            deletion_due: Timestamp::from_utc_ms(due).to_rfc3339_utc(),
        }),
    ))
}

/// Keep my account: cancels a scheduled deletion. What was cut stays cut: shares must be
/// sent again, and the Nightscout site is a new one (new address and secret).
#[utoipa::path(post, path = "/me/keep", tag = "accounts",
    responses((status = 200, body = Profile), (status = 409, body = crate::error::Problem)))]
pub async fn keep_me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Profile>> {
    caller.require_session()?;
    if !state.store.cancel_deletion(caller.user_id).await? {
        return Err(ApiError::Conflict(
            "This account is not scheduled for deletion.".into(),
        ));
    }
    tracing::info!(user_id = caller.user_id, "account deletion cancelled");
    let user = state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(Json(user.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// A new display name (up to 100 characters, no control characters); null removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 100, pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$")]
    pub display_name: Option<Option<String>>,
}

/// Distinguishes an absent key (no change) from an explicit null (clear).
fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Settings to change; keys left out keep their value. Thresholds are in mg/dL.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    pub display_unit: Option<GlucoseUnit>,
    pub time_zone: Option<String>,
    pub target_low_mgdl: Option<f64>,
    pub target_high_mgdl: Option<f64>,
    pub low_threshold_mgdl: Option<f64>,
    pub high_threshold_mgdl: Option<f64>,
    pub urgent_low_mgdl: Option<f64>,
    /// Replaces the alert preferences as a whole.
    pub alerts: Option<glucosync_domain::settings::AlertPreferences>,
    /// Opt in to (or out of) AI summaries and questions.
    pub ai_insights: Option<bool>,
}

pub(crate) async fn limit(
    state: &AppState,
    key: String,
    max: u32,
    window: Duration,
) -> ApiResult<()> {
    match state.limiter.hit(&key, max, window).await? {
        RateDecision::Allowed { .. } => Ok(()),
        RateDecision::Limited { retry_after } => Err(ApiError::RateLimited {
            retry_after_secs: retry_after.as_secs().max(1),
        }),
    }
}

pub(crate) fn check_display_name(name: Option<&str>) -> ApiResult<Option<String>> {
    match name.map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) => Ok(Some(
            check_short_text("display_name", n)
                .map_err(ApiError::validation)?
                .to_owned(),
        )),
    }
}

/// Create an account. The first account on a server is its admin.
#[utoipa::path(post, path = "/auth/signup", tag = "accounts", request_body = SignupRequest, security(()),
    responses((status = 201, body = Profile), (status = 409, description = "Email taken", body = crate::error::Problem),
              (status = 422, description = "Invalid email or weak password", body = crate::error::Problem),
              (status = 429, description = "Too many sign-ups from this address", body = crate::error::Problem)))]
pub async fn signup(
    State(state): State<AppState>,
    client: ClientIp,
    ApiJson(req): ApiJson<SignupRequest>,
) -> ApiResult<(StatusCode, Json<Profile>)> {
    password_login_enabled(&state)?;
    limit(
        &state,
        format!("signup:ip:{}", client.limit_key()),
        SIGNUPS_PER_ADDRESS,
        SIGNUP_WINDOW,
    )
    .await?;
    let email = Email::parse(&req.email).map_err(ApiError::validation)?;
    check_password_policy(&req.password, email.as_str()).map_err(ApiError::validation)?;
    let display_name = check_display_name(req.display_name.as_deref())?;
    let password_hash = hash_password(req.password).await?;
    let user = state
        .store
        .create_user(NewUser {
            email,
            password_hash,
            admin: AdminGrant::IfFirst,
            now_ms: now_ms(),
        })
        .await
        .map_err(|e| match e {
            glucosync_store::StoreError::Conflict(_) => {
                ApiError::Conflict("An account with this email exists; log in instead.".into())
            }
            other => other.into(),
        })?;
    if display_name.is_some() {
        state
            .store
            .set_display_name(user.id, display_name.as_deref())
            .await?;
    }
    state.metrics.user_signups_total.inc();
    let user = state
        .store
        .user_by_id(user.id)
        .await?
        .ok_or(ApiError::NotFound("account"))?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Log in with email and password: returns a session token and sets the session cookie.
#[utoipa::path(post, path = "/auth/login", tag = "accounts", request_body = LoginRequest, security(()),
    responses((status = 200, body = LoginResponse), (status = 401, body = crate::error::Problem),
              (status = 429, description = "Too many attempts", body = crate::error::Problem)))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    password_login_enabled(&state)?;
    let email = Email::parse(&req.email).map_err(|_| ApiError::Unauthenticated)?;
    limit(
        &state,
        format!("login:ip:{}", client.limit_key()),
        LOGIN_PER_ADDRESS,
        LOGIN_WINDOW,
    )
    .await?;
    let account_key = format!("login:account:{}", hash_secret(email.as_str()));
    limit(&state, account_key.clone(), LOGIN_PER_ACCOUNT, LOGIN_WINDOW).await?;
    let found = state.store.user_by_email(email.as_str()).await?;
    let stored_hash = found.as_ref().map(|(_, h)| h.clone());
    if req.password.chars().count() > glucosync_domain::limits::MAX_PASSWORD_CHARS
        || !verify_password(req.password, stored_hash).await?
    {
        return Err(ApiError::Unauthenticated);
    }
    let Some((user, _)) = found else {
        return Err(ApiError::Unauthenticated);
    };
    if user.disabled {
        return Err(ApiError::forbidden(
            "account_disabled",
            "This account is disabled.",
        ));
    }
    let _ = state.limiter.reset(&account_key).await;
    let (headers, body) = start_session(&state, user, "login").await?;
    Ok((headers, Json(body)).into_response())
}

/// With single sign-on only (`password_login` off), signing up and logging in with a password
/// are refused: accounts come from the provider.
fn password_login_enabled(state: &AppState) -> ApiResult<()> {
    if state.config.password_login {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "password_login_disabled",
            "This installation uses single sign-on: log in with your organisation's account.",
        ))
    }
}

/// A new login session for `user`: its token and CSRF token, and the cookies that carry them.
/// Password login and single sign-on both end here.
pub(crate) async fn start_session(
    state: &AppState,
    user: glucosync_store::User,
    name: &str,
) -> ApiResult<(HeaderMap, LoginResponse)> {
    let token = new_secret("gss_");
    let csrf = new_secret("gsc_");
    let now = now_ms();
    let ttl_ms = state.config.session_ttl_hours as i64 * 3_600_000;
    let expires_ms = now + ttl_ms;
    state
        .store
        .create_credential(NewCredential {
            user_id: user.id,
            kind: CredentialKind::Session,
            name: name.into(),
            token_hash: hash_secret(&token),
            csrf_hash: Some(hash_secret(&csrf)),
            scopes: Scope::ALL.to_vec(),
            now_ms: now,
            expires_ms: Some(expires_ms),
        })
        .await?;
    let max_age = ttl_ms / 1000;
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let mut headers = HeaderMap::new();
    for cookie in [
        format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
        ),
        format!("{CSRF_COOKIE}={csrf}; Path=/; SameSite=Lax; Max-Age={max_age}{secure}"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    let body = LoginResponse {
        token,
        csrf_token: csrf,
        expires_at: Timestamp::from_utc_ms(expires_ms)
            .utc()
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        user: user.into(),
    };
    Ok((headers, body))
}

/// End the current session (cookie or session token) and clear the cookies.
#[utoipa::path(post, path = "/auth/logout", tag = "accounts",
    responses((status = 204, description = "Logged out"), (status = 401, body = crate::error::Problem)))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require_session()?;
    if let Some(hash) = state
        .store
        .revoke_credential(caller.user_id, caller.credential_id, now_ms())
        .await?
    {
        forget_credentials(&state, caller.user_id, &[hash]).await;
    }
    let mut headers = HeaderMap::new();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path=/; Max-Age=0")) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// Change the password. Every other session of the account is logged out.
#[utoipa::path(post, path = "/auth/password", tag = "accounts", request_body = ChangePasswordRequest,
    responses((status = 204, description = "Changed"), (status = 403, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    caller.require_session()?;
    let user = state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let stored = state.store.password_hash(caller.user_id).await?;
    if !verify_password(req.current_password, stored).await? {
        return Err(ApiError::forbidden(
            "wrong_password",
            "The current password is not correct.",
        ));
    }
    check_password_policy(&req.new_password, &user.email)
        .map_err(|e| ApiError::validation(ValidationError::new("new_password", e.message)))?;
    let hash = hash_password(req.new_password).await?;
    let revoked = state
        .store
        .set_password_hash(caller.user_id, &hash, Some(caller.credential_id))
        .await?;
    forget_credentials(&state, caller.user_id, &revoked).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's profile and settings.
#[utoipa::path(get, path = "/me", tag = "accounts",
    responses((status = 200, body = Profile), (status = 401, body = crate::error::Problem)))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Profile>> {
    caller.require(Scope::Read)?;
    let user = state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(Json(user.into()))
}

/// Change the display name.
#[utoipa::path(patch, path = "/me", tag = "accounts", request_body = ProfileUpdate,
    responses((status = 200, body = Profile), (status = 422, body = crate::error::Problem)))]
pub async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ProfileUpdate>,
) -> ApiResult<Json<Profile>> {
    caller.require_session()?;
    if let Some(name) = req.display_name {
        let name = check_display_name(name.as_deref())?;
        state
            .store
            .set_display_name(caller.user_id, name.as_deref())
            .await?;
    }
    me(State(state), caller).await
}

/// The caller's settings (units, time zone, targets, thresholds).
#[utoipa::path(get, path = "/me/settings", tag = "accounts",
    responses((status = 200, body = UserSettings), (status = 401, body = crate::error::Problem)))]
pub async fn settings(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<UserSettings>> {
    caller.require(Scope::Read)?;
    let user = state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(Json(user.settings))
}

/// Change some settings; the result must be consistent (e.g. low target below high target).
#[utoipa::path(patch, path = "/me/settings", tag = "accounts", request_body = SettingsUpdate,
    responses((status = 200, body = UserSettings), (status = 422, body = crate::error::Problem)))]
pub async fn update_settings(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SettingsUpdate>,
) -> ApiResult<Json<UserSettings>> {
    caller.require_session()?;
    let user = state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let mut s = user.settings;
    if let Some(v) = req.display_unit {
        s.display_unit = v;
    }
    if let Some(v) = req.time_zone {
        s.time_zone = v;
    }
    for (slot, value) in [
        (&mut s.target_low_mgdl, req.target_low_mgdl),
        (&mut s.target_high_mgdl, req.target_high_mgdl),
        (&mut s.low_threshold_mgdl, req.low_threshold_mgdl),
        (&mut s.high_threshold_mgdl, req.high_threshold_mgdl),
        (&mut s.urgent_low_mgdl, req.urgent_low_mgdl),
    ] {
        if let Some(v) = value {
            *slot = v;
        }
    }
    if let Some(alerts) = req.alerts {
        s.alerts = alerts;
    }
    if let Some(v) = req.ai_insights {
        s.ai_insights = v;
    }
    s.validate().map_err(ApiError::validation)?;
    state.store.set_settings(caller.user_id, &s).await?;
    // New thresholds may raise or resolve alerts now.
    state.alerts.evaluate_soon(&state, caller.user_id);
    Ok(Json(s))
}
