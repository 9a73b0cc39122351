//! Mapping between rows and domain records.

use glucosync_domain::accounts::Scope;
use glucosync_domain::readings::{Reading, ReadingKind, TrendDirection};
use glucosync_domain::treatments::{
    ExerciseIntensity, InsulinType, NewTreatment, Treatment, TreatmentDetail,
};
use glucosync_domain::{GlucoseMgdl, Timestamp};
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
    })
}

/// Column values of a treatment's detail; `None` where the kind has no such field.
#[derive(Default)]
pub(crate) struct TreatmentColumns {
    pub kind: &'static str,
    pub units: Option<f64>,
    pub insulin_type: Option<&'static str>,
    pub insulin_name: Option<String>,
    pub grams: Option<f64>,
    pub minutes: Option<f64>,
    pub intensity: Option<&'static str>,
    pub text: Option<String>,
    pub units_per_hour: Option<f64>,
}

pub(crate) fn treatment_params(t: &NewTreatment) -> TreatmentColumns {
    let kind = t.detail.kind().as_str();
    match &t.detail {
        TreatmentDetail::Insulin {
            units,
            insulin_type,
            insulin_name,
        } => TreatmentColumns {
            kind,
            units: Some(*units),
            insulin_type: Some(insulin_type.as_str()),
            insulin_name: insulin_name.clone(),
            ..Default::default()
        },
        TreatmentDetail::Carbs { grams } => TreatmentColumns {
            kind,
            grams: Some(*grams),
            ..Default::default()
        },
        TreatmentDetail::Exercise { minutes, intensity } => TreatmentColumns {
            kind,
            minutes: Some(*minutes),
            intensity: intensity.map(|i| i.as_str()),
            ..Default::default()
        },
        TreatmentDetail::Note { text } => TreatmentColumns {
            kind,
            text: Some(text.clone()),
            ..Default::default()
        },
        TreatmentDetail::BasalRate {
            units_per_hour,
            minutes,
        } => TreatmentColumns {
            kind,
            units_per_hour: Some(*units_per_hour),
            minutes: Some(*minutes),
            ..Default::default()
        },
    }
}

/// Columns in the order of `TREATMENT_COLUMNS`. A row that does not make a valid treatment is
/// an internal error (it can only come from outside tampering or a bug).
pub(crate) fn treatment_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Treatment, StoreError>> {
    let kind: String = r.get(3)?;
    let bad = |what: &str| StoreError::Internal(format!("stored treatment has invalid {what}"));
    let detail = match kind.as_str() {
        "insulin" => {
            let ty: Option<String> = r.get(5)?;
            match (
                r.get::<_, Option<f64>>(4)?,
                ty.as_deref().and_then(InsulinType::parse),
            ) {
                (Some(units), Some(insulin_type)) => Ok(TreatmentDetail::Insulin {
                    units,
                    insulin_type,
                    insulin_name: r.get(6)?,
                }),
                _ => Err(bad("insulin fields")),
            }
        }
        "carbs" => r
            .get::<_, Option<f64>>(7)?
            .map(|grams| TreatmentDetail::Carbs { grams })
            .ok_or_else(|| bad("grams")),
        "exercise" => {
            let intensity: Option<String> = r.get(9)?;
            r.get::<_, Option<f64>>(8)?
                .map(|minutes| TreatmentDetail::Exercise {
                    minutes,
                    intensity: intensity.as_deref().and_then(ExerciseIntensity::parse),
                })
                .ok_or_else(|| bad("minutes"))
        }
        "note" => r
            .get::<_, Option<String>>(10)?
            .map(|text| TreatmentDetail::Note { text })
            .ok_or_else(|| bad("text")),
        "basal_rate" => match (r.get::<_, Option<f64>>(11)?, r.get::<_, Option<f64>>(8)?) {
            (Some(units_per_hour), Some(minutes)) => Ok(TreatmentDetail::BasalRate {
                units_per_hour,
                minutes,
            }),
            _ => Err(bad("basal rate fields")),
        },
        _ => Err(bad("kind")),
    };
    Ok(detail
        .map(|detail| -> Result<Treatment, StoreError> {
            Ok(Treatment {
                id: r.get(0).map_err(crate::engine::sql_err)?,
                time: Timestamp {
                    utc_ms: r.get(1).map_err(crate::engine::sql_err)?,
                    offset_minutes: r.get(2).map_err(crate::engine::sql_err)?,
                },
                detail,
                created_ms: r.get(12).map_err(crate::engine::sql_err)?,
                updated_ms: r.get(13).map_err(crate::engine::sql_err)?,
            })
        })
        .and_then(|t| t))
}
