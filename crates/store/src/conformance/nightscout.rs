//! Conformance cases of the Nightscout compatibility layer's storage (docs/nightscout.md).

use glucosync_domain::readings::ReadingKind;
use glucosync_domain::treatments::TreatmentDetail;
use glucosync_domain::Timestamp;

use super::{all_range, carbs, reading, user, FIVE_MIN, NOW, T0};
use crate::{DocumentCollection, NewDocument, NightscoutSite, Store, StoreError, StoredId};

fn site(user_id: i64, handle: &str, sha1: &str) -> NightscoutSite {
    NightscoutSite {
        user_id,
        handle: handle.into(),
        secret_hash: sha1.into(),
        secret_sealed: format!("sealed-{sha1}"),
        public_read: false,
        created_ms: NOW,
        updated_ms: NOW,
    }
}

fn ids(stored: &[StoredId]) -> Vec<(&str, bool)> {
    stored.iter().map(|s| (s.id.as_str(), s.inserted)).collect()
}

pub async fn nightscout_sites_are_one_per_person_and_found_by_handle_or_secret(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    assert_eq!(store.nightscout_site(a).await.expect("read"), None);
    let made = store
        .create_nightscout_site(&site(a, "alice", "aaaa"))
        .await
        .expect("create");
    assert_eq!(made, site(a, "alice", "aaaa"));
    // A second creation (e.g. two tabs at once) answers the site the person has.
    let again = store
        .create_nightscout_site(&site(a, "alice2", "cccc"))
        .await
        .expect("create again");
    assert_eq!(again.handle, "alice");
    // Another person cannot take the handle or the secret.
    for taken in [site(b, "alice", "bbbb"), site(b, "bob", "aaaa")] {
        assert!(
            matches!(
                store.create_nightscout_site(&taken).await,
                Err(StoreError::Conflict(_))
            ),
            "{taken:?}"
        );
    }
    assert_eq!(store.nightscout_site(b).await.expect("read"), None);
    store
        .create_nightscout_site(&site(b, "bob", "bbbb"))
        .await
        .expect("create b");
    let by_handle = store.nightscout_site_by_handle("bob").await.expect("read");
    assert_eq!(by_handle.map(|s| s.user_id), Some(b));
    let by_secret = store.nightscout_site_by_secret("aaaa").await.expect("read");
    assert_eq!(by_secret.map(|s| s.user_id), Some(a));
    assert_eq!(
        store
            .nightscout_site_by_handle("carol")
            .await
            .expect("read"),
        None
    );

    // Rotation: the old secret finds nobody, the new one finds the owner.
    let mut rotated = site(a, "alice", "dddd");
    rotated.public_read = true;
    rotated.updated_ms = NOW + 1;
    assert!(store
        .update_nightscout_site(&rotated)
        .await
        .expect("update"));
    assert_eq!(
        store.nightscout_site_by_secret("aaaa").await.expect("read"),
        None
    );
    let now = store.nightscout_site(a).await.expect("read").expect("site");
    assert_eq!(
        (
            now.secret_hash.as_str(),
            now.secret_sealed.as_str(),
            now.public_read
        ),
        ("dddd", "sealed-dddd", true)
    );
    let c = user(store, "c@example.org").await;
    assert!(!store
        .update_nightscout_site(&site(c, "carol", "eeee"))
        .await
        .expect("update"));
}

