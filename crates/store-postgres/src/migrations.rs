//! Embedded, additive migrations, applied in order inside one transaction that holds an
//! advisory lock, so replicas that start together apply each migration exactly once.

use glucosync_store::StoreError;

use crate::pg_err;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_forecasts.sql")),
    (3, include_str!("../migrations/0003_shares.sql")),
    (4, include_str!("../migrations/0004_access_log.sql")),
    (5, include_str!("../migrations/0005_alerts.sql")),
    (6, include_str!("../migrations/0006_notifications.sql")),
    (7, include_str!("../migrations/0007_identities.sql")),
    (8, include_str!("../migrations/0008_nightscout.sql")),
    (9, include_str!("../migrations/0009_account_deletion.sql")),
    (
        10,
        include_str!("../migrations/0010_alert_book_versions.sql"),
    ),
];
const MIGRATION_LOCK: i64 = 7_261_000;

pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

pub(crate) async fn applied(client: &deadpool_postgres::Object) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?
        .get(0))
}

pub(crate) async fn apply(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )
    .await
    .map_err(pg_err)?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?
        .get(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
            &[version, &crate::now_ms()],
        )
        .await
        .map_err(pg_err)?;
        tracing::info!(version, "applied migration");
    }
    tx.commit().await.map_err(pg_err)
}
