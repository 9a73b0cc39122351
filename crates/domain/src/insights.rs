//! Patterns in a person's recent data, found by fixed rules (no model, no randomness), each
//! with the days and readings that show it so the person can check it against their own
//! memory. Worded as observations to bring to a care team: never a dose or a setting to change.
//!
//! The rules and their thresholds are in `docs/insights.md`. Everything is in mg/dL except
//! the text, which uses the person's unit; times of day are the person's local times.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Weekday};
use serde::Serialize;

use crate::analytics::{bands, gmi_percent, mean, sd, GlucosePoint};
use crate::treatments::{InsulinType, Treatment, TreatmentDetail};
use crate::units::{GlucoseMgdl, GlucoseUnit};
use crate::Timestamp;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Days looked at by the time-of-day rules; the weekday rule looks at four weeks.
pub const WINDOW_DAYS: i64 = 14;
pub const WEEKDAY_WINDOW_DAYS: i64 = 28;
/// Consensus: a low counts as an episode after 15 minutes.
const LOW_EPISODE_MS: i64 = 15 * MINUTE_MS;
/// A high counts after an hour above range (shorter ones are mostly meals, covered below).
const HIGH_EPISODE_MS: i64 = 60 * MINUTE_MS;
/// Readings further apart than this break an episode (and count as a sensor gap beyond an hour).
const EPISODE_GAP_MS: i64 = 20 * MINUTE_MS;
const SENSOR_GAP_MS: i64 = 60 * MINUTE_MS;
/// Each reading stands for its 5-minute interval when an episode's length is measured.
const READING_MS: i64 = 5 * MINUTE_MS;
/// Evidence lists at most this many readings per item (the UI shows them as a small chart).
const MAX_EVIDENCE_READINGS: usize = 36;

/// What the rules look at.
pub struct Input<'a, Tz: TimeZone> {
    /// CGM values in time order (at least the last four weeks for the weekday rule).
    pub points: &'a [GlucosePoint],
    pub treatments: &'a [Treatment],
    pub tz: &'a Tz,
    pub now_ms: i64,
    /// The person's target range, mg/dL.
    pub low_mgdl: f64,
    pub high_mgdl: f64,
    /// The unit of the text.
    pub unit: GlucoseUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    RecurringLows,
    RecurringHighs,
    WeekdayLows,
    WeekdayHighs,
    PostMealRise,
    NightLowsAfterEveningBolus,
    OvernightDrift,
    SensorGaps,
    WeeklyTrend,
}

/// How much a pattern asks for attention: lows first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Attention,
    Notice,
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pattern {
    pub kind: PatternKind,
    pub severity: Severity,
    pub title: String,
    pub detail: String,
    pub evidence: Vec<Evidence>,
}

/// One occurrence behind a pattern: a day, a span of time, what happened then.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evidence {
    /// The local date (`YYYY-MM-DD`).
    pub date: String,
    /// RFC 3339, UTC.
    pub from: String,
    pub to: String,
    pub note: String,
    pub readings: Vec<EvidenceReading>,
    /// Treatments involved (their ids), e.g. the meal or the evening bolus.
    pub treatment_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceReading {
    pub time: i64,
    pub mgdl: f64,
}

/// Every pattern found, the ones asking for attention first.
pub fn patterns<Tz: TimeZone>(input: &Input<'_, Tz>) -> Vec<Pattern> {
    let recent = since(
        input.points,
        input.now_ms - WINDOW_DAYS * DAY_MS,
        input.now_ms,
    );
    let month = since(
        input.points,
        input.now_ms - WEEKDAY_WINDOW_DAYS * DAY_MS,
        input.now_ms,
    );
    let lows = episodes(input, recent, Excursion::Low);
    let highs = episodes(input, recent, Excursion::High);
    let mut out = Vec::new();
    out.extend(time_of_day(input, recent, &lows, Excursion::Low));
    out.extend(time_of_day(input, recent, &highs, Excursion::High));
    for kind in [Excursion::Low, Excursion::High] {
        out.extend(weekday(input, month, &episodes(input, month, kind), kind));
    }
    out.extend(post_meal(input, recent));
    out.extend(night_lows_after_evening_bolus(input, &lows));
    out.extend(overnight_drift(input, recent, &lows));
    out.extend(sensor_gaps(input, recent));
    out.extend(weekly_trend(input));
    out.sort_by_key(|p| (p.severity, p.kind));
    out
}

/// The points of `[from, to)`.
fn since(points: &[GlucosePoint], from: i64, to: i64) -> &[GlucosePoint] {
    let a = points.partition_point(|p| p.utc_ms < from);
    let b = points.partition_point(|p| p.utc_ms < to);
    &points[a..b]
}

