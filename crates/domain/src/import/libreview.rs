//! Abbott LibreView's CSV export (docs/import-formats-research.md §2).
//!
//! A title row (`Glucose Data,Generated on,…`), a header row, then one row per record, grouped
//! by record type: 0 the sensor's automatic readings (every 15 minutes, Libre 3 every 5),
//! 1 scans, 2 strip (fingerstick) readings, 3 ketones, 4 insulin, 5 food, 6 notes. Columns
//! are the same in every language, so they are read by position; the glucose unit is the one
//! the header names. Times are wall-clock, in the account's date format: day-first or
//! month-first is learnt from the whole file (a first pass), AM/PM meaning month-first when
//! nothing else tells.
//!
//! Scans are skipped: they repeat the sensor's own series (type 0) at the moments the person
//! looked, and counting them too would weigh those moments twice in every statistic.

use std::io::Read;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::csv_rows::{cell, for_each_record};
use super::local_time::LocalTimeResolver;
use super::{
    parse_number, DateOrder, ImportError, ImportOptions, Outcome, ParseSummary, Position, Record,
    Row, Stop,
};
use crate::readings::{NewReading, ReadingKind};
use crate::treatments::{NewTreatment, TreatmentFields};
use crate::{GlucoseMgdl, GlucoseUnit};

const DEVICE: usize = 0;
const TIMESTAMP: usize = 2;
const RECORD_TYPE: usize = 3;
const HISTORIC: usize = 4;
const NON_NUMERIC_RAPID: usize = 6;
const RAPID: usize = 7;
const NON_NUMERIC_FOOD: usize = 8;
const CARBS_GRAMS: usize = 9;
const CARBS_SERVINGS: usize = 10;
const NON_NUMERIC_LONG: usize = 11;
const LONG: usize = 12;
const NOTES: usize = 13;
const STRIP: usize = 14;
const MEAL_INSULIN: usize = 16;
const CORRECTION_INSULIN: usize = 17;
/// The header has 19 columns; older exports fewer, never under this many.
const MIN_HEADER_COLUMNS: usize = 14;

const SERIES_CGM: u8 = 0;
const SERIES_METER: u8 = 1;
const SERIES_TREATMENTS: u8 = 2;

struct State {
    unit: Option<GlucoseUnit>,
    resolver: LocalTimeResolver,
    /// Day/month orders every row so far can be read in (`[day_first, month_first]`).
    possible: [bool; 2],
    twelve_hour: bool,
}

pub fn parse(
    input: impl Read,
    options: &ImportOptions,
    sink: &mut dyn FnMut(Row) -> Result<(), Stop>,
) -> Result<ParseSummary, ImportError> {
    let mut state = State {
        unit: None,
        resolver: LocalTimeResolver::new(options.time_zone),
        possible: [true, true],
        twelve_hour: false,
    };
    let mut data_rows = 0;
    for_each_record(input, |line, record| {
        let position = Position::line(line);
        let Some(unit) = state.unit else {
            if record.len() >= MIN_HEADER_COLUMNS {
                if parse_number(cell(record, RECORD_TYPE)).is_some() {
                    return Err(not_libreview(position));
                }
                state.unit = Some(if cell(record, HISTORIC).contains("mmol") {
                    GlucoseUnit::MmolL
                } else {
                    GlucoseUnit::MgDl
                });
            } else if line > 3 {
                return Err(not_libreview(position));
            }
            // The title row (and a blank line some exports have after it).
            return Ok(());
        };
        data_rows += 1;
        let mut outcomes = Vec::with_capacity(1);
        row(record, position, unit, options, &mut state, &mut outcomes)?;
        for outcome in outcomes {
            sink(Row { position, outcome }).map_err(|Stop| ImportError::Stopped)?;
        }
        Ok(())
    })?;
    if state.unit.is_none() {
        return Err(not_libreview(Position::line(1)));
    }
    Ok(ParseSummary {
        rows: data_rows,
        date_order: Some(options.date_order.unwrap_or_else(|| state.decided_order())),
    })
}

fn not_libreview(position: Position) -> ImportError {
    ImportError::malformed(
        position,
        "this is not a LibreView export: it starts with a title row (Glucose Data,Generated \
         on,…) and then LibreView's header (Device,Serial Number,Device Timestamp,Record \
         Type,…)",
    )
}

impl State {
    fn decided_order(&self) -> DateOrder {
        match self.possible {
            [true, false] => DateOrder::DayFirst,
            [false, true] => DateOrder::MonthFirst,
            _ if self.twelve_hour => DateOrder::MonthFirst,
            _ => DateOrder::DayFirst,
        }
    }

