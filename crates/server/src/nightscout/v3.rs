//! Nightscout's API v3, as AndroidAPS (NSClientV3) uses it: version, status, lastModified,
//! search, create, read, update, patch, delete (soft, reported by history) and history, in
//! the `{status, result}` envelope.
//!
//! Every record's `srvModified` is the server time of its last change through any API, so a
//! v1 upload shows in v3's history (Nightscout gives v1 documents their own `date` instead,
//! and AndroidAPS never sees a late upload of an old reading).

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use glucosync_domain::nightscout::{
    document_from_upload, document_json, entry_from_upload, entry_json, other_entry_json,
    parse_reading_object_id, reading_object_id, time_window, treatment_from_upload, treatment_json,
    EntryUpload, FindFilter, FindOp, Object,
};
use glucosync_domain::readings::Reading;
use glucosync_domain::treatments::Treatment;
use glucosync_domain::ValidationError;
use glucosync_store::{Document, DocumentCollection, InsertOutcome, NewDocument, UserId};
use serde_json::{json, Value};

use super::access::{authorize, NsCaller, Presented};
use super::v1::{scan_documents, scan_readings, scan_treatments, Scan, NIGHTSCOUT_API_VERSION};
use super::NsRequest;
use crate::error::ApiError;
use crate::state::{now_ms, AppState};

pub const API_VERSION: &str = "3.0.5";
const MAX_LIMIT: usize = 1000;
/// The largest upload: a history page never splits the records of one server time, so it may
/// hold this many.
const LARGEST_GROUP: usize = glucosync_domain::limits::MAX_READINGS_PER_BATCH;
const RESERVED: [&str; 8] = [
    "token",
    "secret",
    "sort",
    "sort$desc",
    "limit",
    "skip",
    "fields",
    "now",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Collection {
    Entries,
    Treatments,
    Documents(DocumentCollection),
}

impl Collection {
    pub(super) const ALL: [(&'static str, Collection); 6] = [
        (
            "devicestatus",
            Collection::Documents(DocumentCollection::DeviceStatus),
        ),
        ("entries", Collection::Entries),
        ("food", Collection::Documents(DocumentCollection::Food)),
        (
            "profile",
            Collection::Documents(DocumentCollection::Profile),
        ),
        (
            "settings",
            Collection::Documents(DocumentCollection::Settings),
        ),
        ("treatments", Collection::Treatments),
    ];

    fn parse(name: &str) -> Result<Self, ApiError> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
            .ok_or(ApiError::NotFound("Nightscout collection"))
    }

    fn may_write(self, caller: &NsCaller) -> bool {
        match self {
            Collection::Entries => caller.rights.entries,
            _ => caller.rights.treatments,
        }
    }

    fn time_fields(self) -> &'static [&'static str] {
        match self {
            Collection::Entries => &["date", "dateString", "mills"],
            Collection::Treatments => &["created_at", "date", "mills", "timestamp"],
            Collection::Documents(_) => &["date", "created_at", "mills", "startDate"],
        }
    }
}

pub(crate) async fn handle(
    state: &AppState,
    handle: &str,
    request: &NsRequest,
    segments: &[&str],
) -> Response {
    match route(state, handle, request, segments).await {
        Ok(response) => response,
        Err(e) => envelope_error(e),
    }
}

/// Nightscout v3's error envelope (`{"status", "message"}`), which AndroidAPS reads.
fn envelope_error(e: ApiError) -> Response {
    let (status, _, detail) = e.parts();
    let message = match &e {
        ApiError::Unauthenticated => "Missing or bad access token or JWT".to_owned(),
        ApiError::Validation(problems) => problems
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
        ApiError::Internal(_) | ApiError::Unavailable(_) => {
            // Logged there; the client gets the generic sentence.
            drop(e.into_response());
            detail
        }
        _ => detail,
    };
    (
        status,
        Json(json!({"status": status.as_u16(), "message": message})),
    )
        .into_response()
}

fn ok(result: Value) -> Response {
    Json(json!({"status": 200, "result": result})).into_response()
}