#[derive(Debug, Clone)]
struct Episode {
    start_ms: i64,
    end_ms: i64,
    /// The lowest reading of a low, the highest of a high.
    extreme: GlucosePoint,
    readings: Vec<GlucosePoint>,
}

/// Runs of consecutive readings below the person's range (lasting 15 minutes or more) or above
/// it (an hour or more).
fn episodes<Tz: TimeZone>(
    input: &Input<'_, Tz>,
    points: &[GlucosePoint],
    kind: Excursion,
) -> Vec<Episode> {
    let (outside, min_ms): (&dyn Fn(f64) -> bool, i64) = match kind {
        Excursion::Low => (&|g| g < input.low_mgdl, LOW_EPISODE_MS),
        Excursion::High => (&|g| g > input.high_mgdl, HIGH_EPISODE_MS),
    };
    let mut out = Vec::new();
    let mut run: Vec<GlucosePoint> = Vec::new();
    let mut close = |run: &mut Vec<GlucosePoint>| {
        if let (Some(first), Some(last)) = (run.first(), run.last()) {
            if last.utc_ms - first.utc_ms + READING_MS >= min_ms {
                let by_value = |a: &&GlucosePoint, b: &&GlucosePoint| a.mgdl.total_cmp(&b.mgdl);
                let extreme = match kind {
                    Excursion::Low => run.iter().min_by(by_value),
                    Excursion::High => run.iter().max_by(by_value),
                };
                out.push(Episode {
                    start_ms: first.utc_ms,
                    end_ms: last.utc_ms,
                    extreme: *extreme.expect("a run has readings"),
                    readings: run.clone(),
                });
            }
        }
        run.clear();
    };
    for p in points {
        let continues = run
            .last()
            .is_some_and(|l| p.utc_ms - l.utc_ms <= EPISODE_GAP_MS);
        if outside(p.mgdl) {
            if !continues {
                close(&mut run);
            }
            run.push(*p);
        } else {
            close(&mut run);
        }
    }
    close(&mut run);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Excursion {
    Low,
    High,
}

impl Excursion {
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Excursion::Low => ("Lows", "lowest"),
            Excursion::High => ("Highs", "highest"),
        }
    }
}

fn local<Tz: TimeZone>(tz: &Tz, utc_ms: i64) -> Option<DateTime<Tz>> {
    tz.timestamp_millis_opt(utc_ms).single()
}

/// The UTC instant of a local date and hour (the earlier one when clocks go back).
fn at_local<Tz: TimeZone>(tz: &Tz, date: NaiveDate, hour: u32) -> Option<i64> {
    let t = date.and_hms_opt(hour, 0, 0)?;
    tz.from_local_datetime(&t)
        .earliest()
        .map(|t| t.timestamp_millis())
}

fn rfc3339(utc_ms: i64) -> String {
    Timestamp::from_utc_ms(utc_ms).to_rfc3339_utc()
}

fn clock<Tz: TimeZone>(tz: &Tz, utc_ms: i64) -> String {
    local(tz, utc_ms).map_or_else(String::new, |t| {
        format!("{:02}:{:02}", t.hour(), t.minute())
    })
}

fn glucose(mgdl: f64, unit: GlucoseUnit) -> String {
    let v = GlucoseMgdl::from_stored(mgdl).display(unit);
    match unit {
        GlucoseUnit::MgDl => format!("{v:.0} mg/dL"),
        GlucoseUnit::MmolL => format!("{v:.1} mmol/L"),
    }
}

fn evidence_readings(points: &[GlucosePoint]) -> Vec<EvidenceReading> {
    // Evenly thinned to the cap, keeping the first and last.
    let step = points.len().div_ceil(MAX_EVIDENCE_READINGS).max(1);
    points
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == points.len())
        .map(|(_, p)| EvidenceReading {
            time: p.utc_ms,
            mgdl: p.mgdl,
        })
        .collect()
}

fn episode_evidence<Tz: TimeZone>(input: &Input<'_, Tz>, e: &Episode, word: &str) -> Evidence {
    let date = local(input.tz, e.start_ms).map(|t| t.date_naive());
    Evidence {
        date: date.map(|d| d.to_string()).unwrap_or_default(),
        from: rfc3339(e.start_ms),
        to: rfc3339(e.end_ms),
        note: format!(
            "{} to {}, {word} {} at {}",
            clock(input.tz, e.start_ms),
            clock(input.tz, e.end_ms + READING_MS),
            glucose(e.extreme.mgdl, input.unit),
            clock(input.tz, e.extreme.utc_ms),
        ),
        readings: evidence_readings(&e.readings),
        treatment_ids: Vec::new(),
    }
}

