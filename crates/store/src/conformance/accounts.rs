//! Conformance cases of account deletion (docs/data-ownership.md) and the operator's walk
//! over every account.

use super::{all_range, carbs, invite, reading, session, user, NOW, T0};
use crate::{DocumentCollection, NewDocument, NightscoutSite, ShareRole, Store};

const WEEK: i64 = 7 * 86_400_000;

pub async fn account_deletion_cuts_every_way_in_at_once_and_then_removes_everything(
    store: &dyn Store,
) {
    let ana = user(store, "ana@example.org").await;
    let ben = user(store, "ben@example.org").await;
    let cy = user(store, "cy@example.org").await;
    // Ana's data, her ways in, a follower, and someone she follows.
    store
        .insert_readings(
            ana,
            vec![reading(T0, 100.0), reading(T0 + 300_000, 110.0)],
            NOW,
        )
        .await
        .expect("readings");
    store
        .insert_readings(cy, vec![reading(T0, 140.0)], NOW)
        .await
        .expect("cy's readings");
    store
        .insert_treatments(ana, vec![carbs(Some("c1"), T0, 30.0)], NOW)
        .await
        .expect("treatments");
    store
        .insert_documents(
            ana,
            DocumentCollection::DeviceStatus,
            vec![NewDocument {
                id: "d1".into(),
                time_ms: T0,
                body: "{}".into(),
            }],
            NOW,
        )
        .await
        .expect("documents");
    store
        .create_credential(session(ana, "ana-session", None))
        .await
        .expect("session");
    store
        .link_identity(ana, "https://idp", "ana-sub", NOW)
        .await
        .expect("identity");
    store
        .add_push_subscription(ana, "https://push.example/ana", "p", "a", NOW)
        .await
        .expect("push");
    store
        .create_nightscout_site(&NightscoutSite {
            user_id: ana,
            handle: "ana".into(),
            secret_hash: "ana-secret".into(),
            secret_sealed: "sealed".into(),
            public_read: false,
            created_ms: NOW,
            updated_ms: NOW,
        })
        .await
        .expect("site");
    store
        .create_invite(invite(ana, "to-ben", ShareRole::Caregiver))
        .await
        .expect("invite");
    store
        .accept_invite("hash-to-ben", ben, NOW)
        .await
        .expect("accept")
        .expect("live");
    store
        .create_invite(invite(cy, "to-ana", ShareRole::Caregiver))
        .await
        .expect("invite");
    store
        .accept_invite("hash-to-ana", ana, NOW)
        .await
        .expect("accept")
        .expect("live");
    store
        .record_access(ana, ben, "readings", NOW)
        .await
        .expect("log");
    store
        .record_access(cy, ana, "readings", NOW)
        .await
        .expect("log");

    // Requesting deletion cuts every way in, in one step.
    let revoked = store
        .request_deletion(ana, NOW + WEEK, NOW)
        .await
        .expect("request");
    assert_eq!(revoked, ["ana-session"]);
    assert!(store
        .credential_by_hash("ana-session", NOW)
        .await
        .expect("read")
        .is_none());
    assert_eq!(store.active_share(ana, ben).await.expect("read"), None);
    assert_eq!(store.active_share(cy, ana).await.expect("read"), None);
    assert_eq!(store.nightscout_site(ana).await.expect("read"), None);
    assert!(store
        .nightscout_site_by_secret("ana-secret")
        .await
        .expect("read")
        .is_none());
    assert!(store
        .push_subscriptions(ana)
        .await
        .expect("read")
        .is_empty());
    let pending = store
        .user_by_id(ana)
        .await
        .expect("read")
        .expect("still there");
    assert_eq!(pending.deletion_due_ms, Some(NOW + WEEK));
    // The data itself waits out the grace period, and the owner may cancel.
    assert_eq!(
        store
            .list_readings(ana, &all_range(10))
            .await
            .expect("read")
            .len(),
        2
    );
    assert!(store
        .deletions_due(NOW + WEEK - 1)
        .await
        .expect("due")
        .is_empty());
    assert_eq!(store.deletions_due(NOW + WEEK).await.expect("due"), [ana]);
    assert!(store.cancel_deletion(ana).await.expect("cancel"));
    assert!(!store.cancel_deletion(ana).await.expect("cancel again"));
    let kept = store.user_by_id(ana).await.expect("read").expect("kept");
    assert_eq!(kept.deletion_due_ms, None);
    assert!(store
        .deletions_due(NOW + WEEK)
        .await
        .expect("due")
        .is_empty());

    store
        .request_deletion(ana, NOW, NOW)
        .await
        .expect("request again");
    assert!(store.delete_account(ana).await.expect("delete"));
    assert!(!store.delete_account(ana).await.expect("delete again"));
    assert!(store.user_by_id(ana).await.expect("read").is_none());
    assert!(store
        .user_by_email("ana@example.org")
        .await
        .expect("read")
        .is_none());
    assert!(store
        .list_readings(ana, &all_range(10))
        .await
        .expect("read")
        .is_empty());
    assert!(store
        .list_treatments(ana, &all_range(10))
        .await
        .expect("read")
        .is_empty());
    assert!(store
        .list_documents(ana, DocumentCollection::DeviceStatus, &all_range(10))
        .await
        .expect("read")
        .is_empty());
    assert!(store.shares_of_owner(ana).await.expect("read").is_empty());
    assert!(store.shares_followed(ben).await.expect("read").is_empty());
    assert!(store
        .user_by_identity("https://idp", "ana-sub")
        .await
        .expect("read")
        .is_none());
    assert!(store
        .access_log(ana, (i64::MAX, i64::MAX), 10)
        .await
        .expect("read")
        .is_empty());
    // Cy's record of Ana's reads stays Cy's, naming no one.
    let cys_log = store
        .access_log(cy, (i64::MAX, i64::MAX), 10)
        .await
        .expect("read");
    assert_eq!(cys_log.len(), 1);
    assert_eq!(cys_log[0].follower_email, "(a deleted account)");
    // Others are untouched; the address can be used again.
    assert_eq!(
        store
            .list_readings(cy, &all_range(10))
            .await
            .expect("read")
            .len(),
        1
    );
    let again = user(store, "ana@example.org").await;
    assert!(store
        .list_readings(again, &all_range(10))
        .await
        .expect("read")
        .is_empty());
}

pub async fn every_account_is_listed_once_in_id_order(store: &dyn Store) {
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(user(store, &format!("u{i}@example.org")).await);
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.list_users(after, 3).await.expect("list");
        let Some(last) = page.last() else { break };
        after = last.id;
        seen.extend(page.iter().map(|u| u.id));
    }
    assert_eq!(seen, ids);
}
