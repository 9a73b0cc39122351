//! Notifications that reach people whose app is closed: Web Push now (email joins the same
//! outbox), from the `deliveries` table.
//!
//! - **Queued with the change**: when an alert is raised, repeats, resolves or is
//!   acknowledged, one delivery per recipient device is written in the same transaction as
//!   the alert book (`Store::save_alert_book`): a crash between the two cannot lose one.
//! - **Who**: the person (if their `alerts.push` is on) and every caregiver who follows them
//!   with push on (their choice per person), on each of their subscribed devices. Quiet
//!   hours: a non-urgent alert is not pushed (the live stream still shows it); resolutions
//!   and acknowledgements are pushed silently so devices can take the notification down.
//! - **Sent at least once**: a replica claims deliveries before sending (held 15 s), right after the
//!   change (the replica that made it), else by any replica's timers once due again; a push
//!   service's 404/410 removes the subscription; 429/5xx/network errors retry with backoff
//!   (5 s doubling, 8 attempts); other refusals fail. Every outcome stays in the log
//!   (`GET /api/v1/alerts/deliveries`). A replica that dies between sending and recording
//!   leaves the delivery to be sent again after the hold: a duplicate rather than a silence
//!   (push messages carry a `tag`, so a device replaces rather than repeats them).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use glucosync_domain::alerts::{Alert, AlertKind};
use glucosync_store::{
    Delivery, DeliveryChannel, DeliveryOutcome, DeliveryScope, NewDelivery, ShareRole, UserId,
};
use serde_json::json;
use sha2::Digest;
use tracing::Instrument;

use crate::error::ApiError;
use crate::mail::Mailer;
use crate::push::{encrypt_fresh, unb64, Vapid};
use crate::state::{now_ms, AppState};

/// A claimed delivery is not claimed again for this long: longer than one attempt can take
/// (both channels time out after 10 s), short because it is also how long a delivery waits
/// when the replica that claimed it died mid-send (measured in the cluster test: the
/// caregiver's push and email came ~16 s after the kill; with 60 s, ~61 s).
const HOLD_MS: i64 = 15_000;
const BATCH: usize = 200;
const MAX_ATTEMPTS: i32 = 8;
const FIRST_RETRY_MS: i64 = 5_000;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a push service keeps an undelivered message (a phone that is off): an alert
/// older than this is not worth waking anyone for.
const TTL_SECONDS: u32 = 1_800;
const VAPID_SECRET: &str = "vapid_private_key";

pub struct Notifier {
    vapid: OnceLock<Vapid>,
    client: reqwest::Client,
    /// The mail server, when one is configured (set once at startup).
    mailer: OnceLock<Option<Arc<Mailer>>>,
}

/// Whether a push endpoint may be sent to: `https://` on the public internet, or `http://`
/// on loopback when `allow_loopback` (a local push service in tests). Checked when a device
/// subscribes and again before each send (a subscription stored before a rule changed); names
/// are checked as they resolve (`outbound::PublicOnly`). The error says why not.
pub(crate) fn push_endpoint_allowed(
    url: &reqwest::Url,
    allow_loopback: bool,
) -> Result<(), &'static str> {
    let host = url.host_str().unwrap_or("");
    let literal = crate::outbound::literal_address(url);
    let loopback = host == "localhost" || literal.is_some_and(|ip| ip.is_loopback());
    match url.scheme() {
        "http" if loopback && allow_loopback => Ok(()),
        "https" if host.is_empty() => Err("must be an https:// URL of a push service"),
        "https" if loopback && allow_loopback => Ok(()),
        "https"
            if loopback
                || host.ends_with(".localhost")
                || literal.is_some_and(|ip| !crate::outbound::is_public(ip)) =>
        {
            Err("must be a push service on the public internet, not an address inside this server's network")
        }
        "https" => Ok(()),
        _ => Err("must be an https:// URL of a push service"),
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            vapid: OnceLock::new(),
            client: reqwest::Client::builder()
                .timeout(SEND_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                // Endpoints come from users: only public addresses (crate::outbound).
                .dns_resolver(Arc::new(crate::outbound::PublicOnly))
                .build()
                .unwrap_or_default(),
            mailer: OnceLock::new(),
        }
    }
}

