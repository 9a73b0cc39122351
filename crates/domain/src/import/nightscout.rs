//! Nightscout's records as its API returns them (`/api/v1/entries.json`,
//! `/api/v1/treatments.json`, `/api/v1/devicestatus.json`): a JSON array of entries, of
//! treatments, or both mixed; or an object holding such arrays under `entries`,
//! `treatments`, `devicestatus` and `profile`. Each element is mapped exactly as an upload
//! through the Nightscout API would be (crate::nightscout), so an import and a live upload
//! of the same record are the same record.

use std::io::Read;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::json_stream::{deserializer, Failure};
use super::{ImportError, ImportOptions, Outcome, ParseSummary, Position, Record, Row, Stop};
use crate::nightscout::{
    document_from_upload, entry_from_upload, treatment_from_upload, EntryUpload, Object,
};

/// Which collection an array holds, when its key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    /// A bare array: each element says what it is.
    Any,
    Entries,
    Treatments,
    DeviceStatus,
    Profile,
}

struct State<'a> {
    options: &'a ImportOptions,
    sink: &'a mut dyn FnMut(Row) -> Result<(), Stop>,
    line: std::rc::Rc<std::cell::Cell<u64>>,
    elements: u64,
    failure: Failure,
}

pub fn parse(
    input: impl Read,
    options: &ImportOptions,
    sink: &mut dyn FnMut(Row) -> Result<(), Stop>,
) -> Result<ParseSummary, ImportError> {
    let (mut de, line) = deserializer(input);
    let mut state = State {
        options,
        sink,
        line,
        elements: 0,
        failure: Failure::default(),
    };
    let result = de
        .deserialize_any(TopLevel(&mut state))
        .and_then(|()| de.end());
    if let Err(e) = result {
        return Err(state.failure.into_error(
            e,
            "Nightscout records (a JSON array of entries or treatments)",
        ));
    }
    Ok(ParseSummary {
        rows: state.elements,
        date_order: None,
    })
}

struct TopLevel<'s, 'a>(&'s mut State<'a>);

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of Nightscout entries or treatments")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        elements(self.0, Collection::Any, seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let collection = match key.as_str() {
                "entries" => Collection::Entries,
                "treatments" => Collection::Treatments,
                "devicestatus" => Collection::DeviceStatus,
                "profile" => Collection::Profile,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            map.next_value_seed(Array(self.0, collection))?;
        }
        Ok(())
    }
}

struct Array<'s, 'a>(&'s mut State<'a>, Collection);

impl<'de> DeserializeSeed<'de> for Array<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Array<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of Nightscout records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        elements(self.0, self.1, seq)
    }
}

fn elements<'de, A: SeqAccess<'de>>(
    state: &mut State<'_>,
    collection: Collection,
    mut seq: A,
) -> Result<(), A::Error> {
    while let Some(element) = seq.next_element::<serde_json::Value>()? {
        let position = Position {
            line: state.line.get(),
            element: Some(state.elements),
        };
        state.elements += 1;
        let serde_json::Value::Object(object) = element else {
            let error = ImportError::malformed(position, "is not a JSON object (a record)");
            return Err(state.failure.set(error));
        };
        let mut outcomes = Vec::with_capacity(1);
        record(&object, collection, state.options.now_ms, &mut outcomes);
        for outcome in outcomes {
            if (state.sink)(Row { position, outcome }).is_err() {
                return Err(state.failure.set(ImportError::Stopped));
            }
        }
    }
    Ok(())
}

fn record(object: &Object, collection: Collection, now_ms: i64, out: &mut Vec<Outcome>) {
    let collection = match collection {
        Collection::Any => classify(object),
        known => known,
    };
    match collection {
        Collection::Entries => match entry_from_upload(object, now_ms) {
            Ok(EntryUpload::Reading(reading)) => {
                out.push(Outcome::Record(Record::Reading(reading)))
            }
            Ok(EntryUpload::Other { id, time_ms, body }) => {
                out.push(Outcome::Record(Record::Document {
                    collection: "entries".into(),
                    id,
                    time_ms,
                    body: serde_json::Value::Object(body).to_string(),
                }))
            }
            Err(e) => out.push(Outcome::Skipped(format!("{}: {}", e.field, e.message))),
        },
        Collection::Treatments => match treatment_from_upload(object, now_ms) {
            Ok(treatments) if treatments.is_empty() => {
                out.push(Outcome::Skipped("a treatment with nothing to keep".into()))
            }
            Ok(treatments) => out.extend(
                treatments
                    .into_iter()
                    .map(|t| Outcome::Record(Record::Treatment(t))),
            ),
            Err(e) => out.push(Outcome::Skipped(format!("{}: {}", e.field, e.message))),
        },
        Collection::DeviceStatus | Collection::Profile => {
            let (name, time_fields): (&str, &[&str]) = if collection == Collection::Profile {
                ("profile", &["startDate", "created_at", "mills"])
            } else {
                ("devicestatus", &["created_at", "date", "mills"])
            };
            match document_from_upload(object, time_fields, now_ms) {
                Ok((id, time_ms, body)) => out.push(Outcome::Record(Record::Document {
                    collection: name.into(),
                    id,
                    time_ms,
                    body: serde_json::Value::Object(body).to_string(),
                })),
                Err(e) => out.push(Outcome::Skipped(format!("{}: {}", e.field, e.message))),
            }
        }
        Collection::Any => out.push(Outcome::Skipped(
            "neither an entry (sgv, mbg) nor a treatment (eventType) nor a device status".into(),
        )),
    }
}

/// What an element of a bare array is, by the fields Nightscout's collections have.
fn classify(object: &Object) -> Collection {
    let has = |field: &str| object.contains_key(field);
    if has("sgv") || has("mbg") || (has("type") && has("date")) {
        Collection::Entries
    } else if has("eventType") || has("insulin") || has("carbs") {
        Collection::Treatments
    } else if has("device")
        && [
            "pump",
            "openaps",
            "loop",
            "uploader",
            "xdripjs",
            "uploaderBattery",
        ]
        .iter()
        .any(|f| has(f))
    {
        Collection::DeviceStatus
    } else if has("store") && has("defaultProfile") {
        Collection::Profile
    } else {
        Collection::Any
    }
}
