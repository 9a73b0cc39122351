//! The concurrency model of the embedded store.
//!
//! SQLite allows one writer at a time, and a durable commit costs an fsync. So every write goes
//! through one writer thread that takes all writes queued at that moment, runs each inside its
//! own savepoint of one transaction, and commits them together: one fsync acknowledges many
//! writes (group commit). A write's caller is answered only after the commit returned, so an
//! `Ok` is durable. Reads run on a small pool of read-only connections, which WAL mode lets
//! proceed while the writer works: small reads on the calling thread, reads that may scan many
//! rows on the blocking thread pool.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use glucosync_store::StoreError;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::Synchronous;

/// Answers a write's caller once the outcome of the commit is known.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write: runs inside a savepoint (or learns why it cannot run) and says whether it succeeded.
type WriteJob = Box<dyn FnOnce(Result<&Connection, StoreError>) -> (bool, Reply) + Send>;

/// Most writes committed together; bounds the latency a large group adds to its first member.
const MAX_GROUP: usize = 512;
/// Writes that may wait for the writer before callers wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 4096;
/// How long a write of derived data (`write_with_next`) waits for another write to share its
/// commit before it is committed on its own.
const RIDE_ALONG_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Writes waiting to be committed with the next group (`write_with_next`).
type RidingAlong = Arc<Mutex<Vec<WriteJob>>>;

pub(crate) struct Engine {
    sender: Mutex<Option<mpsc::Sender<WriteJob>>>,
    riding_along: RidingAlong,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
    reader_count: usize,
    readers_busy: AtomicU64,
    path: std::path::PathBuf,
}

pub(crate) fn configure(conn: &Connection, sync: Synchronous) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 16 MiB page cache per connection (negative = KiB).
    conn.pragma_update(None, "cache_size", -16_384)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "cache_size", -16_384)?;
    Ok(conn)
}

pub(crate) fn sql_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => StoreError::Conflict(e.to_string()),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen => {
                StoreError::Unavailable(e.to_string())
            }
            ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::ReadOnly => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Internal(e.to_string()),
        },
        _ => StoreError::Internal(e.to_string()),
    }
}