async fn route(
    state: &AppState,
    handle: &str,
    request: &NsRequest,
    segments: &[&str],
) -> Result<Response, ApiError> {
    if segments == ["version"] {
        return Ok(ok(version_fields()));
    }
    let presented = Presented::from_request(&request.headers, &request.query);
    let caller = authorize(state, handle, &presented).await?;
    let method = &request.method;
    match segments {
        ["status"] if method == Method::GET => Ok(status(&caller)),
        ["lastModified"] if method == Method::GET => last_modified(state, &caller).await,
        [name] => {
            let collection = Collection::parse(name)?;
            match *method {
                Method::GET => search(state, &caller, request, collection).await,
                Method::POST => create(state, &caller, request, collection).await,
                _ => Err(ApiError::NotFound("Nightscout API path")),
            }
        }
        [name, "history", since] if method == Method::GET => {
            let since = since
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .ok_or_else(|| bad("lastModified", "must be a time in epoch milliseconds"))?;
            history(
                state,
                &caller,
                request,
                Collection::parse(name)?,
                since as i64,
            )
            .await
        }
        [name, id] => {
            let collection = Collection::parse(name)?;
            match *method {
                Method::GET => read(state, &caller, collection, id).await,
                Method::PUT => update(state, &caller, request, collection, id).await,
                Method::PATCH => patch(state, &caller, request, collection, id).await,
                Method::DELETE => delete(state, &caller, collection, id).await,
                _ => Err(ApiError::NotFound("Nightscout API path")),
            }
        }
        _ => Err(ApiError::NotFound("Nightscout API path")),
    }
}

fn bad(field: &str, message: &str) -> ApiError {
    ApiError::validation(ValidationError::new(field, message))
}

