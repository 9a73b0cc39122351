//! Who is calling, and what they may do.
//!
//! Two kinds of credential arrive: a browser session (HttpOnly cookie, with a CSRF token that
//! unsafe requests must echo in `X-CSRF-Token`) and a bearer token (a session token returned by
//! login, or a personal API token with scopes). Secrets are random 256-bit values; only their
//! SHA-256 is stored or cached. Password hashing is Argon2id.

use std::time::{Duration, Instant};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use glucosync_domain::accounts::Scope;
use glucosync_store::{CredentialKind, UserId};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::{now_ms, AppState};

pub const SESSION_COOKIE: &str = "glucosync_session";
pub const CSRF_COOKIE: &str = "glucosync_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
const CACHE_TTL: Duration = Duration::from_secs(60);
const TOUCH_EVERY: Duration = Duration::from_secs(300);

/// A new random secret with a prefix saying what it is (`gss_` session, `gsa_` API token,
/// `gsc_` CSRF), so that a leaked token is recognisable by secret scanners.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Argon2 runs on a few dedicated threads, one per core, fed by a queue. Each computation
/// takes 19 MiB for tens of milliseconds of CPU; on the blocking pool a burst of logins ran on
/// hundreds of threads at once, and the allocator kept what each thread had taken (measured:
/// 200 concurrent sign-ups and logins left the engine at 6 GiB RSS; a semaphore in front of
/// the pool still left 1.4 GiB). Long-lived threads reuse their memory.
type HashJob = Box<dyn FnOnce() + Send>;

static HASHERS: std::sync::LazyLock<std::sync::Mutex<std::sync::mpsc::Sender<HashJob>>> =
    std::sync::LazyLock::new(|| {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        for i in 0..threads {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
        }
        std::sync::Mutex::new(tx)
    });

/// Runs `work` on a hashing thread.
async fn on_hasher<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        let _ = reply.send(work());
    });
    HASHERS
        .lock()
        .map_err(|_| ApiError::Internal("password hashing unavailable".into()))?
        .send(job)
        .map_err(|_| ApiError::Internal("password hashing unavailable".into()))?;
    answer
        .await
        .map_err(|_| ApiError::Internal("password hashing failed".into()))?
}

pub async fn hash_password(password: String) -> Result<String, ApiError> {
    on_hasher(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
    })
    .await
}

/// Verifies a password. With no stored hash (unknown account) it verifies against a fixed
/// dummy so that the answer takes as long as for a real account.
/// The stored "hash" of an account made by single sign-on: it has no password, and no
/// password matches it (it is not a PHC string, so no hasher can produce it).
pub const NO_PASSWORD: &str = "!no-password";

pub async fn verify_password(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    // An account without a password verifies against the dummy (same time as a wrong
    // password) and fails.
    let stored = stored.filter(|h| h != NO_PASSWORD);
    on_hasher(move || {
        let dummy;
        let phc = match &stored {
            Some(h) => h.as_str(),
            None => {
                dummy = dummy_hash();
                dummy.as_str()
            }
        };
        let parsed = PasswordHash::new(phc)
            .map_err(|e| ApiError::Internal(format!("stored hash unreadable: {e}")))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && stored.is_some())
    })
    .await
}

fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(b"not a real password", &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
        .clone()
}

/// How the credential arrived; cookies need CSRF protection, bearer tokens do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
}

/// What the cache keeps about a credential (no secrets: the key is the token's hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedCredential {
    credential_id: i64,
    user_id: UserId,
    session: bool,
    scopes: Vec<Scope>,
    csrf_hash: Option<String>,
    is_admin: bool,
    disabled: bool,
    expires_ms: Option<i64>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub credential_id: i64,
    pub kind: CredentialKind,
    pub scopes: Vec<Scope>,
    pub is_admin: bool,
    pub via: Via,
    /// How to tell later whether the credential still stands (see [`Caller::still_stands`]).
    pub(crate) standing: Standing,
}

/// What a long-lived stream needs to re-check the credential that opened it.
#[derive(Debug, Clone)]
pub(crate) enum Standing {
    /// A stored session or API token, by its hash (never the secret).
    Stored { token_hash: String },
    /// A provider's access token: valid until it expires, for an account still enabled.
    Provider { expires_ms: i64 },
}

