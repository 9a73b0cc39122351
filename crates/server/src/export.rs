//! Exports, streamed (docs/data-ownership.md): everything a person has as one JSON document
//! (GlucoSync's format, which an import turns back into the account), CSV per kind, and
//! readings as an HL7 FHIR R4 Bundle. Pages are read from the store and written as they come,
//! so an export of years holds one page in memory. A store failure midway ends the stream
//! early: the download is then incomplete (and an import of it says so) rather than wrong.

use std::io;

use axum::body::{Body, Bytes};
use futures::future::BoxFuture;
use glucosync_domain::export::{
    fhir, ExportedDocument, ExportedReading, ExportedTreatment, EXPORT_FORMAT, EXPORT_VERSION,
};
use glucosync_domain::limits::{EARLIEST_TIME_MS, MAX_FUTURE_SKEW_MS};
use glucosync_domain::readings::Reading;
use glucosync_domain::treatments::Treatment;
use glucosync_domain::{GlucoseUnit, Timestamp};
use glucosync_store::{Cursor, DocumentCollection, RangeQuery, Store, StoreError, User, UserId};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::state::now_ms;
use std::sync::Arc;

const PAGE: usize = 5000;
const CHUNK_BYTES: usize = 64 * 1024;

/// The kinds `GET /api/v1/export/{kind}.csv` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvKind {
    Readings,
    Treatments,
    Alerts,
    Shares,
    AccessLog,
}

impl CsvKind {
    pub const ALL: [CsvKind; 5] = [
        CsvKind::Readings,
        CsvKind::Treatments,
        CsvKind::Alerts,
        CsvKind::Shares,
        CsvKind::AccessLog,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CsvKind::Readings => "readings",
            CsvKind::Treatments => "treatments",
            CsvKind::Alerts => "alerts",
            CsvKind::Shares => "shares",
            CsvKind::AccessLog => "access-log",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Buffers output and hands it to the response body in chunks.
struct Out {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

/// The client went away (or the store failed): stop writing.
#[derive(Debug)]
struct Stopped;

impl From<StoreError> for Stopped {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "export stopped: the store failed");
        Stopped
    }
}

impl Out {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), Stopped> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn json(&mut self, value: &impl Serialize) -> Result<(), Stopped> {
        let bytes = serde_json::to_vec(value).map_err(|_| Stopped)?;
        self.write(&bytes).await
    }

    async fn flush(&mut self) -> Result<(), Stopped> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.send(Ok(chunk)).await.map_err(|_| Stopped)
    }

    /// Ends the body with an error, so the client sees a broken download, not a short one.
    async fn fail(&mut self) {
        let _ = self
            .tx
            .send(Err(io::Error::other("the export could not be completed")))
            .await;
    }
}

/// A body fed by `produce`, which runs as its own task.
fn streamed<F, Fut>(produce: F) -> Body
where
    F: FnOnce(Out) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(produce(Out {
        tx,
        buf: Vec::with_capacity(CHUNK_BYTES),
    }));
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn all_time() -> (i64, i64) {
    (EARLIEST_TIME_MS, now_ms() + MAX_FUTURE_SKEW_MS + 1)
}

fn rfc3339(ms: i64) -> String {
    Timestamp::from_utc_ms(ms).to_rfc3339_utc()
}

/// A record listed by time, a page at a time: where the next page starts.
trait Paged {
    fn cursor(&self) -> Cursor;
}

impl Paged for Reading {
    fn cursor(&self) -> Cursor {
        Cursor {
            time_ms: self.time.utc_ms,
            key: self.id.to_string(),
        }
    }
}

impl Paged for Treatment {
    fn cursor(&self) -> Cursor {
        Cursor {
            time_ms: self.time.utc_ms,
            key: self.id.clone(),
        }
    }
}

impl Paged for glucosync_store::Document {
    fn cursor(&self) -> Cursor {
        Cursor {
            time_ms: self.time_ms,
            key: self.id.clone(),
        }
    }
}

/// Calls `each` with every page `list` gives for `from_ms <= time < to_ms`, writing what it
/// renders.
async fn time_pages<'a, T: Paged>(
    (from_ms, to_ms): (i64, i64),
    out: &mut Out,
    list: impl Fn(RangeQuery) -> BoxFuture<'a, Result<Vec<T>, StoreError>>,
    mut each: impl FnMut(&[T], &mut Vec<u8>),
) -> Result<(), Stopped> {
    let mut query = RangeQuery {
        from_ms,
        to_ms,
        after: None,
        limit: PAGE,
        descending: false,
    };
    loop {
        let page = list(query.clone()).await?;
        let mut bytes = Vec::new();
        each(&page, &mut bytes);
        out.write(&bytes).await?;
        match page.last() {
            Some(last) if page.len() == PAGE => query.after = Some(last.cursor()),
            _ => return Ok(()),
        }
    }
}

