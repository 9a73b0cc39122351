//! Backups (docs/data-ownership.md): `glucoengine backup`, the built-in schedule and
//! `glucoengine restore`.
//!
//! Embedded mode snapshots the SQLite database online (`VACUUM INTO` in a read transaction:
//! writers carry on), compresses it with zstd, encrypts it with the configured key
//! ([`format`]) and writes `glucosync-backup-<UTC time>.gsb` with its SHA-256 beside it
//! (`.sha256`) to a directory or an S3 bucket; then deletes the backups older than the
//! retention. A restore checks the SHA-256, decrypts and decompresses into an empty data
//! directory and checks the database's integrity before it is put in place.

pub mod format;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::config::Config;

const PREFIX: &str = "glucosync-backup-";
const SUFFIX: &str = ".gsb";
const PART_BYTES: usize = 16 * 1024 * 1024;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Config(String),
    #[error("storage: {0}")]
    Store(#[from] glucosync_store::StoreError),
    #[error(transparent)]
    Format(#[from] format::FormatError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("S3: {0}")]
    S3(#[from] object_store::Error),
    #[error("the backup's SHA-256 is {actual}, not the {expected} recorded beside it: it is damaged; use another backup")]
    Checksum { expected: String, actual: String },
    #[error("{0}")]
    Refused(String),
}

/// Where backups go: a directory, or `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub enum Destination {
    Directory(PathBuf),
    S3 {
        store: Arc<AmazonS3>,
        bucket: String,
        prefix: String,
    },
}

impl Destination {
    pub fn parse(output: &str, config: &Config) -> Result<Self, BackupError> {
        let Some(rest) = output.strip_prefix("s3://") else {
            return Ok(Destination::Directory(PathBuf::from(output)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(BackupError::Config(format!(
                "`{output}` names no bucket: use s3://bucket/prefix"
            )));
        }
        let (Some(key_id), Some(secret)) = (&config.s3_access_key_id, &config.s3_secret_access_key)
        else {
            return Err(BackupError::Config(
                "an s3:// destination needs s3_access_key_id and s3_secret_access_key \
                 (GLUCOSYNC_S3_ACCESS_KEY_ID, GLUCOSYNC_S3_SECRET_ACCESS_KEY)"
                    .into(),
            ));
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&config.s3_region)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret.expose())
            .with_client_options(
                object_store::ClientOptions::new()
                    // The default (30 s) bounds a whole response, including a large body.
                    .with_timeout(Duration::from_secs(600)),
            );
        if let Some(endpoint) = &config.s3_endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        Ok(Destination::S3 {
            store: Arc::new(builder.build()?),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    fn location(&self, name: &str) -> String {
        match self {
            Destination::Directory(dir) => dir.join(name).display().to_string(),
            Destination::S3 { bucket, prefix, .. } if prefix.is_empty() => {
                format!("s3://{bucket}/{name}")
            }
            Destination::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}/{name}"),
        }
    }

    fn object(prefix: &str, name: &str) -> ObjectPath {
        if prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{prefix}/{name}"))
        }
    }

    /// Where the backup `name` is written before it is published: in a directory, beside its
    /// final name (written and synced in place, then renamed: copying it would write it twice
    /// and end in one long flush); for S3, in the working directory `work`, unsynced (it is
    /// uploaded, then deleted). Says whether the file must be made durable.
    async fn staging(&self, work: &Path, name: &str) -> Result<(PathBuf, bool), BackupError> {
        match self {
            Destination::Directory(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                Ok((dir.join(format!("{name}.partial")), true))
            }
            Destination::S3 { .. } => Ok((work.join(name), false)),
        }
    }

    /// Publishes the staged file `from` (see `staging`) as `name`.
    async fn put_file(&self, from: &Path, name: &str) -> Result<(), BackupError> {
        match self {
            Destination::Directory(dir) => {
                tokio::fs::rename(from, dir.join(name)).await?;
                sync_directory(dir).await
            }
            Destination::S3 { store, prefix, .. } => {
                let upload = store.put_multipart(&Self::object(prefix, name)).await?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                let sent: Result<(), BackupError> = async {
                    let mut file = tokio::fs::File::open(from).await?;
                    let mut buf = vec![0u8; 1024 * 1024];
                    loop {
                        use tokio::io::AsyncReadExt;
                        let n = file.read(&mut buf).await?;
                        if n == 0 {
                            return Ok(());
                        }
                        writer.wait_for_capacity(4).await?;
                        writer.write(&buf[..n]);
                    }
                }
                .await;
                match sent {
                    Ok(()) => {
                        writer.finish().await?;
                        Ok(())
                    }
                    Err(e) => {
                        // No half-uploaded parts left behind in the bucket.
                        let _ = writer.abort().await;
                        Err(e)
                    }
                }
            }
        }
    }

    async fn put_text(&self, name: &str, text: String) -> Result<(), BackupError> {
        match self {
            Destination::Directory(dir) => {
                let partial = dir.join(format!("{name}.partial"));
                let mut file = tokio::fs::File::create(&partial).await?;
                file.write_all(text.as_bytes()).await?;
                file.sync_all().await?;
                self.put_file(&partial, name).await
            }
            Destination::S3 { store, prefix, .. } => {
                store
                    .put(&Self::object(prefix, name), text.into_bytes().into())
                    .await?;
                Ok(())
            }
        }
    }

    /// The names of the objects or files here.
    async fn names(&self) -> Result<Vec<String>, BackupError> {
        match self {
            Destination::Directory(dir) => {
                let mut names = Vec::new();
                let mut entries = match tokio::fs::read_dir(dir).await {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
                    Err(e) => return Err(e.into()),
                };
                while let Some(entry) = entries.next_entry().await? {
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
                Ok(names)
            }
            Destination::S3 { store, prefix, .. } => {
                let under = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str()));
                let mut listing = store.list(under.as_ref());
                let mut names = Vec::new();
                while let Some(meta) = listing.next().await {
                    if let Some(name) = meta?.location.filename() {
                        names.push(name.to_owned());
                    }
                }
                Ok(names)
            }
        }
    }

    async fn delete(&self, name: &str) -> Result<(), BackupError> {
        match self {
            Destination::Directory(dir) => match tokio::fs::remove_file(dir.join(name)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
            Destination::S3 { store, prefix, .. } => {
                store.delete(&Self::object(prefix, name)).await?;
                Ok(())
            }
        }
    }

    /// Copies `name` here into the local file `to`.
    async fn fetch(&self, name: &str, to: &Path) -> Result<(), BackupError> {
        match self {
            Destination::Directory(dir) => {
                tokio::fs::copy(dir.join(name), to).await?;
                Ok(())
            }
            Destination::S3 { store, prefix, .. } => {
                let mut stream = store.get(&Self::object(prefix, name)).await?.into_stream();
                let mut file = tokio::fs::File::create(to).await?;
                while let Some(chunk) = stream.next().await {
                    file.write_all(&chunk?).await?;
                }
                file.sync_all().await?;
                Ok(())
            }
        }
    }
}

/// CPU niceness of the thread that snapshots, compresses and encrypts: a backup is background
/// work beside the server it backs up, whose uploads must not wait for the CPU behind it (on
/// two cores, a backup at the same priority delayed single uploads by up to 90 ms).
const BACKUP_NICENESS: i32 = 10;

/// Runs `work` on a thread of its own at `BACKUP_NICENESS` (on Linux niceness is per thread, so
/// the server's other threads keep theirs; a thread of its own, not the blocking pool's, so the
/// lowered priority ends with it).
async fn at_low_priority<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackupError> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("backup".into())
        .spawn(move || {
            // `None`: the calling thread. A failure leaves the priority as it was: harmless.
            let _ = rustix::process::setpriority_process(None, BACKUP_NICENESS);
            let _ = done.send(work());
        })?;
    result
        .await
        .map_err(|_| BackupError::Io(std::io::Error::other("the backup thread panicked")))
}

/// Makes the renames in `dir` durable.
async fn sync_directory(dir: &Path) -> Result<(), BackupError> {
    tokio::fs::File::open(dir).await?.sync_all().await?;
    Ok(())
}

/// What a backup produced.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub location: String,
    pub bytes: u64,
    pub sha256: String,
    pub duration: Duration,
    /// Backups deleted by the retention.
    pub expired: Vec<String>,
}

/// The name of a backup taken at `utc_ms`: `glucosync-backup-20261127T180000.000Z.gsb`.
pub fn backup_name(utc_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(utc_ms).unwrap_or_default();
    format!("{PREFIX}{}{SUFFIX}", t.format("%Y%m%dT%H%M%S%.3fZ"))
}

fn taken_at(name: &str) -> Option<i64> {
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3fZ")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

fn database_path(config: &Config) -> Result<PathBuf, BackupError> {
    let url = config.database_url.expose();
    if !url.starts_with("sqlite:") {
        return Err(BackupError::Refused(
            "backups of this kind are of the embedded database; in cluster mode PostgreSQL's \
             own backups (WAL-G, point-in-time recovery) apply, and `glucoengine export --all` \
             is the logical backup (docs/data-ownership.md)"
                .into(),
        ));
    }
    glucosync_store_sqlite::SqliteOptions::from_url(url)
        .map(|o| o.path)
        .map_err(BackupError::Config)
}

fn key(config: &Config) -> Result<String, BackupError> {
    match &config.backup_key {
        Some(k) if k.expose().chars().count() >= format::MIN_KEY_CHARS => Ok(k.expose().to_owned()),
        Some(_) => Err(BackupError::Config(format!(
            "backup_key (GLUCOSYNC_BACKUP_KEY) must be at least {} characters",
            format::MIN_KEY_CHARS
        ))),
        None => Err(BackupError::Config(
            "backups are encrypted: set backup_key (GLUCOSYNC_BACKUP_KEY), a passphrase of 16 \
             characters or more, and keep it safe: without it no backup can be restored"
                .into(),
        )),
    }
}

/// Takes one backup into `output` (a directory or `s3://bucket/prefix`), then applies the
/// retention there.
pub async fn backup(config: &Config, output: &str) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let destination = Destination::parse(output, config)?;
    let key = key(config)?;
    let db = database_path(config)?;
    if !db.exists() {
        return Err(BackupError::Refused(format!(
            "there is no database at {} to back up (check GLUCOSYNC_DATA_DIR or database_url)",
            db.display()
        )));
    }
    let now = crate::state::now_ms();
    let name = backup_name(now);
    let work = tempfile::Builder::new()
        .prefix("glucosync-backup")
        .tempdir_in(db.parent().unwrap_or(Path::new(".")))?;
    let snapshot = work.path().join("snapshot.db");
    let (sealed, durable) = destination.staging(work.path(), &name).await?;
    let written = {
        let (db, snapshot, sealed) = (db.clone(), snapshot.clone(), sealed.clone());
        at_low_priority(move || -> Result<(u64, String), BackupError> {
            let schema_migration = glucosync_store_sqlite::snapshot(&db, &snapshot)?;
            let out = format::SyncEvery::new(std::fs::File::create(&sealed)?, durable);
            let hashing = format::Hashing {
                inner: std::io::BufWriter::new(out),
                hasher: Sha256::new(),
                bytes: 0,
            };
            let created = glucosync_domain::Timestamp::from_utc_ms(now).to_rfc3339_utc();
            let sealer = format::Sealer::new(hashing, &key, "sqlite", schema_migration, created)?;
            let mut encoder = zstd::stream::write::Encoder::new(sealer, 3)?;
            // One thread: a backup shares the machine with the server it backs up.
            std::io::copy(&mut std::fs::File::open(&snapshot)?, &mut encoder)?;
            let hashing = encoder.finish()?.finish()?;
            let file = hashing.inner.into_inner().map_err(|e| e.into_error())?;
            file.finish()?;
            Ok((hashing.bytes, hex::encode(hashing.hasher.finalize())))
        })
        .await
        .and_then(|written| written)
    };
    // Removed at once, before its pages reach the disk, mostly: it was only ever read back.
    // (If the snapshot failed there is none; the working directory goes in any case.)
    let _ = std::fs::remove_file(&snapshot);
    // The checksum goes second: a backup without one is unfinished and never restored.
    let published = async {
        let written = written?;
        destination.put_file(&sealed, &name).await?;
        Ok::<_, BackupError>(written)
    }
    .await;
    let (bytes, sha256) = match published {
        Ok(written) => written,
        Err(e) => {
            // No half-written backup left in the destination directory.
            let _ = tokio::fs::remove_file(&sealed).await;
            return Err(e);
        }
    };
    destination
        .put_text(&format!("{name}.sha256"), format!("{sha256}  {name}\n"))
        .await?;
    let expired = apply_retention(&destination, config.backup_retention_days, now).await?;
    Ok(BackupReport {
        location: destination.location(&name),
        bytes,
        sha256,
        duration: started.elapsed(),
        expired,
    })
}

/// Deletes the backups (and their checksums) taken more than `days` before `now_ms`; keeps
/// everything else, including files that are not backups. Returns the deleted backups.
pub async fn apply_retention(
    destination: &Destination,
    days: u32,
    now_ms: i64,
) -> Result<Vec<String>, BackupError> {
    let cutoff = now_ms - i64::from(days) * DAY_MS;
    let mut expired: Vec<String> = destination
        .names()
        .await?
        .into_iter()
        .filter(|n| taken_at(n).is_some_and(|t| t < cutoff))
        .collect();
    expired.sort();
    for name in &expired {
        destination.delete(name).await?;
        destination.delete(&format!("{name}.sha256")).await?;
    }
    Ok(expired)
}

/// Restores the backup at `source` (a file, or `s3://bucket/key`) into the configured
/// database, which must not exist yet.
pub async fn restore(config: &Config, source: &str) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let key = key(config)?;
    let db = database_path(config)?;
    if db.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists: a restore goes into an empty data directory (move the current database \
             away first)",
            db.display()
        )));
    }
    let parent = db.parent().unwrap_or(Path::new(".")).to_owned();
    tokio::fs::create_dir_all(&parent).await?;
    let work = tempfile::Builder::new()
        .prefix("glucosync-restore")
        .tempdir_in(&parent)?;
    let (destination, name) = match source.rsplit_once('/') {
        Some((dir, name)) if source.starts_with("s3://") => {
            (Destination::parse(dir, config)?, name.to_owned())
        }
        _ => {
            let path = Path::new(source);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| BackupError::Config(format!("`{source}` names no file")))?;
            let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
            (Destination::Directory(dir), name)
        }
    };
    let name = name.as_str();
    let local = work.path().join("backup.gsb");
    let sums = work.path().join("backup.sha256");
    destination.fetch(name, &local).await?;
    destination
        .fetch(&format!("{name}.sha256"), &sums)
        .await
        .map_err(|_| {
            BackupError::Refused(format!(
                "{name}.sha256 is missing beside the backup: without it the backup is \
                 unfinished or not GlucoSync's"
            ))
        })?;
    let expected = std::fs::read_to_string(&sums)?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let restoring = work.path().join("restoring.db");
    let (header, actual) = {
        let (local, restoring) = (local.clone(), restoring.clone());
        tokio::task::spawn_blocking(move || -> Result<(format::Header, String), BackupError> {
            let mut hasher = Sha256::new();
            std::io::copy(&mut std::fs::File::open(&local)?, &mut hasher)?;
            let actual = hex::encode(hasher.finalize());
            if actual != expected {
                return Err(BackupError::Checksum { expected, actual });
            }
            let file = std::io::BufReader::new(std::fs::File::open(&local)?);
            let mut opener = format::Opener::new(file, &key)?;
            let header = opener.header.clone();
            if header.content != "sqlite" {
                return Err(BackupError::Refused(format!(
                    "this is a backup of kind {}, not an embedded database",
                    header.content
                )));
            }
            let mut decoder = zstd::stream::read::Decoder::new(&mut opener)?;
            let mut out = std::fs::File::create(&restoring)?;
            std::io::copy(&mut decoder, &mut out)?;
            out.sync_all()?;
            drop(out);
            glucosync_store_sqlite::integrity_check(&restoring)?;
            Ok((header, actual))
        })
        .await
        .map_err(|e| BackupError::Io(std::io::Error::other(e)))??
    };
    std::fs::rename(&restoring, &db)?;
    std::fs::File::open(&parent)?.sync_all()?;
    Ok(RestoreReport {
        database: db,
        created_at: header.created_at,
        schema_migration: header.schema_migration,
        sha256: actual,
        duration: started.elapsed(),
    })
}

