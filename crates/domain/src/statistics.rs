//! Descriptive statistics per local calendar day and per hour of day, data sufficiency, and
//! treatment totals. Days are the person's local days: a DST day has 23 or 25 hours.

use chrono::{Datelike, NaiveDate, TimeZone, Timelike};

use crate::agp::percentile;
use crate::analytics::{bands, mean, sd, Bands, GlucosePoint};
use crate::treatments::{InsulinType, Treatment, TreatmentDetail};

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub count: usize,
    pub mean: f64,
    pub sd: Option<f64>,
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
    pub bands: Bands,
}

pub fn stats(values: &[f64]) -> Option<Stats> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Stats {
        count: sorted.len(),
        mean: mean(&sorted)?,
        sd: sd(&sorted),
        min: *sorted.first()?,
        q1: percentile(&sorted, 25.0)?,
        median: percentile(&sorted, 50.0)?,
        q3: percentile(&sorted, 75.0)?,
        max: *sorted.last()?,
        bands: bands(&sorted),
    })
}

/// One local calendar day.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub date: NaiveDate,
    /// 24, or 23 / 25 on the days the clocks change.
    pub hours: f64,
    pub stats: Stats,
}

/// Length of a local day in hours (from its midnight to the next).
pub fn day_hours<Tz: TimeZone>(date: NaiveDate, tz: &Tz) -> f64 {
    let start = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .and_then(|m| tz.from_local_datetime(&m).earliest())
            .map(|t| t.timestamp())
    };
    match (start(date), date.succ_opt().and_then(start)) {
        (Some(a), Some(b)) => (b - a) as f64 / 3600.0,
        _ => 24.0,
    }
}

/// Statistics of each local day that has readings, in date order.
pub fn daily<Tz: TimeZone>(points: &[GlucosePoint], tz: &Tz) -> Vec<Day> {
    let mut days: std::collections::BTreeMap<NaiveDate, Vec<f64>> = Default::default();
    for p in points {
        if let Some(t) = tz.timestamp_millis_opt(p.utc_ms).single() {
            days.entry(t.date_naive()).or_default().push(p.mgdl);
        }
    }
    days.into_iter()
        .filter_map(|(date, values)| {
            Some(Day {
                date,
                hours: day_hours(date, tz),
                stats: stats(&values)?,
            })
        })
        .collect()
}

/// Statistics per local hour of day (0–23) over the whole period; `None` for hours without data.
pub fn hourly<Tz: TimeZone>(points: &[GlucosePoint], tz: &Tz) -> Vec<Option<Stats>> {
    let mut hours: Vec<Vec<f64>> = vec![Vec::new(); 24];
    for p in points {
        if let Some(t) = tz.timestamp_millis_opt(p.utc_ms).single() {
            hours[t.hour() as usize].push(p.mgdl);
        }
    }
    hours.iter().map(|v| stats(v)).collect()
}

/// How much of a period the sensor covered (consensus: at least 70 % of 14 days).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sufficiency {
    /// The readings a sensor would have delivered over the period, one per interval.
    pub expected: usize,
    /// Readings present, as a share of `expected`, %.
    pub active_percent: f64,
    /// Local days with at least one reading.
    pub days_with_data: usize,
    /// The period is at least 14 days and at least 70 % of it has data.
    pub sufficient: bool,
}

/// `interval_ms`: the sensor's reading interval (5 minutes for most CGMs).
pub fn sufficiency<Tz: TimeZone>(
    points: &[GlucosePoint],
    from_ms: i64,
    to_ms: i64,
    interval_ms: i64,
    tz: &Tz,
) -> Sufficiency {
    let expected = ((to_ms - from_ms).max(0) / interval_ms.max(1)) as usize;
    let active_percent = if expected == 0 {
        0.0
    } else {
        (100.0 * points.len() as f64 / expected as f64).min(100.0)
    };
    let days_with_data = points
        .iter()
        .filter_map(|p| tz.timestamp_millis_opt(p.utc_ms).single())
        .map(|t| (t.year(), t.ordinal()))
        .collect::<std::collections::HashSet<_>>()
        .len();
    Sufficiency {
        expected,
        active_percent,
        days_with_data,
        sufficient: to_ms - from_ms >= 14 * 86_400_000 && active_percent >= 70.0,
    }
}