fn version_fields() -> Value {
    json!({
        "version": NIGHTSCOUT_API_VERSION,
        "apiVersion": API_VERSION,
        "srvDate": now_ms(),
        "storage": {"storage": "glucosync", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// AndroidAPS uploads only when every collection says `crud`.
fn status(caller: &NsCaller) -> Response {
    let mut permissions = serde_json::Map::new();
    for (name, collection) in Collection::ALL {
        let write = collection.may_write(caller);
        let letters: String = [
            (write, 'c'),
            (caller.rights.read, 'r'),
            (write, 'u'),
            (write, 'd'),
        ]
        .iter()
        .filter(|(held, _)| *held)
        .map(|(_, l)| *l)
        .collect();
        if !letters.is_empty() {
            permissions.insert(name.into(), letters.into());
        }
    }
    let mut result = version_fields();
    result["apiPermissions"] = Value::Object(permissions);
    ok(result)
}

async fn last_modified(state: &AppState, caller: &NsCaller) -> Result<Response, ApiError> {
    caller.require(caller.rights.read, "read")?;
    let last = state.store.last_changes(caller.owner()).await?;
    let doc = |c: DocumentCollection| {
        last.documents
            .iter()
            .find(|(d, _)| *d == c)
            .map(|(_, ms)| *ms)
    };
    let mut collections = serde_json::Map::new();
    let mut put = |name: &str, values: &[Option<i64>]| {
        if let Some(ms) = values.iter().flatten().max() {
            collections.insert(name.into(), (*ms).into());
        }
    };
    put(
        "entries",
        &[
            last.readings,
            doc(DocumentCollection::OtherEntries),
            doc(DocumentCollection::DeletedEntries),
        ],
    );
    put(
        "treatments",
        &[last.treatments, doc(DocumentCollection::DeletedTreatments)],
    );
    for (name, c) in [
        ("devicestatus", DocumentCollection::DeviceStatus),
        ("profile", DocumentCollection::Profile),
        ("food", DocumentCollection::Food),
        ("settings", DocumentCollection::Settings),
    ] {
        put(name, &[doc(c)]);
    }
    Ok(ok(json!({"srvDate": now_ms(), "collections": collections})))
}

// ---- the v3 form of records

fn with_server_fields(mut o: Object, id: &str, created: i64, modified: i64, valid: bool) -> Object {
    o.insert("identifier".into(), id.into());
    o.insert("srvCreated".into(), created.into());
    o.insert("srvModified".into(), modified.into());
    o.insert("isValid".into(), valid.into());
    o
}

fn reading_v3(r: &Reading, delta: Option<f64>) -> Object {
    let id = reading_object_id(r.id);
    with_server_fields(entry_json(r, delta), &id, r.created_ms, r.created_ms, true)
}

fn treatment_v3(t: &Treatment) -> Object {
    with_server_fields(treatment_json(t), &t.id, t.created_ms, t.updated_ms, true)
}

fn document_v3(collection: Collection, d: &Document) -> Object {
    let base = match collection {
        Collection::Entries => other_entry_json(&d.id, &d.body),
        _ => {
            let mut o = document_json(&d.id, d.time_ms, &d.body);
            o.entry("date").or_insert_with(|| d.time_ms.into());
            o
        }
    };
    with_server_fields(base, &d.id, d.created_ms, d.modified_ms, !d.deleted)
}

fn tombstone(d: &Document) -> Object {
    let mut o = Object::new();
    o.insert("date".into(), d.time_ms.into());
    with_server_fields(o, &d.id, d.created_ms, d.modified_ms, false)
}

// ---- search

/// `field=value` and `field$op=value` filters (v3's syntax), as the v1 filter type.
fn v3_filters(request: &NsRequest) -> Result<Vec<FindFilter>, ApiError> {
    let mut filters = Vec::new();
    for (key, value) in &request.query {
        if RESERVED.contains(&key.as_str()) {
            continue;
        }
        let (field, op) = match key.split_once('$') {
            None => (key.as_str(), FindOp::Eq),
            Some((field, op)) => (
                field,
                match op {
                    "eq" => FindOp::Eq,
                    "ne" => FindOp::Ne,
                    "gt" => FindOp::Gt,
                    "gte" => FindOp::Gte,
                    "lt" => FindOp::Lt,
                    "lte" => FindOp::Lte,
                    "in" => FindOp::In,
                    "nin" => FindOp::Nin,
                    other => return Err(bad(key, &format!("Unsupported filter operator {other}"))),
                },
            ),
        };
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(value);
        filters.push(FindFilter {
            field: field.to_owned(),
            op,
            value: value.to_owned(),
        });
    }
    Ok(filters)
}

fn number_param(
    request: &NsRequest,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match request.param(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= max && (name != "limit" || *n >= 1))
            .ok_or_else(|| bad(name, &format!("Parameter {name} out of tolerance"))),
    }
}

/// Keeps only the `fields` asked for (`_all`, the default, keeps everything).
fn project(items: Vec<Object>, request: &NsRequest) -> Vec<Value> {
    let fields: Option<Vec<&str>> = request
        .param("fields")
        .filter(|f| *f != "_all" && !f.is_empty())
        .map(|f| f.split(',').map(str::trim).collect());
    items
        .into_iter()
        .map(|o| match &fields {
            None => Value::Object(o),
            Some(fields) => Value::Object(
                o.into_iter()
                    .filter(|(k, _)| fields.contains(&k.as_str()))
                    .collect(),
            ),
        })
        .collect()
}

async fn search(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    collection: Collection,
) -> Result<Response, ApiError> {
    caller.require(caller.rights.read, "read")?;
    let filters = v3_filters(request)?;
    let descending = match (request.param("sort"), request.param("sort$desc")) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "sort",
                "Parameters sort and sort_desc cannot be combined",
            ))
        }
        (_, Some(_)) => true,
        _ => false,
    };
    let limit = number_param(request, "limit", MAX_LIMIT, MAX_LIMIT)?;
    let skip = number_param(request, "skip", 0, usize::MAX)?;
    let wanted = limit.saturating_add(skip);
    let (from, to) = time_window(&filters, collection.time_fields());
    let window = (from.max(0), to);
    let owner = caller.owner();
    let items = match collection {
        Collection::Entries => {
            let mut items = scan_readings(
                state,
                owner,
                window,
                &filters,
                wanted,
                descending,
                &reading_v3,
            )
            .await?;
            let others = scan_documents(
                state,
                owner,
                DocumentCollection::OtherEntries,
                &Scan {
                    window,
                    filters: &filters,
                    count: wanted,
                    descending,
                },
                &|d| document_v3(Collection::Entries, d),
            )
            .await?;
            if !others.is_empty() {
                items.extend(others);
                items.sort_by_key(|o| o.get("date").and_then(Value::as_i64));
                if descending {
                    items.reverse();
                }
            }
            items
        }
        Collection::Treatments => {
            scan_treatments(state, owner, &filters, wanted, descending, &treatment_v3).await?
        }
        Collection::Documents(c) => {
            scan_documents(
                state,
                owner,
                c,
                &Scan {
                    window,
                    filters: &filters,
                    count: wanted,
                    descending,
                },
                &|d| document_v3(collection, d),
            )
            .await?
        }
    };
    let items: Vec<Object> = items.into_iter().skip(skip).take(limit).collect();
    caller.record_read(state, "nightscout.v3").await?;
    Ok(ok(Value::Array(project(items, request))))
}

