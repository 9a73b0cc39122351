//! Nightscout's API v1 (and v2's token exchange) on a person's site.

use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use glucosync_domain::limits::{MAX_READINGS_PER_BATCH, MAX_TREATMENTS_PER_BATCH};
use glucosync_domain::nightscout::{
    self as ns, document_from_upload, document_json, entry_from_upload, entry_json, find_filters,
    matches, other_entry_json, parse_reading_object_id, time_window, treatment_from_upload,
    treatment_json, EntryUpload, FindFilter, FindOp, Object,
};
use glucosync_domain::readings::{delta, NewReading, Reading, ReadingKind};
use glucosync_domain::treatments::NewTreatment;
use glucosync_domain::ValidationError;
use glucosync_store::{Cursor, DocumentCollection, InsertOutcome, NewDocument, RangeQuery, UserId};
use serde_json::{json, Value};

use super::access::{self, authorize, NsCaller, Presented, Principal};
use super::NsRequest;
use crate::error::ApiError;
use crate::state::{now_ms, AppState};

/// The most records one GET answers (Nightscout has no limit; a client asking for a year of
/// entries gets this many, newest first).
const MAX_COUNT: usize = 10_000;
/// Records examined for one GET at most, when filters other than time reject most of them.
const MAX_SCANNED: usize = 100_000;
const PAGE: usize = 1_000;
/// The Nightscout release whose API this implements, reported to clients that check it.
pub const NIGHTSCOUT_API_VERSION: &str = "15.0.3";

const ENTRY_TIME_FIELDS: [&str; 4] = ["date", "dateString", "sysTime", "mills"];
const TREATMENT_TIME_FIELDS: [&str; 4] = ["created_at", "date", "mills", "timestamp"];
const DOCUMENT_TIME_FIELDS: [&str; 3] = ["created_at", "date", "mills"];
const PROFILE_TIME_FIELDS: [&str; 4] = ["startDate", "created_at", "date", "mills"];

/// How a listing is sent: JSON (the default here; Nightscout answers TSV to a request without
/// an `Accept` header, its issue #8332), tab-separated text, or CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
    Csv,
}

/// `entries.json` → (`entries`, Json).
fn split_suffix(segment: &str) -> (&str, Option<Format>) {
    match segment.rsplit_once('.') {
        Some((name, "json")) => (name, Some(Format::Json)),
        Some((name, "csv")) => (name, Some(Format::Csv)),
        Some((name, "txt" | "tsv")) => (name, Some(Format::Text)),
        _ => (segment, None),
    }
}

fn accepted(request: &NsRequest) -> Format {
    let accept = request
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("json") || accept.is_empty() || accept.contains("*/*") {
        Format::Json
    } else if accept.contains("text/csv") {
        Format::Csv
    } else if accept.contains("text/plain") || accept.contains("text/tab-separated-values") {
        Format::Text
    } else {
        Format::Json
    }
}

