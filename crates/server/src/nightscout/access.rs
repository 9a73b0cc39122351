//! Who is calling a Nightscout site and what they may do (docs/nightscout.md §Authentication).
//!
//! Credentials, as Nightscout clients send them:
//! - the site's API secret: its SHA-1 in the `api-secret` header (or `?secret=`), admin;
//! - a GlucoSync personal API token as Nightscout's access token: `?token=`, `api-secret:
//!   token=…`, or exchanged at `/api/v2/authorization/request/<token>` for a JWT sent as
//!   `Authorization: Bearer`; its scopes decide (read, readings:write, treatments:write);
//! - nothing: refused, unless the person turned public read on.
//!
//! A token of someone else who follows the person through an active share may read.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use glucosync_domain::accounts::Scope;
use glucosync_store::{NightscoutSite, ShareRole, UserId};
use hkdf::Hkdf;
use rand::RngCore;
use ring::hmac;
use serde::{Deserialize, Serialize};
use sha1::Digest as _;
use sha2::Sha256;

use crate::auth::{api_token_caller, Check};
use crate::error::ApiError;
use crate::state::{now_ms, AppState};

/// The installation's secret behind the sealing key and the JWT key.
const KEY_SECRET: &str = "nightscout_key";
/// Nightscout's JWT lifetime.
pub const JWT_LIFETIME_SECS: i64 = 8 * 3600;
/// The handle that stands for "the site of the credential" on root-level requests (Loop and
/// Trio drop the site's path; see `super::root_path`). Never a real handle.
pub const ROOT_HANDLE: &str = "_";

/// What a caller may do on a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rights {
    pub read: bool,
    /// Entries (readings).
    pub entries: bool,
    /// Treatments, and the collections a looping system uploads with them (devicestatus,
    /// profile, food, settings).
    pub treatments: bool,
    /// The API secret: everything, including Nightscout's admin-only probes.
    pub admin: bool,
}

impl Rights {
    fn all() -> Self {
        Rights {
            read: true,
            entries: true,
            treatments: true,
            admin: true,
        }
    }
    fn of_scopes(scopes: &[Scope]) -> Self {
        Rights {
            read: scopes.contains(&Scope::Read),
            entries: scopes.contains(&Scope::ReadingsWrite),
            treatments: scopes.contains(&Scope::TreatmentsWrite),
            admin: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Secret,
    /// A personal API token of the owner (`follower` None) or of a follower.
    Token {
        credential_id: i64,
        /// The token's owner: the site's owner, or a follower.
        user_id: UserId,
        follower: bool,
    },
    Anonymous,
}

/// An authorized request on a site.
#[derive(Debug, Clone)]
pub struct NsCaller {
    pub site: NightscoutSite,
    pub rights: Rights,
    pub principal: Principal,
}

impl NsCaller {
    pub fn owner(&self) -> UserId {
        self.site.user_id
    }
    pub fn require(&self, ok: bool, what: &str) -> Result<(), ApiError> {
        if ok {
            Ok(())
        } else if self.principal == Principal::Anonymous {
            Err(ApiError::Unauthenticated)
        } else {
            Err(ApiError::forbidden(
                "insufficient_scope",
                format!("This credential may not {what} on this site."),
            ))
        }
    }
    /// Reads by a follower are recorded in the owner's access log before data is returned.
    pub async fn record_read(&self, state: &AppState, what: &str) -> Result<(), ApiError> {
        if let Principal::Token {
            user_id,
            follower: true,
            ..
        } = self.principal
        {
            state
                .store
                .record_access(self.owner(), user_id, what, now_ms())
                .await?;
        }
        Ok(())
    }
}

/// The credentials a request carries, in Nightscout's places.
#[derive(Debug, Default)]
pub struct Presented {
    /// `api-secret` header or `?secret=`: a SHA-1 hex, or `token=<token>`, or a token.
    pub api_secret: Option<String>,
    /// `?token=`: an access token or a JWT.
    pub token: Option<String>,
    /// `Authorization: Bearer`, blank included (AndroidAPS starts with an empty one).
    pub bearer: Option<String>,
}

impl Presented {
    pub fn from_request(headers: &HeaderMap, query: &[(String, String)]) -> Self {
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_owned())
        };
        let header_value = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
        };
        let api_secret = header_value("api-secret")
            .or_else(|| param("secret"))
            .filter(|v| !v.is_empty() && v != "null");
        let bearer = header_value(header::AUTHORIZATION.as_str()).and_then(|v| {
            let (scheme, rest) = v.split_once(' ').unwrap_or((v.as_str(), ""));
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        });
        Presented {
            api_secret,
            token: param("token").filter(|t| !t.is_empty()),
            bearer,
        }
    }

    pub fn is_nightscout(&self) -> bool {
        self.api_secret.is_some() || self.token.is_some()
    }
}