const LEASE: &str = "backups";
/// After a failed scheduled backup, the next try.
const RETRY_MS: i64 = 10 * 60_000;

/// The built-in schedule: with `backup_output` set, one replica takes a backup every
/// `backup_interval_hours`. The lease is taken for the whole interval and not given back at
/// shutdown, so it also remembers when the last backup was taken: a restart (or another
/// replica) takes the next one when the interval since the last one is over, at once if
/// there was none. Outcomes go to the metrics and the log.
pub async fn run_schedule(state: crate::state::AppState, holder: String) {
    let Some(output) = state.config.backup_output.clone() else {
        return;
    };
    let interval_ms = i64::from(state.config.backup_interval_hours) * 3_600_000;
    let mut stopping = state.stopping.subscribe();
    let mut next_ms = crate::state::now_ms();
    loop {
        let now = crate::state::now_ms();
        if now >= next_ms {
            match state
                .store
                .try_lease(LEASE, &holder, interval_ms, now)
                .await
            {
                Ok(true) => {
                    next_ms = now + interval_ms;
                    if !scheduled_backup(&state, &output).await {
                        // Try again soon (here or on another replica), not an interval later.
                        let _ = state.store.release_lease(LEASE, &holder).await;
                        next_ms = crate::state::now_ms() + RETRY_MS;
                    }
                }
                Ok(false) => next_ms = now + 60_000,
                Err(e) => {
                    tracing::warn!(error = %e, "backup lease unavailable");
                    next_ms = now + 60_000;
                }
            }
        }
        let wait =
            Duration::from_millis((next_ms - crate::state::now_ms()).clamp(1_000, 60_000) as u64);
        let stopped = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            r = stopping.wait_for(|s| *s) => r.is_ok(),
        };
        if stopped {
            return;
        }
    }
}