pub(crate) async fn handle(
    state: &AppState,
    handle: &str,
    request: NsRequest,
) -> Result<Response, ApiError> {
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    if let ["v2", "authorization", "request", token] = segments.as_slice() {
        return authorization_request(state, token).await;
    }
    if let Some((&"v3", rest)) = segments.split_first() {
        return Ok(super::v3::handle(state, handle, &request, rest).await);
    }
    let presented = Presented::from_request(&request.headers, &request.query);
    if segments.first() == Some(&"v1") && segments.get(1) == Some(&"verifyauth") {
        let caller = authorize(state, handle, &presented).await.ok();
        return Ok(verifyauth(caller.as_ref()));
    }
    let caller = authorize(state, handle, &presented).await?;
    let Some((&"v1", rest)) = segments.split_first() else {
        return Err(ApiError::NotFound("Nightscout API path"));
    };
    let Some((first, tail)) = rest.split_first() else {
        return Err(ApiError::NotFound("Nightscout API path"));
    };
    // The suffix may end the collection (`entries.csv`) or what follows (`entries/sgv.csv`).
    let (collection, suffix) = split_suffix(first);
    let collection = collection.to_owned();
    let format = tail
        .last()
        .and_then(|t| split_suffix(t).1)
        .or(suffix)
        .unwrap_or_else(|| accepted(&request));
    let method = request.method.clone();
    match (collection.as_str(), &method) {
        ("entries", &Method::GET) => get_entries(state, &caller, &request, tail, format).await,
        ("entries", &Method::POST) => post_entries(state, &caller, &request).await,
        ("entries", &Method::DELETE) => delete_entries(state, &caller, &request, tail).await,
        ("treatments", &Method::GET) => get_treatments(state, &caller, &request, tail).await,
        ("treatments", &Method::POST) => post_treatments(state, &caller, &request).await,
        ("treatments", &Method::PUT) => put_treatment(state, &caller, &request).await,
        ("treatments", &Method::DELETE) => delete_treatments(state, &caller, &request, tail).await,
        ("devicestatus" | "food", &Method::GET) => {
            let c = documents_of(&collection);
            get_documents(state, &caller, &request, c, tail, 10).await
        }
        ("devicestatus" | "food", &Method::POST) => {
            post_documents(state, &caller, &request, documents_of(&collection)).await
        }
        ("devicestatus" | "food", &Method::DELETE) => {
            delete_documents(state, &caller, &request, documents_of(&collection), tail).await
        }
        ("profile" | "profiles", &Method::GET) => {
            get_profiles(state, &caller, &request, tail).await
        }
        ("profile" | "profiles", &Method::POST | &Method::PUT) => {
            put_profile(state, &caller, &request).await
        }
        ("profile" | "profiles", &Method::DELETE) => {
            delete_documents(state, &caller, &request, DocumentCollection::Profile, tail).await
        }
        ("status", &Method::GET) => status(state, &caller).await,
        ("experiments", &Method::GET) if tail == ["test"] => {
            caller.require(caller.rights.admin, "run the authorization test")?;
            Ok(Json(json!({"status": "ok"})).into_response())
        }
        _ => Err(ApiError::NotFound("Nightscout API path")),
    }
}

fn documents_of(collection: &str) -> DocumentCollection {
    match collection {
        "food" => DocumentCollection::Food,
        _ => DocumentCollection::DeviceStatus,
    }
}

// ---- auth endpoints

async fn authorization_request(state: &AppState, token: &str) -> Result<Response, ApiError> {
    let presented = Presented {
        token: Some(token.to_owned()),
        ..Presented::default()
    };
    let caller = authorize(state, access::ROOT_HANDLE, &presented).await?;
    let Principal::Token {
        credential_id,
        user_id,
        ..
    } = caller.principal
    else {
        return Err(ApiError::Unauthenticated);
    };
    let name = access::token_name(state, user_id, credential_id).await;
    let (jwt, claims) = access::issue_jwt(state, &name, &access::token_hash(token)?).await?;
    Ok(Json(json!({
        "token": jwt,
        "sub": claims.sub,
        "permissionGroups": [permissions(&caller)],
        "iat": claims.iat,
        "exp": claims.exp,
    }))
    .into_response())
}

/// The caller's rights as Nightscout permission strings.
fn permissions(caller: &NsCaller) -> Vec<String> {
    let r = caller.rights;
    if r.admin {
        return vec!["*".into()];
    }
    let mut p = Vec::new();
    if r.read {
        p.push("*:*:read".into());
    }
    if r.entries {
        p.push("api:entries:*".into());
    }
    if r.treatments {
        for c in ["treatments", "devicestatus", "profile", "food", "settings"] {
            p.push(format!("api:{c}:*"));
        }
    }
    p
}

fn verifyauth(caller: Option<&NsCaller>) -> Response {
    let rights = caller.map(|c| c.rights).unwrap_or_default();
    let role = caller.is_some_and(|c| c.principal != Principal::Anonymous);
    Json(json!({
        "status": 200,
        "message": {
            "canRead": rights.read,
            "canWrite": rights.entries || rights.treatments,
            "isAdmin": rights.admin,
            "message": if rights.read && role { "OK" } else { "UNAUTHORIZED" },
            "rolefound": if caller.is_some_and(|c| matches!(c.principal, Principal::Token { .. })) { "FOUND" } else { "NOTFOUND" },
            "permissions": if role { "ROLE" } else { "DEFAULT" },
        }
    }))
    .into_response()
}