pub async fn nightscout_entries_deduplicate_by_kind_and_time_and_answer_ids_in_order(
    store: &dyn Store,
) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    let mut from_xdrip = reading(T0, 120.0);
    from_xdrip.device = "xDrip-DexcomG6".into();
    from_xdrip.extra = Some(r#"{"filtered":120000}"#.into());
    let first = store
        .insert_entries(
            a,
            vec![from_xdrip.clone(), reading(T0 + FIVE_MIN, 125.0)],
            NOW,
        )
        .await
        .expect("insert");
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|s| s.inserted));
    assert_ne!(first[0].id, first[1].id);

    // A second uploader sends the same reading from another device, inside a batch with a
    // new one and a repeat within the batch itself: ids come back in request order.
    let mut from_bridge = reading(T0, 121.0);
    from_bridge.device = "nightscout-connect".into();
    let second = store
        .insert_entries(
            a,
            vec![
                reading(T0 + 2 * FIVE_MIN, 130.0),
                from_bridge,
                reading(T0 + 2 * FIVE_MIN, 131.0),
            ],
            NOW,
        )
        .await
        .expect("insert");
    assert_eq!(
        ids(&second),
        vec![
            (second[0].id.as_str(), true),
            (first[0].id.as_str(), false),
            (second[0].id.as_str(), false)
        ]
    );
    let stored = store.list_readings(a, &all_range(10)).await.expect("list");
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(stored[0].value.mgdl(), 120.0, "the first upload wins");
    assert_eq!(stored[0].extra, from_xdrip.extra);
    assert_eq!(stored[0].id.to_string(), first[0].id);

    // A meter reading at the same time is another entry; another person's is theirs.
    let mut meter = reading(T0, 118.0);
    meter.kind = ReadingKind::Meter;
    let m = store
        .insert_entries(a, vec![meter], NOW)
        .await
        .expect("mbg");
    assert!(m[0].inserted);
    let other = store
        .insert_entries(b, vec![reading(T0, 90.0)], NOW)
        .await
        .expect("b");
    assert!(other[0].inserted);
    assert_eq!(
        store
            .list_readings(a, &all_range(10))
            .await
            .expect("list")
            .len(),
        4
    );
    // The ordinary upload of the same reading counts it as a duplicate too (same device).
    let plain = store
        .insert_readings(a, vec![reading(T0 + FIVE_MIN, 125.0)], NOW)
        .await
        .expect("plain");
    assert_eq!(plain.duplicates, 1);
    assert!(store
        .insert_entries(a, vec![], NOW)
        .await
        .expect("empty")
        .is_empty());
}

