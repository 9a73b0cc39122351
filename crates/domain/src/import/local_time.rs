//! Vendor exports (Clarity, LibreView) write wall-clock times without a UTC offset: the
//! person's local time as the device showed it. This turns them into instants in a time zone,
//! including the two hours a year where wall-clock time is ambiguous or skipped.

use std::collections::HashSet;

use chrono::offset::LocalResult;
use chrono::{NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use crate::Timestamp;

/// Resolves a file's local times in one time zone.
///
/// In the autumn hour that happens twice a time has two instants. Exports are not in instant
/// order (Clarity sorts by wall-clock time, so the two hours interleave; LibreView groups rows
/// by record type), so the row's neighbours cannot decide. Instead:
/// - when the caller can say roughly when the row happened (Clarity's transmitter clock
///   counts seconds straight through the change), the nearer instant is taken;
/// - otherwise the first row with a given wall-clock time (in one series) is the first hour
///   and a second row with the same time the second hour: a sensor's 5- or 15-minute cadence
///   repeats the same minutes in both hours.
///
/// In the spring hour that never happens, the device's clock had not yet been put forward:
/// the time is read with the offset that held just before the change.
#[derive(Debug, Clone)]
pub struct LocalTimeResolver {
    tz: Tz,
    /// Wall-clock times already met in an ambiguous hour, by series.
    seen_ambiguous: HashSet<(u8, NaiveDateTime)>,
}

impl LocalTimeResolver {
    pub fn new(tz: Tz) -> Self {
        Self {
            tz,
            seen_ambiguous: HashSet::new(),
        }
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The instant of `local` for a row of `series` (any small number the caller uses to keep
    /// its kinds of rows apart), near `expected_utc_ms` when the caller knows roughly when.
    pub fn resolve(
        &mut self,
        local: NaiveDateTime,
        series: u8,
        expected_utc_ms: Option<i64>,
    ) -> Timestamp {
        let offset_seconds = match self.tz.offset_from_local_datetime(&local) {
            LocalResult::Single(offset) => offset.fix().local_minus_utc(),
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.fix().local_minus_utc(), b.fix().local_minus_utc());
                // The larger offset is the earlier instant.
                let (earlier, later) = if a > b { (a, b) } else { (b, a) };
                match expected_utc_ms {
                    Some(expected) => {
                        let off_by = |offset| (utc_ms(local, offset) - expected).abs();
                        if off_by(later) < off_by(earlier) {
                            later
                        } else {
                            earlier
                        }
                    }
                    None if self.seen_ambiguous.insert((series, local)) => earlier,
                    None => later,
                }
            }
            LocalResult::None => {
                // Gaps are at most a few hours long; three hours earlier is before this one.
                let before = local - chrono::Duration::hours(3);
                self.tz
                    .offset_from_local_datetime(&before)
                    .earliest()
                    .map(|offset| offset.fix().local_minus_utc())
                    .unwrap_or(0)
            }
        };
        Timestamp {
            utc_ms: utc_ms(local, offset_seconds),
            offset_minutes: (offset_seconds / 60) as i16,
        }
    }
}

fn utc_ms(local: NaiveDateTime, offset_seconds: i32) -> i64 {
    local.and_utc().timestamp_millis() - i64::from(offset_seconds) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_opt(h, min, 0))
            .expect("valid date")
    }

    fn berlin() -> LocalTimeResolver {
        LocalTimeResolver::new("Europe/Berlin".parse().expect("known zone"))
    }

    #[test]
    fn an_ordinary_time_takes_the_zone_offset() {
        let t = berlin().resolve(local(2026, 1, 15, 8, 0), 0, None);
        assert_eq!(t.to_rfc3339_utc(), "2026-01-15T07:00:00.000Z");
        assert_eq!(t.offset_minutes, 60);
        let summer = berlin().resolve(local(2026, 7, 15, 8, 0), 0, None);
        assert_eq!(summer.to_rfc3339_utc(), "2026-07-15T06:00:00.000Z");
        assert_eq!(summer.offset_minutes, 120);
    }

    #[test]
    fn the_repeated_autumn_hour_sorted_by_wall_clock_gives_each_reading_its_own_instant() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00–02:59 happens twice. A 15-minute
        // sensor, sorted by wall-clock time as the vendors do, shows every time twice.
        let mut resolver = berlin();
        let mut instants: Vec<String> = [(1, 45), (2, 0), (2, 0), (2, 15), (2, 15), (3, 0)]
            .iter()
            .map(|&(h, m)| {
                resolver
                    .resolve(local(2026, 10, 25, h, m), 0, None)
                    .to_rfc3339_utc()
            })
            .collect();
        instants.sort();
        assert_eq!(
            instants,
            [
                "2026-10-24T23:45:00.000Z",
                "2026-10-25T00:00:00.000Z",
                "2026-10-25T00:15:00.000Z",
                "2026-10-25T01:00:00.000Z",
                "2026-10-25T01:15:00.000Z",
                "2026-10-25T02:00:00.000Z",
            ]
        );
        // Another series (treatments, say) has its own first hour.
        let carbs = resolver.resolve(local(2026, 10, 25, 2, 0), 1, None);
        assert_eq!(carbs.to_rfc3339_utc(), "2026-10-25T00:00:00.000Z");
    }

    #[test]
    fn an_expected_instant_picks_the_nearer_hour() {
        let mut resolver = berlin();
        let second_hour = resolver.resolve(
            local(2026, 10, 25, 2, 10),
            0,
            Some(1_792_890_000_000 + 9 * 60_000), // 2026-10-25T01:09Z
        );
        assert_eq!(second_hour.to_rfc3339_utc(), "2026-10-25T01:10:00.000Z");
        assert_eq!(second_hour.offset_minutes, 60);
    }

    #[test]
    fn the_skipped_spring_hour_reads_with_the_offset_before_the_change() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 never happens on the wall.
        let t = berlin().resolve(local(2026, 3, 29, 2, 30), 0, None);
        assert_eq!(t.to_rfc3339_utc(), "2026-03-29T01:30:00.000Z");
        assert_eq!(t.offset_minutes, 60);
    }
}