impl Caller {
    /// Whether the credential behind this caller still stands: not revoked, not expired, its
    /// account neither deleted nor disabled. Requests are authenticated once; the streams that
    /// outlive them (WebSocket, SSE, Nightscout's socket.io) ask this again, so that a logout,
    /// a revoked token or a deleted account ends them too. The store itself answers, not the
    /// cache (another replica may have cached the credential just before its revocation; the
    /// CLI's `user disable` cannot reach a server's cache). A store that cannot answer counts
    /// as standing (the stream is not cut by an outage; it asks again later).
    pub(crate) async fn still_stands(&self, state: &AppState) -> bool {
        let now = now_ms();
        match &self.standing {
            Standing::Stored { token_hash } => match from_store(state, token_hash, now).await {
                Ok(c) => c.credential_id == self.credential_id && !c.disabled,
                Err(ApiError::Unauthenticated) => false,
                Err(_) => true,
            },
            Standing::Provider { expires_ms } => {
                *expires_ms > now
                    && match state.store.user_by_id(self.user_id).await {
                        Ok(user) => user.is_some_and(|u| !u.disabled),
                        Err(_) => true,
                    }
            }
        }
    }

    /// Refuses unless the credential carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.kind == CredentialKind::Session || self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_scope",
                format!("This token lacks the `{}` scope.", scope.as_str()),
            ))
        }
    }

    /// Account management (password, tokens, profile changes) needs a login session.
    pub fn require_session(&self) -> Result<(), ApiError> {
        if self.kind == CredentialKind::Session {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "session_required",
                "This needs a login session; API tokens cannot manage the account.",
            ))
        }
    }
}

pub fn cache_key(token_hash: &str) -> String {
    format!("cred:{token_hash}")
}

/// The value of the cookie `name` in a request's headers.
pub(crate) fn cookie_value<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        if let Some(token) = bearer(parts).filter(|t| looks_like_jwt(t)) {
            let caller = provider_token_caller(state, token).await?;
            api_rate_limit(state, caller.user_id).await?;
            parts.extensions.insert(caller.clone());
            return Ok(caller);
        }
        let (secret, via) = match (bearer(parts), cookie_value(&parts.headers, SESSION_COOKIE)) {
            (Some(t), _) => (t.to_owned(), Via::Bearer),
            (None, Some(c)) => (c.to_owned(), Via::Cookie),
            (None, None) => return Err(ApiError::Unauthenticated),
        };
        if secret.is_empty() || secret.len() > 200 {
            return Err(ApiError::Unauthenticated);
        }
        let hash = hash_secret(&secret);
        let now = now_ms();
        let cached = lookup(state, &hash, now).await?;
        if cached.disabled {
            return Err(ApiError::forbidden(
                "account_disabled",
                "This account is disabled.",
            ));
        }
        if via == Via::Cookie && !is_safe(&parts.method) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let expected = cached.csrf_hash.as_deref().unwrap_or("");
            let matches: bool = hash_secret(sent)
                .as_bytes()
                .ct_eq(expected.as_bytes())
                .into();
            if sent.is_empty() || expected.is_empty() || !matches {
                return Err(ApiError::forbidden(
                    "csrf_failed",
                    "Send the CSRF token from login in the X-CSRF-Token header.",
                ));
            }
        }
        touch(state, cached.credential_id, now);
        api_rate_limit(state, cached.user_id).await?;
        let caller = Caller {
            user_id: cached.user_id,
            credential_id: cached.credential_id,
            kind: if cached.session {
                CredentialKind::Session
            } else {
                CredentialKind::ApiToken
            },
            scopes: cached.scopes,
            is_admin: cached.is_admin,
            via,
            standing: Standing::Stored { token_hash: hash },
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// Why a credential is looked at: for a request (cached, its use recorded, rate limited), or
/// by a long-lived stream asking again whether it still stands (the store itself, nothing
/// counted: a stream's checks must not use up its owner's requests, nor be refused by them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Request,
    Recheck,
}

/// The caller the personal API token (not a login session) with this hash stands for, as other
/// protocols present it (Nightscout's `token=`): revocable and, for a request, cached and rate
/// limited like a bearer token.
pub(crate) async fn api_token_caller(
    state: &AppState,
    token_hash: &str,
    check: Check,
) -> Result<Caller, ApiError> {
    let now = now_ms();
    let cached = match check {
        Check::Request => lookup(state, token_hash, now).await?,
        Check::Recheck => from_store(state, token_hash, now).await?,
    };
    if cached.session || cached.disabled {
        return Err(ApiError::Unauthenticated);
    }
    if check == Check::Request {
        touch(state, cached.credential_id, now);
        api_rate_limit(state, cached.user_id).await?;
    }
    Ok(Caller {
        user_id: cached.user_id,
        credential_id: cached.credential_id,
        kind: CredentialKind::ApiToken,
        scopes: cached.scopes,
        is_admin: cached.is_admin,
        via: Via::Bearer,
        standing: Standing::Stored {
            token_hash: token_hash.to_owned(),
        },
    })
}