pub async fn nightscout_treatments_deduplicate_by_id_then_time_and_kind(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    let mut loop_carbs = carbs(Some("loop-sync-1"), T0, 30.0);
    loop_carbs.extra = Some(r#"{"eventType":"Carb Correction","absorptionTime":180}"#.into());
    let first = store
        .insert_nightscout_treatments(a, vec![loop_carbs.clone()], NOW)
        .await
        .expect("insert");
    assert_eq!(ids(&first), vec![("loop-sync-1", true)]);
    // The same treatment from another uploader without Loop's identifier (same time and
    // kind), the same identifier again, and a new one: request order kept.
    let second = store
        .insert_nightscout_treatments(
            a,
            vec![
                carbs(None, T0 + FIVE_MIN, 12.0),
                carbs(Some("bridge-77"), T0, 30.0),
                carbs(Some("loop-sync-1"), T0 + 60_000, 31.0),
            ],
            NOW,
        )
        .await
        .expect("insert");
    assert_eq!(second.len(), 3);
    assert!(second[0].inserted);
    assert_eq!(
        ids(&second[1..]),
        vec![("loop-sync-1", false), ("loop-sync-1", false)]
    );
    let stored = store
        .list_treatments(a, &all_range(10))
        .await
        .expect("list");
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[0].extra, loop_carbs.extra);
    assert_eq!(stored[0].detail, TreatmentDetail::Carbs { grams: 30.0 });
    // Two different events of one kind at one time (a site change and a sensor start, both
    // notes) are two treatments; the same event again is one.
    let note = |id: &str, event: &str| {
        let mut t = carbs(Some(id), T0 + 2 * FIVE_MIN, 1.0);
        t.detail = TreatmentDetail::Note { text: event.into() };
        t.extra = Some(format!(r#"{{"eventType":"{event}"}}"#));
        t
    };
    let events = store
        .insert_nightscout_treatments(
            a,
            vec![
                note("n1", "Site Change"),
                note("n2", "Sensor Start"),
                note("n3", "Site Change"),
            ],
            NOW,
        )
        .await
        .expect("notes");
    assert_eq!(
        ids(&events),
        vec![("n1", true), ("n2", true), ("n1", false)]
    );
    // Another person's identical treatment is theirs.
    let theirs = store
        .insert_nightscout_treatments(b, vec![carbs(Some("loop-sync-1"), T0, 30.0)], NOW)
        .await
        .expect("b");
    assert!(theirs[0].inserted);
}

pub async fn treatment_extra_fields_round_trip_and_survive_updates_without_them(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let mut t = carbs(Some("t1"), T0, 20.0);
    t.extra = Some(r#"{"foodType":"🍕"}"#.into());
    store
        .insert_treatments(a, vec![t.clone()], NOW)
        .await
        .expect("insert");
    // An edit through GlucoSync's own API carries no extra fields: they stay.
    let mut edited = carbs(Some("t1"), T0 + 1000, 25.0);
    edited.extra = None;
    let after = store
        .update_treatment(a, edited, NOW + 1)
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(after.extra, t.extra);
    assert_eq!(after.time, Timestamp::from_utc_ms(T0 + 1000));
    // A Nightscout edit replaces them.
    let mut replaced = carbs(Some("t1"), T0 + 1000, 25.0);
    replaced.extra = Some("{}".into());
    let after = store
        .update_treatment(a, replaced, NOW + 2)
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(after.extra.as_deref(), Some("{}"));
}

pub async fn nightscout_documents_dedupe_replace_delete_and_keep_history(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    let status = DocumentCollection::DeviceStatus;
    let doc = |id: &str, t: i64, body: &str| NewDocument {
        id: id.into(),
        time_ms: t,
        body: body.into(),
    };
    let first = store
        .insert_documents(
            a,
            status,
            vec![
                doc("d1", T0, r#"{"pump":{"reservoir":100}}"#),
                doc("d2", T0 + FIVE_MIN, r#"{"pump":{"reservoir":99}}"#),
                doc("d1", T0, r#"{"pump":{"reservoir":1}}"#),
            ],
            NOW,
        )
        .await
        .expect("insert");
    assert_eq!(ids(&first), vec![("d1", true), ("d2", true), ("d1", false)]);
    // Collections and people are apart.
    store
        .insert_documents(
            a,
            DocumentCollection::Profile,
            vec![doc("d1", T0, "{}")],
            NOW,
        )
        .await
        .expect("profile");
    store
        .insert_documents(b, status, vec![doc("d9", T0, "{}")], NOW)
        .await
        .expect("b");
    let mut newest_first = all_range(10);
    newest_first.descending = true;
    let listed = store
        .list_documents(a, status, &newest_first)
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["d2", "d1"]
    );
    assert_eq!(listed[1].body, r#"{"pump":{"reservoir":100}}"#);
    assert_eq!((listed[1].created_ms, listed[1].modified_ms), (NOW, NOW));

    store
        .put_document(
            a,
            status,
            doc("d1", T0 + 1, r#"{"pump":{"reservoir":98}}"#),
            NOW + 10,
        )
        .await
        .expect("replace");
    let d1 = store
        .document(a, status, "d1")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (d1.time_ms, d1.body.as_str(), d1.created_ms, d1.modified_ms),
        (T0 + 1, r#"{"pump":{"reservoir":98}}"#, NOW, NOW + 10)
    );
    assert_eq!(
        store
            .delete_documents(a, status, &["d2".into(), "nope".into()], NOW + 20)
            .await
            .expect("delete"),
        1
    );
    assert_eq!(
        store
            .delete_documents(b, status, &["d1".into()], NOW + 20)
            .await
            .expect("not theirs"),
        0
    );
    let listed = store
        .list_documents(a, status, &all_range(10))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1, "a deleted document is not listed");
    // History: every change since a time, deletions included, oldest change first.
    let history = store
        .documents_modified_since(a, status, NOW + 5, 10)
        .await
        .expect("history");
    assert_eq!(
        history
            .iter()
            .map(|d| (d.id.as_str(), d.deleted, d.modified_ms))
            .collect::<Vec<_>>(),
        vec![("d1", false, NOW + 10), ("d2", true, NOW + 20)]
    );
    // Re-posting a deleted id is a duplicate; put revives it.
    let again = store
        .insert_documents(a, status, vec![doc("d2", T0, "{}")], NOW + 30)
        .await
        .expect("again");
    assert!(!again[0].inserted);
    store
        .put_document(a, status, doc("d2", T0, "{}"), NOW + 40)
        .await
        .expect("revive");
    assert_eq!(
        store
            .list_documents(a, status, &all_range(10))
            .await
            .expect("list")
            .len(),
        2
    );
}

pub async fn changes_are_listed_in_the_order_the_server_made_them(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let b = user(store, "b@example.org").await;
    assert_eq!(
        store.last_changes(a).await.expect("none yet"),
        crate::LastChanges::default()
    );
    // An old reading uploaded late is a late change: history is by server time.
    store
        .insert_entries(a, vec![reading(T0 + FIVE_MIN, 100.0)], NOW)
        .await
        .expect("first");
    let late = store
        .insert_entries(
            a,
            vec![reading(T0, 90.0), reading(T0 + 2 * FIVE_MIN, 95.0)],
            NOW + 10,
        )
        .await
        .expect("late");
    store
        .insert_entries(b, vec![reading(T0, 1.0 + 99.0)], NOW + 10)
        .await
        .expect("b");
    let since = store
        .readings_stored_since(a, NOW + 5, 10)
        .await
        .expect("history");
    assert_eq!(
        since
            .iter()
            .map(|r| (r.id.to_string(), r.created_ms))
            .collect::<Vec<_>>(),
        vec![
            (late[0].id.clone(), NOW + 10),
            (late[1].id.clone(), NOW + 10)
        ]
    );
    assert_eq!(
        store
            .readings_stored_since(a, 0, 1)
            .await
            .expect("limit")
            .len(),
        1
    );
    let id: i64 = late[0].id.parse().expect("numeric id");
    let one = store.reading(a, id).await.expect("read").expect("exists");
    assert_eq!(one.time.utc_ms, T0);
    assert_eq!(store.reading(b, id).await.expect("read"), None, "not b's");

    store
        .insert_treatments(
            a,
            vec![carbs(Some("t1"), T0, 10.0), carbs(Some("t2"), T0, 11.0)],
            NOW,
        )
        .await
        .expect("treatments");
    store
        .update_treatment(a, carbs(Some("t1"), T0, 12.0), NOW + 20)
        .await
        .expect("update");
    let changed = store
        .treatments_changed_since(a, NOW + 1, 10)
        .await
        .expect("changed");
    assert_eq!(
        changed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec!["t1"]
    );
    store
        .insert_documents(
            a,
            DocumentCollection::DeviceStatus,
            vec![NewDocument {
                id: "d".into(),
                time_ms: T0,
                body: "{}".into(),
            }],
            NOW + 30,
        )
        .await
        .expect("doc");
    // Deletions through any API are changes too: tombstones in the same transaction.
    assert!(store.delete_reading(a, id).await.expect("delete"));
    assert!(store.delete_treatment(a, "t2").await.expect("delete"));
    assert!(!store.delete_treatment(b, "t1").await.expect("not b's"));
    assert_eq!(
        store
            .delete_readings_in_range(a, T0 + FIVE_MIN, T0 + 2 * FIVE_MIN)
            .await
            .expect("range"),
        1
    );
    let entries = store
        .documents_modified_since(a, DocumentCollection::DeletedEntries, 0, 10)
        .await
        .expect("tombstones");
    let mut tombstones: Vec<String> = entries.iter().map(|d| d.id.clone()).collect();
    tombstones.sort();
    assert_eq!(tombstones.len(), 2, "{tombstones:?}");
    assert!(tombstones.contains(&format!("{id:024x}")), "{tombstones:?}");
    let treatments = store
        .documents_modified_since(a, DocumentCollection::DeletedTreatments, 0, 10)
        .await
        .expect("tombstones");
    assert_eq!(
        treatments.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["t2"]
    );
    assert!(store
        .documents_modified_since(b, DocumentCollection::DeletedTreatments, 0, 10)
        .await
        .expect("b")
        .is_empty());
    let last = store.last_changes(a).await.expect("last");
    assert_eq!(
        (last.readings, last.treatments),
        (Some(NOW + 10), Some(NOW + 20))
    );
    let mut collections: Vec<&str> = last.documents.iter().map(|(c, _)| c.as_str()).collect();
    collections.sort();
    assert_eq!(
        collections,
        vec!["deleted_entries", "deleted_treatments", "devicestatus"]
    );
    assert!(last
        .documents
        .contains(&(DocumentCollection::DeviceStatus, NOW + 30)));
}

pub async fn reading_ids_are_never_handed_out_again(store: &dyn Store) {
    let a = user(store, "a@example.org").await;
    let first = store
        .insert_entries(a, vec![reading(T0, 100.0)], NOW)
        .await
        .expect("insert");
    let id: i64 = first[0].id.parse().expect("numeric");
    assert!(store.delete_reading(a, id).await.expect("delete"));
    let second = store
        .insert_entries(a, vec![reading(T0, 100.0)], NOW + 1)
        .await
        .expect("insert again");
    assert_ne!(
        second[0].id, first[0].id,
        "a client's old id must not name a new reading"
    );
}