/// What one change of an alert tells devices.
pub struct AlertNews<'a> {
    pub alert: &'a Alert,
    /// `raised`, `repeated`, `snooze_ended`, `resolved`, `acknowledged`, `snoozed`.
    pub reason: &'a str,
    /// Devices should sound (false: show or clear silently).
    pub audible: bool,
    pub value_mgdl: Option<f64>,
}

impl Notifier {
    pub fn set_mailer(&self, mailer: Option<Mailer>) {
        let _ = self.mailer.set(mailer.map(Arc::new));
    }

    pub fn mailer(&self) -> Option<Arc<Mailer>> {
        self.mailer.get().cloned().flatten()
    }

    /// The installation's VAPID key: created by whichever replica starts first, shared by
    /// all through the store.
    pub async fn vapid(&self, state: &AppState) -> Result<&Vapid, ApiError> {
        if let Some(v) = self.vapid.get() {
            return Ok(v);
        }
        let candidate = Vapid::encode(&Vapid::generate());
        let stored = state.store.server_secret(VAPID_SECRET, &candidate).await?;
        let vapid = Vapid::decode(&stored, &state.config.push_subject)
            .ok_or_else(|| ApiError::Internal("the stored VAPID key is unreadable".into()))?;
        Ok(self.vapid.get_or_init(|| vapid))
    }