fn readings_of<'a>(
    store: &'a dyn Store,
    user: UserId,
) -> impl Fn(RangeQuery) -> BoxFuture<'a, Result<Vec<Reading>, StoreError>> + 'a {
    move |q| Box::pin(async move { store.list_readings(user, &q).await })
}

fn treatments_of<'a>(
    store: &'a dyn Store,
    user: UserId,
) -> impl Fn(RangeQuery) -> BoxFuture<'a, Result<Vec<Treatment>, StoreError>> + 'a {
    move |q| Box::pin(async move { store.list_treatments(user, &q).await })
}

/// Writes `items` as the elements of a JSON array (a comma before all but the very first,
/// across pages: `first` carries that over).
fn json_elements<T: Serialize>(
    items: impl Iterator<Item = T>,
    first: &mut bool,
    bytes: &mut Vec<u8>,
) {
    for item in items {
        if !std::mem::take(first) {
            bytes.push(b',');
        }
        // Serialising our own types into memory cannot fail.
        let _ = serde_json::to_writer(&mut *bytes, &item);
    }
}

// ---- the whole account as JSON

/// Whether an export is the person's own (`GET /api/v1/export`) or the operator's logical
/// backup (`glucoengine export --all`), which also carries what recreating the account needs:
/// its password hash and roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFor {
    Person,
    Operator,
}

/// Everything `user` has, as GlucoSync's export document.
pub fn json_export(store: Arc<dyn Store>, user: User, audience: ExportFor) -> Body {
    streamed(move |mut out| async move {
        if write_json_export(&*store, &user, audience, &mut out)
            .await
            .is_ok()
            && out.flush().await.is_ok()
        {
            return;
        }
        out.fail().await;
    })
}

async fn write_json_export(
    store: &dyn Store,
    user: &User,
    audience: ExportFor,
    out: &mut Out,
) -> Result<(), Stopped> {
    let id = user.id;
    out.write(b"{\"format\":").await?;
    out.json(&EXPORT_FORMAT).await?;
    out.write(format!(",\"version\":{EXPORT_VERSION},\"exported_at\":").as_bytes())
        .await?;
    out.json(&rfc3339(now_ms())).await?;
    out.write(b",\"account\":").await?;
    let mut account = json!({
        "email": user.email,
        "display_name": user.display_name,
        "created_at": rfc3339(user.created_ms),
        "settings": user.settings,
    });
    if audience == ExportFor::Operator {
        account["password_hash"] = store.password_hash(id).await?.into();
        account["is_admin"] = user.is_admin.into();
        account["disabled"] = user.disabled.into();
        account["deletion_due_ms"] = user.deletion_due_ms.into();
    }
    out.json(&account).await?;

    out.write(b",\"readings\":[").await?;
    let mut first = true;
    time_pages(all_time(), out, readings_of(store, id), |page, bytes| {
        json_elements(
            page.iter().map(ExportedReading::from_reading),
            &mut first,
            bytes,
        )
    })
    .await?;
    out.write(b"],\"treatments\":[").await?;
    let mut first = true;
    time_pages(all_time(), out, treatments_of(store, id), |page, bytes| {
        json_elements(
            page.iter().map(ExportedTreatment::from_treatment),
            &mut first,
            bytes,
        )
    })
    .await?;

    out.write(b"],\"nightscout_documents\":[").await?;
    let mut first = true;
    for collection in [
        DocumentCollection::DeviceStatus,
        DocumentCollection::Profile,
        DocumentCollection::Food,
        DocumentCollection::Settings,
        DocumentCollection::OtherEntries,
    ] {
        let list = move |q: RangeQuery| -> BoxFuture<'_, Result<Vec<_>, StoreError>> {
            Box::pin(async move { store.list_documents(id, collection, &q).await })
        };
        time_pages(all_time(), out, list, |page, bytes| {
            json_elements(
                page.iter().map(|d| ExportedDocument {
                    collection: collection.as_str().to_owned(),
                    id: d.id.clone(),
                    time: rfc3339(d.time_ms),
                    body: serde_json::from_str(&d.body).unwrap_or_default(),
                }),
                &mut first,
                bytes,
            )
        })
        .await?;
    }
    out.write(b"]").await?;

    let nightscout = store.nightscout_site(id).await?;
    out.write(b",\"nightscout_site\":").await?;
    out.json(&nightscout.map(|site| {
        json!({ "base_url": format!("/ns/{}", site.handle), "public_read": site.public_read })
    }))
    .await?;

    let alerts = store.alert_record(id).await?;
    out.write(b",\"alert_state\":").await?;
    out.json(&alerts.book).await?;
    out.write(b",\"alert_deliveries\":[").await?;
    let mut first = true;
    let mut before = (i64::MAX, i64::MAX);
    loop {
        let page = store.deliveries_of(id, before, PAGE).await?;
        let mut bytes = Vec::new();
        json_elements(page.iter().map(delivery_json), &mut first, &mut bytes);
        out.write(&bytes).await?;
        match page.last() {
            Some(last) if page.len() == PAGE => before = (last.created_ms, last.id),
            _ => break,
        }
    }

    out.write(b"],\"shares\":").await?;
    let shares = share_rows(store, id).await?;
    out.json(&shares).await?;
    out.write(b",\"api_tokens\":").await?;
    let tokens: Vec<_> = store
        .list_api_tokens(id, now_ms())
        .await?
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "scopes": t.scopes,
                "created_at": rfc3339(t.created_ms),
                "last_used_at": t.last_used_ms.map(rfc3339),
                "expires_at": t.expires_ms.map(rfc3339),
            })
        })
        .collect();
    out.json(&tokens).await?;

    out.write(b",\"access_log\":[").await?;
    let mut first = true;
    let mut before = (i64::MAX, i64::MAX);
    loop {
        let page = store.access_log(id, before, PAGE).await?;
        let mut bytes = Vec::new();
        json_elements(
            page.iter().map(|a| {
                json!({ "time": rfc3339(a.time_ms), "follower_email": a.follower_email, "what": a.what })
            }),
            &mut first,
            &mut bytes,
        );
        out.write(&bytes).await?;
        match page.last() {
            Some(last) if page.len() == PAGE => before = (last.time_ms, last.id),
            _ => break,
        }
    }
    out.write(b"]}").await
}

