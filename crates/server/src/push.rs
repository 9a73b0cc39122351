//! Web Push: message encryption (RFC 8291, `aes128gcm` of RFC 8188) and the application
//! server's identity (VAPID, RFC 8292). Pure functions over bytes; sending is in `delivery`.
//!
//! A browser's push subscription gives an endpoint URL (at its push service), the user
//! agent's P-256 public key (`p256dh`) and a 16-byte authentication secret (`auth`). Each
//! message is encrypted for those with a fresh ephemeral key and salt, so the push service
//! carries it without being able to read it; the VAPID header proves to the push service
//! which application server sends it.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// The record size announced in the header: every message here is one record.
const RECORD_SIZE: u32 = 4096;
/// Plaintext that fits one record (4096 − 16 tag − 1 delimiter).
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - 17;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    #[error("the subscription's key is not a P-256 point")]
    BadPublicKey,
    #[error("the subscription's auth secret must be 16 bytes")]
    BadAuthSecret,
    #[error("the message is larger than one record")]
    TooLarge,
    #[error("the message cannot be decrypted")]
    Undecryptable,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Base64url, with or without padding (browsers send either).
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

fn public_bytes(key: &PublicKey) -> Vec<u8> {
    key.to_encoded_point(false).as_bytes().to_vec()
}

/// The content-encryption key and nonce (RFC 8291 §3.4, RFC 8188 §2.2).
fn key_and_nonce(
    ecdh_secret: &[u8],
    auth: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8],
) -> ([u8; 16], [u8; 12]) {
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(ua_public);
    info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), ecdh_secret)
        .expand(&info, &mut ikm)
        .expect("32 bytes is a valid HKDF-SHA-256 length");
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut key = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut key)
        .expect("16 bytes is a valid HKDF-SHA-256 length");
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .expect("12 bytes is a valid HKDF-SHA-256 length");
    (key, nonce)
}

/// Encrypts `plaintext` for a subscription with the ephemeral key `as_secret` and `salt`
/// (both fresh per message: see [`encrypt_fresh`]). Returns the request body.
pub fn encrypt(
    ua_public: &[u8],
    auth: &[u8],
    plaintext: &[u8],
    as_secret: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, PushError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(PushError::TooLarge);
    }
    if auth.len() != 16 {
        return Err(PushError::BadAuthSecret);
    }
    let ua = PublicKey::from_sec1_bytes(ua_public).map_err(|_| PushError::BadPublicKey)?;
    let ua_public = public_bytes(&ua);
    let as_public = public_bytes(&as_secret.public_key());
    let shared = p256::ecdh::diffie_hellman(as_secret.to_nonzero_scalar(), ua.as_affine());
    let (key, nonce) = key_and_nonce(
        shared.raw_secret_bytes(),
        auth,
        &ua_public,
        &as_public,
        salt,
    );
    // One record: the plaintext and the last-record delimiter (no padding).
    let mut record = plaintext.to_vec();
    record.push(2);
    let sealed = Aes128Gcm::new_from_slice(&key)
        .expect("16-byte key")
        .encrypt(Nonce::from_slice(&nonce), record.as_slice())
        .map_err(|_| PushError::TooLarge)?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + 65 + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// [`encrypt`] with a fresh ephemeral key and salt, as every real message must be.
pub fn encrypt_fresh(
    ua_public: &[u8],
    auth: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, PushError> {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    let ephemeral = SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    encrypt(ua_public, auth, plaintext, &ephemeral, &salt)
}

/// The user agent's side: decrypts a body with the subscription's private key and auth
/// secret. The server never needs it; tests and tooling that stand in for a browser do.
pub fn decrypt(ua_secret: &SecretKey, auth: &[u8], body: &[u8]) -> Result<Vec<u8>, PushError> {
    let bad = || PushError::Undecryptable;
    if body.len() < 21 {
        return Err(bad());
    }
    let salt = &body[..16];
    let id_len = usize::from(body[20]);
    let as_public = body.get(21..21 + id_len).ok_or_else(bad)?;
    let sealed = body.get(21 + id_len..).ok_or_else(bad)?;
    let sender = PublicKey::from_sec1_bytes(as_public).map_err(|_| bad())?;
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), sender.as_affine());
    let ua_public = public_bytes(&ua_secret.public_key());
    let (key, nonce) = key_and_nonce(shared.raw_secret_bytes(), auth, &ua_public, as_public, salt);
    let mut record = Aes128Gcm::new_from_slice(&key)
        .expect("16-byte key")
        .decrypt(Nonce::from_slice(&nonce), sealed)
        .map_err(|_| bad())?;
    // Strip the padding and the delimiter (2 for the last record).
    while record.last() == Some(&0) {
        record.pop();
    }
    match record.pop() {
        Some(2) => Ok(record),
        _ => Err(bad()),
    }
}

/// The application server's VAPID key pair, shared by every replica (kept in the store).
#[derive(Clone)]
pub struct Vapid {
    key: p256::ecdsa::SigningKey,
    /// The public key, base64url of the uncompressed point: what browsers subscribe with
    /// (`applicationServerKey`).
    pub public_key: String,
    /// Who runs this server, for push services to contact (`mailto:` or `https:`).
    pub subject: String,
}

