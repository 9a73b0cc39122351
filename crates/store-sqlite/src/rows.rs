//! Mapping between rows and domain records.

use glucosync_domain::accounts::Scope;
use glucosync_domain::readings::{Reading, ReadingKind, TrendDirection};
use glucosync_domain::treatments::Treatment;
use glucosync_domain::{GlucoseMgdl, Timestamp};
use glucosync_store::columns::TreatmentColumns;
use glucosync_store::{Credential, CredentialKind, StoreError, User};
use rusqlite::Row;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    user_from_row_at(r, 0)
}

pub(crate) fn user_from_row_at(r: &Row<'_>, at: usize) -> rusqlite::Result<User> {
    let settings: String = r.get(at + 5)?;
    Ok(User {
        id: r.get(at)?,
        email: r.get(at + 1)?,
        display_name: r.get(at + 2)?,
        is_admin: r.get(at + 3)?,
        disabled: r.get(at + 4)?,
        // Settings are validated before they are stored; a document from a newer version keeps
        // the keys this version knows.
        settings: serde_json::from_str(&settings).unwrap_or_default(),
        created_ms: r.get(at + 6)?,
        deletion_due_ms: r.get(at + 7)?,
    })
}

pub(crate) fn credential_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Credential> {
    let kind: String = r.get(at + 2)?;
    let scopes: String = r.get(at + 6)?;
    Ok(Credential {
        id: r.get(at)?,
        user_id: r.get(at + 1)?,
        // The CHECK constraint admits only the two known kinds.
        kind: CredentialKind::parse(&kind).unwrap_or(CredentialKind::ApiToken),
        name: r.get(at + 3)?,
        token_hash: r.get(at + 4)?,
        csrf_hash: r.get(at + 5)?,
        scopes: Scope::split(&scopes),
        created_ms: r.get(at + 7)?,
        last_used_ms: r.get(at + 8)?,
        expires_ms: r.get(at + 9)?,
    })
}

pub(crate) fn reading_from_row(r: &Row<'_>) -> rusqlite::Result<Reading> {
    let kind: String = r.get(3)?;
    let trend: Option<String> = r.get(6)?;
    Ok(Reading {
        id: r.get(0)?,
        time: Timestamp {
            utc_ms: r.get(1)?,
            offset_minutes: r.get(2)?,
        },
        kind: ReadingKind::parse(&kind).unwrap_or_default(),
        device: r.get(4)?,
        value: GlucoseMgdl::from_stored(r.get(5)?),
        trend: trend.as_deref().and_then(TrendDirection::parse),
        extra: r.get(7)?,
        created_ms: r.get(8)?,
    })
}

/// Columns in the order of `TREATMENT_COLUMNS`.
pub(crate) fn treatment_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Treatment, StoreError>> {
    let columns = TreatmentColumns {
        kind: r.get(3)?,
        units: r.get(4)?,
        insulin_type: r.get(5)?,
        insulin_name: r.get(6)?,
        grams: r.get(7)?,
        minutes: r.get(8)?,
        intensity: r.get(9)?,
        text: r.get(10)?,
        units_per_hour: r.get(11)?,
    };
    let (id, utc_ms, offset_minutes, created_ms, updated_ms, extra) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
    );
    Ok(columns.into_detail().map(|detail| Treatment {
        id,
        time: Timestamp {
            utc_ms,
            offset_minutes,
        },
        detail,
        extra,
        created_ms,
        updated_ms,
    }))
}
