//! Alert evaluation: the domain's rules (`glucosync_domain::alerts`) applied to each person's
//! durable alert book, from the store, never from memory alone.
//!
//! - **When**: right after an upload of CGM readings (and its forecast), on the replica that
//!   took it; and by the timers: every second the replicas look for people who are *due* —
//!   an upload not yet evaluated a tick after it was first seen (the upload marked it in its
//!   own transaction, so a replica dying after answering 201 loses nothing) or a clock time
//!   reached (data going stale, a snooze ending, an urgent alert to repeat).
//! - **Who evaluates the timers**: people are split into [`SHARDS`] by id; a replica evaluates
//!   a shard's timers only while it holds that shard's lease in the store (renewed every
//!   10 s, valid 30 s), so exactly one replica does at a time and a dead replica's shards move
//!   to another within about 40 s.
//! - **Exactly once**: a book is saved only over the book it was computed from; two
//!   evaluations racing (the upload's and a timer's) cannot both raise the same alert, and the
//!   loser evaluates again from what the winner saved. An upload arriving meanwhile does not
//!   void a save (the book is what the data said a moment earlier): it leaves the person due,
//!   and its own evaluation follows. (When uploads voided saves, a person uploading faster
//!   than an evaluation took never got an alert saved, and every upload paid five attempts.)
//! - **One at a time**: a replica runs at most one evaluation per person; what is asked for
//!   meanwhile (uploads in quick succession, a timer) runs once, right after.
//! - **Announcements** go out after the save, on the event bus (`user:{id}`), which the live
//!   streams of the person and their followers subscribe to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use glucosync_domain::alerts::{
    local_time_of, Alert, AlertBook, AlertKind, AlertRules, AlertState, Notification, NotifyReason,
    Observation,
};
use glucosync_domain::analytics::GlucosePoint;
use glucosync_store::{DeliveryScope, Evaluation, UserId};

use crate::delivery::AlertNews;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::{now_ms, AppState};

/// People are split into this many shards for the timers, each with its own lease.
pub const SHARDS: u32 = 16;
const LEASE_TTL_MS: i64 = 30_000;
const RENEW_EVERY_MS: i64 = 10_000;
/// A lease is treated as lost this long before it expires (clocks of replicas differ a bit).
const LEASE_MARGIN_MS: i64 = 5_000;
const TICK: Duration = Duration::from_secs(1);
/// The readings an evaluation looks at: the rate needs 15 minutes; staleness the newest.
const HISTORY_MS: i64 = 60 * 60_000;
/// Resolved alerts stay in the book (and the API's list) this long.
const KEEP_RESOLVED_MS: i64 = 24 * 3_600_000;
/// Due people evaluated per tick, and at once.
const DUE_BATCH: usize = 500;
const CONCURRENT_EVALUATIONS: usize = 8;
/// Attempts when the book keeps changing under an evaluation.
const SAVE_ATTEMPTS: usize = 5;

pub struct Alerting {
    /// This process's name in the leases.
    holder: String,
    /// The shards whose leases this process holds, and until when it may act on them.
    held: Mutex<(Vec<u32>, i64)>,
    /// Evaluations that changed nothing, recorded in one batch per tick.
    evaluated: Mutex<Vec<Evaluation>>,
    /// The people whose evaluation runs on this replica now, and whether another was asked
    /// for meanwhile.
    running: Arc<Mutex<HashMap<UserId, bool>>>,
}

/// A person's turn to be evaluated on this replica (from [`Alerting::begin_turn`]). Ends when
/// [`Turn::again`] says no more was asked for, or (on a panic) when dropped.
struct Turn {
    running: Arc<Mutex<HashMap<UserId, bool>>>,
    user: UserId,
    ended: bool,
}