// ---- create, read, update, patch, delete

fn body_object(request: &NsRequest) -> Result<Object, ApiError> {
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(o)) if !o.is_empty() => Ok(o),
        _ => Err(ApiError::bad_request(
            "bad_body",
            "Bad or missing request body",
        )),
    }
}

fn created(collection: &str, id: &str, inserted: bool) -> Response {
    let now = now_ms();
    if inserted {
        let mut r = (
            StatusCode::CREATED,
            Json(json!({"status": 201, "identifier": id, "lastModified": now})),
        )
            .into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("/api/v3/{collection}/{id}")) {
            r.headers_mut().insert(header::LOCATION, location);
        }
        r
    } else {
        Json(json!({"status": 200, "identifier": id, "isDeduplication": true, "lastModified": now}))
            .into_response()
    }
}

fn collection_name(collection: Collection) -> &'static str {
    Collection::ALL
        .iter()
        .find(|(_, c)| *c == collection)
        .map(|(n, _)| *n)
        .unwrap_or("entries")
}

async fn create(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    collection: Collection,
) -> Result<Response, ApiError> {
    caller.require(collection.may_write(caller), "create")?;
    let doc = body_object(request)?;
    let now = now_ms();
    let owner = caller.owner();
    let name = collection_name(collection);
    match collection {
        Collection::Entries => match entry_from_upload(&doc, now).map_err(ApiError::validation)? {
            EntryUpload::Reading(r) => {
                let readings = vec![r];
                let after =
                    crate::api::readings::AfterUpload::before_store(state, owner, &readings);
                let stored = state.store.insert_entries(owner, readings, now).await?;
                let first = stored.into_iter().next().ok_or_else(|| {
                    ApiError::Internal("an upload of one entry stored none".into())
                })?;
                let inserted = u64::from(first.inserted);
                after
                    .stored(
                        state,
                        InsertOutcome {
                            inserted,
                            duplicates: 1 - inserted,
                        },
                    )
                    .await;
                let id = first
                    .id
                    .parse::<i64>()
                    .map(reading_object_id)
                    .unwrap_or(first.id);
                Ok(created(name, &id, first.inserted))
            }
            EntryUpload::Other { id, time_ms, body } => {
                let stored = state
                    .store
                    .insert_documents(
                        owner,
                        DocumentCollection::OtherEntries,
                        vec![NewDocument {
                            id,
                            time_ms,
                            body: Value::Object(body).to_string(),
                        }],
                        now,
                    )
                    .await?;
                let first = stored.into_iter().next().ok_or_else(|| {
                    ApiError::Internal("an upload of one document stored none".into())
                })?;
                Ok(created(name, &first.id, first.inserted))
            }
        },
        Collection::Treatments => {
            let treatments = treatment_from_upload(&doc, now).map_err(ApiError::validation)?;
            let newest = treatments.iter().map(|t| t.time.utc_ms).max();
            state.forecaster.forget_history(owner);
            let stored = state
                .store
                .insert_nightscout_treatments(owner, treatments, now)
                .await?;
            let first = stored.first().cloned().ok_or_else(|| {
                ApiError::Internal("an upload of one treatment stored none".into())
            })?;
            if stored.iter().any(|s| s.inserted) {
                super::v1::treatments_stored(state, owner, newest).await;
            }
            Ok(created(name, &first.id, first.inserted))
        }
        Collection::Documents(c) => {
            let (id, time_ms, body) =
                document_from_upload(&doc, &["date", "created_at", "mills"], now)
                    .map_err(ApiError::validation)?;
            let stored = state
                .store
                .insert_documents(
                    owner,
                    c,
                    vec![NewDocument {
                        id,
                        time_ms,
                        body: Value::Object(body).to_string(),
                    }],
                    now,
                )
                .await?;
            let first = stored.into_iter().next().ok_or_else(|| {
                ApiError::Internal("an upload of one document stored none".into())
            })?;
            if first.inserted {
                super::documents_changed(state, owner, c).await;
            }
            Ok(created(name, &first.id, first.inserted))
        }
    }
}

