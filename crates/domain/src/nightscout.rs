//! Nightscout's data model mapped onto GlucoSync's (docs/nightscout.md).
//!
//! Nightscout entries and treatments are GlucoSync readings and treatments: an sgv from xDrip+
//! is the same reading the PWA shows and the alerts watch. What GlucoSync does not model is
//! kept, as a JSON object beside the record (`extra`), and given back, so uploaders find their
//! own fields again. Entries that are not glucose readings (calibrations, sensor error codes)
//! and the collections GlucoSync does not model (devicestatus, profile, food, settings) are
//! kept as documents, whole.
//!
//! Pure: parsing, mapping and filtering, no I/O.

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::ValidationError;
use crate::limits::{MAX_CLIENT_ID_CHARS, MAX_SHORT_TEXT_CHARS};
use crate::readings::{NewReading, Reading, ReadingKind, TrendDirection};
use crate::time::Timestamp;
use crate::treatments::{InsulinType, NewTreatment, Treatment, TreatmentDetail};
use crate::units::{GlucoseMgdl, GlucoseUnit};

pub type Object = Map<String, Value>;

/// Fields the server computes or owns: never stored in `extra`, never taken from a client.
const SERVER_FIELDS: [&str; 6] = [
    "_id",
    "srvModified",
    "srvCreated",
    "mills",
    "secret",
    "token",
];

/// What an uploaded entry is.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryUpload {
    /// A CGM (`sgv`) or meter (`mbg`) glucose value GlucoSync stores as a reading.
    Reading(NewReading),
    /// Anything else with a time (a calibration, an sgv carrying a sensor error code), kept
    /// whole as a document with this id (stable for the same type and time, which is
    /// Nightscout's duplicate rule).
    Other {
        id: String,
        time_ms: i64,
        body: Object,
    },
}

/// Reads one uploaded entry. Fails only when it has no usable time (or one in the future).
pub fn entry_from_upload(entry: &Object, now_ms: i64) -> Result<EntryUpload, ValidationError> {
    let time = upload_time(
        entry,
        &["date", "dateString", "sysTime", "created_at"],
        now_ms,
    )?
    .ok_or_else(|| {
        ValidationError::new("date", "is required (epoch milliseconds, or dateString)")
    })?;
    let kind_name = entry.get("type").and_then(Value::as_str).unwrap_or(
        if entry.contains_key("mbg") && !entry.contains_key("sgv") {
            "mbg"
        } else {
            "sgv"
        },
    );
    let (kind, value_field) = match kind_name {
        "sgv" => (Some(ReadingKind::Cgm), "sgv"),
        "mbg" => (Some(ReadingKind::Meter), "mbg"),
        _ => (None, ""),
    };
    let value = kind.and_then(|_| number(entry.get(value_field)?));
    let glucose = value.and_then(|v| GlucoseMgdl::from_unit(v, GlucoseUnit::MgDl).ok());
    let (Some(kind), Some(value)) = (kind, glucose) else {
        let mut body = without(entry, &SERVER_FIELDS);
        body.insert("type".into(), kind_name.into());
        body.insert("date".into(), time.utc_ms.into());
        return Ok(EntryUpload::Other {
            id: derived_id(&[kind_name, &time.utc_ms.to_string()]),
            time_ms: time.utc_ms,
            body,
        });
    };
    let trend = entry
        .get("direction")
        .and_then(Value::as_str)
        .and_then(parse_direction);
    let device = entry
        .get("device")
        .and_then(Value::as_str)
        .map(short_text)
        .unwrap_or_default();
    let modelled = [
        "type",
        value_field,
        "date",
        "dateString",
        "sysTime",
        "utcOffset",
        "direction",
        "device",
        "delta",
    ];
    let extra = without(&without(entry, &SERVER_FIELDS), &modelled);
    Ok(EntryUpload::Reading(NewReading {
        time,
        value,
        kind,
        trend,
        device,
        extra: (!extra.is_empty()).then(|| Value::Object(extra).to_string()),
    }))
}

/// A reading as a Nightscout entry. `delta` is the change from the previous reading in
/// mg/dL (py-nightscout, Home Assistant's client, needs a number on every sgv: 0 when there
/// is no recent previous reading).
pub fn entry_json(reading: &Reading, delta: Option<f64>) -> Object {
    let mut out = extra_object(reading.extra.as_deref());
    let date_string = local_iso(&reading.time);
    out.insert("_id".into(), reading_object_id(reading.id).into());
    match reading.kind {
        ReadingKind::Cgm => {
            out.insert("type".into(), "sgv".into());
            out.insert("sgv".into(), rounded(reading.value.mgdl()));
            out.insert("delta".into(), json!(round2(delta.unwrap_or(0.0))));
            if let Some(trend) = reading.trend {
                out.insert("direction".into(), trend.as_str().into());
            }
        }
        ReadingKind::Meter => {
            out.insert("type".into(), "mbg".into());
            out.insert("mbg".into(), rounded(reading.value.mgdl()));
        }
    }
    out.insert("date".into(), reading.time.utc_ms.into());
    out.insert("mills".into(), reading.time.utc_ms.into());
    out.insert("dateString".into(), date_string.clone().into());
    out.insert("sysTime".into(), date_string.into());
    out.insert("utcOffset".into(), reading.time.offset_minutes.into());
    if !reading.device.is_empty() {
        out.insert("device".into(), reading.device.clone().into());
    }
    out
}

