//! Nightscout's socket.io namespaces, as AndroidAPS uses them with "Use websockets" on
//! (docs/nightscout.md): `/storage` pushes every change of the collections a client subscribed
//! to, `/alarm` the person's alerts. Each site has its own (`/ns/<handle>/storage`); the root
//! ones (`/storage`, `/alarm`) serve the site of the subscriber's token, as the REST root does.
//!
//! Delivery follows the person's live-event topic (so it works across replicas through the
//! shared bus): on every event the socket's task sends API v3's history since the newest change
//! it sent, per collection, as `create`/`update`/`delete`; alert events become `/alarm`'s
//! `alarm`/`urgent_alarm`/`clear_alarm`. Nothing is dropped silently: a socket that cannot take
//! more is disconnected, and AndroidAPS catches up over REST when it reconnects.
//!
//! A subscription is authorized again before each delivery, as a REST request would be: a
//! revoked token, an ended share, a changed API secret or a site no longer public disconnects
//! the socket before anything more is sent (and every minute, so that it ends even when
//! nothing is). A follower's subscription is written to the
//! owner's access log (`nightscout.socket`), as their REST reads are.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use tokio::sync::Notify;

use super::access::{authorize, authorize_for, Presented, ROOT_HANDLE};
use super::v3::{changes, Collection};
use crate::api::ws::RECHECK_EVERY;
use crate::auth::Check;
use crate::error::ApiError;
use crate::state::AppState;

/// The socket.io layer with the storage and alarm namespaces.
pub fn layer(state: AppState) -> SocketIoLayer {
    let (layer, io) = SocketIo::builder().with_state(state).build_layer();
    // The events are registered in connect middleware, which runs before the client hears it
    // is connected: a connect handler runs only after, and a `subscribe` sent at once (as
    // AndroidAPS does) could arrive before its handler exists and be lost.
    let connected = async |_: SocketRef| {};
    io.ns("/storage", connected.with(storage));
    io.ns("/alarm", connected.with(alarm));
    if let Err(e) = io
        .dyn_ns("/ns/{handle}/storage", connected.with(storage))
        .and_then(|()| io.dyn_ns("/ns/{handle}/alarm", connected.with(alarm)))
    {
        tracing::error!(error = %e, "Nightscout socket.io namespaces not registered");
    }
    layer
}

/// The site handle of a namespace path (`/ns/<handle>/storage`), or the root's.
fn handle_of(namespace: &str) -> String {
    namespace
        .strip_prefix("/ns/")
        .and_then(|rest| rest.split('/').next())
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| ROOT_HANDLE.to_owned())
}

async fn storage(s: SocketRef) -> Result<(), std::convert::Infallible> {
    s.on("subscribe", subscribe_storage);
    Ok(())
}

async fn alarm(s: SocketRef) -> Result<(), std::convert::Infallible> {
    s.on("subscribe", subscribe_alarm);
    // AndroidAPS acknowledges an alarm with (level, group, silence ms): nothing to keep.
    s.on("ack", async |_: SocketRef| {});
    Ok(())
}

/// Whether what `presented` was subscribed with still reads `owner`'s site (see the module
/// documentation), as the store says now: the check is not rate limited (a follower who used
/// up their requests must not pass it without their share being looked at) and counts no use.
/// Only a store that cannot answer keeps the subscription (the next delivery asks again).
async fn still_authorized(
    state: &AppState,
    handle: &str,
    presented: &Presented,
    owner: glucosync_store::UserId,
) -> bool {
    match authorize_for(state, handle, presented, Check::Recheck).await {
        Ok(caller) => caller.rights.read && caller.owner() == owner,
        Err(ApiError::Unavailable(_) | ApiError::Internal(_)) => true,
        Err(_) => false,
    }
}

/// The timer of a subscription's periodic authorization, which ends it within
/// [`RECHECK_EVERY`] of a revocation even when nothing is sent.
fn recheck_timer() -> tokio::time::Interval {
    let start = tokio::time::Instant::now() + RECHECK_EVERY;
    tokio::time::interval_at(start, RECHECK_EVERY)
}

/// The token a `subscribe` message carries, as Nightscout's REST takes a `?token=`.
fn presented_token(request: &Value) -> Presented {
    let token = request["accessToken"].as_str().unwrap_or("").to_owned();
    Presented {
        token: (!token.is_empty()).then_some(token),
        ..Presented::default()
    }
}

