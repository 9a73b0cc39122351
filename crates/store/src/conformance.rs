//! The conformance suite: one story about storage that every backend must tell the same way.
//!
//! Backends run it with [`conformance_suite!`](crate::conformance_suite), which expands to one
//! `#[tokio::test]` per case, each on a fresh store made by the backend's factory. Cases use
//! only the [`Store`] trait, so no backend gets a private copy of the tests.

use std::sync::Arc;

mod accounts;
mod nightscout;
pub use accounts::*;
pub use nightscout::*;

use glucosync_domain::accounts::{Email, Scope};
use glucosync_domain::readings::{NewReading, ReadingKind, TrendDirection};
use glucosync_domain::settings::UserSettings;
use glucosync_domain::treatments::{NewTreatment, TreatmentDetail, TreatmentFields};
use glucosync_domain::{GlucoseMgdl, GlucoseUnit, Timestamp};

use crate::{
    AdminGrant, AlertRecord, CredentialKind, Cursor, DeliveryChannel, DeliveryOutcome,
    DeliveryScope, DeliveryStatus, NewCredential, NewDelivery, NewInvite, NewUser, RangeQuery,
    ShareRole, Store, StoreError, StoredForecast, StoredModel, UserId,
};

/// A fresh store and whatever must live as long as it (a temporary directory, a database name).
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub keep: Box<dyn std::any::Any + Send + Sync>,
}

/// Expands to one test per conformance case. `$factory` is an async fn returning [`Harness`].
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_suite!(@cases $factory;
            first_user_is_admin_and_emails_are_unique,
            user_fields_round_trip,
            credentials_live_expire_and_revoke,
            password_change_revokes_other_sessions,
            disabling_a_user_revokes_credentials,
            readings_round_trip_with_offset_trend_and_device,
            reading_uploads_are_idempotent,
            readings_page_through_a_half_open_range,
            latest_readings_come_newest_first,
            cgm_values_are_the_cgm_readings_of_the_range_in_time_order,
            readings_are_private_to_their_owner,
            reading_range_deletion_counts,
            a_batch_of_ten_thousand_is_stored_whole,
            concurrent_writes_are_all_durable_and_visible,
            concurrent_identical_uploads_insert_once,
            treatments_of_every_kind_round_trip,
            treatment_uploads_are_idempotent_by_id,
            treatments_update_delete_and_stay_private,
            treatments_page_by_time_then_id,
            readiness_reports_migrations,
            forecasts_keep_the_newest_and_stay_private,
            a_large_forecast_batch_lands_whole,
            identities_link_to_one_account,
            models_are_versioned_and_the_newest_is_current,
            invites_are_single_use_expire_and_make_active_shares,
            shares_are_revoked_at_once_and_listed_per_owner_and_follower,
            the_access_log_is_per_owner_newest_first_and_pages_by_time,
            cgm_uploads_make_their_owner_due_for_alerts_and_books_save_by_version,
            a_lease_has_one_holder_until_it_expires,
            deliveries_are_queued_with_the_book_claimed_once_and_logged,
            push_subscriptions_follow_channels_and_server_secrets,
            nightscout_sites_are_one_per_person_and_found_by_handle_or_secret,
            nightscout_entries_deduplicate_by_kind_and_time_and_answer_ids_in_order,
            nightscout_treatments_deduplicate_by_id_then_time_and_kind,
            treatment_extra_fields_round_trip_and_survive_updates_without_them,
            nightscout_documents_dedupe_replace_delete_and_keep_history,
            changes_are_listed_in_the_order_the_server_made_them,
            reading_ids_are_never_handed_out_again,
            account_deletion_cuts_every_way_in_at_once_and_then_removes_everything,
            every_account_is_listed_once_in_id_order,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $factory().await;
                $crate::conformance::$case(&*harness.store).await;
                harness.store.close().await;
                drop(harness);
            }
        )*
    };
}

const T0: i64 = 1_780_000_000_000; // 2026-05-28, well inside the accepted window
const NOW: i64 = T0 + 400 * 86_400_000;
const FIVE_MIN: i64 = 300_000;

async fn user(store: &dyn Store, email: &str) -> UserId {
    store
        .create_user(NewUser {
            email: Email::parse(email).expect("valid email"),
            password_hash: "$argon2id$fake".into(),
            admin: AdminGrant::IfFirst,
            now_ms: NOW,
        })
        .await
        .expect("create user")
        .id
}

fn reading(t: i64, v: f64) -> NewReading {
    NewReading {
        time: Timestamp::from_utc_ms(t),
        value: GlucoseMgdl::from_stored(v),
        kind: ReadingKind::Cgm,
        trend: None,
        device: String::new(),
        extra: None,
    }
}

fn all_range(limit: usize) -> RangeQuery {
    RangeQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        after: None,
        limit,
        descending: false,
    }
}

fn carbs(id: Option<&str>, t: i64, grams: f64) -> NewTreatment {
    let time = Timestamp::from_utc_ms(t).to_rfc3339_utc();
    NewTreatment::validate(
        &TreatmentFields {
            id,
            time: &time,
            kind: "carbs",
            grams: Some(grams),
            ..Default::default()
        },
        NOW,
    )
    .expect("valid treatment")
}

fn session(user_id: UserId, hash: &str, expires_ms: Option<i64>) -> NewCredential {
    NewCredential {
        user_id,
        kind: CredentialKind::Session,
        name: "browser".into(),
        token_hash: hash.into(),
        csrf_hash: Some(format!("csrf-{hash}")),
        scopes: Scope::ALL.to_vec(),
        now_ms: NOW,
        expires_ms,
    }
}

pub async fn first_user_is_admin_and_emails_are_unique(store: &dyn Store) {
    let a = user(store, "first@example.org").await;
    let b = user(store, "second@example.org").await;
    assert!(
        store
            .user_by_id(a)
            .await
            .expect("read")
            .expect("exists")
            .is_admin
    );
    assert!(
        !store
            .user_by_id(b)
            .await
            .expect("read")
            .expect("exists")
            .is_admin
    );
    let again = store
        .create_user(NewUser {
            email: Email::parse("FIRST@example.org").expect("valid"),
            password_hash: "x".into(),
            admin: AdminGrant::No,
            now_ms: NOW,
        })
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.count_users().await.expect("count"), 2);
    assert!(store.user_by_id(9_999_999).await.expect("read").is_none());
}

