//! Single sign-on with an OpenID Connect provider (Authentik in the cluster, any compliant
//! provider elsewhere): discovery from the issuer URL, the authorization code flow with PKCE,
//! and verification of the tokens the provider signs (ID tokens, and JWT access tokens for
//! service calls) against its published keys. The rules for accounts are in docs/sso.md; the
//! handlers are in `api::sso`.
//!
//! Signatures are checked with `ring` (already GlucoSync's TLS crypto): RS256/384/512, PS256
//! and ES256. `none` and shared-secret algorithms are refused: only the provider's public
//! keys can make a token GlucoSync accepts.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::config::Config;

/// Clock difference tolerated between GlucoSync and the provider.
const LEEWAY_S: i64 = 60;
/// An unknown key id fetches the provider's keys again (they rotate), but not more often than
/// this: a flood of tokens with made-up key ids must not become a flood of requests.
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(5);
/// The discovery document and keys are fetched again after this long anyway.
const METADATA_TTL: Duration = Duration::from_secs(3600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer tokens are refused unread (real ones are 1–2 kB).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was not accepted. The text is for logs; clients get one generic answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("signed with a key the provider does not publish")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
    #[error("issued by {0}, not the configured provider")]
    Issuer(String),
    #[error("not issued for this client or API")]
    Audience,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("the nonce does not match the login's")]
    Nonce,
    #[error("an ID token where an access token belongs")]
    NotAnAccessToken,
    #[error("the claim {0} is missing")]
    Missing(&'static str),
    #[error("the provider cannot be reached: {0}")]
    Provider(String),
}

/// The provider's endpoints, from `<issuer>/.well-known/openid-configuration`.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// One published key (RFC 7517), the fields GlucoSync uses.
#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(rename = "use", default)]
    usage: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// The claims of an ID token GlucoSync uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

/// What a token must say to be accepted.
pub struct Expected<'a> {
    pub audience: &'a str,
    /// The login's nonce (ID tokens); `None` for access tokens.
    pub nonce: Option<&'a str>,
    pub now_s: i64,
}

#[derive(Default)]
struct Keys {
    keys: Vec<Jwk>,
    /// The last successful fetch.
    fetched: Option<Instant>,
    /// The last attempt, successful or not: the refetch limit counts from it.
    attempted: Option<Instant>,
}

pub struct Provider {
    issuer: String,
    pub client_id: String,
    client_secret: Option<String>,
    pub redirect_uri: String,
    pub admin_group: Option<String>,
    pub api_audience: Option<String>,
    http: reqwest::Client,
    metadata: RwLock<Option<(Metadata, Instant)>>,
    keys: RwLock<Keys>,
    /// Held while the keys are fetched, so that concurrent misses fetch once.
    refetching: Mutex<()>,
}