/// GlucoSync's own tokens are opaque (`gss_…`, `gst_…`); a compact JWS is the provider's.
fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// A JWT access token from the single sign-on provider, for service-to-service calls (only
/// when `oidc_api_audience` is set): signed by the provider, for that audience, unexpired, and
/// its subject linked to an account, an access token (not an ID token). Its `scope` claim
/// grants the GlucoSync scopes it names (`read`, `readings:write`, `treatments:write`), and
/// must name one. Never a session.
async fn provider_token_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let provider = state.oidc.as_deref().ok_or(ApiError::Unauthenticated)?;
    let audience = provider
        .api_audience
        .as_deref()
        .ok_or(ApiError::Unauthenticated)?;
    let claims = provider
        .verify(
            token,
            &crate::oidc::Expected {
                audience,
                nonce: None,
                now_s: now_ms() / 1000,
            },
        )
        .await
        .map_err(|e| {
            tracing::info!(error = %e, "provider access token refused");
            ApiError::Unauthenticated
        })?;
    let subject = claims
        .get("sub")
        .and_then(serde_json::Value::as_str)
        .ok_or(ApiError::Unauthenticated)?;
    let user = state
        .store
        .user_by_identity(provider.issuer(), subject)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if user.disabled {
        return Err(ApiError::forbidden(
            "account_disabled",
            "This account is disabled.",
        ));
    }
    let scopes: Vec<Scope> = claims
        .get("scope")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .split_whitespace()
        .filter_map(Scope::parse)
        .collect();
    // `verify` refused an expired token; one without `exp` stands for an hour at most.
    let expires_ms = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .map_or(now_ms() + 3_600_000, |exp| exp.saturating_mul(1000));
    if scopes.is_empty() {
        // Granted nothing of GlucoSync's: no default.
        return Err(ApiError::forbidden(
            "insufficient_scope",
            "This token grants none of GlucoSync's scopes (read, readings:write, treatments:write).",
        ));
    }
    Ok(Caller {
        user_id: user.id,
        // Not a stored credential: nothing to touch or revoke here (the provider revokes).
        credential_id: 0,
        kind: CredentialKind::ApiToken,
        scopes,
        is_admin: false,
        via: Via::Bearer,
        standing: Standing::Provider { expires_ms },
    })
}

