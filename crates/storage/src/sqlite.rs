//! The embedded durable backend: SQLite in WAL mode with group commit.
//!
//! Durability choice: `synchronous = FULL`. In WAL mode that fsyncs the WAL at every commit, so an acknowledged
//! write survives power loss, not only a process crash (`NORMAL` would only survive the latter). The cost of the
//! fsync is shared: one writer thread takes every write request waiting in its channel, applies them in one
//! transaction (one savepoint each, so one failing request does not fail its neighbours), commits once, and
//! only then answers each caller. Under 16 concurrent clients a single fsync acknowledges up to 16 writes.
//!
//! Readers use a small pool of connections; WAL lets them read while the writer commits.
//!
//! Checkpoints (copying the WAL back into the database file, with its own fsync) mostly run on a thread of their
//! own: SQLite's automatic checkpoint, inside a commit, made every thousandth page of writes wait for a full copy,
//! which showed as a p99 of hundreds of milliseconds under a steady write load. The automatic one still runs
//! (less often) because only a checkpoint between two commits lets the WAL start over; it finds nearly everything
//! already copied.
//! A second server on the same file is refused through an exclusive SQLite lock on `<path>.lock`, which the OS
//! releases if the holder dies, so a crashed server never leaves a stale lock behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use crate::{Storage, StorageError, TxnOp, check_key, prefix_upper_bound};

/// `PRAGMA application_id` of a leakstop database ("LKST").
const APPLICATION_ID: i32 = 0x4c4b_5354;
/// Schema version in `PRAGMA user_version`.
const SCHEMA_VERSION: i32 = 1;
/// Most write requests folded into one commit.
const MAX_BATCH: usize = 256;
/// Idle read connections kept open.
const READ_POOL: usize = 8;

#[derive(Default)]
struct Stats {
    commits: AtomicU64,
    requests: AtomicU64,
}

/// Group-commit counters since open: how many write requests were acknowledged by how many commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub commits: u64,
    pub requests: u64,
}

struct WriteRequest {
    ops: Vec<TxnOp>,
    reply: Sender<Result<(), StorageError>>,
}

/// SQLite-backed durable storage. See the module docs for the durability and concurrency model.
pub struct SqliteStorage {
    path: PathBuf,
    writer: Option<Sender<WriteRequest>>,
    writer_thread: Option<JoinHandle<()>>,
    /// Dropping it stops the checkpointer.
    checkpoint_stop: Option<Sender<()>>,
    checkpoint_thread: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    stats: Arc<Stats>,
    // Held for the lifetime of the storage; dropping it releases the single-server lock.
    _lock: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage").field("path", &self.path).finish()
    }
}

fn open_err(path: &Path, e: impl std::fmt::Display) -> StorageError {
    StorageError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn not_a_db(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::NotADatabase))
}

impl SqliteStorage {
    /// Open (or create) the database at `path`.
    ///
    /// Errors: [`StorageError::Locked`] when another server holds it, [`StorageError::NotLeakstop`] when the file
    /// is not a SQLite database or is one written by something else.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStorage, StorageError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(open_err(
                &path,
                format!("directory {} does not exist", parent.display()),
            ));
        }
        create_private(&path)?;
        let lock = acquire_lock(&path)?;
        let writer = Connection::open(&path).map_err(|e| open_err(&path, e))?;
        init_schema(&writer, &path)?;
        writer
            .execute_batch(
                "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA cache_size = -16000; \
                 PRAGMA wal_autocheckpoint = 4096;",
            )
            .map_err(|e| open_err(&path, e))?;
        let checkpointer = Connection::open(&path).map_err(|e| open_err(&path, e))?;
        checkpointer
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| open_err(&path, e))?;
        let first_reader = open_reader(&path)?;

        let (tx, rx) = crossbeam_channel::unbounded::<WriteRequest>();
        let thread_path = path.clone();
        let stats = Arc::new(Stats::default());
        let thread_stats = Arc::clone(&stats);
        let writer_thread = std::thread::Builder::new()
            .name("leakstop-storage-writer".into())
            .spawn(move || writer_loop(writer, rx, &thread_path, &thread_stats))
            .map_err(|e| open_err(&path, format!("cannot start writer thread: {e}")))?;
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let cp_path = path.clone();
        let cp_stats = Arc::clone(&stats);
        let checkpoint_thread = std::thread::Builder::new()
            .name("leakstop-storage-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stop_rx, &cp_path, &cp_stats))
            .map_err(|e| open_err(&path, format!("cannot start checkpoint thread: {e}")))?;
        tracing::debug!(path = %path.display(), "sqlite storage opened");
        Ok(SqliteStorage {
            path,
            writer: Some(tx),
            writer_thread: Some(writer_thread),
            checkpoint_stop: Some(stop_tx),
            checkpoint_thread: Some(checkpoint_thread),
            readers: Mutex::new(vec![first_reader]),
            stats,
            _lock: Mutex::new(lock),
        })
    }

    /// Group-commit counters (for metrics and tests): `requests / commits` is the average batch size.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            requests: self.stats.requests.load(Ordering::Relaxed),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn submit(&self, ops: Vec<TxnOp>) -> Result<(), StorageError> {
        let (reply, wait) = crossbeam_channel::bounded(1);
        let writer = self.writer.as_ref().ok_or(StorageError::WriterStopped)?;
        writer
            .send(WriteRequest { ops, reply })
            .map_err(|_| StorageError::WriterStopped)?;
        wait.recv().map_err(|_| StorageError::WriterStopped)?
    }

    fn with_reader<T>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        let conn = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let result = f(&conn).map_err(|e| StorageError::Backend {
            op,
            key: key.to_owned(),
            reason: e.to_string(),
        });
        let mut pool = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < READ_POOL {
            pool.push(conn);
        }
        result
    }
}

