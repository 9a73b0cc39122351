//! Reading other systems' exports (and GlucoSync's own) into readings and treatments.
//!
//! Every format is read as a stream: a parser takes any `std::io::Read` (the caller chooses a
//! file, a spooled upload or a byte slice; nothing here opens anything) and hands each row's
//! outcome to a callback as it goes, so a five-year file never has to fit in memory.
//!
//! Two kinds of trouble are told apart:
//! - a **malformed** file (not the format, a cell that cannot be read, a date that does not
//!   exist) stops the parse with [`ImportError::Malformed`] naming the line: the caller
//!   imports nothing from such a file;
//! - a row that is well-formed but not something GlucoSync keeps (a header row of the export,
//!   a ketone value, a sensor error code, a time in the future) is **skipped**, with the reason,
//!   and the import goes on.
//!
//! Callers parse twice: a first pass checks the whole file and learns what only the whole file
//! tells (a LibreView file's day/month order, see [`ParseSummary`]); the second, given that,
//! yields the rows to store. See docs/data-ownership.md.

pub mod clarity;
mod csv_rows;
pub mod glucosync;
mod json_stream;
pub mod libreview;
pub mod local_time;
pub mod nightscout;

use std::fmt;

use chrono_tz::Tz;

use crate::readings::NewReading;
use crate::settings::UserSettings;
use crate::treatments::NewTreatment;

/// The file formats `POST /api/v1/import?format=` and `glucoengine import --format` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ImportFormat {
    /// GlucoSync's own export (`GET /api/v1/export`).
    GlucoSync,
    /// Dexcom Clarity's CSV export.
    Clarity,
    /// Abbott LibreView's CSV export.
    LibreView,
    /// Nightscout's entries and treatments as its API returns them (JSON).
    Nightscout,
}

impl ImportFormat {
    pub const ALL: [ImportFormat; 4] = [
        ImportFormat::GlucoSync,
        ImportFormat::Clarity,
        ImportFormat::LibreView,
        ImportFormat::Nightscout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::GlucoSync => "glucosync",
            ImportFormat::Clarity => "clarity",
            ImportFormat::LibreView => "libreview",
            ImportFormat::Nightscout => "nightscout",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Whether the format writes wall-clock times without an offset (so the import needs the
    /// person's time zone).
    pub fn uses_local_time(self) -> bool {
        matches!(self, ImportFormat::Clarity | ImportFormat::LibreView)
    }
}

/// Whether a date like `03-04-2025` is the 3rd of April or March the 4th.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DateOrder {
    DayFirst,
    MonthFirst,
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The zone wall-clock times are in (the person's, unless the caller says otherwise).
    pub time_zone: Tz,
    /// The server's clock: times after it (plus the usual skew) are skipped.
    pub now_ms: i64,
    /// Known from a first pass (or given by the person); `None` makes the parser find out.
    pub date_order: Option<DateOrder>,
}

/// What one row of a file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Reading(NewReading),
    Treatment(NewTreatment),
    /// A Nightscout document (device status, profile, …), by collection name.
    Document {
        collection: String,
        id: String,
        time_ms: i64,
        /// A JSON object.
        body: String,
    },
    /// The account's own name and settings (GlucoSync's export).
    Account {
        display_name: Option<String>,
        settings: Box<UserSettings>,
    },
}

/// A row's outcome, with where it is in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub position: Position,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Record(Record),
    /// Why the row is not imported.
    Skipped(String),
}

/// Where a row is: a CSV line, or a JSON document's element (with the line it ends on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    pub line: u64,
    /// The element's index in its JSON array, for JSON formats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<u64>,
}

impl Position {
    pub fn line(line: u64) -> Self {
        Self {
            line,
            element: None,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.element {
            Some(element) => write!(f, "line {} (element {})", self.line, element),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// What the whole file told a first pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParseSummary {
    /// Rows read (including skipped ones).
    pub rows: u64,
    pub date_order: Option<DateOrder>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImportError {
    /// The file is not what its format says, at `position`: nothing of it may be imported.
    #[error("{position}: {message}")]
    Malformed { position: Position, message: String },
    /// The callback asked to stop.
    #[error("the import was stopped")]
    Stopped,
}

impl ImportError {
    pub fn malformed(position: Position, message: impl Into<String>) -> Self {
        ImportError::Malformed {
            position,
            message: message.into(),
        }
    }
}

/// The callback's way to stop a parse (its receiver went away, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// Reads `input` in `format`, handing every row to `sink`.
pub fn parse(
    format: ImportFormat,
    input: impl std::io::Read,
    options: &ImportOptions,
    sink: &mut dyn FnMut(Row) -> Result<(), Stop>,
) -> Result<ParseSummary, ImportError> {
    match format {
        ImportFormat::GlucoSync => glucosync::parse(input, options, sink),
        ImportFormat::Clarity => clarity::parse(input, options, sink),
        ImportFormat::LibreView => libreview::parse(input, options, sink),
        ImportFormat::Nightscout => nightscout::parse(input, options, sink),
    }
}

/// A number as exports write it: `12.00`, `4,5` (a decimal comma), `61.0`, with spaces around.
pub(crate) fn parse_number(cell: &str) -> Option<f64> {
    let cell = cell.trim();
    if cell.is_empty() {
        return None;
    }
    let value: f64 = if cell.contains(',') && !cell.contains('.') {
        cell.replacen(',', ".", 1).parse().ok()?
    } else {
        cell.parse().ok()?
    };
    value.is_finite().then_some(value)
}
