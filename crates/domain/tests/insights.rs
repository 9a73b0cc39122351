//! The insight rules on made-up weeks whose patterns are known: each pattern is found with
//! exactly its days as evidence, nothing is found in steady data, and no text gives a dose.

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use glucosync_domain::analytics::GlucosePoint;
use glucosync_domain::insights::{patterns, Input, Pattern, PatternKind, Severity};
use glucosync_domain::treatments::{InsulinType, Treatment, TreatmentDetail};
use glucosync_domain::{GlucoseUnit, Timestamp};

const STEP: i64 = 300_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// 28 days of 5-minute readings in `tz`, ending at local midnight of 2026-03-01 (before the
/// spring clock change in both zones used), valued by `f(day index 0..28, local minute of day)`.
struct Data {
    tz: Tz,
    start_ms: i64,
    points: Vec<GlucosePoint>,
    treatments: Vec<Treatment>,
}

impl Data {
    fn new(tz: Tz, f: impl Fn(i64, i64) -> f64) -> Data {
        let start = NaiveDate::from_ymd_opt(2026, 2, 1)
            .expect("date")
            .and_hms_opt(0, 0, 0)
            .expect("time");
        let start_ms = tz
            .from_local_datetime(&start)
            .single()
            .expect("local")
            .timestamp_millis();
        let points = (0..28 * 288)
            .map(|i| GlucosePoint {
                utc_ms: start_ms + i * STEP,
                mgdl: f(i / 288, (i % 288) * 5),
            })
            .collect();
        Data {
            tz,
            start_ms,
            points,
            treatments: Vec::new(),
        }
    }

    fn at(&self, day: i64, minute: i64) -> i64 {
        self.start_ms + day * DAY + minute * 60_000
    }

    fn treat(&mut self, day: i64, minute: i64, detail: TreatmentDetail) {
        let utc_ms = self.at(day, minute);
        self.treatments.push(Treatment {
            id: format!("t{day}-{minute}"),
            time: Timestamp::from_utc_ms(utc_ms),
            detail,
            extra: None,
            created_ms: 0,
            updated_ms: 0,
        });
    }

    fn patterns(&self) -> Vec<Pattern> {
        patterns(&Input {
            points: &self.points,
            treatments: &self.treatments,
            tz: &self.tz,
            now_ms: self.start_ms + 28 * DAY,
            low_mgdl: 70.0,
            high_mgdl: 180.0,
            unit: GlucoseUnit::MgDl,
        })
    }
}

fn steady(_: i64, minute: i64) -> f64 {
    // A gentle daily wave inside the range.
    120.0 + 15.0 * ((minute as f64) / 1440.0 * std::f64::consts::TAU).sin()
}

fn kinds(ps: &[Pattern]) -> Vec<PatternKind> {
    ps.iter().map(|p| p.kind).collect()
}

fn only(ps: &[Pattern], kind: PatternKind) -> &Pattern {
    let found: Vec<&Pattern> = ps.iter().filter(|p| p.kind == kind).collect();
    assert_eq!(found.len(), 1, "{kind:?} in {:?}", kinds(ps));
    found[0]
}

fn dates(p: &Pattern) -> Vec<&str> {
    p.evidence.iter().map(|e| e.date.as_str()).collect()
}

/// No text may read like a dose: a number followed by units of insulin.
fn assert_no_dose(ps: &[Pattern]) {
    for p in ps {
        for text in [&p.title, &p.detail]
            .into_iter()
            .chain(p.evidence.iter().map(|e| &e.note))
        {
            let lower = text.to_lowercase();
            for word in [
                " u ",
                " u,",
                " u.",
                "units",
                "increase your",
                "decrease your",
                "take ",
            ] {
                assert!(!lower.contains(word), "{word:?} in {text:?}");
            }
        }
    }
}

#[test]
fn steady_weeks_show_only_the_weekly_comparison() {
    let d = Data::new(chrono_tz::UTC, steady);
    let ps = d.patterns();
    assert_eq!(kinds(&ps), [PatternKind::WeeklyTrend]);
    assert!(
        ps[0].detail.contains("about as much time in range"),
        "{}",
        ps[0].detail
    );
    assert!(ps[0].detail.contains("100 %"), "{}", ps[0].detail);
}