impl Turn {
    /// Whether another evaluation was asked for since this one began; if not, the turn
    /// ends (in the same lock: an ask cannot fall between the check and the end).
    fn again(&mut self) -> bool {
        let mut running = self.running.lock().expect("lock");
        match running.get_mut(&self.user) {
            Some(asked) if *asked => {
                *asked = false;
                true
            }
            _ => {
                running.remove(&self.user);
                self.ended = true;
                false
            }
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.ended {
            self.running.lock().expect("lock").remove(&self.user);
        }
    }
}

impl Default for Alerting {
    fn default() -> Self {
        let nonce: u64 = rand::random();
        Alerting {
            holder: format!("{}-{nonce:016x}", std::process::id()),
            held: Mutex::new((Vec::new(), 0)),
            evaluated: Mutex::new(Vec::new()),
            running: Arc::default(),
        }
    }
}

/// An alert as announced on the live streams and listed by the API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertOut {
    /// Whose alert.
    pub person: i64,
    #[schema(value_type = String, example = "urgent_low")]
    pub kind: AlertKind,
    pub title: String,
    /// Urgent alerts are never silenced by quiet hours and repeat until acknowledged.
    pub urgent: bool,
    /// `active`, `acknowledged`, `snoozed` or `resolved`.
    pub state: String,
    pub raised_at: String,
    /// When it was acknowledged or resolved, or when its snooze ends.
    pub state_at: Option<String>,
}

impl AlertOut {
    pub fn of(person: UserId, a: &Alert) -> AlertOut {
        let at = |ms: i64| Some(glucosync_domain::Timestamp::from_utc_ms(ms).to_rfc3339_utc());
        let (state, state_at) = match a.state {
            AlertState::Active => ("active", None),
            AlertState::Acknowledged { at_ms } => ("acknowledged", at(at_ms)),
            AlertState::Snoozed { until_ms } => ("snoozed", at(until_ms)),
            AlertState::Resolved { at_ms } => ("resolved", at(at_ms)),
        };
        AlertOut {
            person,
            kind: a.kind,
            title: a.kind.title().to_owned(),
            urgent: a.kind.is_urgent(),
            state: state.to_owned(),
            raised_at: glucosync_domain::Timestamp::from_utc_ms(a.raised_ms).to_rfc3339_utc(),
            state_at,
        }
    }
}

/// What changed about an alert, as a live event (`"type": "alert"`).
#[derive(Debug, Serialize)]
struct AlertEvent<'a> {
    r#type: &'static str,
    /// `raised`, `repeated`, `snooze_ended`, `resolved`, `acknowledged` or `snoozed`.
    reason: &'a str,
    /// Whether devices should sound (false in quiet hours for non-urgent alerts).
    audible: bool,
    /// The newest reading when it was evaluated, mg/dL.
    value_mgdl: Option<f64>,
    /// Who acknowledged or snoozed it.
    by: Option<i64>,
    alert: AlertOut,
}

impl Alerting {
    /// Evaluates a person's alerts now and announces what changed. Errors are the store's;
    /// the person stays due and the timers try again.
    pub async fn evaluate(&self, state: &AppState, user: UserId) -> Result<(), ApiError> {
        for _ in 0..SAVE_ATTEMPTS {
            let now = now_ms();
            let record = state.store.alert_record(user).await?;
            let Some(person) = state.store.user_by_id(user).await? else {
                return Ok(());
            };
            let rules = AlertRules::from_settings(&person.settings);
            let (from, to) = (
                now - HISTORY_MS,
                now + glucosync_domain::limits::MAX_FUTURE_SKEW_MS + 1,
            );
            let (readings, read_at) = state.forecaster.recent_cgm(state, user, from, to).await?;
            let held = read_at.is_none();
            let forecast = state.forecaster.latest(state, user).await?;
            let points = forecast
                .as_ref()
                .and_then(|f| crate::forecasting::decode_points(&f.points));
            let zone: chrono_tz::Tz = person.settings.time_zone.parse().unwrap_or(chrono_tz::UTC);
            let observation = Observation {
                now_ms: now,
                local_time: local_time_of(now, &zone),
                readings: &readings,
                forecast: forecast
                    .as_ref()
                    .zip(points.as_deref())
                    .map(|(f, p)| (f.issued_ms, p)),
            };
            // Someone who never uploaded a reading has no data to go stale: no alerts at all
            // (a new account, or one that only logs treatments).
            let watched = !readings.is_empty()
                || held
                || !state.store.latest_readings(user, 1).await?.is_empty();
            if let (true, Some(generation)) = (watched, read_at) {
                state
                    .forecaster
                    .remember_cgm(state, user, generation, from, &readings);
            }
            let mut book = record.book.clone();
            let notifications = if person.disabled || !watched {
                Vec::new()
            } else {
                book.update(&rules, &observation)
            };
            book.prune(now - KEEP_RESOLVED_MS);
            let due = book.next_due_ms(&rules, readings.last().map(|p| p.utc_ms));
            if book == record.book {
                if record.version != record.evaluated_version || record.due_ms != due {
                    let mut evaluated = self.evaluated.lock().expect("lock");
                    evaluated.push(record.unchanged(user, due));
                }
                return Ok(());
            }
            let newest = readings.last();
            let news: Vec<AlertNews> = notifications
                .iter()
                .filter_map(|n| {
                    Some(AlertNews {
                        alert: notified_alert(&book, n)?,
                        reason: reason_name(n.reason),
                        audible: n.audible,
                        value_mgdl: newest.map(|p| p.mgdl),
                    })
                })
                .collect();
            let deliveries = state.notifier.deliveries_for(state, &person, &news).await?;
            if state
                .store
                .save_alert_book(user, record.evaluation(), &book, due, &deliveries, now)
                .await?
            {
                self.announce(state, user, &book, &notifications, newest)
                    .await;
                if !deliveries.is_empty() {
                    state.notifier.deliver_soon(state, user);
                }
                return Ok(());
            }
        }
        // Still due: the next tick evaluates again.
        Ok(())
    }

