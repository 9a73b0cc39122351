//! Live events: what the server tells a person's devices and their caregivers' as it happens.
//!
//! Every event is a JSON object with a `type` (SPEC §5.1): `reading`, `forecast`, `alert`,
//! `data_changed`, and `share_revoked`. Events about a person go to the bus topic
//! `user:{id}`; the WebSocket (`api::ws`) and the Server-Sent Events stream (`api::events`)
//! subscribe to the topics of the caller and of the people the caller follows. One bus
//! message may carry several events, one JSON object per line (an upload's readings and the
//! forecast made from them travel together: one publish per upload).
//!
//! Values are in mg/dL. The bus holds an event only while delivering it (Redis pub/sub keeps
//! nothing) and events are never logged.

use glucosync_domain::readings::NewReading;
use glucosync_domain::Timestamp;
use glucosync_store::{StoredForecast, UserId};
use serde_json::{json, Value};

use crate::state::AppState;

/// An upload's event lists at most this many of its readings (the newest); a client that
/// sees `truncated` reads the rest over REST.
const MAX_READINGS_IN_EVENT: usize = 288;

pub fn topic(person: UserId) -> String {
    format!("user:{person}")
}

/// New readings of `person`. `cursor` is the data time (ms) of the newest: a reconnecting
/// client passes the greatest cursor it saw as `since` to have what it missed replayed.
pub fn reading_event(person: UserId, uploaded: &[NewReading], inserted: u64) -> Value {
    let mut newest: Vec<&NewReading> = uploaded.iter().collect();
    newest.sort_by_key(|r| std::cmp::Reverse(r.time.utc_ms));
    let truncated = newest.len() > MAX_READINGS_IN_EVENT;
    newest.truncate(MAX_READINGS_IN_EVENT);
    newest.reverse();
    let cursor = newest.last().map(|r| r.time.utc_ms);
    json!({
        "type": "reading",
        "person": person,
        "inserted": inserted,
        "truncated": truncated,
        "cursor": cursor,
        "readings": newest.iter().map(|r| reading_json(&r.time, r.value, r.kind, r.trend)).collect::<Vec<_>>(),
    })
}

/// One reading in an event, mg/dL.
fn reading_json(
    time: &Timestamp,
    value: glucosync_domain::GlucoseMgdl,
    kind: glucosync_domain::readings::ReadingKind,
    trend: Option<glucosync_domain::readings::TrendDirection>,
) -> Value {
    json!({
        "time": time.to_rfc3339_utc(),
        "value": value.mgdl(),
        "unit": "mg/dL",
        "kind": kind,
        "trend": trend,
    })
}

/// Readings replayed after a reconnect (already stored; the same shape as an upload's).
pub fn replayed_readings_event(
    person: UserId,
    readings: &[glucosync_domain::readings::Reading],
    truncated: bool,
) -> Value {
    json!({
        "type": "reading",
        "person": person,
        "replay": true,
        "truncated": truncated,
        "cursor": readings.last().map(|r| r.time.utc_ms),
        "readings": readings.iter().map(|r| reading_json(&r.time, r.value, r.kind, r.trend)).collect::<Vec<_>>(),
    })
}

/// A new forecast of `person` (informational; never dosing advice).
pub fn forecast_event(person: UserId, f: &StoredForecast) -> Value {
    let points = crate::forecasting::points_out(f.issued_ms, &f.points).unwrap_or_default();
    json!({
        "type": "forecast",
        "person": person,
        "issued_at": Timestamp::from_utc_ms(f.issued_ms).to_rfc3339_utc(),
        "model_version": f.model_version,
        "points": points,
    })
}

/// `person`'s stored data changed other than by new readings (treatments added, edited or
/// deleted; readings deleted): clients reload `what` over REST.
pub fn data_changed_event(person: UserId, what: &str) -> Value {
    json!({"type": "data_changed", "person": person, "what": what})
}

/// To a follower: `person` no longer shares with them. Their open sockets following that
/// person are closed.
pub fn share_revoked_event(person: UserId) -> Value {
    json!({"type": "share_revoked", "person": person})
}

/// Internal, never sent to clients: some of the person's credentials were revoked; each of
/// their open streams checks its own ([`crate::auth::Caller::still_stands`]) and closes if it
/// was one. Carries nothing: which ones is not the other streams' business.
pub const CREDENTIALS_REVOKED: &str = "credentials_revoked";

pub fn credentials_revoked_event() -> Value {
    json!({"type": CREDENTIALS_REVOKED})
}

/// Whether a bus event is [`credentials_revoked_event`].
pub fn is_credentials_revoked(event: &str) -> bool {
    event.contains(CREDENTIALS_REVOKED)
        && serde_json::from_str::<Value>(event).is_ok_and(|v| v["type"] == CREDENTIALS_REVOKED)
}

/// Publishes events on `topic` in one bus message. Best effort: a failure is logged (without
/// the events) and the caller carries on; the data is already stored.
pub async fn publish_to(state: &AppState, topic: &str, events: &[Value]) {
    if events.is_empty() || !state.bus.listened(topic) {
        return;
    }
    let payload = events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    if let Err(e) = state.bus.publish(topic, &payload).await {
        tracing::warn!(error = %e, "could not publish a live event");
    }
}

pub async fn publish(state: &AppState, person: UserId, events: &[Value]) {
    publish_to(state, &topic(person), events).await;
}

/// Whether events about `person` could reach anyone now (see `EventBus::listened`): when
/// not, an upload builds none.
pub fn listened(state: &AppState, person: UserId) -> bool {
    state.bus.listened(&topic(person))
}

/// The events of one bus message.
pub fn split(payload: &str) -> impl Iterator<Item = &str> {
    payload.split('\n').filter(|l| !l.is_empty())
}