/// Takes a scheduled backup; false when it failed.
async fn scheduled_backup(state: &crate::state::AppState, output: &str) -> bool {
    match backup(&state.config, output).await {
        Ok(report) => {
            let m = &state.metrics;
            m.backup_last_success_timestamp_seconds
                .set(crate::state::now_ms() / 1000);
            m.backup_size_bytes.set(report.bytes as i64);
            m.backup_duration_seconds.set(report.duration.as_secs_f64());
            tracing::info!(
                location = %report.location,
                bytes = report.bytes,
                duration_ms = report.duration.as_millis() as u64,
                expired = report.expired.len(),
                "scheduled backup done"
            );
            true
        }
        Err(e) => {
            state.metrics.backup_failures_total.inc();
            tracing::error!(error = %e, "scheduled backup failed");
            false
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub database: PathBuf,
    pub created_at: String,
    pub schema_migration: i64,
    pub sha256: String,
    pub duration: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_time_and_nothing_else_counts() {
        let name = backup_name(1_795_000_000_123);
        assert_eq!(name, "glucosync-backup-20261118T110640.123Z.gsb");
        assert_eq!(taken_at(&name), Some(1_795_000_000_123));
        assert_eq!(taken_at(&format!("{name}.sha256")), None);
        assert_eq!(taken_at("notes.txt"), None);
    }
}