/// The record with this identifier in its v3 form: `Ok(None)` when there is none, `Err(410)`
/// when it was deleted.
async fn find(
    state: &AppState,
    owner: UserId,
    collection: Collection,
    id: &str,
) -> Result<Option<Object>, ApiError> {
    let gone = |deleted: Option<Document>| match deleted {
        Some(_) => Err(ApiError::Gone),
        None => Ok(None),
    };
    match collection {
        Collection::Entries => {
            if let Some(rid) = parse_reading_object_id(id) {
                if let Some(r) = state.store.reading(owner, rid).await? {
                    return Ok(Some(reading_v3(&r, None)));
                }
            }
            match state
                .store
                .document(owner, DocumentCollection::OtherEntries, id)
                .await?
            {
                Some(d) if !d.deleted => Ok(Some(document_v3(collection, &d))),
                Some(d) => gone(Some(d)),
                None => gone(
                    state
                        .store
                        .document(owner, DocumentCollection::DeletedEntries, id)
                        .await?,
                ),
            }
        }
        Collection::Treatments => match state.store.treatment(owner, id).await? {
            Some(t) => Ok(Some(treatment_v3(&t))),
            None => gone(
                state
                    .store
                    .document(owner, DocumentCollection::DeletedTreatments, id)
                    .await?,
            ),
        },
        Collection::Documents(c) => match state.store.document(owner, c, id).await? {
            Some(d) if !d.deleted => Ok(Some(document_v3(collection, &d))),
            other => gone(other),
        },
    }
}

async fn read(
    state: &AppState,
    caller: &NsCaller,
    collection: Collection,
    id: &str,
) -> Result<Response, ApiError> {
    caller.require(caller.rights.read, "read")?;
    let found = find(state, caller.owner(), collection, id)
        .await?
        .ok_or(ApiError::NotFound("document"))?;
    caller.record_read(state, "nightscout.v3").await?;
    Ok(ok(Value::Object(found)))
}

/// Stores `doc` as the record `id` (replacing or creating it).
async fn store_as(
    state: &AppState,
    owner: UserId,
    collection: Collection,
    id: &str,
    mut doc: Object,
) -> Result<(), ApiError> {
    let now = now_ms();
    match collection {
        Collection::Entries => Err(ApiError::validation(ValidationError::new(
            "identifier",
            "entries are not changed in place: delete the entry and create it again",
        ))),
        Collection::Treatments => {
            // The record keeps its identifier whatever the body says.
            for field in [
                "identifier",
                "_id",
                "syncIdentifier",
                "uuid",
                "pumpId",
                "id",
            ] {
                doc.remove(field);
            }
            doc.insert("identifier".into(), id.into());
            let mut treatments = treatment_from_upload(&doc, now).map_err(ApiError::validation)?;
            let newest = treatments.iter().map(|t| t.time.utc_ms).max();
            for (i, t) in treatments.iter_mut().enumerate() {
                t.id = if i == 0 {
                    id.to_owned()
                } else {
                    format!("{id}.carbs")
                };
                t.extra = t.extra.take().or_else(|| Some("{}".into()));
            }
            state.forecaster.forget_history(owner);
            for t in treatments {
                if state.store.treatment(owner, &t.id).await?.is_some() {
                    state.store.update_treatment(owner, t, now).await?;
                } else {
                    state
                        .store
                        .insert_nightscout_treatments(owner, vec![t], now)
                        .await?;
                }
            }
            super::v1::treatments_stored(state, owner, newest).await;
            Ok(())
        }
        Collection::Documents(c) => {
            let (_, time_ms, body) =
                document_from_upload(&doc, &["date", "created_at", "mills"], now)
                    .map_err(ApiError::validation)?;
            state
                .store
                .put_document(
                    owner,
                    c,
                    NewDocument {
                        id: id.to_owned(),
                        time_ms,
                        body: Value::Object(body).to_string(),
                    },
                    now,
                )
                .await?;
            super::documents_changed(state, owner, c).await;
            Ok(())
        }
    }
}

