//! The storage conformance suite on PostgreSQL: each case gets a database of its own, created
//! on the server named by `GS_TEST_POSTGRES_URL` (default: the local server as `postgres`) and
//! dropped afterwards. `scripts/test` makes sure that server runs.

use std::sync::Arc;

use glucosync_store::conformance::Harness;
use glucosync_store_postgres::{PostgresOptions, PostgresStore};
use glucosync_testing::TestDatabase;

async fn fresh_store() -> Harness {
    let db = TestDatabase::create();
    let store = PostgresStore::open(&PostgresOptions::new(&db.url)).expect("open");
    glucosync_store::Store::migrate(&store)
        .await
        .expect("migrate");
    Harness {
        store: Arc::new(store),
        keep: Box::new(db),
    }
}

glucosync_store::conformance_suite!(fresh_store);

/// Every table with a column naming an account is in `ACCOUNT_ROWS` (see the SQLite twin).
#[tokio::test]
async fn account_deletion_knows_every_table_with_an_account_column() {
    let harness = fresh_store().await;
    let db = harness
        .keep
        .downcast_ref::<TestDatabase>()
        .expect("the test database");
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let found: Vec<(String, String)> = client
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public'",
            &[],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .filter(|(_, c): &(String, String)| {
            glucosync_store::ACCOUNT_COLUMN_NAMES.contains(&c.as_str())
        })
        .collect();
    glucosync_store::check_account_rows(&found);
}
