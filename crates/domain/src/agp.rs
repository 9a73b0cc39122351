//! The Ambulatory Glucose Profile: percentiles of glucose by time of day, and each day's curve.

use chrono::{TimeZone, Timelike};

use crate::analytics::GlucosePoint;

/// Bins of the day: 288 × 5 minutes.
pub const BINS: usize = 288;
const BIN_MIN: u32 = 5;
/// The percentiles of the consensus AGP.
pub const PERCENTILES: [f64; 5] = [5.0, 25.0, 50.0, 75.0, 95.0];

/// One 5-minute bin of the day (local time): its start minute and the percentiles, or `None`
/// where no reading fell in it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgpBin {
    pub minute: u32,
    pub count: usize,
    /// p5, p25, p50, p75, p95, in mg/dL.
    pub percentiles: Option<[f64; 5]>,
}

/// Percentile `p` (0–100) of sorted values, interpolating linearly between order statistics
/// (Hyndman & Fan type 7, the default of R and NumPy).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * p / 100.0;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// The AGP of `points` in `tz`. With `smoothing` = k > 0, each percentile curve is replaced by
/// its circular moving average over 2k + 1 bins (k = 3 spans 35 minutes), which removes the
/// jitter of sparse bins without moving the curve's shape; 0 leaves the raw percentiles.
pub fn agp<Tz: TimeZone>(points: &[GlucosePoint], tz: &Tz, smoothing: usize) -> Vec<AgpBin> {
    let mut bins: Vec<Vec<f64>> = vec![Vec::new(); BINS];
    for p in points {
        let Some(t) = tz.timestamp_millis_opt(p.utc_ms).single() else {
            continue;
        };
        let minute = t.hour() * 60 + t.minute();
        bins[(minute / BIN_MIN) as usize].push(p.mgdl);
    }
    let mut out: Vec<AgpBin> = bins
        .iter_mut()
        .enumerate()
        .map(|(i, values)| {
            values.sort_by(f64::total_cmp);
            let percentiles = (!values.is_empty())
                .then(|| PERCENTILES.map(|p| percentile(values, p).unwrap_or(f64::NAN)));
            AgpBin {
                minute: i as u32 * BIN_MIN,
                count: values.len(),
                percentiles,
            }
        })
        .collect();
    if smoothing > 0 {
        let raw: Vec<Option<[f64; 5]>> = out.iter().map(|b| b.percentiles).collect();
        for (i, bin) in out.iter_mut().enumerate() {
            if raw[i].is_none() {
                continue;
            }
            let mut sum = [0.0; 5];
            let mut n = 0.0;
            for offset in 0..=2 * smoothing {
                let j = (i + BINS + offset - smoothing) % BINS;
                if let Some(p) = raw[j] {
                    for (s, v) in sum.iter_mut().zip(p) {
                        *s += v;
                    }
                    n += 1.0;
                }
            }
            bin.percentiles = Some(sum.map(|s| s / n));
        }
    }
    out
}

