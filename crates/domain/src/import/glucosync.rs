//! GlucoSync's own export (crate::export), read back as a stream: the document's large arrays
//! are visited element by element.

use std::io::Read;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::json_stream::{deserializer, Failure};
use super::{ImportError, ImportOptions, Outcome, ParseSummary, Position, Record, Row, Stop};
use crate::export::{
    ExportedDocument, ExportedReading, ExportedTreatment, EXPORT_FORMAT, EXPORT_VERSION,
};
use crate::settings::UserSettings;
use crate::Timestamp;

#[derive(Deserialize)]
struct Account {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    settings: Option<UserSettings>,
}

struct State<'a> {
    options: &'a ImportOptions,
    sink: &'a mut dyn FnMut(Row) -> Result<(), Stop>,
    line: std::rc::Rc<std::cell::Cell<u64>>,
    elements: u64,
    format_seen: bool,
    failure: Failure,
}

impl State<'_> {
    fn position(&self) -> Position {
        Position {
            line: self.line.get(),
            element: Some(self.elements),
        }
    }

    fn emit<E: serde::de::Error>(&mut self, position: Position, outcome: Outcome) -> Result<(), E> {
        match (self.sink)(Row { position, outcome }) {
            Ok(()) => Ok(()),
            Err(Stop) => Err(self.failure.set(ImportError::Stopped)),
        }
    }
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
        format_seen: false,
        failure: Failure::default(),
    };
    let result = de
        .deserialize_map(Document(&mut state))
        .and_then(|()| de.end());
    if let Err(e) = result {
        return Err(state.failure.into_error(e, "a GlucoSync export"));
    }
    if !state.format_seen {
        return Err(not_an_export());
    }
    Ok(ParseSummary {
        rows: state.elements,
        date_order: None,
    })
}

fn not_an_export() -> ImportError {
    ImportError::malformed(
        Position::line(1),
        format!(
            "this is not a GlucoSync export: it has no \"format\": \"{EXPORT_FORMAT}\" \
             (download one from GET /api/v1/export)"
        ),
    )
}

struct Document<'s, 'a>(&'s mut State<'a>);

impl<'de> Visitor<'de> for Document<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a GlucoSync export (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => {
                    if map.next_value::<String>()? != EXPORT_FORMAT {
                        return Err(state.failure.set(not_an_export()));
                    }
                    state.format_seen = true;
                }
                "version" => {
                    let version = map.next_value::<u32>()?;
                    if version > EXPORT_VERSION {
                        let position = Position::line(state.line.get());
                        return Err(state.failure.set(ImportError::malformed(
                            position,
                            format!(
                                "the export is version {version}, newer than this server \
                                 reads ({EXPORT_VERSION}): upgrade GlucoSync first"
                            ),
                        )));
                    }
                }
                "account" => {
                    let account = map.next_value::<Account>()?;
                    let position = Position::line(state.line.get());
                    if let Some(settings) = account.settings {
                        // Checked in the first pass like everything else: a file whose settings
                        // do not hold imports nothing.
                        if let Err(e) = settings.validate() {
                            return Err(state.failure.set(ImportError::malformed(
                                position,
                                format!("account settings: {}: {}", e.field, e.message),
                            )));
                        }
                        state.emit(
                            position,
                            Outcome::Record(Record::Account {
                                display_name: account.display_name,
                                settings: Box::new(settings),
                            }),
                        )?;
                    }
                }
                "readings" => map.next_value_seed(Array(state, Kind::Readings))?,
                "treatments" => map.next_value_seed(Array(state, Kind::Treatments))?,
                "nightscout_documents" => map.next_value_seed(Array(state, Kind::Documents))?,
                // The record of alerts, shares, tokens and reads: exported, not imported.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Readings,
    Treatments,
    Documents,
}

struct Array<'s, 'a>(&'s mut State<'a>, Kind);

impl<'de> DeserializeSeed<'de> for Array<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Array<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.0;
        let now_ms = state.options.now_ms;
        loop {
            let outcome = match self.1 {
                Kind::Readings => match seq.next_element::<ExportedReading>()? {
                    None => break,
                    Some(r) => r.into_new(now_ms).map(Record::Reading),
                },
                Kind::Treatments => match seq.next_element::<ExportedTreatment>()? {
                    None => break,
                    Some(t) => t.into_new(now_ms).map(Record::Treatment),
                },
                Kind::Documents => match seq.next_element::<ExportedDocument>()? {
                    None => break,
                    Some(d) => document(d),
                },
            };
            let position = state.position();
            state.elements += 1;
            let outcome = match outcome {
                Ok(record) => Outcome::Record(record),
                Err(e) => Outcome::Skipped(format!("{}: {}", e.field, e.message)),
            };
            state.emit(position, outcome)?;
        }
        Ok(())
    }
}

fn document(d: ExportedDocument) -> Result<Record, crate::ValidationError> {
    let time = Timestamp::parse_rfc3339("time", &d.time)?;
    if !d.body.is_object() {
        return Err(crate::ValidationError::new("body", "must be a JSON object"));
    }
    crate::treatments::check_client_id(&d.id)?;
    Ok(Record::Document {
        collection: d.collection,
        id: d.id,
        time_ms: time.utc_ms,
        body: d.body.to_string(),
    })
}