    /// Reads a row's time in the order given, or in the orders still possible.
    fn local_time(
        &mut self,
        text: &str,
        given: Option<DateOrder>,
        position: Position,
    ) -> Result<NaiveDateTime, ImportError> {
        let bad = || {
            ImportError::malformed(
                position,
                format!(
                    "the device timestamp {text:?} is not a date and time like \
                     14-09-2025 21:58 or 09-14-2025 09:58 PM"
                ),
            )
        };
        let parsed = parse_timestamp(text).ok_or_else(bad)?;
        self.twelve_hour |= parsed.twelve_hour;
        if let Some(order) = given {
            return parsed.read(order).ok_or_else(bad);
        }
        let day_first = parsed.read(DateOrder::DayFirst);
        let month_first = parsed.read(DateOrder::MonthFirst);
        let still = [
            self.possible[0] && day_first.is_some(),
            self.possible[1] && month_first.is_some(),
        ];
        if still == [false, false] {
            if day_first.is_none() && month_first.is_none() {
                return Err(bad());
            }
            return Err(ImportError::malformed(
                position,
                format!("the date {text:?} does not fit the day/month order of the rows before it"),
            ));
        }
        self.possible = still;
        let prefer_month_first = still == [false, true] || (still[1] && self.twelve_hour);
        let chosen = if prefer_month_first {
            month_first
        } else {
            day_first
        };
        chosen.ok_or_else(bad)
    }
}

fn row(
    record: &csv::StringRecord,
    position: Position,
    unit: GlucoseUnit,
    options: &ImportOptions,
    state: &mut State,
    out: &mut Vec<Outcome>,
) -> Result<(), ImportError> {
    let record_type = cell(record, RECORD_TYPE);
    let Ok(record_type) = record_type.parse::<u8>() else {
        return Err(ImportError::malformed(
            position,
            format!("the record type {record_type:?} is not a number (0–6)"),
        ));
    };
    let local = state.local_time(cell(record, TIMESTAMP), options.date_order, position)?;
    let device = match cell(record, DEVICE) {
        "" => "FreeStyle Libre".to_owned(),
        d => d
            .chars()
            .take(crate::limits::MAX_SHORT_TEXT_CHARS)
            .collect(),
    };
    let number = |index: usize, what: &str| -> Result<Option<f64>, ImportError> {
        let text = cell(record, index);
        if text.is_empty() {
            return Ok(None);
        }
        parse_number(text).map(Some).ok_or_else(|| {
            ImportError::malformed(position, format!("the {what} {text:?} is not a number"))
        })
    };
    let reading = |state: &mut State, value: f64, kind: ReadingKind| {
        let series = if kind == ReadingKind::Cgm {
            SERIES_CGM
        } else {
            SERIES_METER
        };
        let time = state.resolver.resolve(local, series, None);
        let checked = GlucoseMgdl::from_unit(value, unit)
            .and_then(|v| time.check_event_time("time", options.now_ms).map(|()| v));
        match checked {
            Ok(value) => Outcome::Record(Record::Reading(NewReading {
                time,
                value,
                kind,
                trend: None,
                device: device.clone(),
                extra: None,
            })),
            Err(e) => Outcome::Skipped(e.message),
        }
    };
    let treatment = |state: &mut State, fields: TreatmentFields<'_>| {
        let time = state.resolver.resolve(local, SERIES_TREATMENTS, None);
        let time_text = time.to_rfc3339_local();
        let fields = TreatmentFields {
            time: &time_text,
            ..fields
        };
        match NewTreatment::validate(&fields, options.now_ms) {
            Ok(t) => Outcome::Record(Record::Treatment(t)),
            Err(e) => Outcome::Skipped(format!("{}: {}", e.field, e.message)),
        }
    };
    match record_type {
        0 => match number(HISTORIC, "historic glucose")? {
            Some(v) => {
                let outcome = reading(state, v, ReadingKind::Cgm);
                out.push(outcome);
            }
            None => out.push(Outcome::Skipped("a sensor reading without a value".into())),
        },
        1 => out.push(Outcome::Skipped(
            "a scan: the sensor's own readings (record type 0) hold its series".into(),
        )),
        2 => match number(STRIP, "strip glucose")? {
            Some(v) => {
                let outcome = reading(state, v, ReadingKind::Meter);
                out.push(outcome);
            }
            None => out.push(Outcome::Skipped("a strip reading without a value".into())),
        },
        3 => out.push(Outcome::Skipped("ketone values are not stored".into())),
        4 => {
            let rapid = match number(RAPID, "rapid-acting insulin")? {
                Some(units) => Some(units),
                None => {
                    let meal = number(MEAL_INSULIN, "meal insulin")?;
                    let correction = number(CORRECTION_INSULIN, "correction insulin")?;
                    match (meal, correction) {
                        (None, None) => None,
                        (m, c) => Some(m.unwrap_or(0.0) + c.unwrap_or(0.0)),
                    }
                }
            };
            let long = number(LONG, "long-acting insulin")?;
            if let Some(units) = rapid {
                out.push(treatment(
                    state,
                    TreatmentFields {
                        kind: "insulin",
                        units: Some(units),
                        insulin_type: Some("bolus"),
                        ..Default::default()
                    },
                ));
            }
            if let Some(units) = long {
                out.push(treatment(
                    state,
                    TreatmentFields {
                        kind: "insulin",
                        units: Some(units),
                        insulin_type: Some("basal"),
                        ..Default::default()
                    },
                ));
            }
            if rapid.is_none() && long.is_none() {
                let logged = !cell(record, NON_NUMERIC_RAPID).is_empty()
                    || !cell(record, NON_NUMERIC_LONG).is_empty();
                out.push(Outcome::Skipped(if logged {
                    "insulin logged without an amount".into()
                } else {
                    "an insulin row without an amount".into()
                }));
            }
        }
        5 => match number(CARBS_GRAMS, "carbohydrates")? {
            Some(grams) => out.push(treatment(
                state,
                TreatmentFields {
                    kind: "carbs",
                    grams: Some(grams),
                    ..Default::default()
                },
            )),
            None if !cell(record, CARBS_SERVINGS).is_empty() => out.push(Outcome::Skipped(
                "carbohydrates in servings, not grams".into(),
            )),
            None if !cell(record, NON_NUMERIC_FOOD).is_empty() => {
                out.push(Outcome::Skipped("food logged without an amount".into()))
            }
            None => out.push(Outcome::Skipped("a food row without an amount".into())),
        },
        6 if cell(record, NOTES).is_empty() => out.push(Outcome::Skipped("an empty note".into())),
        6 => {}
        other => out.push(Outcome::Skipped(format!(
            "record type {other} is not imported"
        ))),
    }
    // A note can ride on any row.
    let note = cell(record, NOTES);
    if !note.is_empty() {
        out.push(treatment(
            state,
            TreatmentFields {
                kind: "note",
                text: Some(note),
                ..Default::default()
            },
        ));
    }
    Ok(())
}