impl Provider {
    /// The provider configured, if any. Nothing is fetched until a login needs it, so a
    /// provider that is down at startup does not stop GlucoSync.
    pub fn from_config(config: &Config) -> Option<Provider> {
        let issuer = config.oidc_issuer.clone()?;
        Some(Provider {
            issuer,
            client_id: config.oidc_client_id.clone(),
            client_secret: config
                .oidc_client_secret
                .as_ref()
                .map(|s| s.expose().to_owned()),
            redirect_uri: format!(
                "{}/api/v1/auth/oidc/callback",
                config.public_url.trim_end_matches('/')
            ),
            admin_group: config.oidc_admin_group.clone(),
            api_audience: config.oidc_api_audience.clone(),
            http: reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client (the TLS backend initialises)"),
            metadata: RwLock::new(None),
            keys: RwLock::new(Keys::default()),
            refetching: Mutex::new(()),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, TokenError> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| TokenError::Provider(e.without_url().to_string()))?;
        if !r.status().is_success() {
            return Err(TokenError::Provider(format!(
                "{url} answered {}",
                r.status()
            )));
        }
        r.json()
            .await
            .map_err(|e| TokenError::Provider(format!("{url}: {}", e.without_url())))
    }

    /// The discovery document (cached for an hour). Its `issuer` must be the configured one
    /// exactly (OpenID Connect Discovery §4.3), or nothing from it is used.
    pub async fn metadata(&self) -> Result<Metadata, TokenError> {
        if let Some((m, at)) = &*self.metadata.read().await {
            if at.elapsed() < METADATA_TTL {
                return Ok(m.clone());
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let m: Metadata = self.get_json(&url).await?;
        if m.issuer != self.issuer {
            return Err(TokenError::Issuer(m.issuer));
        }
        *self.metadata.write().await = Some((m.clone(), Instant::now()));
        Ok(m)
    }

    /// Fetches the keys unless anyone tried within `JWKS_MIN_REFETCH` (a failed attempt counts:
    /// a provider that is down is not asked again by every request). On failure the keys
    /// known before stay in use.
    async fn refresh_keys(&self) -> Result<(), TokenError> {
        let _one_at_a_time = self.refetching.lock().await;
        if self
            .keys
            .read()
            .await
            .attempted
            .is_some_and(|t| t.elapsed() < JWKS_MIN_REFETCH)
        {
            return Ok(());
        }
        self.keys.write().await.attempted = Some(Instant::now());
        let jwks_uri = self.metadata().await?.jwks_uri;
        let set: JwkSet = self.get_json(&jwks_uri).await?;
        let mut keys = self.keys.write().await;
        keys.keys = set.keys;
        keys.fetched = Some(Instant::now());
        Ok(())
    }

    async fn find_key(&self, kid: Option<&str>, kty: &str) -> Option<Jwk> {
        let keys = self.keys.read().await;
        keys.keys
            .iter()
            .filter(|k| k.kty == kty && k.usage.as_deref() != Some("enc"))
            // Without a kid in the token, a provider with one key of the type is unambiguous.
            .find(|k| kid.is_none() || k.kid.as_deref() == kid)
            .cloned()
    }

    /// Verifies a token's signature with the provider's keys (refetched once, rate-limited,
    /// when the key id is unknown: the provider rotated its keys), then its issuer, audience,
    /// lifetime and nonce. Returns the claims.
    pub async fn verify(&self, token: &str, expected: &Expected<'_>) -> Result<Value, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let jws = Jws::parse(token)?;
        let kty = key_type(&jws.header.alg)?;
        let kid = jws.header.kid.as_deref();
        // Known keys are refreshed hourly (in the request that notices; the old ones stay in
        // use if that fails).
        let stale = self
            .keys
            .read()
            .await
            .fetched
            .is_none_or(|t| t.elapsed() > METADATA_TTL);
        if stale {
            if let Err(e) = self.refresh_keys().await {
                tracing::warn!(error = %e, "could not refresh the provider's keys");
            }
        }
        let key = match self.find_key(kid, kty).await {
            Some(k) => k,
            None => {
                self.refresh_keys().await?;
                self.find_key(kid, kty)
                    .await
                    .ok_or(TokenError::UnknownKey)?
            }
        };
        jws.verify_signature(&key)?;
        check_claims(&jws.claims, &self.issuer, expected)?;
        if expected.nonce.is_none() {
            // An access token: an ID token is not one, even where a provider gives both the
            // same audience. ID tokens carry a nonce (GlucoSync always sends one) or hashes of
            // the code and token issued with them; many providers type both `JWT`, so the
            // header's `typ` cannot tell them apart.
            if ["nonce", "at_hash", "c_hash"]
                .iter()
                .any(|k| jws.claims.get(*k).is_some())
            {
                return Err(TokenError::NotAnAccessToken);
            }
        }
        Ok(jws.claims)
    }

    /// The URL that starts a login at the provider.
    pub fn authorization_url(
        &self,
        metadata: &Metadata,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> String {
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            // `groups` only when it is used: some providers (Google, Entra ID) refuse scopes
            // they do not know.
            (
                "scope",
                if self.admin_group.is_some() {
                    "openid email profile groups"
                } else {
                    "openid email profile"
                },
            ),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", code_challenge),
            ("code_challenge_method", "S256"),
        ])
        .unwrap_or_default();
        let sep = if metadata.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{query}", metadata.authorization_endpoint)
    }

    /// Exchanges an authorization code for the ID token (client_secret_basic, with the PKCE
    /// verifier).
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<String, TokenError> {
        let metadata = self.metadata().await?;
        let mut request = self.http.post(&metadata.token_endpoint).form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", verifier),
            ("client_id", self.client_id.as_str()),
        ]);
        if let Some(secret) = &self.client_secret {
            // RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
            let enc = |s: &str| {
                serde_urlencoded::to_string([("", s)]).unwrap_or_default()[1..].to_owned()
            };
            request = request.basic_auth(enc(&self.client_id), Some(enc(secret)));
        }
        let r = request
            .send()
            .await
            .map_err(|e| TokenError::Provider(e.without_url().to_string()))?;
        let status = r.status();
        let body: Value = r
            .json()
            .await
            .map_err(|e| TokenError::Provider(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(TokenError::Provider(format!(
                "the token endpoint answered {status}: {}",
                body.get("error").and_then(Value::as_str).unwrap_or("?")
            )));
        }
        body.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(TokenError::Missing("id_token"))
    }

    /// Where to send a browser to end its session at the provider too, if it says how.
    pub async fn end_session_url(&self, post_logout_redirect_uri: &str) -> Option<String> {
        let endpoint = self.metadata().await.ok()?.end_session_endpoint?;
        let query = serde_urlencoded::to_string([
            ("client_id", self.client_id.as_str()),
            ("post_logout_redirect_uri", post_logout_redirect_uri),
        ])
        .ok()?;
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        Some(format!("{endpoint}{sep}{query}"))
    }
}

/// The claims of a verified ID token that GlucoSync uses.
pub fn identity(claims: &Value) -> Result<Identity, TokenError> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(Identity {
        subject: text("sub").ok_or(TokenError::Missing("sub"))?,
        email: text("email"),
        // Some providers send "true" as a string.
        email_verified: match claims.get("email_verified") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        },
        name: text("name"),
        groups: claims
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn key_type(alg: &str) -> Result<&'static str, TokenError> {
    match alg {
        "RS256" | "RS384" | "RS512" | "PS256" => Ok("RSA"),
        "ES256" => Ok("EC"),
        other => Err(TokenError::Algorithm(other.to_owned())),
    }
}

/// A compact JWS, decoded but not yet verified.
struct Jws {
    header: Header,
    claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jws {
    fn parse(token: &str) -> Result<Jws, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed)
        };
        let header: Header =
            serde_json::from_slice(&decode(h)?).map_err(|_| TokenError::Malformed)?;
        let claims: Value =
            serde_json::from_slice(&decode(p)?).map_err(|_| TokenError::Malformed)?;
        if !claims.is_object() {
            return Err(TokenError::Malformed);
        }
        Ok(Jws {
            header,
            claims,
            signing_input: format!("{h}.{p}"),
            signature: decode(s)?,
        })
    }

    fn verify_signature(&self, key: &Jwk) -> Result<(), TokenError> {
        use ring::signature as sig;
        let part = |v: &Option<String>| {
            v.as_deref()
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
                .ok_or(TokenError::UnknownKey)
        };
        let message = self.signing_input.as_bytes();
        let verified = match self.header.alg.as_str() {
            "ES256" => {
                if key.crv.as_deref() != Some("P-256") {
                    return Err(TokenError::UnknownKey);
                }
                let mut point = vec![0x04];
                point.extend(part(&key.x)?);
                point.extend(part(&key.y)?);
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &self.signature)
            }
            alg => {
                let params: &sig::RsaParameters = match alg {
                    "RS256" => &sig::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &sig::RSA_PKCS1_2048_8192_SHA384,
                    "RS512" => &sig::RSA_PKCS1_2048_8192_SHA512,
                    "PS256" => &sig::RSA_PSS_2048_8192_SHA256,
                    other => return Err(TokenError::Algorithm(other.to_owned())),
                };
                let (n, e) = (part(&key.n)?, part(&key.e)?);
                sig::RsaPublicKeyComponents { n: &n, e: &e }.verify(
                    params,
                    message,
                    &self.signature,
                )
            }
        };
        verified.map_err(|_| TokenError::Signature)
    }
}

