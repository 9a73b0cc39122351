//! Dexcom Clarity's CSV export (docs/import-formats-research.md §1).
//!
//! A header row, then rows without a timestamp that describe the export (the person's name,
//! devices, alert settings), then events: `EGV` (a sensor reading), `Calibration` (a
//! fingerstick), `Insulin` (`Fast-Acting` / `Long-Acting`), `Carbs`, `Exercise`, `Health`.
//! Times are wall-clock without an offset; rows are sorted by them. Columns are found by
//! name (older exports have fewer); glucose is in the unit the header names.

use std::collections::HashMap;
use std::io::Read;

use chrono::NaiveDateTime;

use super::csv_rows::{cell, for_each_record};
use super::local_time::LocalTimeResolver;
use super::{
    parse_number, ImportError, ImportOptions, Outcome, ParseSummary, Position, Record, Row, Stop,
};
use crate::readings::{NewReading, ReadingKind};
use crate::treatments::{NewTreatment, TreatmentFields};
use crate::{GlucoseMgdl, GlucoseUnit};

/// The sensor's limits: Clarity writes `Low` below 40 mg/dL and `High` above 400. Such a
/// reading is stored at the limit, marked `{"out_of_range": "low"|"high"}`, so time below
/// and above range count it.
pub const LOW_MGDL: f64 = 40.0;
pub const HIGH_MGDL: f64 = 400.0;

const SERIES_CGM: u8 = 0;
const SERIES_METER: u8 = 1;
const SERIES_TREATMENTS: u8 = 2;

struct Columns {
    timestamp: usize,
    event_type: usize,
    event_subtype: Option<usize>,
    source_device: Option<usize>,
    glucose: usize,
    unit: GlucoseUnit,
    insulin: Option<usize>,
    carbs: Option<usize>,
    duration: Option<usize>,
    transmitter_time: Option<usize>,
    transmitter_id: Option<usize>,
}

impl Columns {
    fn from_header(record: &csv::StringRecord) -> Option<Self> {
        let find = |prefix: &str| (0..record.len()).find(|&i| cell(record, i).starts_with(prefix));
        let glucose = find("Glucose Value")?;
        let unit = if cell(record, glucose).contains("mmol") {
            GlucoseUnit::MmolL
        } else {
            GlucoseUnit::MgDl
        };
        Some(Columns {
            timestamp: find("Timestamp")?,
            event_type: find("Event Type")?,
            event_subtype: find("Event Subtype"),
            source_device: find("Source Device ID"),
            glucose,
            unit,
            insulin: find("Insulin Value"),
            carbs: find("Carb Value"),
            duration: find("Duration"),
            transmitter_time: find("Transmitter Time"),
            transmitter_id: find("Transmitter ID"),
        })
    }
}

pub fn parse(
    input: impl Read,
    options: &ImportOptions,
    sink: &mut dyn FnMut(Row) -> Result<(), Stop>,
) -> Result<ParseSummary, ImportError> {
    let mut columns: Option<Columns> = None;
    let mut resolver = LocalTimeResolver::new(options.time_zone);
    // Per transmitter, the last reading's (transmitter seconds, instant): the transmitter's
    // clock runs straight through daylight-saving changes, so it places the repeated hour.
    let mut transmitter_clock: HashMap<String, (i64, i64)> = HashMap::new();
    let rows = for_each_record(input, |line, record| {
        let position = Position::line(line);
        let Some(columns) = &columns else {
            columns = Some(Columns::from_header(record).ok_or_else(|| {
                ImportError::malformed(
                    position,
                    "this is not a Dexcom Clarity export: its first row must be Clarity's \
                     header (Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,…)",
                )
            })?);
            return Ok(());
        };
        let outcome = row(
            columns,
            record,
            position,
            options,
            &mut resolver,
            &mut transmitter_clock,
        )?;
        sink(Row { position, outcome }).map_err(|Stop| ImportError::Stopped)
    })?;
    if columns.is_none() {
        return Err(ImportError::malformed(
            Position::line(1),
            "the file is empty: a Dexcom Clarity export starts with its header row",
        ));
    }
    Ok(ParseSummary {
        rows: rows.saturating_sub(1),
        date_order: None,
    })
}