pub async fn user_fields_round_trip(store: &dyn Store) {
    let id = user(store, "ana@example.org").await;
    let (u, hash) = store
        .user_by_email("ana@example.org")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (u.id, u.email.as_str(), hash.as_str()),
        (id, "ana@example.org", "$argon2id$fake")
    );
    assert_eq!(u.settings, UserSettings::default());
    assert!(store
        .user_by_email("nobody@example.org")
        .await
        .expect("read")
        .is_none());

    store.set_display_name(id, Some("Ana")).await.expect("name");
    let settings = UserSettings {
        display_unit: GlucoseUnit::MmolL,
        time_zone: "Europe/Berlin".into(),
        target_low_mgdl: 72.0,
        ..Default::default()
    };
    store.set_settings(id, &settings).await.expect("settings");
    let u = store.user_by_id(id).await.expect("read").expect("exists");
    assert_eq!(u.display_name.as_deref(), Some("Ana"));
    assert_eq!(u.settings, settings);
    store.set_display_name(id, None).await.expect("clear name");
    assert_eq!(
        store
            .user_by_id(id)
            .await
            .expect("read")
            .expect("exists")
            .display_name,
        None
    );

    assert!(store.set_admin(id, false).await.expect("demote"));
    assert!(
        !store
            .user_by_id(id)
            .await
            .expect("read")
            .expect("exists")
            .is_admin
    );
    assert!(!store
        .set_admin(123_456_789, true)
        .await
        .expect("no such user"));
    assert_eq!(
        store.password_hash(id).await.expect("read").as_deref(),
        Some("$argon2id$fake")
    );
}

