//! Alert rules and each alert's lifecycle (issue 6), pure: the server feeds observations (the
//! recent readings, the latest forecast, the clock) and delivers the notifications this module
//! decides on.
//!
//! - **Conditions**: urgent low, low, high, rapid fall / rise (the least-squares rate over the
//!   last 15 minutes), predicted low (the forecast reaches the urgent-low threshold within the
//!   chosen horizon), stale data (no reading for 15 minutes; urgent after 30).
//! - **Hysteresis**: an alert raised at a threshold resolves only once the value is back past
//!   the threshold by a margin (5 mg/dL; 1 mg/dL/min for rates), so a value hovering at the
//!   threshold raises it once.
//! - **Lifecycle**: active → acknowledged or snoozed → resolved. An acknowledged alert stays
//!   quiet until it resolves; a snoozed one notifies again when the snooze ends if its condition
//!   still holds; an urgent alert left unacknowledged is notified again every
//!   `renotify_minutes`.
//! - **Quiet hours** silence notifications of non-urgent alerts (they are still raised and
//!   visible); urgent ones (urgent low, predicted low, data stale for 30 minutes) are never
//!   silenced.

use chrono::{NaiveTime, Timelike};
use serde::{Deserialize, Serialize};

use crate::analytics::GlucosePoint;
use crate::forecast::ForecastPoint;
use crate::settings::UserSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    UrgentLow,
    Low,
    High,
    RapidFall,
    RapidRise,
    PredictedLow,
    /// No reading for `stale_minutes`.
    StaleData,
    /// No reading for `urgent_stale_minutes`.
    UrgentStaleData,
}

impl AlertKind {
    pub const ALL: [AlertKind; 8] = [
        AlertKind::UrgentLow,
        AlertKind::Low,
        AlertKind::High,
        AlertKind::RapidFall,
        AlertKind::RapidRise,
        AlertKind::PredictedLow,
        AlertKind::StaleData,
        AlertKind::UrgentStaleData,
    ];

    /// A short title for a notification.
    pub fn title(self) -> &'static str {
        match self {
            AlertKind::UrgentLow => "Urgent low",
            AlertKind::Low => "Low",
            AlertKind::High => "High",
            AlertKind::RapidFall => "Falling fast",
            AlertKind::RapidRise => "Rising fast",
            AlertKind::PredictedLow => "Urgent low soon",
            AlertKind::StaleData => "No data",
            AlertKind::UrgentStaleData => "No data for 30 minutes",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::UrgentLow => "urgent_low",
            AlertKind::Low => "low",
            AlertKind::High => "high",
            AlertKind::RapidFall => "rapid_fall",
            AlertKind::RapidRise => "rapid_rise",
            AlertKind::PredictedLow => "predicted_low",
            AlertKind::StaleData => "stale_data",
            AlertKind::UrgentStaleData => "urgent_stale_data",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Never silenced by quiet hours, and notified again until acknowledged.
    pub fn is_urgent(self) -> bool {
        matches!(
            self,
            AlertKind::UrgentLow | AlertKind::PredictedLow | AlertKind::UrgentStaleData
        )
    }
}

/// A person's alert rules. Thresholds come from their settings; the rest has defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRules {
    pub urgent_low_mgdl: f64,
    pub low_mgdl: f64,
    pub high_mgdl: f64,
    /// |rate| above this, mg/dL per minute, is a rapid fall or rise.
    pub rapid_rate_mgdl_per_min: f64,
    /// How far ahead a forecast reaching urgent low raises a predicted low (20–30 minutes).
    pub predicted_low_minutes: i64,
    pub stale_minutes: i64,
    pub urgent_stale_minutes: i64,
    /// Kinds turned off (urgent low cannot be turned off).
    pub disabled: Vec<AlertKind>,
    /// Local times between which non-urgent alerts do not notify (may span midnight).
    pub quiet_hours: Option<(NaiveTime, NaiveTime)>,
    pub renotify_minutes: i64,
}