/// The local dates that have readings.
fn dates<Tz: TimeZone>(tz: &Tz, points: &[GlucosePoint]) -> BTreeSet<NaiveDate> {
    points
        .iter()
        .filter_map(|p| local(tz, p.utc_ms).map(|t| t.date_naive()))
        .collect()
}

/// Lows or highs that start in the same three hours of the day on at least 3 days, and on at
/// least a quarter of the days with data.
fn time_of_day<Tz: TimeZone>(
    input: &Input<'_, Tz>,
    points: &[GlucosePoint],
    episodes: &[Episode],
    kind: Excursion,
) -> Vec<Pattern> {
    let days = dates(input.tz, points).len();
    let mut by_window: BTreeMap<u32, BTreeMap<NaiveDate, &Episode>> = BTreeMap::new();
    for e in episodes {
        if let Some(t) = local(input.tz, e.start_ms) {
            // The first episode of each day in the window stands for that day.
            by_window
                .entry(t.hour() / 3)
                .or_default()
                .entry(t.date_naive())
                .or_insert(e);
        }
    }
    let mut found: Vec<(u32, BTreeMap<NaiveDate, &Episode>)> = by_window
        .into_iter()
        .filter(|(_, d)| d.len() >= 3 && d.len() * 4 >= days)
        .collect();
    // The two most frequent windows; the earlier first when equally frequent.
    found.sort_by_key(|(w, d)| (std::cmp::Reverse(d.len()), *w));
    found.truncate(2);
    let (noun, word) = kind.words();
    found
        .into_iter()
        .map(|(window, on_days)| {
            let (from_h, to_h) = (window * 3, window * 3 + 3);
            let extreme = on_days
                .values()
                .map(|e| e.extreme.mgdl)
                .fold(None, |acc: Option<f64>, v| {
                    Some(acc.map_or(v, |a| if kind == Excursion::Low { a.min(v) } else { a.max(v) }))
                })
                .unwrap_or_default();
            let (what, severity, advice) = match kind {
                Excursion::Low => (
                    format!("below {} for 15 minutes or more", glucose(input.low_mgdl, input.unit)),
                    Severity::Attention,
                    "Lows that come back at the same time of day are worth discussing with your care team.",
                ),
                Excursion::High => (
                    format!("above {} for an hour or more", glucose(input.high_mgdl, input.unit)),
                    Severity::Notice,
                    "Highs at the same time of day are worth discussing with your care team.",
                ),
            };
            Pattern {
                kind: match kind {
                    Excursion::Low => PatternKind::RecurringLows,
                    Excursion::High => PatternKind::RecurringHighs,
                },
                severity,
                title: format!("{noun} between {from_h:02}:00 and {to_h:02}:00"),
                detail: format!(
                    "On {} of the last {WINDOW_DAYS} days, glucose was {what} starting between \
                     {from_h:02}:00 and {to_h:02}:00 ({word} {}). {advice}",
                    on_days.len(),
                    glucose(extreme, input.unit),
                ),
                evidence: on_days
                    .values()
                    .map(|e| episode_evidence(input, e, word))
                    .collect(),
            }
        })
        .collect()
}