    /// Evaluates in the background (after an upload: the response does not wait).
    pub fn evaluate_soon(self: &Arc<Self>, state: &AppState, user: UserId) {
        let Some(turn) = self.begin_turn(user) else {
            return;
        };
        let (me, state) = (self.clone(), state.clone());
        tokio::spawn(async move { me.evaluate_in_turn(&state, turn).await });
    }

    /// Starts `user`'s turn, or (`None`) asks the running one for one more evaluation.
    fn begin_turn(&self, user: UserId) -> Option<Turn> {
        let mut running = self.running.lock().expect("lock");
        if let Some(asked) = running.get_mut(&user) {
            *asked = true;
            return None;
        }
        running.insert(user, false);
        Some(Turn {
            running: self.running.clone(),
            user,
            ended: false,
        })
    }

    /// Evaluates the person whose turn it is, and again for as long as more evaluations are
    /// asked for meanwhile.
    async fn evaluate_in_turn(&self, state: &AppState, mut turn: Turn) {
        loop {
            if let Err(e) = self.evaluate(state, turn.user).await {
                tracing::warn!(error = %e, "could not evaluate alerts");
            }
            if !turn.again() {
                return;
            }
        }
    }

    async fn announce(
        &self,
        state: &AppState,
        user: UserId,
        book: &AlertBook,
        notifications: &[Notification],
        newest: Option<&GlucosePoint>,
    ) {
        for n in notifications {
            let Some(alert) = notified_alert(book, n) else {
                continue;
            };
            state
                .metrics
                .alert_notifications_total
                .with_label_values(&[n.kind.as_str(), reason_name(n.reason)])
                .inc();
            let event = AlertEvent {
                r#type: "alert",
                reason: reason_name(n.reason),
                audible: n.audible,
                value_mgdl: newest.map(|p| p.mgdl),
                by: None,
                alert: AlertOut::of(user, alert),
            };
            publish(state, user, &event).await;
        }
    }