async fn status(state: &AppState, caller: &NsCaller) -> Result<Response, ApiError> {
    caller.require(caller.rights.read, "read")?;
    let user = state
        .store
        .user_by_id(caller.owner())
        .await?
        .ok_or(ApiError::NotFound("person"))?;
    let s = &user.settings;
    let now = now_ms();
    let units = match s.display_unit {
        glucosync_domain::GlucoseUnit::MgDl => "mg/dl",
        glucosync_domain::GlucoseUnit::MmolL => "mmol",
    };
    Ok(Json(json!({
        "status": "ok",
        "name": "GlucoSync",
        "version": NIGHTSCOUT_API_VERSION,
        "glucosyncVersion": env!("CARGO_PKG_VERSION"),
        "serverTime": glucosync_domain::Timestamp::from_utc_ms(now).to_rfc3339_utc(),
        "serverTimeEpoch": now,
        "apiEnabled": true,
        "careportalEnabled": true,
        "boluscalcEnabled": false,
        "settings": {
            "units": units,
            "timeFormat": 24,
            "customTitle": "GlucoSync",
            "theme": "colors",
            "language": "en",
            "timezone": s.time_zone,
            "enable": ["careportal", "iob", "cob", "basal", "devicestatus"],
            "alarmTypes": ["simple"],
            "thresholds": {
                "bgHigh": s.high_threshold_mgdl,
                "bgTargetTop": s.target_high_mgdl,
                "bgTargetBottom": s.target_low_mgdl,
                "bgLow": s.urgent_low_mgdl,
            },
            "authDefaultRoles": if caller.site.public_read { "readable" } else { "denied" },
        },
        "extendedSettings": {"devicestatus": {"advanced": true}},
        "authorized": null,
        "runtimeState": "loaded",
    }))
    .into_response())
}

// ---- shared helpers

fn count_param(request: &NsRequest, default: usize) -> Result<usize, ApiError> {
    match request.param("count") {
        None => Ok(default),
        Some(c) => c
            .parse::<f64>()
            .ok()
            .filter(|c| c.is_finite() && *c >= 0.0)
            .map(|c| (c as usize).min(MAX_COUNT))
            .ok_or_else(|| ApiError::validation(ValidationError::new("count", "must be a number"))),
    }
}