impl Engine {
    pub(crate) fn start(
        writer: Connection,
        path: &Path,
        readers: usize,
    ) -> Result<Arc<Self>, StoreError> {
        let (tx, rx) = mpsc::channel::<WriteJob>(QUEUE_DEPTH);
        let riding_along = RidingAlong::default();
        let writer_riding_along = riding_along.clone();
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx, writer_riding_along))
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        let mut pool = Vec::with_capacity(readers);
        for _ in 0..readers {
            pool.push(open_reader(path).map_err(sql_err)?);
        }
        Ok(Arc::new(Engine {
            sender: Mutex::new(Some(tx)),
            riding_along,
            writer: Mutex::new(Some(handle)),
            readers: Mutex::new(pool),
            reader_permits: Semaphore::new(readers),
            reader_count: readers,
            readers_busy: AtomicU64::new(0),
            path: path.to_path_buf(),
        }))
    }

    /// Runs `f` in the writer's transaction; returns once its group has committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, rx) = write_job(f);
        self.sender()?
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Internal("a write failed without an answer".into()))?
    }

    /// A write of derived data (forecasts) that rides along with the next group of writes
    /// instead of paying for a commit (and an fsync) of its own: at any load it shares the
    /// next upload's commit; without other writes it is committed after `RIDE_ALONG_WAIT`.
    /// Returns once committed, like `write`.
    pub(crate) async fn write_with_next<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let sender = self.sender()?;
        let (job, rx) = write_job(f);
        let first = {
            let mut riding = self
                .riding_along
                .lock()
                .map_err(|_| StoreError::Internal("writer lock poisoned".into()))?;
            riding.push(job);
            riding.len() == 1
        };
        if first {
            // Nobody else may write soon: an empty job wakes the writer, whose group takes
            // everything riding along. The timer holds a weak sender: it must not keep the
            // channel open past `close` (the writer's last group takes what rides along).
            let sender = sender.downgrade();
            tokio::spawn(async move {
                tokio::time::sleep(RIDE_ALONG_WAIT).await;
                if let Some(sender) = sender.upgrade() {
                    let nudge: WriteJob = Box::new(|_| (true, Box::new(|_| {})));
                    let _ = sender.send(nudge).await;
                }
            });
        }
        rx.await
            .map_err(|_| StoreError::Internal("a write failed without an answer".into()))?
    }

    fn sender(&self) -> Result<mpsc::Sender<WriteJob>, StoreError> {
        self.sender
            .lock()
            .map_err(|_| StoreError::Internal("writer lock poisoned".into()))?
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))
    }

    /// Runs a small read (a lookup by key, a bounded number of rows) on a pooled read-only
    /// connection, on the caller's thread when a connection is free: such a read takes
    /// microseconds, less than handing it to another thread and waking the caller again costs
    /// (two context switches, more on a loaded machine). Reads that may scan many rows use
    /// `read_large`.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // No permit: a small read takes an idle connection or none. (Waiting for a permit
        // would queue it behind large reads, and tokio's semaphore is fair: while anyone
        // waits, no permit is handed out to `try_acquire`, so one queued read would send every
        // later one to the thread pool.)
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        let Some(conn) = pooled else {
            return self.read_large(f).await;
        };
        self.readers_busy.fetch_add(1, Ordering::Relaxed);
        let out = catch_unwind(AssertUnwindSafe(|| f(&conn)));
        self.readers_busy.fetch_sub(1, Ordering::Relaxed);
        match out {
            Ok(out) => {
                self.put_back(conn);
                out
            }
            // The connection is dropped; `read_large` opens a new one when needed.
            Err(_) => Err(StoreError::Internal("a read panicked".into())),
        }
    }

    /// Returns a reader to the pool, unless the pool is full (`read_large` opened one more
    /// while small reads held the others).
    fn put_back(&self, conn: Connection) {
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < self.reader_count {
                pool.push(conn);
            }
        }
    }

    /// Runs `f` on a pooled read-only connection on the blocking thread pool: for reads that
    /// may scan many rows (ranges of readings, report periods, logs), which would otherwise
    /// hold up every other request on the caller's worker thread.
    pub(crate) async fn read_large<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .reader_permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        let pooled = self
            .readers
            .lock()
            .map_err(|_| StoreError::Internal("reader pool poisoned".into()))?
            .pop();
        let conn = match pooled {
            Some(c) => c,
            // Small reads hold the others for the moment, or a reader was lost to a panic.
            None => open_reader(&self.path).map_err(sql_err)?,
        };
        self.readers_busy.fetch_add(1, Ordering::Relaxed);
        let joined = tokio::task::spawn_blocking(move || {
            let out = f(&conn);
            (conn, out)
        })
        .await;
        self.readers_busy.fetch_sub(1, Ordering::Relaxed);
        let (conn, out) =
            joined.map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?;
        self.put_back(conn);
        out
    }

    pub(crate) fn stats(&self) -> glucosync_store::PoolStats {
        let queued = self
            .sender
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|s| (s.max_capacity() - s.capacity()) as u64))
            .unwrap_or(0);
        glucosync_store::PoolStats {
            connections: self.reader_count as u64 + 1,
            in_use: self.readers_busy.load(Ordering::Relaxed),
            queued_writes: queued,
        }
    }

    /// Stops taking writes, lets the writer finish every queued one, and waits for it.
    pub(crate) fn close(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        self.reader_permits.close();
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// `f` as a write job, and where its result will arrive.
fn write_job<T, F>(f: F) -> (WriteJob, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
    let job: WriteJob = Box::new(move |conn| match conn {
        Err(e) => (false, Box::new(move |_| drop(tx.send(Err(e))))),
        Ok(conn) => {
            let result = f(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (ok, reply)
        }
    });
    (job, rx)
}

fn take_riding_along(riding_along: &RidingAlong, group: &mut Vec<WriteJob>) {
    if let Ok(mut riding) = riding_along.lock() {
        group.append(&mut riding);
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<WriteJob>, riding_along: RidingAlong) {
    let mut group: Vec<WriteJob> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        take_riding_along(&riding_along, &mut group);
        commit_group(&conn, &mut group);
    }
    // The channel closed: every sender is gone and everything queued was written (what
    // still rides along too).
    take_riding_along(&riding_along, &mut group);
    if !group.is_empty() {
        commit_group(&conn, &mut group);
    }
    checkpoint_on_close(&conn);
    tracing::debug!("sqlite writer stopped");
}

/// Leaves the WAL checkpointed (the database file alone is then whole) and, when nobody else
/// uses the database, empty. A CLI command run beside a live server (a backup, an import)
/// closes its store too, so this must never block that server's writer: a PASSIVE checkpoint
/// never does; only if it copied everything is the WAL truncated, without waiting for anyone
/// (a TRUNCATE checkpoint that waited would hold the server's commits meanwhile).
fn checkpoint_on_close(conn: &Connection) {
    let _ = conn.busy_timeout(std::time::Duration::ZERO);
    let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    });
    if let Ok((0, wal_frames, checkpointed)) = passive {
        if wal_frames == checkpointed {
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        }
    }
}

/// Runs one statement without parameters from the statement cache: the transaction and
/// savepoint statements run for every write, and parsing them each time showed in profiles.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn commit_group(conn: &Connection, group: &mut Vec<WriteJob>) {
    if let Err(e) = run_cached(conn, "BEGIN IMMEDIATE") {
        let err = sql_err(e);
        for job in group.drain(..) {
            let (_, reply) = job(Err(err.clone()));
            reply(Err(err.clone()));
        }
        return;
    }
    let mut replies: Vec<Reply> = Vec::with_capacity(group.len());
    for job in group.drain(..) {
        if let Err(e) = run_cached(conn, "SAVEPOINT write_job") {
            let (_, reply) = job(Err(sql_err(e)));
            replies.push(reply);
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| job(Ok(conn)))) {
            Ok((true, reply)) => {
                let _ = run_cached(conn, "RELEASE write_job");
                replies.push(reply);
            }
            Ok((false, reply)) => {
                let _ = conn.execute_batch("ROLLBACK TO write_job; RELEASE write_job");
                replies.push(reply);
            }
            Err(_) => {
                // The job's reply sender was dropped with it; its caller gets an error.
                tracing::error!("a write panicked; its changes were rolled back");
                let _ = conn.execute_batch("ROLLBACK TO write_job; RELEASE write_job");
            }
        }
    }
    let commit = run_cached(conn, "COMMIT").map_err(sql_err);
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply(commit.clone());
    }
}