    /// Acknowledges (`snooze_minutes` None) or snoozes the person's open alert of `kind`, on
    /// behalf of `by` (the person or a caregiver), and tells every device. `None` when no
    /// such alert is open.
    pub async fn acknowledge(
        &self,
        state: &AppState,
        user: UserId,
        kind: AlertKind,
        snooze_minutes: Option<i64>,
        by: UserId,
    ) -> Result<Option<AlertOut>, ApiError> {
        for _ in 0..SAVE_ATTEMPTS {
            let now = now_ms();
            let record = state.store.alert_record(user).await?;
            let mut book = record.book.clone();
            let done = match snooze_minutes {
                None => book.acknowledge(kind, now),
                Some(minutes) => book.snooze(kind, now, minutes),
            };
            if !done {
                return Ok(None);
            }
            let Some(alert) = book.open(kind).cloned() else {
                return Ok(None);
            };
            // Earlier than needed is harmless: the snooze's end, or what was due already.
            let due = match alert.state {
                AlertState::Snoozed { until_ms } => {
                    Some(record.due_ms.map_or(until_ms, |d| d.min(until_ms)))
                }
                _ => record.due_ms,
            };
            let reason = if snooze_minutes.is_some() {
                "snoozed"
            } else {
                "acknowledged"
            };
            // Every device that showed it takes it down.
            let deliveries = match state.store.user_by_id(user).await? {
                Some(person) => {
                    let news = [AlertNews {
                        alert: &alert,
                        reason,
                        audible: false,
                        value_mgdl: None,
                    }];
                    state.notifier.deliveries_for(state, &person, &news).await?
                }
                None => Vec::new(),
            };
            if state
                .store
                .save_alert_book(user, record.edit(), &book, due, &deliveries, now)
                .await?
            {
                if !deliveries.is_empty() {
                    state.notifier.deliver_soon(state, user);
                }
                let out = AlertOut::of(user, &alert);
                let event = AlertEvent {
                    r#type: "alert",
                    reason,
                    audible: false,
                    value_mgdl: None,
                    by: Some(by),
                    alert: out.clone(),
                };
                publish(state, user, &event).await;
                return Ok(Some(out));
            }
        }
        Err(ApiError::Conflict(
            "the alert changed while it was being acknowledged; try again".into(),
        ))
    }

    /// The timers, until the server stops; then the leases are given up so that another
    /// replica takes the shards at once.
    pub async fn run_timers(self: Arc<Self>, state: AppState) {
        let mut stopping = state.stopping.subscribe();
        let mut last_renewal: Option<i64> = None;
        // People due only by an upload at the last tick, and that upload's version.
        let mut uploads_waiting: HashMap<UserId, i64> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stopping.wait_for(|s| *s) => break,
            }
            self.record_evaluated(&state).await;
            let now = now_ms();
            if last_renewal.is_none_or(|last| now.saturating_sub(last) >= RENEW_EVERY_MS) {
                self.renew_leases(&state, now).await;
                last_renewal = Some(now);
            }
            // Notifications due again (a retry, or a claim whose replica died mid-send), on
            // any replica: the claim is the lock, so shards do not matter here.
            state
                .notifier
                .deliver(
                    &state,
                    DeliveryScope::Shards {
                        count: 1,
                        held: &[0],
                    },
                )
                .await;
            let shards = {
                let held = self.held.lock().expect("lock");
                if now < held.1 {
                    held.0.clone()
                } else {
                    Vec::new()
                }
            };
            if shards.is_empty() {
                continue;
            }
            let seen_before = std::mem::take(&mut uploads_waiting);
            let seen_now = Mutex::new(HashMap::new());
            match state
                .store
                .alerts_due(now, SHARDS, &shards, DUE_BATCH)
                .await
            {
                Ok(due) => {
                    futures::stream::iter(due)
                        .for_each_concurrent(CONCURRENT_EVALUATIONS, |user| {
                            let (me, state, seen_before, seen_now) =
                                (&self, &state, &seen_before, &seen_now);
                            async move {
                                let record = match state.store.alert_record(user).await {
                                    Ok(record) => record,
                                    Err(e) => {
                                        tracing::warn!(error = %e, "could not read alerts");
                                        return;
                                    }
                                };
                                if !timers_take(&record, now, seen_before.get(&user).copied()) {
                                    seen_now.lock().expect("lock").insert(user, record.version);
                                    return;
                                }
                                // One running here already runs once more instead.
                                if let Some(turn) = me.begin_turn(user) {
                                    me.evaluate_in_turn(state, turn).await;
                                }
                            }
                        })
                        .await;
                }
                Err(e) => tracing::warn!(error = %e, "could not find who is due for alerts"),
            }
            uploads_waiting = seen_now.into_inner().expect("lock");

