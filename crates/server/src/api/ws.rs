//! `GET /api/v1/ws`: the live WebSocket of the PWA and of phones.
//!
//! - **Auth**: the session cookie or a bearer token (`read` scope). A browser's `Origin` must
//!   be the server's own or one of `allowed_origins`: a WebSocket handshake is a GET, which
//!   the CSRF check does not cover, so this is what keeps another site from opening a socket
//!   with a visitor's cookie.
//! - **Streams**: the caller's own from the moment the socket opens; anyone who shares with
//!   them as a caregiver on `{"type": "subscribe", "person": id}` (and `unsubscribe`). Server
//!   messages are the events of [`crate::live`] plus `hello`, `subscribed`, `unsubscribed`
//!   and `error`.
//! - **Missing nothing**: `?since=` (and `"since"` in a subscribe) takes the greatest `cursor`
//!   the client saw; the readings after it, the latest forecast if newer, and the open alerts
//!   are replayed after subscribing (so an event may arrive twice; readings are identified by
//!   their time).
//! - **Liveness**: a ping every 30 s; no pong for 75 s closes the socket. Each socket has a
//!   bounded queue: a client that does not read fast enough is disconnected (close code
//!   4008) rather than slowing anyone else, and reconnects with `since`.
//! - **Revocation**: when a person revokes a follower, the follower's sockets that follow
//!   them are closed (code 4403) on every replica. When the credential that opened a socket
//!   is revoked (logout, a revoked token, a password change ending other sessions, the
//!   account's deletion), the socket is closed (code 4401: log in again) on every replica.
//!   Both are also re-checked every minute, for what no event announces (a CLI `user
//!   disable`, a bus that was down).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use glucosync_domain::accounts::Scope;
use glucosync_store::{RangeQuery, UserId};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::alerting::AlertOut;
use crate::api::reports::{authorize_read, Access};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::ApiQuery;
use crate::live;
use crate::state::{now_ms, AppState};

/// Events waiting to be written to one socket; beyond this the client is too slow. A person's
/// devices see about three events per reading (reading, forecast, alert), so this is many
/// minutes of a busy follower's traffic on top of what the kernel's socket buffers hold.
const QUEUE: usize = 64;
const PING_EVERY: Duration = Duration::from_secs(30);
const PONG_TIMEOUT: Duration = Duration::from_secs(75);
/// How often a long-lived stream re-checks what no event announces.
pub(crate) const RECHECK_EVERY: Duration = Duration::from_secs(60);
/// People one socket may follow at once.
const MAX_SUBSCRIPTIONS: usize = 64;
/// Readings replayed per person after a reconnect; more is `truncated` (read them over REST).
const MAX_REPLAY: usize = 1_000;
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const READ_BUFFER: usize = 4 * 1024;

pub const CLOSE_SLOW: u16 = 4008;
pub const CLOSE_REVOKED: u16 = 4403;
/// The credential that opened the socket no longer stands: reconnecting needs a new login.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WsParams {
    /// The greatest `cursor` seen before the connection dropped: what came after it is
    /// replayed.
    pub since: Option<i64>,
}

/// Open the live WebSocket (see the module documentation for the protocol).
#[utoipa::path(get, path = "/ws", tag = "live", params(WsParams),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
              (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem)))]
pub async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<WsParams>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    check_origin(&state, &headers)?;
    let upgrade = upgrade.map_err(|e| ApiError::BadRequest {
        code: "websocket_required",
        detail: format!("This endpoint speaks WebSocket only: {e}"),
    })?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        // Per-socket buffers, not tungstenite's 128 KiB defaults: clients send a few small
        // messages, and tens of thousands of sockets must stay cheap. Each message is
        // written (and flushed) as it is sent.
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            Session::new(state, caller).run(socket, params.since).await;
        }))
}

/// A browser's `Origin` must be this server (as the client addressed it) or an allowed one.
/// Clients that are not browsers send none.
fn check_origin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let own = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .is_some_and(|o| !host.is_empty() && o == host);
    if own || state.config.allowed_origins.contains(&origin) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "origin_not_allowed",
            "This origin may not open the live WebSocket; add it to allowed_origins.",
        ))
    }
}

/// What the tasks feeding a socket hand to it.
enum Outgoing {
    Event(Utf8Bytes),
    /// The person no longer shares with this socket's user.
    Revoked(UserId),
    /// Some of this user's credentials were revoked: is the socket's one of them?
    CheckCredential,
}

struct Session {
    state: AppState,
    caller: Caller,
    user: UserId,
    queue: mpsc::Sender<Outgoing>,
    outgoing: Option<mpsc::Receiver<Outgoing>>,
    /// Set (and `overflow` notified) when the queue was full: the client is too slow.
    overflowed: Arc<(AtomicBool, Notify)>,
    /// The bus subscriptions of this socket, by person (its own included).
    feeds: HashMap<UserId, JoinHandle<()>>,
}

/// Counts the socket in `glucosync_active_websocket_connections` for as long as it lives.
struct Counted(AppState);

