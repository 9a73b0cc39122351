//! The storage conformance suite on the embedded SQLite backend, one fresh file per case.

use std::sync::Arc;

use glucosync_store::conformance::Harness;
use glucosync_store_sqlite::SqliteStore;

async fn fresh_store() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_and_migrate(&dir.path().join("glucosync.db"))
        .await
        .expect("open store");
    Harness {
        store: Arc::new(store),
        keep: Box::new(dir),
    }
}

glucosync_store::conformance_suite!(fresh_store);