/// Margins an alert must clear to resolve.
pub const HYSTERESIS_MGDL: f64 = 5.0;
pub const HYSTERESIS_RATE: f64 = 1.0;
/// The window of the rate of change.
pub const RATE_WINDOW_MS: i64 = 15 * 60_000;

impl AlertRules {
    pub fn from_settings(s: &UserSettings) -> AlertRules {
        AlertRules {
            urgent_low_mgdl: s.urgent_low_mgdl,
            low_mgdl: s.low_threshold_mgdl,
            high_mgdl: s.high_threshold_mgdl,
            rapid_rate_mgdl_per_min: s.alerts.rapid_rate_mgdl_per_min,
            predicted_low_minutes: s.alerts.predicted_low_minutes,
            stale_minutes: 15,
            urgent_stale_minutes: 30,
            disabled: s.alerts.disabled.clone(),
            quiet_hours: s.alerts.quiet_hours.map(|q| (q.start, q.end)),
            renotify_minutes: s.alerts.renotify_minutes,
        }
    }

    fn enabled(&self, kind: AlertKind) -> bool {
        kind == AlertKind::UrgentLow || !self.disabled.contains(&kind)
    }

    fn quiet_at(&self, local: NaiveTime) -> bool {
        match self.quiet_hours {
            None => false,
            Some((from, to)) if from <= to => local >= from && local < to,
            Some((from, to)) => local >= from || local < to,
        }
    }
}

/// What the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub now_ms: i64,
    /// The person's local time of day, for quiet hours.
    pub local_time: NaiveTime,
    /// Recent CGM readings (at least the last 15 minutes), in time order.
    pub readings: &'a [GlucosePoint],
    /// The latest forecast: its issue time and points.
    pub forecast: Option<(i64, &'a [ForecastPoint])>,
}

