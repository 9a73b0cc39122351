//! Closing the store checkpoints the WAL without waiting for anybody: alone, it leaves the
//! database file whole and the WAL empty; beside another process's connections (a CLI command
//! closing its store while the server runs), it neither fails nor disturbs their transactions.

use glucosync_domain::accounts::Email;
use glucosync_store::{AdminGrant, NewUser, Store};
use glucosync_store_sqlite::SqliteStore;
use rusqlite::Connection;

async fn add_person(store: &SqliteStore, email: &str) {
    store
        .create_user(NewUser {
            email: Email::parse(email).expect("email"),
            password_hash: "x".into(),
            admin: AdminGrant::No,
            now_ms: 1_700_000_000_000,
        })
        .await
        .expect("user");
}

fn people(db: &std::path::Path) -> i64 {
    Connection::open(db)
        .expect("open")
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .expect("count")
}

#[tokio::test]
async fn closing_alone_leaves_the_database_file_whole_and_the_wal_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("glucosync.db");
    let store = SqliteStore::open_and_migrate(&db).await.expect("open");
    add_person(&store, "alone@example.org").await;
    store.close().await;
    drop(store);
    let wal = dir.path().join("glucosync.db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
        "the WAL still holds frames"
    );
    // The database file alone (copied without its WAL) has everything.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).expect("copy");
    assert_eq!(people(&copy), 1);
}

#[tokio::test]
async fn closing_beside_other_connections_leaves_their_transactions_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("glucosync.db");
    let server = SqliteStore::open_and_migrate(&db).await.expect("open");
    add_person(&server, "before@example.org").await;
    // Another process's reader in the middle of a read, on an older snapshot than what the
    // closing store writes next.
    let reader = Connection::open(&db).expect("reader");
    reader.execute_batch("BEGIN").expect("begin");
    let seen: i64 = reader
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .expect("read");
    assert_eq!(seen, 1);
    let cli = SqliteStore::open_and_migrate(&db).await.expect("open");
    add_person(&cli, "cli@example.org").await;
    cli.close().await;
    // The reader's snapshot is intact and its transaction ends normally; the server writes on.
    let still: i64 = reader
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .expect("read");
    assert_eq!(still, 1);
    reader.execute_batch("COMMIT").expect("end the read");
    add_person(&server, "after@example.org").await;
    server.close().await;
    assert_eq!(people(&db), 3);
}