pub async fn credentials_live_expire_and_revoke(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    let s = store
        .create_credential(session(a, "h-session", Some(NOW + 1000)))
        .await
        .expect("create");
    let tok = store
        .create_credential(NewCredential {
            user_id: a,
            kind: CredentialKind::ApiToken,
            name: "xDrip".into(),
            token_hash: "h-token".into(),
            csrf_hash: None,
            scopes: vec![Scope::ReadingsWrite],
            now_ms: NOW,
            expires_ms: None,
        })
        .await
        .expect("create");
    let (c, u) = store
        .credential_by_hash("h-session", NOW)
        .await
        .expect("read")
        .expect("live");
    assert_eq!((c.id, c.kind, u.id), (s.id, CredentialKind::Session, a));
    assert_eq!(c.csrf_hash.as_deref(), Some("csrf-h-session"));
    assert!(
        store
            .credential_by_hash("h-session", NOW + 1000)
            .await
            .expect("read")
            .is_none(),
        "expired"
    );
    let (c, _) = store
        .credential_by_hash("h-token", NOW)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(c.scopes, vec![Scope::ReadingsWrite]);
    assert_eq!(c.name, "xDrip");

    store
        .touch_credential(tok.id, NOW + 5)
        .await
        .expect("touch");
    let listed = store.list_api_tokens(a, NOW).await.expect("list");
    assert_eq!(listed.len(), 1, "sessions are not API tokens");
    assert_eq!(listed[0].last_used_ms, Some(NOW + 5));
    assert!(store
        .list_api_tokens(b, NOW)
        .await
        .expect("list")
        .is_empty());

    assert_eq!(
        store
            .revoke_credential(b, tok.id, NOW)
            .await
            .expect("revoke"),
        None,
        "not b's token"
    );
    assert!(store
        .credential_by_hash("h-token", NOW)
        .await
        .expect("read")
        .is_some());
    assert_eq!(
        store
            .revoke_credential(a, tok.id, NOW)
            .await
            .expect("revoke")
            .as_deref(),
        Some("h-token")
    );
    assert!(store
        .credential_by_hash("h-token", NOW)
        .await
        .expect("read")
        .is_none());
    assert_eq!(
        store
            .revoke_credential(a, tok.id, NOW)
            .await
            .expect("revoke"),
        None,
        "already revoked"
    );
    let dup = store.create_credential(session(b, "h-session", None)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
}

pub async fn password_change_revokes_other_sessions(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let keep = store
        .create_credential(session(a, "keep", None))
        .await
        .expect("create");
    store
        .create_credential(session(a, "other", None))
        .await
        .expect("create");
    let revoked = store
        .set_password_hash(a, "$new", Some(keep.id))
        .await
        .expect("set");
    assert_eq!(revoked, vec!["other".to_string()]);
    assert!(store
        .credential_by_hash("keep", NOW)
        .await
        .expect("read")
        .is_some());
    assert!(store
        .credential_by_hash("other", NOW)
        .await
        .expect("read")
        .is_none());
    assert_eq!(
        store.password_hash(a).await.expect("read").as_deref(),
        Some("$new")
    );
}

pub async fn disabling_a_user_revokes_credentials(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    store
        .create_credential(session(a, "s1", None))
        .await
        .expect("create");
    let revoked = store.set_disabled(a, true).await.expect("disable");
    assert_eq!(revoked, vec!["s1".to_string()]);
    assert!(
        store
            .user_by_id(a)
            .await
            .expect("read")
            .expect("exists")
            .disabled
    );
    assert!(store
        .credential_by_hash("s1", NOW)
        .await
        .expect("read")
        .is_none());
    store.set_disabled(a, false).await.expect("enable");
    assert!(
        !store
            .user_by_id(a)
            .await
            .expect("read")
            .expect("exists")
            .disabled
    );
}

pub async fn readings_round_trip_with_offset_trend_and_device(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let r = NewReading {
        time: Timestamp {
            utc_ms: T0 + 123,
            offset_minutes: -330,
        },
        value: GlucoseMgdl::from_unit(5.5, GlucoseUnit::MmolL).expect("valid"),
        kind: ReadingKind::Meter,
        trend: Some(TrendDirection::NotComputable),
        device: "Contour Next ☃".into(),
        extra: Some(r#"{"filtered":141120,"noise":1}"#.into()),
    };
    store
        .insert_readings(a, vec![r.clone()], NOW)
        .await
        .expect("insert");
    let got = store.list_readings(a, &all_range(10)).await.expect("list");
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!(
        (g.time, g.kind, g.trend, g.device.as_str(), &g.extra),
        (r.time, r.kind, r.trend, r.device.as_str(), &r.extra)
    );
    assert_eq!(g.value.display(GlucoseUnit::MmolL), 5.5);
    assert_eq!(g.value.mgdl(), r.value.mgdl());
}

pub async fn reading_uploads_are_idempotent(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let batch: Vec<_> = (0..10)
        .map(|i| reading(T0 + i * FIVE_MIN, 100.0 + i as f64))
        .collect();
    let first = store
        .insert_readings(a, batch.clone(), NOW)
        .await
        .expect("insert");
    assert_eq!((first.inserted, first.duplicates), (10, 0));
    let again = store
        .insert_readings(a, batch.clone(), NOW)
        .await
        .expect("insert");
    assert_eq!((again.inserted, again.duplicates), (0, 10));
    // The identity is (kind, time, device): the same instant from another device or as a
    // fingerstick is a different reading; a duplicate inside one batch counts once.
    let mut other_device = reading(T0, 100.0);
    other_device.device = "second sensor".into();
    let mut meter = reading(T0, 100.0);
    meter.kind = ReadingKind::Meter;
    let mixed = store
        .insert_readings(a, vec![other_device.clone(), meter, other_device], NOW)
        .await
        .expect("insert");
    assert_eq!((mixed.inserted, mixed.duplicates), (2, 1));
    // The same instant written with another UTC offset is the same reading.
    let mut shifted = reading(T0, 100.0);
    shifted.time.offset_minutes = 60;
    let dup = store
        .insert_readings(a, vec![shifted], NOW)
        .await
        .expect("insert");
    assert_eq!((dup.inserted, dup.duplicates), (0, 1));
    assert_eq!(
        store
            .list_readings(a, &all_range(100))
            .await
            .expect("list")
            .len(),
        12
    );
}

pub async fn readings_page_through_a_half_open_range(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let batch: Vec<_> = (0..25).map(|i| reading(T0 + i * FIVE_MIN, 100.0)).collect();
    store.insert_readings(a, batch, NOW).await.expect("insert");
    let mut query = RangeQuery {
        from_ms: T0 + 2 * FIVE_MIN,
        to_ms: T0 + 22 * FIVE_MIN,
        after: None,
        limit: 7,
        descending: false,
    };
    let mut seen = Vec::new();
    loop {
        let page = store.list_readings(a, &query).await.expect("list");
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        query.after = Some(Cursor {
            time_ms: last.time.utc_ms,
            key: last.id.to_string(),
        });
        seen.extend(page.iter().map(|r| r.time.utc_ms));
    }
    let expected: Vec<_> = (2..22).map(|i| T0 + i * FIVE_MIN).collect();
    assert_eq!(
        seen, expected,
        "from inclusive, to exclusive, ascending, no gaps or repeats"
    );

    query.descending = true;
    query.after = None;
    let page = store.list_readings(a, &query).await.expect("list");
    assert_eq!(
        page.first().map(|r| r.time.utc_ms),
        Some(T0 + 21 * FIVE_MIN)
    );
    let last = page.last().expect("non-empty");
    query.after = Some(Cursor {
        time_ms: last.time.utc_ms,
        key: last.id.to_string(),
    });
    let next = store.list_readings(a, &query).await.expect("list");
    assert_eq!(
        next.first().map(|r| r.time.utc_ms),
        Some(last.time.utc_ms - FIVE_MIN)
    );
}

pub async fn latest_readings_come_newest_first(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    assert!(store
        .latest_readings(a, 2)
        .await
        .expect("latest")
        .is_empty());
    let batch: Vec<_> = (0..5)
        .rev()
        .map(|i| reading(T0 + i * FIVE_MIN, 100.0 + i as f64))
        .collect();
    store.insert_readings(a, batch, NOW).await.expect("insert");
    let latest = store.latest_readings(a, 2).await.expect("latest");
    let values: Vec<_> = latest.iter().map(|r| r.value.mgdl()).collect();
    assert_eq!(values, vec![104.0, 103.0]);
}

pub async fn cgm_values_are_the_cgm_readings_of_the_range_in_time_order(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    let mut batch: Vec<_> = (0..10)
        .rev()
        .map(|i| reading(T0 + i * FIVE_MIN, 100.0 + i as f64))
        .collect();
    let mut meter = reading(T0 + 2 * FIVE_MIN, 300.0);
    meter.kind = ReadingKind::Meter;
    batch.push(meter);
    store.insert_readings(a, batch, NOW).await.expect("insert");
    store
        .insert_readings(b, vec![reading(T0, 55.0)], NOW)
        .await
        .expect("insert");
    let got = store
        .cgm_values(a, T0 + FIVE_MIN, T0 + 5 * FIVE_MIN)
        .await
        .expect("read");
    let expected: Vec<_> = (1..5)
        .map(|i| (T0 + i * FIVE_MIN, 100.0 + i as f64))
        .collect();
    assert_eq!(
        got.iter().map(|p| (p.utc_ms, p.mgdl)).collect::<Vec<_>>(),
        expected,
        "half-open, CGM only, in time order"
    );
    assert!(
        store
            .cgm_values(b, T0 + FIVE_MIN, T0 + 5 * FIVE_MIN)
            .await
            .expect("read")
            .is_empty(),
        "another person's"
    );
}

pub async fn readings_are_private_to_their_owner(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    store
        .insert_readings(a, vec![reading(T0, 100.0)], NOW)
        .await
        .expect("insert");
    // b uploading the same reading is not a duplicate of a's.
    let out = store
        .insert_readings(b, vec![reading(T0, 100.0)], NOW)
        .await
        .expect("insert");
    assert_eq!(out.inserted, 1);
    let a_reading = store.list_readings(a, &all_range(10)).await.expect("list")[0].clone();
    assert!(
        !store.delete_reading(b, a_reading.id).await.expect("delete"),
        "b cannot delete a's reading"
    );
    assert_eq!(
        store
            .delete_readings_in_range(b, 0, i64::MAX)
            .await
            .expect("delete"),
        1,
        "only b's own"
    );
    assert!(store
        .list_readings(b, &all_range(10))
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        store
            .list_readings(a, &all_range(10))
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(store.delete_reading(a, a_reading.id).await.expect("delete"));
    assert!(
        !store.delete_reading(a, a_reading.id).await.expect("delete"),
        "already gone"
    );
}

pub async fn reading_range_deletion_counts(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let batch: Vec<_> = (0..10).map(|i| reading(T0 + i * FIVE_MIN, 100.0)).collect();
    store.insert_readings(a, batch, NOW).await.expect("insert");
    let n = store
        .delete_readings_in_range(a, T0 + FIVE_MIN, T0 + 4 * FIVE_MIN)
        .await
        .expect("delete");
    assert_eq!(n, 3);
    assert_eq!(
        store
            .list_readings(a, &all_range(100))
            .await
            .expect("list")
            .len(),
        7
    );
}

pub async fn a_batch_of_ten_thousand_is_stored_whole(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let batch: Vec<_> = (0..10_000)
        .map(|i| reading(T0 + i * FIVE_MIN, 40.0 + (i % 300) as f64))
        .collect();
    let out = store.insert_readings(a, batch, NOW).await.expect("insert");
    assert_eq!(out.inserted, 10_000);
    assert_eq!(
        store
            .list_readings(a, &all_range(10_000))
            .await
            .expect("list")
            .len(),
        10_000
    );
}

pub async fn concurrent_writes_are_all_durable_and_visible(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    // Many small writes at once: exactly what group commit batches together. Each must be
    // visible as soon as its own call returned.
    let mut tasks = Vec::new();
    for i in 0..64i64 {
        let fut = store.insert_readings(a, vec![reading(T0 + i * FIVE_MIN, 100.0)], NOW);
        tasks.push(fut);
    }
    let results = futures::future::join_all(tasks).await;
    for r in results {
        assert_eq!(r.expect("insert").inserted, 1);
    }
    assert_eq!(
        store
            .list_readings(a, &all_range(100))
            .await
            .expect("list")
            .len(),
        64
    );
}

pub async fn concurrent_identical_uploads_insert_once(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    // Two uploaders of one person send the same reading at the same moment, while another
    // person uploads the same instant: exactly one of the first group inserts it.
    let mut calls = Vec::new();
    for i in 0..24 {
        let owner = if i % 3 == 2 { b } else { a };
        calls.push(store.insert_readings(
            owner,
            vec![reading(T0, 150.0), reading(T0 + FIVE_MIN + i, 151.0)],
            NOW,
        ));
    }
    let outcomes: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("insert"))
        .collect();
    let inserted: u64 = outcomes.iter().map(|o| o.inserted).sum();
    let duplicates: u64 = outcomes.iter().map(|o| o.duplicates).sum();
    // 24 distinct second readings + the shared one once per person.
    assert_eq!((inserted, duplicates), (24 + 2, 48 - 26), "{outcomes:?}");
    assert_eq!(
        store
            .list_readings(a, &all_range(100))
            .await
            .expect("list")
            .len(),
        1 + 16
    );
    assert_eq!(
        store
            .list_readings(b, &all_range(100))
            .await
            .expect("list")
            .len(),
        1 + 8
    );
}

pub async fn treatments_of_every_kind_round_trip(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let time = Timestamp::from_utc_ms(T0).to_rfc3339_utc();
    let kinds = [
        TreatmentFields {
            kind: "insulin",
            units: Some(4.5),
            insulin_type: Some("bolus"),
            insulin_name: Some("Fiasp"),
            ..Default::default()
        },
        TreatmentFields {
            kind: "carbs",
            grams: Some(42.0),
            ..Default::default()
        },
        TreatmentFields {
            kind: "exercise",
            minutes: Some(30.0),
            intensity: Some("high"),
            ..Default::default()
        },
        TreatmentFields {
            kind: "note",
            text: Some("pizza 🍕, sensor changed"),
            ..Default::default()
        },
        TreatmentFields {
            kind: "basal_rate",
            units_per_hour: Some(0.0),
            minutes: Some(30.0),
            ..Default::default()
        },
    ];
    let new: Vec<_> = kinds
        .iter()
        .map(|f| {
            NewTreatment::validate(
                &TreatmentFields {
                    time: &time,
                    ..f.clone()
                },
                NOW,
            )
            .expect("valid")
        })
        .collect();
    let out = store
        .insert_treatments(a, new.clone(), NOW)
        .await
        .expect("insert");
    assert_eq!(out.inserted, 5);
    for t in &new {
        let got = store
            .treatment(a, &t.id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!((got.time, &got.detail), (t.time, &t.detail));
        assert_eq!((got.created_ms, got.updated_ms), (NOW, NOW));
    }
}

pub async fn treatment_uploads_are_idempotent_by_id(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    let out = store
        .insert_treatments(a, vec![carbs(Some("meal-1"), T0, 40.0)], NOW)
        .await
        .expect("insert");
    assert_eq!((out.inserted, out.duplicates), (1, 0));
    // A second uploader sends the same event: nothing changes, not even the amount.
    let out = store
        .insert_treatments(a, vec![carbs(Some("meal-1"), T0, 45.0)], NOW)
        .await
        .expect("insert");
    assert_eq!((out.inserted, out.duplicates), (0, 1));
    let got = store
        .treatment(a, "meal-1")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(got.detail, TreatmentDetail::Carbs { grams: 40.0 });
    // Without a client id, identical content is the same event.
    let out = store
        .insert_treatments(a, vec![carbs(None, T0, 10.0), carbs(None, T0, 10.0)], NOW)
        .await
        .expect("insert");
    assert_eq!((out.inserted, out.duplicates), (1, 1));
    // Ids are per person.
    let out = store
        .insert_treatments(b, vec![carbs(Some("meal-1"), T0, 45.0)], NOW)
        .await
        .expect("insert");
    assert_eq!(out.inserted, 1);
    assert_eq!(
        store
            .treatment(a, "meal-1")
            .await
            .expect("read")
            .expect("exists")
            .detail,
        TreatmentDetail::Carbs { grams: 40.0 }
    );
}

pub async fn treatments_update_delete_and_stay_private(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    store
        .insert_treatments(a, vec![carbs(Some("t1"), T0, 40.0)], NOW)
        .await
        .expect("insert");
    assert!(store.treatment(b, "t1").await.expect("read").is_none());
    assert!(store
        .update_treatment(b, carbs(Some("t1"), T0, 1.0), NOW + 1)
        .await
        .expect("update")
        .is_none());
    assert!(!store.delete_treatment(b, "t1").await.expect("delete"));
    let updated = store
        .update_treatment(a, carbs(Some("t1"), T0 + FIVE_MIN, 50.0), NOW + 1)
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(updated.detail, TreatmentDetail::Carbs { grams: 50.0 });
    assert_eq!(updated.time.utc_ms, T0 + FIVE_MIN);
    assert_eq!((updated.created_ms, updated.updated_ms), (NOW, NOW + 1));
    assert!(store.delete_treatment(a, "t1").await.expect("delete"));
    assert!(store.treatment(a, "t1").await.expect("read").is_none());
    assert!(store
        .update_treatment(a, carbs(Some("t1"), T0, 1.0), NOW)
        .await
        .expect("update")
        .is_none());
}

pub async fn treatments_page_by_time_then_id(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let batch: Vec<_> = (0..12)
        .map(|i| carbs(Some(&format!("t{i:02}")), T0 + (i / 3) * FIVE_MIN, 10.0))
        .collect();
    store
        .insert_treatments(a, batch, NOW)
        .await
        .expect("insert");
    let mut query = all_range(5);
    let mut ids = Vec::new();
    loop {
        let page = store.list_treatments(a, &query).await.expect("list");
        let Some(last) = page.last() else { break };
        query.after = Some(Cursor {
            time_ms: last.time.utc_ms,
            key: last.id.clone(),
        });
        ids.extend(page.iter().map(|t| t.id.clone()));
    }
    let expected: Vec<_> = (0..12).map(|i| format!("t{i:02}")).collect();
    assert_eq!(ids, expected);
}

pub async fn readiness_reports_migrations(store: &dyn Store) {
    let r = store.readiness().await.expect("ready");
    assert!(r.migrations_applied(), "{r:?}");
    assert!(r.latest_migration >= 1);
    store.migrate().await.expect("migrating twice is harmless");
    assert_eq!(store.readiness().await.expect("ready"), r);
}

pub async fn forecasts_keep_the_newest_and_stay_private(store: &dyn Store) {
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    let cy = user(store, "cy@example.org").await;
    assert_eq!(store.latest_forecast(ana).await.expect("read"), None);
    let f = |issued_ms: i64, version: &str, points: &str| StoredForecast {
        issued_ms,
        model_version: version.into(),
        created_ms: NOW,
        points: points.as_bytes().to_vec(),
    };
    // One batch for two people; a backfilled older reading's forecast comes last.
    store
        .save_forecasts(vec![
            (ana, f(T0 + FIVE_MIN, "v1", "[1]").into()),
            (ben, f(T0, "v1", "[b]").into()),
            (ana, f(T0, "v1", "[0]").into()),
        ])
        .await
        .expect("save");
    assert_eq!(
        store.latest_forecast(ana).await.expect("read"),
        Some(f(T0 + FIVE_MIN, "v1", "[1]"))
    );
    assert_eq!(
        store.latest_forecast(ben).await.expect("read"),
        Some(f(T0, "v1", "[b]"))
    );
    // The same reading forecast again (a new model) replaces it; within a batch the later wins.
    store
        .save_forecasts(vec![
            (ana, f(T0 + FIVE_MIN, "v2", "[2]").into()),
            (ana, f(T0 + FIVE_MIN, "v3", "[3]").into()),
        ])
        .await
        .expect("save");
    assert_eq!(
        store.latest_forecast(ana).await.expect("read"),
        Some(f(T0 + FIVE_MIN, "v3", "[3]"))
    );
    store
        .save_forecasts(Vec::new())
        .await
        .expect("an empty batch");
    assert_eq!(
        store.latest_forecast(cy).await.expect("read"),
        None,
        "private"
    );
}

/// A batch larger than one statement's worth (a backend may write it in multi-row
/// statements): every row lands, and a later row for the same reading wins inside a
/// statement as across them.
pub async fn a_large_forecast_batch_lands_whole(store: &dyn Store) {
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    let f = |issued_ms: i64, version: String| {
        std::sync::Arc::new(StoredForecast {
            issued_ms,
            model_version: version,
            created_ms: NOW,
            points: vec![1, 2, 3, 4, 5, 6],
        })
    };
    let mut batch: Vec<_> = (0..16)
        .map(|i| (ana, f(T0 + FIVE_MIN, format!("v{i}"))))
        .collect();
    batch.extend((0..21).map(|i| (ben, f(T0 + i * FIVE_MIN, format!("b{i}")))));
    store.save_forecasts(batch).await.expect("save");
    let latest = |who| async move { store.latest_forecast(who).await.expect("read") };
    assert_eq!(
        latest(ana).await.map(|f| f.model_version),
        Some("v15".to_owned())
    );
    assert_eq!(
        latest(ben).await.map(|f| (f.issued_ms, f.model_version)),
        Some((T0 + 20 * FIVE_MIN, "b20".to_owned()))
    );
}

/// A single sign-on identity logs in to one account: linking again is no change, linking it
/// to a second account is refused, and identities are per issuer.
pub async fn identities_link_to_one_account(store: &dyn Store) {
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    let issuer = "https://auth.example.org/o/glucosync/";
    assert_eq!(
        store.user_by_identity(issuer, "sub-1").await.expect("read"),
        None
    );
    store
        .link_identity(ana, issuer, "sub-1", NOW)
        .await
        .expect("link");
    store
        .link_identity(ana, issuer, "sub-1", NOW + 1)
        .await
        .expect("again: no change");
    let found = store
        .user_by_identity(issuer, "sub-1")
        .await
        .expect("read")
        .expect("linked");
    assert_eq!(found.id, ana);
    assert_eq!(found.email.as_str(), "ana@example.org");
    assert!(matches!(
        store.link_identity(ben, issuer, "sub-1", NOW).await,
        Err(StoreError::Conflict(_))
    ));
    // The same subject at another provider is another identity; an account may have several.
    store
        .link_identity(ben, "https://other.example.org", "sub-1", NOW)
        .await
        .expect("other issuer");
    store
        .link_identity(ana, issuer, "sub-2", NOW)
        .await
        .expect("second identity");
    assert_eq!(
        store
            .user_by_identity("https://other.example.org", "sub-1")
            .await
            .expect("read")
            .map(|u| u.id),
        Some(ben)
    );
    assert_eq!(
        store
            .user_by_identity(issuer, "sub-2")
            .await
            .expect("read")
            .map(|u| u.id),
        Some(ana)
    );
}

pub async fn models_are_versioned_and_the_newest_is_current(store: &dyn Store) {
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    assert_eq!(store.latest_model(ana).await.expect("read"), None);
    let m = |version: &str, trained_until_ms: i64| StoredModel {
        version: version.into(),
        trained_until_ms,
        created_ms: NOW,
        body_json: format!("{{\"v\":\"{version}\"}}"),
    };
    store
        .save_model(ana, &m("day-3", T0 + 3 * 86_400_000))
        .await
        .expect("save");
    store
        .save_model(ana, &m("day-4", T0 + 4 * 86_400_000))
        .await
        .expect("save");
    store
        .save_model(ana, &m("day-3", T0 + 3 * 86_400_000))
        .await
        .expect("save again");
    assert_eq!(
        store.latest_model(ana).await.expect("read"),
        Some(m("day-4", T0 + 4 * 86_400_000))
    );
    assert_eq!(
        store.latest_model(ben).await.expect("read"),
        None,
        "private"
    );
}

fn invite(owner: UserId, token: &str, role: ShareRole) -> NewInvite {
    NewInvite {
        owner_id: owner,
        role,
        invite_email: "follower@example.org".into(),
        token_hash: format!("hash-{token}"),
        now_ms: NOW,
        expires_ms: NOW + 7 * 86_400_000,
    }
}

pub async fn invites_are_single_use_expire_and_make_active_shares(store: &dyn Store) {
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    let cy = user(store, "cy@example.org").await;
    let inv = store
        .create_invite(invite(ana, "a", ShareRole::Caregiver))
        .await
        .expect("invite");
    assert!(!inv.is_active() && inv.follower_id.is_none());
    assert_eq!(store.active_share(ana, ben).await.expect("read"), None);
    // The owner cannot accept their own invite; the invite stays usable.
    match store.accept_invite("hash-a", ana, NOW + 1).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    let share = store
        .accept_invite("hash-a", ben, NOW + 2)
        .await
        .expect("accept")
        .expect("a live invite");
    assert!(share.is_active());
    assert_eq!(
        (share.follower_id, share.accepted_ms),
        (Some(ben), Some(NOW + 2))
    );
    assert_eq!(
        store
            .active_share(ana, ben)
            .await
            .expect("read")
            .map(|s| s.id),
        Some(inv.id)
    );
    // Single use.
    assert_eq!(
        store
            .accept_invite("hash-a", cy, NOW + 3)
            .await
            .expect("read"),
        None
    );
    // Expired invites cannot be accepted.
    store
        .create_invite(NewInvite {
            expires_ms: NOW + 10,
            ..invite(ana, "old", ShareRole::Clinician)
        })
        .await
        .expect("invite");
    assert_eq!(
        store
            .accept_invite("hash-old", cy, NOW + 10)
            .await
            .expect("read"),
        None
    );
    // Following the same person twice is refused.
    store
        .create_invite(invite(ana, "b", ShareRole::Clinician))
        .await
        .expect("invite");
    match store.accept_invite("hash-b", ben, NOW + 4).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Nobody else has a share with ana.
    assert_eq!(store.active_share(ana, cy).await.expect("read"), None);
    assert_eq!(
        store.active_share(ben, ana).await.expect("read"),
        None,
        "shares are one-way"
    );
}

pub async fn shares_are_revoked_at_once_and_listed_per_owner_and_follower(store: &dyn Store) {
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    let cy = user(store, "cy@example.org").await;
    // Cy follows both ana and ben (a caregiver of two people).
    for (owner, token) in [(ana, "a"), (ben, "b")] {
        store
            .create_invite(invite(owner, token, ShareRole::Caregiver))
            .await
            .expect("invite");
        store
            .accept_invite(&format!("hash-{token}"), cy, NOW + 1)
            .await
            .expect("accept")
            .expect("live");
    }
    let pending = store
        .create_invite(invite(ana, "p", ShareRole::Clinician))
        .await
        .expect("invite");
    let followed: Vec<UserId> = store
        .shares_followed(cy)
        .await
        .expect("read")
        .iter()
        .map(|s| s.owner_id)
        .collect();
    assert_eq!(followed.len(), 2);
    assert!(followed.contains(&ana) && followed.contains(&ben));
    let of_ana = store.shares_of_owner(ana).await.expect("read");
    assert_eq!(of_ana.len(), 2, "the accepted share and the pending invite");
    assert_eq!(of_ana[0].id, pending.id, "newest first");
    // Revoking: effective at once; an invite revoked cannot be accepted; not someone else's.
    let ana_share = store
        .active_share(ana, cy)
        .await
        .expect("read")
        .expect("share");
    assert!(
        !store
            .revoke_share(ben, ana_share.id, NOW + 5)
            .await
            .expect("revoke"),
        "not ben's"
    );
    assert!(store
        .revoke_share(ana, ana_share.id, NOW + 5)
        .await
        .expect("revoke"));
    assert!(
        !store
            .revoke_share(ana, ana_share.id, NOW + 6)
            .await
            .expect("revoke"),
        "once"
    );
    assert_eq!(store.active_share(ana, cy).await.expect("read"), None);
    assert!(store.active_share(ben, cy).await.expect("read").is_some());
    assert!(store
        .revoke_share(ana, pending.id, NOW + 5)
        .await
        .expect("revoke"));
    assert_eq!(
        store
            .accept_invite("hash-p", ben, NOW + 6)
            .await
            .expect("read"),
        None
    );
    // A revoked follower may be invited again.
    store
        .create_invite(invite(ana, "again", ShareRole::Caregiver))
        .await
        .expect("invite");
    assert!(store
        .accept_invite("hash-again", cy, NOW + 7)
        .await
        .expect("accept")
        .is_some());
}

pub async fn the_access_log_is_per_owner_newest_first_and_pages_by_time(store: &dyn Store) {
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    let cas = user(store, "cas@example.org").await;
    store
        .record_access(ana, ben, "reports.summary", NOW)
        .await
        .expect("record");
    store
        .record_access(ana, cas, "readings", NOW + 1)
        .await
        .expect("record");
    store
        .record_access(ana, ben, "forecast", NOW + 2)
        .await
        .expect("record");
    // The same moment twice is two entries.
    store
        .record_access(ana, ben, "forecast", NOW + 2)
        .await
        .expect("record");
    store
        .record_access(cas, ana, "readings", NOW + 3)
        .await
        .expect("record");
    let log = store
        .access_log(ana, (i64::MAX, i64::MAX), 100)
        .await
        .expect("log");
    let seen: Vec<(i64, &str, &str)> = log
        .iter()
        .map(|a| (a.time_ms, a.follower_email.as_str(), a.what.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (NOW + 2, "ben@example.org", "forecast"),
            (NOW + 2, "ben@example.org", "forecast"),
            (NOW + 1, "cas@example.org", "readings"),
            (NOW, "ben@example.org", "reports.summary"),
        ]
    );
    assert_eq!(log[0].follower_id, ben);
    // Pages: strictly before a (time, id) cursor, at most `limit` — two entries of the same
    // millisecond on different pages are neither skipped nor repeated.
    let first = store
        .access_log(ana, (i64::MAX, i64::MAX), 1)
        .await
        .expect("log");
    let second = store
        .access_log(ana, (first[0].time_ms, first[0].id), 2)
        .await
        .expect("log");
    assert_eq!(second.len(), 2);
    assert_eq!(
        (second[0].time_ms, second[0].what.as_str()),
        (NOW + 2, "forecast")
    );
    assert_ne!(second[0].id, first[0].id);
    assert_eq!(second[1].what, "readings");
    // Another owner's log is theirs alone.
    let cas_log = store
        .access_log(cas, (i64::MAX, i64::MAX), 100)
        .await
        .expect("log");
    assert_eq!(cas_log.len(), 1);
    assert_eq!(cas_log[0].follower_id, ana);
    assert!(store
        .access_log(ben, (i64::MAX, i64::MAX), 100)
        .await
        .expect("log")
        .is_empty());
}

pub async fn cgm_uploads_make_their_owner_due_for_alerts_and_books_save_by_version(
    store: &dyn Store,
) {
    use glucosync_domain::alerts::{Alert, AlertBook, AlertKind, AlertState};
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    let all_shards = [0];
    let due = |now| async move {
        store
            .alerts_due(now, 1, &all_shards, 100)
            .await
            .expect("due")
    };
    assert_eq!(
        store.alert_record(ana).await.expect("record"),
        AlertRecord::default()
    );
    assert!(due(NOW).await.is_empty());
    // A finger stick is not what alerts watch; a CGM reading is; a duplicate changes nothing.
    let mut finger = reading(T0, 100.0);
    finger.kind = ReadingKind::Meter;
    store
        .insert_readings(ana, vec![finger], NOW)
        .await
        .expect("insert");
    assert!(due(NOW).await.is_empty());
    store
        .insert_readings(
            ana,
            vec![reading(T0, 100.0), reading(T0 + FIVE_MIN, 90.0)],
            NOW,
        )
        .await
        .expect("insert");
    store
        .insert_readings(ana, vec![reading(T0, 100.0)], NOW)
        .await
        .expect("duplicate");
    let rec = store.alert_record(ana).await.expect("record");
    assert_eq!(
        (rec.version, rec.evaluated_version, rec.due_ms),
        (1, 0, None)
    );
    assert_eq!(due(NOW).await, vec![ana]);
    // Evaluated, nothing changed: not due until the clock says so.
    store
        .mark_alerts_evaluated(&[rec.unchanged(ana, Some(NOW + 10))])
        .await
        .expect("mark");
    assert!(due(NOW).await.is_empty());
    assert_eq!(due(NOW + 10).await, vec![ana]);
    // A book saves only over the book it was computed from.
    let book = AlertBook {
        alerts: vec![Alert {
            kind: AlertKind::Low,
            raised_ms: NOW,
            state: AlertState::Active,
            notified_ms: NOW,
        }],
    };
    let basis = rec.evaluation();
    assert!(store
        .save_alert_book(ana, basis, &book, Some(NOW + 60_000), &[], NOW)
        .await
        .expect("save"));
    assert!(
        !store
            .save_alert_book(ana, basis, &book, None, &[], NOW)
            .await
            .expect("save"),
        "stale"
    );
    let rec = store.alert_record(ana).await.expect("record");
    assert_eq!(rec.book, book);
    assert_eq!(
        (
            rec.version,
            rec.evaluated_version,
            rec.book_version,
            rec.due_ms
        ),
        (1, 1, 1, Some(NOW + 60_000))
    );
    assert!(due(NOW).await.is_empty());
    // An upload during an evaluation makes that evaluation's mark a no-op: still due.
    store
        .insert_readings(ana, vec![reading(T0 + 2 * FIVE_MIN, 80.0)], NOW)
        .await
        .expect("insert");
    store
        .mark_alerts_evaluated(&[rec.unchanged(ana, None)])
        .await
        .expect("mark");
    assert_eq!(due(NOW).await, vec![ana]);
    // ... but not its save: the book is saved, and the upload still waits to be evaluated.
    let resolved = AlertBook {
        alerts: vec![Alert {
            state: AlertState::Resolved { at_ms: NOW },
            ..book.alerts[0].clone()
        }],
    };
    assert!(store
        .save_alert_book(ana, rec.evaluation(), &resolved, None, &[], NOW)
        .await
        .expect("save"));
    let rec = store.alert_record(ana).await.expect("record");
    assert_eq!(
        (rec.version, rec.evaluated_version, rec.book_version),
        (2, 1, 2)
    );
    assert_eq!(due(NOW).await, vec![ana]);
    // An evaluation that changed nothing, over a book that changed meanwhile: not recorded
    // (its due time was computed from the older book).
    let before = rec.clone();
    assert!(store
        .save_alert_book(ana, rec.edit(), &book, Some(NOW + 5), &[], NOW)
        .await
        .expect("save"));
    store
        .mark_alerts_evaluated(&[before.unchanged(ana, None)])
        .await
        .expect("mark");
    let rec = store.alert_record(ana).await.expect("record");
    assert_eq!(
        (
            rec.version,
            rec.evaluated_version,
            rec.book_version,
            rec.due_ms
        ),
        (2, 1, 3, Some(NOW + 5)),
        "an edit (an acknowledgement) evaluates no data"
    );
    store
        .mark_alerts_evaluated(&[rec.unchanged(ana, None)])
        .await
        .expect("mark");
    assert!(due(NOW).await.is_empty());
    // An evaluation never marks older data than what is already evaluated.
    assert!(store
        .save_alert_book(ana, rec.edit(), &book, None, &[], NOW)
        .await
        .expect("save"));
    let older = crate::BookBasis {
        book_version: 4,
        evaluated_version: Some(1),
    };
    assert!(store
        .save_alert_book(ana, older, &book, None, &[], NOW)
        .await
        .expect("save"));
    let rec = store.alert_record(ana).await.expect("record");
    assert_eq!(
        (rec.version, rec.evaluated_version, rec.book_version),
        (2, 2, 5)
    );
    // A first book for someone without a record.
    let none = AlertRecord::default();
    assert!(store
        .save_alert_book(ben, none.evaluation(), &book, None, &[], NOW)
        .await
        .expect("save"));
    assert_eq!(store.alert_record(ben).await.expect("record").book, book);
    assert!(
        !store
            .save_alert_book(ben, none.evaluation(), &book, None, &[], NOW)
            .await
            .expect("save"),
        "exists"
    );
    // Shards: ids modulo the count.
    for (who, at) in [(ben, T0), (ana, T0 + 3 * FIVE_MIN)] {
        store
            .insert_readings(who, vec![reading(at, 100.0)], NOW)
            .await
            .expect("insert");
    }
    for shard in 0..2u32 {
        let mine = store.alerts_due(NOW, 2, &[shard], 100).await.expect("due");
        let expected: Vec<UserId> = [ana, ben]
            .into_iter()
            .filter(|u| u.rem_euclid(2) == i64::from(shard))
            .collect();
        assert_eq!(mine, expected);
    }
    assert!(store
        .alerts_due(NOW, 2, &[], 100)
        .await
        .expect("due")
        .is_empty());
    assert_eq!(
        store.alerts_due(NOW, 1, &[0], 1).await.expect("due").len(),
        1
    );
}

pub async fn a_lease_has_one_holder_until_it_expires(store: &dyn Store) {
    assert!(store
        .try_lease("alerts:0", "a", 1_000, NOW)
        .await
        .expect("lease"));
    assert!(!store
        .try_lease("alerts:0", "b", 1_000, NOW + 500)
        .await
        .expect("lease"));
    // The holder renews; another lease is independent.
    assert!(store
        .try_lease("alerts:0", "a", 1_000, NOW + 900)
        .await
        .expect("lease"));
    assert!(store
        .try_lease("alerts:1", "b", 1_000, NOW + 900)
        .await
        .expect("lease"));
    assert!(!store
        .try_lease("alerts:0", "b", 1_000, NOW + 1_800)
        .await
        .expect("lease"));
    // Expired: the next one takes it, and the old holder has lost it.
    assert!(store
        .try_lease("alerts:0", "b", 1_000, NOW + 1_900)
        .await
        .expect("lease"));
    assert!(!store
        .try_lease("alerts:0", "a", 1_000, NOW + 2_000)
        .await
        .expect("lease"));
    // Released: free at once; releasing someone else's does nothing.
    store.release_lease("alerts:0", "a").await.expect("release");
    assert!(!store
        .try_lease("alerts:0", "a", 1_000, NOW + 2_000)
        .await
        .expect("lease"));
    store.release_lease("alerts:0", "b").await.expect("release");
    assert!(store
        .try_lease("alerts:0", "a", 1_000, NOW + 2_000)
        .await
        .expect("lease"));
}

pub async fn deliveries_are_queued_with_the_book_claimed_once_and_logged(store: &dyn Store) {
    use glucosync_domain::alerts::AlertBook;
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    let to = |recipient, target: &str| NewDelivery {
        recipient_id: recipient,
        channel: DeliveryChannel::Push,
        target: target.to_owned(),
        payload: format!("{{\"to\":\"{target}\"}}"),
    };
    let book = AlertBook::default();
    assert!(store
        .save_alert_book(
            ana,
            AlertRecord::default().evaluation(),
            &book,
            None,
            &[to(ana, "1"), to(ben, "2")],
            NOW
        )
        .await
        .expect("save"));
    // A stale save queues nothing.
    assert!(!store
        .save_alert_book(
            ana,
            AlertRecord::default().evaluation(),
            &book,
            None,
            &[to(ana, "3")],
            NOW
        )
        .await
        .expect("save"));
    let claim = |scope, now| async move {
        store
            .claim_deliveries(scope, now, 30_000, 10)
            .await
            .expect("claim")
    };
    let claimed = claim(DeliveryScope::Person(ana), NOW).await;
    assert_eq!(claimed.len(), 2);
    assert!(claimed
        .iter()
        .all(|d| d.attempts == 1 && d.person_id == ana));
    assert_eq!(claimed[1].payload, "{\"to\":\"2\"}");
    // Held by the claimer: nobody else takes them until the hold runs out.
    assert!(claim(DeliveryScope::Person(ana), NOW + 1_000)
        .await
        .is_empty());
    assert!(claim(DeliveryScope::Person(ben), NOW + 40_000)
        .await
        .is_empty());
    let ana_shard = [ana.rem_euclid(2) as u32];
    let again = claim(
        DeliveryScope::Shards {
            count: 2,
            held: &ana_shard,
        },
        NOW + 30_000,
    )
    .await;
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|d| d.attempts == 2));
    let other_shard = [(ana + 1).rem_euclid(2) as u32];
    assert!(claim(
        DeliveryScope::Shards {
            count: 2,
            held: &other_shard
        },
        NOW + 90_000
    )
    .await
    .is_empty());
    // Outcomes: sent is final; a retry is pending again at its time with the error kept.
    store
        .finish_delivery(&again[0], &DeliveryOutcome::Sent, NOW + 31_000)
        .await
        .expect("finish");
    store
        .finish_delivery(
            &again[1],
            &DeliveryOutcome::Retry {
                at_ms: NOW + 100_000,
                error: "503".into(),
            },
            NOW + 31_000,
        )
        .await
        .expect("finish");
    assert!(claim(DeliveryScope::Person(ana), NOW + 99_000)
        .await
        .is_empty());
    let retried = claim(DeliveryScope::Person(ana), NOW + 100_000).await;
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 3);
    store
        .finish_delivery(
            &retried[0],
            &DeliveryOutcome::Failed {
                error: "403".into(),
            },
            NOW + 101_000,
        )
        .await
        .expect("finish");
    let log = store
        .deliveries_of(ana, (i64::MAX, i64::MAX), 10)
        .await
        .expect("log");
    assert_eq!(log.len(), 2);
    let by_target = |t: &str| log.iter().find(|d| d.target == t).expect("delivery");
    assert_eq!(by_target("1").status, DeliveryStatus::Sent);
    assert_eq!(by_target("1").done_ms, Some(NOW + 31_000));
    assert_eq!(by_target("2").status, DeliveryStatus::Failed);
    assert_eq!(by_target("2").last_error.as_deref(), Some("403"));
    assert_eq!(by_target("2").recipient_id, ben);
    let first_page = store
        .deliveries_of(ana, (i64::MAX, i64::MAX), 1)
        .await
        .expect("log");
    let second_page = store
        .deliveries_of(ana, (first_page[0].created_ms, first_page[0].id), 1)
        .await
        .expect("log");
    assert_ne!(first_page[0].id, second_page[0].id);
    assert!(store
        .deliveries_of(ben, (i64::MAX, i64::MAX), 10)
        .await
        .expect("log")
        .is_empty());
}