            self.record_evaluated(&state).await;
        }
        self.record_evaluated(&state).await;
        let held = std::mem::take(&mut self.held.lock().expect("lock").0);
        state.metrics.alert_shards_held.set(0);
        for shard in held {
            let _ = state
                .store
                .release_lease(&lease_name(shard), &self.holder)
                .await;
        }
    }

    async fn renew_leases(&self, state: &AppState, now: i64) {
        let mut held = Vec::new();
        for shard in 0..SHARDS {
            match state
                .store
                .try_lease(&lease_name(shard), &self.holder, LEASE_TTL_MS, now)
                .await
            {
                Ok(true) => held.push(shard),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew an alert lease");
                    // Keep acting on the old leases until they run out.
                    return;
                }
            }
        }
        state.metrics.alert_shards_held.set(held.len() as i64);
        *self.held.lock().expect("lock") = (held, now + LEASE_TTL_MS - LEASE_MARGIN_MS);
    }

    async fn record_evaluated(&self, state: &AppState) {
        let batch = std::mem::take(&mut *self.evaluated.lock().expect("lock"));
        if batch.is_empty() {
            return;
        }
        if let Err(e) = state.store.mark_alerts_evaluated(&batch).await {
            // They stay due and are evaluated again: harmless.
            tracing::warn!(error = %e, "could not record alert evaluations");
        }
    }
}

/// Whether the timers evaluate a due person now: at once when the clock made them due; when
/// only an upload did, if that same upload was already waiting at the last tick
/// (`seen_before`). The replica that took an upload evaluates it within milliseconds; the
/// timers are for one that died first, and evaluating every fresh upload too doubled the
/// evaluations of a cluster under load.
fn timers_take(
    record: &glucosync_store::AlertRecord,
    now_ms: i64,
    seen_before: Option<i64>,
) -> bool {
    record.due_ms.is_some_and(|due| due <= now_ms) || seen_before == Some(record.version)
}

/// The alert a notification is about: the open one of its kind, or the one just resolved.
fn notified_alert<'a>(book: &'a AlertBook, n: &Notification) -> Option<&'a Alert> {
    book.alerts
        .iter()
        .rev()
        .find(|a| a.kind == n.kind && (a.is_open() || n.reason == NotifyReason::Resolved))
}

fn lease_name(shard: u32) -> String {
    format!("alerts:{shard}")
}

/// The reason's name in live events and in `glucosync_alert_notifications_total` (one list,
/// telemetry's, which shows every series from the start).
fn reason_name(r: NotifyReason) -> &'static str {
    let [raised, repeated, snooze_ended, resolved] = crate::telemetry::NOTIFY_REASONS;
    match r {
        NotifyReason::Raised => raised,
        NotifyReason::Repeated => repeated,
        NotifyReason::SnoozeEnded => snooze_ended,
        NotifyReason::Resolved => resolved,
    }
}

async fn publish(state: &AppState, user: UserId, event: &impl Serialize) {
    if let Ok(event) = serde_json::to_value(event) {
        crate::live::publish(state, user, &[event]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_is_evaluated_once_at_a_time_and_asks_meanwhile_run_once_after() {
        let alerting = Alerting::default();
        let mut turn = alerting.begin_turn(7).expect("nobody was evaluating 7");
        let other = alerting.begin_turn(8).expect("people are independent");
        // Three uploads while 7 is evaluated: one more evaluation, not three.
        for _ in 0..3 {
            assert!(alerting.begin_turn(7).is_none());
        }
        assert!(turn.again());
        assert!(!turn.again(), "asked once, run once");
        assert!(alerting.begin_turn(7).is_some(), "the turn ended");
        // A turn that ends by a panic does not keep the person from being evaluated.
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _turn = other;
            panic!("evaluation failed");
        }));
        assert!(unwound.is_err());
        assert!(alerting.begin_turn(8).is_some());
    }

    #[test]
    fn the_timers_take_clock_due_people_at_once_and_uploads_nobody_evaluated_a_tick_later() {
        let record = |version, due_ms| glucosync_store::AlertRecord {
            version,
            evaluated_version: 1,
            due_ms,
            ..Default::default()
        };
        assert!(timers_take(&record(2, Some(1_000)), 1_000, None), "clock");
        assert!(
            !timers_take(&record(2, Some(1_001)), 1_000, None),
            "fresh upload"
        );
        assert!(!timers_take(&record(2, None), 1_000, None), "fresh upload");
        assert!(
            timers_take(&record(2, None), 1_000, Some(2)),
            "nobody evaluated it"
        );
        assert!(
            !timers_take(&record(3, None), 1_000, Some(2)),
            "a newer upload since: its replica evaluates it"
        );
    }
}
