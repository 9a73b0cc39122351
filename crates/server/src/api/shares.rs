//! Sharing a person's data with followers (caregivers, clinicians): invites with a single-use,
//! expiring token, accepting with one's own account, listing and revoking. The invite token is
//! shown once, to the person who invites (email delivery of the link is still to come); only
//! its hash is stored.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use glucosync_domain::accounts::Email;
use glucosync_domain::{Timestamp, ValidationError};
use glucosync_store::{NewInvite, Share, ShareRole};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::ToSchema;

use crate::auth::{hash_secret, new_secret, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiJson, ApiPath};
use crate::state::{now_ms, AppState};

/// How long an invite can be accepted.
const INVITE_DAYS: i64 = 7;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// Whom to invite.
    #[schema(format = Email)]
    pub email: String,
    /// `caregiver` (live data, alerts, forecasts, reports) or `clinician` (reports only).
    #[schema(pattern = r"^(caregiver|clinician)$")]
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShareOut {
    pub id: i64,
    pub role: String,
    pub invite_email: String,
    /// `pending`, `active` or `revoked`.
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
    pub accepted_at: Option<String>,
    /// The person whose data it is.
    pub owner_id: i64,
    pub follower_id: Option<i64>,
    /// How the follower hears of the person's alerts (they choose: `PATCH /following/{id}`).
    pub notify_push: bool,
    pub notify_email: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedInvite {
    #[serde(flatten)]
    pub share: ShareOut,
    /// The invite's secret: shown only now. The follower accepts it with their own account.
    pub invite_token: String,
    /// Whether an email with the link is on its way to the invitee (a mail server is
    /// configured); if not, pass the token on yourself.
    pub emailed: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    pub invite_token: String,
}

impl From<Share> for ShareOut {
    fn from(s: Share) -> Self {
        let ts = |ms: i64| Timestamp::from_utc_ms(ms).to_rfc3339_utc();
        ShareOut {
            id: s.id,
            role: s.role.as_str().to_owned(),
            invite_email: s.invite_email.clone(),
            status: if s.revoked_ms.is_some() {
                "revoked"
            } else if s.follower_id.is_some() {
                "active"
            } else {
                "pending"
            }
            .to_owned(),
            created_at: ts(s.created_ms),
            expires_at: ts(s.expires_ms),
            accepted_at: s.accepted_ms.map(ts),
            owner_id: s.owner_id,
            follower_id: s.follower_id,
            notify_push: s.notify_push,
            notify_email: s.notify_email,
        }
    }
}

/// Invite a follower. The response carries the invite token, once.
#[utoipa::path(post, path = "/shares", tag = "sharing", request_body = InviteRequest,
    responses((status = 201, body = CreatedInvite), (status = 403, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<InviteRequest>,
) -> ApiResult<(StatusCode, Json<CreatedInvite>)> {
    caller.require_session()?;
    let email = Email::parse(&req.email).map_err(|_| {
        ApiError::validation(ValidationError::new("email", "is not an email address"))
    })?;
    let role = ShareRole::parse(&req.role).ok_or_else(|| {
        ApiError::validation(ValidationError::new(
            "role",
            "must be caregiver or clinician",
        ))
    })?;
    let now = now_ms();
    let token = new_secret("gsi_");
    let share = state
        .store
        .create_invite(NewInvite {
            owner_id: caller.user_id,
            role,
            invite_email: email.as_str().to_owned(),
            token_hash: hash_secret(&token),
            now_ms: now,
            expires_ms: now + INVITE_DAYS * 86_400_000,
        })
        .await?;
    let emailed = send_invite(&state, caller.user_id, email.as_str(), role, &token).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedInvite {
            share: share.into(),
            invite_token: token,
            emailed,
        }),
    ))
}

/// Emails the invite in the background, retrying with backoff (2 s, 4 s, … for about a
/// minute) while the mail server is unreachable; the response does not wait. False when no
/// mail server is configured: the person passes the token on themself.
async fn send_invite(
    state: &AppState,
    owner: glucosync_store::UserId,
    to: &str,
    role: ShareRole,
    token: &str,
) -> bool {
    let Some(mailer) = state.notifier.mailer() else {
        return false;
    };
    let inviter = match state.store.user_by_id(owner).await {
        Ok(Some(u)) => u.display_name.unwrap_or(u.email),
        _ => "Someone".to_owned(),
    };
    let what = match role {
        ShareRole::Caregiver => "their glucose, forecasts and alerts, live",
        ShareRole::Clinician => "their glucose reports",
    };
    // The token travels in the fragment: it never reaches a server log or a Referer.
    // The web app's invite screen; the site has no page of its own for it.
    let link = format!("{}/app/invite#{token}", state.config.public_url);
    let text = format!(
        "{inviter} invites you to follow {what} on GlucoSync.\n\n\
         Accept with your own GlucoSync account (sign up if you have none): {link}\n\n\
         The link works once and expires in {INVITE_DAYS} days. If you did not expect this, \
         ignore this email.\n"
    );
    let subject = format!("{inviter} invites you to GlucoSync");
    let to = to.to_owned();
    // A trace of its own, linked to the invite's request (which does not wait for the mail).
    let span = tracing::info_span!(parent: None, "send invite");
    crate::traces::link_to_current(&span);
    tokio::spawn(
        async move {
            for attempt in 0..6u32 {
                match mailer.send(&to, &subject, text.clone(), None).await {
                    Ok(()) => return,
                    Err(e) if e.permanent => {
                        tracing::warn!(error = %e.message, "an invite email was refused");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e.message, attempt, "an invite email will be retried");
                        tokio::time::sleep(std::time::Duration::from_secs(2u64 << attempt)).await;
                    }
                }
            }
            tracing::warn!("an invite email could not be sent");
        }
        .instrument(span),
    );
    true
}