/// Lows or highs on one weekday in at least 3 of the last four weeks, at least twice as often
/// as on the other days.
fn weekday<Tz: TimeZone>(
    input: &Input<'_, Tz>,
    points: &[GlucosePoint],
    episodes: &[Episode],
    kind: Excursion,
) -> Vec<Pattern> {
    let days = dates(input.tz, points);
    let mut with: BTreeMap<NaiveDate, &Episode> = BTreeMap::new();
    for e in episodes {
        if let Some(t) = local(input.tz, e.start_ms) {
            with.entry(t.date_naive()).or_insert(e);
        }
    }
    let rate = |pick: &dyn Fn(Weekday) -> bool| {
        let total = days.iter().filter(|d| pick(d.weekday())).count();
        let hit = with.keys().filter(|d| pick(d.weekday())).count();
        (hit, total)
    };
    let (noun, word) = kind.words();
    let mut out = Vec::new();
    for day in [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ] {
        let (hit, total) = rate(&|w| w == day);
        let (other_hit, other_total) = rate(&|w| w != day);
        if hit < 3 || hit * 4 < total * 3 {
            continue;
        }
        let other = if other_total == 0 {
            0.0
        } else {
            other_hit as f64 / other_total as f64
        };
        if other * 2.0 > hit as f64 / total as f64 {
            continue;
        }
        let name = weekday_name(day);
        out.push(Pattern {
            kind: match kind {
                Excursion::Low => PatternKind::WeekdayLows,
                Excursion::High => PatternKind::WeekdayHighs,
            },
            severity: match kind {
                Excursion::Low => Severity::Attention,
                Excursion::High => Severity::Notice,
            },
            title: format!("{noun} on {name}s"),
            detail: format!(
                "{noun} on {hit} of the last {total} {name}s, against {:.0} % of the other \
                 days. Something about {name}s (activity, meals, routine) may be worth \
                 discussing with your care team.",
                other * 100.0
            ),
            evidence: with
                .iter()
                .filter(|(d, _)| d.weekday() == day)
                .map(|(_, e)| episode_evidence(input, e, word))
                .collect(),
        });
    }
    out
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

/// The reading nearest to `utc_ms` within `within_ms`.
fn nearest(points: &[GlucosePoint], utc_ms: i64, within_ms: i64) -> Option<GlucosePoint> {
    since(points, utc_ms - within_ms, utc_ms + within_ms + 1)
        .iter()
        .min_by_key(|p| (p.utc_ms - utc_ms).abs())
        .copied()
}

const MEAL_WINDOW_MS: i64 = 3 * 3_600_000;
/// A meal is followed by at least this many of its window's 36 readings, or it is skipped.
const MEAL_MIN_READINGS: usize = 24;
const MEAL_MIN_GRAMS: f64 = 10.0;

fn meal_name(hour: u32) -> &'static str {
    match hour {
        5..=10 => "breakfast",
        11..=15 => "lunch",
        17..=22 => "dinner",
        _ => "snacks",
    }
}

/// Per meal time (breakfast, lunch, dinner, snacks): at least 3 meals in the window, and a
/// median rise of 60 mg/dL or more, or a median peak above the person's range.
fn post_meal<Tz: TimeZone>(input: &Input<'_, Tz>, points: &[GlucosePoint]) -> Vec<Pattern> {
    struct Meal<'t> {
        treatment: &'t Treatment,
        grams: f64,
        before: GlucosePoint,
        peak: GlucosePoint,
        readings: &'t [GlucosePoint],
    }
    let mut by_time: BTreeMap<&'static str, Vec<Meal<'_>>> = BTreeMap::new();
    let from = input.now_ms - WINDOW_DAYS * DAY_MS;
    for t in input.treatments {
        let TreatmentDetail::Carbs { grams } = t.detail else {
            continue;
        };
        let at = t.time.utc_ms;
        if grams < MEAL_MIN_GRAMS || at < from || at + MEAL_WINDOW_MS > input.now_ms {
            continue;
        }
        let after = since(points, at, at + MEAL_WINDOW_MS + 1);
        let (Some(before), Some(peak)) = (
            nearest(points, at, 15 * MINUTE_MS),
            after
                .iter()
                .max_by(|a, b| a.mgdl.total_cmp(&b.mgdl))
                .copied(),
        ) else {
            continue;
        };
        if after.len() < MEAL_MIN_READINGS {
            continue;
        }
        let Some(local_at) = local(input.tz, at) else {
            continue;
        };
        by_time
            .entry(meal_name(local_at.hour()))
            .or_default()
            .push(Meal {
                treatment: t,
                grams,
                before,
                peak,
                readings: after,
            });
    }
    let mut out = Vec::new();
    for (name, meals) in by_time {
        if meals.len() < 3 {
            continue;
        }
        let mut rises: Vec<f64> = meals.iter().map(|m| m.peak.mgdl - m.before.mgdl).collect();
        let mut peaks: Vec<f64> = meals.iter().map(|m| m.peak.mgdl).collect();
        let (rise, peak) = (median(&mut rises), median(&mut peaks));
        if rise < 60.0 && peak <= input.high_mgdl {
            continue;
        }
        let above = meals
            .iter()
            .filter(|m| m.peak.mgdl > input.high_mgdl)
            .count();
        out.push(Pattern {
            kind: PatternKind::PostMealRise,
            severity: Severity::Notice,
            title: format!("Rises after {name}"),
            detail: format!(
                "After {name}, glucose rose by a median of {} to a median peak of {} \
                 ({above} of {} meals went above {}). The timing of meals and mealtime \
                 insulin, and what the meals hold, are worth discussing with your care team.",
                glucose_delta(rise, input.unit),
                glucose(peak, input.unit),
                meals.len(),
                glucose(input.high_mgdl, input.unit),
            ),
            evidence: meals
                .iter()
                .map(|m| Evidence {
                    date: local(input.tz, m.treatment.time.utc_ms)
                        .map(|t| t.date_naive().to_string())
                        .unwrap_or_default(),
                    from: rfc3339(m.treatment.time.utc_ms),
                    to: rfc3339(m.treatment.time.utc_ms + MEAL_WINDOW_MS),
                    note: format!(
                        "{:.0} g at {}: {} before, peak {} at {}",
                        m.grams,
                        clock(input.tz, m.treatment.time.utc_ms),
                        glucose(m.before.mgdl, input.unit),
                        glucose(m.peak.mgdl, input.unit),
                        clock(input.tz, m.peak.utc_ms),
                    ),
                    readings: evidence_readings(m.readings),
                    treatment_ids: vec![m.treatment.id.clone()],
                })
                .collect(),
        });
    }
    out
}