/// A document kept for an entry that is not a reading, as an entry.
pub fn other_entry_json(id: &str, body: &str) -> Object {
    let mut out = extra_object(Some(body));
    out.insert("_id".into(), id.into());
    if let Some(date) = out.get("date").and_then(Value::as_i64) {
        let t = Timestamp::from_utc_ms(date);
        out.insert("mills".into(), date.into());
        out.entry("dateString")
            .or_insert_with(|| t.to_rfc3339_utc().into());
    }
    out
}

/// Readings' `_id`s look like MongoDB ObjectIds (24 hex digits), as clients expect.
pub fn reading_object_id(id: i64) -> String {
    format!("{id:024x}")
}

/// The reading id in an entry `_id`, if it is one.
pub fn parse_reading_object_id(id: &str) -> Option<i64> {
    (id.len() == 24)
        .then(|| i64::from_str_radix(id, 16).ok())
        .flatten()
}

/// Nightscout's direction names, and Loop's spelling of "not computable".
fn parse_direction(s: &str) -> Option<TrendDirection> {
    match s {
        "NotComputable" => Some(TrendDirection::NotComputable),
        "RateOutOfRange" => Some(TrendDirection::RateOutOfRange),
        other => TrendDirection::parse(other),
    }
}

/// One uploaded treatment as GlucoSync treatments: usually one; a Nightscout treatment with
/// both insulin and carbs (a "Meal Bolus" from a careportal) is two, the insulin first, the
/// carbs with the id `<id>.carbs`. The first one's id is the `_id` Nightscout clients get.
pub fn treatment_from_upload(
    t: &Object,
    now_ms: i64,
) -> Result<Vec<NewTreatment>, ValidationError> {
    let time = match upload_time(t, &["created_at", "timestamp", "date", "mills"], now_ms)? {
        Some(time) => time,
        // Trio's connection check sends a note without any time: it happened now.
        None => Timestamp::from_utc_ms(now_ms),
    };
    let event_type = t
        .get("eventType")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty() && *e != "<none>");
    let positive = |field: &str| number(t.get(field)?).filter(|v| *v > 0.0);
    let insulin = positive("insulin");
    let carbs = positive("carbs");
    let duration = number_field(t, "duration").filter(|v| *v > 0.0);
    let rate = number_field(t, "absolute").or_else(|| number_field(t, "rate"));
    let notes = t
        .get("notes")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty());
    let mut modelled: Vec<&str> = vec![
        "created_at",
        "timestamp",
        "date",
        "utcOffset",
        "insulin",
        "carbs",
    ];
    let mut details = Vec::new();
    if let Some(units) = insulin {
        details.push(TreatmentDetail::Insulin {
            units: in_range("insulin", units, 100.0)?,
            insulin_type: InsulinType::Bolus,
            insulin_name: None,
        });
    }
    if let Some(grams) = carbs {
        details.push(TreatmentDetail::Carbs {
            grams: in_range("carbs", grams, 500.0)?,
        });
    }
    if details.is_empty() {
        let detail = match (event_type, rate, duration) {
            (Some("Temp Basal"), Some(rate), Some(minutes)) => {
                modelled.extend(["absolute", "rate", "duration"]);
                TreatmentDetail::BasalRate {
                    units_per_hour: in_range_from_zero("absolute", rate, 50.0)?,
                    minutes: in_range("duration", minutes, 1440.0)?,
                }
            }
            (Some("Exercise"), _, Some(minutes)) => {
                modelled.push("duration");
                TreatmentDetail::Exercise {
                    minutes: in_range("duration", minutes, 1440.0)?,
                    intensity: None,
                }
            }
            (_, _, _) => match notes {
                Some(text) => {
                    modelled.push("notes");
                    TreatmentDetail::Note {
                        text: truncate(text, crate::limits::MAX_NOTE_CHARS),
                    }
                }
                // Site changes, sensor starts, temporary targets, profile switches: shown
                // as a note naming the event; their fields stay with it.
                None => TreatmentDetail::Note {
                    text: event_type.unwrap_or("Nightscout treatment").to_owned(),
                },
            },
        };
        details.push(detail);
    }
    let extra = without(&without(t, &SERVER_FIELDS), &modelled);
    let id = treatment_id(t, &time, event_type);
    let extra = Some(Value::Object(extra).to_string());
    Ok(details
        .into_iter()
        .enumerate()
        .map(|(i, detail)| NewTreatment {
            id: if i == 0 {
                id.clone()
            } else {
                format!("{id}.carbs")
            },
            time,
            detail,
            extra: extra.clone(),
        })
        .collect())
}