impl Vapid {
    pub fn generate() -> SecretKey {
        SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng)
    }

    /// The private key's storable form (base64url of the 32-byte scalar).
    pub fn encode(secret: &SecretKey) -> String {
        b64(&secret.to_bytes())
    }

    pub fn decode(stored: &str, subject: &str) -> Option<Vapid> {
        let secret = SecretKey::from_slice(&unb64(stored)?).ok()?;
        Some(Vapid {
            public_key: b64(&public_bytes(&secret.public_key())),
            key: p256::ecdsa::SigningKey::from(&secret),
            subject: subject.to_owned(),
        })
    }

    /// The `Authorization` header for a push to `endpoint` (RFC 8292): a JWT for the
    /// endpoint's origin, valid 12 hours from `now_s`, signed ES256, and the public key.
    pub fn authorization(&self, endpoint: &str, now_s: i64) -> Option<String> {
        let url = reqwest::Url::parse(endpoint).ok()?;
        let origin = url.origin().ascii_serialization();
        let header = b64(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = b64(serde_json::json!({
            "aud": origin,
            "exp": now_s + 12 * 3600,
            "sub": self.subject,
        })
        .to_string()
        .as_bytes());
        let input = format!("{header}.{claims}");
        let signature: p256::ecdsa::Signature = self.key.sign(input.as_bytes());
        Some(format!(
            "vapid t={input}.{}, k={}",
            b64(&signature.to_bytes()),
            self.public_key
        ))
    }
}

/// Checks a VAPID `Authorization` header (what a push service does): the signature over the
/// JWT with the key `k`. Returns the JWT's claims when it verifies.
pub fn verify_vapid(authorization: &str) -> Option<serde_json::Value> {
    use p256::ecdsa::signature::Verifier;
    let rest = authorization.strip_prefix("vapid t=")?;
    let (jwt, k) = rest.split_once(", k=")?;
    let (input, signature) = jwt.rsplit_once('.')?;
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&unb64(k)?).ok()?;
    let signature = p256::ecdsa::Signature::from_slice(&unb64(signature)?).ok()?;
    key.verify(input.as_bytes(), &signature).ok()?;
    let claims = input.split_once('.')?.1;
    serde_json::from_slice(&unb64(claims)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Vec<u8> {
        unb64(s).expect("base64url")
    }

    /// RFC 8291 Appendix A: fixed keys and salt give the RFC's message byte for byte.
    #[test]
    fn the_rfc_8291_example_encrypts_byte_for_byte_and_decrypts() {
        let as_secret =
            SecretKey::from_slice(&d("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")).expect("key");
        assert_eq!(
            b64(&public_bytes(&as_secret.public_key())),
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
        );
        let ua_public =
            d("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4");
        let auth = d("BTBZMqHH6r4Tts7J_aSIgg");
        let salt: [u8; 16] = d("DGv6ra1nlYgDCS1FRnbzlw").try_into().expect("16 bytes");
        let body = encrypt(
            &ua_public,
            &auth,
            b"When I grow up, I want to be a watermelon",
            &as_secret,
            &salt,
        )
        .expect("encrypts");
        assert_eq!(
            b64(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
        let ua_secret =
            SecretKey::from_slice(&d("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")).expect("key");
        assert_eq!(
            decrypt(&ua_secret, &auth, &body).expect("decrypts"),
            b"When I grow up, I want to be a watermelon"
        );
    }

    #[test]
    fn fresh_messages_differ_and_only_the_subscriber_reads_them() {
        let ua_secret = Vapid::generate();
        let ua_public = public_bytes(&ua_secret.public_key());
        let auth = [7u8; 16];
        let a = encrypt_fresh(&ua_public, &auth, b"low").expect("encrypts");
        let b = encrypt_fresh(&ua_public, &auth, b"low").expect("encrypts");
        assert_ne!(a, b);
        assert_eq!(decrypt(&ua_secret, &auth, &a).expect("decrypts"), b"low");
        assert_eq!(
            decrypt(&Vapid::generate(), &auth, &a),
            Err(PushError::Undecryptable)
        );
        assert_eq!(
            decrypt(&ua_secret, &[8u8; 16], &a),
            Err(PushError::Undecryptable)
        );
        assert_eq!(
            encrypt_fresh(&ua_public, &auth[..8], b"x"),
            Err(PushError::BadAuthSecret)
        );
        assert_eq!(
            encrypt_fresh(b"not a key", &auth, b"x"),
            Err(PushError::BadPublicKey)
        );
        assert_eq!(
            encrypt_fresh(&ua_public, &auth, &[0u8; MAX_PLAINTEXT + 1]),
            Err(PushError::TooLarge)
        );
    }

    #[test]
    fn vapid_headers_verify_and_name_the_endpoints_origin() {
        let secret = Vapid::generate();
        let vapid = Vapid::decode(&Vapid::encode(&secret), "mailto:ops@example.org").expect("key");
        let header = vapid
            .authorization("https://push.example.net/send/abc?x=1", 1_800_000_000)
            .expect("header");
        let claims = verify_vapid(&header).expect("verifies");
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["sub"], "mailto:ops@example.org");
        assert_eq!(claims["exp"], 1_800_000_000 + 12 * 3600);
        let tampered = header.replacen("vapid t=ey", "vapid t=ez", 1);
        assert!(verify_vapid(&tampered).is_none());
    }
}