fn delivery_json(d: &glucosync_store::Delivery) -> serde_json::Value {
    json!({
        "created_at": rfc3339(d.created_ms),
        "to_you": d.recipient_id == d.person_id,
        "channel": d.channel.as_str(),
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "done_at": d.done_ms.map(rfc3339),
        "alert": serde_json::from_str::<serde_json::Value>(&d.payload).unwrap_or_default(),
    })
}

/// The shares a person gave and those they follow, for the record.
async fn share_rows(store: &dyn Store, id: UserId) -> Result<Vec<serde_json::Value>, StoreError> {
    let row = |direction: &str, s: &glucosync_store::Share| {
        json!({
            "direction": direction,
            "role": s.role.as_str(),
            "invite_email": s.invite_email,
            "created_at": rfc3339(s.created_ms),
            "accepted_at": s.accepted_ms.map(rfc3339),
            "revoked_at": s.revoked_ms.map(rfc3339),
        })
    };
    let mut rows: Vec<_> = store
        .shares_of_owner(id)
        .await?
        .iter()
        .map(|s| row("shared_by_you", s))
        .collect();
    rows.extend(
        store
            .shares_followed(id)
            .await?
            .iter()
            .map(|s| row("shared_with_you", s)),
    );
    Ok(rows)
}

// ---- CSV per kind

/// `GET /api/v1/export/{kind}.csv`.
pub fn csv_export(store: Arc<dyn Store>, user: User, kind: CsvKind) -> Body {
    streamed(move |mut out| async move {
        if write_csv(&*store, user.id, kind, &mut out).await.is_ok() && out.flush().await.is_ok() {
            return;
        }
        out.fail().await;
    })
}

fn csv_bytes(rows: impl Iterator<Item = Vec<String>>, bytes: &mut Vec<u8>) {
    let mut writer = csv::Writer::from_writer(bytes);
    for row in rows {
        // Writing into memory cannot fail.
        let _ = writer.write_record(&row);
    }
    let _ = writer.flush();
}