pub async fn push_subscriptions_follow_channels_and_server_secrets(store: &dyn Store) {
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    let first = store
        .add_push_subscription(ana, "https://push.example/a", "key1", "auth1", NOW)
        .await
        .expect("add");
    // The same endpoint again renews its keys, keeping its id.
    let renewed = store
        .add_push_subscription(ana, "https://push.example/a", "key2", "auth2", NOW + 1)
        .await
        .expect("add");
    assert_eq!(renewed.id, first.id);
    let second = store
        .add_push_subscription(ana, "https://push.example/b", "key3", "auth3", NOW)
        .await
        .expect("add");
    let listed = store.push_subscriptions(ana).await.expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (listed[0].p256dh.as_str(), listed[0].auth.as_str()),
        ("key2", "auth2")
    );
    assert!(store
        .push_subscriptions(ben)
        .await
        .expect("list")
        .is_empty());
    assert!(!store
        .delete_push_subscription(ben, second.id)
        .await
        .expect("delete"));
    assert!(store
        .delete_push_subscription(ana, second.id)
        .await
        .expect("delete"));
    // An expired subscription is deleted with its delivery's outcome.
    let book = glucosync_domain::alerts::AlertBook::default();
    let delivery = NewDelivery {
        recipient_id: ana,
        channel: DeliveryChannel::Push,
        target: first.id.to_string(),
        payload: "{}".into(),
    };
    assert!(store
        .save_alert_book(
            ana,
            AlertRecord::default().evaluation(),
            &book,
            None,
            &[delivery],
            NOW
        )
        .await
        .expect("save"));
    let claimed = store
        .claim_deliveries(DeliveryScope::Person(ana), NOW, 1_000, 10)
        .await
        .expect("claim");
    store
        .finish_delivery(
            &claimed[0],
            &DeliveryOutcome::Expired {
                error: "410".into(),
            },
            NOW,
        )
        .await
        .expect("finish");
    assert!(store
        .push_subscriptions(ana)
        .await
        .expect("list")
        .is_empty());

    // A follower chooses their channels; only on an active share.
    let share = store
        .create_invite(invite(ana, "tok-channels", ShareRole::Caregiver))
        .await
        .expect("invite");
    assert!((share.notify_push, share.notify_email) == (true, false));
    assert!(!store
        .set_follow_channels(ana, ben, false, true)
        .await
        .expect("set"));
    store
        .accept_invite("hash-tok-channels", ben, NOW)
        .await
        .expect("accept")
        .expect("share");
    assert!(store
        .set_follow_channels(ana, ben, false, true)
        .await
        .expect("set"));
    let followed = store.shares_followed(ben).await.expect("followed");
    assert_eq!(
        (followed[0].notify_push, followed[0].notify_email),
        (false, true)
    );

    // The first secret stays.
    assert_eq!(
        store.server_secret("vapid", "one").await.expect("secret"),
        "one"
    );
    assert_eq!(
        store.server_secret("vapid", "two").await.expect("secret"),
        "one"
    );
    assert_eq!(
        store.server_secret("other", "two").await.expect("secret"),
        "two"
    );
}