/// Resolves the caller of the site `handle` (or of the credential's site for [`ROOT_HANDLE`]).
pub async fn authorize(
    state: &AppState,
    handle: &str,
    presented: &Presented,
) -> Result<NsCaller, ApiError> {
    authorize_for(state, handle, presented, Check::Request).await
}

/// [`authorize`], for a request or for a stream's re-check ([`Check`]).
pub(crate) async fn authorize_for(
    state: &AppState,
    handle: &str,
    presented: &Presented,
    check: Check,
) -> Result<NsCaller, ApiError> {
    let named = if handle == ROOT_HANDLE {
        None
    } else {
        let handle = handle.to_ascii_lowercase();
        Some(
            state
                .store
                .nightscout_site_by_handle(&handle)
                .await?
                .ok_or(ApiError::NotFound("Nightscout site"))?,
        )
    };
    let same_site =
        |site: &NightscoutSite| named.as_ref().is_none_or(|n| n.user_id == site.user_id);

    if let Some(secret) = presented.api_secret.as_deref() {
        if secret.starts_with("token=") {
            return token_caller(state, named.as_ref(), &token_hash(secret)?, check).await;
        }
        if is_sha1_hex(secret) {
            let hash = secret_hash(&secret.to_ascii_lowercase());
            return match state.store.nightscout_site_by_secret(&hash).await? {
                Some(site) if same_site(&site) => Ok(NsCaller {
                    site,
                    rights: Rights::all(),
                    principal: Principal::Secret,
                }),
                _ => Err(ApiError::Unauthenticated),
            };
        }
        // Nightguard sends an access token in `api-secret`.
        return token_caller(state, named.as_ref(), &token_hash(secret)?, check).await;
    }
    if let Some(jwt) = presented.bearer.as_deref() {
        return match verify_jwt(state, jwt).await {
            Some(claims) => token_caller(state, named.as_ref(), &claims.token_hash, check).await,
            None => Err(ApiError::Unauthenticated),
        };
    }
    if let Some(token) = presented.token.as_deref() {
        let hash = match verify_jwt(state, token).await {
            Some(claims) => claims.token_hash,
            None => token_hash(token)?,
        };
        return token_caller(state, named.as_ref(), &hash, check).await;
    }
    match named {
        Some(site) if site.public_read => Ok(NsCaller {
            site,
            rights: Rights {
                read: true,
                ..Rights::default()
            },
            principal: Principal::Anonymous,
        }),
        _ => Err(ApiError::Unauthenticated),
    }
}

/// An access token as Nightscout clients write it: perhaps `token=`-prefixed, perhaps with a
/// `name-` in front (Nightscout looks only at the part after the last `-`).
fn bare_token(token: &str) -> &str {
    let token = token.strip_prefix("token=").unwrap_or(token);
    token.rsplit('-').next().unwrap_or(token)
}