/// A change of glucose in the person's unit.
fn glucose_delta(mgdl: f64, unit: GlucoseUnit) -> String {
    glucose(mgdl.abs(), unit)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    crate::agp::percentile(values, 50.0).unwrap_or(0.0)
}

fn boluses(treatments: &[Treatment], from: i64, to: i64) -> Vec<&Treatment> {
    treatments
        .iter()
        .filter(|t| {
            (from..to).contains(&t.time.utc_ms)
                && matches!(
                    t.detail,
                    TreatmentDetail::Insulin {
                        insulin_type: InsulinType::Bolus,
                        ..
                    }
                )
        })
        .collect()
}

/// Nights (00:00–06:00) with a low after a bolus the evening before (18:00–24:00): at least
/// two such nights in the window.
fn night_lows_after_evening_bolus<Tz: TimeZone>(
    input: &Input<'_, Tz>,
    lows: &[Episode],
) -> Vec<Pattern> {
    let mut nights: BTreeMap<NaiveDate, (&Episode, Vec<&Treatment>)> = BTreeMap::new();
    for e in lows {
        let Some(t) = local(input.tz, e.start_ms) else {
            continue;
        };
        if t.hour() >= 6 || nights.contains_key(&t.date_naive()) {
            continue;
        }
        let date = t.date_naive();
        let (Some(evening), Some(midnight)) = (
            date.pred_opt().and_then(|d| at_local(input.tz, d, 18)),
            at_local(input.tz, date, 0),
        ) else {
            continue;
        };
        let given = boluses(input.treatments, evening, midnight);
        if !given.is_empty() {
            nights.insert(date, (e, given));
        }
    }
    if nights.len() < 2 {
        return Vec::new();
    }
    vec![Pattern {
        kind: PatternKind::NightLowsAfterEveningBolus,
        severity: Severity::Attention,
        title: "Night lows after evening insulin".into(),
        detail: format!(
            "On {} nights in the last {WINDOW_DAYS} days, a low came between midnight and \
             06:00 after insulin given in the evening. Discuss evening insulin and bedtime \
             routines with your care team.",
            nights.len()
        ),
        evidence: nights
            .values()
            .map(|(e, given)| {
                let mut ev = episode_evidence(input, e, "lowest");
                let times: Vec<String> = given
                    .iter()
                    .map(|t| format!("insulin at {}", clock(input.tz, t.time.utc_ms)))
                    .collect();
                ev.note = format!("{} ({})", ev.note, times.join(", "));
                ev.treatment_ids = given.iter().map(|t| t.id.clone()).collect();
                ev
            })
            .collect(),
    }]
}