/// The client's own identifier, in Nightscout's order of preference, else one derived from
/// `created_at` and `eventType` (Nightscout's fallback duplicate rule).
fn treatment_id(t: &Object, time: &Timestamp, event_type: Option<&str>) -> String {
    let text = |field: &str| match t.get(field)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let pump = match (text("pumpId"), text("pumpType"), text("pumpSerial")) {
        (Some(id), Some(kind), Some(serial)) => Some(format!("{kind}:{serial}:{id}")),
        _ => None,
    };
    let client_id = text("identifier")
        .or_else(|| text("syncIdentifier"))
        .or_else(|| text("uuid"))
        .or(pump)
        .or_else(|| text("id"))
        .or_else(|| text("_id"));
    match client_id {
        Some(id) if crate::treatments::check_client_id(&id).is_ok() => id,
        Some(id) => derived_id(&["client", &id]),
        None => derived_id(&[
            "created",
            &time.utc_ms.to_string(),
            event_type.unwrap_or(""),
        ]),
    }
}

/// A treatment as Nightscout clients read it.
pub fn treatment_json(t: &Treatment) -> Object {
    let mut out = extra_object(t.extra.as_deref());
    out.insert("_id".into(), t.id.clone().into());
    let event_type = out
        .get("eventType")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let default_event = match &t.detail {
        TreatmentDetail::Insulin { .. } => "Correction Bolus",
        TreatmentDetail::Carbs { .. } => "Carb Correction",
        TreatmentDetail::Exercise { .. } => "Exercise",
        TreatmentDetail::Note { .. } => "Note",
        TreatmentDetail::BasalRate { .. } => "Temp Basal",
    };
    match &t.detail {
        TreatmentDetail::Insulin {
            units,
            insulin_type,
            insulin_name,
        } => {
            out.insert("insulin".into(), json!(units));
            if *insulin_type == InsulinType::Basal && event_type.is_none() {
                out.insert("notes".into(), "basal insulin".into());
            }
            if let Some(name) = insulin_name {
                out.entry("insulinType")
                    .or_insert_with(|| name.clone().into());
            }
        }
        TreatmentDetail::Carbs { grams } => {
            out.insert("carbs".into(), json!(grams));
        }
        TreatmentDetail::Exercise { minutes, .. } => {
            out.insert("duration".into(), json!(minutes));
        }
        TreatmentDetail::Note { text } => {
            // A note made from an event without notes repeats the event's name: not a note.
            if event_type.as_deref() != Some(text.as_str()) {
                out.insert("notes".into(), text.clone().into());
            }
        }
        TreatmentDetail::BasalRate {
            units_per_hour,
            minutes,
        } => {
            out.insert("absolute".into(), json!(units_per_hour));
            out.entry("rate").or_insert_with(|| json!(units_per_hour));
            out.insert("duration".into(), json!(minutes));
        }
    }
    out.entry("eventType")
        .or_insert_with(|| default_event.into());
    out.entry("enteredBy").or_insert_with(|| "GlucoSync".into());
    out.insert("created_at".into(), t.time.to_rfc3339_utc().into());
    out.insert("date".into(), t.time.utc_ms.into());
    out.insert("mills".into(), t.time.utc_ms.into());
    out.insert("utcOffset".into(), t.time.offset_minutes.into());
    out
}

/// A document of a collection GlucoSync keeps whole (devicestatus, profile, food, settings):
/// its id (the client's, else derived from its content's time fields) and time.
pub fn document_from_upload(
    doc: &Object,
    time_fields: &[&str],
    now_ms: i64,
) -> Result<(String, i64, Object), ValidationError> {
    let time = upload_time(doc, time_fields, now_ms)?
        .map(|t| t.utc_ms)
        .unwrap_or(now_ms);
    let body = without(doc, &SERVER_FIELDS);
    let id = ["identifier", "_id"]
        .iter()
        .filter_map(|f| doc.get(*f).and_then(Value::as_str))
        .find(|id| crate::treatments::check_client_id(id).is_ok())
        .map(str::to_owned)
        .unwrap_or_else(|| derived_id(&["doc", &Value::Object(body.clone()).to_string()]));
    Ok((id, time, body))
}

/// A stored document as Nightscout clients read it: with `_id`, and `created_at` (which
/// py-nightscout sorts devicestatus by) when the uploader sent none.
pub fn document_json(id: &str, time_ms: i64, body: &str) -> Object {
    let mut out = extra_object(Some(body));
    out.insert("_id".into(), id.into());
    out.entry("created_at")
        .or_insert_with(|| Timestamp::from_utc_ms(time_ms).to_rfc3339_utc().into());
    out.insert("mills".into(), time_ms.into());
    out
}

// ---- device status (pump, phone, loop), for the dashboard