/// The caller's shares and invites, newest first.
#[utoipa::path(get, path = "/shares", tag = "sharing",
    responses((status = 200, body = Vec<ShareOut>), (status = 403, body = crate::error::Problem)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ShareOut>>> {
    caller.require_session()?;
    let shares = state.store.shares_of_owner(caller.user_id).await?;
    Ok(Json(shares.into_iter().map(ShareOut::from).collect()))
}

/// Revoke a share or a pending invite: effective at once.
#[utoipa::path(delete, path = "/shares/{id}", tag = "sharing", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    caller.require_session()?;
    let follower = state
        .store
        .shares_of_owner(caller.user_id)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .and_then(|s| s.follower_id);
    if state
        .store
        .revoke_share(caller.user_id, id, now_ms())
        .await?
    {
        // The follower's live sockets on every replica close their stream of this person.
        if let Some(follower) = follower {
            crate::live::publish(
                &state,
                follower,
                &[crate::live::share_revoked_event(caller.user_id)],
            )
            .await;
        }
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("share"))
    }
}

/// Accept an invite with the caller's own account.
#[utoipa::path(post, path = "/shares/accept", tag = "sharing", request_body = AcceptRequest,
    responses((status = 200, body = ShareOut), (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem)))]
pub async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<AcceptRequest>,
) -> ApiResult<Json<ShareOut>> {
    caller.require_session()?;
    if req.invite_token.is_empty() || req.invite_token.len() > 200 {
        return Err(ApiError::NotFound("invite"));
    }
    let share = state
        .store
        .accept_invite(&hash_secret(&req.invite_token), caller.user_id, now_ms())
        .await?
        .ok_or(ApiError::NotFound("invite"))?;
    Ok(Json(share.into()))
}

/// A share seen from the follower's side: with who the person is, for a caregiver switching
/// between the people they follow.
#[derive(Debug, Serialize, ToSchema)]
pub struct FollowedOut {
    #[serde(flatten)]
    pub share: ShareOut,
    /// The person's email (the follower accepted their invite, so they know it).
    pub owner_email: String,
    pub owner_name: Option<String>,
}

/// The people the caller follows.
#[utoipa::path(get, path = "/following", tag = "sharing",
    responses((status = 200, body = Vec<FollowedOut>)))]
pub async fn following(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<FollowedOut>>> {
    caller.require_session()?;
    let shares = state.store.shares_followed(caller.user_id).await?;
    let mut out = Vec::with_capacity(shares.len());
    // A follower follows a handful of people: one lookup each is fine.
    for share in shares {
        let owner = state.store.user_by_id(share.owner_id).await?;
        out.push(FollowedOut {
            owner_email: owner.as_ref().map(|u| u.email.clone()).unwrap_or_default(),
            owner_name: owner.and_then(|u| u.display_name),
            share: share.into(),
        });
    }
    Ok(Json(out))
}

/// How the caller, a follower, wants to hear of one person's alerts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowChannels {
    /// Web Push to the caller's subscribed devices (caregivers only).
    pub push: bool,
    /// Email to the caller's account address.
    pub email: bool,
}

/// Choose how to hear of the alerts of a person the caller follows.
#[utoipa::path(patch, path = "/following/{owner_id}", tag = "sharing",
    params(("owner_id" = i64, Path)), request_body = FollowChannels,
    responses((status = 200, body = ShareOut), (status = 404, body = crate::error::Problem)))]
pub async fn set_channels(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(owner_id): ApiPath<i64>,
    ApiJson(req): ApiJson<FollowChannels>,
) -> ApiResult<Json<ShareOut>> {
    caller.require_session()?;
    if !state
        .store
        .set_follow_channels(owner_id, caller.user_id, req.push, req.email)
        .await?
    {
        return Err(ApiError::NotFound("share"));
    }
    let share = state
        .store
        .active_share(owner_id, caller.user_id)
        .await?
        .ok_or(ApiError::NotFound("share"))?;
    Ok(Json(share.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccessLogParams {
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^-?[0-9]{1,18}\.-?[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Entries per page, 1–1000. Default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One read of the caller's data by a follower.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessOut {
    pub time: String,
    pub follower_id: i64,
    pub follower_email: String,
    /// What was read: `readings`, `readings.latest`, `treatments`, `forecast`,
    /// `reports.summary`, `reports.agp`, `reports.events`, `reports.daily`, `reports.hourly`.
    pub what: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessLogPage {
    pub items: Vec<AccessOut>,
    /// Pass as `cursor` for older entries; null on the last page.
    pub next_cursor: Option<String>,
}

/// Who of the caller's followers read what of their data, and when, newest first.
#[utoipa::path(get, path = "/access-log", tag = "sharing", params(AccessLogParams),
    responses((status = 200, body = AccessLogPage), (status = 422, body = crate::error::Problem)))]
pub async fn access_log(
    State(state): State<AppState>,
    caller: Caller,
    crate::json::ApiQuery(params): crate::json::ApiQuery<AccessLogParams>,
) -> ApiResult<Json<AccessLogPage>> {
    caller.require_session()?;
    let (limit, before) = crate::api::log_page(params.limit, params.cursor.as_deref())?;
    let entries = state
        .store
        .access_log(caller.user_id, before, limit)
        .await?;
    let next_cursor = crate::api::next_log_cursor(&entries, limit, |e| (e.time_ms, e.id));
    Ok(Json(AccessLogPage {
        items: entries
            .into_iter()
            .map(|e| AccessOut {
                time: Timestamp::from_utc_ms(e.time_ms).to_rfc3339_utc(),
                follower_id: e.follower_id,
                follower_email: e.follower_email,
                what: e.what,
            })
            .collect(),
        next_cursor,
    }))
}