fn row(
    columns: &Columns,
    record: &csv::StringRecord,
    position: Position,
    options: &ImportOptions,
    resolver: &mut LocalTimeResolver,
    transmitter_clock: &mut HashMap<String, (i64, i64)>,
) -> Result<Outcome, ImportError> {
    let get = |i: Option<usize>| i.map(|i| cell(record, i)).unwrap_or("");
    let event_type = cell(record, columns.event_type);
    let subtype = get(columns.event_subtype);
    let stamp = cell(record, columns.timestamp);
    if stamp.is_empty() {
        return Ok(skip(format!(
            "a row describing the export ({}), not an event",
            short(event_type)
        )));
    }
    let local = parse_local(stamp).ok_or_else(|| {
        ImportError::malformed(
            position,
            format!("the timestamp {stamp:?} is not a date and time like 2025-10-21T06:02:19"),
        )
    })?;
    let malformed = |message: String| ImportError::malformed(position, message);
    let device = match get(columns.source_device) {
        "" => "Dexcom".to_owned(),
        d => d
            .chars()
            .take(crate::limits::MAX_SHORT_TEXT_CHARS)
            .collect(),
    };
    let outcome = match event_type {
        "EGV" | "Calibration" => {
            let cgm = event_type == "EGV";
            let value_cell = cell(record, columns.glucose);
            let (mgdl, marker) = match (value_cell, cgm) {
                ("Low", true) => (LOW_MGDL, Some("low")),
                ("High", true) => (HIGH_MGDL, Some("high")),
                ("Low" | "High", false) => {
                    return Ok(skip(format!(
                        "a calibration reading {value_cell}, not a number"
                    )))
                }
                _ => {
                    let value = parse_number(value_cell).ok_or_else(|| {
                        malformed(format!(
                            "the glucose value {value_cell:?} is not a number, Low or High"
                        ))
                    })?;
                    match GlucoseMgdl::from_unit(value, columns.unit) {
                        Ok(v) => (v.mgdl(), None),
                        Err(e) => return Ok(skip(e.message)),
                    }
                }
            };
            let expected = if cgm {
                expected_instant(columns, record, transmitter_clock)
            } else {
                None
            };
            let series = if cgm { SERIES_CGM } else { SERIES_METER };
            let time = resolver.resolve(local, series, expected);
            if let Err(e) = time.check_event_time("time", options.now_ms) {
                return Ok(skip(e.message));
            }
            if cgm {
                remember_clock(columns, record, transmitter_clock, time.utc_ms);
            }
            Outcome::Record(Record::Reading(NewReading {
                time,
                value: GlucoseMgdl::from_stored(mgdl),
                kind: if cgm {
                    ReadingKind::Cgm
                } else {
                    ReadingKind::Meter
                },
                trend: None,
                device,
                extra: marker.map(|m| format!(r#"{{"out_of_range":"{m}"}}"#)),
            }))
        }
        "Insulin" | "Carbs" | "Exercise" | "Health" => {
            let time = resolver.resolve(local, SERIES_TREATMENTS, None);
            let time_text = time.to_rfc3339_local();
            let mut fields = TreatmentFields {
                time: &time_text,
                kind: "",
                ..Default::default()
            };
            let note;
            match event_type {
                "Insulin" => {
                    fields.kind = "insulin";
                    fields.insulin_type = Some(match subtype {
                        "Long-Acting" => "basal",
                        _ => "bolus",
                    });
                    fields.units = amount(get(columns.insulin), "insulin", &malformed)?;
                    if fields.units.is_none() {
                        return Ok(skip("insulin without an amount".into()));
                    }
                }
                "Carbs" => {
                    fields.kind = "carbs";
                    fields.grams = amount(get(columns.carbs), "carbohydrate", &malformed)?;
                    if fields.grams.is_none() {
                        return Ok(skip("carbohydrates without an amount".into()));
                    }
                }
                "Exercise" => {
                    fields.kind = "exercise";
                    let duration = get(columns.duration);
                    if duration.is_empty() {
                        return Ok(skip("exercise without a duration".into()));
                    }
                    fields.minutes = Some(duration_minutes(duration).ok_or_else(|| {
                        malformed(format!(
                            "the duration {duration:?} is not hh:mm:ss, e.g. 00:30:00"
                        ))
                    })?);
                    fields.intensity = match subtype {
                        "Light" => Some("low"),
                        "Medium" => Some("moderate"),
                        "Heavy" => Some("high"),
                        _ => None,
                    };
                }
                _ => {
                    fields.kind = "note";
                    note = if subtype.is_empty() {
                        "Health".to_owned()
                    } else {
                        format!("Health: {subtype}")
                    };
                    fields.text = Some(&note);
                }
            }
            match NewTreatment::validate(&fields, options.now_ms) {
                Ok(t) => Outcome::Record(Record::Treatment(t)),
                Err(e) => skip(format!("{}: {}", e.field, e.message)),
            }
        }
        other => skip(format!("an event of type {} is not imported", short(other))),
    };
    Ok(outcome)
}

fn skip(reason: String) -> Outcome {
    Outcome::Skipped(reason)
}

/// A cell's text for a message, at most 40 characters.
fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

fn amount(
    cell: &str,
    what: &str,
    malformed: &dyn Fn(String) -> ImportError,
) -> Result<Option<f64>, ImportError> {
    if cell.is_empty() {
        return Ok(None);
    }
    parse_number(cell)
        .map(Some)
        .ok_or_else(|| malformed(format!("the {what} amount {cell:?} is not a number")))
}

/// `2025-10-21T06:02:19`, with a space instead of the `T`, or without seconds.
pub(crate) fn parse_local(s: &str) -> Option<NaiveDateTime> {
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

fn duration_minutes(s: &str) -> Option<f64> {
    let mut parts = s.split(':').map(|p| p.trim().parse::<u32>().ok());
    let (h, m, sec) = (
        parts.next()??,
        parts.next()??,
        parts.next().unwrap_or(Some(0))?,
    );
    if parts.next().is_some() || m > 59 || sec > 59 {
        return None;
    }
    Some(f64::from(h * 60 + m) + f64::from(sec) / 60.0)
}

fn transmitter(columns: &Columns, record: &csv::StringRecord) -> Option<(String, i64)> {
    let id = cell(record, columns.transmitter_id?);
    let seconds = cell(record, columns.transmitter_time?).parse().ok()?;
    (!id.is_empty()).then(|| (id.to_owned(), seconds))
}

fn expected_instant(
    columns: &Columns,
    record: &csv::StringRecord,
    clock: &HashMap<String, (i64, i64)>,
) -> Option<i64> {
    let (id, seconds) = transmitter(columns, record)?;
    let (last_seconds, last_ms) = clock.get(&id)?;
    Some(last_ms + (seconds - last_seconds) * 1000)
}

fn remember_clock(
    columns: &Columns,
    record: &csv::StringRecord,
    clock: &mut HashMap<String, (i64, i64)>,
    utc_ms: i64,
) {
    if let Some((id, seconds)) = transmitter(columns, record) {
        clock.insert(id, (seconds, utc_ms));
    }
}