/// What the dashboard shows of a looping system's or uploader's status: the newest value of
/// each field among recent device status documents (a phone, a pump and a loop report
/// separately).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceStatusSummary {
    /// The newest document's time (epoch ms).
    pub updated_ms: i64,
    /// Insulin left in the pump, units.
    pub pump_reservoir_units: Option<f64>,
    /// What a pump shows instead of a number (Omnipod DASH: "50+U").
    pub pump_reservoir_text: Option<String>,
    pub pump_battery_percent: Option<f64>,
    pub pump_suspended: Option<bool>,
    /// The uploading phone's battery.
    pub uploader_battery_percent: Option<f64>,
    /// Insulin on board, units, and carbs on board, grams, as the loop computed them.
    pub iob_units: Option<f64>,
    pub cob_grams: Option<f64>,
    /// `Loop`, `Trio`, `AAPS`, `OpenAPS`.
    pub loop_name: Option<String>,
    /// When the loop last ran (epoch ms).
    pub loop_ms: Option<i64>,
    /// The loop's glucose prediction: mg/dL every 5 minutes from `predicted_start_ms`.
    pub predicted_mgdl: Option<Vec<f64>>,
    pub predicted_start_ms: Option<i64>,
}

impl DeviceStatusSummary {
    /// Folds documents given newest first, each with its time.
    pub fn from_documents<'a>(docs: impl IntoIterator<Item = (i64, &'a Object)>) -> Option<Self> {
        let mut summary: Option<Self> = None;
        for (time_ms, doc) in docs {
            let s = summary.get_or_insert_with(|| DeviceStatusSummary {
                updated_ms: time_ms,
                ..Default::default()
            });
            s.absorb(doc);
        }
        summary
    }

    fn absorb(&mut self, d: &Object) {
        let at = |path: &[&str]| -> Option<&Value> {
            let mut v = d.get(path[0])?;
            for p in &path[1..] {
                v = v.get(p)?;
            }
            Some(v)
        };
        let num = |path: &[&str]| at(path).and_then(number);
        let text = |path: &[&str]| at(path).and_then(Value::as_str).map(short_text);
        let time = |path: &[&str]| {
            at(path).and_then(|v| match v {
                Value::Number(n) => n.as_f64().map(|ms| ms as i64),
                Value::String(s) => parse_time_text(s).map(|t| t.utc_ms),
                _ => None,
            })
        };
        fill(&mut self.pump_reservoir_units, num(&["pump", "reservoir"]));
        fill(
            &mut self.pump_reservoir_text,
            text(&["pump", "reservoir_display_override"]),
        );
        fill(
            &mut self.pump_battery_percent,
            num(&["pump", "battery", "percent"]),
        );
        fill(
            &mut self.pump_suspended,
            at(&["pump", "suspended"])
                .and_then(Value::as_bool)
                .or_else(|| at(&["pump", "status", "suspended"]).and_then(Value::as_bool)),
        );
        let phone_battery = match at(&["uploader", "type"]).and_then(Value::as_str) {
            // A transmitter's "battery" is days left, not a phone's percentage.
            Some("DEXCOM_TRANSMITTER") => None,
            _ => num(&["uploader", "battery"]).or_else(|| num(&["uploaderBattery"])),
        };
        fill(&mut self.uploader_battery_percent, phone_battery);
        if d.contains_key("loop") {
            fill(
                &mut self.loop_name,
                text(&["loop", "name"]).or(Some("Loop".into())),
            );
            fill(&mut self.iob_units, num(&["loop", "iob", "iob"]));
            fill(&mut self.cob_grams, num(&["loop", "cob", "cob"]));
            fill(&mut self.loop_ms, time(&["loop", "timestamp"]));
            if self.predicted_mgdl.is_none() {
                if let Some(values) = at(&["loop", "predicted", "values"]).and_then(Value::as_array)
                {
                    self.predicted_mgdl = Some(values.iter().filter_map(number).collect());
                    self.predicted_start_ms = time(&["loop", "predicted", "startDate"]);
                }
            }
        }
        if d.contains_key("openaps") {
            let name = match d.get("app").and_then(Value::as_str) {
                Some("AAPS") => "AAPS".to_owned(),
                _ => "OpenAPS".to_owned(),
            };
            fill(&mut self.loop_name, Some(name));
            fill(
                &mut self.iob_units,
                num(&["openaps", "iob", "iob"]).or_else(|| num(&["openaps", "suggested", "IOB"])),
            );
            fill(&mut self.cob_grams, num(&["openaps", "suggested", "COB"]));
            fill(
                &mut self.loop_ms,
                time(&["openaps", "enacted", "timestamp"])
                    .or_else(|| time(&["openaps", "suggested", "timestamp"])),
            );
            if self.predicted_mgdl.is_none() {
                let preds = ["COB", "UAM", "IOB", "ZT"].iter().find_map(|k| {
                    at(&["openaps", "suggested", "predBGs", k]).and_then(Value::as_array)
                });
                if let Some(values) = preds {
                    self.predicted_mgdl = Some(values.iter().filter_map(number).collect());
                    self.predicted_start_ms = time(&["openaps", "suggested", "deliverAt"])
                        .or_else(|| time(&["openaps", "suggested", "timestamp"]));
                }
            }
        }
    }
}

fn fill<T>(slot: &mut Option<T>, value: Option<T>) {
    if slot.is_none() {
        *slot = value;
    }
}

// ---- queries

/// A comparison of a `find[field][$op]=value` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
    Exists,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FindFilter {
    pub field: String,
    pub op: FindOp,
    pub value: String,
}