/// Issuer, audience (with `azp` when there are several), lifetime and nonce.
fn check_claims(claims: &Value, issuer: &str, expected: &Expected<'_>) -> Result<(), TokenError> {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(TokenError::Missing("iss"))?;
    if iss != issuer {
        return Err(TokenError::Issuer(iss.to_owned()));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenError::Missing("aud")),
    };
    if !audiences.contains(&expected.audience) {
        return Err(TokenError::Audience);
    }
    if audiences.len() > 1 {
        if let Some(azp) = claims.get("azp").and_then(Value::as_str) {
            if expected.nonce.is_some() && azp != expected.audience {
                return Err(TokenError::Audience);
            }
        }
    }
    let number = |k: &str| claims.get(k).and_then(Value::as_i64);
    let exp = number("exp").ok_or(TokenError::Missing("exp"))?;
    if exp.saturating_add(LEEWAY_S) <= expected.now_s {
        return Err(TokenError::Expired);
    }
    for k in ["nbf", "iat"] {
        if number(k).is_some_and(|t| t.saturating_sub(LEEWAY_S) > expected.now_s) {
            return Err(TokenError::NotYetValid);
        }
    }
    // OpenID Connect Core §2: an ID token always says when it was issued.
    if expected.nonce.is_some() && number("iat").is_none() {
        return Err(TokenError::Missing("iat"));
    }
    if let Some(nonce) = expected.nonce {
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(TokenError::Nonce);
        }
    }
    Ok(())
}