    /// The deliveries that announce `news` about `person`'s alerts: to the person's devices
    /// and their push-following caregivers'.
    pub async fn deliveries_for(
        &self,
        state: &AppState,
        person: &glucosync_store::User,
        news: &[AlertNews<'_>],
    ) -> Result<Vec<NewDelivery>, ApiError> {
        // Quiet hours: a silent raise is not pushed at all.
        let news: Vec<&AlertNews> = news
            .iter()
            .filter(|n| n.audible || !matches!(n.reason, "raised" | "repeated" | "snooze_ended"))
            .collect();
        if news.is_empty() {
            return Ok(Vec::new());
        }
        // (recipient, is the person themself, push, email)
        let mut recipients: Vec<(UserId, bool, bool, bool)> = vec![(
            person.id,
            true,
            person.settings.alerts.push,
            person.settings.alerts.email,
        )];
        for share in state.store.shares_of_owner(person.id).await? {
            if let (true, Some(follower), ShareRole::Caregiver) =
                (share.is_active(), share.follower_id, share.role)
            {
                recipients.push((follower, false, share.notify_push, share.notify_email));
            }
        }
        let name = person
            .display_name
            .clone()
            .unwrap_or_else(|| person.email.split('@').next().unwrap_or("").to_owned());
        let mailing = self.mailer().is_some();
        let mut out = Vec::new();
        for (recipient, own, push, email) in recipients {
            let devices = if push {
                state.store.push_subscriptions(recipient).await?
            } else {
                Vec::new()
            };
            // Email tells of new alerts only (not of repeats or clearings), one message per
            // change: the most urgent of what was raised at once.
            let address = if email && mailing && news.iter().any(|n| n.reason == "raised") {
                match own {
                    true => Some(person.email.clone()),
                    false => state.store.user_by_id(recipient).await?.map(|u| u.email),
                }
            } else {
                None
            };
            for n in &news {
                let payload = payload(person.id, &name, own, n);
                out.extend(devices.iter().map(|d| NewDelivery {
                    recipient_id: recipient,
                    channel: DeliveryChannel::Push,
                    target: d.id.to_string(),
                    payload: payload.clone(),
                }));
            }
            let most_urgent = news
                .iter()
                .filter(|n| n.reason == "raised")
                .min_by_key(|n| (!n.alert.kind.is_urgent(), n.alert.kind));
            if let (Some(address), Some(n)) = (address, most_urgent) {
                out.push(NewDelivery {
                    recipient_id: recipient,
                    channel: DeliveryChannel::Email,
                    target: address,
                    payload: payload(person.id, &name, own, n),
                });
            }
        }
        Ok(out)
    }

    /// Sends what is queued for `person` now, in the background (right after the change).
    pub fn deliver_soon(self: &Arc<Self>, state: &AppState, person: UserId) {
        let (me, state) = (self.clone(), state.clone());
        // A trace of its own, linked to the change's (the change's request ends first).
        let span = tracing::info_span!(parent: None, "deliver notifications");
        crate::traces::link_to_current(&span);
        tokio::spawn(
            async move {
                me.deliver(&state, DeliveryScope::Person(person)).await;
            }
            .instrument(span),
        );
    }

    /// Claims and sends the pending deliveries of `scope`.
    pub async fn deliver(&self, state: &AppState, scope: DeliveryScope<'_>) {
        let claimed = match state
            .store
            .claim_deliveries(scope, now_ms(), HOLD_MS, BATCH)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim deliveries");
                return;
            }
        };
        if claimed.is_empty() {
            return;
        }
        // The background worker's run has no span yet: one of its own, a trace when it sends.
        if tracing::Span::current().is_none() {
            let span = tracing::info_span!("deliver notifications", deliveries = claimed.len());
            self.send_claimed(state, claimed).instrument(span).await;
        } else {
            self.send_claimed(state, claimed).await;
        }
    }

    async fn send_claimed(&self, state: &AppState, claimed: Vec<Delivery>) {
        for delivery in claimed {
            let outcome = match delivery.channel {
                DeliveryChannel::Push => self.push(state, &delivery).await,
                DeliveryChannel::Email => self.email(state, &delivery).await,
            };
            state
                .metrics
                .deliveries_total
                .with_label_values(&[delivery.channel.as_str(), outcome_name(&outcome)])
                .inc();
            if let Err(e) = state
                .store
                .finish_delivery(&delivery, &outcome, now_ms())
                .await
            {
                tracing::warn!(error = %e, "could not record a delivery");
            }
        }
    }

    async fn email(&self, state: &AppState, delivery: &Delivery) -> DeliveryOutcome {
        let Some(mailer) = self.mailer() else {
            return DeliveryOutcome::Failed {
                error: "email is not configured".into(),
            };
        };
        let message: serde_json::Value =
            serde_json::from_str(&delivery.payload).unwrap_or_default();
        let title = message["title"].as_str().unwrap_or("Alert");
        let text = format!(
            "{title}: {}\nRaised at {} (UTC).\n\nOpen GlucoSync to see it and acknowledge it: {}\n\n\
             You get this email because email alerts are on in your GlucoSync settings.\n",
            message["body"].as_str().unwrap_or(""),
            message["raised_at"].as_str().unwrap_or(""),
            state.config.public_url,
        );
        match mailer
            .send(
                &delivery.target,
                &format!("GlucoSync: {title}"),
                text,
                Some(format!(
                    "alert-{}-{}@{}",
                    delivery.person_id,
                    delivery.id,
                    mail_domain(&state.config.public_url)
                )),
            )
            .await
        {
            Ok(()) => DeliveryOutcome::Sent,
            Err(e) if e.permanent => DeliveryOutcome::Failed { error: e.message },
            Err(e) => retry(delivery, e.message),
        }
    }

    #[tracing::instrument(level = "debug", name = "web push", skip_all, fields(otel.kind = "client"))]
    async fn push(&self, state: &AppState, delivery: &Delivery) -> DeliveryOutcome {
        let subscription = match state.store.push_subscriptions(delivery.recipient_id).await {
            Ok(subs) => subs
                .into_iter()
                .find(|s| s.id.to_string() == delivery.target),
            Err(e) => return retry(delivery, format!("store: {e}")),
        };
        let Some(subscription) = subscription else {
            return DeliveryOutcome::Failed {
                error: "the device unsubscribed".into(),
            };
        };
        let (Some(p256dh), Some(auth)) = (unb64(&subscription.p256dh), unb64(&subscription.auth))
        else {
            return DeliveryOutcome::Failed {
                error: "the subscription's keys are not base64url".into(),
            };
        };
        let body = match encrypt_fresh(&p256dh, &auth, delivery.payload.as_bytes()) {
            Ok(b) => b,
            Err(e) => {
                return DeliveryOutcome::Failed {
                    error: e.to_string(),
                }
            }
        };
        let vapid = match self.vapid(state).await {
            Ok(v) => v,
            Err(e) => return retry(delivery, e.to_string()),
        };
        let allowed = reqwest::Url::parse(&subscription.endpoint)
            .map_err(|_| "the endpoint is not a URL")
            .and_then(|url| push_endpoint_allowed(&url, state.config.push_allow_loopback));
        if let Err(why) = allowed {
            return DeliveryOutcome::Failed {
                error: format!("the endpoint {why}"),
            };
        }
        let Some(authorization) = vapid.authorization(&subscription.endpoint, now_ms() / 1000)
        else {
            return DeliveryOutcome::Failed {
                error: "the endpoint is not a URL".into(),
            };
        };
        let urgent = delivery.payload.contains("\"urgent\":true");
        // RFC 8030 Topic: a later message of the same delivery replaces one the push service
        // still holds (32 characters of the URL-safe alphabet).
        let topic = hex::encode(
            &sha2::Sha256::digest(format!("{}:{}", delivery.person_id, delivery.id).as_bytes())
                [..16],
        );
        let sent = self
            .client
            .post(&subscription.endpoint)
            .header("TTL", TTL_SECONDS.to_string())
            .header("Urgency", if urgent { "high" } else { "normal" })
            .header("Topic", topic)
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", authorization)
            .body(body)
            .send()
            .await;
        match sent {
            Err(e) => retry(
                delivery,
                format!(
                    "network: {}",
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "unreachable"
                    }
                ),
            ),
            Ok(r) => match r.status().as_u16() {
                200..=299 => DeliveryOutcome::Sent,
                404 | 410 => DeliveryOutcome::Expired {
                    error: format!("{}: the subscription is gone", r.status().as_u16()),
                },
                429 | 500..=599 => retry(delivery, format!("{}", r.status().as_u16())),
                code => DeliveryOutcome::Failed {
                    error: format!("{code}: refused by the push service"),
                },
            },
        }
    }
}

