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

/// Every table with a column naming an account is in `ACCOUNT_ROWS` (or is a share's
/// follower side of another person's access log): a table added later cannot be forgotten by
/// account deletion.
#[tokio::test]
async fn account_deletion_knows_every_table_with_an_account_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("glucosync.db");
    let store = SqliteStore::open_and_migrate(&path)
        .await
        .expect("open store");
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let mut found = Vec::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("tables");
    for table in tables {
        let columns: Vec<String> = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .and_then(|mut s| s.query_map([], |r| r.get(1))?.collect())
            .expect("columns");
        for column in columns {
            if glucosync_store::ACCOUNT_COLUMN_NAMES.contains(&column.as_str()) {
                found.push((table.clone(), column));
            }
        }
    }
    glucosync_store::check_account_rows(&found);
}