/// A random URL-safe value of 256 bits (state, nonce, PKCE verifier).
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn code_challenge(verifier: &str) -> String {
    use sha2::Digest;
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// Groups claim → administrator, when an admin group is configured.
pub fn is_admin(provider: &Provider, identity: &Identity) -> Option<bool> {
    let group = provider.admin_group.as_ref()?;
    Some(identity.groups.iter().any(|g| g == group))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Value {
        let mut base = json!({
            "iss": "https://idp.example.org",
            "aud": "glucosync",
            "exp": 2_000,
            "iat": 1_000,
            "nonce": "n1",
            "sub": "s",
        });
        for (k, val) in v.as_object().expect("object") {
            if val.is_null() {
                base.as_object_mut().expect("object").remove(k);
            } else {
                base[k] = val.clone();
            }
        }
        base
    }

    fn check(c: Value, now_s: i64) -> Result<(), TokenError> {
        check_claims(
            &c,
            "https://idp.example.org",
            &Expected {
                audience: "glucosync",
                nonce: Some("n1"),
                now_s,
            },
        )
    }

    #[test]
    fn claims_are_checked_one_by_one() {
        assert_eq!(check(claims(json!({})), 1_500), Ok(()));
        assert_eq!(
            check(claims(json!({"iss": "https://evil.example.org"})), 1_500),
            Err(TokenError::Issuer("https://evil.example.org".into()))
        );
        assert_eq!(
            check(claims(json!({"aud": "other"})), 1_500),
            Err(TokenError::Audience)
        );
        assert_eq!(
            check(claims(json!({"aud": ["other", "glucosync"]})), 1_500),
            Ok(())
        );
        assert_eq!(
            check(
                claims(json!({"aud": ["other", "glucosync"], "azp": "other"})),
                1_500
            ),
            Err(TokenError::Audience)
        );
        assert_eq!(
            check(claims(json!({})), 2_000 + LEEWAY_S),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check(claims(json!({})), 2_000 + LEEWAY_S - 1),
            Ok(()),
            "leeway"
        );
        assert_eq!(
            check(claims(json!({"iat": 1_500 + LEEWAY_S + 1})), 1_500),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            check(claims(json!({"nonce": "n2"})), 1_500),
            Err(TokenError::Nonce)
        );
        assert_eq!(
            check(claims(json!({"nonce": null})), 1_500),
            Err(TokenError::Nonce)
        );
        assert_eq!(
            check(claims(json!({"exp": null})), 1_500),
            Err(TokenError::Missing("exp"))
        );
        assert_eq!(
            check(claims(json!({"iat": null})), 1_500),
            Err(TokenError::Missing("iat"))
        );
        assert_eq!(check(claims(json!({"exp": i64::MAX})), 1_500), Ok(()));
    }

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        for alg in ["none", "HS256", "RS1"] {
            assert_eq!(key_type(alg), Err(TokenError::Algorithm(alg.into())));
        }
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#)
        );
        let jws = Jws::parse(&unsigned).expect("parses");
        assert_eq!(
            key_type(&jws.header.alg),
            Err(TokenError::Algorithm("none".into()))
        );
        assert!(Jws::parse("a.b").is_err() && Jws::parse("a.b.c.d").is_err());
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 43);
    }
}