/// The least-squares rate of the readings of the last 15 minutes before the newest, mg/dL per
/// minute; `None` with fewer than three.
pub fn rate_of_change(readings: &[GlucosePoint]) -> Option<f64> {
    let newest = readings.last()?.utc_ms;
    let window: Vec<&GlucosePoint> = readings
        .iter()
        .filter(|p| newest - p.utc_ms <= RATE_WINDOW_MS)
        .collect();
    if window.len() < 3 {
        return None;
    }
    let n = window.len() as f64;
    let mean_t = window
        .iter()
        .map(|p| (p.utc_ms - newest) as f64 / 60_000.0)
        .sum::<f64>()
        / n;
    let mean_g = window.iter().map(|p| p.mgdl).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for p in &window {
        let t = (p.utc_ms - newest) as f64 / 60_000.0 - mean_t;
        sxy += t * (p.mgdl - mean_g);
        sxx += t * t;
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Whether each condition holds now. `active` says which alerts are raised, so that they
/// resolve only past the hysteresis margin.
pub fn conditions(
    rules: &AlertRules,
    obs: &Observation,
    active: &dyn Fn(AlertKind) -> bool,
) -> Vec<AlertKind> {
    let mut out = Vec::new();
    let last = obs.readings.last();
    let age_min = last.map_or(i64::MAX, |p| (obs.now_ms - p.utc_ms) / 60_000);
    let holds_below = |kind: AlertKind, threshold: f64, value: f64| {
        if active(kind) {
            value < threshold + HYSTERESIS_MGDL
        } else {
            value < threshold
        }
    };
    if age_min >= rules.urgent_stale_minutes {
        out.push(AlertKind::UrgentStaleData);
    }
    if age_min >= rules.stale_minutes {
        out.push(AlertKind::StaleData);
    }
    // Glucose conditions only from fresh data: a stale value says nothing about now.
    if let Some(p) = last.filter(|_| age_min < rules.stale_minutes) {
        if holds_below(AlertKind::UrgentLow, rules.urgent_low_mgdl, p.mgdl) {
            out.push(AlertKind::UrgentLow);
        }
        if holds_below(AlertKind::Low, rules.low_mgdl, p.mgdl) {
            out.push(AlertKind::Low);
        }
        let high = if active(AlertKind::High) {
            p.mgdl > rules.high_mgdl - HYSTERESIS_MGDL
        } else {
            p.mgdl > rules.high_mgdl
        };
        if high {
            out.push(AlertKind::High);
        }
        if let Some(rate) = rate_of_change(obs.readings) {
            let limit = rules.rapid_rate_mgdl_per_min;
            let margin = |kind| if active(kind) { HYSTERESIS_RATE } else { 0.0 };
            if rate < -(limit - margin(AlertKind::RapidFall)) {
                out.push(AlertKind::RapidFall);
            }
            if rate > limit - margin(AlertKind::RapidRise) {
                out.push(AlertKind::RapidRise);
            }
        }
        if let Some((issued_ms, points)) = obs.forecast {
            // Only a forecast from the newest reading, and not while already urgently low.
            if issued_ms == p.utc_ms && !out.contains(&AlertKind::UrgentLow) {
                let threshold = if active(AlertKind::PredictedLow) {
                    rules.urgent_low_mgdl + HYSTERESIS_MGDL
                } else {
                    rules.urgent_low_mgdl
                };
                let reaches = points
                    .iter()
                    .filter(|f| f.minutes <= rules.predicted_low_minutes)
                    .any(|f| f.mgdl <= threshold);
                if reaches {
                    out.push(AlertKind::PredictedLow);
                }
            }
        }
    }
    out.retain(|k| rules.enabled(*k));
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlertState {
    Active,
    Acknowledged { at_ms: i64 },
    Snoozed { until_ms: i64 },
    Resolved { at_ms: i64 },
}

/// One alert, from raised to resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub raised_ms: i64,
    pub state: AlertState,
    /// When it was last notified (0: never).
    pub notified_ms: i64,
}

impl Alert {
    pub fn is_open(&self) -> bool {
        !matches!(self.state, AlertState::Resolved { .. })
    }
}

/// Why a notification goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyReason {
    Raised,
    /// Urgent and still unacknowledged.
    Repeated,
    SnoozeEnded,
    Resolved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    pub kind: AlertKind,
    pub reason: NotifyReason,
    /// False in quiet hours for non-urgent alerts: recorded and shown, not pushed.
    pub audible: bool,
}

/// A person's alerts: the open ones and their history since the caller last pruned it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertBook {
    pub alerts: Vec<Alert>,
}

impl AlertBook {
    pub fn open(&self, kind: AlertKind) -> Option<&Alert> {
        self.alerts.iter().find(|a| a.kind == kind && a.is_open())
    }

    fn open_mut(&mut self, kind: AlertKind) -> Option<&mut Alert> {
        self.alerts
            .iter_mut()
            .find(|a| a.kind == kind && a.is_open())
    }

    /// Applies an observation: raises, resolves, repeats and ends snoozes; returns what to
    /// notify. Idempotent for the same observation.
    pub fn update(&mut self, rules: &AlertRules, obs: &Observation) -> Vec<Notification> {
        let open: Vec<AlertKind> = self
            .alerts
            .iter()
            .filter(|a| a.is_open())
            .map(|a| a.kind)
            .collect();
        let holding = conditions(rules, obs, &|k| open.contains(&k));
        let quiet = rules.quiet_at(obs.local_time);
        let audible = |kind: AlertKind| kind.is_urgent() || !quiet;
        let mut out = Vec::new();
        for kind in AlertKind::ALL {
            let holds = holding.contains(&kind);
            match self.open_mut(kind) {
                None if holds => {
                    self.alerts.push(Alert {
                        kind,
                        raised_ms: obs.now_ms,
                        state: AlertState::Active,
                        notified_ms: obs.now_ms,
                    });
                    out.push(Notification {
                        kind,
                        reason: NotifyReason::Raised,
                        audible: audible(kind),
                    });
                }
                None => {}
                Some(alert) if !holds => {
                    alert.state = AlertState::Resolved { at_ms: obs.now_ms };
                    out.push(Notification {
                        kind,
                        reason: NotifyReason::Resolved,
                        audible: false,
                    });
                }
                Some(alert) => match alert.state {
                    AlertState::Snoozed { until_ms } if obs.now_ms >= until_ms => {
                        alert.state = AlertState::Active;
                        alert.notified_ms = obs.now_ms;
                        out.push(Notification {
                            kind,
                            reason: NotifyReason::SnoozeEnded,
                            audible: audible(kind),
                        });
                    }
                    AlertState::Active
                        if kind.is_urgent()
                            && obs.now_ms - alert.notified_ms
                                >= rules.renotify_minutes * 60_000 =>
                    {
                        alert.notified_ms = obs.now_ms;
                        out.push(Notification {
                            kind,
                            reason: NotifyReason::Repeated,
                            audible: true,
                        });
                    }
                    _ => {}
                },
            }
        }
        out
    }

