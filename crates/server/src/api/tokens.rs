//! Personal API tokens: for uploaders on a phone and for scripts. Shown once, stored hashed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use glucosync_domain::accounts::Scope;
use glucosync_domain::limits::MAX_API_TOKENS_PER_USER;
use glucosync_domain::readings::check_short_text;
use glucosync_domain::{Timestamp, ValidationError};
use glucosync_store::{Credential, CredentialKind, NewCredential};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{forget_credentials, hash_secret, new_secret, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiJson, ApiPath};
use crate::state::{now_ms, AppState};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// What the token is for, e.g. "xDrip+ on my phone": up to 100 characters, not blank, no
    /// control characters.
    #[schema(
        max_length = 100,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*[^\s\u0000-\u0008\u000b-\u001f\u007f-\u009f][^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    /// `read`, `readings:write`, `treatments:write`: at least one.
    #[schema(min_items = 1)]
    pub scopes: Vec<Scope>,
    /// Days until the token stops working (1–3650); omit for no expiry.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret. It is shown only now; store it in the uploader.
    pub token: String,
}

impl From<Credential> for TokenInfo {
    fn from(c: Credential) -> Self {
        let ts = |ms: i64| Timestamp::from_utc_ms(ms).to_rfc3339_utc();
        TokenInfo {
            id: c.id,
            name: c.name,
            scopes: c.scopes,
            created_at: ts(c.created_ms),
            last_used_at: c.last_used_ms.map(ts),
            expires_at: c.expires_ms.map(ts),
        }
    }
}

/// Create a personal API token with chosen scopes. The token is in the response only.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = NewTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 403, body = crate::error::Problem),
              (status = 409, description = "The account holds the most tokens it may (50)", body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    caller.require_session()?;
    let name = req.name.trim();
    if name.is_empty() {
        return Err(ApiError::validation(ValidationError::new(
            "name",
            "must not be empty",
        )));
    }
    check_short_text("name", name).map_err(ApiError::validation)?;
    let mut scopes = req.scopes;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ApiError::validation(ValidationError::new(
            "scopes",
            "name at least one of read, readings:write, treatments:write",
        )));
    }
    if let Some(days) = req.expires_in_days {
        if !(1..=3650).contains(&days) {
            return Err(ApiError::validation(ValidationError::new(
                "expires_in_days",
                "must be 1–3650",
            )));
        }
    }
    let now = now_ms();
    if state
        .store
        .list_api_tokens(caller.user_id, now)
        .await?
        .len()
        >= MAX_API_TOKENS_PER_USER
    {
        return Err(ApiError::Conflict(format!(
            "An account may hold at most {MAX_API_TOKENS_PER_USER} tokens; revoke one first."
        )));
    }
    let token = new_secret("gsa_");
    let credential = state
        .store
        .create_credential(NewCredential {
            user_id: caller.user_id,
            kind: CredentialKind::ApiToken,
            name: name.to_owned(),
            token_hash: hash_secret(&token),
            csrf_hash: None,
            scopes,
            now_ms: now,
            expires_ms: req.expires_in_days.map(|d| now + i64::from(d) * 86_400_000),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            info: credential.into(),
            token,
        }),
    ))
}

/// The caller's live API tokens (never their secrets).
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenInfo>), (status = 403, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    caller.require_session()?;
    let tokens = state
        .store
        .list_api_tokens(caller.user_id, now_ms())
        .await?;
    Ok(Json(tokens.into_iter().map(TokenInfo::from).collect()))
}

/// Revoke a token; it stops working at once.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", params(("id" = i64, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = crate::error::Problem)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    caller.require_session()?;
    // Only API tokens are addressed here: the same ids also number the caller's sessions (and
    // API fuzzing revoked its own session through this endpoint before this check).
    let now = now_ms();
    let is_api_token = state
        .store
        .list_api_tokens(caller.user_id, now)
        .await?
        .iter()
        .any(|t| t.id == id);
    if !is_api_token {
        return Err(ApiError::NotFound("token"));
    }
    match state
        .store
        .revoke_credential(caller.user_id, id, now)
        .await?
    {
        Some(hash) => {
            forget_credentials(&state, caller.user_id, &[hash]).await;
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::NotFound("token")),
    }
}
