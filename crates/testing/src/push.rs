//! A Web Push service for tests: an HTTP server standing in for the browsers' push services,
//! and devices with their own keys that decrypt what reaches them. The decryption here is
//! written from RFC 8291 independently of the server's encryption, so a test that reads a
//! message proves the server encrypts as browsers expect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::Aead;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use serde_json::{json, Value};
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Received {
    pub device: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// Answers 201, except `gone…` devices (410) and `flaky…` ones (503 the first time).
#[derive(Default)]
pub struct PushService {
    pub received: Mutex<Vec<Received>>,
    flaky_failed: Mutex<Vec<String>>,
}

async fn receive(
    State(service): State<Arc<PushService>>,
    Path(device): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if device.starts_with("gone") {
        return StatusCode::GONE;
    }
    if device.starts_with("flaky") {
        let mut failed = service.flaky_failed.lock().expect("lock");
        if !failed.contains(&device) {
            failed.push(device);
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    service.received.lock().expect("lock").push(Received {
        device,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    });
    StatusCode::CREATED
}

/// Starts a push service on a free loopback port; returns its base URL.
pub async fn start_push_service() -> (String, Arc<PushService>) {
    let service = Arc::new(PushService::default());
    let app = axum::Router::new()
        .route("/push/{device}", axum::routing::post(receive))
        .with_state(service.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), service)
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A browser's side of a subscription: its keys.
pub struct Device {
    pub name: String,
    secret: SecretKey,
    auth: [u8; 16],
}

impl Device {
    pub fn new(name: &str) -> Device {
        let mut auth = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut auth);
        Device {
            name: name.to_owned(),
            secret: SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng),
            auth,
        }
    }

    fn public(&self) -> Vec<u8> {
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// The subscription as `PushSubscription.toJSON()` gives it.
    pub fn subscription(&self, push_base: &str) -> Value {
        json!({
            "endpoint": format!("{push_base}/push/{}", self.name),
            "expirationTime": null,
            "keys": {"p256dh": b64(&self.public()), "auth": b64(&self.auth)}
        })
    }

    /// Decrypts an `aes128gcm` push body (RFC 8291 §3.4, RFC 8188); `None` if it is not
    /// for this device.
    pub fn decrypt(&self, body: &[u8]) -> Option<Vec<u8>> {
        let salt = body.get(..16)?;
        let id_len = usize::from(*body.get(20)?);
        let sender = body.get(21..21 + id_len)?;
        let sealed = body.get(21 + id_len..)?;
        let sender_key = PublicKey::from_sec1_bytes(sender).ok()?;
        let shared =
            p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), sender_key.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(&self.public());
        info.extend_from_slice(sender);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), shared.raw_secret_bytes())
            .expand(&info, &mut ikm)
            .ok()?;
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let (mut key, mut nonce) = ([0u8; 16], [0u8; 12]);
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut key)
            .ok()?;
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce).ok()?;
        let mut record = Aes128Gcm::new_from_slice(&key)
            .ok()?
            .decrypt(Nonce::from_slice(&nonce), sealed)
            .ok()?;
        while record.last() == Some(&0) {
            record.pop();
        }
        (record.pop() == Some(2)).then_some(record)
    }

    /// The messages this device received, with their headers, decrypted, in order.
    pub fn messages(&self, service: &PushService) -> Vec<(HashMap<String, String>, Value)> {
        service
            .received
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.device == self.name)
            .map(|r| {
                let plain = self.decrypt(&r.body).expect("decrypts");
                (
                    r.headers.clone(),
                    serde_json::from_slice(&plain).expect("json"),
                )
            })
            .collect()
    }
}