/// Parses the `find[...]` parameters of a v1 query; other parameters are ignored.
pub fn find_filters<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<FindFilter>, ValidationError> {
    let mut filters = Vec::new();
    for (key, value) in params {
        let Some(rest) = key.strip_prefix("find[") else {
            continue;
        };
        let bad = || ValidationError::new(key, "must look like find[field] or find[field][$op]");
        let (field, rest) = rest.split_once(']').ok_or_else(bad)?;
        let op = match rest {
            "" => FindOp::Eq,
            _ => match rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                Some("$eq") => FindOp::Eq,
                Some("$ne") => FindOp::Ne,
                Some("$gt") => FindOp::Gt,
                Some("$gte") => FindOp::Gte,
                Some("$lt") => FindOp::Lt,
                Some("$lte") => FindOp::Lte,
                Some("$in") => FindOp::In,
                Some("$nin") => FindOp::Nin,
                Some("$exists") => FindOp::Exists,
                Some(other) => {
                    return Err(ValidationError::new(
                        key,
                        format!("the operator {other} is not supported"),
                    ))
                }
                None => return Err(bad()),
            },
        };
        if field.is_empty() {
            return Err(bad());
        }
        filters.push(FindFilter {
            field: field.to_owned(),
            op,
            value: value.to_owned(),
        });
    }
    Ok(filters)
}

/// The time window `[from, to)` in epoch ms that the time filters among `filters` allow:
/// what the store is asked for before the other filters apply.
pub fn time_window(filters: &[FindFilter], time_fields: &[&str]) -> (i64, i64) {
    let mut window = (i64::MIN, i64::MAX);
    for f in filters
        .iter()
        .filter(|f| time_fields.contains(&f.field.as_str()))
    {
        let Some(ms) = time_value(&f.value) else {
            continue;
        };
        match f.op {
            FindOp::Gt => window.0 = window.0.max(ms.saturating_add(1)),
            FindOp::Gte => window.0 = window.0.max(ms),
            FindOp::Lt => window.1 = window.1.min(ms),
            FindOp::Lte => window.1 = window.1.min(ms.saturating_add(1)),
            FindOp::Eq => {
                window.0 = window.0.max(ms);
                window.1 = window.1.min(ms.saturating_add(1));
            }
            _ => {}
        }
    }
    window
}

/// Whether a record (in its Nightscout form) passes every filter. Numbers compare as numbers,
/// times (ISO strings or epoch ms) as instants, anything else as text.
pub fn matches(record: &Object, filters: &[FindFilter]) -> bool {
    filters.iter().all(|f| {
        let value = record.get(&f.field).filter(|v| !v.is_null());
        match f.op {
            FindOp::Exists => value.is_some() == (f.value != "false" && f.value != "0"),
            FindOp::In => value.is_some_and(|v| list(&f.value).any(|x| equal(v, x))),
            FindOp::Nin => !value.is_some_and(|v| list(&f.value).any(|x| equal(v, x))),
            FindOp::Ne => !value.is_some_and(|v| equal(v, &f.value)),
            FindOp::Eq => value.is_some_and(|v| equal(v, &f.value)),
            op => value.is_some_and(|v| {
                compare(v, &f.value).is_some_and(|o| match op {
                    FindOp::Gt => o.is_gt(),
                    FindOp::Gte => o.is_ge(),
                    FindOp::Lt => o.is_lt(),
                    _ => o.is_le(),
                })
            }),
        }
    })
}

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(['|', ','])
}

fn equal(v: &Value, s: &str) -> bool {
    compare(v, s).is_some_and(|o| o.is_eq())
}

fn compare(v: &Value, s: &str) -> Option<std::cmp::Ordering> {
    match v {
        Value::Number(n) => {
            let a = n.as_f64()?;
            let b = s
                .parse::<f64>()
                .ok()
                .or_else(|| time_value(s).map(|t| t as f64))?;
            a.partial_cmp(&b)
        }
        Value::String(a) => match (parse_time_text(a), time_value(s)) {
            (Some(a), Some(b)) if !s.is_empty() => Some(a.utc_ms.cmp(&b)),
            _ => Some(a.as_str().cmp(s)),
        },
        Value::Bool(b) => Some(b.to_string().as_str().cmp(s)),
        _ => None,
    }
}