fn filters(request: &NsRequest) -> Result<Vec<FindFilter>, ApiError> {
    find_filters(request.query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(ApiError::validation)
}

/// The body as a list of JSON objects: one object or an array of them.
fn objects(request: &NsRequest, max: usize) -> Result<Vec<Object>, ApiError> {
    let value: Value = serde_json::from_slice(&request.body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("The body is not JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    if items.len() > max {
        return Err(ApiError::validation(ValidationError::new(
            "body",
            format!("at most {max} items per request"),
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(o) => Ok(o),
            _ => Err(ApiError::item(
                i,
                ValidationError::new("body", "must be a JSON object"),
            )),
        })
        .collect()
}

fn listing(items: Vec<Object>, format: Format) -> Response {
    match format {
        Format::Json => {
            Json(Value::Array(items.into_iter().map(Value::Object).collect())).into_response()
        }
        Format::Text | Format::Csv => {
            let separator = if format == Format::Csv { ',' } else { '\t' };
            let body: Vec<String> = items.iter().map(|e| ns::entry_row(e, separator)).collect();
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                body.join("\n"),
            )
                .into_response()
        }
    }
}

fn window(filters: &[FindFilter], fields: &[&str]) -> (i64, i64) {
    let (from, to) = time_window(filters, fields);
    (from.max(0), to)
}

/// A page of a store listing after `after`, newest first when `descending`.
fn page_query(from: i64, to: i64, after: Option<Cursor>, descending: bool) -> RangeQuery {
    RangeQuery {
        from_ms: from,
        to_ms: to,
        after,
        limit: PAGE,
        descending,
    }
}

// ---- entries

/// The kinds of entries a path or filter asks for: `None` is every kind.
fn entry_types(tail: &[&str], filters: &mut Vec<FindFilter>) -> Option<Vec<String>> {
    let from_path = match tail
        .first()
        .map(|t| t.rsplit_once('.').map_or(*t, |(n, _)| n))
    {
        None => None,
        Some("current") => Some(vec!["sgv".to_owned()]),
        Some(kind @ ("sgv" | "mbg" | "cal")) => Some(vec![kind.to_owned()]),
        Some(other) => {
            // `entries/<id>`: that one entry.
            filters.push(FindFilter {
                field: "_id".into(),
                op: FindOp::Eq,
                value: other.to_owned(),
            });
            None
        }
    };
    let from_filter = filters
        .iter()
        .find(|f| f.field == "type" && matches!(f.op, FindOp::Eq | FindOp::In))
        .map(|f| {
            f.value
                .split(['|', ','])
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
    from_path.or(from_filter)
}

async fn get_entries(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    tail: &[&str],
    format: Format,
) -> Result<Response, ApiError> {
    caller.require(caller.rights.read, "read")?;
    let mut filters = filters(request)?;
    let types = entry_types(tail, &mut filters);
    let current = tail.first().is_some_and(|t| t.starts_with("current"));
    let count = if current {
        1
    } else {
        count_param(request, 10)?
    };
    if let Some(types) = &types {
        if !filters.iter().any(|f| f.field == "type") {
            filters.push(FindFilter {
                field: "type".into(),
                op: FindOp::In,
                value: types.join("|"),
            });
        }
    }
    let wants = |kind: &str| types.as_ref().is_none_or(|t| t.iter().any(|k| k == kind));
    let owner = caller.owner();
    let (from, to) = window(&filters, &ENTRY_TIME_FIELDS);
    let mut entries = Vec::new();
    if wants("sgv") || wants("mbg") {
        entries =
            scan_readings(state, owner, (from, to), &filters, count, true, &entry_json).await?;
    }
    let other_kinds = types
        .as_ref()
        .is_none_or(|t| t.iter().any(|k| k != "sgv" && k != "mbg"));
    if other_kinds {
        let others = scan_documents(
            state,
            owner,
            DocumentCollection::OtherEntries,
            &Scan {
                window: (from, to),
                filters: &filters,
                count,
                descending: true,
            },
            &|d| other_entry_json(&d.id, &d.body),
        )
        .await?;
        entries.extend(others);
        entries.sort_by_key(|e| std::cmp::Reverse(e.get("date").and_then(Value::as_i64)));
        entries.truncate(count);
    }
    caller.record_read(state, "nightscout.entries").await?;
    // `current` too: Nightscout answers the newest entry as an array of one.
    Ok(listing(entries, format))
}

/// Readings in `window` in Nightscout form (`to_json`, given the reading and, newest first,
/// its delta), that pass `filters`; at most `count`.
pub(super) async fn scan_readings(
    state: &AppState,
    owner: UserId,
    (from, to): (i64, i64),
    filters: &[FindFilter],
    count: usize,
    descending: bool,
    to_json: &(dyn Fn(&Reading, Option<f64>) -> Object + Sync),
) -> Result<Vec<Object>, ApiError> {
    let mut out = Vec::new();
    let mut after = None;
    let mut scanned = 0;
    while out.len() < count && scanned < MAX_SCANNED {
        let page = state
            .store
            .list_readings(owner, &page_query(from, to, after.clone(), descending))
            .await?;
        scanned += page.len();
        let last_page = page.len() < PAGE;
        let older = match page.iter().rev().find(|r| r.kind == ReadingKind::Cgm) {
            Some(oldest_cgm) if descending => previous_cgm(state, owner, oldest_cgm).await?,
            _ => None,
        };
        for (i, r) in page.iter().enumerate() {
            let d = match r.kind {
                ReadingKind::Cgm if descending => {
                    let previous = page[i + 1..]
                        .iter()
                        .find(|p| p.kind == ReadingKind::Cgm)
                        .or(older.as_ref());
                    delta(r, previous)
                }
                _ => None,
            };
            let entry = to_json(r, d);
            if matches(&entry, filters) {
                out.push(entry);
                if out.len() == count {
                    break;
                }
            }
        }
        match page.last() {
            Some(r) if !last_page => {
                after = Some(Cursor {
                    time_ms: r.time.utc_ms,
                    key: r.id.to_string(),
                })
            }
            _ => break,
        }
    }
    Ok(out)
}

/// The CGM reading before `r`, if recent enough to make a delta.
async fn previous_cgm(
    state: &AppState,
    owner: UserId,
    r: &Reading,
) -> Result<Option<Reading>, ApiError> {
    let query = RangeQuery {
        from_ms: r.time.utc_ms - 15 * 60_000,
        to_ms: r.time.utc_ms,
        after: None,
        limit: 20,
        descending: true,
    };
    Ok(state
        .store
        .list_readings(owner, &query)
        .await?
        .into_iter()
        .find(|p| p.kind == ReadingKind::Cgm))
}

/// What a listing asks for: the time window `[from, to)`, the filters, how many at most, in
/// which order.
pub(super) struct Scan<'a> {
    pub window: (i64, i64),
    pub filters: &'a [FindFilter],
    pub count: usize,
    pub descending: bool,
}

pub(super) async fn scan_documents(
    state: &AppState,
    owner: UserId,
    collection: DocumentCollection,
    scan: &Scan<'_>,
    to_json: &(dyn Fn(&glucosync_store::Document) -> Object + Sync),
) -> Result<Vec<Object>, ApiError> {
    let fetch = |query: RangeQuery| {
        let store = state.store.clone();
        async move { store.list_documents(owner, collection, &query).await }
    };
    let cursor = |d: &glucosync_store::Document| Cursor {
        time_ms: d.time_ms,
        key: d.id.clone(),
    };
    scan_pages(scan, fetch, cursor, to_json).await
}

/// Pages through a store listing in the scan's order, keeping the records whose Nightscout
/// form (`to_json`) passes the filters, until `count` are kept or `MAX_SCANNED` were read.
async fn scan_pages<T, Fut>(
    scan: &Scan<'_>,
    fetch: impl Fn(RangeQuery) -> Fut,
    cursor: impl Fn(&T) -> Cursor,
    to_json: &(dyn Fn(&T) -> Object + Sync),
) -> Result<Vec<Object>, ApiError>
where
    Fut: std::future::Future<Output = Result<Vec<T>, glucosync_store::StoreError>>,
{
    let (from, to) = scan.window;
    let mut out = Vec::new();
    let mut after = None;
    let mut scanned = 0;
    while out.len() < scan.count && scanned < MAX_SCANNED {
        let page = fetch(page_query(from, to, after.take(), scan.descending)).await?;
        scanned += page.len();
        for record in &page {
            let o = to_json(record);
            if matches(&o, scan.filters) {
                out.push(o);
                if out.len() == scan.count {
                    break;
                }
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(cursor(last)),
            _ => break,
        }
    }
    Ok(out)
}

async fn post_entries(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
) -> Result<Response, ApiError> {
    caller.require(caller.rights.entries, "upload entries")?;
    let uploaded = objects(request, MAX_READINGS_PER_BATCH)?;
    let now = now_ms();
    let mut readings: Vec<(usize, NewReading)> = Vec::new();
    let mut others: Vec<(usize, NewDocument)> = Vec::new();
    for (i, e) in uploaded.iter().enumerate() {
        match entry_from_upload(e, now).map_err(|err| ApiError::item(i, err))? {
            EntryUpload::Reading(r) => readings.push((i, r)),
            EntryUpload::Other { id, time_ms, body } => others.push((
                i,
                NewDocument {
                    id,
                    time_ms,
                    body: Value::Object(body).to_string(),
                },
            )),
        }
    }
    let owner = caller.owner();
    let mut ids = vec![String::new(); uploaded.len()];
    if !readings.is_empty() {
        let (positions, readings): (Vec<usize>, Vec<NewReading>) = readings.into_iter().unzip();
        let after = crate::api::readings::AfterUpload::before_store(state, owner, &readings);
        let stored = state.store.insert_entries(owner, readings, now).await?;
        let inserted = stored.iter().filter(|s| s.inserted).count() as u64;
        for (position, s) in positions.into_iter().zip(&stored) {
            let id =
                s.id.parse::<i64>()
                    .map(ns::reading_object_id)
                    .unwrap_or_default();
            ids[position] = id;
        }
        after
            .stored(
                state,
                InsertOutcome {
                    inserted,
                    duplicates: stored.len() as u64 - inserted,
                },
            )
            .await;
    }
    if !others.is_empty() {
        let (positions, documents): (Vec<usize>, Vec<NewDocument>) = others.into_iter().unzip();
        let stored = state
            .store
            .insert_documents(owner, DocumentCollection::OtherEntries, documents, now)
            .await?;
        for (position, s) in positions.into_iter().zip(stored) {
            ids[position] = s.id;
        }
    }
    Ok(echo_with_ids(uploaded, ids))
}

/// What uploads answer: 200 with the request's objects, in order, each with its `_id` (Loop
/// maps them back to its records by position and rejects anything else).
fn echo_with_ids(uploaded: Vec<Object>, ids: Vec<String>) -> Response {
    let answer: Vec<Value> = uploaded
        .into_iter()
        .zip(ids)
        .map(|(mut o, id)| {
            o.remove("secret");
            o.remove("token");
            o.insert("_id".into(), id.into());
            Value::Object(o)
        })
        .collect();
    (StatusCode::OK, Json(Value::Array(answer))).into_response()
}

async fn delete_entries(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    tail: &[&str],
) -> Result<Response, ApiError> {
    caller.require(caller.rights.entries, "delete entries")?;
    let mut filters = filters(request)?;
    let types = entry_types(tail, &mut filters);
    if filters.is_empty() && types.is_none() {
        return Err(ApiError::validation(ValidationError::new(
            "find",
            "say which entries to delete (find[...] or an id): deleting every entry at once is refused",
        )));
    }
    let owner = caller.owner();
    let (from, to) = window(&filters, &ENTRY_TIME_FIELDS);
    let wants = |kind: &str| types.as_ref().is_none_or(|t| t.iter().any(|k| k == kind));
    let mut deleted = 0u64;
    if wants("sgv") || wants("mbg") {
        for entry in scan_readings(
            state,
            owner,
            (from, to),
            &filters,
            MAX_COUNT,
            true,
            &entry_json,
        )
        .await?
        {
            let id = entry
                .get("_id")
                .and_then(Value::as_str)
                .and_then(parse_reading_object_id);
            if let Some(id) = id {
                deleted += u64::from(state.store.delete_reading(owner, id).await?);
            }
        }
    }
    let others = scan_documents(
        state,
        owner,
        DocumentCollection::OtherEntries,
        &Scan {
            window: (from, to),
            filters: &filters,
            count: MAX_COUNT,
            descending: true,
        },
        &|d| other_entry_json(&d.id, &d.body),
    )
    .await?;
    let ids: Vec<String> = others
        .iter()
        .filter_map(|o| o.get("_id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    deleted += state
        .store
        .delete_documents(owner, DocumentCollection::OtherEntries, &ids, now_ms())
        .await?;
    if deleted > 0 {
        state.forecaster.forget_history(owner);
        crate::live::publish(
            state,
            owner,
            &[crate::live::data_changed_event(owner, "readings")],
        )
        .await;
    }
    Ok(Json(json!({"n": deleted, "ok": 1})).into_response())
}

// ---- treatments

async fn get_treatments(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    tail: &[&str],
) -> Result<Response, ApiError> {
    caller.require(caller.rights.read, "read")?;
    let mut filters = filters(request)?;
    let default_count = if filters.is_empty() { 100 } else { 1000 };
    if let Some(id) = tail.first() {
        filters.push(FindFilter {
            field: "_id".into(),
            op: FindOp::Eq,
            value: (*id).to_owned(),
        });
    }
    let count = count_param(request, default_count)?;
    let items = scan_treatments(
        state,
        caller.owner(),
        &filters,
        count,
        true,
        &treatment_json,
    )
    .await?;
    caller.record_read(state, "nightscout.treatments").await?;
    Ok(listing(items, Format::Json))
}

pub(super) async fn scan_treatments(
    state: &AppState,
    owner: UserId,
    filters: &[FindFilter],
    count: usize,
    descending: bool,
    to_json: &(dyn Fn(&glucosync_domain::treatments::Treatment) -> Object + Sync),
) -> Result<Vec<Object>, ApiError> {
    let scan = Scan {
        window: window(filters, &TREATMENT_TIME_FIELDS),
        filters,
        count,
        descending,
    };
    let fetch = |query: RangeQuery| {
        let store = state.store.clone();
        async move { store.list_treatments(owner, &query).await }
    };
    let cursor = |t: &glucosync_domain::treatments::Treatment| Cursor {
        time_ms: t.time.utc_ms,
        key: t.id.clone(),
    };
    scan_pages(&scan, fetch, cursor, to_json).await
}

/// Parses uploaded treatments: for each, the GlucoSync treatments it becomes.
fn parse_treatments(uploaded: &[Object], now: i64) -> Result<Vec<Vec<NewTreatment>>, ApiError> {
    uploaded
        .iter()
        .enumerate()
        .map(|(i, t)| treatment_from_upload(t, now).map_err(|e| ApiError::item(i, e)))
        .collect()
}

pub(super) async fn treatments_stored(state: &AppState, owner: UserId, newest: Option<i64>) {
    if state.config.forecasts {
        if let Some(t) = newest {
            state.forecaster.treatments_changed(state, owner, t).await;
        }
    }
    crate::api::treatments::treatments_changed(state, owner).await;
}

async fn post_treatments(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
) -> Result<Response, ApiError> {
    caller.require(caller.rights.treatments, "upload treatments")?;
    let uploaded = objects(request, MAX_TREATMENTS_PER_BATCH)?;
    let now = now_ms();
    let parsed = parse_treatments(&uploaded, now)?;
    let sizes: Vec<usize> = parsed.iter().map(Vec::len).collect();
    let flat: Vec<NewTreatment> = parsed.into_iter().flatten().collect();
    let newest = flat.iter().map(|t| t.time.utc_ms).max();
    let owner = caller.owner();
    state.forecaster.forget_history(owner);
    let stored = state
        .store
        .insert_nightscout_treatments(owner, flat, now)
        .await?;
    let mut ids = Vec::with_capacity(uploaded.len());
    let mut at = 0;
    for size in sizes {
        ids.push(stored[at].id.clone());
        at += size;
    }
    if stored.iter().any(|s| s.inserted) {
        treatments_stored(state, owner, newest).await;
    }
    Ok(echo_with_ids(uploaded, ids))
}

/// Nightscout's PUT: replace the treatment with the body's `_id` (or client identifier), or
/// create it (xDrip+ uploads every treatment this way).
async fn put_treatment(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
) -> Result<Response, ApiError> {
    caller.require(caller.rights.treatments, "change treatments")?;
    let uploaded = objects(request, MAX_TREATMENTS_PER_BATCH)?;
    let now = now_ms();
    let parsed = parse_treatments(&uploaded, now)?;
    let owner = caller.owner();
    state.forecaster.forget_history(owner);
    let mut ids = Vec::with_capacity(uploaded.len());
    let mut newest = None;
    for treatments in parsed {
        let mut first_id = None;
        for mut t in treatments {
            // A Loop edit names the treatment by the `_id` it was given.
            newest = newest.max(Some(t.time.utc_ms));
            let existing = state.store.treatment(owner, &t.id).await?;
            let id = t.id.clone();
            if existing.is_some() {
                t.extra = t.extra.or_else(|| Some("{}".into()));
                state.store.update_treatment(owner, t, now).await?;
            } else {
                state
                    .store
                    .insert_nightscout_treatments(owner, vec![t], now)
                    .await?;
            }
            first_id.get_or_insert(id);
        }
        ids.push(first_id.unwrap_or_default());
    }
    treatments_stored(state, owner, newest).await;
    Ok(echo_with_ids(uploaded, ids))
}

async fn delete_treatments(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    tail: &[&str],
) -> Result<Response, ApiError> {
    caller.require(caller.rights.treatments, "delete treatments")?;
    let owner = caller.owner();
    let ids: Vec<String> = match tail.first() {
        Some(id) => vec![(*id).to_owned()],
        None => {
            let filters = filters(request)?;
            if filters.is_empty() {
                return Err(ApiError::validation(ValidationError::new(
                    "find",
                    "say which treatments to delete (find[...] or an id)",
                )));
            }
            scan_treatments(state, owner, &filters, MAX_COUNT, true, &treatment_json)
                .await?
                .iter()
                .filter_map(|o| o.get("_id").and_then(Value::as_str).map(str::to_owned))
                .collect()
        }
    };
    let mut deleted = 0u64;
    for id in &ids {
        // The carbs of a Nightscout meal bolus go with it.
        for tid in [id.clone(), format!("{id}.carbs")] {
            deleted += u64::from(state.store.delete_treatment(owner, &tid).await?);
        }
    }
    if deleted > 0 {
        state.forecaster.forget_history(owner);
        crate::api::treatments::treatments_changed(state, owner).await;
    }
    Ok(Json(json!({"n": deleted, "ok": 1})).into_response())
}

// ---- devicestatus, food, profile: documents

async fn get_documents(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    collection: DocumentCollection,
    tail: &[&str],
    default_count: usize,
) -> Result<Response, ApiError> {
    caller.require(caller.rights.read, "read")?;
    let mut filters = filters(request)?;
    if let Some(id) = tail.first() {
        filters.push(FindFilter {
            field: "_id".into(),
            op: FindOp::Eq,
            value: (*id).to_owned(),
        });
    }
    let count = count_param(request, default_count)?;
    let items = scan_documents(
        state,
        caller.owner(),
        collection,
        &Scan {
            window: window(&filters, &DOCUMENT_TIME_FIELDS),
            filters: &filters,
            count,
            descending: true,
        },
        &|d| document_json(&d.id, d.time_ms, &d.body),
    )
    .await?;
    caller
        .record_read(state, &format!("nightscout.{}", collection.as_str()))
        .await?;
    Ok(listing(items, Format::Json))
}

async fn post_documents(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    collection: DocumentCollection,
) -> Result<Response, ApiError> {
    caller.require(caller.rights.treatments, "upload device status")?;
    let uploaded = objects(request, MAX_TREATMENTS_PER_BATCH)?;
    let now = now_ms();
    let documents = uploaded
        .iter()
        .enumerate()
        .map(|(i, d)| {
            document_from_upload(d, &DOCUMENT_TIME_FIELDS, now)
                .map(|(id, time_ms, body)| NewDocument {
                    id,
                    time_ms,
                    body: Value::Object(body).to_string(),
                })
                .map_err(|e| ApiError::item(i, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let owner = caller.owner();
    let stored = state
        .store
        .insert_documents(owner, collection, documents, now)
        .await?;
    if stored.iter().any(|s| s.inserted) {
        super::documents_changed(state, owner, collection).await;
    }
    Ok(echo_with_ids(
        uploaded,
        stored.into_iter().map(|s| s.id).collect(),
    ))
}

async fn delete_documents(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    collection: DocumentCollection,
    tail: &[&str],
) -> Result<Response, ApiError> {
    caller.require(caller.rights.treatments, "delete")?;
    let owner = caller.owner();
    let ids: Vec<String> = match tail.first() {
        Some(id) => vec![(*id).to_owned()],
        None => {
            let filters = filters(request)?;
            if filters.is_empty() {
                return Err(ApiError::validation(ValidationError::new(
                    "find",
                    "say which documents to delete (find[...] or an id)",
                )));
            }
            scan_documents(
                state,
                owner,
                collection,
                &Scan {
                    window: window(&filters, &DOCUMENT_TIME_FIELDS),
                    filters: &filters,
                    count: MAX_COUNT,
                    descending: true,
                },
                &|d| document_json(&d.id, d.time_ms, &d.body),
            )
            .await?
            .iter()
            .filter_map(|o| o.get("_id").and_then(Value::as_str).map(str::to_owned))
            .collect()
        }
    };
    let deleted = state
        .store
        .delete_documents(owner, collection, &ids, now_ms())
        .await?;
    if deleted > 0 {
        super::documents_changed(state, owner, collection).await;
    }
    Ok(Json(json!({"n": deleted, "ok": 1})).into_response())
}

async fn get_profiles(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
    tail: &[&str],
) -> Result<Response, ApiError> {
    caller.require(caller.rights.read, "read")?;
    let current = tail.first().is_some_and(|t| t.starts_with("current"));
    let filters = filters(request)?;
    let count = if current {
        1
    } else {
        count_param(request, 100)?
    };
    let items = scan_documents(
        state,
        caller.owner(),
        DocumentCollection::Profile,
        &Scan {
            window: window(&filters, &PROFILE_TIME_FIELDS),
            filters: &filters,
            count,
            descending: true,
        },
        &|d| document_json(&d.id, d.time_ms, &d.body),
    )
    .await?;
    caller.record_read(state, "nightscout.profile").await?;
    if current {
        // `profile/current` is the newest profile document itself, not an array.
        return Ok(match items.into_iter().next() {
            Some(p) => Json(Value::Object(p)).into_response(),
            None => Json(json!({})).into_response(),
        });
    }
    Ok(listing(items, Format::Json))
}

/// Profiles are replaced whole (Nightscout's PUT and POST both store the document).
async fn put_profile(
    state: &AppState,
    caller: &NsCaller,
    request: &NsRequest,
) -> Result<Response, ApiError> {
    caller.require(caller.rights.treatments, "change profiles")?;
    let uploaded = objects(request, 100)?;
    let now = now_ms();
    let owner = caller.owner();
    let mut ids = Vec::with_capacity(uploaded.len());
    for (i, p) in uploaded.iter().enumerate() {
        let (id, time_ms, body) =
            document_from_upload(p, &PROFILE_TIME_FIELDS, now).map_err(|e| ApiError::item(i, e))?;
        state
            .store
            .put_document(
                owner,
                DocumentCollection::Profile,
                NewDocument {
                    id: id.clone(),
                    time_ms,
                    body: Value::Object(body).to_string(),
                },
                now,
            )
            .await?;
        ids.push(id);
    }
    super::documents_changed(state, owner, DocumentCollection::Profile).await;
    Ok(echo_with_ids(uploaded, ids))
}