/// Drift between midnight and 06:00 on nights without meals or insulin from 21:00 and without
/// lows: at least 3 such nights, a median drift of 30 mg/dL or more, and two thirds of the
/// nights drifting the same way by more than 15.
fn overnight_drift<Tz: TimeZone>(
    input: &Input<'_, Tz>,
    points: &[GlucosePoint],
    lows: &[Episode],
) -> Vec<Pattern> {
    let mut nights: Vec<(NaiveDate, GlucosePoint, GlucosePoint, &[GlucosePoint])> = Vec::new();
    for date in dates(input.tz, points) {
        let (Some(quiet_from), Some(start), Some(end)) = (
            date.pred_opt().and_then(|d| at_local(input.tz, d, 21)),
            at_local(input.tz, date, 0),
            at_local(input.tz, date, 6),
        ) else {
            continue;
        };
        let quiet = !input.treatments.iter().any(|t| {
            (quiet_from..end).contains(&t.time.utc_ms)
                && matches!(
                    t.detail,
                    TreatmentDetail::Carbs { .. }
                        | TreatmentDetail::Insulin {
                            insulin_type: InsulinType::Bolus,
                            ..
                        }
                )
        });
        let low = lows.iter().any(|e| e.end_ms >= start && e.start_ms < end);
        let night = since(points, start, end + 1);
        if !quiet || low || night.len() * 10 < 72 * 7 {
            continue;
        }
        if let (Some(a), Some(b)) = (
            nearest(points, start, 15 * MINUTE_MS),
            nearest(points, end, 15 * MINUTE_MS),
        ) {
            nights.push((date, a, b, night));
        }
    }
    if nights.len() < 3 {
        return Vec::new();
    }
    let drifts: Vec<f64> = nights.iter().map(|(_, a, b, _)| b.mgdl - a.mgdl).collect();
    let drift = median(&mut drifts.clone());
    let same_way = drifts
        .iter()
        .filter(|d| d.signum() == drift.signum() && d.abs() > 15.0)
        .count();
    if drift.abs() < 30.0 || same_way * 3 < nights.len() * 2 {
        return Vec::new();
    }
    let direction = if drift > 0.0 { "rose" } else { "fell" };
    vec![Pattern {
        kind: PatternKind::OvernightDrift,
        severity: Severity::Notice,
        title: format!(
            "Glucose {} overnight",
            if drift > 0.0 { "rises" } else { "falls" }
        ),
        detail: format!(
            "Between midnight and 06:00, glucose {direction} by a median of {} on {same_way} \
             of {} nights without late meals, insulin or lows. A steady drift overnight can \
             mean background insulin needs have changed: discuss it with your care team.",
            glucose_delta(drift, input.unit),
            nights.len()
        ),
        evidence: nights
            .iter()
            .map(|(date, a, b, night)| Evidence {
                date: date.to_string(),
                from: rfc3339(a.utc_ms),
                to: rfc3339(b.utc_ms),
                note: format!(
                    "{} at {} to {} at {}",
                    glucose(a.mgdl, input.unit),
                    clock(input.tz, a.utc_ms),
                    glucose(b.mgdl, input.unit),
                    clock(input.tz, b.utc_ms),
                ),
                readings: evidence_readings(night),
                treatment_ids: Vec::new(),
            })
            .collect(),
    }]
}

/// Gaps of more than an hour between readings: three of 2 hours or more, or a tenth of the
/// time.
fn sensor_gaps<Tz: TimeZone>(input: &Input<'_, Tz>, points: &[GlucosePoint]) -> Vec<Pattern> {
    let gaps: Vec<(GlucosePoint, GlucosePoint)> = points
        .windows(2)
        .filter(|w| w[1].utc_ms - w[0].utc_ms > SENSOR_GAP_MS)
        .map(|w| (w[0], w[1]))
        .collect();
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let span = (last.utc_ms - first.utc_ms).max(1);
    let missing: i64 = gaps.iter().map(|(a, b)| b.utc_ms - a.utc_ms).sum();
    let long = gaps
        .iter()
        .filter(|(a, b)| b.utc_ms - a.utc_ms >= 2 * SENSOR_GAP_MS)
        .count();
    if long < 3 && missing * 10 < span {
        return Vec::new();
    }
    let mut longest = gaps.clone();
    longest.sort_by_key(|(a, b)| std::cmp::Reverse(b.utc_ms - a.utc_ms));
    longest.truncate(10);
    longest.sort_by_key(|(a, _)| a.utc_ms);
    vec![Pattern {
        kind: PatternKind::SensorGaps,
        severity: Severity::Info,
        title: "Gaps in the sensor data".into(),
        detail: format!(
            "{} gaps of more than an hour in the last {WINDOW_DAYS} days, {:.0} hours in all \
             ({:.0} % of the time). Lows can hide in gaps: check the sensor's placement and the \
             phone's connection to it.",
            gaps.len(),
            missing as f64 / 3_600_000.0,
            100.0 * missing as f64 / span as f64,
        ),
        evidence: longest
            .iter()
            .map(|(a, b)| Evidence {
                date: local(input.tz, a.utc_ms)
                    .map(|t| t.date_naive().to_string())
                    .unwrap_or_default(),
                from: rfc3339(a.utc_ms),
                to: rfc3339(b.utc_ms),
                note: format!(
                    "no readings from {} to {} ({:.1} h)",
                    clock(input.tz, a.utc_ms),
                    clock(input.tz, b.utc_ms),
                    (b.utc_ms - a.utc_ms) as f64 / 3_600_000.0
                ),
                readings: vec![
                    EvidenceReading {
                        time: a.utc_ms,
                        mgdl: a.mgdl,
                    },
                    EvidenceReading {
                        time: b.utc_ms,
                        mgdl: b.mgdl,
                    },
                ],
                treatment_ids: Vec::new(),
            })
            .collect(),
    }]
}

