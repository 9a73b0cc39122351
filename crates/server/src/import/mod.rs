//! Importing a file into a person's account (docs/data-ownership.md).
//!
//! The file is first copied to a private temporary file (an upload arrives as a stream and is
//! never held in memory), then read twice by the domain's parser: the first pass checks all
//! of it, so a malformed file is refused naming its line before anything is written; the
//! second hands rows over a bounded channel to batched, idempotent store writes. Running an
//! import again after a crash or an outage finishes it: everything already stored counts as a
//! duplicate.

pub mod nightscout_pull;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono_tz::Tz;
use glucosync_domain::import::{
    self, DateOrder, ImportError, ImportFormat, ImportOptions, Outcome, Position, Record, Row, Stop,
};
use glucosync_domain::readings::{NewReading, ReadingKind};
use glucosync_domain::treatments::NewTreatment;
use glucosync_store::{
    Cursor, DocumentCollection, NewDocument, RangeQuery, Store, StoreError, UserId,
};
use serde::Serialize;
use utoipa::ToSchema;

/// How many skipped rows a report lists one by one (all are counted by reason).
pub const SKIPPED_ROWS_LISTED: usize = 1000;
const READINGS_PER_WRITE: usize = 5000;
const TREATMENTS_PER_WRITE: usize = 1000;
const DOCUMENTS_PER_WRITE: usize = 500;
/// An imported CGM reading this near a stored one from another device is the same
/// measurement that reached GlucoSync another way (live from the phone, say, and now from the
/// vendor's export): keeping both would count that moment twice in every statistic.
pub const SAME_MEASUREMENT_MS: i64 = 120_000;

/// What to import and how to read it.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub format: ImportFormat,
    /// For formats with wall-clock times: the person's zone unless they said otherwise.
    pub time_zone: Tz,
    /// LibreView's day/month order when the person knows it; otherwise learnt from the file.
    pub date_order: Option<DateOrder>,
    /// Take the export's display name and settings (GlucoSync's format only).
    pub apply_settings: bool,
    pub now_ms: i64,
}

