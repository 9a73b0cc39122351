//! Live events as Server-Sent Events: a stream of the caller's events (a new reading, …) from
//! whichever replica they were written through. The WebSocket endpoint carries the same events
//! for the PWA; this one suits scripts, `curl -N`, and the cluster's fan-out test.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{Stream, StreamExt};
use glucosync_domain::accounts::Scope;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

/// One event of the stream, as a client's event-stream parser gives it. (Only describes the
/// wire format for the OpenAPI document: the stream is written by axum's `Event`.)
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    /// `ready` for the first event (the subscription is live); absent (a `message`) for the
    /// others.
    pub event: Option<String>,
    /// A JSON object with a `type` (`ready`, `reading`, `forecast`, `alert`, …).
    pub data: String,
}

/// The caller's live events, as `text/event-stream`. Each event's data is a JSON object with a
/// `type` (`reading`, `forecast`, `alert`, …; see `live`). Delivery is at most once: after a
/// reconnect, read what was missed from the REST endpoints (or use the WebSocket's `since`).
#[utoipa::path(get, path = "/events", tag = "readings",
    responses((status = 200, description = "An event stream (text/event-stream)", content_type = "text/event-stream", body = StreamEvent),
              (status = 401, body = crate::error::Problem)))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Scope::Read)?;
    let events = state
        .bus
        .subscribe(&crate::live::topic(caller.user_id))
        .await?;
    let ready = futures::stream::once(async {
        Ok(Event::default().event("ready").data("{\"type\":\"ready\"}"))
    });
    let mut stopping = state.stopping.subscribe();
    let stopped = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    let stream = ready
        .chain(events.flat_map(|payload| {
            let events: Vec<_> = crate::live::split(&payload)
                .map(|e| Ok(Event::default().data(e)))
                .collect();
            futures::stream::iter(events)
        }))
        .take_until(stopped);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