#[test]
fn lows_at_the_same_time_of_day_are_found_with_their_days_in_local_time() {
    // Lows of 40 minutes at 03:30 local on 5 of the last 14 days, in New York.
    let low_days = [15, 17, 20, 24, 26];
    let d = Data::new(chrono_tz::America::New_York, |day, minute| {
        if low_days.contains(&day) && (210..250).contains(&minute) {
            58.0
        } else {
            steady(day, minute)
        }
    });
    let ps = d.patterns();
    let p = only(&ps, PatternKind::RecurringLows);
    assert_eq!(p.severity, Severity::Attention);
    assert_eq!(p.title, "Lows between 03:00 and 06:00");
    assert!(
        p.detail.starts_with("On 5 of the last 14 days"),
        "{}",
        p.detail
    );
    assert!(p.detail.contains("lowest 58 mg/dL"), "{}", p.detail);
    assert_eq!(
        dates(p),
        [
            "2026-02-16",
            "2026-02-18",
            "2026-02-21",
            "2026-02-25",
            "2026-02-27"
        ]
    );
    assert!(
        p.evidence[0].note.starts_with("03:30 to 04:10"),
        "{}",
        p.evidence[0].note
    );
    assert_eq!(p.evidence[0].readings.len(), 8);
    // The lows are the attention-grabbing patterns: first.
    assert_eq!(ps[0].kind, PatternKind::RecurringLows);
    assert_no_dose(&ps);

    // Two days are not a pattern.
    let d = Data::new(chrono_tz::UTC, |day, minute| {
        if [20, 24].contains(&day) && (210..250).contains(&minute) {
            58.0
        } else {
            steady(day, minute)
        }
    });
    assert!(!kinds(&d.patterns()).contains(&PatternKind::RecurringLows));
    // Nor are short dips (10 minutes).
    let d = Data::new(chrono_tz::UTC, |day, minute| {
        if day >= 14 && (210..220).contains(&minute) {
            60.0
        } else {
            steady(day, minute)
        }
    });
    assert!(!kinds(&d.patterns()).contains(&PatternKind::RecurringLows));
}

#[test]
fn highs_on_one_weekday_are_found() {
    // Saturdays (2026-02-07, 14, 21, 28 are days 6, 13, 20, 27) are high all afternoon.
    let d = Data::new(chrono_tz::Europe::Berlin, |day, minute| {
        if day % 7 == 6 && (13 * 60..18 * 60).contains(&minute) {
            230.0
        } else {
            steady(day, minute)
        }
    });
    let ps = d.patterns();
    let p = only(&ps, PatternKind::WeekdayHighs);
    assert_eq!(p.title, "Highs on Saturdays");
    assert_eq!(
        dates(p),
        ["2026-02-07", "2026-02-14", "2026-02-21", "2026-02-28"]
    );
    // Two of them fall in the last 14 days: not enough for the time-of-day rule.
    assert!(!kinds(&ps).contains(&PatternKind::RecurringHighs));
}

#[test]
fn rises_after_breakfast_are_found_per_meal_time() {
    // Breakfast at 07:30 with a rise to 250 an hour later; lunch at 12:30 barely moves.
    let mut d = Data::new(chrono_tz::UTC, |day, minute| {
        let after = |meal: i64| minute - meal;
        match (after(450), after(750)) {
            (m, _) if (0..180).contains(&m) => {
                115.0 + 135.0 * (1.0 - ((m - 60) as f64 / 60.0).powi(2)).max(0.0)
            }
            (_, m) if (0..180).contains(&m) => {
                115.0 + 20.0 * (1.0 - ((m - 60) as f64 / 60.0).powi(2)).max(0.0)
            }
            _ => 115.0 + 0.0 * day as f64,
        }
    });
    for day in 14..28 {
        d.treat(day, 450, TreatmentDetail::Carbs { grams: 60.0 });
        d.treat(day, 750, TreatmentDetail::Carbs { grams: 40.0 });
    }
    let ps = d.patterns();
    let p = only(&ps, PatternKind::PostMealRise);
    assert_eq!(p.title, "Rises after breakfast");
    assert!(
        p.detail
            .contains("median of 135 mg/dL to a median peak of 250 mg/dL"),
        "{}",
        p.detail
    );
    assert!(
        p.detail.contains("(14 of 14 meals went above 180 mg/dL)"),
        "{}",
        p.detail
    );
    assert_eq!(p.evidence.len(), 14);
    assert_eq!(p.evidence[0].treatment_ids, ["t14-450"]);
    assert!(
        p.evidence[0]
            .note
            .starts_with("60 g at 07:30: 115 mg/dL before, peak 250 mg/dL at 08:30"),
        "{}",
        p.evidence[0].note
    );
    assert_no_dose(&ps);
}