/// The per-person API limit, counted across replicas. It fails open: while the shared state
/// is unreachable, people keep uploading and reading (their data matters more than the
/// throttle); a warning says so at most every 10 seconds.
pub(crate) async fn api_rate_limit(state: &AppState, user: UserId) -> Result<(), ApiError> {
    let per_minute = state.config.api_rate_limit_per_minute;
    if per_minute == 0 {
        return Ok(());
    }
    let key = format!("api:{user}");
    match state
        .api_limiter
        .hit(&key, per_minute, std::time::Duration::from_secs(60))
        .await
    {
        Ok(glucosync_shared_state::RateDecision::Allowed { .. }) => Ok(()),
        Ok(glucosync_shared_state::RateDecision::Limited { retry_after }) => {
            Err(ApiError::RateLimited {
                retry_after_secs: retry_after.as_secs().max(1),
            })
        }
        Err(e) => {
            static LAST_WARNING_MS: std::sync::atomic::AtomicI64 =
                std::sync::atomic::AtomicI64::new(0);
            let now = now_ms();
            let last = LAST_WARNING_MS.load(std::sync::atomic::Ordering::Relaxed);
            if now - last >= 10_000
                && LAST_WARNING_MS
                    .compare_exchange(
                        last,
                        now,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
            {
                tracing::warn!(error = %e, "API rate limit unavailable; allowing requests");
            }
            Ok(())
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn lookup(state: &AppState, hash: &str, now: i64) -> Result<CachedCredential, ApiError> {
    let key = cache_key(hash);
    // A cache that is down must not lock people out: fall through to the store.
    if let Ok(Some(json)) = state.cache.get(&key).await {
        if let Ok(c) = serde_json::from_str::<CachedCredential>(&json) {
            if c.expires_ms.is_none_or(|e| e > now) {
                return Ok(c);
            }
        }
    }
    let cached = from_store(state, hash, now).await?;
    if let Ok(json) = serde_json::to_string(&cached) {
        let _ = state.cache.put(&key, &json, CACHE_TTL).await;
    }
    Ok(cached)
}

/// What the store says of the credential with this hash now (no cache).
async fn from_store(state: &AppState, hash: &str, now: i64) -> Result<CachedCredential, ApiError> {
    let (credential, user) = state
        .store
        .credential_by_hash(hash, now)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(CachedCredential {
        credential_id: credential.id,
        user_id: user.id,
        session: credential.kind == CredentialKind::Session,
        scopes: credential.scopes,
        csrf_hash: credential.csrf_hash,
        is_admin: user.is_admin,
        disabled: user.disabled,
        expires_ms: credential.expires_ms,
    })
}

/// Records that a credential was used, at most every few minutes, without delaying the request.
fn touch(state: &AppState, credential_id: i64, now: i64) {
    let due = match state.touched.lock() {
        Ok(mut touched) => {
            let instant = Instant::now();
            if touched.len() > 100_000 {
                touched.clear();
            }
            match touched.get(&credential_id) {
                Some(t) if instant.duration_since(*t) < TOUCH_EVERY => false,
                _ => {
                    touched.insert(credential_id, instant);
                    true
                }
            }
        }
        Err(_) => false,
    };
    if due {
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_credential(credential_id, now).await {
                tracing::debug!(error = %e, "could not record credential use");
            }
        });
    }
}

/// Forgets `person`'s revoked credentials in the shared cache, so they fail at once on every
/// replica, and tells `person`'s open streams to check theirs (those opened with a revoked one
/// close; the others carry on).
pub async fn forget_credentials(state: &AppState, person: UserId, token_hashes: &[String]) {
    if token_hashes.is_empty() {
        return;
    }
    let keys: Vec<String> = token_hashes.iter().map(|h| cache_key(h)).collect();
    if let Err(e) = state.cache.remove(&keys).await {
        tracing::error!(error = %e, "could not evict revoked credentials from the cache");
    }
    crate::live::publish(state, person, &[crate::live::credentials_revoked_event()]).await;
}

/// The client's address for per-address rate limits: the TCP peer, or, when the peer is a
/// trusted proxy, the right-most address in `X-Forwarded-For` that is not itself a trusted
/// proxy (addresses further left are whatever the client claimed).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

impl ClientIp {
    /// What per-address limits count by: an IPv4 address, or an IPv6 address's /64. One
    /// subscriber (a home, a phone, a rented server) is routed a whole /64 and can pick any of its
    /// 2^64 addresses: counted per /128, the limit would not limit.
    pub fn limit_key(&self) -> String {
        match self.0 {
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let network = u128::from(v6) & (u128::MAX << 64);
                    format!("{}/64", std::net::Ipv6Addr::from(network))
                }
            },
            v4 => v4.to_string(),
        }
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::Internal("no peer address".into()))?;
        Ok(ClientIp(client_ip(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

pub fn client_ip(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[crate::config::IpRange],
) -> std::net::IpAddr {
    let is_trusted = |a: std::net::IpAddr| trusted.iter().any(|r| r.contains(a));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|a| !is_trusted(*a))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_limits_count_an_ipv6_subscriber_by_its_64() {
        let key = |a: &str| ClientIp(a.parse().expect("address")).limit_key();
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_eq!(key("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: std::net::IpAddr = "10.0.0.1".parse().expect("ip");
        let trusted: crate::config::IpRange = "10.0.0.1".parse().expect("range");
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9".parse().expect("header"),
        );
        assert_eq!(
            client_ip(proxy, &headers, &[trusted]).to_string(),
            "203.0.113.9"
        );
        assert_eq!(
            client_ip(proxy, &headers, &[]).to_string(),
            "10.0.0.1",
            "untrusted peer"
        );
        let other: std::net::IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(client_ip(other, &headers, &[trusted]), other);
        assert_eq!(
            client_ip(proxy, &axum::http::HeaderMap::new(), &[trusted]),
            proxy
        );
    }

    #[test]
    fn a_trusted_range_covers_every_ingress_pod_and_skips_proxies_in_the_chain() {
        let pods: crate::config::IpRange = "10.42.0.0/16".parse().expect("range");
        let mut headers = axum::http::HeaderMap::new();
        // client → an edge proxy inside the range → the ingress pod (the peer).
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 10.42.3.17".parse().expect("header"),
        );
        let ingress_pod: std::net::IpAddr = "10.42.1.5".parse().expect("ip");
        assert_eq!(
            client_ip(ingress_pod, &headers, &[pods]).to_string(),
            "203.0.113.9"
        );
        let outside: std::net::IpAddr = "10.43.0.1".parse().expect("ip");
        assert_eq!(client_ip(outside, &headers, &[pods]), outside);
        // The same peer seen through a dual-stack socket.
        let mapped: std::net::IpAddr = "::ffff:10.42.1.5".parse().expect("ip");
        assert_eq!(
            client_ip(mapped, &headers, &[pods]).to_string(),
            "203.0.113.9"
        );
    }
}
