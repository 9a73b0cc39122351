//! Embedded, additive migrations. Each is applied once, in order, inside the writer's
//! transaction, and recorded in `schema_migrations`.

use rusqlite::{params, Connection};

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

pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

pub(crate) fn ensure_bookkeeping(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
    )
}

pub(crate) fn applied(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )
}

pub(crate) fn apply(conn: &Connection) -> rusqlite::Result<()> {
    let current = applied(conn)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        conn.execute_batch(sql)?;
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
            params![version, crate::rows::now_ms()],
        )?;
        tracing::info!(version, "applied migration");
    }
    Ok(())
}