/// What an import did, row by row.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ImportReport {
    #[schema(value_type = String)]
    pub format: String,
    /// Rows (or JSON elements) read.
    pub rows: u64,
    pub readings: ReadingCounts,
    pub treatments: Counts,
    /// Nightscout documents (device status, profiles, …).
    pub documents: Counts,
    /// Whether the export's display name and settings were applied.
    pub settings_applied: bool,
    /// The zone wall-clock times were read in (Clarity, LibreView).
    pub time_zone: Option<String>,
    /// The day/month order dates were read in (LibreView).
    #[schema(value_type = Option<String>)]
    pub date_order: Option<DateOrder>,
    /// Rows not imported, in all.
    pub skipped_total: u64,
    /// How many rows were skipped for each reason.
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// The first skipped rows, each with its line and reason.
    pub skipped: Vec<SkippedRow>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Counts {
    pub imported: u64,
    /// Already in the account (the same file imported twice adds nothing).
    pub duplicates: u64,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ReadingCounts {
    pub imported: u64,
    pub duplicates: u64,
    /// CGM readings skipped because the account already has one from another device within
    /// two minutes (the same measurement, arrived another way).
    pub already_from_another_device: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkippedRow {
    pub line: u64,
    /// The element's index, for JSON formats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<u64>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportFailure {
    /// The file is not what its format says; nothing was imported.
    #[error(transparent)]
    Malformed(ImportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the file: {0}")]
    Io(String),
}

const ALREADY_FROM_ANOTHER_DEVICE: &str =
    "a reading from another device at the same time is already stored";

impl ImportReport {
    fn skip(&mut self, position: Position, reason: String) {
        self.skipped_total += 1;
        if self.skipped.len() < SKIPPED_ROWS_LISTED {
            self.skipped.push(SkippedRow {
                line: position.line,
                element: position.element,
                reason: reason.clone(),
            });
        }
        *self.skipped_by_reason.entry(reason).or_default() += 1;
    }
}

/// Imports the file at `path` into `user`'s account.
pub async fn import_file(
    store: Arc<dyn Store>,
    user: UserId,
    path: &Path,
    request: &ImportRequest,
) -> Result<ImportReport, ImportFailure> {
    let mut options = ImportOptions {
        time_zone: request.time_zone,
        now_ms: request.now_ms,
        date_order: request.date_order,
    };
    // Pass 1: the whole file must read cleanly before anything is written.
    let summary = {
        let (path, format, options) = (path.to_owned(), request.format, options.clone());
        tokio::task::spawn_blocking(move || {
            let file = open(&path)?;
            import::parse(format, file, &options, &mut |_| Ok(())).map_err(ImportFailure::Malformed)
        })
        .await
        .map_err(|e| ImportFailure::Io(e.to_string()))??
    };
    options.date_order = options.date_order.or(summary.date_order);

    let mut report = ImportReport {
        format: request.format.as_str().to_owned(),
        rows: summary.rows,
        time_zone: request
            .format
            .uses_local_time()
            .then(|| request.time_zone.name().to_owned()),
        date_order: (request.format == ImportFormat::LibreView)
            .then_some(options.date_order)
            .flatten(),
        ..Default::default()
    };

    // Pass 2: rows over a bounded channel, written in batches.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Row>(4096);
    let parser = {
        let (path, format) = (path.to_owned(), request.format);
        tokio::task::spawn_blocking(move || {
            let file = open(&path)?;
            import::parse(format, file, &options, &mut |row| {
                tx.blocking_send(row).map_err(|_| Stop)
            })
            .map_err(ImportFailure::Malformed)
        })
    };
    let mut batch = Batch::default();
    let written = async {
        while let Some(row) = rx.recv().await {
            match row.outcome {
                Outcome::Skipped(reason) => report.skip(row.position, reason),
                Outcome::Record(Record::Reading(reading)) => {
                    batch.readings.push((row.position, reading));
                    if batch.readings.len() >= READINGS_PER_WRITE {
                        batch
                            .write_readings(&*store, user, request.now_ms, &mut report)
                            .await?;
                    }
                }
                Outcome::Record(Record::Treatment(treatment)) => {
                    batch.treatments.push(treatment);
                    if batch.treatments.len() >= TREATMENTS_PER_WRITE {
                        batch
                            .write_treatments(&*store, user, request.now_ms, &mut report)
                            .await?;
                    }
                }
                Outcome::Record(Record::Document {
                    collection,
                    id,
                    time_ms,
                    body,
                }) => match DocumentCollection::parse(&collection) {
                    Some(collection) => {
                        let documents = batch.documents.entry(collection).or_default();
                        documents.push(NewDocument { id, time_ms, body });
                        if documents.len() >= DOCUMENTS_PER_WRITE {
                            batch
                                .write_documents(&*store, user, request.now_ms, &mut report)
                                .await?;
                        }
                    }
                    None => report.skip(
                        row.position,
                        format!("a document of an unknown collection {collection:?}"),
                    ),
                },
                Outcome::Record(Record::Account {
                    display_name,
                    settings,
                }) => {
                    // Validated by the parser: the first pass refuses a file whose settings do
                    // not hold.
                    if request.apply_settings {
                        store.set_settings(user, &settings).await?;
                        store
                            .set_display_name(user, display_name.as_deref())
                            .await?;
                        report.settings_applied = true;
                    }
                }
            }
        }
        batch
            .write_readings(&*store, user, request.now_ms, &mut report)
            .await?;
        batch
            .write_treatments(&*store, user, request.now_ms, &mut report)
            .await?;
        batch
            .write_documents(&*store, user, request.now_ms, &mut report)
            .await?;
        Ok::<(), ImportFailure>(())
    }
    .await;
    // Dropping the receiver stops the parser if writing failed.
    drop(rx);
    let parsed = parser.await.map_err(|e| ImportFailure::Io(e.to_string()))?;
    written?;
    parsed?;
    Ok(report)
}

fn open(path: &PathBuf) -> Result<std::fs::File, ImportFailure> {
    std::fs::File::open(path).map_err(|e| ImportFailure::Io(e.to_string()))
}

#[derive(Default)]
struct Batch {
    readings: Vec<(Position, NewReading)>,
    treatments: Vec<NewTreatment>,
    documents: std::collections::HashMap<DocumentCollection, Vec<NewDocument>>,
}

impl Batch {
    async fn write_readings(
        &mut self,
        store: &dyn Store,
        user: UserId,
        now_ms: i64,
        report: &mut ImportReport,
    ) -> Result<(), ImportFailure> {
        if self.readings.is_empty() {
            return Ok(());
        }
        let mut readings = std::mem::take(&mut self.readings);
        let stored = stored_cgm_near(store, user, &readings).await?;
        // In time order, so that the batch's own readings from another device within the
        // window are found among those just kept (a Clarity file can hold a receiver's and a
        // phone's copy of each reading).
        readings.sort_by_key(|(_, r)| r.time.utc_ms);
        let mut keep = Vec::with_capacity(readings.len());
        let mut kept_cgm: std::collections::VecDeque<(i64, String)> = Default::default();
        for (position, reading) in readings {
            let t = reading.time.utc_ms;
            while kept_cgm
                .front()
                .is_some_and(|(kept, _)| *kept <= t - SAME_MEASUREMENT_MS)
            {
                kept_cgm.pop_front();
            }
            let from_another_device = reading.kind == ReadingKind::Cgm
                && (same_measurement(&stored, &reading)
                    || kept_cgm.iter().any(|(_, device)| *device != reading.device));
            if from_another_device {
                report.readings.already_from_another_device += 1;
                report.skip(position, ALREADY_FROM_ANOTHER_DEVICE.to_owned());
                continue;
            }
            if reading.kind == ReadingKind::Cgm {
                kept_cgm.push_back((t, reading.device.clone()));
            }
            keep.push(reading);
        }
        if keep.is_empty() {
            return Ok(());
        }
        let outcome = store.insert_readings(user, keep, now_ms).await?;
        report.readings.imported += outcome.inserted;
        report.readings.duplicates += outcome.duplicates;
        Ok(())
    }

    async fn write_treatments(
        &mut self,
        store: &dyn Store,
        user: UserId,
        now_ms: i64,
        report: &mut ImportReport,
    ) -> Result<(), ImportFailure> {
        if self.treatments.is_empty() {
            return Ok(());
        }
        let outcome = store
            .insert_treatments(user, std::mem::take(&mut self.treatments), now_ms)
            .await?;
        report.treatments.imported += outcome.inserted;
        report.treatments.duplicates += outcome.duplicates;
        Ok(())
    }

    async fn write_documents(
        &mut self,
        store: &dyn Store,
        user: UserId,
        now_ms: i64,
        report: &mut ImportReport,
    ) -> Result<(), ImportFailure> {
        for (collection, documents) in std::mem::take(&mut self.documents) {
            let stored = store
                .insert_documents(user, collection, documents, now_ms)
                .await?;
            for id in stored {
                if id.inserted {
                    report.documents.imported += 1;
                } else {
                    report.documents.duplicates += 1;
                }
            }
        }
        Ok(())
    }
}

/// The stored CGM readings (time, device) around a batch's, sorted by time.
async fn stored_cgm_near(
    store: &dyn Store,
    user: UserId,
    readings: &[(Position, NewReading)],
) -> Result<Vec<(i64, String)>, StoreError> {
    let times = readings
        .iter()
        .filter(|(_, r)| r.kind == ReadingKind::Cgm)
        .map(|(_, r)| r.time.utc_ms);
    let (Some(from), Some(to)) = (times.clone().min(), times.max()) else {
        return Ok(Vec::new());
    };
    const PAGE: usize = 10_000;
    let mut query = RangeQuery {
        from_ms: from - SAME_MEASUREMENT_MS,
        to_ms: to + SAME_MEASUREMENT_MS + 1,
        after: None,
        limit: PAGE,
        descending: false,
    };
    let mut out = Vec::new();
    loop {
        let page = store.list_readings(user, &query).await?;
        let full = page.len() == PAGE;
        if let Some(last) = page.last() {
            query.after = Some(Cursor {
                time_ms: last.time.utc_ms,
                key: last.id.to_string(),
            });
        }
        out.extend(
            page.into_iter()
                .filter(|r| r.kind == ReadingKind::Cgm)
                .map(|r| (r.time.utc_ms, r.device)),
        );
        if !full {
            return Ok(out);
        }
    }
}

/// Whether a stored reading from another device lies within [`SAME_MEASUREMENT_MS`].
fn same_measurement(stored: &[(i64, String)], reading: &NewReading) -> bool {
    let t = reading.time.utc_ms;
    let start = stored.partition_point(|(time, _)| *time <= t - SAME_MEASUREMENT_MS);
    stored[start..]
        .iter()
        .take_while(|(time, _)| *time < t + SAME_MEASUREMENT_MS)
        .any(|(_, device)| *device != reading.device)
}