async fn update(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    collection: Collection,
    id: &str,
) -> Result<Response, ApiError> {
    caller.require(collection.may_write(caller), "update")?;
    let doc = body_object(request)?;
    let existed = find(state, caller.owner(), collection, id).await?.is_some();
    store_as(state, caller.owner(), collection, id, doc).await?;
    if existed {
        Ok(Json(json!({"status": 200, "lastModified": now_ms()})).into_response())
    } else {
        Ok(created(collection_name(collection), id, true))
    }
}

async fn patch(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    collection: Collection,
    id: &str,
) -> Result<Response, ApiError> {
    caller.require(collection.may_write(caller), "update")?;
    let changes = body_object(request)?;
    let owner = caller.owner();
    let mut current = find(state, owner, collection, id)
        .await?
        .ok_or(ApiError::NotFound("document"))?;
    if changes.get("isValid") == Some(&Value::Bool(false)) {
        // AndroidAPS invalidates a record by patching isValid: a deletion.
        remove(state, owner, collection, id).await?;
        return Ok(Json(json!({"status": 200, "lastModified": now_ms()})).into_response());
    }
    if collection == Collection::Entries {
        return Err(ApiError::validation(ValidationError::new(
            "identifier",
            "entries are not changed in place: delete the entry and create it again",
        )));
    }
    for (k, v) in changes {
        if !["identifier", "srvModified", "srvCreated", "_id"].contains(&k.as_str()) {
            current.insert(k, v);
        }
    }
    for server_field in ["srvModified", "srvCreated", "isValid", "mills", "_id"] {
        current.remove(server_field);
    }
    store_as(state, owner, collection, id, current).await?;
    Ok(Json(json!({"status": 200, "lastModified": now_ms()})).into_response())
}

/// Deletes the record; false when there was none.
async fn remove(
    state: &AppState,
    owner: UserId,
    collection: Collection,
    id: &str,
) -> Result<bool, ApiError> {
    let now = now_ms();
    match collection {
        Collection::Entries => {
            if let Some(rid) = parse_reading_object_id(id) {
                // The store leaves the tombstone history reports.
                if state.store.delete_reading(owner, rid).await? {
                    state.forecaster.forget_history(owner);
                    crate::live::publish(
                        state,
                        owner,
                        &[crate::live::data_changed_event(owner, "readings")],
                    )
                    .await;
                    return Ok(true);
                }
            }
            Ok(state
                .store
                .delete_documents(
                    owner,
                    DocumentCollection::OtherEntries,
                    &[id.to_owned()],
                    now,
                )
                .await?
                > 0)
        }
        Collection::Treatments => {
            let mut deleted = false;
            for tid in [id.to_owned(), format!("{id}.carbs")] {
                deleted |= state.store.delete_treatment(owner, &tid).await?;
            }
            if deleted {
                state.forecaster.forget_history(owner);
                crate::api::treatments::treatments_changed(state, owner).await;
            }
            Ok(deleted)
        }
        Collection::Documents(c) => {
            let deleted = state
                .store
                .delete_documents(owner, c, &[id.to_owned()], now)
                .await?
                > 0;
            if deleted {
                super::documents_changed(state, owner, c).await;
            }
            Ok(deleted)
        }
    }
}

