//! The storage conformance suite on PostgreSQL: each case gets a database of its own, created
//! on the server named by `GS_TEST_POSTGRES_URL` (default: the local server as `postgres`) and
//! dropped afterwards. `scripts/test` makes sure that server runs.

use std::sync::Arc;

use glucosync_store::conformance::Harness;
use glucosync_store_postgres::{PostgresOptions, PostgresStore};
use rand::Rng;

fn admin_url() -> String {
    std::env::var("GS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Drops the test database when the case ends (from a thread of its own: Drop cannot await).
struct Database(String);

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

async fn fresh_store() -> Harness {
    let name = format!("gs_conformance_{}", rand::thread_rng().gen::<u64>());
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL reachable (set GS_TEST_POSTGRES_URL)");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let guard = Database(name.clone());
    let base = admin_url();
    let url = format!(
        "{}/{name}",
        base.rsplit_once('/').map(|(b, _)| b).unwrap_or(&base)
    );
    let store = PostgresStore::open(&PostgresOptions::new(&url)).expect("open");
    glucosync_store::Store::migrate(&store)
        .await
        .expect("migrate");
    Harness {
        store: Arc::new(store),
        keep: Box::new(guard),
    }
}

glucosync_store::conformance_suite!(fresh_store);