/// Each local calendar day's readings, in time order: the daily overlay of the AGP report.
pub fn daily_profiles<Tz: TimeZone>(
    points: &[GlucosePoint],
    tz: &Tz,
) -> Vec<(chrono::NaiveDate, Vec<GlucosePoint>)> {
    let mut days: std::collections::BTreeMap<chrono::NaiveDate, Vec<GlucosePoint>> =
        Default::default();
    for p in points {
        if let Some(t) = tz.timestamp_millis_opt(p.utc_ms).single() {
            days.entry(t.date_naive()).or_default().push(*p);
        }
    }
    days.into_iter()
        .map(|(d, mut v)| {
            v.sort_by_key(|p| p.utc_ms);
            (d, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIDNIGHT_UTC: i64 = 1_780_012_800_000; // 2026-05-29T00:00:00Z

    #[test]
    fn percentiles_interpolate_like_r_and_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(2.5));
        assert_eq!(percentile(&v, 25.0), Some(1.75));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(4.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn readings_fall_into_their_local_time_of_day_bin() {
        // 10 days of readings at 08:02 local time in Berlin (summer: UTC+2).
        let pts: Vec<_> = (0..10)
            .map(|d| GlucosePoint {
                utc_ms: MIDNIGHT_UTC + d * 86_400_000 + (6 * 60 + 2) * 60_000,
                mgdl: 100.0 + d as f64 * 10.0,
            })
            .collect();
        let profile = agp(&pts, &chrono_tz::Europe::Berlin, 0);
        assert_eq!(profile.len(), BINS);
        let bin = &profile[8 * 12];
        assert_eq!((bin.minute, bin.count), (480, 10));
        let p = bin.percentiles.expect("values");
        assert_eq!(p[2], 145.0);
        assert!((p[0] - 104.5).abs() < 1e-9 && (p[4] - 185.5).abs() < 1e-9);
        assert!(profile.iter().filter(|b| b.count > 0).count() == 1);
    }

    #[test]
    fn whole_day_shifts_do_not_change_the_profile() {
        let pts: Vec<_> = (0..2000)
            .map(|i| GlucosePoint {
                utc_ms: MIDNIGHT_UTC + i * 300_000,
                mgdl: 80.0 + (i % 97) as f64,
            })
            .collect();
        let shifted: Vec<_> = pts
            .iter()
            .map(|p| GlucosePoint {
                utc_ms: p.utc_ms + 7 * 86_400_000,
                ..*p
            })
            .collect();
        assert_eq!(agp(&pts, &chrono::Utc, 3), agp(&shifted, &chrono::Utc, 3));
    }

    #[test]
    fn smoothing_averages_neighbouring_bins_around_midnight() {
        let pts = [0i64, 5, 1435].map(|m| GlucosePoint {
            utc_ms: MIDNIGHT_UTC + m * 60_000,
            mgdl: 100.0 + m as f64 / 5.0,
        });
        let profile = agp(&pts, &chrono::Utc, 1);
        // Bin 0 (00:00) averages bins 287 (23:55, 387), 0 (100) and 1 (101).
        let p = profile[0].percentiles.expect("values");
        assert!((p[2] - (387.0 + 100.0 + 101.0) / 3.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn daily_profiles_follow_local_days() {
        // 23:30 UTC on 2026-05-29 is 01:30 on 2026-05-30 in Berlin.
        let pts = [GlucosePoint {
            utc_ms: MIDNIGHT_UTC + (23 * 60 + 30) * 60_000,
            mgdl: 120.0,
        }];
        let days = daily_profiles(&pts, &chrono_tz::Europe::Berlin);
        assert_eq!(days[0].0.to_string(), "2026-05-30");
    }

    /// Readings every 5 minutes over three whole local days around a clock change.
    fn three_local_days(tz: &chrono_tz::Tz, first: &str) -> Vec<GlucosePoint> {
        use chrono::{NaiveDate, TimeZone};
        let day = NaiveDate::parse_from_str(first, "%Y-%m-%d").expect("date");
        let start = tz
            .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
            .single()
            .expect("unambiguous")
            .timestamp_millis();
        let end = tz
            .from_local_datetime(
                &(day + chrono::Days::new(3))
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight"),
            )
            .single()
            .expect("unambiguous")
            .timestamp_millis();
        (start..end)
            .step_by(300_000)
            .map(|utc_ms| GlucosePoint {
                utc_ms,
                mgdl: 120.0,
            })
            .collect()
    }

    #[test]
    fn clock_changes_skip_or_repeat_the_hour_in_its_bins() {
        for tz in [chrono_tz::Europe::Berlin, chrono_tz::America::New_York] {
            let (spring_day, fall_day) = match tz {
                chrono_tz::Europe::Berlin => ("2026-03-28", "2026-10-24"),
                _ => ("2026-03-07", "2026-10-31"),
            };
            // Spring forward: the middle day has no 02:00–02:55 (it has 23 hours).
            let profile = agp(&three_local_days(&tz, spring_day), &tz, 0);
            for bin in &profile {
                let expected = if (120..180).contains(&bin.minute) {
                    2
                } else {
                    3
                };
                assert_eq!(bin.count, expected, "{tz} {}", bin.minute);
            }
            // Fall back: the middle day has 01:00–01:55 (New York) or 02:00–02:55 (Berlin)
            // twice, and both land in the same time-of-day bins.
            let repeated = match tz {
                chrono_tz::Europe::Berlin => 120..180,
                _ => 60..120,
            };
            let profile = agp(&three_local_days(&tz, fall_day), &tz, 0);
            for bin in &profile {
                let expected = if repeated.contains(&bin.minute) { 4 } else { 3 };
                assert_eq!(bin.count, expected, "{tz} {}", bin.minute);
            }
            let days = daily_profiles(&three_local_days(&tz, fall_day), &tz);
            let lengths: Vec<usize> = days.iter().map(|(_, p)| p.len()).collect();
            assert_eq!(lengths, vec![288, 300, 288], "{tz}");
        }
    }
}