impl Counted {
    fn new(state: &AppState) -> Counted {
        state.metrics.active_websocket_connections.inc();
        Counted(state.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.metrics.active_websocket_connections.dec();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for feed in self.feeds.values() {
            feed.abort();
        }
    }
}

impl Session {
    fn new(state: AppState, caller: Caller) -> Session {
        let (queue, outgoing) = mpsc::channel(QUEUE);
        Session {
            state,
            user: caller.user_id,
            caller,
            queue,
            outgoing: Some(outgoing),
            overflowed: Arc::new((AtomicBool::new(false), Notify::new())),
            feeds: HashMap::new(),
        }
    }

    async fn run(mut self, socket: WebSocket, since: Option<i64>) {
        let _counted = Counted::new(&self.state);
        let (mut sink, mut incoming) = socket.split();
        let Some(mut outgoing) = self.outgoing.take() else {
            return;
        };
        let mut stopping = self.state.stopping.subscribe();
        let stopped = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        tokio::pin!(stopped);
        let close = |code: u16, reason: &'static str| {
            Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            }))
        };
        // The caller's own stream from the start.
        if let Err(e) = self.follow(self.user).await {
            tracing::warn!(error = %e, "live socket: could not subscribe");
            let _ = send(&mut sink, close(1011, "unavailable")).await;
            return;
        }
        // A revocation between the handshake and the subscription announced itself to no one.
        if !self.caller.still_stands(&self.state).await {
            let _ = send(&mut sink, close(CLOSE_UNAUTHORIZED, "credential revoked")).await;
            return;
        }
        let following = match self.state.store.shares_followed(self.user).await {
            Ok(shares) => shares
                .into_iter()
                .map(|s| json!({"person": s.owner_id, "role": s.role.as_str()}))
                .collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        let hello = json!({
            "type": "hello",
            "person": self.user,
            "following": following,
            "heartbeat_seconds": PING_EVERY.as_secs(),
        });
        if send(&mut sink, text(&hello)).await.is_none() {
            return;
        }
        if let Some(since) = since {
            for event in replay(&self.state, self.user, since).await {
                if send(&mut sink, text(&event)).await.is_none() {
                    return;
                }
            }
        }
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut recheck = tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
        let mut last_pong = Instant::now();
        let overflowed = self.overflowed.clone();
        loop {
            tokio::select! {
                out = outgoing.recv() => match out {
                    Some(Outgoing::Event(event)) => {
                        if send(&mut sink, Message::Text(event)).await.is_none() {
                            break;
                        }
                    }
                    Some(Outgoing::Revoked(person)) => {
                        if self.feeds.contains_key(&person) {
                            tell_revoked(&mut sink, person).await;
                            break;
                        }
                    }
                    Some(Outgoing::CheckCredential) => {
                        if !self.caller.still_stands(&self.state).await {
                            let _ = send(&mut sink, close(CLOSE_UNAUTHORIZED, "credential revoked")).await;
                            break;
                        }
                    }
                    None => break,
                },
                message = incoming.next() => match message {
                    Some(Ok(Message::Text(body))) => {
                        for reply in self.handle(&body).await {
                            if send(&mut sink, text(&reply)).await.is_none() {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                    Some(Ok(Message::Ping(_) | Message::Binary(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                },
                _ = ping.tick() => {
                    if last_pong.elapsed() > PONG_TIMEOUT {
                        let _ = send(&mut sink, close(1001, "no pong")).await;
                        break;
                    }
                    if send(&mut sink, Message::Ping(Default::default())).await.is_none() {
                        break;
                    }
                }
                _ = recheck.tick() => {
                    if !self.caller.still_stands(&self.state).await {
                        let _ = send(&mut sink, close(CLOSE_UNAUTHORIZED, "credential revoked")).await;
                        break;
                    }
                    if let Some(person) = self.lost_share().await {
                        tell_revoked(&mut sink, person).await;
                        break;
                    }
                }
                _ = overflowed.1.notified() => {
                    let _ = send(&mut sink, close(CLOSE_SLOW, "too slow; reconnect with since")).await;
                    break;
                }
                _ = &mut stopped => {
                    let _ = send(&mut sink, close(1001, "server stopping")).await;
                    break;
                }
            }
        }
    }

    /// Subscribes this socket to `person`'s events.
    async fn follow(&mut self, person: UserId) -> Result<(), ApiError> {
        if self.feeds.contains_key(&person) {
            return Ok(());
        }
        let mut events = self.state.bus.subscribe(&live::topic(person)).await?;
        let queue = self.queue.clone();
        let overflowed = self.overflowed.clone();
        let own = person == self.user;
        let feed = tokio::spawn(async move {
            while let Some(payload) = events.next().await {
                for event in live::split(&payload) {
                    let out = if own && event.contains("\"share_revoked\"") {
                        match serde_json::from_str::<Value>(event)
                            .ok()
                            .and_then(|v| v["person"].as_i64())
                        {
                            Some(owner) => Outgoing::Revoked(owner),
                            None => continue,
                        }
                    } else if live::is_credentials_revoked(event) {
                        // Internal: about this socket's user only, never sent on.
                        if !own {
                            continue;
                        }
                        Outgoing::CheckCredential
                    } else {
                        Outgoing::Event(Utf8Bytes::from(event))
                    };
                    match queue.try_send(out) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            overflowed.0.store(true, Ordering::Relaxed);
                            overflowed.1.notify_one();
                            return;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
            }
        });
        self.feeds.insert(person, feed);
        Ok(())
    }

    /// A message from the client: subscribe or unsubscribe. Returns the replies.
    async fn handle(&mut self, body: &str) -> Vec<Value> {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
        enum ClientMessage {
            Subscribe { person: UserId, since: Option<i64> },
            Unsubscribe { person: UserId },
        }
        let error =
            |code: &str, detail: &str| json!({"type": "error", "code": code, "detail": detail});
        let message: ClientMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(_) => {
                return vec![error(
                    "bad_message",
                    "expected {\"type\": \"subscribe\" | \"unsubscribe\", \"person\": id}",
                )]
            }
        };
        match message {
            ClientMessage::Subscribe { person, since } => {
                if self.feeds.len() >= MAX_SUBSCRIPTIONS && !self.feeds.contains_key(&person) {
                    return vec![error(
                        "too_many_subscriptions",
                        "unsubscribe from someone first",
                    )];
                }
                if authorize_read(&self.state, &self.caller, person, Access::Live, "live")
                    .await
                    .is_err()
                {
                    return vec![error(
                        "not_found",
                        "nobody with this id shares live data with you",
                    )];
                }
                if let Err(e) = self.follow(person).await {
                    tracing::warn!(error = %e, "live socket: could not subscribe");
                    return vec![error("unavailable", "try again shortly")];
                }
                let mut replies = vec![json!({"type": "subscribed", "person": person})];
                if let Some(since) = since {
                    replies.extend(replay(&self.state, person, since).await);
                }
                replies
            }
            ClientMessage::Unsubscribe { person } => {
                if person != self.user {
                    if let Some(feed) = self.feeds.remove(&person) {
                        feed.abort();
                    }
                }
                vec![json!({"type": "unsubscribed", "person": person})]
            }
        }
    }

    /// A follower's share can end while no revocation event reaches this replica (the bus
    /// was down): the first followed person who no longer shares, if any.
    async fn lost_share(&mut self) -> Option<UserId> {
        let followed: Vec<UserId> = self
            .feeds
            .keys()
            .copied()
            .filter(|p| *p != self.user)
            .collect();
        if followed.is_empty() {
            return None;
        }
        let active = self.state.store.shares_followed(self.user).await.ok()?;
        followed.into_iter().find(|p| {
            !active
                .iter()
                .any(|s| s.owner_id == *p && s.role == glucosync_store::ShareRole::Caregiver)
        })
    }
}

/// Writes one message; `None` when the socket is gone or the client has not taken a message
/// for `SEND_TIMEOUT` (its receive buffer is full: too slow).
async fn send(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    message: Message,
) -> Option<()> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
        Ok(Ok(())) => Some(()),
        _ => None,
    }
}

/// Tells the client that `person` stopped sharing with it, and closes the socket (4403).
async fn tell_revoked(sink: &mut futures::stream::SplitSink<WebSocket, Message>, person: UserId) {
    let _ = send(sink, text(&live::share_revoked_event(person))).await;
    let _ = send(
        sink,
        Message::Close(Some(CloseFrame {
            code: CLOSE_REVOKED,
            reason: Utf8Bytes::from_static("share revoked"),
        })),
    )
    .await;
}

fn text(v: &Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

/// What `person`'s devices missed after `since` (a reading-time cursor): the readings, the
/// latest forecast if it is newer, and the open alerts as they stand.
async fn replay(state: &AppState, person: UserId, since: i64) -> Vec<Value> {
    let mut events = Vec::new();
    let query = RangeQuery {
        from_ms: since.saturating_add(1),
        to_ms: now_ms() + glucosync_domain::limits::MAX_FUTURE_SKEW_MS + 1,
        after: None,
        limit: MAX_REPLAY + 1,
        descending: false,
    };
    if query.from_ms < query.to_ms {
        if let Ok(mut readings) = state.store.list_readings(person, &query).await {
            let truncated = readings.len() > MAX_REPLAY;
            readings.truncate(MAX_REPLAY);
            if !readings.is_empty() {
                events.push(live::replayed_readings_event(person, &readings, truncated));
            }
        }
    }
    if let Ok(Some(f)) = state.forecaster.latest(state, person).await {
        if f.issued_ms > since {
            events.push(live::forecast_event(person, &f));
        }
    }
    if let Ok(record) = state.store.alert_record(person).await {
        for alert in record.book.alerts.iter().filter(|a| a.is_open()) {
            events.push(json!({
                "type": "alert",
                "reason": "replay",
                "audible": false,
                "alert": AlertOut::of(person, alert),
            }));
        }
    }
    events
}
