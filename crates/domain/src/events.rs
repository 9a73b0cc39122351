//! Glycaemic events by the international consensus definitions (Battelino et al. 2019 and
//! 2023): an event starts after at least 15 consecutive minutes beyond its threshold and ends
//! after at least 15 consecutive minutes back within it. Events never span a gap in the data
//! longer than 45 minutes: a gap ends the event at the last reading before it.
//!
//! Durations: a run of readings covers from its first reading to its last plus one nominal
//! interval (5 minutes for a CGM), so three consecutive 5-minute readings are 15 minutes.

use crate::analytics::GlucosePoint;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// < 70 mg/dL.
    HypoLevel1,
    /// < 54 mg/dL.
    HypoLevel2,
    /// < 70 mg/dL for more than 120 minutes.
    ExtendedHypo,
    /// > 180 mg/dL.
    HyperLevel1,
    /// > 250 mg/dL.
    HyperLevel2,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The lowest (hypo) or highest (hyper) value during the event, mg/dL.
    pub extreme_mgdl: f64,
    /// The data ended (or a gap began) before the recovery rule was met.
    pub open: bool,
}

impl Event {
    pub fn duration_min(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / 60_000.0
    }
}

const MIN_RUN_MS: i64 = 15 * 60_000;
const MAX_GAP_MS: i64 = 45 * 60_000;
const EXTENDED_MS: i64 = 120 * 60_000;
pub const NOMINAL_INTERVAL_MS: i64 = 5 * 60_000;

/// Events of one threshold: `beyond(g)` says whether a value is past it.
fn detect(
    points: &[GlucosePoint],
    kind: EventKind,
    beyond: impl Fn(f64) -> bool,
    hypo: bool,
) -> Vec<Event> {
    let mut events = Vec::new();
    // The run of readings beyond the threshold that may become (or is) an event.
    let mut run_start: Option<usize> = None;
    // While an event is open: where the current run back within the threshold began.
    let mut recovery_start: Option<usize> = None;
    let mut current: Option<Event> = None;
    let extreme = |a: f64, b: f64| if hypo { a.min(b) } else { a.max(b) };
    for i in 0..points.len() {
        let p = points[i];
        let gap = i > 0 && p.utc_ms - points[i - 1].utc_ms > MAX_GAP_MS;
        if gap {
            let last = points[i - 1];
            if let Some(mut e) = current.take() {
                e.end_ms = match recovery_start {
                    Some(r) => points[r].utc_ms,
                    None => last.utc_ms + NOMINAL_INTERVAL_MS,
                };
                e.open = recovery_start.is_none();
                events.push(e);
            }
            run_start = None;
            recovery_start = None;
        }
        if beyond(p.mgdl) {
            recovery_start = None;
            match current.as_mut() {
                Some(e) => e.extreme_mgdl = extreme(e.extreme_mgdl, p.mgdl),
                None => {
                    let start = *run_start.get_or_insert(i);
                    if p.utc_ms + NOMINAL_INTERVAL_MS - points[start].utc_ms >= MIN_RUN_MS {
                        let lowest = points[start..=i]
                            .iter()
                            .map(|q| q.mgdl)
                            .fold(p.mgdl, extreme);
                        current = Some(Event {
                            kind,
                            start_ms: points[start].utc_ms,
                            end_ms: p.utc_ms,
                            extreme_mgdl: lowest,
                            open: true,
                        });
                    }
                }
            }
        } else {
            run_start = None;
            if current.is_some() {
                let r = *recovery_start.get_or_insert(i);
                if p.utc_ms + NOMINAL_INTERVAL_MS - points[r].utc_ms >= MIN_RUN_MS {
                    if let Some(mut e) = current.take() {
                        e.end_ms = points[r].utc_ms;
                        e.open = false;
                        events.push(e);
                    }
                    recovery_start = None;
                }
            }
        }
    }
    if let Some(mut e) = current.take() {
        let last = points[points.len() - 1];
        e.end_ms = match recovery_start {
            Some(r) => points[r].utc_ms,
            None => last.utc_ms + NOMINAL_INTERVAL_MS,
        };
        events.push(e);
    }
    events
}