/// The week's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeekFigures {
    pub time_in_range: f64,
    pub gmi: f64,
    pub cv: f64,
}

/// A week's time in range (consensus 70–180), GMI and CV; `None` with less than half of a
/// week of 5-minute readings.
pub fn week_figures(points: &[GlucosePoint]) -> Option<WeekFigures> {
    if points.len() < 7 * 288 / 2 {
        return None;
    }
    let values: Vec<f64> = points.iter().map(|p| p.mgdl).collect();
    let m = mean(&values)?;
    Some(WeekFigures {
        time_in_range: bands(&values).in_range,
        gmi: gmi_percent(m),
        cv: 100.0 * sd(&values)? / m,
    })
}

/// The last 7 days against the 7 before, when both have enough data.
fn weekly_trend<Tz: TimeZone>(input: &Input<'_, Tz>) -> Vec<Pattern> {
    let week = 7 * DAY_MS;
    let (this_from, last_from) = (input.now_ms - week, input.now_ms - 2 * week);
    let (Some(now), Some(before)) = (
        week_figures(since(input.points, this_from, input.now_ms)),
        week_figures(since(input.points, last_from, this_from)),
    ) else {
        return Vec::new();
    };
    let verdict = if now.time_in_range >= before.time_in_range + 5.0 {
        "more time in range than the week before"
    } else if now.time_in_range + 5.0 <= before.time_in_range {
        "less time in range than the week before"
    } else {
        "about as much time in range as the week before"
    };
    let week_note = |f: WeekFigures| {
        format!(
            "time in range {:.0} %, GMI {:.1} %, CV {:.0} %",
            f.time_in_range, f.gmi, f.cv
        )
    };
    vec![Pattern {
        kind: PatternKind::WeeklyTrend,
        severity: Severity::Info,
        title: "This week against last week".into(),
        detail: format!(
            "The last 7 days had {verdict}: time in range {:.0} % (before: {:.0} %), GMI \
             {:.1} % ({:.1} %), CV {:.0} % ({:.0} %).",
            now.time_in_range, before.time_in_range, now.gmi, before.gmi, now.cv, before.cv
        ),
        evidence: vec![
            Evidence {
                date: local(input.tz, last_from)
                    .map(|t| t.date_naive().to_string())
                    .unwrap_or_default(),
                from: rfc3339(last_from),
                to: rfc3339(this_from),
                note: format!("the week before: {}", week_note(before)),
                readings: Vec::new(),
                treatment_ids: Vec::new(),
            },
            Evidence {
                date: local(input.tz, this_from)
                    .map(|t| t.date_naive().to_string())
                    .unwrap_or_default(),
                from: rfc3339(this_from),
                to: rfc3339(input.now_ms),
                note: format!("the last 7 days: {}", week_note(now)),
                readings: Vec::new(),
                treatment_ids: Vec::new(),
            },
        ],
    }]
}

