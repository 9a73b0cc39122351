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