/// A signal that the socket disconnected: its task stops at once, without waiting for the
/// next event (it holds the socket and a bus subscription).
fn stop_on_disconnect(s: &SocketRef) -> Arc<Notify> {
    let stop = Arc::new(Notify::new());
    let signal = stop.clone();
    s.on_disconnect(async move |_: SocketRef| signal.notify_one());
    stop
}

async fn subscribe_storage(
    s: SocketRef,
    TryData(request): TryData<Value>,
    ack: AckSender,
    State(state): State<AppState>,
) {
    let request = request.unwrap_or(Value::Null);
    let presented = presented_token(&request);
    let handle = handle_of(s.ns());
    let caller = match authorize(&state, &handle, &presented).await {
        Ok(caller) => caller,
        Err(_) => {
            let _ = ack.send(&json!({"success": false, "message": "Missing or bad accessToken"}));
            return;
        }
    };
    if !caller.rights.read {
        let _ = ack
            .send(&json!({"success": false, "message": "Unauthorized to receive any collection"}));
        return;
    }
    if caller
        .record_read(&state, "nightscout.socket")
        .await
        .is_err()
    {
        let _ = ack.send(&json!({"success": false, "message": "Try again later"}));
        return;
    }
    let wanted: Vec<String> = request["collections"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let granted: Vec<(&'static str, Collection)> = Collection::ALL
        .iter()
        .filter(|(name, _)| wanted.is_empty() || wanted.iter().any(|w| w == name))
        .copied()
        .collect();
    let _ = ack.send(&json!({
        "success": true,
        "collections": granted.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
    }));
    let owner = caller.owner();
    // What exists now is the client's to load over REST; the socket sends what changes after.
    let mut since: Vec<i64> = Vec::new();
    for _ in &granted {
        since.push(crate::state::now_ms());
    }
    let mut events = match state.bus.subscribe(&crate::live::topic(owner)).await {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "Nightscout socket: could not subscribe");
            s.disconnect().ok();
            return;
        }
    };
    let stop = stop_on_disconnect(&s);
    let mut recheck = recheck_timer();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.notified() => return,
                event = events.next() => if event.is_none() { return },
                _ = recheck.tick() => {
                    if !s.connected() {
                        return;
                    }
                    if !still_authorized(&state, &handle, &presented, owner).await {
                        s.disconnect().ok();
                        return;
                    }
                    continue;
                }
            }
            if !s.connected() {
                return;
            }
            if !still_authorized(&state, &handle, &presented, owner).await {
                s.disconnect().ok();
                return;
            }
            for ((name, collection), last) in granted.iter().zip(since.iter_mut()) {
                let Ok(items) = changes(&state, owner, *collection, *last + 1, 1000).await else {
                    continue;
                };
                for doc in items {
                    let modified = doc
                        .get("srvModified")
                        .and_then(Value::as_i64)
                        .unwrap_or(*last);
                    let valid = doc.get("isValid") != Some(&Value::Bool(false));
                    let sent = if valid {
                        let created = doc.get("srvCreated") == doc.get("srvModified");
                        let event = if created { "create" } else { "update" };
                        s.emit(event, &json!({"colName": name, "doc": doc}))
                    } else {
                        s.emit(
                            "delete",
                            &json!({"colName": name, "identifier": doc.get("identifier")}),
                        )
                    };
                    if sent.is_err() {
                        // Full or gone: better disconnected than silently behind.
                        s.disconnect().ok();
                        return;
                    }
                    *last = (*last).max(modified);
                }
            }
        }
    });
}