    /// The next instant at which the clock alone, with no new reading, can change this book:
    /// data going stale, a snooze ending, an urgent alert due to repeat. `None` when nothing
    /// is pending (e.g. a person who never uploaded a reading is not told their data is stale).
    /// Evaluating earlier is harmless; later would miss an alert.
    pub fn next_due_ms(&self, rules: &AlertRules, newest_reading_ms: Option<i64>) -> Option<i64> {
        let mut due: Option<i64> = None;
        let mut at = |t: i64| due = Some(due.map_or(t, |d| d.min(t)));
        if let Some(newest) = newest_reading_ms {
            for (kind, minutes) in [
                (AlertKind::StaleData, rules.stale_minutes),
                (AlertKind::UrgentStaleData, rules.urgent_stale_minutes),
            ] {
                if rules.enabled(kind) && self.open(kind).is_none() {
                    at(newest + minutes * 60_000);
                }
            }
        }
        for a in self.alerts.iter().filter(|a| a.is_open()) {
            match a.state {
                AlertState::Snoozed { until_ms } => at(until_ms),
                AlertState::Active if a.kind.is_urgent() => {
                    at(a.notified_ms + rules.renotify_minutes * 60_000)
                }
                _ => {}
            }
        }
        due
    }

    /// Forgets alerts resolved before `before_ms` (the book keeps recent history only).
    pub fn prune(&mut self, before_ms: i64) {
        self.alerts
            .retain(|a| !matches!(a.state, AlertState::Resolved { at_ms } if at_ms < before_ms));
    }

    /// Acknowledges an open alert: quiet until it resolves. False when none is open.
    pub fn acknowledge(&mut self, kind: AlertKind, now_ms: i64) -> bool {
        match self.open_mut(kind) {
            Some(a) => {
                a.state = AlertState::Acknowledged { at_ms: now_ms };
                true
            }
            None => false,
        }
    }

    /// Snoozes an open alert for `minutes` (1–240).
    pub fn snooze(&mut self, kind: AlertKind, now_ms: i64, minutes: i64) -> bool {
        match self.open_mut(kind) {
            Some(a) => {
                a.state = AlertState::Snoozed {
                    until_ms: now_ms + minutes.clamp(1, 240) * 60_000,
                };
                true
            }
            None => false,
        }
    }
}