impl Drop for SqliteStorage {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish queued work and exit; join so the file is closed cleanly.
        self.writer.take();
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
        // The checkpointer's last pass runs after the writer's last commit, so the WAL is folded back on close.
        self.checkpoint_stop.take();
        if let Some(t) = self.checkpoint_thread.take() {
            let _ = t.join();
        }
    }
}

/// Create a missing database file readable by its owner only (SQLite gives `-wal`/`-shm` the same mode).
fn create_private(path: &Path) -> Result<(), StorageError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(open_err(path, e)),
    }
}

fn acquire_lock(path: &Path) -> Result<Connection, StorageError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let locked = || StorageError::Locked {
        path: path.display().to_string(),
        lock: lock_path.display().to_string(),
    };
    let conn = Connection::open(&lock_path).map_err(|e| open_err(&lock_path, e))?;
    // Fail at once when another server holds the lock instead of waiting for it.
    conn.busy_timeout(Duration::ZERO).map_err(|e| open_err(&lock_path, e))?;
    // Exclusive locking mode keeps the lock taken by the first write until the connection closes.
    let r = conn.execute_batch(
        "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = DELETE; \
         BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS holder (pid INTEGER); DELETE FROM holder; COMMIT;",
    );
    match r {
        Ok(()) => {}
        Err(e) if is_busy(&e) => return Err(locked()),
        Err(e) => return Err(open_err(&lock_path, e)),
    }
    conn.execute("INSERT INTO holder (pid) VALUES (?1)", params![std::process::id()])
        .map_err(|e| if is_busy(&e) { locked() } else { open_err(&lock_path, e) })?;
    Ok(conn)
}

fn init_schema(conn: &Connection, path: &Path) -> Result<(), StorageError> {
    let not_leakstop = |reason: String| StorageError::NotLeakstop {
        path: path.display().to_string(),
        reason,
    };
    let map = |e: rusqlite::Error| {
        if not_a_db(&e) {
            not_leakstop("not a SQLite database".into())
        } else {
            open_err(path, e)
        }
    };
    conn.busy_timeout(Duration::from_secs(5)).map_err(map)?;
    let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(map)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(map)?;
    if app_id == 0 && tables == 0 {
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             BEGIN;
             CREATE TABLE kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
             PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {SCHEMA_VERSION};
             COMMIT;"
        ))
        .map_err(map)?;
    } else if app_id != APPLICATION_ID {
        return Err(not_leakstop(format!(
            "SQLite database with application_id {app_id:#x}, expected {APPLICATION_ID:#x}"
        )));
    } else {
        let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(map)?;
        if version != SCHEMA_VERSION {
            return Err(not_leakstop(format!(
                "schema version {version}; this build reads version {SCHEMA_VERSION}"
            )));
        }
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(map)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_err(path, format!("could not switch to WAL mode (got {mode})")));
    }
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| open_err(path, e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| open_err(path, e))?;
    conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -8000;")
        .map_err(|e| open_err(path, e))?;
    Ok(conn)
}

/// How often the checkpointer looks for new commits to fold into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Folds committed WAL frames into the database file whenever commits happened since the last pass. `PASSIVE`
/// never waits for (or blocks) the writer or readers; frames a reader still needs are left for a later pass.
fn checkpoint_loop(conn: Connection, stop: Receiver<()>, path: &Path, stats: &Stats) {
    let mut seen = 0;
    loop {
        let stopping = matches!(
            stop.recv_timeout(CHECKPOINT_EVERY),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        let commits = stats.commits.load(Ordering::Relaxed);
        if commits != seen {
            seen = commits;
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(path = %path.display(), error = %e, "WAL checkpoint failed; will retry");
            }
        }
        if stopping {
            return;
        }
    }
}

