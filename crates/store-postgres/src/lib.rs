//! The PostgreSQL backend of GlucoSync's store, for cluster mode.
//!
//! This crate owns the PostgreSQL schema (embedded, additive migrations applied under an
//! advisory lock so that replicas starting together do not race), the connection pools (a
//! primary and an optional read replica, both with timeouts) and the mapping of PostgreSQL
//! errors to [`StoreError`]. It must never be visible past the [`Store`] trait.

mod group_commit;
mod migrations;
mod tls;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime, Timeouts,
};
use glucosync_domain::accounts::Scope;
use glucosync_domain::alerts::AlertBook;
use glucosync_domain::analytics::GlucosePoint;
use glucosync_domain::readings::{NewReading, Reading, ReadingKind, TrendDirection};
use glucosync_domain::settings::UserSettings;
use glucosync_domain::treatments::{NewTreatment, Treatment};
use glucosync_domain::{GlucoseMgdl, Timestamp};
use glucosync_store::columns::TreatmentColumns;
use glucosync_store::{
    AccessRecord, AdminGrant, AlertRecord, BookBasis, Credential, CredentialId, CredentialKind,
    Delivery, DeliveryChannel, DeliveryOutcome, DeliveryScope, DeliveryStatus, Document,
    DocumentCollection, Evaluation, InsertOutcome, LastChanges, NewCredential, NewDelivery,
    NewDocument, NewInvite, NewUser, NightscoutSite, PoolStats, PushSubscription, RangeQuery,
    Readiness, Share, ShareRole, Store, StoreError, StoredForecast, StoredId, StoredModel, User,
    UserId,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/db` (libpq form; multi-host lists are allowed:
    /// `host=a,b target_session_attrs=read-write` follows a promoted standby).
    pub url: String,
    /// Optional replica for range listings; see `docs/architecture.md` on replication lag.
    pub read_url: Option<String>,
    /// Connections per pool.
    pub pool_size: usize,
    /// How long a query waits for a connection, and connecting may take.
    pub timeout: Duration,
}

impl PostgresOptions {
    pub fn new(url: &str) -> Self {
        PostgresOptions {
            url: url.to_owned(),
            read_url: None,
            pool_size: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

pub struct PostgresStore {
    primary: Pool,
    replica: Option<Pool>,
    /// Small uploads are merged into shared commits (see `group_commit`); absent outside a
    /// Tokio runtime.
    small_uploads: Option<tokio::sync::mpsc::Sender<group_commit::Pending>>,
}

fn make_pool(url: &str, options: &PostgresOptions) -> Result<Pool, StoreError> {
    tls::check_sslmode(url).map_err(StoreError::Unavailable)?;
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
    config.connect_timeout(options.timeout);
    config.application_name("glucoengine");
    // TLS as the URL's sslmode says (default `prefer`, as libpq): see `tls`.
    let manager = Manager::from_config(
        config,
        tls::MakeRustlsConnect::unverified(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut pool_config = PoolConfig::new(options.pool_size.max(1));
    pool_config.timeouts = Timeouts {
        wait: Some(options.timeout),
        create: Some(options.timeout),
        recycle: Some(options.timeout),
    };
    Pool::builder(manager)
        .config(pool_config)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Internal(format!("cannot build the connection pool: {e}")))
}

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(e.to_string()),
        Some(c)
            if c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::READ_ONLY_SQL_TRANSACTION
                || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            StoreError::Unavailable(e.to_string())
        }
        Some(_) => StoreError::Internal(e.to_string()),
        // No SQL state: the connection broke or could not be made.
        None => StoreError::Unavailable(e.to_string()),
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(e),
        other => StoreError::Unavailable(format!("no database connection: {other}")),
    }
}

impl PostgresStore {
    /// Builds the pools. Connections are made lazily, so this succeeds while the database is
    /// down; readiness and every call report `Unavailable` until it is back.
    pub fn open(options: &PostgresOptions) -> Result<Self, StoreError> {
        let primary = make_pool(&options.url, options)?;
        let small_uploads = tokio::runtime::Handle::try_current()
            .ok()
            .map(|_| group_commit::start(primary.clone()));
        Ok(PostgresStore {
            primary,
            replica: options
                .read_url
                .as_deref()
                .map(|u| make_pool(u, options))
                .transpose()?,
            small_uploads,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.primary.get().await.map_err(pool_err)
    }

    async fn read_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        match &self.replica {
            Some(replica) => replica.get().await.map_err(pool_err),
            None => self.client().await,
        }
    }

    /// One page of a per-user table in (time, id) order: `from <= time < to`, after the cursor
    /// position (`after_t`, `after_key`), in the query's direction; from the read replica if any.
    async fn keyset_page(
        &self,
        table: &str,
        columns: &str,
        user_id: UserId,
        q: &RangeQuery,
        after_t: i64,
        after_key: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<Vec<Row>, StoreError> {
        let (cmp, order) = page_bounds(q);
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE user_id = $1 AND time_ms >= $2 AND time_ms < $3 \
             AND (time_ms {cmp} $4 OR (time_ms = $4 AND id {cmp} $5)) ORDER BY time_ms {order}, id {order} LIMIT $6"
        );
        let client = self.read_client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(pg_err)?;
        client
            .query(
                &stmt,
                &[
                    &user_id,
                    &q.from_ms,
                    &q.to_ms,
                    &after_t,
                    after_key,
                    &(q.limit as i64),
                ],
            )
            .await
            .map_err(pg_err)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
        client.query(&stmt, params).await.map_err(pg_err)
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
        client.execute(&stmt, params).await.map_err(pg_err)
    }

    /// Deletes the rows of `table` (readings or treatments) of user `$1` matching `condition`
    /// and leaves their tombstones (Nightscout ids) at time `$3` in the same statement, for
    /// Nightscout API v3's history. Returns how many rows went.
    async fn deleted_with_tombstones(
        &self,
        table: &str,
        condition: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let (collection, id) = match table {
            "readings" => ("deleted_entries", "lpad(to_hex(id), 24, '0')"),
            _ => ("deleted_treatments", "id"),
        };
        let sql = format!(
            "WITH del AS (DELETE FROM {table} WHERE user_id = $1 AND {condition} RETURNING user_id, {id} AS nid), \
             tomb AS (INSERT INTO nightscout_documents (user_id, collection, id, time_ms, body, created_ms, modified_ms) \
             SELECT user_id, '{collection}', nid, $3, '{{}}', $3, $3 FROM del \
             ON CONFLICT (user_id, collection, id) DO UPDATE SET time_ms = excluded.time_ms, \
             modified_ms = excluded.modified_ms, deleted = FALSE) \
             SELECT count(*) FROM del"
        );
        Ok(self
            .query(&sql, params)
            .await?
            .first()
            .map_or(0, |r| r.get::<_, i64>(0) as u64))
    }
}

const USER_COLUMNS: &str =
    "id, email, display_name, is_admin, disabled, settings, created_ms, deletion_due_ms";
const CREDENTIAL_COLUMNS: &str =
    "id, user_id, kind, name, token_hash, csrf_hash, scopes, created_ms, last_used_ms, expires_ms";
const READING_COLUMNS: &str =
    "id, time_ms, utc_offset_min, kind, device, value_mgdl, trend, extra, created_ms";
const TREATMENT_COLUMNS: &str = "id, time_ms, utc_offset_min, kind, units, insulin_type, insulin_name, grams, minutes, intensity, text, units_per_hour, created_ms, updated_ms, extra";

fn user_from_row(r: &Row, at: usize) -> Result<User, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    let settings: String = r.try_get(at + 5).map_err(get)?;
    Ok(User {
        id: r.try_get(at).map_err(get)?,
        email: r.try_get(at + 1).map_err(get)?,
        display_name: r.try_get(at + 2).map_err(get)?,
        is_admin: r.try_get(at + 3).map_err(get)?,
        disabled: r.try_get(at + 4).map_err(get)?,
        settings: serde_json::from_str::<UserSettings>(&settings).unwrap_or_default(),
        created_ms: r.try_get(at + 6).map_err(get)?,
        deletion_due_ms: r.try_get(at + 7).map_err(get)?,
    })
}

fn credential_from_row(r: &Row) -> Result<Credential, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    let kind: String = r.try_get(2).map_err(get)?;
    let scopes: String = r.try_get(6).map_err(get)?;
    Ok(Credential {
        id: r.try_get(0).map_err(get)?,
        user_id: r.try_get(1).map_err(get)?,
        kind: CredentialKind::parse(&kind).unwrap_or(CredentialKind::ApiToken),
        name: r.try_get(3).map_err(get)?,
        token_hash: r.try_get(4).map_err(get)?,
        csrf_hash: r.try_get(5).map_err(get)?,
        scopes: Scope::split(&scopes),
        created_ms: r.try_get(7).map_err(get)?,
        last_used_ms: r.try_get(8).map_err(get)?,
        expires_ms: r.try_get(9).map_err(get)?,
    })
}

fn reading_from_row(r: &Row) -> Result<Reading, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    let kind: String = r.try_get(3).map_err(get)?;
    let trend: Option<String> = r.try_get(6).map_err(get)?;
    Ok(Reading {
        id: r.try_get(0).map_err(get)?,
        time: Timestamp {
            utc_ms: r.try_get(1).map_err(get)?,
            offset_minutes: r.try_get(2).map_err(get)?,
        },
        kind: ReadingKind::parse(&kind).unwrap_or_default(),
        device: r.try_get(4).map_err(get)?,
        value: GlucoseMgdl::from_stored(r.try_get(5).map_err(get)?),
        trend: trend.as_deref().and_then(TrendDirection::parse),
        extra: r.try_get(7).map_err(get)?,
        created_ms: r.try_get(8).map_err(get)?,
    })
}

fn treatment_from_row(r: &Row) -> Result<Treatment, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    let columns = TreatmentColumns {
        kind: r.try_get(3).map_err(get)?,
        units: r.try_get(4).map_err(get)?,
        insulin_type: r.try_get(5).map_err(get)?,
        insulin_name: r.try_get(6).map_err(get)?,
        grams: r.try_get(7).map_err(get)?,
        minutes: r.try_get(8).map_err(get)?,
        intensity: r.try_get(9).map_err(get)?,
        text: r.try_get(10).map_err(get)?,
        units_per_hour: r.try_get(11).map_err(get)?,
    };
    Ok(Treatment {
        id: r.try_get(0).map_err(get)?,
        time: Timestamp {
            utc_ms: r.try_get(1).map_err(get)?,
            offset_minutes: r.try_get(2).map_err(get)?,
        },
        detail: columns.into_detail()?,
        extra: r.try_get(14).map_err(get)?,
        created_ms: r.try_get(12).map_err(get)?,
        updated_ms: r.try_get(13).map_err(get)?,
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Revokes live credentials matching `filter` (with `$1` = user id, `$2` = now, then `extra`)
/// and returns their token hashes.
async fn revoke_where(
    client: &deadpool_postgres::Object,
    filter: &str,
    user_id: UserId,
    extra: Option<i64>,
) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "UPDATE credentials SET revoked_ms = $2 WHERE user_id = $1 AND revoked_ms IS NULL AND {filter} RETURNING token_hash"
    );
    let now = now_ms();
    let rows = match extra {
        Some(x) => client.query(&sql, &[&user_id, &now, &x]).await,
        None => client.query(&sql, &[&user_id, &now]).await,
    }
    .map_err(pg_err)?;
    rows.iter()
        .map(|r| {
            r.try_get::<_, String>(0)
                .map_err(|e| StoreError::Internal(e.to_string()))
        })
        .collect()
}

fn page_bounds(q: &RangeQuery) -> (&'static str, &'static str) {
    if q.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        migrations::apply(&mut client).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn readiness(&self) -> Result<Readiness, StoreError> {
        let client = self.client().await?;
        Ok(Readiness {
            applied_migration: migrations::applied(&client).await?,
            latest_migration: migrations::latest(),
        })
    }

    fn pool_stats(&self) -> PoolStats {
        let mut stats = PoolStats::default();
        for pool in std::iter::once(&self.primary).chain(self.replica.as_ref()) {
            let s = pool.status();
            stats.connections += s.size as u64;
            stats.in_use += s.size.saturating_sub(s.available) as u64;
            stats.queued_writes += s.waiting as u64;
        }
        stats
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn close(&self) {
        self.primary.close();
        if let Some(r) = &self.replica {
            r.close();
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let admin = match new.admin {
            AdminGrant::Yes => true,
            AdminGrant::No => false,
            AdminGrant::IfFirst => {
                // Serialises concurrent first signups so exactly one becomes the admin.
                tx.execute("SELECT pg_advisory_xact_lock(7261001)", &[])
                    .await
                    .map_err(pg_err)?;
                let n: i64 = tx
                    .query_one("SELECT COUNT(*) FROM users", &[])
                    .await
                    .map_err(pg_err)?
                    .get(0);
                n == 0
            }
        };
        let settings = serde_json::to_string(&UserSettings::default())
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO users (email, password_hash, is_admin, settings, created_ms) VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
                ),
                &[&new.email.as_str(), &new.password_hash, &admin, &settings, &new.now_ms],
            )
            .await
            .map_err(|e| match pg_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict("an account with this email exists".into()),
                other => other,
            })?;
        let user = user_from_row(&row, 0)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(user)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                &[&id],
            )
            .await?;
        rows.first().map(|r| user_from_row(r, 0)).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn link_identity(
        &self,
        user_id: UserId,
        issuer: &str,
        subject: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // Insert unless linked, then read who holds it: one answer also under a race.
        self.execute(
            "INSERT INTO identities (user_id, issuer, subject, created_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (issuer, subject) DO NOTHING",
            &[&user_id, &issuer, &subject, &now_ms],
        )
        .await?;
        let rows = self
            .query(
                "SELECT user_id FROM identities WHERE issuer = $1 AND subject = $2",
                &[&issuer, &subject],
            )
            .await?;
        match rows.first().map(|r| r.get::<_, i64>(0)) {
            Some(id) if id == user_id => Ok(()),
            _ => Err(StoreError::Conflict(
                "this identity is linked to another account".into(),
            )),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn user_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id = \
                     (SELECT user_id FROM identities WHERE issuer = $1 AND subject = $2)"
                ),
                &[&issuer, &subject],
            )
            .await?;
        rows.first().map(|r| user_from_row(r, 0)).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn user_by_email(&self, email: &str) -> Result<Option<(User, String)>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1"),
                &[&email],
            )
            .await?;
        rows.first()
            .map(|r| {
                let hash: String = r
                    .try_get(8)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                Ok((user_from_row(r, 0)?, hash))
            })
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn password_hash(&self, id: UserId) -> Result<Option<String>, StoreError> {
        let rows = self
            .query("SELECT password_hash FROM users WHERE id = $1", &[&id])
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        keep_session: Option<CredentialId>,
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute(
            "UPDATE users SET password_hash = $1 WHERE id = $2",
            &[&password_hash, &id],
        )
        .await
        .map_err(pg_err)?;
        let now = now_ms();
        let keep = keep_session.unwrap_or(-1);
        let rows = tx
            .query(
                "UPDATE credentials SET revoked_ms = $2 WHERE user_id = $1 AND revoked_ms IS NULL \
                 AND kind = 'session' AND id <> $3 RETURNING token_hash",
                &[&id, &now, &keep],
            )
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn set_display_name(&self, id: UserId, name: Option<&str>) -> Result<(), StoreError> {
        self.execute(
            "UPDATE users SET display_name = $1 WHERE id = $2",
            &[&name, &id],
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn set_settings(&self, id: UserId, settings: &UserSettings) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(settings).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.execute(
            "UPDATE users SET settings = $1 WHERE id = $2",
            &[&json, &id],
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn set_admin(&self, id: UserId, admin: bool) -> Result<bool, StoreError> {
        Ok(self
            .execute(
                "UPDATE users SET is_admin = $1 WHERE id = $2",
                &[&admin, &id],
            )
            .await?
            == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute(
            "UPDATE users SET disabled = $1 WHERE id = $2",
            &[&disabled, &id],
        )
        .await
        .map_err(pg_err)?;
        let hashes = if disabled {
            let now = now_ms();
            tx.query(
                "UPDATE credentials SET revoked_ms = $2 WHERE user_id = $1 AND revoked_ms IS NULL RETURNING token_hash",
                &[&id, &now],
            )
            .await
            .map_err(pg_err)?
            .iter()
            .map(|r| r.get(0))
            .collect()
        } else {
            Vec::new()
        };
        tx.commit().await.map_err(pg_err)?;
        Ok(hashes)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn list_users(&self, after_id: UserId, limit: usize) -> Result<Vec<User>, StoreError> {
        let limit = limit as i64;
        self.query(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"),
            &[&after_id, &limit],
        )
        .await?
        .iter()
        .map(|r| user_from_row(r, 0))
        .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn request_deletion(
        &self,
        id: UserId,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let n = tx
            .execute(
                "UPDATE users SET deletion_due_ms = $2 WHERE id = $1",
                &[&id, &due_ms],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        tx.execute(
            "UPDATE shares SET revoked_ms = $2, token_hash = NULL \
             WHERE (owner_id = $1 OR follower_id = $1) AND revoked_ms IS NULL",
            &[&id, &now_ms],
        )
        .await
        .map_err(pg_err)?;
        for table in ["nightscout_sites", "push_subscriptions"] {
            tx.execute(&format!("DELETE FROM {table} WHERE user_id = $1"), &[&id])
                .await
                .map_err(pg_err)?;
        }
        let hashes = tx
            .query(
                "UPDATE credentials SET revoked_ms = $2 WHERE user_id = $1 AND revoked_ms IS NULL \
                 RETURNING token_hash",
                &[&id, &now_ms],
            )
            .await
            .map_err(pg_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit().await.map_err(pg_err)?;
        Ok(hashes)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn cancel_deletion(&self, id: UserId) -> Result<bool, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE users SET deletion_due_ms = NULL WHERE id = $1 AND deletion_due_ms IS NOT NULL",
                &[&id],
            )
            .await
            .map(|n| n == 1)
            .map_err(pg_err)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn deletions_due(&self, now_ms: i64) -> Result<Vec<UserId>, StoreError> {
        Ok(self
            .query(
                "SELECT id FROM users WHERE deletion_due_ms IS NOT NULL AND deletion_due_ms <= $1 \
                 ORDER BY id",
                &[&now_ms],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn delete_account(&self, id: UserId) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        for (table, column) in glucosync_store::ACCOUNT_ROWS {
            tx.execute(&format!("DELETE FROM {table} WHERE {column} = $1"), &[&id])
                .await
                .map_err(pg_err)?;
        }
        let n = tx
            .execute("DELETE FROM users WHERE id = $1", &[&id])
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(n == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn count_users(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT COUNT(*) FROM users", &[]).await?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn create_credential(&self, new: NewCredential) -> Result<Credential, StoreError> {
        let scopes = Scope::join(&new.scopes);
        let rows = self
            .query(
                "INSERT INTO credentials (user_id, kind, name, token_hash, csrf_hash, scopes, created_ms, expires_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &new.user_id,
                    &new.kind.as_str(),
                    &new.name,
                    &new.token_hash,
                    &new.csrf_hash,
                    &scopes,
                    &new.now_ms,
                    &new.expires_ms,
                ],
            )
            .await?;
        let id: i64 = rows
            .first()
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::Internal("no id returned".into()))?;
        Ok(Credential {
            id,
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
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn credential_by_hash(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(Credential, User)>, StoreError> {
        let rows = self
            .query(
                "SELECT c.id, c.user_id, c.kind, c.name, c.token_hash, c.csrf_hash, c.scopes, c.created_ms, \
                 c.last_used_ms, c.expires_ms, u.id, u.email, u.display_name, u.is_admin, u.disabled, u.settings, u.created_ms, u.deletion_due_ms \
                 FROM credentials c JOIN users u ON u.id = c.user_id \
                 WHERE c.token_hash = $1 AND c.revoked_ms IS NULL AND (c.expires_ms IS NULL OR c.expires_ms > $2)",
                &[&token_hash, &now_ms],
            )
            .await?;
        rows.first()
            .map(|r| Ok((credential_from_row(r)?, user_from_row(r, 10)?)))
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn touch_credential(&self, id: CredentialId, now_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE credentials SET last_used_ms = $1 WHERE id = $2",
            &[&now_ms, &id],
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn list_api_tokens(
        &self,
        user_id: UserId,
        now_ms: i64,
    ) -> Result<Vec<Credential>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE user_id = $1 AND kind = 'api_token' \
                     AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $2) ORDER BY id DESC"
                ),
                &[&user_id, &now_ms],
            )
            .await?;
        rows.iter().map(credential_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn revoke_credential(
        &self,
        user_id: UserId,
        id: CredentialId,
        _now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        Ok(revoke_where(&client, "id = $3", user_id, Some(id))
            .await?
            .pop())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn insert_readings(
        &self,
        user_id: UserId,
        readings: Vec<NewReading>,
        now_ms: i64,
    ) -> Result<InsertOutcome, StoreError> {
        if let Some(queue) = self
            .small_uploads
            .as_ref()
            .filter(|_| readings.len() <= group_commit::SMALL_UPLOAD)
        {
            let (reply, answer) = tokio::sync::oneshot::channel();
            queue
                .send(group_commit::Pending {
                    user_id,
                    readings,
                    now_ms,
                    reply,
                })
                .await
                .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
            return answer
                .await
                .map_err(|_| StoreError::Internal("a grouped write got no answer".into()))?;
        }
        // One statement for the whole batch: arrays unnested server-side, all or nothing.
        let n = readings.len();
        let mut times = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut devices = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n);
        let mut trends: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut extras: Vec<Option<&str>> = Vec::with_capacity(n);
        for r in &readings {
            times.push(r.time.utc_ms);
            offsets.push(r.time.offset_minutes);
            kinds.push(r.kind.as_str());
            devices.push(r.device.as_str());
            values.push(r.value.mgdl());
            trends.push(r.trend.map(|t| t.as_str()));
            extras.push(r.extra.as_deref());
        }
        let inserted = self
            .query(
                &format!(
                    "WITH ins AS (INSERT INTO readings (user_id, time_ms, utc_offset_min, kind, device, value_mgdl, trend, created_ms, extra) \
                     SELECT $1, t.time_ms, t.utc_offset_min, t.kind, t.device, t.value_mgdl, t.trend, $8, t.extra \
                     FROM UNNEST($2::bigint[], $3::smallint[], $4::text[], $5::text[], $6::float8[], $7::text[], $9::text[]) \
                     AS t (time_ms, utc_offset_min, kind, device, value_mgdl, trend, extra) \
                     ON CONFLICT DO NOTHING RETURNING user_id, kind), {MARK_ALERTS_DUE} \
                     SELECT count(*) FROM ins"
                ),
                &[&user_id, &times, &offsets, &kinds, &devices, &values, &trends, &now_ms, &extras],
            )
            .await?
            .first()
            .map_or(0, |r| r.get::<_, i64>(0) as u64);
        Ok(InsertOutcome {
            inserted,
            duplicates: n as u64 - inserted,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn list_readings(
        &self,
        user_id: UserId,
        q: &RangeQuery,
    ) -> Result<Vec<Reading>, StoreError> {
        let (after_t, after_id) = match &q.after {
            Some(c) => (
                c.time_ms,
                c.key
                    .parse::<i64>()
                    .map_err(|_| StoreError::Internal("bad reading cursor".into()))?,
            ),
            None => (if q.descending { i64::MAX } else { i64::MIN }, 0),
        };
        let rows = self
            .keyset_page("readings", READING_COLUMNS, user_id, q, after_t, &after_id)
            .await?;
        rows.iter().map(reading_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn cgm_values(
        &self,
        user_id: UserId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<GlucosePoint>, StoreError> {
        let client = self.read_client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT time_ms, value_mgdl FROM readings WHERE user_id = $1 AND time_ms >= $2 AND time_ms < $3 \
                 AND kind = 'cgm' ORDER BY time_ms",
            )
            .await
            .map_err(pg_err)?;
        let rows = client
            .query(&stmt, &[&user_id, &from_ms, &to_ms])
            .await
            .map_err(pg_err)?;
        Ok(rows
            .iter()
            .map(|r| GlucosePoint {
                utc_ms: r.get(0),
                mgdl: r.get(1),
            })
            .collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn latest_readings(&self, user_id: UserId, n: usize) -> Result<Vec<Reading>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {READING_COLUMNS} FROM readings WHERE user_id = $1 ORDER BY time_ms DESC, id DESC LIMIT $2"),
                &[&user_id, &(n as i64)],
            )
            .await?;
        rows.iter().map(reading_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn delete_reading(&self, user_id: UserId, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .deleted_with_tombstones("readings", "id = $2", &[&user_id, &id, &now_ms()])
            .await?
            == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn delete_readings_in_range(
        &self,
        user_id: UserId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<u64, StoreError> {
        self.deleted_with_tombstones(
            "readings",
            "time_ms >= $2 AND time_ms < $4",
            &[&user_id, &from_ms, &now_ms(), &to_ms],
        )
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn insert_treatments(
        &self,
        user_id: UserId,
        treatments: Vec<NewTreatment>,
        now_ms: i64,
    ) -> Result<InsertOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO treatments (user_id, {TREATMENT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15) ON CONFLICT DO NOTHING"
            ))
            .await
            .map_err(pg_err)?;
        let mut inserted = 0;
        for t in &treatments {
            let c = TreatmentColumns::from_detail(&t.detail);
            inserted += tx
                .execute(
                    &stmt,
                    &[
                        &user_id,
                        &t.id,
                        &t.time.utc_ms,
                        &t.time.offset_minutes,
                        &c.kind,
                        &c.units,
                        &c.insulin_type,
                        &c.insulin_name,
                        &c.grams,
                        &c.minutes,
                        &c.intensity,
                        &c.text,
                        &c.units_per_hour,
                        &now_ms,
                        &t.extra,
                    ],
                )
                .await
                .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(InsertOutcome {
            inserted,
            duplicates: treatments.len() as u64 - inserted,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn list_treatments(
        &self,
        user_id: UserId,
        q: &RangeQuery,
    ) -> Result<Vec<Treatment>, StoreError> {
        let (after_t, after_id) = match &q.after {
            Some(c) => (c.time_ms, c.key.clone()),
            None if q.descending => (i64::MAX, String::new()),
            None => (i64::MIN, String::new()),
        };
        let rows = self
            .keyset_page(
                "treatments",
                TREATMENT_COLUMNS,
                user_id,
                q,
                after_t,
                &after_id,
            )
            .await?;
        rows.iter().map(treatment_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn treatment(&self, user_id: UserId, id: &str) -> Result<Option<Treatment>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {TREATMENT_COLUMNS} FROM treatments WHERE user_id = $1 AND id = $2"
                ),
                &[&user_id, &id],
            )
            .await?;
        rows.first().map(treatment_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn update_treatment(
        &self,
        user_id: UserId,
        t: NewTreatment,
        now_ms: i64,
    ) -> Result<Option<Treatment>, StoreError> {
        let c = TreatmentColumns::from_detail(&t.detail);
        let rows = self
            .query(
                &format!(
                    "UPDATE treatments SET time_ms = $3, utc_offset_min = $4, kind = $5, units = $6, insulin_type = $7, \
                     insulin_name = $8, grams = $9, minutes = $10, intensity = $11, text = $12, units_per_hour = $13, \
                     updated_ms = $14, extra = COALESCE($15, extra) WHERE user_id = $1 AND id = $2 RETURNING {TREATMENT_COLUMNS}"
                ),
                &[
                    &user_id, &t.id, &t.time.utc_ms, &t.time.offset_minutes, &c.kind, &c.units, &c.insulin_type,
                    &c.insulin_name, &c.grams, &c.minutes, &c.intensity, &c.text, &c.units_per_hour, &now_ms, &t.extra,
                ],
            )
            .await?;
        rows.first().map(treatment_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn delete_treatment(&self, user_id: UserId, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .deleted_with_tombstones("treatments", "id = $2", &[&user_id, &id, &now_ms()])
            .await?
            == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn save_forecasts(
        &self,
        forecasts: Vec<(UserId, std::sync::Arc<StoredForecast>)>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO forecasts (user_id, issued_ms, model_version, created_ms, points) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, issued_ms) DO UPDATE SET \
                 model_version = EXCLUDED.model_version, created_ms = EXCLUDED.created_ms, \
                 points = EXCLUDED.points",
            )
            .await
            .map_err(pg_err)?;
        for (user_id, f) in &forecasts {
            tx.execute(
                &stmt,
                &[
                    user_id,
                    &f.issued_ms,
                    &f.model_version,
                    &f.created_ms,
                    &f.points,
                ],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn latest_forecast(&self, user_id: UserId) -> Result<Option<StoredForecast>, StoreError> {
        let rows = self
            .query(
                "SELECT issued_ms, model_version, created_ms, points FROM forecasts \
                 WHERE user_id = $1 ORDER BY issued_ms DESC LIMIT 1",
                &[&user_id],
            )
            .await?;
        Ok(rows.first().map(|r| StoredForecast {
            issued_ms: r.get(0),
            model_version: r.get(1),
            created_ms: r.get(2),
            points: r.get(3),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn save_model(&self, user_id: UserId, m: &StoredModel) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO forecast_models (user_id, version, trained_until_ms, created_ms, body) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, version) DO UPDATE SET \
             trained_until_ms = EXCLUDED.trained_until_ms, created_ms = EXCLUDED.created_ms, \
             body = EXCLUDED.body",
            &[
                &user_id,
                &m.version,
                &m.trained_until_ms,
                &m.created_ms,
                &m.body_json,
            ],
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn latest_model(&self, user_id: UserId) -> Result<Option<StoredModel>, StoreError> {
        let rows = self
            .query(
                "SELECT version, trained_until_ms, created_ms, body FROM forecast_models \
                 WHERE user_id = $1 ORDER BY trained_until_ms DESC, created_ms DESC LIMIT 1",
                &[&user_id],
            )
            .await?;
        Ok(rows.first().map(|r| StoredModel {
            version: r.get(0),
            trained_until_ms: r.get(1),
            created_ms: r.get(2),
            body_json: r.get(3),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn create_invite(&self, invite: NewInvite) -> Result<Share, StoreError> {
        let rows = self
            .query(
                &format!(
                    "INSERT INTO shares (owner_id, role, invite_email, token_hash, created_ms, expires_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SHARE_COLUMNS}"
                ),
                &[
                    &invite.owner_id,
                    &invite.role.as_str(),
                    &invite.invite_email,
                    &invite.token_hash,
                    &invite.now_ms,
                    &invite.expires_ms,
                ],
            )
            .await?;
        rows.first()
            .map(share_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::Internal("no row returned".into()))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn accept_invite(
        &self,
        token_hash: &str,
        follower: UserId,
        now_ms: i64,
    ) -> Result<Option<Share>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {SHARE_COLUMNS} FROM shares WHERE token_hash = $1 \
                     AND follower_id IS NULL AND revoked_ms IS NULL AND expires_ms > $2 FOR UPDATE"
                ),
                &[&token_hash, &now_ms],
            )
            .await
            .map_err(pg_err)?;
        let Some(mut share) = rows.first().map(share_from_row).transpose()? else {
            return Ok(None);
        };
        if share.owner_id == follower {
            return Err(StoreError::Conflict("you cannot follow yourself".into()));
        }
        let already: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM shares WHERE owner_id = $1 AND follower_id = $2 AND revoked_ms IS NULL",
                &[&share.owner_id, &follower],
            )
            .await
            .map_err(pg_err)?
            .get(0);
        if already > 0 {
            return Err(StoreError::Conflict(
                "you already follow this person".into(),
            ));
        }
        tx.execute(
            "UPDATE shares SET follower_id = $1, accepted_ms = $2, token_hash = NULL \
             WHERE owner_id = $3 AND id = $4",
            &[&follower, &now_ms, &share.owner_id, &share.id],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        share.follower_id = Some(follower);
        share.accepted_ms = Some(now_ms);
        Ok(Some(share))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn shares_of_owner(&self, owner: UserId) -> Result<Vec<Share>, StoreError> {
        self.query(
            &format!("SELECT {SHARE_COLUMNS} FROM shares WHERE owner_id = $1 ORDER BY id DESC"),
            &[&owner],
        )
        .await?
        .iter()
        .map(share_from_row)
        .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn shares_followed(&self, follower: UserId) -> Result<Vec<Share>, StoreError> {
        self.query(
            &format!(
                "SELECT {SHARE_COLUMNS} FROM shares WHERE follower_id = $1 AND revoked_ms IS NULL \
                 ORDER BY id DESC"
            ),
            &[&follower],
        )
        .await?
        .iter()
        .map(share_from_row)
        .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn active_share(
        &self,
        owner: UserId,
        follower: UserId,
    ) -> Result<Option<Share>, StoreError> {
        self.query(
            &format!(
                "SELECT {SHARE_COLUMNS} FROM shares WHERE owner_id = $1 AND follower_id = $2 \
                 AND revoked_ms IS NULL ORDER BY id DESC LIMIT 1"
            ),
            &[&owner, &follower],
        )
        .await?
        .first()
        .map(share_from_row)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn revoke_share(&self, owner: UserId, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self
            .execute(
                "UPDATE shares SET revoked_ms = $1, token_hash = NULL \
                 WHERE owner_id = $2 AND id = $3 AND revoked_ms IS NULL",
                &[&now_ms, &owner, &id],
            )
            .await?
            == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn alert_record(&self, user_id: UserId) -> Result<AlertRecord, StoreError> {
        let rows = self
            .query(
                "SELECT book, version, evaluated_version, due_ms, book_version FROM alert_books WHERE user_id = $1",
                &[&user_id],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(AlertRecord::default());
        };
        let json: String = r.get(0);
        Ok(AlertRecord {
            book: serde_json::from_str(&json)
                .map_err(|e| StoreError::Internal(format!("alert book: {e}")))?,
            version: r.get(1),
            evaluated_version: r.get(2),
            book_version: r.get(4),
            due_ms: r.get(3),
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
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
        let evaluated = basis.evaluated_version.unwrap_or(0);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let changed = if basis.book_version == 0 {
            // The record exists once the person uploaded (the upload made them due).
            tx.execute(
                "INSERT INTO alert_books (user_id, book, book_version, evaluated_version, due_ms) \
                 VALUES ($1, $2, 1, $4, $3) ON CONFLICT (user_id) DO UPDATE SET \
                 book = excluded.book, book_version = 1, \
                 evaluated_version = GREATEST(alert_books.evaluated_version, excluded.evaluated_version), \
                 due_ms = excluded.due_ms WHERE alert_books.book_version = 0",
                &[&user_id, &json, &due_ms, &evaluated],
            )
            .await
            .map_err(pg_err)?
        } else {
            tx.execute(
                "UPDATE alert_books SET book = $2, book_version = book_version + 1, \
                 evaluated_version = GREATEST(evaluated_version, $4), due_ms = $3 \
                 WHERE user_id = $1 AND book_version = $5",
                &[&user_id, &json, &due_ms, &evaluated, &basis.book_version],
            )
            .await
            .map_err(pg_err)?
        };
        if changed != 1 {
            return Ok(false);
        }
        if !deliveries.is_empty() {
            let recipients: Vec<i64> = deliveries.iter().map(|d| d.recipient_id).collect();
            let channels: Vec<&str> = deliveries.iter().map(|d| d.channel.as_str()).collect();
            let targets: Vec<&str> = deliveries.iter().map(|d| d.target.as_str()).collect();
            let payloads: Vec<&str> = deliveries.iter().map(|d| d.payload.as_str()).collect();
            tx.execute(
                "INSERT INTO deliveries (person_id, recipient_id, channel, target, payload, created_ms, next_attempt_ms) \
                 SELECT $1, d.*, $6, $6 FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[]) AS d",
                &[&user_id, &recipients, &channels, &targets, &payloads, &now_ms],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(true)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn mark_alerts_evaluated(&self, evaluated: &[Evaluation]) -> Result<(), StoreError> {
        let users: Vec<i64> = evaluated.iter().map(|e| e.user_id).collect();
        let versions: Vec<i64> = evaluated.iter().map(|e| e.version).collect();
        let book_versions: Vec<i64> = evaluated.iter().map(|e| e.book_version).collect();
        let dues: Vec<Option<i64>> = evaluated.iter().map(|e| e.due_ms).collect();
        self.execute(
            "UPDATE alert_books a SET evaluated_version = a.version, due_ms = e.due \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) \
             AS e(user_id, version, due, book_version) \
             WHERE a.user_id = e.user_id AND a.version = e.version AND a.book_version = e.book_version",
            &[&users, &versions, &dues, &book_versions],
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn alerts_due(
        &self,
        now_ms: i64,
        shard_count: u32,
        shards: &[u32],
        limit: usize,
    ) -> Result<Vec<UserId>, StoreError> {
        let shards: Vec<i64> = shards.iter().map(|&s| i64::from(s)).collect();
        let rows = self
            .query(
                "SELECT user_id FROM alert_books \
                 WHERE (version > evaluated_version OR due_ms <= $1) \
                 AND user_id % $2 = ANY($3) ORDER BY user_id LIMIT $4",
                &[&now_ms, &i64::from(shard_count), &shards, &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_ms = excluded.expires_ms \
                 WHERE leases.holder = excluded.holder OR leases.expires_ms <= $4",
                &[&name, &holder, &(now_ms + ttl_ms), &now_ms],
            )
            .await?;
        Ok(n == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn add_push_subscription(
        &self,
        user_id: UserId,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        now_ms: i64,
    ) -> Result<PushSubscription, StoreError> {
        let rows = self
            .query(
                "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, created_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, endpoint) \
                 DO UPDATE SET p256dh = excluded.p256dh, auth = excluded.auth \
                 RETURNING id, created_ms",
                &[&user_id, &endpoint, &p256dh, &auth, &now_ms],
            )
            .await?;
        let r = rows
            .first()
            .ok_or_else(|| StoreError::Internal("no row returned".into()))?;
        Ok(PushSubscription {
            id: r.get(0),
            user_id,
            endpoint: endpoint.to_owned(),
            p256dh: p256dh.to_owned(),
            auth: auth.to_owned(),
            created_ms: r.get(1),
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn push_subscriptions(
        &self,
        user_id: UserId,
    ) -> Result<Vec<PushSubscription>, StoreError> {
        let rows = self
            .query(
                "SELECT id, user_id, endpoint, p256dh, auth, created_ms FROM push_subscriptions \
                 WHERE user_id = $1 ORDER BY id",
                &[&user_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PushSubscription {
                id: r.get(0),
                user_id: r.get(1),
                endpoint: r.get(2),
                p256dh: r.get(3),
                auth: r.get(4),
                created_ms: r.get(5),
            })
            .collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn delete_push_subscription(&self, user_id: UserId, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .execute(
                "DELETE FROM push_subscriptions WHERE user_id = $1 AND id = $2",
                &[&user_id, &id],
            )
            .await?
            == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn claim_deliveries(
        &self,
        scope: DeliveryScope<'_>,
        now_ms: i64,
        hold_ms: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let (person, count, held): (Option<i64>, i64, Vec<i64>) = match scope {
            DeliveryScope::Person(p) => (Some(p), 1, vec![0]),
            DeliveryScope::Shards { held: [], .. } => return Ok(Vec::new()),
            DeliveryScope::Shards { count, held } => (
                None,
                i64::from(count),
                held.iter().map(|&s| i64::from(s)).collect(),
            ),
        };
        // SKIP LOCKED: replicas claiming at once take different rows.
        let rows = self
            .query(
                &format!(
                    "UPDATE deliveries d SET attempts = attempts + 1, next_attempt_ms = $2 \
                     FROM (SELECT person_id, id FROM deliveries WHERE status = 'pending' \
                           AND next_attempt_ms <= $1 AND ($3::bigint IS NULL OR person_id = $3) \
                           AND person_id % $4 = ANY($5) \
                           ORDER BY next_attempt_ms LIMIT $6 FOR UPDATE SKIP LOCKED) AS c \
                     WHERE d.person_id = c.person_id AND d.id = c.id \
                     RETURNING {}",
                    DELIVERY_COLUMNS
                        .split(", ")
                        .map(|c| format!("d.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[
                    &now_ms,
                    &(now_ms + hold_ms),
                    &person,
                    &count,
                    &held,
                    &(limit as i64),
                ],
            )
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (status, next, error) = outcome.columns(delivery.next_attempt_ms);
        let done = (status != DeliveryStatus::Pending).then_some(now_ms);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute(
            "UPDATE deliveries SET status = $3, next_attempt_ms = $4, last_error = $5, done_ms = $6 \
             WHERE person_id = $1 AND id = $2",
            &[&delivery.person_id, &delivery.id, &status.as_str(), &next, &error, &done],
        )
        .await
        .map_err(pg_err)?;
        if matches!(outcome, DeliveryOutcome::Expired { .. }) {
            tx.execute(
                "DELETE FROM push_subscriptions WHERE user_id = $1 AND id = $2",
                &[
                    &delivery.recipient_id,
                    &delivery.target.parse::<i64>().unwrap_or(-1),
                ],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn deliveries_of(
        &self,
        person_id: UserId,
        (before_ms, before_id): (i64, i64),
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE person_id = $1 \
                     AND (created_ms, id) < ($2, $3) ORDER BY created_ms DESC, id DESC LIMIT $4"
                ),
                &[&person_id, &before_ms, &before_id, &(limit as i64)],
            )
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn set_follow_channels(
        &self,
        owner: UserId,
        follower: UserId,
        push: bool,
        email: bool,
    ) -> Result<bool, StoreError> {
        Ok(self
            .execute(
                "UPDATE shares SET notify_push = $3, notify_email = $4 \
                 WHERE owner_id = $1 AND follower_id = $2 AND revoked_ms IS NULL",
                &[&owner, &follower, &push, &email],
            )
            .await?
            > 0)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String, StoreError> {
        // Two replicas starting at once: the loser's statement may not see the winner's row
        // (its snapshot predates it); the next attempt does.
        for _ in 0..3 {
            let rows = self
                .query(
                    "WITH ins AS (INSERT INTO server_secrets (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING RETURNING value) \
                     SELECT value FROM ins UNION ALL SELECT value FROM server_secrets WHERE name = $1",
                    &[&name, &candidate],
                )
                .await?;
            if let Some(r) = rows.first() {
                return Ok(r.get(0));
            }
        }
        Err(StoreError::Internal("no secret returned".into()))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn record_access(
        &self,
        owner: UserId,
        follower: UserId,
        what: &str,
        time_ms: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO access_log (owner_id, time_ms, follower_id, what) VALUES ($1, $2, $3, $4)",
            &[&owner, &time_ms, &follower, &what],
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn access_log(
        &self,
        owner: UserId,
        (before_ms, before_id): (i64, i64),
        limit: usize,
    ) -> Result<Vec<AccessRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT a.time_ms, a.follower_id, COALESCE(u.email, '(a deleted account)'), a.what, a.id FROM access_log a \
                 LEFT JOIN users u ON u.id = a.follower_id \
                 WHERE a.owner_id = $1 AND (a.time_ms, a.id) < ($2, $3) \
                 ORDER BY a.time_ms DESC, a.id DESC LIMIT $4",
                &[&owner, &before_ms, &before_id, &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AccessRecord {
                id: r.get(4),
                time_ms: r.get(0),
                follower_id: r.get(1),
                follower_email: r.get(2),
                what: r.get(3),
            })
            .collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn nightscout_site(&self, user_id: UserId) -> Result<Option<NightscoutSite>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {SITE_COLUMNS} FROM nightscout_sites WHERE user_id = $1"),
                &[&user_id],
            )
            .await?;
        rows.first().map(site_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn create_nightscout_site(
        &self,
        site: &NightscoutSite,
    ) -> Result<NightscoutSite, StoreError> {
        // The existing site wins over the candidate; a handle or secret someone else has is a
        // unique violation (a Conflict).
        let rows = self
            .query(
                &format!(
                    "WITH ins AS (INSERT INTO nightscout_sites ({SITE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (user_id) DO NOTHING RETURNING {SITE_COLUMNS}) \
                     SELECT {SITE_COLUMNS} FROM ins UNION ALL \
                     SELECT {SITE_COLUMNS} FROM nightscout_sites WHERE user_id = $1"
                ),
                &[
                    &site.user_id,
                    &site.handle,
                    &site.secret_hash,
                    &site.secret_sealed,
                    &site.public_read,
                    &site.created_ms,
                    &site.updated_ms,
                ],
            )
            .await?;
        rows.first()
            .map(site_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::Internal("a created site was not returned".into()))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn nightscout_site_by_handle(
        &self,
        handle: &str,
    ) -> Result<Option<NightscoutSite>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {SITE_COLUMNS} FROM nightscout_sites WHERE handle = $1"),
                &[&handle],
            )
            .await?;
        rows.first().map(site_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn nightscout_site_by_secret(
        &self,
        secret_hash: &str,
    ) -> Result<Option<NightscoutSite>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {SITE_COLUMNS} FROM nightscout_sites WHERE secret_hash = $1"),
                &[&secret_hash],
            )
            .await?;
        rows.first().map(site_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn update_nightscout_site(&self, site: &NightscoutSite) -> Result<bool, StoreError> {
        Ok(self
            .execute(
                "UPDATE nightscout_sites SET secret_hash = $2, secret_sealed = $3, public_read = $4, \
                 updated_ms = $5 WHERE user_id = $1",
                &[
                    &site.user_id,
                    &site.secret_hash,
                    &site.secret_sealed,
                    &site.public_read,
                    &site.updated_ms,
                ],
            )
            .await?
            == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn insert_entries(
        &self,
        user_id: UserId,
        readings: Vec<NewReading>,
        now_ms: i64,
    ) -> Result<Vec<StoredId>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        // The duplicate rule (same kind and time, any device) is not a unique index: uploads
        // of one person take turns so that two cannot both find the reading missing.
        tx.execute(NIGHTSCOUT_UPLOAD_LOCK, &[&user_id])
            .await
            .map_err(pg_err)?;
        let find = tx
            .prepare_cached(
                "SELECT id FROM readings WHERE user_id = $1 AND time_ms = $2 AND kind = $3 LIMIT 1",
            )
            .await
            .map_err(pg_err)?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO readings (user_id, time_ms, utc_offset_min, kind, device, value_mgdl, trend, created_ms, extra) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .await
            .map_err(pg_err)?;
        let mut stored = Vec::with_capacity(readings.len());
        let mut cgm_inserted = false;
        for r in &readings {
            let kind = r.kind.as_str();
            let existing = tx
                .query_opt(&find, &[&user_id, &r.time.utc_ms, &kind])
                .await
                .map_err(pg_err)?;
            let (id, inserted): (i64, bool) = match existing {
                Some(row) => (row.get(0), false),
                None => {
                    let row = tx
                        .query_one(
                            &insert,
                            &[
                                &user_id,
                                &r.time.utc_ms,
                                &r.time.offset_minutes,
                                &kind,
                                &r.device,
                                &r.value.mgdl(),
                                &r.trend.map(|t| t.as_str()),
                                &now_ms,
                                &r.extra,
                            ],
                        )
                        .await
                        .map_err(pg_err)?;
                    cgm_inserted |= r.kind == ReadingKind::Cgm;
                    (row.get(0), true)
                }
            };
            stored.push(StoredId {
                id: id.to_string(),
                inserted,
            });
        }
        if cgm_inserted {
            tx.execute(
                "INSERT INTO alert_books (user_id, version) VALUES ($1, 1) \
                 ON CONFLICT (user_id) DO UPDATE SET version = alert_books.version + 1",
                &[&user_id],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(stored)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn insert_nightscout_treatments(
        &self,
        user_id: UserId,
        treatments: Vec<NewTreatment>,
        now_ms: i64,
    ) -> Result<Vec<StoredId>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute(NIGHTSCOUT_UPLOAD_LOCK, &[&user_id])
            .await
            .map_err(pg_err)?;
        let find = tx
            .prepare_cached(
                "SELECT id FROM treatments WHERE user_id = $1 AND id = $2 UNION ALL \
                 (SELECT id FROM treatments WHERE user_id = $1 AND time_ms = $3 AND kind = $4 \
                  AND ($5::text IS NULL OR (extra::jsonb ->> 'eventType') IS NULL \
                       OR (extra::jsonb ->> 'eventType') IN ($5, '', '<none>')) \
                  ORDER BY id LIMIT 1) LIMIT 1",
            )
            .await
            .map_err(pg_err)?;
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO treatments (user_id, {TREATMENT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15)"
            ))
            .await
            .map_err(pg_err)?;
        let mut stored = Vec::with_capacity(treatments.len());
        for t in &treatments {
            let c = TreatmentColumns::from_detail(&t.detail);
            let existing = tx
                .query_opt(
                    &find,
                    &[
                        &user_id,
                        &t.id,
                        &t.time.utc_ms,
                        &c.kind,
                        &glucosync_store::columns::event_type(t.extra.as_deref()),
                    ],
                )
                .await
                .map_err(pg_err)?;
            if let Some(row) = existing {
                stored.push(StoredId {
                    id: row.get(0),
                    inserted: false,
                });
                continue;
            }
            tx.execute(
                &insert,
                &[
                    &user_id,
                    &t.id,
                    &t.time.utc_ms,
                    &t.time.offset_minutes,
                    &c.kind,
                    &c.units,
                    &c.insulin_type,
                    &c.insulin_name,
                    &c.grams,
                    &c.minutes,
                    &c.intensity,
                    &c.text,
                    &c.units_per_hour,
                    &now_ms,
                    &t.extra,
                ],
            )
            .await
            .map_err(pg_err)?;
            stored.push(StoredId {
                id: t.id.clone(),
                inserted: true,
            });
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(stored)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn insert_documents(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        documents: Vec<NewDocument>,
        now_ms: i64,
    ) -> Result<Vec<StoredId>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO nightscout_documents (user_id, collection, id, time_ms, body, created_ms, modified_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let mut stored = Vec::with_capacity(documents.len());
        for d in documents {
            let n = tx
                .execute(
                    &insert,
                    &[
                        &user_id,
                        &collection.as_str(),
                        &d.id,
                        &d.time_ms,
                        &d.body,
                        &now_ms,
                    ],
                )
                .await
                .map_err(pg_err)?;
            stored.push(StoredId {
                id: d.id,
                inserted: n == 1,
            });
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(stored)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn put_document(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        d: NewDocument,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO nightscout_documents (user_id, collection, id, time_ms, body, created_ms, modified_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (user_id, collection, id) DO UPDATE SET \
             time_ms = excluded.time_ms, body = excluded.body, modified_ms = excluded.modified_ms, deleted = FALSE",
            &[&user_id, &collection.as_str(), &d.id, &d.time_ms, &d.body, &now_ms],
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn list_documents(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        q: &RangeQuery,
    ) -> Result<Vec<Document>, StoreError> {
        let (after_t, after_id) = match &q.after {
            Some(c) => (c.time_ms, c.key.clone()),
            None if q.descending => (i64::MAX, String::new()),
            None => (i64::MIN, String::new()),
        };
        let (cmp, order) = page_bounds(q);
        let client = self.read_client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {DOCUMENT_COLUMNS} FROM nightscout_documents WHERE user_id = $1 AND collection = $2 \
                 AND NOT deleted AND time_ms >= $3 AND time_ms < $4 \
                 AND (time_ms {cmp} $5 OR (time_ms = $5 AND id {cmp} $6)) ORDER BY time_ms {order}, id {order} LIMIT $7"
            ))
            .await
            .map_err(pg_err)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &user_id,
                    &collection.as_str(),
                    &q.from_ms,
                    &q.to_ms,
                    &after_t,
                    &after_id,
                    &(q.limit as i64),
                ],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(document_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn document(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        id: &str,
    ) -> Result<Option<Document>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM nightscout_documents WHERE user_id = $1 AND collection = $2 AND id = $3"
                ),
                &[&user_id, &collection.as_str(), &id],
            )
            .await?;
        rows.first().map(document_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn documents_modified_since(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Document>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM nightscout_documents WHERE user_id = $1 AND collection = $2 \
                     AND modified_ms >= $3 ORDER BY modified_ms, id LIMIT $4"
                ),
                &[&user_id, &collection.as_str(), &since_ms, &(limit as i64)],
            )
            .await?;
        rows.iter().map(document_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn reading(&self, user_id: UserId, id: i64) -> Result<Option<Reading>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {READING_COLUMNS} FROM readings WHERE user_id = $1 AND id = $2"),
                &[&user_id, &id],
            )
            .await?;
        rows.first().map(reading_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn readings_stored_since(
        &self,
        user_id: UserId,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {READING_COLUMNS} FROM readings WHERE user_id = $1 AND created_ms >= $2 \
                     ORDER BY created_ms, id LIMIT $3"
                ),
                &[&user_id, &since_ms, &(limit as i64)],
            )
            .await?;
        rows.iter().map(reading_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn treatments_changed_since(
        &self,
        user_id: UserId,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Treatment>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {TREATMENT_COLUMNS} FROM treatments WHERE user_id = $1 AND updated_ms >= $2 \
                     ORDER BY updated_ms, id LIMIT $3"
                ),
                &[&user_id, &since_ms, &(limit as i64)],
            )
            .await?;
        rows.iter().map(treatment_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn last_changes(&self, user_id: UserId) -> Result<LastChanges, StoreError> {
        let rows = self
            .query(
                "SELECT (SELECT MAX(created_ms) FROM readings WHERE user_id = $1), \
                        (SELECT MAX(updated_ms) FROM treatments WHERE user_id = $1)",
                &[&user_id],
            )
            .await?;
        let (readings, treatments) = rows
            .first()
            .map(|r| (r.get(0), r.get(1)))
            .unwrap_or((None, None));
        let documents = self
            .query(
                "SELECT collection, MAX(modified_ms) FROM nightscout_documents WHERE user_id = $1 GROUP BY collection",
                &[&user_id],
            )
            .await?
            .iter()
            .filter_map(|r| {
                DocumentCollection::parse(r.get::<_, &str>(0)).map(|c| (c, r.get::<_, i64>(1)))
            })
            .collect();
        Ok(LastChanges {
            readings,
            treatments,
            documents,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn delete_documents(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        ids: &[String],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        self.execute(
            "UPDATE nightscout_documents SET deleted = TRUE, modified_ms = $4 \
             WHERE user_id = $1 AND collection = $2 AND id = ANY($3) AND NOT deleted",
            &[&user_id, &collection.as_str(), &ids, &now_ms],
        )
        .await
    }
}

/// A CTE that makes the owners of the CGM readings in `ins` (rows of user_id, kind) due for
/// alert evaluation, in the statement that inserts them.
/// Makes one person's Nightscout uploads take turns (see `insert_entries`). The two-key form
/// has its own key space, apart from the migration and lease locks.
const NIGHTSCOUT_UPLOAD_LOCK: &str =
    "SELECT pg_advisory_xact_lock(726102, ($1::bigint % 2147483647)::int)";

const SITE_COLUMNS: &str =
    "user_id, handle, secret_hash, secret_sealed, public_read, created_ms, updated_ms";
const DOCUMENT_COLUMNS: &str = "id, time_ms, body, created_ms, modified_ms, deleted";

fn site_from_row(r: &Row) -> Result<NightscoutSite, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    Ok(NightscoutSite {
        user_id: r.try_get(0).map_err(get)?,
        handle: r.try_get(1).map_err(get)?,
        secret_hash: r.try_get(2).map_err(get)?,
        secret_sealed: r.try_get(3).map_err(get)?,
        public_read: r.try_get(4).map_err(get)?,
        created_ms: r.try_get(5).map_err(get)?,
        updated_ms: r.try_get(6).map_err(get)?,
    })
}

fn document_from_row(r: &Row) -> Result<Document, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    Ok(Document {
        id: r.try_get(0).map_err(get)?,
        time_ms: r.try_get(1).map_err(get)?,
        body: r.try_get(2).map_err(get)?,
        created_ms: r.try_get(3).map_err(get)?,
        modified_ms: r.try_get(4).map_err(get)?,
        deleted: r.try_get(5).map_err(get)?,
    })
}

pub(crate) const MARK_ALERTS_DUE: &str = "marked AS (INSERT INTO alert_books (user_id, version) \
     SELECT DISTINCT user_id, 1 FROM ins WHERE kind = 'cgm' \
     ON CONFLICT (user_id) DO UPDATE SET version = alert_books.version + 1)";

fn alert_book_json(book: &AlertBook) -> Result<String, StoreError> {
    serde_json::to_string(book).map_err(|e| StoreError::Internal(e.to_string()))
}

const SHARE_COLUMNS: &str = "id, owner_id, follower_id, role, invite_email, created_ms, expires_ms, accepted_ms, revoked_ms, notify_push, notify_email";

const DELIVERY_COLUMNS: &str = "id, person_id, recipient_id, channel, target, payload, created_ms, status, attempts, next_attempt_ms, last_error, done_ms";

fn delivery_from_row(r: &Row) -> Result<Delivery, StoreError> {
    let channel: String = r.get(3);
    let status: String = r.get(7);
    let (Some(channel), Some(status)) = (
        DeliveryChannel::parse(&channel),
        DeliveryStatus::parse(&status),
    ) else {
        return Err(StoreError::Internal(format!(
            "unknown delivery {channel}/{status}"
        )));
    };
    Ok(Delivery {
        id: r.get(0),
        person_id: r.get(1),
        recipient_id: r.get(2),
        channel,
        target: r.get(4),
        payload: r.get(5),
        created_ms: r.get(6),
        status,
        attempts: r.get(8),
        next_attempt_ms: r.get(9),
        last_error: r.get(10),
        done_ms: r.get(11),
    })
}

fn share_from_row(r: &Row) -> Result<Share, StoreError> {
    let role: String = r.get(3);
    Ok(Share {
        id: r.get(0),
        owner_id: r.get(1),
        follower_id: r.get(2),
        role: ShareRole::parse(&role)
            .ok_or_else(|| StoreError::Internal(format!("unknown share role {role}")))?,
        invite_email: r.get(4),
        created_ms: r.get(5),
        expires_ms: r.get(6),
        accepted_ms: r.get(7),
        revoked_ms: r.get(8),
        notify_push: r.get(9),
        notify_email: r.get(10),
    })
}