#[test]
fn night_lows_after_evening_boluses_name_the_boluses() {
    // Boluses at 21:00 on four evenings; lows at 02:00 after three of them, and one low
    // night without an evening bolus.
    let low_nights = [18, 22, 25, 27];
    let mut d = Data::new(chrono_tz::UTC, |day, minute| {
        if low_nights.contains(&day) && (120..160).contains(&minute) {
            62.0
        } else {
            steady(day, minute)
        }
    });
    for evening in [17, 21, 24, 19] {
        d.treat(
            evening,
            21 * 60,
            TreatmentDetail::Insulin {
                units: 4.0,
                insulin_type: InsulinType::Bolus,
                insulin_name: None,
            },
        );
    }
    let ps = d.patterns();
    let p = only(&ps, PatternKind::NightLowsAfterEveningBolus);
    assert!(p.detail.starts_with("On 3 nights"), "{}", p.detail);
    assert_eq!(dates(p), ["2026-02-19", "2026-02-23", "2026-02-26"]);
    assert_eq!(p.evidence[0].treatment_ids, ["t17-1260"]);
    assert!(
        p.evidence[0].note.contains("insulin at 21:00"),
        "{}",
        p.evidence[0].note
    );
    assert_no_dose(&ps);
}

#[test]
fn a_steady_overnight_rise_suggests_talking_to_the_care_team() {
    // From 110 at midnight to 170 at 06:00, every night, no late meals or insulin.
    let d = Data::new(chrono_tz::UTC, |_, minute| {
        if minute <= 360 {
            110.0 + 60.0 * minute as f64 / 360.0
        } else {
            170.0 - 60.0 * (minute - 360) as f64 / 1080.0
        }
    });
    let ps = d.patterns();
    let p = only(&ps, PatternKind::OvernightDrift);
    assert_eq!(p.title, "Glucose rises overnight");
    assert!(
        p.detail
            .contains("rose by a median of 60 mg/dL on 14 of 14 nights"),
        "{}",
        p.detail
    );
    assert!(p.detail.contains("care team"));
    assert_no_dose(&ps);

    // A meal at 23:00 makes a night not count; so do the nights before 21:00 insulin.
    let mut d = Data::new(chrono_tz::UTC, |_, minute| {
        if minute <= 360 {
            110.0 + 60.0 * minute as f64 / 360.0
        } else {
            170.0 - 60.0 * (minute - 360) as f64 / 1080.0
        }
    });
    for day in 13..27 {
        if day != 20 && day != 22 {
            d.treat(day, 23 * 60, TreatmentDetail::Carbs { grams: 20.0 });
        }
    }
    assert!(!kinds(&d.patterns()).contains(&PatternKind::OvernightDrift));
}

#[test]
fn sensor_gaps_are_listed_longest_first_kept_in_time_order() {
    let mut d = Data::new(chrono_tz::UTC, steady);
    let gap = |day: i64, hours: i64| {
        let from = d_start(day);
        (from, from + hours * HOUR)
    };
    fn d_start(day: i64) -> i64 {
        day * DAY + 10 * HOUR
    }
    let gaps = [gap(15, 3), gap(19, 5), gap(23, 2)];
    let start = d.start_ms;
    d.points.retain(|p| {
        !gaps
            .iter()
            .any(|(a, b)| (start + a..start + b).contains(&p.utc_ms))
    });
    let ps = d.patterns();
    let p = only(&ps, PatternKind::SensorGaps);
    assert!(
        p.detail.starts_with("3 gaps of more than an hour"),
        "{}",
        p.detail
    );
    assert_eq!(dates(p), ["2026-02-16", "2026-02-20", "2026-02-24"]);
    assert!(
        p.evidence[1].note.contains("from 09:55 to 15:00"),
        "{}",
        p.evidence[1].note
    );
}

#[test]
fn the_weekly_comparison_says_which_way_things_went() {
    // The week before spent every afternoon at 220; the last week is steady.
    let d = Data::new(chrono_tz::UTC, |day, minute| {
        if (14..21).contains(&day) && (12 * 60..18 * 60).contains(&minute) {
            220.0
        } else {
            steady(day, minute)
        }
    });
    let ps = d.patterns();
    let p = only(&ps, PatternKind::WeeklyTrend);
    assert!(
        p.detail.contains("more time in range than the week before"),
        "{}",
        p.detail
    );
    assert!(
        p.detail.contains("time in range 100 % (before: 75 %)"),
        "{}",
        p.detail
    );
    // In mmol/L the glucose words follow the person's unit.
    let ps = patterns(&Input {
        points: &d.points,
        treatments: &[],
        tz: &d.tz,
        now_ms: d.start_ms + 28 * DAY,
        low_mgdl: 70.0,
        high_mgdl: 180.0,
        unit: GlucoseUnit::MmolL,
    });
    let highs = only(&ps, PatternKind::RecurringHighs);
    assert!(
        highs.detail.contains("above 10.0 mmol/L"),
        "{}",
        highs.detail
    );
    assert!(
        highs.detail.contains("highest 12.2 mmol/L"),
        "{}",
        highs.detail
    );
}
