//! The embedded SQLite backend of GlucoSync's store: the zero-configuration default.
//!
//! This crate owns the SQLite schema (embedded migrations) and the concurrency model in
//! [`engine`]. It must never be visible past the [`Store`] trait: nothing outside this crate
//! names a SQLite type.

mod engine;
mod migrations;
mod rows;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use glucosync_domain::alerts::AlertBook;
use glucosync_domain::analytics::GlucosePoint;
use glucosync_domain::readings::{NewReading, Reading, ReadingKind};
use glucosync_domain::settings::UserSettings;
use glucosync_domain::treatments::{NewTreatment, Treatment};
use glucosync_store::{
    AccessRecord, AdminGrant, AlertRecord, BookBasis, Credential, CredentialId, Delivery,
    DeliveryChannel, DeliveryOutcome, DeliveryScope, DeliveryStatus, Document, DocumentCollection,
    Evaluation, InsertOutcome, LastChanges, NewCredential, NewDelivery, NewDocument, NewInvite,
    NewUser, NightscoutSite, PoolStats, PushSubscription, RangeQuery, Readiness, Share, ShareRole,
    Store, StoreError, StoredForecast, StoredId, StoredModel, User, UserId,
};
use rusqlite::{params, Connection, OptionalExtension};

use engine::{sql_err, Engine};
use glucosync_store::columns::TreatmentColumns;
use rows::{credential_from_row, reading_from_row, treatment_from_row, user_from_row};

/// How hard a commit waits for the disk. `Full` (the default) makes every acknowledged write
/// survive power loss; `Normal` survives a crash of the process but not of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Full,
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub readers: usize,
    pub synchronous: Synchronous,
}

impl SqliteOptions {
    /// Parses `sqlite://path/to/file.db` (relative), `sqlite:///abs/file.db` or `sqlite:file.db`,
    /// with an optional `?synchronous=full|normal`.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| format!("`{url}` is not a sqlite:// URL"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() || path == ":memory:" {
            return Err("a SQLite URL must name a file, e.g. sqlite://data/glucosync.db".into());
        }
        let mut options = SqliteOptions {
            path: PathBuf::from(path),
            readers: 4,
            synchronous: Synchronous::Full,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("synchronous", "full")) => options.synchronous = Synchronous::Full,
                Some(("synchronous", "normal")) => options.synchronous = Synchronous::Normal,
                Some(("readers", n)) => {
                    options.readers = n
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=64).contains(n))
                        .ok_or("readers must be a number from 1 to 64")?
                }
                _ => return Err(format!("unknown SQLite URL option `{pair}` (known: synchronous=full|normal, readers=N)")),
            }
        }
        Ok(options)
    }
}

pub struct SqliteStore {
    engine: Arc<Engine>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its directory. Does not migrate.
    pub fn open(options: &SqliteOptions) -> Result<Self, StoreError> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let writer = Connection::open(&options.path).map_err(sql_err)?;
        engine::configure(&writer, options.synchronous).map_err(sql_err)?;
        // The schema must exist before read-only connections open against it.
        migrations::ensure_bookkeeping(&writer).map_err(sql_err)?;
        let engine = Engine::start(writer, &options.path, options.readers.max(1))?;
        Ok(SqliteStore { engine })
    }

    /// Opens the database at `path` with default options and applies migrations.
    pub async fn open_and_migrate(path: &Path) -> Result<Self, StoreError> {
        let store = Self::open(&SqliteOptions {
            path: path.to_path_buf(),
            readers: 4,
            synchronous: Synchronous::Full,
        })?;
        store.migrate().await?;
        Ok(store)
    }
}