/// A time given in a filter: epoch ms, or an ISO date (with or without a time).
fn time_value(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<f64>() {
        return Some(n as i64);
    }
    if let Some(t) = parse_time_text(s) {
        return Some(t.utc_ms);
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

/// Entries in the five columns of Nightscout's text and CSV forms.
pub fn entry_row(entry: &Object, separator: char) -> String {
    ["dateString", "date", "sgv", "direction", "device"]
        .iter()
        .map(|f| match entry.get(*f) {
            Some(Value::String(s)) => s.replace(['\t', '\n', ','], " "),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join(&separator.to_string())
}

// ---- helpers

/// The time of an upload from the first of `fields` present: epoch ms (a number, possibly
/// fractional, or a numeric string) or an ISO 8601 time (`Z`, `+01:00` or `+0100`, with or
/// without fractions). A `utcOffset` (minutes) field gives the offset of an epoch time.
fn upload_time(
    o: &Object,
    fields: &[&str],
    now_ms: i64,
) -> Result<Option<Timestamp>, ValidationError> {
    let Some((field, value)) = fields
        .iter()
        .find_map(|f| o.get(*f).filter(|v| !v.is_null()).map(|v| (*f, v)))
    else {
        return Ok(None);
    };
    let offset = number_field(o, "utcOffset")
        .filter(|m| m.abs() < 24.0 * 60.0)
        .map(|m| m as i16);
    let bad = || {
        ValidationError::new(
            field,
            "must be a time: epoch milliseconds or ISO 8601 with a time zone",
        )
    };
    let time = match value {
        Value::Number(n) => epoch(n.as_f64().ok_or_else(bad)?, offset).ok_or_else(bad)?,
        Value::String(s) => match s.parse::<f64>() {
            Ok(ms) => epoch(ms, offset).ok_or_else(bad)?,
            Err(_) => parse_time_text(s).ok_or_else(bad)?,
        },
        _ => return Err(bad()),
    };
    time.check_event_time(field, now_ms)?;
    Ok(Some(time))
}

fn epoch(ms: f64, offset: Option<i16>) -> Option<Timestamp> {
    (ms.is_finite() && ms.abs() < 1e15).then(|| Timestamp {
        utc_ms: ms as i64,
        offset_minutes: offset.unwrap_or(0),
    })
}

/// ISO 8601 with a zone: RFC 3339, or Java's `+0100` form.
fn parse_time_text(s: &str) -> Option<Timestamp> {
    let dt = DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()?;
    Some(Timestamp {
        utc_ms: dt.timestamp_millis(),
        offset_minutes: (dt.offset().local_minus_utc() / 60) as i16,
    })
}

/// The time in the offset it was recorded with, as xDrip+ and Nightscout write dateString.
fn local_iso(t: &Timestamp) -> String {
    let offset = FixedOffset::east_opt(i32::from(t.offset_minutes) * 60)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
    match offset.timestamp_millis_opt(t.utc_ms).single() {
        Some(dt) if t.offset_minutes != 0 => dt.to_rfc3339_opts(SecondsFormat::Millis, false),
        _ => Utc
            .timestamp_millis_opt(t.utc_ms)
            .single()
            .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_default(),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

fn number_field(o: &Object, field: &str) -> Option<f64> {
    number(o.get(field)?)
}

fn in_range(field: &str, v: f64, max: f64) -> Result<f64, ValidationError> {
    if v > 0.0 && v <= max {
        Ok(v)
    } else {
        Err(ValidationError::new(
            field,
            format!("must be more than 0 and at most {max}"),
        ))
    }
}

fn in_range_from_zero(field: &str, v: f64, max: f64) -> Result<f64, ValidationError> {
    if (0.0..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ValidationError::new(
            field,
            format!("must be between 0 and {max}"),
        ))
    }
}

/// Whole mg/dL as an integer (Nightscout clients parse sgv as an integer); others as they are.
fn rounded(mgdl: f64) -> Value {
    if mgdl.fract() == 0.0 {
        json!(mgdl as i64)
    } else {
        json!(mgdl)
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn without(o: &Object, fields: &[&str]) -> Object {
    o.iter()
        .filter(|(k, _)| !fields.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn extra_object(extra: Option<&str>) -> Object {
    extra
        .and_then(|e| serde_json::from_str::<Object>(e).ok())
        .unwrap_or_default()
}

fn short_text(s: &str) -> String {
    truncate(s, MAX_SHORT_TEXT_CHARS)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// A stable 24-hex id (shaped like a MongoDB ObjectId) from `parts`.
fn derived_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let id = hex::encode(&h.finalize()[..12]);
    debug_assert!(id.len() <= MAX_CLIENT_ID_CHARS);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_780_000_000; // 2026-11-27T11:46:40Z

    fn obj(v: Value) -> Object {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn an_xdrip_sgv_becomes_a_reading_and_keeps_its_own_fields() {
        let e = obj(
            json!({"device": "xDrip-DexcomG6", "date": 1795774500000_i64,
            "dateString": "2026-11-27T11:15:00.000+0100", "sgv": 114, "delta": -1.5,
            "direction": "Flat", "type": "sgv", "filtered": 114117.6, "noise": 1,
            "sysTime": "2026-11-27T11:15:00.000+0100", "_id": "ignored"}),
        );
        let EntryUpload::Reading(r) = entry_from_upload(&e, NOW).expect("valid") else {
            panic!("a reading")
        };
        assert_eq!(r.time.utc_ms, 1795774500000);
        assert_eq!(r.value.mgdl(), 114.0);
        assert_eq!(r.trend, Some(TrendDirection::Flat));
        assert_eq!(r.device, "xDrip-DexcomG6");
        let extra: Value = serde_json::from_str(r.extra.as_deref().expect("extra")).expect("valid");
        assert_eq!(extra, json!({"filtered": 114117.6, "noise": 1}));
        let stored = Reading {
            id: 42,
            time: r.time,
            value: r.value,
            kind: r.kind,
            trend: r.trend,
            device: r.device.clone(),
            extra: r.extra.clone(),
            created_ms: NOW,
        };
        let out = entry_json(&stored, Some(-1.5));
        assert_eq!(out["_id"], "00000000000000000000002a");
        assert_eq!(out["sgv"], 114);
        assert_eq!(out["delta"], -1.5);
        assert_eq!(out["filtered"], 114117.6);
        assert_eq!(out["dateString"], "2026-11-27T10:15:00.000Z");
        assert_eq!(
            parse_reading_object_id("00000000000000000000002a"),
            Some(42)
        );
    }

    #[test]
    fn times_come_in_every_form_clients_use() {
        for (field, value, ms) in [
            ("date", json!(1795774500105.5488), 1795774500105_i64),
            ("date", json!("1795774500000"), 1795774500000),
            ("dateString", json!("2026-11-27T10:15:00Z"), 1795774500000),
            (
                "dateString",
                json!("2026-11-27T11:15:00.000+0100"),
                1795774500000,
            ),
            (
                "dateString",
                json!("2026-11-27T11:15:00+01:00"),
                1795774500000,
            ),
        ] {
            let e = obj(json!({ field: value, "sgv": 100 }));
            let EntryUpload::Reading(r) = entry_from_upload(&e, NOW).expect("valid") else {
                panic!()
            };
            assert_eq!(r.time.utc_ms, ms, "{field} {value}");
        }
        let future = obj(json!({"date": NOW + 3_600_000, "sgv": 100}));
        assert!(entry_from_upload(&future, NOW).is_err());
        assert!(entry_from_upload(&obj(json!({"sgv": 100})), NOW).is_err());
        assert!(entry_from_upload(&obj(json!({"date": "yesterday", "sgv": 1})), NOW).is_err());
    }

    #[test]
    fn calibrations_and_sensor_error_codes_are_kept_as_documents() {
        let cal = obj(json!({"type": "cal", "date": 1795774500000_i64, "slope": 1000.0}));
        let EntryUpload::Other { id, time_ms, body } = entry_from_upload(&cal, NOW).expect("valid")
        else {
            panic!()
        };
        assert_eq!((time_ms, id.len()), (1795774500000, 24));
        assert_eq!(body["slope"], 1000.0);
        let error_code = obj(json!({"type": "sgv", "date": 1795774500000_i64, "sgv": 5}));
        assert!(matches!(
            entry_from_upload(&error_code, NOW),
            Ok(EntryUpload::Other { .. })
        ));
    }

    #[test]
    fn treatments_map_to_kinds_and_identifiers_in_nightscouts_order() {
        let loop_carbs = obj(json!({"eventType": "Carb Correction", "carbs": 30,
            "created_at": "2026-11-27T10:00:00Z", "syncIdentifier": "abc-1", "absorptionTime": 180}));
        let t = treatment_from_upload(&loop_carbs, NOW).expect("valid");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].id, "abc-1");
        assert_eq!(t[0].detail, TreatmentDetail::Carbs { grams: 30.0 });
        let aaps = obj(
            json!({"eventType": "Correction Bolus", "insulin": 0.4, "date": 1795774500000_i64,
            "pumpId": 4711, "pumpType": "ACCU_CHEK_COMBO", "pumpSerial": "SN1", "utcOffset": 60}),
        );
        let t = treatment_from_upload(&aaps, NOW).expect("valid");
        assert_eq!(t[0].id, "ACCU_CHEK_COMBO:SN1:4711");
        assert_eq!(t[0].time.offset_minutes, 60);
        let meal = obj(json!({"eventType": "Meal Bolus", "insulin": 4, "carbs": 40,
            "created_at": "2026-11-27T10:00:00.000Z"}));
        let t = treatment_from_upload(&meal, NOW).expect("valid");
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].id, format!("{}.carbs", t[0].id));
        // The same event without identifiers gets the same id from created_at + eventType.
        assert_eq!(
            treatment_from_upload(&meal, NOW).expect("valid")[0].id,
            t[0].id
        );
        let xdrip_insulin = obj(json!({"eventType": "<none>", "insulin": 2.5, "carbs": 0,
            "created_at": "2026-11-27T10:00:00Z", "uuid": "5f1c"}));
        let t = treatment_from_upload(&xdrip_insulin, NOW).expect("valid");
        assert_eq!(t.len(), 1, "carbs 0 is no carb entry");
        let temp = obj(
            json!({"eventType": "Temp Basal", "absolute": 0, "rate": 0, "duration": 30,
            "reason": "suspend", "created_at": "2026-11-27T10:00:00Z"}),
        );
        let t = treatment_from_upload(&temp, NOW).expect("valid");
        assert_eq!(
            t[0].detail,
            TreatmentDetail::BasalRate {
                units_per_hour: 0.0,
                minutes: 30.0
            }
        );
        let site = obj(json!({"eventType": "Site Change", "created_at": "2026-11-27T10:00:00Z"}));
        let t = treatment_from_upload(&site, NOW).expect("valid");
        assert_eq!(
            t[0].detail,
            TreatmentDetail::Note {
                text: "Site Change".into()
            }
        );
        let trio_check = obj(json!({"eventType": "Note", "notes": "Trio connected"}));
        let t = treatment_from_upload(&trio_check, NOW).expect("valid");
        assert_eq!(t[0].time.utc_ms, NOW);
        let too_much = obj(json!({"insulin": 250, "created_at": "2026-11-27T10:00:00Z"}));
        assert_eq!(
            treatment_from_upload(&too_much, NOW)
                .expect_err("invalid")
                .field,
            "insulin"
        );
    }

    #[test]
    fn treatments_read_back_with_the_uploaders_fields() {
        let site = obj(json!({"eventType": "Site Change", "enteredBy": "Loop",
            "created_at": "2026-11-27T10:00:00Z", "syncIdentifier": "s1"}));
        let t = treatment_from_upload(&site, NOW).expect("valid").remove(0);
        let stored = Treatment {
            id: t.id,
            time: t.time,
            detail: t.detail,
            extra: t.extra,
            created_ms: NOW,
            updated_ms: NOW,
        };
        let out = treatment_json(&stored);
        assert_eq!(out["eventType"], "Site Change");
        assert_eq!(out["enteredBy"], "Loop");
        assert_eq!(out["syncIdentifier"], "s1");
        assert_eq!(out["_id"], "s1");
        assert_eq!(out["created_at"], "2026-11-27T10:00:00.000Z");
        assert!(!out.contains_key("notes"));
    }

    #[test]
    fn device_status_folds_loop_aaps_and_phone_documents() {
        let loop_doc = obj(
            json!({"device": "loop://iPhone", "pump": {"reservoir_display_override": "50+U", "suspended": false},
            "uploader": {"battery": 64}, "loop": {"name": "Loop", "timestamp": "2026-11-27T10:00:30Z",
            "iob": {"iob": 1.42}, "cob": {"cob": 32.5},
            "predicted": {"startDate": "2026-11-27T10:00:00Z", "values": [114, 115.2, 116.9]}}}),
        );
        let transmitter =
            obj(json!({"uploader": {"battery": "57 days", "type": "DEXCOM_TRANSMITTER"}}));
        let s = DeviceStatusSummary::from_documents([(2, &transmitter), (1, &loop_doc)])
            .expect("a summary");
        assert_eq!(s.updated_ms, 2);
        assert_eq!(s.pump_reservoir_text.as_deref(), Some("50+U"));
        assert_eq!((s.iob_units, s.cob_grams), (Some(1.42), Some(32.5)));
        assert_eq!(
            s.uploader_battery_percent,
            Some(64.0),
            "not the transmitter's days"
        );
        assert_eq!(s.predicted_mgdl, Some(vec![114.0, 115.2, 116.9]));
        assert_eq!(s.predicted_start_ms, Some(1795773600000));
        let aaps = obj(
            json!({"app": "AAPS", "uploaderBattery": 71, "pump": {"reservoir": 87.3, "battery": {"percent": 40}},
            "openaps": {"suggested": {"COB": 12.0, "IOB": 1.4, "timestamp": "2026-11-27T10:00:03.000Z",
            "predBGs": {"IOB": [114, 113], "COB": [114, 117]}}, "iob": {"iob": 1.45}}}),
        );
        let s = DeviceStatusSummary::from_documents([(5, &aaps)]).expect("a summary");
        assert_eq!(s.loop_name.as_deref(), Some("AAPS"));
        assert_eq!((s.iob_units, s.cob_grams), (Some(1.45), Some(12.0)));
        assert_eq!(
            (s.pump_reservoir_units, s.pump_battery_percent),
            (Some(87.3), Some(40.0))
        );
        assert_eq!(s.uploader_battery_percent, Some(71.0));
        assert_eq!(s.predicted_mgdl, Some(vec![114.0, 117.0]));
        assert_eq!(DeviceStatusSummary::from_documents([]), None);
    }

    #[test]
    fn find_filters_select_like_nightscout() {
        let q = [
            ("find[sgv][$gte]", "100"),
            ("find[type]", "sgv"),
            ("find[dateString][$gt]", "2026-11-27T10:00:00.000Z"),
            ("count", "5"),
        ];
        let f = find_filters(q.iter().copied()).expect("valid");
        assert_eq!(f.len(), 3);
        let window = time_window(&f, &["date", "dateString"]);
        assert_eq!(window, (1795773600000 + 1, i64::MAX));
        let e = obj(json!({"sgv": 120, "type": "sgv", "dateString": "2026-11-27T10:05:00.000Z"}));
        assert!(matches(&e, &f));
        let low = obj(json!({"sgv": 90, "type": "sgv", "dateString": "2026-11-27T10:05:00.000Z"}));
        assert!(!matches(&low, &f));
        assert!(find_filters([("find[sgv][$where]", "1")]).is_err());
        let dates = find_filters([("find[date][$lte]", "1795774500000")]).expect("valid");
        assert_eq!(time_window(&dates, &["date"]), (i64::MIN, 1795774500001));
        let types = find_filters([("find[type][$in]", "sgv|mbg")]).expect("valid");
        assert!(matches(&obj(json!({"type": "mbg"})), &types));
        assert!(!matches(&obj(json!({"type": "cal"})), &types));
    }
}