/// The host of `public_url`, for message ids.
fn mail_domain(public_url: &str) -> String {
    reqwest::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "glucosync.invalid".into())
}

/// Another attempt later (5 s, 10 s, 20 s, …), or failed after the last one.
fn retry(delivery: &Delivery, error: String) -> DeliveryOutcome {
    if delivery.attempts >= MAX_ATTEMPTS {
        return DeliveryOutcome::Failed {
            error: format!("{error} (after {MAX_ATTEMPTS} attempts)"),
        };
    }
    let backoff = FIRST_RETRY_MS << (delivery.attempts.clamp(1, 16) - 1);
    DeliveryOutcome::Retry {
        at_ms: now_ms() + backoff,
        error,
    }
}

/// The outcome's label in `glucosync_notification_deliveries_total` (the names are
/// telemetry's, which shows every one from the start).
fn outcome_name(o: &DeliveryOutcome) -> &'static str {
    let [sent, retry, failed, expired] = crate::telemetry::DELIVERY_OUTCOMES;
    match o {
        DeliveryOutcome::Sent => sent,
        DeliveryOutcome::Retry { .. } => retry,
        DeliveryOutcome::Failed { .. } => failed,
        DeliveryOutcome::Expired { .. } => expired,
    }
}

/// The push message: what a service worker shows (`title`, `body`), and what it needs to
/// replace or take down the notification (`tag`, `reason`, `audible`).
fn payload(person: UserId, name: &str, own: bool, n: &AlertNews) -> String {
    let kind: AlertKind = n.alert.kind;
    let title = if own {
        kind.title().to_owned()
    } else {
        format!("{name}: {}", kind.title())
    };
    let body = match (n.reason, n.value_mgdl) {
        ("resolved", _) => "Resolved".to_owned(),
        ("acknowledged", _) => "Acknowledged".to_owned(),
        ("snoozed", _) => "Snoozed".to_owned(),
        (_, Some(v)) => format!("{v:.0} mg/dL"),
        (_, None) => String::new(),
    };
    json!({
        "type": "alert",
        "person": person,
        "kind": kind,
        "title": title,
        "body": body,
        "reason": n.reason,
        "urgent": kind.is_urgent(),
        "audible": n.audible,
        "tag": format!("alert-{person}-{}-{}", kind.as_str(), n.alert.raised_ms),
        "raised_at": glucosync_domain::Timestamp::from_utc_ms(n.alert.raised_ms).to_rfc3339_utc(),
    })
    .to_string()
}