async fn write_csv(
    store: &dyn Store,
    id: UserId,
    kind: CsvKind,
    out: &mut Out,
) -> Result<(), Stopped> {
    let header = |cells: &[&str]| cells.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut bytes = Vec::new();
    match kind {
        CsvKind::Readings => {
            csv_bytes(
                std::iter::once(header(&[
                    "time",
                    "utc_offset",
                    "value_mgdl",
                    "value_mmoll",
                    "kind",
                    "trend",
                    "device",
                ])),
                &mut bytes,
            );
            out.write(&bytes).await?;
            time_pages(all_time(), out, readings_of(store, id), |page, bytes| {
                csv_bytes(
                    page.iter().map(|r| {
                        vec![
                            r.time.to_rfc3339_utc(),
                            r.time.offset_string(),
                            r.value.display(GlucoseUnit::MgDl).to_string(),
                            r.value.display(GlucoseUnit::MmolL).to_string(),
                            r.kind.as_str().to_owned(),
                            r.trend.map(|t| t.as_str().to_owned()).unwrap_or_default(),
                            r.device.clone(),
                        ]
                    }),
                    bytes,
                )
            })
            .await
        }
        CsvKind::Treatments => {
            csv_bytes(
                std::iter::once(header(&[
                    "id",
                    "time",
                    "utc_offset",
                    "kind",
                    "units",
                    "insulin_type",
                    "insulin_name",
                    "grams",
                    "minutes",
                    "intensity",
                    "text",
                    "units_per_hour",
                ])),
                &mut bytes,
            );
            out.write(&bytes).await?;
            time_pages(all_time(), out, treatments_of(store, id), |page, bytes| {
                csv_bytes(
                    page.iter().map(|t| {
                        let e = ExportedTreatment::from_treatment(t);
                        vec![
                            e.id,
                            t.time.to_rfc3339_utc(),
                            t.time.offset_string(),
                            e.kind,
                            opt(e.units),
                            e.insulin_type.unwrap_or_default(),
                            e.insulin_name.unwrap_or_default(),
                            opt(e.grams),
                            opt(e.minutes),
                            e.intensity.unwrap_or_default(),
                            e.text.unwrap_or_default(),
                            opt(e.units_per_hour),
                        ]
                    }),
                    bytes,
                )
            })
            .await
        }
        CsvKind::Alerts => {
            csv_bytes(
                std::iter::once(header(&[
                    "created_at",
                    "to_you",
                    "channel",
                    "status",
                    "attempts",
                    "done_at",
                    "alert",
                ])),
                &mut bytes,
            );
            let mut before = (i64::MAX, i64::MAX);
            loop {
                let page = store.deliveries_of(id, before, PAGE).await?;
                csv_bytes(
                    page.iter().map(|d| {
                        vec![
                            rfc3339(d.created_ms),
                            (d.recipient_id == d.person_id).to_string(),
                            d.channel.as_str().to_owned(),
                            d.status.as_str().to_owned(),
                            d.attempts.to_string(),
                            d.done_ms.map(rfc3339).unwrap_or_default(),
                            d.payload.clone(),
                        ]
                    }),
                    &mut bytes,
                );
                out.write(&std::mem::take(&mut bytes)).await?;
                match page.last() {
                    Some(last) if page.len() == PAGE => before = (last.created_ms, last.id),
                    _ => return Ok(()),
                }
            }
        }
        CsvKind::Shares => {
            let rows = share_rows(store, id).await?;
            let cells = [
                "direction",
                "role",
                "invite_email",
                "created_at",
                "accepted_at",
                "revoked_at",
            ];
            csv_bytes(
                std::iter::once(header(&cells)).chain(rows.iter().map(|row| {
                    cells
                        .iter()
                        .map(|c| row[*c].as_str().unwrap_or_default().to_owned())
                        .collect()
                })),
                &mut bytes,
            );
            out.write(&bytes).await
        }
        CsvKind::AccessLog => {
            csv_bytes(
                std::iter::once(header(&["time", "follower_email", "what"])),
                &mut bytes,
            );
            let mut before = (i64::MAX, i64::MAX);
            loop {
                let page = store.access_log(id, before, PAGE).await?;
                csv_bytes(
                    page.iter().map(|a| {
                        vec![rfc3339(a.time_ms), a.follower_email.clone(), a.what.clone()]
                    }),
                    &mut bytes,
                );
                out.write(&std::mem::take(&mut bytes)).await?;
                match page.last() {
                    Some(last) if page.len() == PAGE => before = (last.time_ms, last.id),
                    _ => return Ok(()),
                }
            }
        }
    }
}

// ---- FHIR

/// `GET /api/v1/export/fhir`: readings with `from_ms <= time < to_ms` as a FHIR R4 Bundle
/// (type `collection`) of glucose Observations with the Patient they are about.
pub fn fhir_export(
    store: Arc<dyn Store>,
    user: User,
    unit: GlucoseUnit,
    range: (i64, i64),
) -> Body {
    streamed(move |mut out| async move {
        if write_fhir(&*store, &user, unit, range, &mut out)
            .await
            .is_ok()
            && out.flush().await.is_ok()
        {
            return;
        }
        out.fail().await;
    })
}

async fn write_fhir(
    store: &dyn Store,
    user: &User,
    unit: GlucoseUnit,
    range: (i64, i64),
    out: &mut Out,
) -> Result<(), Stopped> {
    out.write(b"{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"timestamp\":")
        .await?;
    out.json(&rfc3339(now_ms())).await?;
    out.write(b",\"entry\":[").await?;
    out.json(&fhir::patient(user.id, user.display_name.as_deref()))
        .await?;
    let id = user.id;
    let mut first = false;
    time_pages(range, out, readings_of(store, id), |page, bytes| {
        json_elements(
            page.iter().map(|r| fhir::observation(id, r, unit)),
            &mut first,
            bytes,
        )
    })
    .await?;
    out.write(b"]}").await
}