async fn subscribe_alarm(
    s: SocketRef,
    TryData(request): TryData<Value>,
    ack: AckSender,
    State(state): State<AppState>,
) {
    let presented = presented_token(&request.unwrap_or(Value::Null));
    let handle = handle_of(s.ns());
    let caller = match authorize(&state, &handle, &presented).await {
        Ok(caller) if caller.rights.read => caller,
        _ => {
            let _ = ack.send(&json!({"success": false, "message": "Missing or bad accessToken"}));
            return;
        }
    };
    if caller
        .record_read(&state, "nightscout.socket")
        .await
        .is_err()
    {
        let _ = ack.send(&json!({"success": false, "message": "Try again later"}));
        return;
    }
    let owner = caller.owner();
    let mut events = match state
        .bus
        .subscribe(&crate::live::topic(caller.owner()))
        .await
    {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "Nightscout alarm socket: could not subscribe");
            let _ = ack.send(&json!({"success": false, "message": "Try again later"}));
            return;
        }
    };
    let _ = ack.send(&json!({"success": true, "message": "Subscribed for alarms"}));
    // Unlike Nightscout, which tells every socket of the namespace, only subscribers hear.
    let stop = stop_on_disconnect(&s);
    let mut recheck = recheck_timer();
    tokio::spawn(async move {
        loop {
            let payload = tokio::select! {
                _ = stop.notified() => return,
                event = events.next() => match event {
                    Some(payload) => payload,
                    None => return,
                },
                _ = recheck.tick() => String::new(),
            };
            if !s.connected() {
                return;
            }
            // Most events (every reading) are no alarm: authorize only what will be sent.
            let alarms: Vec<_> = crate::live::split(&payload)
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter_map(|event| nightscout_alarm(&event))
                .collect();
            let check = payload.is_empty() || !alarms.is_empty();
            if check && !still_authorized(&state, &handle, &presented, owner).await {
                s.disconnect().ok();
                return;
            }
            for (name, message) in alarms {
                if s.emit(name, &message).is_err() {
                    s.disconnect().ok();
                    return;
                }
            }
        }
    });
}

/// A GlucoSync alert event as Nightscout's alarm (`alarm`, `urgent_alarm`, `clear_alarm`),
/// with the fields AndroidAPS reads (`level`, `group`, `title`, `message`, `eventName`).
fn nightscout_alarm(event: &Value) -> Option<(&'static str, Value)> {
    if event["type"] != "alert" {
        return None;
    }
    let alert = &event["alert"];
    let title = alert["title"].as_str().unwrap_or("Glucose alert");
    match event["reason"].as_str()? {
        "raised" | "repeated" | "snooze_ended" if event["audible"] != false => {
            let urgent = alert["urgent"] == true;
            let event_name = match alert["kind"].as_str().unwrap_or("") {
                "high" | "rapid_rise" => "high",
                "stale_data" | "urgent_stale_data" => "timeago",
                _ => "low",
            };
            let message = match event["value_mgdl"].as_f64() {
                Some(v) => format!("{title}: {v:.0} mg/dL"),
                None => title.to_owned(),
            };
            Some((
                if urgent { "urgent_alarm" } else { "alarm" },
                json!({
                    "level": if urgent { 2 } else { 1 },
                    "group": "default",
                    "title": title,
                    "message": message,
                    "eventName": event_name,
                    "plugin": {"name": "glucosync", "label": "GlucoSync"},
                    "key": alert["kind"],
                }),
            ))
        }
        "resolved" | "acknowledged" => Some((
            "clear_alarm",
            json!({"clear": true, "title": "All Clear", "message": format!("{title}: cleared"), "group": "default"}),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_become_nightscout_alarms_and_handles_come_from_namespaces() {
        let raised = json!({"type": "alert", "reason": "raised", "audible": true, "value_mgdl": 52.0,
            "alert": {"kind": "urgent_low", "title": "Urgent low", "urgent": true}});
        let (name, alarm) = nightscout_alarm(&raised).expect("an alarm");
        assert_eq!(name, "urgent_alarm");
        assert_eq!(
            (alarm["level"].as_i64(), alarm["eventName"].as_str()),
            (Some(2), Some("low"))
        );
        assert_eq!(alarm["message"], "Urgent low: 52 mg/dL");
        let quiet = json!({"type": "alert", "reason": "raised", "audible": false,
            "alert": {"kind": "high", "title": "High", "urgent": false}});
        assert_eq!(nightscout_alarm(&quiet), None, "quiet hours stay quiet");
        let resolved = json!({"type": "alert", "reason": "resolved", "alert": {"kind": "high", "title": "High"}});
        assert_eq!(
            nightscout_alarm(&resolved).map(|(n, _)| n),
            Some("clear_alarm")
        );
        assert_eq!(nightscout_alarm(&json!({"type": "reading"})), None);
        assert_eq!(handle_of("/ns/AbC123/storage"), "abc123");
        assert_eq!(handle_of("/storage"), ROOT_HANDLE);
    }
}
