//! TLS to PostgreSQL as the URL's `sslmode` says, checked on the server itself: its
//! `pg_stat_ssl` view tells for each of the store's connections whether it is encrypted. The
//! test server (`scripts/test`'s PostgreSQL) offers TLS, as Debian's and Spilo's do.

use glucosync_store::Store;
use glucosync_store_postgres::{PostgresOptions, PostgresStore};
use glucosync_testing::{postgres_admin_url, TestDatabase};

/// Whether the store's connections to `db` are encrypted, as the server sees them.
async fn encrypted(db: &TestDatabase) -> Vec<bool> {
    let (client, connection) =
        tokio_postgres::connect(&postgres_admin_url(), tokio_postgres::NoTls)
            .await
            .expect("admin connection");
    tokio::spawn(connection);
    let name = db.url.rsplit('/').next().expect("database name");
    client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1 AND a.application_name = 'glucoengine'",
            &[&name],
        )
        .await
        .expect("pg_stat_ssl")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn open(url: &str) -> PostgresStore {
    let store = PostgresStore::open(&PostgresOptions::new(url)).expect("open");
    store.migrate().await.expect("migrate");
    store
        .readiness()
        .await
        .expect("a query over the connection");
    store
}

#[tokio::test]
async fn sslmode_require_encrypts_and_disable_does_not() {
    let db = TestDatabase::create();
    let sep = if db.url.contains('?') { '&' } else { '?' };

    let store = open(&format!("{}{sep}sslmode=require", db.url)).await;
    let seen = encrypted(&db).await;
    assert!(
        !seen.is_empty() && seen.iter().all(|e| *e),
        "require: {seen:?}"
    );
    store.close().await;

    let store = open(&format!("{}{sep}sslmode=disable", db.url)).await;
    let seen = encrypted(&db).await;
    assert!(
        !seen.is_empty() && seen.iter().all(|e| !*e),
        "disable: {seen:?}"
    );
    store.close().await;

    // No sslmode: libpq's default, `prefer`, encrypts when the server offers TLS.
    let store = open(&db.url).await;
    let seen = encrypted(&db).await;
    assert!(
        !seen.is_empty() && seen.iter().all(|e| *e),
        "prefer: {seen:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn a_bad_sslmode_is_a_clear_configuration_error() {
    let db = TestDatabase::create();
    let err = PostgresStore::open(&PostgresOptions::new(&format!(
        "{}?sslmode=sometimes",
        db.url
    )))
    .err()
    .expect("invalid sslmode")
    .to_string();
    assert!(err.contains("sslmode"), "{err}");
}