/// Every event of every kind, ordered by start. `points` need not be sorted.
pub fn events(points: &[GlucosePoint]) -> Vec<Event> {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|p| p.utc_ms);
    sorted.dedup_by_key(|p| p.utc_ms);
    let mut all = Vec::new();
    let level1 = detect(&sorted, EventKind::HypoLevel1, |g| g < 70.0, true);
    all.extend(
        level1
            .iter()
            .filter(|e| e.end_ms - e.start_ms > EXTENDED_MS)
            .map(|e| Event {
                kind: EventKind::ExtendedHypo,
                ..e.clone()
            }),
    );
    all.extend(level1);
    all.extend(detect(&sorted, EventKind::HypoLevel2, |g| g < 54.0, true));
    all.extend(detect(
        &sorted,
        EventKind::HyperLevel1,
        |g| g > 180.0,
        false,
    ));
    all.extend(detect(
        &sorted,
        EventKind::HyperLevel2,
        |g| g > 250.0,
        false,
    ));
    all.sort_by_key(|e| (e.start_ms, e.kind as u8));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_780_012_800_000;

    /// Readings every 5 minutes from T0 with these values.
    fn series(values: &[f64]) -> Vec<GlucosePoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| GlucosePoint {
                utc_ms: T0 + i as i64 * 300_000,
                mgdl: v,
            })
            .collect()
    }

    fn of(kind: EventKind, pts: &[GlucosePoint]) -> Vec<Event> {
        events(pts).into_iter().filter(|e| e.kind == kind).collect()
    }

    #[test]
    fn fifteen_minutes_below_make_an_event_ten_do_not() {
        let three = series(&[100.0, 65.0, 62.0, 66.0, 100.0, 100.0, 100.0, 100.0]);
        let e = of(EventKind::HypoLevel1, &three);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].start_ms, e[0].end_ms, e[0].extreme_mgdl, e[0].open),
            (T0 + 300_000, T0 + 1_200_000, 62.0, false)
        );
        assert_eq!(e[0].duration_min(), 15.0);
        let two = series(&[100.0, 65.0, 62.0, 100.0, 100.0, 100.0]);
        assert!(of(EventKind::HypoLevel1, &two).is_empty());
    }

    #[test]
    fn thresholds_are_strict() {
        assert!(of(EventKind::HypoLevel1, &series(&[70.0; 10])).is_empty());
        assert!(of(EventKind::HypoLevel2, &series(&[54.0; 10])).is_empty());
        assert!(of(EventKind::HyperLevel1, &series(&[180.0; 10])).is_empty());
        assert!(of(EventKind::HyperLevel2, &series(&[250.0; 10])).is_empty());
        assert_eq!(of(EventKind::HyperLevel1, &series(&[181.0; 10])).len(), 1);
    }

    #[test]
    fn a_short_recovery_does_not_end_the_event() {
        // Below for 15 min, up for 10 min, below again for 15 min, then recovered: one event.
        let pts = series(&[
            60.0, 60.0, 60.0, 80.0, 80.0, 60.0, 58.0, 60.0, 90.0, 90.0, 90.0,
        ]);
        let e = of(EventKind::HypoLevel1, &pts);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].start_ms, e[0].end_ms, e[0].extreme_mgdl),
            (T0, T0 + 8 * 300_000, 58.0)
        );
    }

    #[test]
    fn events_never_span_a_long_gap() {
        let mut pts = series(&[60.0, 60.0, 60.0, 60.0]);
        // 50 minutes without data, then still low for 15 minutes, then recovered.
        pts.extend((0..6).map(|i| GlucosePoint {
            utc_ms: T0 + 3 * 300_000 + 50 * 60_000 + i * 300_000,
            mgdl: if i < 3 { 60.0 } else { 100.0 },
        }));
        let e = of(EventKind::HypoLevel1, &pts);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].open, "the first ended at the gap without a recovery");
        assert_eq!(e[0].end_ms, T0 + 4 * 300_000);
        assert!(!e[1].open);
    }

    #[test]
    fn level_two_and_extended_events_come_with_level_one() {
        // 130 minutes below 54, then recovered.
        let mut values = vec![50.0; 26];
        values.extend([100.0; 4]);
        let pts = series(&values);
        let kinds: Vec<EventKind> = events(&pts).iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::HypoLevel1,
                EventKind::HypoLevel2,
                EventKind::ExtendedHypo
            ]
        );
        let extended = &of(EventKind::ExtendedHypo, &pts)[0];
        assert_eq!(extended.duration_min(), 130.0);
    }

    #[test]
    fn no_data_and_unsorted_input() {
        assert!(events(&[]).is_empty());
        let mut pts = series(&[100.0, 300.0, 300.0, 300.0, 100.0, 100.0, 100.0]);
        pts.reverse();
        let e = of(EventKind::HyperLevel2, &pts);
        assert_eq!((e.len(), e[0].extreme_mgdl), (1, 300.0));
    }

    #[test]
    fn events_across_a_clock_change_last_their_real_duration() {
        // 2026-03-29 in Berlin: 01:50 CET is 00:50Z; the clocks jump from 02:00 to 03:00, so
        // 03:10 CEST (01:10Z) is 20 minutes later, not 80. Events are measured on the instant
        // line, whatever the wall clock does.
        let start = 1_774_745_400_000; // 2026-03-29T00:50:00Z
        let pts: Vec<GlucosePoint> = [60.0, 58.0, 57.0, 59.0, 61.0, 100.0, 100.0, 100.0, 100.0]
            .iter()
            .enumerate()
            .map(|(i, &mgdl)| GlucosePoint {
                utc_ms: start + i as i64 * 300_000,
                mgdl,
            })
            .collect();
        let e = of(EventKind::HypoLevel1, &pts);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].start_ms, e[0].duration_min()), (start, 25.0));
    }
}