/// The local time of day of an instant in a time zone.
pub fn local_time_of<Tz: chrono::TimeZone>(utc_ms: i64, tz: &Tz) -> NaiveTime {
    tz.timestamp_millis_opt(utc_ms)
        .single()
        .map(|t| {
            NaiveTime::from_hms_opt(t.hour(), t.minute(), t.second()).unwrap_or(NaiveTime::MIN)
        })
        .unwrap_or(NaiveTime::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_780_000_000_000;
    const MIN: i64 = 60_000;

    fn rules() -> AlertRules {
        AlertRules::from_settings(&UserSettings::default())
    }

    fn series(values: &[f64]) -> Vec<GlucosePoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, &mgdl)| GlucosePoint {
                utc_ms: T0 + i as i64 * 5 * MIN,
                mgdl,
            })
            .collect()
    }

    fn noon() -> NaiveTime {
        NaiveTime::from_hms_opt(12, 0, 0).expect("time")
    }

    fn observe(
        book: &mut AlertBook,
        rules: &AlertRules,
        readings: &[GlucosePoint],
        now_ms: i64,
    ) -> Vec<Notification> {
        book.update(
            rules,
            &Observation {
                now_ms,
                local_time: noon(),
                readings,
                forecast: None,
            },
        )
    }

    fn kinds(n: &[Notification], reason: NotifyReason) -> Vec<AlertKind> {
        n.iter()
            .filter(|n| n.reason == reason)
            .map(|n| n.kind)
            .collect()
    }

    #[test]
    fn urgent_low_raises_once_and_hysteresis_stops_flapping() {
        let r = rules();
        let mut book = AlertBook::default();
        let mut values = vec![60.0, 58.0, 56.0, 54.0];
        let n = observe(&mut book, &r, &series(&values), T0 + 15 * MIN);
        assert!(kinds(&n, NotifyReason::Raised).contains(&AlertKind::UrgentLow));
        assert!(kinds(&n, NotifyReason::Raised).contains(&AlertKind::Low));
        // Hovering around 55: 56, 54, 57, 55 — never resolved, never raised again.
        for v in [56.0, 54.0, 57.0, 55.0] {
            values.push(v);
            let pts = series(&values);
            let now = pts.last().expect("reading").utc_ms;
            let n = observe(&mut book, &r, &pts, now);
            assert!(
                !kinds(&n, NotifyReason::Raised).contains(&AlertKind::UrgentLow),
                "{v}: {n:?}"
            );
            assert!(
                !kinds(&n, NotifyReason::Resolved).contains(&AlertKind::UrgentLow),
                "{v}: {n:?}"
            );
        }
        // 60 clears the margin (55 + 5).
        values.push(61.0);
        let pts = series(&values);
        let n = observe(&mut book, &r, &pts, pts.last().expect("reading").utc_ms);
        assert!(kinds(&n, NotifyReason::Resolved).contains(&AlertKind::UrgentLow));
        assert_eq!(
            book.alerts
                .iter()
                .filter(|a| a.kind == AlertKind::UrgentLow)
                .count(),
            1
        );
    }

    #[test]
    fn an_unacknowledged_urgent_alert_repeats_an_acknowledged_one_does_not() {
        let r = rules();
        let mut book = AlertBook::default();
        let pts = series(&[50.0, 50.0, 50.0]);
        let last = pts[2].utc_ms;
        observe(&mut book, &r, &pts, last);
        // Within the stale limit the same readings keep the alert; after 5 minutes it repeats.
        let n = observe(&mut book, &r, &pts, last + 4 * MIN);
        assert!(kinds(&n, NotifyReason::Repeated).is_empty());
        let n = observe(&mut book, &r, &pts, last + 5 * MIN);
        assert_eq!(
            kinds(&n, NotifyReason::Repeated),
            vec![AlertKind::UrgentLow]
        );
        assert!(book.acknowledge(AlertKind::UrgentLow, last + 6 * MIN));
        let n = observe(&mut book, &r, &pts, last + 12 * MIN);
        assert!(kinds(&n, NotifyReason::Repeated).is_empty(), "{n:?}");
        // The non-urgent low alert never repeats.
        assert!(!kinds(&n, NotifyReason::Repeated).contains(&AlertKind::Low));
    }

    #[test]
    fn a_snooze_ends_with_a_new_notification_if_the_condition_holds() {
        let r = rules();
        let mut book = AlertBook::default();
        let all = series(&[250.0, 260.0, 270.0, 270.0, 272.0]);
        let last = all[2].utc_ms;
        observe(&mut book, &r, &all[..3], last);
        assert!(book.snooze(AlertKind::High, last, 10));
        // Five minutes later: still snoozed, silent.
        let n = observe(&mut book, &r, &all[..4], all[3].utc_ms);
        assert!(n.is_empty(), "{n:?}");
        // Ten minutes later the snooze ends; still high, so it notifies again.
        let n = observe(&mut book, &r, &all, all[4].utc_ms);
        assert_eq!(kinds(&n, NotifyReason::SnoozeEnded), vec![AlertKind::High]);
        assert!(
            !book.snooze(AlertKind::UrgentLow, last, 10),
            "nothing to snooze"
        );
    }

    #[test]
    fn stale_data_comes_from_the_clock_not_from_readings() {
        let r = rules();
        let mut book = AlertBook::default();
        let pts = series(&[120.0, 121.0, 122.0]);
        let last = pts[2].utc_ms;
        assert!(observe(&mut book, &r, &pts, last + 14 * MIN).is_empty());
        let n = observe(&mut book, &r, &pts, last + 15 * MIN);
        assert_eq!(kinds(&n, NotifyReason::Raised), vec![AlertKind::StaleData]);
        let n = observe(&mut book, &r, &pts, last + 30 * MIN);
        assert_eq!(
            kinds(&n, NotifyReason::Raised),
            vec![AlertKind::UrgentStaleData]
        );
        // No readings at all is stale too.
        let mut empty = AlertBook::default();
        let n = observe(&mut empty, &r, &[], last);
        assert!(kinds(&n, NotifyReason::Raised).contains(&AlertKind::UrgentStaleData));
        // A new reading resolves both.
        let fresh = series(&[
            120.0, 121.0, 122.0, 123.0, 124.0, 125.0, 126.0, 127.0, 128.0, 129.0,
        ]);
        let now = fresh.last().expect("reading").utc_ms;
        let n = observe(&mut book, &r, &fresh, now);
        assert_eq!(
            kinds(&n, NotifyReason::Resolved),
            vec![AlertKind::StaleData, AlertKind::UrgentStaleData]
        );
    }

    #[test]
    fn rapid_fall_uses_the_rate_over_fifteen_minutes() {
        let r = rules();
        assert_eq!(
            rate_of_change(&series(&[200.0, 180.0, 160.0, 140.0])),
            Some(-4.0)
        );
        assert_eq!(
            rate_of_change(&series(&[200.0, 180.0])),
            None,
            "two readings are not enough"
        );
        let mut book = AlertBook::default();
        let pts = series(&[200.0, 180.0, 160.0, 140.0]);
        let n = observe(&mut book, &r, &pts, pts[3].utc_ms);
        assert!(kinds(&n, NotifyReason::Raised).contains(&AlertKind::RapidFall));
        // -2.5 mg/dL/min is within the 1 mg/dL/min margin: still falling fast.
        let pts = series(&[200.0, 180.0, 160.0, 140.0, 127.5, 115.0, 102.5]);
        let n = observe(&mut book, &r, &pts, pts[6].utc_ms);
        assert!(!kinds(&n, NotifyReason::Resolved).contains(&AlertKind::RapidFall));
    }

    #[test]
    fn predicted_low_from_the_forecast_of_the_newest_reading_within_the_horizon() {
        let r = rules();
        let pts = series(&[110.0, 100.0, 90.0]);
        let newest = pts[2].utc_ms;
        let forecast: Vec<ForecastPoint> = (1..=12)
            .map(|s| ForecastPoint {
                minutes: 5 * s,
                mgdl: 90.0 - 4.0 * s as f64,
                lower: 0.0,
                upper: 0.0,
            })
            .collect();
        // 90 − 4·s ≤ 55 from s = 9 (45 minutes): beyond 30 minutes, no alert; with 45, an alert.
        let obs = |forecast| Observation {
            now_ms: newest,
            local_time: noon(),
            readings: &pts,
            forecast,
        };
        assert!(!conditions(&r, &obs(Some((newest, &forecast))), &|_| false)
            .contains(&AlertKind::PredictedLow));
        let mut wide = r.clone();
        wide.predicted_low_minutes = 45;
        assert!(
            conditions(&wide, &obs(Some((newest, &forecast))), &|_| false)
                .contains(&AlertKind::PredictedLow)
        );
        // An older forecast is ignored.
        assert!(
            !conditions(&wide, &obs(Some((newest - 5 * MIN, &forecast))), &|_| false)
                .contains(&AlertKind::PredictedLow)
        );
    }

    #[test]
    fn quiet_hours_silence_non_urgent_alerts_only_and_may_span_midnight() {
        let mut r = rules();
        r.quiet_hours = Some((
            NaiveTime::from_hms_opt(22, 0, 0).expect("t"),
            NaiveTime::from_hms_opt(7, 0, 0).expect("t"),
        ));
        let night = NaiveTime::from_hms_opt(3, 0, 0).expect("t");
        let pts = series(&[60.0, 52.0, 50.0]);
        let mut book = AlertBook::default();
        let n = book.update(
            &r,
            &Observation {
                now_ms: pts[2].utc_ms,
                local_time: night,
                readings: &pts,
                forecast: None,
            },
        );
        let audible = |k| n.iter().find(|x| x.kind == k).map(|x| x.audible);
        assert_eq!(
            audible(AlertKind::UrgentLow),
            Some(true),
            "urgent low is never silenced"
        );
        assert_eq!(audible(AlertKind::Low), Some(false));
        assert!(!r.quiet_at(noon()));
        // Urgent low cannot be turned off; others can.
        r.disabled = vec![AlertKind::UrgentLow, AlertKind::Low];
        let held = conditions(
            &r,
            &Observation {
                now_ms: pts[2].utc_ms,
                local_time: night,
                readings: &pts,
                forecast: None,
            },
            &|_| false,
        );
        assert!(held.contains(&AlertKind::UrgentLow) && !held.contains(&AlertKind::Low));
    }

    #[test]
    fn the_book_knows_when_the_clock_next_matters() {
        let r = rules();
        let mut book = AlertBook::default();
        assert_eq!(
            book.next_due_ms(&r, None),
            None,
            "no data, nothing to watch"
        );
        let pts = series(&[60.0, 52.0, 50.0]);
        let last = pts[2].utc_ms;
        observe(&mut book, &r, &pts, last);
        // Urgent low repeats in 5 minutes; data goes stale in 15.
        assert_eq!(book.next_due_ms(&r, Some(last)), Some(last + 5 * MIN));
        assert!(book.acknowledge(AlertKind::UrgentLow, last + MIN));
        assert_eq!(book.next_due_ms(&r, Some(last)), Some(last + 15 * MIN));
        assert!(book.snooze(AlertKind::Low, last + MIN, 10));
        assert_eq!(book.next_due_ms(&r, Some(last)), Some(last + 11 * MIN));
        // Stale and urgently stale: only what stays pending counts.
        let n = observe(&mut book, &r, &pts, last + 30 * MIN);
        assert!(kinds(&n, NotifyReason::Raised).contains(&AlertKind::UrgentStaleData));
        let due = book
            .next_due_ms(&r, Some(last))
            .expect("urgent stale repeats");
        assert_eq!(due, last + 35 * MIN);
        // Resolved alerts are pruned by age.
        let resolved = book.alerts.iter().filter(|a| !a.is_open()).count();
        assert!(resolved > 0);
        book.prune(last + 31 * MIN);
        assert!(book.alerts.iter().all(Alert::is_open));
        assert_eq!(
            AlertKind::parse("predicted_low"),
            Some(AlertKind::PredictedLow)
        );
        assert!(AlertKind::ALL
            .iter()
            .all(|k| AlertKind::parse(k.as_str()) == Some(*k)));
    }

    #[test]
    fn the_same_observation_twice_changes_nothing() {
        let r = rules();
        let pts = series(&[60.0, 52.0, 50.0]);
        let mut book = AlertBook::default();
        observe(&mut book, &r, &pts, pts[2].utc_ms);
        let before = book.clone();
        assert!(observe(&mut book, &r, &pts, pts[2].utc_ms).is_empty());
        assert_eq!(book, before);
    }
}
