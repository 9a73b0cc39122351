//! Live events as Server-Sent Events: a stream of the caller's events (a new reading, …) from
//! whichever replica they were written through. The WebSocket endpoint carries the same events
//! for the PWA; this one suits scripts, `curl -N`, and the cluster's fan-out test.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{Stream, StreamExt};
use glucosync_domain::accounts::Scope;

use tokio::time::Instant;

use crate::api::ws::RECHECK_EVERY;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::live;
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
/// The stream ends when the credential that opened it is revoked (at once) or otherwise stops
/// standing (checked every minute).
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
    // A revocation between authentication and the subscription announced itself to no one.
    if !caller.still_stands(&state).await {
        return Err(crate::error::ApiError::Unauthenticated);
    }
    let ready = futures::stream::once(async {
        Ok(Event::default().event("ready").data("{\"type\":\"ready\"}"))
    });
    let mut stopping = state.stopping.subscribe();
    let stopped = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    let rechecks = futures::stream::unfold(
        tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY),
        |mut every| async move {
            every.tick().await;
            Some((Input::Recheck, every))
        },
    );
    let inputs = futures::stream::select(events.map(Input::Bus), rechecks);
    let stream = inputs
        .then(move |input| {
            let (state, caller) = (state.clone(), caller.clone());
            async move {
                let (payload, check) = match input {
                    Input::Bus(payload) => {
                        let check = live::split(&payload).any(live::is_credentials_revoked);
                        (payload, check)
                    }
                    Input::Recheck => (String::new(), true),
                };
                if check && !caller.still_stands(&state).await {
                    return None;
                }
                Some(
                    live::split(&payload)
                        .filter(|e| !live::is_credentials_revoked(e))
                        .map(|e| Ok(Event::default().data(e)))
                        .collect::<Vec<_>>(),
                )
            }
        })
        .take_while(|out| std::future::ready(out.is_some()))
        .flat_map(|out| futures::stream::iter(out.unwrap_or_default()));
    Ok(Sse::new(ready.chain(stream).take_until(stopped))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// What wakes the stream: a bus message, or the time to re-check the credential.
enum Input {
    Bus(String),
    Recheck,
}