fn writer_loop(mut conn: Connection, rx: Receiver<WriteRequest>, path: &Path, stats: &Stats) {
    let mut batch: Vec<WriteRequest> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let results = commit_batch(&mut conn, &batch);
        match results {
            Ok(per_request) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.requests.fetch_add(batch.len() as u64, Ordering::Relaxed);
                for (req, res) in batch.drain(..).zip(per_request) {
                    let _ = req.reply.send(res);
                }
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "storage commit failed");
                for req in batch.drain(..) {
                    let _ = req.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One transaction for the whole batch; each request in its own savepoint. Returns per-request results, or the
/// error that made the whole commit fail (then nothing in the batch was written).
fn commit_batch(conn: &mut Connection, batch: &[WriteRequest]) -> Result<Vec<Result<(), StorageError>>, StorageError> {
    let batch_err = |e: rusqlite::Error| StorageError::Commit { reason: e.to_string() };
    let mut tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(batch_err)?;
    let mut results = Vec::with_capacity(batch.len());
    for req in batch {
        let mut sp = tx.savepoint().map_err(batch_err)?;
        let res = apply_ops(&sp, &req.ops);
        if res.is_ok() {
            sp.commit().map_err(batch_err)?;
        } else {
            sp.rollback().map_err(batch_err)?;
        }
        results.push(res);
    }
    tx.commit().map_err(batch_err)?;
    Ok(results)
}

fn apply_ops(conn: &Connection, ops: &[TxnOp]) -> Result<(), StorageError> {
    let mut put = conn
        .prepare_cached(
            "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .map_err(|e| StorageError::Commit { reason: e.to_string() })?;
    let mut del = conn
        .prepare_cached("DELETE FROM kv WHERE key = ?1")
        .map_err(|e| StorageError::Commit { reason: e.to_string() })?;
    for op in ops {
        match op {
            TxnOp::Put(k, v) => put.execute(params![k, v]).map_err(|e| StorageError::Backend {
                op: "put",
                key: k.clone(),
                reason: e.to_string(),
            })?,
            TxnOp::Delete(k) => del.execute(params![k]).map_err(|e| StorageError::Backend {
                op: "delete",
                key: k.clone(),
                reason: e.to_string(),
            })?,
        };
    }
    Ok(())
}

/// Page size of the listing scan.
const LIST_PAGE: i64 = 512;

/// Immediate children of `prefix`, skipping over each sub-folder's contents with one index seek instead of
/// reading every key below it (a folder with a million leases costs one row, not a million).
fn list_children(c: &Connection, prefix: &str) -> rusqlite::Result<Vec<String>> {
    let upper = prefix_upper_bound(prefix);
    let mut st = match upper {
        Some(_) => c.prepare_cached("SELECT key FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3")?,
        None => c.prepare_cached("SELECT key FROM kv WHERE key >= ?1 AND ?2 IS NULL ORDER BY key LIMIT ?3")?,
    };
    let mut out: Vec<String> = Vec::new();
    let mut start = prefix.to_owned();
    'pages: loop {
        let keys: Vec<String> = st
            .query_map(params![start, upper, LIST_PAGE], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let full_page = keys.len() as i64 == LIST_PAGE;
        for key in &keys {
            let rest = &key[prefix.len()..];
            if let Some(i) = rest.find('/') {
                let folder = &rest[..=i];
                out.push(folder.to_owned());
                // Continue after everything under this folder.
                match prefix_upper_bound(&format!("{prefix}{folder}")) {
                    Some(next) => start = next,
                    None => break 'pages,
                }
                continue 'pages;
            }
            if !rest.is_empty() {
                out.push(rest.to_owned());
            }
        }
        match keys.last() {
            // NUL is not allowed in keys, so `last + NUL` is the next possible key.
            Some(last) if full_page => start = format!("{last}\0"),
            _ => break,
        }
    }
    out.dedup();
    Ok(out)
}

impl Storage for SqliteStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        self.with_reader("get", key, |c| {
            c.prepare_cached("SELECT value FROM kv WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()
        })
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        self.submit(vec![TxnOp::Put(key.to_owned(), value.to_vec())])
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.submit(vec![TxnOp::Delete(key.to_owned())])
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.with_reader("list", prefix, |c| list_children(c, prefix))
    }

    fn transaction(&self, ops: &[TxnOp]) -> Result<(), StorageError> {
        for op in ops {
            check_key(op.key())?;
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.submit(ops.to_vec())
    }
}