/// A timestamp split into its numbers, before the day/month order is known.
struct ParsedStamp {
    /// `[a, b, c]` of the date as written; `year_first` when `a` is the year.
    date: [u32; 3],
    year_first: bool,
    time: NaiveTime,
    twelve_hour: bool,
}

impl ParsedStamp {
    fn read(&self, order: DateOrder) -> Option<NaiveDateTime> {
        let [a, b, c] = self.date;
        let (y, m, d) = if self.year_first {
            (a, b, c)
        } else {
            match order {
                DateOrder::DayFirst => (c, b, a),
                DateOrder::MonthFirst => (c, a, b),
            }
        };
        let y = if y < 100 { y + 2000 } else { y };
        NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d).map(|date| date.and_time(self.time))
    }
}

/// `14-09-2025 21:58`, `09-14-2025 09:58 PM`, `2025-09-14 21:58`, `14/09/2025 21:58:30`,
/// `14.09.2025 21:58`.
fn parse_timestamp(text: &str) -> Option<ParsedStamp> {
    let text = text.trim();
    let (date_text, rest) = text.split_once(|c: char| c.is_whitespace())?;
    let mut numbers = date_text.split(['-', '/', '.']);
    let mut date = [0u32; 3];
    let mut widths = [0usize; 3];
    for (slot, width) in date.iter_mut().zip(widths.iter_mut()) {
        let part = numbers.next()?;
        if part.is_empty() || part.len() > 4 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
        *width = part.len();
    }
    if numbers.next().is_some() {
        return None;
    }
    let year_first = widths[0] == 4;
    // Without the year first, it comes last: four digits, or two (`25`).
    if !(year_first || widths[2] == 4 || widths[2] == 2) {
        return None;
    }
    let rest = rest.trim().to_ascii_uppercase();
    let (clock, meridiem) = if let Some(clock) = rest.strip_suffix("AM") {
        (clock.trim(), Some(false))
    } else if let Some(clock) = rest.strip_suffix("PM") {
        (clock.trim(), Some(true))
    } else {
        (rest.as_str(), None)
    };
    let mut parts = clock.split(':');
    let hour: u32 = parts.next()?.parse().ok()?;
    let minute: u32 = parts.next()?.parse().ok()?;
    let second: u32 = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    let hour = match meridiem {
        None => hour,
        Some(_) if !(1..=12).contains(&hour) => return None,
        Some(false) => hour % 12,
        Some(true) => hour % 12 + 12,
    };
    Some(ParsedStamp {
        date,
        year_first,
        time: NaiveTime::from_hms_opt(hour, minute, second)?,
        twelve_hour: meridiem.is_some(),
    })
}