/// Insulin and carbohydrate totals of a period, and per day of it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TreatmentTotals {
    pub days: f64,
    pub bolus_units: f64,
    /// Basal injections plus what pump basal rates delivered within the period.
    pub basal_units: f64,
    pub carbs_grams: f64,
}

impl TreatmentTotals {
    pub fn per_day(&self, total: f64) -> f64 {
        if self.days > 0.0 {
            total / self.days
        } else {
            0.0
        }
    }
}

/// Totals over `[from_ms, to_ms)`. A pump basal rate runs for its `minutes` or until the next
/// rate starts, whichever is first; only the part inside the period counts.
pub fn treatment_totals(treatments: &[Treatment], from_ms: i64, to_ms: i64) -> TreatmentTotals {
    let mut t = TreatmentTotals {
        days: (to_ms - from_ms).max(0) as f64 / 86_400_000.0,
        ..Default::default()
    };
    let mut rates: Vec<(i64, f64, f64)> = Vec::new();
    for tr in treatments {
        let inside = tr.time.utc_ms >= from_ms && tr.time.utc_ms < to_ms;
        match &tr.detail {
            TreatmentDetail::Insulin {
                units,
                insulin_type: InsulinType::Bolus,
                ..
            } if inside => t.bolus_units += units,
            TreatmentDetail::Insulin {
                units,
                insulin_type: InsulinType::Basal,
                ..
            } if inside => t.basal_units += units,
            TreatmentDetail::Carbs { grams } if inside => t.carbs_grams += grams,
            TreatmentDetail::BasalRate {
                units_per_hour,
                minutes,
            } => rates.push((tr.time.utc_ms, *units_per_hour, *minutes)),
            _ => {}
        }
    }
    rates.sort_by_key(|r| r.0);
    for (i, &(start, uph, minutes)) in rates.iter().enumerate() {
        let mut end = start + (minutes * 60_000.0) as i64;
        if let Some(next) = rates.get(i + 1) {
            end = end.min(next.0);
        }
        let (a, b) = (start.max(from_ms), end.min(to_ms));
        if b > a {
            t.basal_units += uph * (b - a) as f64 / 3_600_000.0;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn every_5_min(from_ms: i64, to_ms: i64) -> Vec<GlucosePoint> {
        (0..)
            .map(|i| from_ms + i * 300_000)
            .take_while(|t| *t < to_ms)
            .map(|utc_ms| GlucosePoint {
                utc_ms,
                mgdl: 120.0,
            })
            .collect()
    }

    fn utc(s: &str) -> i64 {
        Timestamp::parse_rfc3339("t", s).expect("time").utc_ms
    }

    #[test]
    fn dst_days_have_23_and_25_hours_in_berlin_and_new_york() {
        for (tz, spring, autumn) in [
            (chrono_tz::Europe::Berlin, "2026-03-29", "2026-10-25"),
            (chrono_tz::America::New_York, "2026-03-08", "2026-11-01"),
        ] {
            let pts = every_5_min(utc("2026-01-01T00:00:00Z"), utc("2026-12-31T00:00:00Z"));
            let days = daily(&pts, &tz);
            let find = |d: &str| {
                days.iter()
                    .find(|x| x.date.to_string() == d)
                    .expect("day")
                    .clone()
            };
            let (s, a) = (find(spring), find(autumn));
            assert_eq!((s.hours, s.stats.count), (23.0, 23 * 12), "{tz} spring");
            assert_eq!((a.hours, a.stats.count), (25.0, 25 * 12), "{tz} autumn");
            let ordinary = find("2026-06-15");
            assert_eq!((ordinary.hours, ordinary.stats.count), (24.0, 288));
        }
    }

    #[test]
    fn a_person_who_changes_time_zone_gets_days_in_the_zone_asked_for() {
        // The same readings viewed from Tokyo fall on other local days than from UTC.
        let pts = every_5_min(utc("2026-06-01T00:00:00Z"), utc("2026-06-02T00:00:00Z"));
        assert_eq!(daily(&pts, &chrono::Utc).len(), 1);
        let tokyo = daily(&pts, &chrono_tz::Asia::Tokyo);
        assert_eq!(
            tokyo.iter().map(|d| d.stats.count).collect::<Vec<_>>(),
            vec![180, 108]
        );
    }

    #[test]
    fn quartiles_and_hours() {
        let s = stats(&[40.0, 100.0, 120.0, 300.0]).expect("stats");
        assert_eq!(
            (s.min, s.q1, s.median, s.q3, s.max),
            (40.0, 85.0, 110.0, 165.0, 300.0)
        );
        let pts = every_5_min(utc("2026-06-01T00:00:00Z"), utc("2026-06-03T00:00:00Z"));
        let h = hourly(&pts, &chrono::Utc);
        assert_eq!(h.len(), 24);
        assert!(h.iter().all(|s| s.as_ref().is_some_and(|s| s.count == 24)));
        assert!(stats(&[]).is_none());
    }

    #[test]
    fn sufficiency_follows_the_consensus_rule() {
        let from = utc("2026-06-01T00:00:00Z");
        let to = from + 14 * 86_400_000;
        let full = every_5_min(from, to);
        let s = sufficiency(&full, from, to, 300_000, &chrono::Utc);
        assert_eq!(
            (s.expected, s.active_percent, s.days_with_data, s.sufficient),
            (4032, 100.0, 14, true)
        );
        // A sensor warm-up and a lost day: 9 days of 14 is 64 %.
        let partial: Vec<_> = full
            .iter()
            .filter(|p| p.utc_ms < from + 9 * 86_400_000)
            .copied()
            .collect();
        let s = sufficiency(&partial, from, to, 300_000, &chrono::Utc);
        assert!(!s.sufficient && (s.active_percent - 64.29).abs() < 0.01);
        assert!(
            !sufficiency(&full[..288], from, from + 86_400_000, 300_000, &chrono::Utc).sufficient,
            "a single day is never enough"
        );
    }

    #[test]
    fn basal_rates_run_until_the_next_one_and_are_clipped_to_the_period() {
        let t = |h: i64, detail| Treatment {
            id: format!("t{h}"),
            time: Timestamp::from_utc_ms(h * 3_600_000),
            detail,
            extra: None,
            created_ms: 0,
            updated_ms: 0,
        };
        let treatments = vec![
            t(
                0,
                TreatmentDetail::BasalRate {
                    units_per_hour: 1.0,
                    minutes: 1440.0,
                },
            ),
            t(
                6,
                TreatmentDetail::BasalRate {
                    units_per_hour: 0.5,
                    minutes: 120.0,
                },
            ),
            t(
                7,
                TreatmentDetail::Insulin {
                    units: 4.0,
                    insulin_type: InsulinType::Bolus,
                    insulin_name: None,
                },
            ),
            t(8, TreatmentDetail::Carbs { grams: 45.0 }),
            t(30, TreatmentDetail::Carbs { grams: 99.0 }),
        ];
        let totals = treatment_totals(&treatments, 0, 24 * 3_600_000);
        // 6 h × 1.0 + 2 h × 0.5, then nothing until the next rate (none): 7 U of basal.
        assert_eq!(
            (
                totals.basal_units,
                totals.bolus_units,
                totals.carbs_grams,
                totals.days
            ),
            (7.0, 4.0, 45.0, 1.0)
        );
    }
}