fn revoke_where(
    conn: &Connection,
    sql_filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<String>, StoreError> {
    let select =
        format!("SELECT token_hash FROM credentials WHERE revoked_ms IS NULL AND {sql_filter}");
    let hashes: Vec<String> = conn
        .prepare(&select)
        .and_then(|mut s| s.query_map(args, |r| r.get(0))?.collect())
        .map_err(sql_err)?;
    let update = format!(
        "UPDATE credentials SET revoked_ms = ?{} WHERE revoked_ms IS NULL AND {sql_filter}",
        args.len() + 1
    );
    let now = rows::now_ms();
    let mut all: Vec<&dyn rusqlite::ToSql> = args.to_vec();
    all.push(&now);
    conn.execute(&update, all.as_slice()).map_err(sql_err)?;
    Ok(hashes)
}

const USER_COLUMNS: &str =
    "id, email, display_name, is_admin, disabled, settings, created_ms, deletion_due_ms";
const CREDENTIAL_COLUMNS: &str =
    "id, user_id, kind, name, token_hash, csrf_hash, scopes, created_ms, last_used_ms, expires_ms";
const READING_COLUMNS: &str =
    "id, time_ms, utc_offset_min, kind, device, value_mgdl, trend, extra, created_ms";
const TREATMENT_COLUMNS: &str = "id, time_ms, utc_offset_min, kind, units, insulin_type, insulin_name, grams, minutes, intensity, text, units_per_hour, created_ms, updated_ms, extra";

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn migrate(&self) -> Result<(), StoreError> {
        self.engine
            .write(|conn| migrations::apply(conn).map_err(sql_err))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn readiness(&self) -> Result<Readiness, StoreError> {
        self.engine
            .read(|conn| {
                Ok(Readiness {
                    applied_migration: migrations::applied(conn).map_err(sql_err)?,
                    latest_migration: migrations::latest(),
                })
            })
            .await
    }

    fn pool_stats(&self) -> PoolStats {
        self.engine.stats()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn close(&self) {
        let engine = self.engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.close()).await;
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        self.engine
            .write(move |conn| {
                let admin = match new.admin {
                    AdminGrant::Yes => true,
                    AdminGrant::No => false,
                    AdminGrant::IfFirst => {
                        conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0)).map_err(sql_err)? == 0
                    }
                };
                let settings = serde_json::to_string(&UserSettings::default())
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                conn.prepare_cached(
                    "INSERT INTO users (email, password_hash, is_admin, settings, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| s.execute(params![new.email.as_str(), new.password_hash, admin, settings, new.now_ms]))
                .map_err(|e| match sql_err(e) {
                    StoreError::Conflict(_) => StoreError::Conflict("an account with this email exists".into()),
                    other => other,
                })?;
                let id = conn.last_insert_rowid();
                conn.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), [id], user_from_row)
                    .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))
                    .and_then(|mut s| s.query_row([id], user_from_row).optional())
                    .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn link_identity(
        &self,
        user_id: UserId,
        issuer: &str,
        subject: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (issuer, subject) = (issuer.to_owned(), subject.to_owned());
        self.engine
            .write(move |conn| {
                let linked: Option<UserId> = conn
                    .query_row(
                        "SELECT user_id FROM identities WHERE issuer = ?1 AND subject = ?2",
                        params![issuer, subject],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql_err)?;
                match linked {
                    Some(id) if id == user_id => Ok(()),
                    Some(_) => Err(StoreError::Conflict(
                        "this identity is linked to another account".into(),
                    )),
                    None => conn
                        .execute(
                            "INSERT INTO identities (user_id, issuer, subject, created_ms) \
                             VALUES (?1, ?2, ?3, ?4)",
                            params![user_id, issuer, subject, now_ms],
                        )
                        .map(|_| ())
                        .map_err(sql_err),
                }
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn user_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        let (issuer, subject) = (issuer.to_owned(), subject.to_owned());
        self.engine
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id = \
                     (SELECT user_id FROM identities WHERE issuer = ?1 AND subject = ?2)"
                ))
                .and_then(|mut s| {
                    s.query_row(params![issuer, subject], user_from_row)
                        .optional()
                })
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn user_by_email(&self, email: &str) -> Result<Option<(User, String)>, StoreError> {
        let email = email.to_owned();
        self.engine
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = ?1"
                ))
                .and_then(|mut s| {
                    s.query_row([email], |r| Ok((user_from_row(r)?, r.get::<_, String>(8)?)))
                        .optional()
                })
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn password_hash(&self, id: UserId) -> Result<Option<String>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.query_row("SELECT password_hash FROM users WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        keep_session: Option<CredentialId>,
    ) -> Result<Vec<String>, StoreError> {
        let hash = password_hash.to_owned();
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE users SET password_hash = ?1 WHERE id = ?2",
                    params![hash, id],
                )
                .map_err(sql_err)?;
                let keep = keep_session.unwrap_or(-1);
                revoke_where(
                    conn,
                    "user_id = ?1 AND kind = 'session' AND id <> ?2",
                    &[&id, &keep],
                )
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn set_display_name(&self, id: UserId, name: Option<&str>) -> Result<(), StoreError> {
        let name = name.map(str::to_owned);
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE users SET display_name = ?1 WHERE id = ?2",
                    params![name, id],
                )
                .map(drop)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn set_settings(&self, id: UserId, settings: &UserSettings) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(settings).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE users SET settings = ?1 WHERE id = ?2",
                    params![json, id],
                )
                .map(drop)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn set_admin(&self, id: UserId, admin: bool) -> Result<bool, StoreError> {
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE users SET is_admin = ?1 WHERE id = ?2",
                    params![admin, id],
                )
                .map(|n| n == 1)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<Vec<String>, StoreError> {
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE users SET disabled = ?1 WHERE id = ?2",
                    params![disabled, id],
                )
                .map_err(sql_err)?;
                if disabled {
                    revoke_where(conn, "user_id = ?1", &[&id])
                } else {
                    Ok(Vec::new())
                }
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn list_users(&self, after_id: UserId, limit: usize) -> Result<Vec<User>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))
                .and_then(|mut s| {
                    s.query_map(params![after_id, limit as i64], user_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn request_deletion(
        &self,
        id: UserId,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.engine
            .write(move |conn| {
                let n = conn
                    .execute(
                        "UPDATE users SET deletion_due_ms = ?2 WHERE id = ?1",
                        params![id, due_ms],
                    )
                    .map_err(sql_err)?;
                if n == 0 {
                    return Ok(Vec::new());
                }
                conn.execute(
                    "UPDATE shares SET revoked_ms = ?2, token_hash = NULL \
                     WHERE (owner_id = ?1 OR follower_id = ?1) AND revoked_ms IS NULL",
                    params![id, now_ms],
                )
                .map_err(sql_err)?;
                for table in ["nightscout_sites", "push_subscriptions"] {
                    conn.execute(&format!("DELETE FROM {table} WHERE user_id = ?1"), [id])
                        .map_err(sql_err)?;
                }
                revoke_where(conn, "user_id = ?1", &[&id])
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn cancel_deletion(&self, id: UserId) -> Result<bool, StoreError> {
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE users SET deletion_due_ms = NULL \
                     WHERE id = ?1 AND deletion_due_ms IS NOT NULL",
                    [id],
                )
                .map(|n| n == 1)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn deletions_due(&self, now_ms: i64) -> Result<Vec<UserId>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id FROM users WHERE deletion_due_ms IS NOT NULL \
                     AND deletion_due_ms <= ?1 ORDER BY id",
                )
                .and_then(|mut s| {
                    s.query_map([now_ms], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn delete_account(&self, id: UserId) -> Result<bool, StoreError> {
        self.engine
            .write(move |conn| {
                for (table, column) in glucosync_store::ACCOUNT_ROWS {
                    conn.execute(&format!("DELETE FROM {table} WHERE {column} = ?1"), [id])
                        .map_err(sql_err)?;
                }
                conn.execute("DELETE FROM users WHERE id = ?1", [id])
                    .map(|n| n == 1)
                    .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn count_users(&self) -> Result<u64, StoreError> {
        self.engine
            .read(|conn| {
                conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
                    .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn create_credential(&self, new: NewCredential) -> Result<Credential, StoreError> {
        self.engine
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO credentials (user_id, kind, name, token_hash, csrf_hash, scopes, created_ms, expires_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        new.user_id,
                        new.kind.as_str(),
                        new.name,
                        new.token_hash,
                        new.csrf_hash,
                        glucosync_domain::accounts::Scope::join(&new.scopes),
                        new.now_ms,
                        new.expires_ms
                    ])
                })
                .map_err(sql_err)?;
                Ok(Credential {
                    id: conn.last_insert_rowid(),
                    user_id: new.user_id,
                    kind: new.kind,
                    name: new.name,
                    token_hash: new.token_hash,
                    csrf_hash: new.csrf_hash,
                    scopes: new.scopes,
                    created_ms: new.now_ms,
                    last_used_ms: None,
                    expires_ms: new.expires_ms,
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn credential_by_hash(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(Credential, User)>, StoreError> {
        let hash = token_hash.to_owned();
        self.engine
            .read(move |conn| {
                let sql = "SELECT c.id, c.user_id, c.kind, c.name, c.token_hash, c.csrf_hash, c.scopes, c.created_ms, \
                     c.last_used_ms, c.expires_ms, u.id, u.email, u.display_name, u.is_admin, u.disabled, u.settings, u.created_ms, u.deletion_due_ms \
                     FROM credentials c JOIN users u ON u.id = c.user_id \
                     WHERE c.token_hash = ?1 AND c.revoked_ms IS NULL AND (c.expires_ms IS NULL OR c.expires_ms > ?2)";
                conn.prepare_cached(sql)
                    .and_then(|mut s| {
                        s.query_row(params![hash, now_ms], |r| {
                            Ok((credential_from_row(r, 0)?, rows::user_from_row_at(r, 10)?))
                        })
                        .optional()
                    })
                    .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn touch_credential(&self, id: CredentialId, now_ms: i64) -> Result<(), StoreError> {
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE credentials SET last_used_ms = ?1 WHERE id = ?2",
                    params![now_ms, id],
                )
                .map(drop)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn list_api_tokens(
        &self,
        user_id: UserId,
        now_ms: i64,
    ) -> Result<Vec<Credential>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE user_id = ?1 AND kind = 'api_token' \
                     AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?2) ORDER BY id DESC"
                ))
                .and_then(|mut s| s.query_map(params![user_id, now_ms], |r| credential_from_row(r, 0))?.collect())
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn revoke_credential(
        &self,
        user_id: UserId,
        id: CredentialId,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        self.engine
            .write(move |conn| {
                let hash: Option<String> = conn
                    .query_row(
                        "SELECT token_hash FROM credentials WHERE id = ?1 AND user_id = ?2 AND revoked_ms IS NULL",
                        params![id, user_id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql_err)?;
                if hash.is_some() {
                    conn.execute(
                        "UPDATE credentials SET revoked_ms = ?1 WHERE id = ?2 AND user_id = ?3",
                        params![now_ms, id, user_id],
                    )
                    .map_err(sql_err)?;
                }
                Ok(hash)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn insert_readings(
        &self,
        user_id: UserId,
        readings: Vec<NewReading>,
        now_ms: i64,
    ) -> Result<InsertOutcome, StoreError> {
        self.engine
            .write(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "INSERT INTO readings (user_id, time_ms, utc_offset_min, kind, device, value_mgdl, trend, created_ms, extra) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                    )
                    .map_err(sql_err)?;
                let mut inserted = 0u64;
                let mut cgm_inserted = false;
                for r in &readings {
                    let n = stmt
                        .execute(params![
                            user_id,
                            r.time.utc_ms,
                            r.time.offset_minutes,
                            r.kind.as_str(),
                            r.device,
                            r.value.mgdl(),
                            r.trend.map(|t| t.as_str()),
                            now_ms,
                            r.extra
                        ])
                        .map_err(sql_err)? as u64;
                    inserted += n;
                    cgm_inserted |= n > 0 && r.kind == ReadingKind::Cgm;
                }
                if cgm_inserted {
                    conn.prepare_cached(MARK_ALERTS_DUE)
                        .and_then(|mut s| s.execute(params![user_id]))
                        .map_err(sql_err)?;
                }
                Ok(InsertOutcome {
                    inserted,
                    duplicates: readings.len() as u64 - inserted,
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn list_readings(
        &self,
        user_id: UserId,
        query: &RangeQuery,
    ) -> Result<Vec<Reading>, StoreError> {
        let q = query.clone();
        self.engine
            .read_large(move |conn| {
                let (cmp, order) = if q.descending { ("<", "DESC") } else { (">", "ASC") };
                let (after_t, after_id) = match &q.after {
                    Some(c) => (
                        c.time_ms,
                        c.key.parse::<i64>().map_err(|_| StoreError::Internal("bad reading cursor".into()))?,
                    ),
                    None => (if q.descending { i64::MAX } else { i64::MIN }, 0),
                };
                let sql = format!(
                    "SELECT {READING_COLUMNS} FROM readings WHERE user_id = ?1 AND time_ms >= ?2 AND time_ms < ?3 \
                     AND (time_ms {cmp} ?4 OR (time_ms = ?4 AND id {cmp} ?5)) ORDER BY time_ms {order}, id {order} LIMIT ?6"
                );
                conn.prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(
                            params![user_id, q.from_ms, q.to_ms, after_t, after_id, q.limit as i64],
                            reading_from_row,
                        )?
                        .collect()
                    })
                    .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn cgm_values(
        &self,
        user_id: UserId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<GlucosePoint>, StoreError> {
        let read = move |conn: &Connection| {
            conn.prepare_cached(
                "SELECT time_ms, value_mgdl FROM readings WHERE user_id = ?1 AND time_ms >= ?2 AND time_ms < ?3 \
                 AND kind = 'cgm' ORDER BY time_ms",
            )
            .and_then(|mut s| {
                s.query_map(params![user_id, from_ms, to_ms], |r| Ok(GlucosePoint { utc_ms: r.get(0)?, mgdl: r.get(1)? }))?
                    .collect()
            })
            .map_err(sql_err)
        };
        // A day holds at most a few hundred CGM readings per person: a small read.
        if to_ms.saturating_sub(from_ms) <= 86_400_000 {
            self.engine.read(read).await
        } else {
            self.engine.read_large(read).await
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn latest_readings(&self, user_id: UserId, n: usize) -> Result<Vec<Reading>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {READING_COLUMNS} FROM readings WHERE user_id = ?1 ORDER BY time_ms DESC, id DESC LIMIT ?2"
                ))
                .and_then(|mut s| s.query_map(params![user_id, n as i64], reading_from_row)?.collect())
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn delete_reading(&self, user_id: UserId, id: i64) -> Result<bool, StoreError> {
        self.engine
            .write(move |conn| {
                let now = rows::now_ms();
                conn.execute(
                    &tombstones("readings", "id = ?3"),
                    params![user_id, now, id],
                )
                .map_err(sql_err)?;
                conn.execute(
                    "DELETE FROM readings WHERE user_id = ?1 AND id = ?2",
                    params![user_id, id],
                )
                .map(|n| n == 1)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn delete_readings_in_range(
        &self,
        user_id: UserId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<u64, StoreError> {
        self.engine
            .write(move |conn| {
                let now = rows::now_ms();
                conn.execute(
                    &tombstones("readings", "time_ms >= ?3 AND time_ms < ?4"),
                    params![user_id, now, from_ms, to_ms],
                )
                .map_err(sql_err)?;
                conn.execute(
                    "DELETE FROM readings WHERE user_id = ?1 AND time_ms >= ?2 AND time_ms < ?3",
                    params![user_id, from_ms, to_ms],
                )
                .map(|n| n as u64)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn insert_treatments(
        &self,
        user_id: UserId,
        treatments: Vec<NewTreatment>,
        now_ms: i64,
    ) -> Result<InsertOutcome, StoreError> {
        self.engine
            .write(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "INSERT INTO treatments (user_id, {TREATMENT_COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT DO NOTHING"
                    ))
                    .map_err(sql_err)?;
                let mut inserted = 0u64;
                for t in &treatments {
                    let p = TreatmentColumns::from_detail(&t.detail);
                    inserted += stmt
                        .execute(params![
                            user_id, t.id, t.time.utc_ms, t.time.offset_minutes, p.kind, p.units, p.insulin_type,
                            p.insulin_name, p.grams, p.minutes, p.intensity, p.text, p.units_per_hour, now_ms, now_ms, t.extra
                        ])
                        .map_err(sql_err)? as u64;
                }
                Ok(InsertOutcome {
                    inserted,
                    duplicates: treatments.len() as u64 - inserted,
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn list_treatments(
        &self,
        user_id: UserId,
        query: &RangeQuery,
    ) -> Result<Vec<Treatment>, StoreError> {
        let q = query.clone();
        self.engine
            .read_large(move |conn| {
                let (cmp, order) = if q.descending { ("<", "DESC") } else { (">", "ASC") };
                let (after_t, after_id) = match &q.after {
                    Some(c) => (c.time_ms, c.key.clone()),
                    // Every id sorts after "" and before a string of U+FFFF.
                    None if q.descending => (i64::MAX, String::new()),
                    None => (i64::MIN, String::new()),
                };
                let sql = format!(
                    "SELECT {TREATMENT_COLUMNS} FROM treatments WHERE user_id = ?1 AND time_ms >= ?2 AND time_ms < ?3 \
                     AND (time_ms {cmp} ?4 OR (time_ms = ?4 AND id {cmp} ?5)) ORDER BY time_ms {order}, id {order} LIMIT ?6"
                );
                conn.prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(
                            params![user_id, q.from_ms, q.to_ms, after_t, after_id, q.limit as i64],
                            treatment_from_row,
                        )?
                        .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(sql_err)?
                    .into_iter()
                    .collect()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn treatment(&self, user_id: UserId, id: &str) -> Result<Option<Treatment>, StoreError> {
        let id = id.to_owned();
        self.engine
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {TREATMENT_COLUMNS} FROM treatments WHERE user_id = ?1 AND id = ?2"
                ))
                .and_then(|mut s| {
                    s.query_row(params![user_id, id], treatment_from_row)
                        .optional()
                })
                .map_err(sql_err)?
                .transpose()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn update_treatment(
        &self,
        user_id: UserId,
        t: NewTreatment,
        now_ms: i64,
    ) -> Result<Option<Treatment>, StoreError> {
        self.engine
            .write(move |conn| {
                let p = TreatmentColumns::from_detail(&t.detail);
                let n = conn
                    .execute(
                        "UPDATE treatments SET time_ms = ?3, utc_offset_min = ?4, kind = ?5, units = ?6, insulin_type = ?7, \
                         insulin_name = ?8, grams = ?9, minutes = ?10, intensity = ?11, text = ?12, units_per_hour = ?13, \
                         updated_ms = ?14, extra = COALESCE(?15, extra) WHERE user_id = ?1 AND id = ?2",
                        params![
                            user_id, t.id, t.time.utc_ms, t.time.offset_minutes, p.kind, p.units, p.insulin_type,
                            p.insulin_name, p.grams, p.minutes, p.intensity, p.text, p.units_per_hour, now_ms, t.extra
                        ],
                    )
                    .map_err(sql_err)?;
                if n == 0 {
                    return Ok(None);
                }
                conn.query_row(
                    &format!("SELECT {TREATMENT_COLUMNS} FROM treatments WHERE user_id = ?1 AND id = ?2"),
                    params![user_id, t.id],
                    treatment_from_row,
                )
                .map_err(sql_err)?
                .map(Some)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn delete_treatment(&self, user_id: UserId, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.engine
            .write(move |conn| {
                conn.execute(
                    &tombstones("treatments", "id = ?3"),
                    params![user_id, rows::now_ms(), id],
                )
                .map_err(sql_err)?;
                conn.execute(
                    "DELETE FROM treatments WHERE user_id = ?1 AND id = ?2",
                    params![user_id, id],
                )
                .map(|n| n == 1)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn save_forecasts(
        &self,
        batch: Vec<(UserId, std::sync::Arc<StoredForecast>)>,
    ) -> Result<(), StoreError> {
        // Derived data: written with the next upload's commit rather than one of its own.
        self.engine
            .write_with_next(move |conn| {
                let mut s = conn
                    .prepare_cached(
                        "INSERT INTO forecasts (user_id, issued_ms, model_version, created_ms, points) \
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user_id, issued_ms) DO UPDATE SET \
                         model_version = excluded.model_version, created_ms = excluded.created_ms, \
                         points = excluded.points",
                    )
                    .map_err(sql_err)?;
                for (user_id, f) in &batch {
                    s.execute(params![
                        user_id,
                        f.issued_ms,
                        f.model_version,
                        f.created_ms,
                        f.points
                    ])
                    .map_err(sql_err)?;
                }
                Ok(())
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn latest_forecast(&self, user_id: UserId) -> Result<Option<StoredForecast>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT issued_ms, model_version, created_ms, points FROM forecasts \
                     WHERE user_id = ?1 ORDER BY issued_ms DESC LIMIT 1",
                )
                .and_then(|mut s| {
                    s.query_row(params![user_id], |r| {
                        Ok(StoredForecast {
                            issued_ms: r.get(0)?,
                            model_version: r.get(1)?,
                            created_ms: r.get(2)?,
                            points: r.get(3)?,
                        })
                    })
                    .optional()
                })
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn save_model(&self, user_id: UserId, model: &StoredModel) -> Result<(), StoreError> {
        let m = model.clone();
        self.engine
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO forecast_models (user_id, version, trained_until_ms, created_ms, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user_id, version) DO UPDATE SET \
                     trained_until_ms = excluded.trained_until_ms, created_ms = excluded.created_ms, \
                     body = excluded.body",
                    params![user_id, m.version, m.trained_until_ms, m.created_ms, m.body_json],
                )
                .map(drop)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn latest_model(&self, user_id: UserId) -> Result<Option<StoredModel>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT version, trained_until_ms, created_ms, body FROM forecast_models \
                     WHERE user_id = ?1 ORDER BY trained_until_ms DESC, created_ms DESC LIMIT 1",
                )
                .and_then(|mut s| {
                    s.query_row(params![user_id], |r| {
                        Ok(StoredModel {
                            version: r.get(0)?,
                            trained_until_ms: r.get(1)?,
                            created_ms: r.get(2)?,
                            body_json: r.get(3)?,
                        })
                    })
                    .optional()
                })
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn create_invite(&self, invite: NewInvite) -> Result<Share, StoreError> {
        self.engine
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO shares (owner_id, role, invite_email, token_hash, created_ms, expires_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        invite.owner_id,
                        invite.role.as_str(),
                        invite.invite_email,
                        invite.token_hash,
                        invite.now_ms,
                        invite.expires_ms
                    ],
                )
                .map_err(sql_err)?;
                Ok(Share {
                    id: conn.last_insert_rowid(),
                    owner_id: invite.owner_id,
                    follower_id: None,
                    role: invite.role,
                    invite_email: invite.invite_email,
                    created_ms: invite.now_ms,
                    expires_ms: invite.expires_ms,
                    accepted_ms: None,
                    revoked_ms: None,
                    notify_push: true,
                    notify_email: false,
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn accept_invite(
        &self,
        token_hash: &str,
        follower: UserId,
        now_ms: i64,
    ) -> Result<Option<Share>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.engine
            .write(move |conn| {
                let found = conn
                    .query_row(
                        &format!(
                            "SELECT {SHARE_COLUMNS} FROM shares WHERE token_hash = ?1 \
                             AND follower_id IS NULL AND revoked_ms IS NULL AND expires_ms > ?2"
                        ),
                        params![token_hash, now_ms],
                        share_from_row,
                    )
                    .optional()
                    .map_err(sql_err)?;
                let Some(mut share) = found.transpose()? else {
                    return Ok(None);
                };
                if share.owner_id == follower {
                    return Err(StoreError::Conflict("you cannot follow yourself".into()));
                }
                let already: i64 = conn
                    .query_row(
                        "SELECT COUNT(*) FROM shares WHERE owner_id = ?1 AND follower_id = ?2 \
                         AND revoked_ms IS NULL",
                        params![share.owner_id, follower],
                        |r| r.get(0),
                    )
                    .map_err(sql_err)?;
                if already > 0 {
                    return Err(StoreError::Conflict("you already follow this person".into()));
                }
                conn.execute(
                    "UPDATE shares SET follower_id = ?1, accepted_ms = ?2, token_hash = NULL WHERE id = ?3",
                    params![follower, now_ms, share.id],
                )
                .map_err(sql_err)?;
                share.follower_id = Some(follower);
                share.accepted_ms = Some(now_ms);
                Ok(Some(share))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn shares_of_owner(&self, owner: UserId) -> Result<Vec<Share>, StoreError> {
        self.shares_where("owner_id = ?1", owner).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn shares_followed(&self, follower: UserId) -> Result<Vec<Share>, StoreError> {
        self.shares_where("follower_id = ?1 AND revoked_ms IS NULL", follower)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn active_share(
        &self,
        owner: UserId,
        follower: UserId,
    ) -> Result<Option<Share>, StoreError> {
        Ok(self
            .shares_followed(follower)
            .await?
            .into_iter()
            .find(|s| s.owner_id == owner))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn revoke_share(&self, owner: UserId, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE shares SET revoked_ms = ?1, token_hash = NULL \
                     WHERE owner_id = ?2 AND id = ?3 AND revoked_ms IS NULL",
                    params![now_ms, owner, id],
                )
                .map(|n| n == 1)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn alert_record(&self, user_id: UserId) -> Result<AlertRecord, StoreError> {
        let row = self
            .engine
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT book, version, evaluated_version, due_ms, book_version FROM alert_books WHERE user_id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row(params![user_id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()
                })
                .map_err(sql_err)
            })
            .await?;
        match row {
            None => Ok(AlertRecord::default()),
            Some((json, version, evaluated_version, due_ms, book_version)) => Ok(AlertRecord {
                book: alert_book_from_json(&json)?,
                version,
                evaluated_version,
                book_version,
                due_ms,
            }),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn save_alert_book(
        &self,
        user_id: UserId,
        basis: BookBasis,
        book: &AlertBook,
        due_ms: Option<i64>,
        deliveries: &[NewDelivery],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let json = alert_book_json(book)?;
        let deliveries = deliveries.to_vec();
        let evaluated = basis.evaluated_version.unwrap_or(0);
        self.engine
            .write(move |conn| {
                let changed = if basis.book_version == 0 {
                    // The record exists once the person uploaded (the upload made them due).
                    conn.execute(
                        "INSERT INTO alert_books (user_id, book, book_version, evaluated_version, due_ms) \
                         VALUES (?1, ?2, 1, ?4, ?3) ON CONFLICT (user_id) DO UPDATE SET \
                         book = excluded.book, book_version = 1, \
                         evaluated_version = MAX(alert_books.evaluated_version, excluded.evaluated_version), \
                         due_ms = excluded.due_ms WHERE alert_books.book_version = 0",
                        params![user_id, json, due_ms, evaluated],
                    )
                } else {
                    conn.execute(
                        "UPDATE alert_books SET book = ?2, book_version = book_version + 1, \
                         evaluated_version = MAX(evaluated_version, ?4), due_ms = ?3 \
                         WHERE user_id = ?1 AND book_version = ?5",
                        params![user_id, json, due_ms, evaluated, basis.book_version],
                    )
                }
                .map_err(sql_err)?;
                if changed != 1 {
                    return Ok(false);
                }
                let mut queue = conn
                    .prepare_cached(
                        "INSERT INTO deliveries (person_id, recipient_id, channel, target, payload, created_ms, next_attempt_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    )
                    .map_err(sql_err)?;
                for d in &deliveries {
                    queue
                        .execute(params![user_id, d.recipient_id, d.channel.as_str(), d.target, d.payload, now_ms])
                        .map_err(sql_err)?;
                }
                Ok(true)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn mark_alerts_evaluated(&self, evaluated: &[Evaluation]) -> Result<(), StoreError> {
        let evaluated = evaluated.to_vec();
        self.engine
            .write(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE alert_books SET evaluated_version = version, due_ms = ?3 \
                         WHERE user_id = ?1 AND version = ?2 AND book_version = ?4",
                    )
                    .map_err(sql_err)?;
                for e in &evaluated {
                    stmt.execute(params![e.user_id, e.version, e.due_ms, e.book_version])
                        .map_err(sql_err)?;
                }
                Ok(())
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn alerts_due(
        &self,
        now_ms: i64,
        shard_count: u32,
        shards: &[u32],
        limit: usize,
    ) -> Result<Vec<UserId>, StoreError> {
        let shards: Vec<i64> = shards.iter().map(|&s| i64::from(s)).collect();
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        self.engine
            .read_large(move |conn| {
                let list = shards
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                let sql = format!(
                    "SELECT user_id FROM alert_books \
                     WHERE (version > evaluated_version OR due_ms <= ?1) \
                     AND user_id % ?2 IN ({list}) ORDER BY user_id LIMIT ?3"
                );
                conn.prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(params![now_ms, i64::from(shard_count), limit as i64], |r| {
                            r.get(0)
                        })?
                        .collect()
                    })
                    .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.engine
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO leases (name, holder, expires_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     expires_ms = excluded.expires_ms \
                     WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?4",
                    params![name, holder, now_ms + ttl_ms, now_ms],
                )
                .map(|n| n == 1)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.engine
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                    params![name, holder],
                )
                .map(drop)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn add_push_subscription(
        &self,
        user_id: UserId,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        now_ms: i64,
    ) -> Result<PushSubscription, StoreError> {
        let (endpoint, p256dh, auth) = (endpoint.to_owned(), p256dh.to_owned(), auth.to_owned());
        self.engine
            .write(move |conn| {
                conn.query_row(
                    "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, created_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user_id, endpoint) \
                     DO UPDATE SET p256dh = excluded.p256dh, auth = excluded.auth \
                     RETURNING id, created_ms",
                    params![user_id, endpoint, p256dh, auth, now_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map(|(id, created_ms)| PushSubscription {
                    id,
                    user_id,
                    endpoint,
                    p256dh,
                    auth,
                    created_ms,
                })
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn push_subscriptions(
        &self,
        user_id: UserId,
    ) -> Result<Vec<PushSubscription>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, user_id, endpoint, p256dh, auth, created_ms FROM push_subscriptions \
                     WHERE user_id = ?1 ORDER BY id",
                )
                .and_then(|mut s| {
                    s.query_map(params![user_id], |r| {
                        Ok(PushSubscription {
                            id: r.get(0)?,
                            user_id: r.get(1)?,
                            endpoint: r.get(2)?,
                            p256dh: r.get(3)?,
                            auth: r.get(4)?,
                            created_ms: r.get(5)?,
                        })
                    })?
                    .collect()
                })
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn delete_push_subscription(&self, user_id: UserId, id: i64) -> Result<bool, StoreError> {
        self.engine
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM push_subscriptions WHERE user_id = ?1 AND id = ?2",
                    params![user_id, id],
                )
                .map(|n| n == 1)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn claim_deliveries(
        &self,
        scope: DeliveryScope<'_>,
        now_ms: i64,
        hold_ms: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let condition = match scope {
            DeliveryScope::Person(p) => format!("person_id = {p}"),
            DeliveryScope::Shards { held: [], .. } => return Ok(Vec::new()),
            DeliveryScope::Shards { count, held } => format!(
                "person_id % {count} IN ({})",
                held.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        self.engine
            .write(move |conn| {
                let sql = format!(
                    "UPDATE deliveries SET attempts = attempts + 1, next_attempt_ms = ?2 \
                     WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' \
                     AND next_attempt_ms <= ?1 AND {condition} ORDER BY next_attempt_ms LIMIT ?3) \
                     RETURNING {DELIVERY_COLUMNS}"
                );
                let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
                let rows = stmt
                    .query_map(
                        params![now_ms, now_ms + hold_ms, limit as i64],
                        delivery_from_row,
                    )
                    .map_err(sql_err)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sql_err)?;
                rows.into_iter().collect()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (status, next, error) = outcome.columns(delivery.next_attempt_ms);
        let (id, recipient, target) = (delivery.id, delivery.recipient_id, delivery.target.clone());
        let expired = matches!(outcome, DeliveryOutcome::Expired { .. });
        let done = (status != DeliveryStatus::Pending).then_some(now_ms);
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE deliveries SET status = ?2, next_attempt_ms = ?3, last_error = ?4, done_ms = ?5 \
                     WHERE id = ?1",
                    params![id, status.as_str(), next, error, done],
                )
                .map_err(sql_err)?;
                if expired {
                    conn.execute(
                        "DELETE FROM push_subscriptions WHERE user_id = ?1 AND id = ?2",
                        params![recipient, target.parse::<i64>().unwrap_or(-1)],
                    )
                    .map_err(sql_err)?;
                }
                Ok(())
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn deliveries_of(
        &self,
        person_id: UserId,
        (before_ms, before_id): (i64, i64),
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.engine
            .read_large(move |conn| {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE person_id = ?1 \
                     AND (created_ms, id) < (?2, ?3) ORDER BY created_ms DESC, id DESC LIMIT ?4"
                );
                let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
                let rows = stmt
                    .query_map(
                        params![person_id, before_ms, before_id, limit as i64],
                        delivery_from_row,
                    )
                    .map_err(sql_err)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sql_err)?;
                rows.into_iter().collect()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn set_follow_channels(
        &self,
        owner: UserId,
        follower: UserId,
        push: bool,
        email: bool,
    ) -> Result<bool, StoreError> {
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE shares SET notify_push = ?3, notify_email = ?4 \
                     WHERE owner_id = ?1 AND follower_id = ?2 AND revoked_ms IS NULL",
                    params![owner, follower, push, email],
                )
                .map(|n| n > 0)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String, StoreError> {
        let (name, candidate) = (name.to_owned(), candidate.to_owned());
        self.engine
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                    params![name, candidate],
                )
                .map_err(sql_err)?;
                conn.query_row(
                    "SELECT value FROM server_secrets WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn record_access(
        &self,
        owner: UserId,
        follower: UserId,
        what: &str,
        time_ms: i64,
    ) -> Result<(), StoreError> {
        let what = what.to_owned();
        self.engine
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO access_log (owner_id, time_ms, follower_id, what) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![owner, time_ms, follower, what],
                )
                .map(drop)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn access_log(
        &self,
        owner: UserId,
        (before_ms, before_id): (i64, i64),
        limit: usize,
    ) -> Result<Vec<AccessRecord>, StoreError> {
        self.engine
            .read_large(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT a.time_ms, a.follower_id, COALESCE(u.email, '(a deleted account)'), a.what, a.id FROM access_log a \
                         LEFT JOIN users u ON u.id = a.follower_id \
                         WHERE a.owner_id = ?1 AND (a.time_ms, a.id) < (?2, ?3) \
                         ORDER BY a.time_ms DESC, a.id DESC LIMIT ?4",
                    )
                    .map_err(sql_err)?;
                let rows = stmt
                    .query_map(params![owner, before_ms, before_id, limit as i64], |r| {
                        Ok(AccessRecord {
                            id: r.get(4)?,
                            time_ms: r.get(0)?,
                            follower_id: r.get(1)?,
                            follower_email: r.get(2)?,
                            what: r.get(3)?,
                        })
                    })
                    .map_err(sql_err)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sql_err)?;
                Ok(rows)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn nightscout_site(&self, user_id: UserId) -> Result<Option<NightscoutSite>, StoreError> {
        self.site_where("user_id = ?1", user_id.to_string()).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn create_nightscout_site(
        &self,
        site: &NightscoutSite,
    ) -> Result<NightscoutSite, StoreError> {
        let site = site.clone();
        self.engine
            .write(move |conn| {
                let existing = conn
                    .query_row(
                        &format!("SELECT {SITE_COLUMNS} FROM nightscout_sites WHERE user_id = ?1"),
                        params![site.user_id],
                        site_from_row,
                    )
                    .optional()
                    .map_err(sql_err)?;
                if let Some(existing) = existing {
                    return Ok(existing);
                }
                conn.execute(
                    &format!("INSERT INTO nightscout_sites ({SITE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                    params![
                        site.user_id, site.handle, site.secret_hash, site.secret_sealed,
                        site.public_read, site.created_ms, site.updated_ms
                    ],
                )
                .map_err(sql_err)?;
                Ok(site)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn nightscout_site_by_handle(
        &self,
        handle: &str,
    ) -> Result<Option<NightscoutSite>, StoreError> {
        self.site_where("handle = ?1", handle.to_owned()).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn nightscout_site_by_secret(
        &self,
        secret_hash: &str,
    ) -> Result<Option<NightscoutSite>, StoreError> {
        self.site_where("secret_hash = ?1", secret_hash.to_owned())
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn update_nightscout_site(&self, site: &NightscoutSite) -> Result<bool, StoreError> {
        let site = site.clone();
        self.engine
            .write(move |conn| {
                conn.execute(
                    "UPDATE nightscout_sites SET secret_hash = ?2, secret_sealed = ?3, public_read = ?4, \
                     updated_ms = ?5 WHERE user_id = ?1",
                    params![site.user_id, site.secret_hash, site.secret_sealed, site.public_read, site.updated_ms],
                )
                .map(|n| n == 1)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn insert_entries(
        &self,
        user_id: UserId,
        readings: Vec<NewReading>,
        now_ms: i64,
    ) -> Result<Vec<StoredId>, StoreError> {
        self.engine
            .write(move |conn| {
                let mut find = conn
                    .prepare_cached("SELECT id FROM readings WHERE user_id = ?1 AND time_ms = ?2 AND kind = ?3 LIMIT 1")
                    .map_err(sql_err)?;
                let mut insert = conn
                    .prepare_cached(
                        "INSERT INTO readings (user_id, time_ms, utc_offset_min, kind, device, value_mgdl, trend, created_ms, extra) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
                    )
                    .map_err(sql_err)?;
                let mut stored = Vec::with_capacity(readings.len());
                let mut cgm_inserted = false;
                for r in &readings {
                    let existing: Option<i64> = find
                        .query_row(params![user_id, r.time.utc_ms, r.kind.as_str()], |row| row.get(0))
                        .optional()
                        .map_err(sql_err)?;
                    let (id, inserted) = match existing {
                        Some(id) => (id, false),
                        None => {
                            let id: i64 = insert
                                .query_row(
                                    params![
                                        user_id, r.time.utc_ms, r.time.offset_minutes, r.kind.as_str(), r.device,
                                        r.value.mgdl(), r.trend.map(|t| t.as_str()), now_ms, r.extra
                                    ],
                                    |row| row.get(0),
                                )
                                .map_err(sql_err)?;
                            cgm_inserted |= r.kind == ReadingKind::Cgm;
                            (id, true)
                        }
                    };
                    stored.push(StoredId { id: id.to_string(), inserted });
                }
                if cgm_inserted {
                    conn.prepare_cached(MARK_ALERTS_DUE)
                        .and_then(|mut s| s.execute(params![user_id]))
                        .map_err(sql_err)?;
                }
                Ok(stored)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn insert_nightscout_treatments(
        &self,
        user_id: UserId,
        treatments: Vec<NewTreatment>,
        now_ms: i64,
    ) -> Result<Vec<StoredId>, StoreError> {
        self.engine
            .write(move |conn| {
                let mut by_id = conn
                    .prepare_cached("SELECT id FROM treatments WHERE user_id = ?1 AND id = ?2")
                    .map_err(sql_err)?;
                let mut by_time = conn
                    // A treatment without an event type (made in GlucoSync) matches any of its kind.
                    .prepare_cached(
                        "SELECT id FROM treatments WHERE user_id = ?1 AND time_ms = ?2 AND kind = ?3 \
                         AND (?4 IS NULL OR json_extract(extra, '$.eventType') IS NULL \
                              OR json_extract(extra, '$.eventType') IN (?4, '', '<none>')) ORDER BY id LIMIT 1",
                    )
                    .map_err(sql_err)?;
                let mut insert = conn
                    .prepare_cached(&format!(
                        "INSERT INTO treatments (user_id, {TREATMENT_COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                    ))
                    .map_err(sql_err)?;
                let mut stored = Vec::with_capacity(treatments.len());
                for t in &treatments {
                    let kind = t.detail.kind().as_str();
                    let mut existing: Option<String> =
                        by_id.query_row(params![user_id, t.id], |r| r.get(0)).optional().map_err(sql_err)?;
                    if existing.is_none() {
                        let event_type = glucosync_store::columns::event_type(t.extra.as_deref());
                        existing = by_time
                            .query_row(params![user_id, t.time.utc_ms, kind, event_type], |r| r.get(0))
                            .optional()
                            .map_err(sql_err)?;
                    }
                    if let Some(id) = existing {
                        stored.push(StoredId { id, inserted: false });
                        continue;
                    }
                    let p = TreatmentColumns::from_detail(&t.detail);
                    insert
                        .execute(params![
                            user_id, t.id, t.time.utc_ms, t.time.offset_minutes, p.kind, p.units, p.insulin_type,
                            p.insulin_name, p.grams, p.minutes, p.intensity, p.text, p.units_per_hour, now_ms, now_ms, t.extra
                        ])
                        .map_err(sql_err)?;
                    stored.push(StoredId { id: t.id.clone(), inserted: true });
                }
                Ok(stored)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn insert_documents(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        documents: Vec<NewDocument>,
        now_ms: i64,
    ) -> Result<Vec<StoredId>, StoreError> {
        self.engine
            .write(move |conn| {
                let mut insert = conn
                    .prepare_cached(
                        "INSERT INTO nightscout_documents (user_id, collection, id, time_ms, body, created_ms, modified_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT DO NOTHING",
                    )
                    .map_err(sql_err)?;
                documents
                    .into_iter()
                    .map(|d| {
                        let n = insert
                            .execute(params![user_id, collection.as_str(), d.id, d.time_ms, d.body, now_ms])
                            .map_err(sql_err)?;
                        Ok(StoredId { id: d.id, inserted: n == 1 })
                    })
                    .collect()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn put_document(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        d: NewDocument,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.engine
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO nightscout_documents (user_id, collection, id, time_ms, body, created_ms, modified_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (user_id, collection, id) DO UPDATE SET \
                     time_ms = excluded.time_ms, body = excluded.body, modified_ms = excluded.modified_ms, deleted = 0",
                    params![user_id, collection.as_str(), d.id, d.time_ms, d.body, now_ms],
                )
                .map(drop)
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn list_documents(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        query: &RangeQuery,
    ) -> Result<Vec<Document>, StoreError> {
        let q = query.clone();
        self.engine
            .read_large(move |conn| {
                let (cmp, order) = if q.descending { ("<", "DESC") } else { (">", "ASC") };
                let (after_t, after_id) = match &q.after {
                    Some(c) => (c.time_ms, c.key.clone()),
                    None if q.descending => (i64::MAX, String::new()),
                    None => (i64::MIN, String::new()),
                };
                let sql = format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM nightscout_documents WHERE user_id = ?1 AND collection = ?2 \
                     AND deleted = 0 AND time_ms >= ?3 AND time_ms < ?4 \
                     AND (time_ms {cmp} ?5 OR (time_ms = ?5 AND id {cmp} ?6)) ORDER BY time_ms {order}, id {order} LIMIT ?7"
                );
                conn.prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(
                            params![user_id, collection.as_str(), q.from_ms, q.to_ms, after_t, after_id, q.limit as i64],
                            document_from_row,
                        )?
                        .collect()
                    })
                    .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn document(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        id: &str,
    ) -> Result<Option<Document>, StoreError> {
        let id = id.to_owned();
        self.engine
            .read(move |conn| {
                conn.query_row(
                    &format!(
                        "SELECT {DOCUMENT_COLUMNS} FROM nightscout_documents WHERE user_id = ?1 AND collection = ?2 AND id = ?3"
                    ),
                    params![user_id, collection.as_str(), id],
                    document_from_row,
                )
                .optional()
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn documents_modified_since(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Document>, StoreError> {
        self.engine
            .read_large(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM nightscout_documents WHERE user_id = ?1 AND collection = ?2 \
                     AND modified_ms >= ?3 ORDER BY modified_ms, id LIMIT ?4"
                ))
                .and_then(|mut s| {
                    s.query_map(params![user_id, collection.as_str(), since_ms, limit as i64], document_from_row)?
                        .collect()
                })
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn reading(&self, user_id: UserId, id: i64) -> Result<Option<Reading>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.query_row(
                    &format!(
                        "SELECT {READING_COLUMNS} FROM readings WHERE user_id = ?1 AND id = ?2"
                    ),
                    params![user_id, id],
                    reading_from_row,
                )
                .optional()
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn readings_stored_since(
        &self,
        user_id: UserId,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        self.engine
            .read_large(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {READING_COLUMNS} FROM readings WHERE user_id = ?1 AND created_ms >= ?2 \
                     ORDER BY created_ms, id LIMIT ?3"
                ))
                .and_then(|mut s| {
                    s.query_map(params![user_id, since_ms, limit as i64], reading_from_row)?
                        .collect()
                })
                .map_err(sql_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn treatments_changed_since(
        &self,
        user_id: UserId,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Treatment>, StoreError> {
        self.engine
            .read_large(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {TREATMENT_COLUMNS} FROM treatments WHERE user_id = ?1 AND updated_ms >= ?2 \
                     ORDER BY updated_ms, id LIMIT ?3"
                ))
                .and_then(|mut s| {
                    s.query_map(params![user_id, since_ms, limit as i64], treatment_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sql_err)?
                .into_iter()
                .collect()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn last_changes(&self, user_id: UserId) -> Result<LastChanges, StoreError> {
        self.engine
            .read(move |conn| {
                let max = |sql: &str| -> Result<Option<i64>, StoreError> {
                    conn.query_row(sql, params![user_id], |r| r.get(0)).map_err(sql_err)
                };
                let readings = max("SELECT MAX(created_ms) FROM readings WHERE user_id = ?1")?;
                let treatments = max("SELECT MAX(updated_ms) FROM treatments WHERE user_id = ?1")?;
                let documents = conn
                    .prepare_cached(
                        "SELECT collection, MAX(modified_ms) FROM nightscout_documents WHERE user_id = ?1 GROUP BY collection",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![user_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(sql_err)?
                    .into_iter()
                    .filter_map(|(c, ms)| DocumentCollection::parse(&c).map(|c| (c, ms)))
                    .collect();
                Ok(LastChanges {
                    readings,
                    treatments,
                    documents,
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "sqlite"))]
    async fn delete_documents(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        ids: &[String],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let ids = ids.to_vec();
        self.engine
            .write(move |conn| {
                let mut delete = conn
                    .prepare_cached(
                        "UPDATE nightscout_documents SET deleted = 1, modified_ms = ?4 \
                         WHERE user_id = ?1 AND collection = ?2 AND id = ?3 AND deleted = 0",
                    )
                    .map_err(sql_err)?;
                let mut deleted = 0;
                for id in &ids {
                    deleted += delete
                        .execute(params![user_id, collection.as_str(), id, now_ms])
                        .map_err(sql_err)? as u64;
                }
                Ok(deleted)
            })
            .await
    }
}

/// Deleted readings and treatments leave tombstones (their Nightscout ids) that Nightscout
/// API v3's history reports: `INSERT … WHERE user_id = ?1 AND <condition> ON CONFLICT …`, with
/// `?2` the time and the condition's own parameters after it.
fn tombstones(table: &str, condition: &str) -> String {
    let (collection, id) = match table {
        "readings" => ("deleted_entries", "printf('%024x', id)"),
        _ => ("deleted_treatments", "id"),
    };
    format!(
        "INSERT INTO nightscout_documents (user_id, collection, id, time_ms, body, created_ms, modified_ms) \
         SELECT user_id, '{collection}', {id}, ?2, '{{}}', ?2, ?2 FROM {table} WHERE user_id = ?1 AND {condition} \
         ON CONFLICT (user_id, collection, id) DO UPDATE SET time_ms = excluded.time_ms, \
         modified_ms = excluded.modified_ms, deleted = 0"
    )
}

const SITE_COLUMNS: &str =
    "user_id, handle, secret_hash, secret_sealed, public_read, created_ms, updated_ms";
const DOCUMENT_COLUMNS: &str = "id, time_ms, body, created_ms, modified_ms, deleted";

fn site_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NightscoutSite> {
    Ok(NightscoutSite {
        user_id: r.get(0)?,
        handle: r.get(1)?,
        secret_hash: r.get(2)?,
        secret_sealed: r.get(3)?,
        public_read: r.get(4)?,
        created_ms: r.get(5)?,
        updated_ms: r.get(6)?,
    })
}

fn document_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Document> {
    Ok(Document {
        id: r.get(0)?,
        time_ms: r.get(1)?,
        body: r.get(2)?,
        created_ms: r.get(3)?,
        modified_ms: r.get(4)?,
        deleted: r.get(5)?,
    })
}

impl SqliteStore {
    /// The site matching `condition` on `?1`.
    async fn site_where(
        &self,
        condition: &'static str,
        value: String,
    ) -> Result<Option<NightscoutSite>, StoreError> {
        self.engine
            .read(move |conn| {
                conn.query_row(
                    &format!("SELECT {SITE_COLUMNS} FROM nightscout_sites WHERE {condition}"),
                    params![value],
                    site_from_row,
                )
                .optional()
                .map_err(sql_err)
            })
            .await
    }
}

/// An upload of CGM readings makes its owner due for alert evaluation.
const MARK_ALERTS_DUE: &str = "INSERT INTO alert_books (user_id, version) VALUES (?1, 1) \
     ON CONFLICT (user_id) DO UPDATE SET version = version + 1";

fn alert_book_json(book: &AlertBook) -> Result<String, StoreError> {
    serde_json::to_string(book).map_err(|e| StoreError::Internal(e.to_string()))
}

fn alert_book_from_json(json: &str) -> Result<AlertBook, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Internal(format!("alert book: {e}")))
}

const DELIVERY_COLUMNS: &str = "id, person_id, recipient_id, channel, target, payload, created_ms, status, attempts, next_attempt_ms, last_error, done_ms";

fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Delivery, StoreError>> {
    let channel: String = r.get(3)?;
    let status: String = r.get(7)?;
    let (Some(channel), Some(status)) = (
        DeliveryChannel::parse(&channel),
        DeliveryStatus::parse(&status),
    ) else {
        return Ok(Err(StoreError::Internal(format!(
            "unknown delivery {channel}/{status}"
        ))));
    };
    Ok(Ok(Delivery {
        id: r.get(0)?,
        person_id: r.get(1)?,
        recipient_id: r.get(2)?,
        channel,
        target: r.get(4)?,
        payload: r.get(5)?,
        created_ms: r.get(6)?,
        status,
        attempts: r.get(8)?,
        next_attempt_ms: r.get(9)?,
        last_error: r.get(10)?,
        done_ms: r.get(11)?,
    }))
}

const SHARE_COLUMNS: &str = "id, owner_id, follower_id, role, invite_email, created_ms, expires_ms, accepted_ms, revoked_ms, notify_push, notify_email";

fn share_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Share, StoreError>> {
    let role: String = r.get(3)?;
    Ok(match ShareRole::parse(&role) {
        Some(role) => Ok(Share {
            id: r.get(0)?,
            owner_id: r.get(1)?,
            follower_id: r.get(2)?,
            role,
            invite_email: r.get(4)?,
            created_ms: r.get(5)?,
            expires_ms: r.get(6)?,
            accepted_ms: r.get(7)?,
            revoked_ms: r.get(8)?,
            notify_push: r.get(9)?,
            notify_email: r.get(10)?,
        }),
        None => Err(StoreError::Internal(format!("unknown share role {role}"))),
    })
}

impl SqliteStore {
    async fn shares_where(
        &self,
        condition: &'static str,
        id: UserId,
    ) -> Result<Vec<Share>, StoreError> {
        self.engine
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {SHARE_COLUMNS} FROM shares WHERE {condition} ORDER BY id DESC"
                    ))
                    .map_err(sql_err)?;
                let rows = stmt
                    .query_map(params![id], share_from_row)
                    .map_err(sql_err)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sql_err)?;
                rows.into_iter().collect()
            })
            .await
    }
}

/// Writes a consistent copy of the database at `db` into `into` (which must not exist) while
/// the database stays in use: `VACUUM INTO` runs in a read transaction of a connection of its
/// own, and in WAL mode readers never block writers, so writes go on meanwhile (the copy is
/// the database as of the moment the read began: everything committed before it). The copy
/// is compacted and not fsynced: it is a working file (a backup reads it back at once), and
/// forcing hundreds of megabytes to disk would stall the live writer's own fsyncs. Returns the
/// copy's schema version (the last migration applied to it).
pub fn snapshot(db: &Path, into: &Path) -> Result<i64, StoreError> {
    let conn = Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sql_err)?;
    // VACUUM INTO writes with the synchronous level of the connection it runs on, and the
    // default (FULL) ends it with an fsync of the whole copy, which held the live writer's
    // commits (their own fsyncs queue behind it on the file system's journal) for hundreds of
    // milliseconds.
    conn.pragma_update(None, "synchronous", "OFF")
        .map_err(sql_err)?;
    let target = into
        .to_str()
        .ok_or_else(|| StoreError::Internal("the snapshot path is not UTF-8".into()))?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(sql_err)?;
    drop(conn);
    let copy = Connection::open_with_flags(into, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql_err)?;
    migrations::applied(&copy).map_err(sql_err)
}

/// Checks a database file is whole: `PRAGMA integrity_check` says ok.
pub fn integrity_check(db: &Path) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql_err)?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(sql_err)?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(StoreError::Internal(format!(
            "the database fails its integrity check: {verdict}"
        )))
    }
}