/// Whether a text states an amount of insulin or a setting: a number (in digits or words)
/// near a unit word ("4 units", "2U", "two more units", "0.5 IU", "3 Einheiten", "units: 4"),
/// a ratio near ratio words ("1:10 carb ratio"), or a percentage change of insulin ("raise
/// basal by 10 %"). AI replies that do are not shown: GlucoSync never gives dosing advice,
/// and a model may slip whatever its instructions say. It leans towards withholding.
pub fn mentions_insulin_dose(text: &str) -> bool {
    const UNIT_WORDS: [&str; 14] = [
        "iu",
        "ui",
        "units",
        "unit",
        "einheit",
        "einheiten",
        "unité",
        "unités",
        "unites",
        "unidad",
        "unidades",
        "unità",
        "unita",
        "ie",
    ];
    /// Only right after a number ("4 u", "4 E"): elsewhere they are other words.
    const SHORT_UNITS: [&str; 2] = ["u", "e"];
    const NUMBER_WORDS: [&str; 24] = [
        "a",
        "an",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "fifteen",
        "twenty",
        "half",
        "couple",
        "few",
        "several",
        "some",
        "more",
        "extra",
        "additional",
    ];
    const RATIO_WORDS: [&str; 7] = [
        "ratio",
        "ratios",
        "isf",
        "sensitivity",
        "factor",
        "icr",
        "carb",
    ];
    const INSULIN_WORDS: [&str; 7] = [
        "basal", "bolus", "dose", "doses", "insulin", "ratio", "ratios",
    ];
    const CHANGE_WORDS: [&str; 10] = [
        "increase", "decrease", "raise", "lower", "reduce", "cut", "up", "down", "by", "adjust",
    ];
    let tokens = tokens(text);
    let is_number = |t: &str| t.chars().next().is_some_and(|c| c.is_numeric());
    let near = |i: usize, before: usize, after: usize, set: &[&str]| {
        let from = i.saturating_sub(before);
        let to = (i + after + 1).min(tokens.len());
        tokens[from..to].iter().any(|t| set.contains(&t.as_str()))
    };
    for (i, t) in tokens.iter().enumerate() {
        let t = t.as_str();
        if is_number(t) {
            // "4 units", "4 more units", "2-3 units", "4u", "4 E"
            let next = tokens.get(i + 1).map(String::as_str).unwrap_or("");
            let i_e = next == "i" && tokens.get(i + 2).is_some_and(|t| t == "e");
            if SHORT_UNITS.contains(&next) || i_e || near(i, 0, 3, &UNIT_WORDS) {
                return true;
            }
            // "1:10 carb ratio", "ISF 1/40"
            if matches!(next, ":" | "/")
                && tokens.get(i + 2).is_some_and(|n| is_number(n))
                && near(i, 3, 5, &RATIO_WORDS)
            {
                return true;
            }
            // "raise basal by 10 %"
            if matches!(next, "%" | "percent")
                && near(i, 5, 3, &INSULIN_WORDS)
                && near(i, 5, 3, &CHANGE_WORDS)
            {
                return true;
            }
        } else if NUMBER_WORDS.contains(&t) && !matches!(t, "a" | "an" | "more" | "some") {
            // "two units", "half a unit", "a couple of units"
            if near(i, 0, 3, &UNIT_WORDS) {
                return true;
            }
        } else if UNIT_WORDS.contains(&t) {
            // "units: 4", "units 4"
            if tokens
                .get(i + 1..(i + 3).min(tokens.len()))
                .is_some_and(|next| next.iter().any(|n| is_number(n)))
            {
                return true;
            }
        }
    }
    false
}

/// Lower-case words, numbers (digits with their decimal point) and the symbols `%`, `:` and
/// `/`, in order; a number and the letters right after it are separate ("4u" → "4", "u").
fn tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut numeric = false;
    let flush = |current: &mut String, out: &mut Vec<String>| {
        if !current.is_empty() {
            out.push(std::mem::take(current));
        }
    };
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_numeric()
            || (numeric
                && matches!(c, '.' | ',')
                && chars.get(i + 1).is_some_and(|n| n.is_numeric()))
        {
            if !numeric {
                flush(&mut current, &mut out);
            }
            numeric = true;
            current.push(c);
        } else if c.is_alphabetic() {
            if numeric {
                flush(&mut current, &mut out);
            }
            numeric = false;
            current.extend(c.to_lowercase());
        } else {
            flush(&mut current, &mut out);
            numeric = false;
            if matches!(c, '%' | ':' | '/') {
                out.push(c.to_string());
            }
        }
    }
    flush(&mut current, &mut out);
    out
}

#[cfg(test)]
mod dose_tests {
    use super::mentions_insulin_dose;

    #[test]
    fn amounts_of_insulin_and_settings_are_recognised_and_glucose_figures_are_not() {
        for dose in [
            "Take 4 units before dinner.",
            "try 2U",
            "4u at night",
            "0.5 IU more",
            "1-2 units",
            "a 3-unit correction",
            "3 Einheiten",
            "4 I.E. vor dem Essen",
            "4 UI avant le repas",
            "1 unidad",
            "10 u at night",
            "two units before breakfast",
            "half a unit less",
            "a couple of units",
            "4 more units",
            "2 extra units",
            "4 (four) units",
            "units: 4",
            "a 1:10 carb ratio",
            "an ISF of 1/40 would suit",
            "raise basal by 10 %",
            "lower your bolus doses by 20 percent",
            "0.8 U/h overnight",
        ] {
            assert!(mentions_insulin_dose(dose), "{dose}");
        }
        for fine in [
            "Time in range was 72 % and glucose peaked at 240 mg/dL.",
            "Lows came on 3 of 14 days around 03:00.",
            "Your GMI is 6.9 %; CV 34 %.",
            "Discuss your insulin timing with your care team.",
            "6.1 mmol/L at 7 am",
            "Breakfast at 07:30 was followed by a rise to 250 mg/dL on 5 of 7 days.",
            "Time in range rose from 61 % to 70 % this week.",
            "Your sensor covered 95 % of the time.",
        ] {
            assert!(!mentions_insulin_dose(fine), "{fine}");
        }
    }
}