/// The hash the store knows an access token by.
pub fn token_hash(token: &str) -> Result<String, ApiError> {
    let token = bare_token(token);
    if token.is_empty() || token.len() > 200 {
        return Err(ApiError::Unauthenticated);
    }
    Ok(crate::auth::hash_secret(token))
}

async fn token_caller(
    state: &AppState,
    named: Option<&NightscoutSite>,
    token_hash: &str,
    check: Check,
) -> Result<NsCaller, ApiError> {
    let caller = api_token_caller(state, token_hash, check).await?;
    let site = match named {
        Some(site) => site.clone(),
        None => state
            .store
            .nightscout_site(caller.user_id)
            .await?
            .ok_or(ApiError::Unauthenticated)?,
    };
    if site.user_id == caller.user_id {
        return Ok(NsCaller {
            site,
            rights: Rights::of_scopes(&caller.scopes),
            principal: Principal::Token {
                credential_id: caller.credential_id,
                user_id: caller.user_id,
                follower: false,
            },
        });
    }
    // A caregiver's own token reads the person's site while the share is active (a
    // clinician's share is for reports, not live data).
    let shared = state
        .store
        .active_share(site.user_id, caller.user_id)
        .await?
        .is_some_and(|share| share.role == ShareRole::Caregiver);
    if !shared || !caller.scopes.contains(&Scope::Read) {
        return Err(ApiError::Unauthenticated);
    }
    Ok(NsCaller {
        site,
        rights: Rights {
            read: true,
            ..Rights::default()
        },
        principal: Principal::Token {
            credential_id: caller.credential_id,
            user_id: caller.user_id,
            follower: true,
        },
    })
}

/// The name the person gave a token, for Nightscout's `sub`.
pub async fn token_name(state: &AppState, user_id: UserId, credential_id: i64) -> String {
    state
        .store
        .list_api_tokens(user_id, now_ms())
        .await
        .ok()
        .and_then(|tokens| tokens.into_iter().find(|t| t.id == credential_id))
        .map(|t| t.name)
        .unwrap_or_else(|| "token".into())
}

fn is_sha1_hex(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the store keeps of a secret: SHA-256 of its lower-case SHA-1 hex.
pub fn secret_hash(sha1_hex: &str) -> String {
    hex::encode(Sha256::digest(sha1_hex.as_bytes()))
}

pub fn sha1_hex(secret: &str) -> String {
    hex::encode(sha1::Sha1::digest(secret.as_bytes()))
}

/// A new API secret: 24 characters of a-z and 0-9 (124 bits), easy to type into a phone.
pub fn new_api_secret() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    random_text(ALPHABET, 24)
}

/// A new site handle: 12 characters of a-z and 0-9. Random, so that a site's address says
/// nothing about its owner.
pub fn new_handle() -> String {
    random_text(b"abcdefghijklmnopqrstuvwxyz0123456789", 12)
}

fn random_text(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| {
            // Rejection sampling: no bias towards the first characters.
            loop {
                let b = (rng.next_u32() & 0xff) as usize;
                if b < 256 - 256 % alphabet.len() {
                    return alphabet[b % alphabet.len()] as char;
                }
            }
        })
        .collect()
}

// ---- keys: the sealed secret and the JWTs

/// The installation's Nightscout keys, derived once from a secret shared through the store.
#[derive(Default)]
pub struct Keys(tokio::sync::OnceCell<([u8; 32], [u8; 32])>);

impl Keys {
    async fn get(&self, state: &AppState) -> Result<&([u8; 32], [u8; 32]), ApiError> {
        self.0
            .get_or_try_init(|| async {
                let mut candidate = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut candidate);
                let root = state
                    .store
                    .server_secret(KEY_SECRET, &hex::encode(candidate))
                    .await?;
                let hk = Hkdf::<Sha256>::new(None, root.as_bytes());
                let (mut seal, mut jwt) = ([0u8; 32], [0u8; 32]);
                hk.expand(b"glucosync nightscout secret sealing", &mut seal)
                    .and_then(|_| hk.expand(b"glucosync nightscout jwt", &mut jwt))
                    .map_err(|_| ApiError::Internal("key derivation failed".into()))?;
                Ok((seal, jwt))
            })
            .await
    }
}

