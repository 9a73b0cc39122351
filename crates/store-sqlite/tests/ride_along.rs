//! Forecasts ride along with the next write's commit (`Engine::write_with_next`): whatever
//! the timing, each one is stored, alone or with others, and none is lost at close.

use std::sync::Arc;

use glucosync_domain::accounts::Email;
use glucosync_store::{AdminGrant, NewUser, Store, StoredForecast};
use glucosync_store_sqlite::SqliteStore;

async fn store_with_person() -> (tempfile::TempDir, Arc<SqliteStore>, i64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_and_migrate(&dir.path().join("glucosync.db"))
        .await
        .expect("open store");
    let user = store
        .create_user(NewUser {
            email: Email::parse("ride@example.org").expect("email"),
            password_hash: "x".into(),
            admin: AdminGrant::No,
            now_ms: 1_700_000_000_000,
        })
        .await
        .expect("user");
    (dir, Arc::new(store), user.id)
}

fn forecast(issued_ms: i64) -> StoredForecast {
    StoredForecast {
        issued_ms,
        model_version: "test/1".into(),
        created_ms: issued_ms + 1,
        points: vec![1, 2, 3, 4, 5, 6],
    }
}

#[tokio::test]
async fn a_forecast_alone_is_committed_without_another_write() {
    let (_dir, store, user) = store_with_person().await;
    store
        .save_forecasts(vec![(user, forecast(1_700_000_300_000).into())])
        .await
        .expect("saved");
    let latest = store.latest_forecast(user).await.expect("read");
    assert_eq!(latest.map(|f| f.issued_ms), Some(1_700_000_300_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecasts_and_readings_written_at_once_all_land() {
    let (_dir, store, user) = store_with_person().await;
    let mut tasks = Vec::new();
    for i in 0..50i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let t = 1_700_000_000_000 + i * 300_000;
            let reading = glucosync_domain::readings::NewReading {
                time: glucosync_domain::Timestamp::from_utc_ms(t),
                value: glucosync_domain::GlucoseMgdl::from_unit(
                    100.0 + i as f64,
                    glucosync_domain::GlucoseUnit::MgDl,
                )
                .expect("value"),
                kind: glucosync_domain::readings::ReadingKind::Cgm,
                trend: None,
                device: "test".into(),
                extra: None,
            };
            let rows = vec![(user, forecast(t).into())];
            let (inserted, saved) = tokio::join!(
                store.insert_readings(user, vec![reading], t),
                store.save_forecasts(rows)
            );
            inserted.expect("reading stored");
            saved.expect("forecast stored");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let latest = store.latest_forecast(user).await.expect("read");
    assert_eq!(
        latest.map(|f| f.issued_ms),
        Some(1_700_000_000_000 + 49 * 300_000)
    );
    let values = store
        .cgm_values(user, 1_700_000_000_000, 1_700_000_000_000 + 50 * 300_000)
        .await
        .expect("readings");
    assert_eq!(values.len(), 50);
}

#[tokio::test]
async fn a_forecast_saved_just_before_close_is_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("glucosync.db");
    let user = {
        let store = SqliteStore::open_and_migrate(&path).await.expect("open");
        let user = store
            .create_user(NewUser {
                email: Email::parse("close@example.org").expect("email"),
                password_hash: "x".into(),
                admin: AdminGrant::No,
                now_ms: 1_700_000_000_000,
            })
            .await
            .expect("user")
            .id;
        // Saved from a task and still riding along (the wait has not passed) when the store
        // closes: the writer's last group takes it; closing does not wait for the timer.
        let store = Arc::new(store);
        let saving = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .save_forecasts(vec![(user, forecast(1_700_000_600_000).into())])
                    .await
            })
        };
        tokio::task::yield_now().await;
        store.close().await;
        saving.await.expect("task").expect("saved");
        user
    };
    let store = SqliteStore::open_and_migrate(&path).await.expect("reopen");
    assert_eq!(
        store
            .latest_forecast(user)
            .await
            .expect("read")
            .map(|f| f.issued_ms),
        Some(1_700_000_600_000)
    );
}