async fn delete(
    state: &AppState,
    caller: &NsCaller,
    collection: Collection,
    id: &str,
) -> Result<Response, ApiError> {
    caller.require(collection.may_write(caller), "delete")?;
    if remove(state, caller.owner(), collection, id).await? {
        Ok(Json(json!({"status": 200})).into_response())
    } else {
        Err(ApiError::NotFound("document"))
    }
}

// ---- history

/// Every change after `since` (server time), oldest first, deletions included; at most
/// `limit`, except that the changes of one server time are never split between pages
/// (clients ask for the next page after the newest `srvModified` they got).
async fn history(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    collection: Collection,
    since: i64,
) -> Result<Response, ApiError> {
    caller.require(caller.rights.read, "read")?;
    let limit = number_param(request, "limit", MAX_LIMIT, MAX_LIMIT)?;
    let mut items = changes(
        state,
        caller.owner(),
        collection,
        since.saturating_add(1),
        limit + 1,
    )
    .await?;
    if items.len() > limit {
        let modified = |o: &Object| o.get("srvModified").and_then(Value::as_i64);
        let cut = modified(&items[limit]);
        items.truncate(limit);
        let whole: Vec<Object> = items
            .iter()
            .filter(|o| modified(o) != cut)
            .cloned()
            .collect();
        if whole.is_empty() {
            // One server time holds more than a page: send all of it.
            let at = cut.unwrap_or(since);
            items = changes(state, caller.owner(), collection, at, LARGEST_GROUP + 1)
                .await?
                .into_iter()
                .filter(|o| modified(o) == Some(at))
                .collect();
        } else {
            items = whole;
        }
    }
    let newest = items
        .iter()
        .filter_map(|o| o.get("srvModified").and_then(Value::as_i64))
        .max();
    caller.record_read(state, "nightscout.v3").await?;
    let mut response = ok(Value::Array(project(items, request)));
    if let Some(newest) = newest {
        let headers = response.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{newest}\"")) {
            headers.insert(header::ETAG, etag);
        }
        let date = chrono::DateTime::from_timestamp_millis(newest)
            .map(|d| d.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
        if let Some(Ok(date)) = date.map(|d| HeaderValue::from_str(&d)) {
            headers.insert(header::LAST_MODIFIED, date);
        }
    }
    Ok(response)
}

/// Changes at or after `from` in the order the server made them, at most `limit`.
pub(super) async fn changes(
    state: &AppState,
    owner: UserId,
    collection: Collection,
    from: i64,
    limit: usize,
) -> Result<Vec<Object>, ApiError> {
    let store = &state.store;
    let mut items: Vec<Object> = match collection {
        Collection::Entries => {
            let mut items: Vec<Object> = store
                .readings_stored_since(owner, from, limit)
                .await?
                .iter()
                .map(|r| reading_v3(r, None))
                .collect();
            items.extend(
                store
                    .documents_modified_since(owner, DocumentCollection::OtherEntries, from, limit)
                    .await?
                    .iter()
                    .map(|d| document_v3(collection, d)),
            );
            items.extend(
                store
                    .documents_modified_since(
                        owner,
                        DocumentCollection::DeletedEntries,
                        from,
                        limit,
                    )
                    .await?
                    .iter()
                    .map(tombstone),
            );
            items
        }
        Collection::Treatments => {
            let mut items: Vec<Object> = store
                .treatments_changed_since(owner, from, limit)
                .await?
                .iter()
                .map(treatment_v3)
                .collect();
            items.extend(
                store
                    .documents_modified_since(
                        owner,
                        DocumentCollection::DeletedTreatments,
                        from,
                        limit,
                    )
                    .await?
                    .iter()
                    .map(tombstone),
            );
            items
        }
        Collection::Documents(c) => store
            .documents_modified_since(owner, c, from, limit)
            .await?
            .iter()
            .map(|d| document_v3(collection, d))
            .collect(),
    };
    items.sort_by_key(|o| o.get("srvModified").and_then(Value::as_i64));
    items.truncate(limit);
    Ok(items)
}
