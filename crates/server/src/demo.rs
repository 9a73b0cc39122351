//! The demo account: ten days of a simulated person with type 1 diabetes (UVA/Padova simulator,
//! adult #001, see `demo/README.md`), shifted so that the last reading is "now". Refreshed at
//! every start so a newcomer always sees current-looking data. Embedded mode only.

use glucosync_domain::accounts::Email;
use glucosync_domain::readings::{trend_from_rate, NewReading, ReadingKind};
use glucosync_domain::treatments::{InsulinType, NewTreatment, TreatmentDetail};
use glucosync_domain::{GlucoseMgdl, Timestamp};
use glucosync_store::{AdminGrant, NewUser, RangeQuery, Store, StoreError};

use crate::auth::{hash_password, new_secret};

const DEMO_CSV: &str = include_str!("../demo/adult-001.csv");
pub const DEMO_EMAIL: &str = "demo@glucosync.local";
const FIVE_MIN_MS: i64 = 300_000;

#[derive(Debug)]
pub struct DemoAccount {
    pub user_id: glucosync_store::UserId,
    /// The newest simulated reading ("now" at start).
    pub last_reading_ms: i64,
    pub email: String,
    pub password: String,
    pub readings: usize,
    pub treatments: usize,
}

struct Row {
    offset_ms: i64,
    cgm: f64,
    carbs: f64,
    bolus: f64,
    basal: f64,
}

fn rows() -> Vec<Row> {
    let mut out = Vec::new();
    let mut first_ms = None;
    for line in DEMO_CSV.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() < 6 {
            continue;
        }
        let Ok(t) = Timestamp::parse_rfc3339("time", cols[0]) else {
            continue;
        };
        let num = |i: usize| cols[i].trim().parse::<f64>().unwrap_or(0.0);
        let first = *first_ms.get_or_insert(t.utc_ms);
        out.push(Row {
            offset_ms: t.utc_ms - first,
            cgm: num(1),
            carbs: num(3),
            bolus: num(4),
            basal: num(5),
        });
    }
    out
}

/// Creates the demo account if needed, gives it a fresh password, and replaces its data with
/// the simulated days ending at `now_ms`.
pub async fn refresh(store: &dyn Store, now_ms: i64) -> Result<DemoAccount, StoreError> {
    let password = new_secret("demo-")[..17].to_owned();
    let hash = hash_password(password.clone())
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    let user_id = match store.user_by_email(DEMO_EMAIL).await? {
        Some((user, _)) => {
            store.set_password_hash(user.id, &hash, None).await?;
            user.id
        }
        None => {
            let email =
                Email::parse(DEMO_EMAIL).map_err(|e| StoreError::Internal(e.to_string()))?;
            let user = store
                .create_user(NewUser {
                    email,
                    password_hash: hash,
                    admin: AdminGrant::No,
                    now_ms,
                })
                .await?;
            store.set_display_name(user.id, Some("Demo")).await?;
            user.id
        }
    };
    store
        .delete_readings_in_range(user_id, i64::MIN, i64::MAX)
        .await?;
    let all = RangeQuery {
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        after: None,
        limit: 100_000,
        descending: false,
    };
    for t in store.list_treatments(user_id, &all).await? {
        store.delete_treatment(user_id, &t.id).await?;
    }

    let rows = rows();
    let last_offset = rows.last().map(|r| r.offset_ms).unwrap_or(0);
    let end = now_ms - now_ms.rem_euclid(FIVE_MIN_MS);
    let start = end - last_offset;
    let mut readings = Vec::with_capacity(rows.len());
    let mut treatments = Vec::new();
    let mut last_basal = f64::NAN;
    for (i, row) in rows.iter().enumerate() {
        let time = Timestamp::from_utc_ms(start + row.offset_ms);
        // Trend from the change over the last 15 minutes, as a CGM computes it.
        let trend = (i >= 3).then(|| trend_from_rate((row.cgm - rows[i - 3].cgm) / 15.0));
        if let Ok(value) = GlucoseMgdl::from_unit(row.cgm, glucosync_domain::GlucoseUnit::MgDl) {
            readings.push(NewReading {
                time,
                value,
                kind: ReadingKind::Cgm,
                trend,
                device: "simglucose GuardianRT".into(),
                extra: None,
            });
        }
        let mut add = |tag: &str, detail: TreatmentDetail| {
            treatments.push(NewTreatment {
                id: format!("demo-{tag}-{i}"),
                time,
                detail,
                extra: None,
            })
        };
        if row.carbs > 0.0 {
            add(
                "carbs",
                TreatmentDetail::Carbs {
                    grams: (row.carbs * 10.0).round() / 10.0,
                },
            );
        }
        if row.bolus > 0.0 {
            add(
                "bolus",
                TreatmentDetail::Insulin {
                    units: (row.bolus * 100.0).round() / 100.0,
                    insulin_type: InsulinType::Bolus,
                    insulin_name: Some("Humalog".into()),
                },
            );
        }
        if row.basal != last_basal {
            add(
                "basal",
                TreatmentDetail::BasalRate {
                    units_per_hour: row.basal,
                    minutes: 24.0 * 60.0,
                },
            );
            last_basal = row.basal;
        }
    }
    let counts = (readings.len(), treatments.len());
    let last_reading_ms = readings.last().map_or(end, |r| r.time.utc_ms);
    store.insert_readings(user_id, readings, now_ms).await?;
    store.insert_treatments(user_id, treatments, now_ms).await?;
    Ok(DemoAccount {
        user_id,
        last_reading_ms,
        email: DEMO_EMAIL.into(),
        password,
        readings: counts.0,
        treatments: counts.1,
    })
}
