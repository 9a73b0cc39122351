//! Test support: which storage backend the tests run on, and fresh PostgreSQL databases.
//!
//! `GS_TEST_BACKEND=postgres` runs the server and binary tests on PostgreSQL (the default is
//! the embedded SQLite). `GS_TEST_POSTGRES_URL` names the server used to create databases
//! (default: the local server as `postgres`). Each database is dropped when its guard drops.

pub mod live;
pub mod oidc;
pub mod openai;
pub mod otlp;
pub mod push;
pub mod s3;
pub mod smtp;

use rand::Rng;

pub fn postgres_admin_url() -> String {
    std::env::var("GS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Whether the tests of this run target PostgreSQL.
pub fn backend_is_postgres() -> bool {
    std::env::var("GS_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// A database created for one test; dropped (with its connections) on drop.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

fn with_admin<T: Send + 'static>(
    f: impl FnOnce(&str) -> String + Send + 'static,
    map: fn(Result<(), tokio_postgres::Error>) -> T,
) -> T {
    // A thread and runtime of its own, so this works from sync code, async code and Drop alike.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let result = async {
                let (client, conn) =
                    tokio_postgres::connect(&postgres_admin_url(), tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client.batch_execute(&f(&postgres_admin_url())).await
            }
            .await;
            map(result)
        })
    })
    .join()
    .expect("admin thread")
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let name = format!("gs_test_{}", rand::thread_rng().gen::<u64>());
        let n = name.clone();
        with_admin(
            move |_| format!("CREATE DATABASE {n}"),
            |r| r.expect("PostgreSQL reachable for tests (start it, or set GS_TEST_POSTGRES_URL)"),
        );
        let admin = postgres_admin_url();
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(admin);
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let n = self.name.clone();
        with_admin(
            move |_| format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"),
            |_| (),
        );
    }
}