/// Seals an API secret for storage (AES-256-GCM, random nonce).
pub async fn seal(state: &AppState, secret: &str) -> Result<String, ApiError> {
    let (key, _) = state.nightscout_keys.get(state).await?;
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = Aes256Gcm::new_from_slice(key)
        .map_err(|_| ApiError::Internal("bad sealing key".into()))?
        .encrypt(Nonce::from_slice(&nonce), secret.as_bytes())
        .map_err(|_| ApiError::Internal("sealing failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode([nonce.as_slice(), &sealed].concat()))
}

pub async fn open(state: &AppState, sealed: &str) -> Result<String, ApiError> {
    let (key, _) = state.nightscout_keys.get(state).await?;
    let unreadable = || ApiError::Internal("the sealed Nightscout secret is unreadable".into());
    let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| unreadable())?;
    if bytes.len() < 12 {
        return Err(unreadable());
    }
    let (nonce, body) = bytes.split_at(12);
    let plain = Aes256Gcm::new_from_slice(key)
        .map_err(|_| unreadable())?
        .decrypt(Nonce::from_slice(nonce), body)
        .map_err(|_| unreadable())?;
    String::from_utf8(plain).map_err(|_| unreadable())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The token's name.
    pub sub: String,
    /// The hash of the access token (Nightscout puts the token itself here; a JWT is readable
    /// by anyone who holds it, so GlucoSync does not).
    #[serde(rename = "th")]
    pub token_hash: String,
    pub iat: i64,
    pub exp: i64,
}

/// An HS256 JWT for an access token, as Nightscout issues them. Revoking the token ends the
/// JWT too: every use looks the token up again.
pub async fn issue_jwt(
    state: &AppState,
    name: &str,
    token_hash: &str,
) -> Result<(String, Claims), ApiError> {
    let (_, key) = state.nightscout_keys.get(state).await?;
    let iat = now_ms() / 1000;
    let claims = Claims {
        sub: name.to_owned(),
        token_hash: token_hash.to_owned(),
        iat,
        exp: iat + JWT_LIFETIME_SECS,
    };
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims).map_err(|e| ApiError::Internal(e.to_string()))?);
    let signing_input = format!("{header}.{payload}");
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        signing_input.as_bytes(),
    );
    let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    Ok((jwt, claims))
}

/// The claims of a JWT this installation issued and that has not expired.
async fn verify_jwt(state: &AppState, jwt: &str) -> Option<Claims> {
    let mut parts = jwt.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (_, key) = state.nightscout_keys.get(state).await.ok()?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    hmac::verify(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        format!("{header}.{payload}").as_bytes(),
        &signature,
    )
    .ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (claims.exp > now_ms() / 1000).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_like_nightscout_clients() {
        // The test vector of Nightscout's documentation.
        assert_eq!(
            sha1_hex("this is my long pass phrase"),
            "b723e97aa97846eb92d5264f084b2823f57c4aa1"
        );
        assert!(is_sha1_hex("B723E97AA97846EB92D5264F084B2823F57C4AA1"));
        assert!(!is_sha1_hex("gsa_123"));
    }

    #[test]
    fn tokens_are_read_as_nightscout_clients_write_them() {
        assert_eq!(bare_token("token=gsa_ab12"), "gsa_ab12");
        assert_eq!(bare_token("phone-gsa_ab12"), "gsa_ab12");
        assert_eq!(bare_token("gsa_ab12"), "gsa_ab12");
    }

    #[test]
    fn generated_secrets_and_handles_are_long_and_lower_case() {
        let s = new_api_secret();
        assert_eq!(s.len(), 24);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(s, new_api_secret());
        assert_eq!(new_handle().len(), 12);
    }
}
