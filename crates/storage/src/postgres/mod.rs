//! The shared backend: PostgreSQL, for several server nodes with one active at a time.
//!
//! # Layout
//! One table `(key TEXT COLLATE "C" PRIMARY KEY, value BYTEA)`: the `C` collation orders keys by their UTF-8
//! bytes, which is code-point order, so listings sort exactly as on SQLite and a prefix listing is a range scan
//! on the primary key (`key >= prefix AND key < upper_bound(prefix)`). Beside it `<table>_migrations` records
//! which schema versions were applied; nodes starting at once serialise their migrations on a transaction-level
//! advisory lock. With `ha_enabled`, the `<ha_table>` row and the `<ha_table>_epoch` sequence hold the leader
//! (see [`ha`]).
//!
//! # Threads
//! The [`Storage`] trait is synchronous and called from async handlers, where blocking on a future of the
//! caller's runtime would panic or stall it. So `max_connections` threads each own one connection and a private
//! current-thread runtime that drives it; callers hand requests over a channel and wait on a reply channel.
//!
//! # Outages
//! A connection that fails is dropped and its thread reconnects in the background with capped exponential
//! backoff (100 ms doubling to 5 s). A request that finds its connection gone tries once to connect at once, so
//! the first request after PostgreSQL is back succeeds; while PostgreSQL is down, requests fail with
//! [`StorageError::Unavailable`] naming `user@host:port/database` (never the password). A transaction whose
//! connection breaks before `COMMIT` is sent was rolled back by the server and is retried once on a fresh
//! connection; one that breaks during `COMMIT` may or may not have landed and fails with
//! [`StorageError::Commit`] saying so.
//!
//! # Durability and ordering
//! Every `put`/`delete`/`transaction` is one PostgreSQL transaction, acknowledged after `COMMIT` returns (so as
//! durable as the server's `synchronous_commit` / synchronous replication make it). Reads are single statements
//! at `READ COMMITTED`, so they see every write acknowledged before they started.

mod config;
pub mod ha;
mod tls;

pub use config::{ConnectionUrl, PostgresConfig, SslMode, redact};
pub use ha::PgHaLock;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio_postgres::{Client, Statement};

use crate::{LeaderInfo, Storage, StorageError, TxnOp, check_key, immediate_children, prefix_upper_bound};
use config::Resolved;
use ha::Fence;

/// Schema version this build writes; see [`migrate`].
const SCHEMA_VERSION: i32 = 1;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// PostgreSQL-backed storage. See the module docs.
pub struct PostgresStorage {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("target", &self.shared.cfg.target)
            .field("table", &self.shared.cfg.table.plain)
            .finish()
    }
}

/// What every worker thread needs.
pub(crate) struct Shared {
    pub(crate) cfg: Resolved,
    /// `Some` with HA on: writes must prove the lock (see [`ha`]).
    pub(crate) fence: Option<Arc<Fence>>,
    sql: Sql,
    /// The advisory lock key of the leader lock.
    pub(crate) lock_key: i64,
}

/// The statements, with the table names filled in.
struct Sql {
    get: String,
    put: String,
    delete: String,
    range: String,
    from: String,
    all: String,
    fence: String,
    leader: String,
}

impl Sql {
    fn new(cfg: &Resolved) -> Sql {
        let t = &cfg.table.quoted;
        let h = &cfg.ha_table.quoted;
        Sql {
            get: format!("SELECT value FROM {t} WHERE key = $1"),
            put: format!(
                "INSERT INTO {t} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            range: format!("SELECT key FROM {t} WHERE key >= $1 AND key < $2 ORDER BY key"),
            from: format!("SELECT key FROM {t} WHERE key >= $1 ORDER BY key"),
            all: format!("SELECT key FROM {t} ORDER BY key"),
            // FOR SHARE: a takeover's epoch bump waits for this transaction, so no write of the old leader can
            // commit after the new leader has started.
            fence: format!("SELECT 1 FROM {h} WHERE id = 1 AND node_id = $1 AND epoch = $2 FOR SHARE"),
            // The row alone may belong to a node that died: it is the leader only while its session holds the
            // advisory lock.
            leader: format!(
                "SELECT node_id, api_addr, since, epoch FROM {h} h WHERE id = 1 AND EXISTS (\
                 SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.pid = h.pid \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1)"
            ),
        }
    }
}

enum Op {
    Get(String),
    List(String),
    Txn(Vec<TxnOp>),
    Leader,
    Migrate { create: bool, ha: bool },
}

enum Reply {
    Value(Option<Vec<u8>>),
    Keys(Vec<String>),
    Done,
    Leader(Option<LeaderInfo>),
}

struct Job {
    op: Op,
    reply: Sender<Result<Reply, StorageError>>,
}

/// One live connection and its prepared statements (prepared on first use: before the first migration the table
/// may not exist yet).
struct Conn {
    client: Client,
    stmts: Option<Stmts>,
}

#[derive(Clone)]
struct Stmts {
    get: Statement,
    put: Statement,
    delete: Statement,
    range: Statement,
    from: Statement,
    all: Statement,
}

impl PostgresStorage {
    /// Connect, create or migrate the tables (unless `skip_create_table`), and start the connection threads.
    /// With `ha_enabled` and no lock (this constructor), every write is refused; use [`PostgresStorage::open_ha`].
    pub fn open(cfg: &PostgresConfig) -> Result<PostgresStorage, StorageError> {
        let resolved = cfg.resolve()?;
        let fence = cfg.ha_enabled.then(|| Arc::new(Fence::default()));
        Self::start(resolved, fence, cfg)
    }

    /// The storage and its leader lock, sharing one fence: writes succeed only while the lock is held.
    pub fn open_ha(cfg: &PostgresConfig) -> Result<(PostgresStorage, PgHaLock), StorageError> {
        if !cfg.ha_enabled {
            return Err(StorageError::Config(
                "open_ha on a PostgreSQL storage without `ha_enabled = true`".into(),
            ));
        }
        let resolved = cfg.resolve()?;
        let fence = Arc::new(Fence::default());
        let storage = Self::start(resolved, Some(Arc::clone(&fence)), cfg)?;
        let lock = PgHaLock::start(Arc::clone(&storage.shared))?;
        Ok((storage, lock))
    }

    fn start(
        cfg: Resolved,
        fence: Option<Arc<Fence>>,
        user_cfg: &PostgresConfig,
    ) -> Result<PostgresStorage, StorageError> {
        let shared = Arc::new(Shared {
            sql: Sql::new(&cfg),
            lock_key: ha::lock_key(&cfg.ha_table.plain),
            cfg,
            fence,
        });
        let storage = Self::with_shared(shared, user_cfg.max_connections)?;
        // The first request also proves the server is reachable and the credentials work, so a bad config fails
        // at start rather than at the first write.
        storage.call(
            "open",
            Op::Migrate {
                create: !user_cfg.skip_create_table,
                ha: user_cfg.ha_enabled,
            },
        )?;
        Ok(storage)
    }

    /// Start `connections` connection threads (each connects in the background).
    fn with_shared(shared: Arc<Shared>, connections: usize) -> Result<PostgresStorage, StorageError> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut storage = PostgresStorage {
            jobs: Some(tx),
            workers: Vec::new(),
            shared: Arc::clone(&shared),
        };
        for i in 0..connections {
            let (shared, rx) = (Arc::clone(&shared), rx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("leakstop-pg-{i}"))
                .spawn(move || worker(&shared, &rx))
                .map_err(|e| StorageError::Config(format!("cannot start a PostgreSQL connection thread: {e}")))?;
            storage.workers.push(handle);
        }
        Ok(storage)
    }

    /// `user@host:port/database`, for messages.
    pub fn target(&self) -> &str {
        &self.shared.cfg.target
    }

    fn call(&self, what: &'static str, op: Op) -> Result<Reply, StorageError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let jobs = self.jobs.as_ref().ok_or(StorageError::WriterStopped)?;
        jobs.send(Job { op, reply }).map_err(|_| StorageError::WriterStopped)?;
        rx.recv().map_err(|_| StorageError::Unavailable {
            op: what,
            target: self.shared.cfg.target.clone(),
            reason: "the connection thread stopped".into(),
        })?
    }

    /// The active node according to the database (row and live advisory lock), through the pool.
    pub(crate) fn leader(&self) -> Result<Option<LeaderInfo>, StorageError> {
        match self.call("leader", Op::Leader)? {
            Reply::Leader(l) => Ok(l),
            _ => unreachable!("leader answers Leader"),
        }
    }
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Storage for PostgresStorage {
    #[tracing::instrument(level = "trace", skip_all)]
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        match self.call("get", Op::Get(key.to_owned()))? {
            Reply::Value(v) => Ok(v),
            _ => unreachable!("get answers Value"),
        }
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.transaction(&[TxnOp::Put(key.to_owned(), value.to_owned())])
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.transaction(&[TxnOp::Delete(key.to_owned())])
    }

    #[tracing::instrument(level = "trace", skip_all)]
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        match self.call("list", Op::List(prefix.to_owned()))? {
            Reply::Keys(keys) => Ok(keys),
            _ => unreachable!("list answers Keys"),
        }
    }

    #[tracing::instrument(level = "trace", skip_all)]
    fn transaction(&self, ops: &[TxnOp]) -> Result<(), StorageError> {
        for op in ops {
            check_key(op.key())?;
        }
        if let Some(fence) = &self.shared.fence
            && fence.current().is_none()
        {
            return Err(StorageError::NotLeader);
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.call("write", Op::Txn(ops.to_vec())).map(|_| ())
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            tracing::error!(error = %e, "cannot start a runtime for a PostgreSQL connection thread");
            None
        }
    }
}

/// One connection thread: serve requests; while disconnected and idle, reconnect with backoff.
fn worker(shared: &Shared, rx: &Receiver<Job>) {
    let Some(rt) = runtime() else { return };
    let mut conn: Option<Conn> = None;
    let mut backoff = BACKOFF_START;
    let mut next_attempt = Instant::now();
    loop {
        let job = if conn.is_some() {
            match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(next_attempt.saturating_duration_since(Instant::now())) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        match job {
            Some(job) => {
                let result = rt.block_on(serve(shared, &mut conn, job.op));
                let _ = job.reply.send(result);
            }
            None => match rt.block_on(Conn::open(shared)) {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::debug!(target = %shared.cfg.target, error = %e, "PostgreSQL reconnect failed"),
            },
        }
        if conn.is_some() {
            backoff = BACKOFF_START;
        } else if Instant::now() >= next_attempt {
            next_attempt = Instant::now() + backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// What went wrong running one request on one connection.
enum Failure {
    /// The connection is gone. `retry`: nothing can have been committed, so the request may run again.
    Lost {
        retry: bool,
        reason: String,
    },
    Failed(StorageError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Lost { reason, .. } => f.write_str(reason),
            Failure::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Failure {
        Failure::Failed(e)
    }
}

/// Whether an error means the connection is unusable (closed, I/O, server shutting down or terminating us).
pub(crate) fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 08xxx connection exceptions.
        Some(db) => {
            let code = db.code().code();
            code.starts_with("57P") || code.starts_with("08")
        }
        None => true,
    }
}

/// A driver error as text, with the server's message when there is one (never parameters or values).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

async fn serve(shared: &Shared, conn: &mut Option<Conn>, op: Op) -> Result<Reply, StorageError> {
    let what = match &op {
        Op::Get(_) => "get",
        Op::List(_) => "list",
        Op::Txn(_) => "write",
        Op::Leader => "leader lookup",
        Op::Migrate { .. } => "open",
    };
    for attempt in 0..2 {
        if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            *conn = None;
        }
        if conn.is_none() {
            match Conn::open(shared).await {
                Ok(c) => *conn = Some(c),
                Err(Failure::Lost { reason, .. }) => {
                    return Err(StorageError::Unavailable {
                        op: what,
                        target: shared.cfg.target.clone(),
                        reason,
                    });
                }
                Err(Failure::Failed(e)) => return Err(e),
            }
        }
        let c = conn.as_mut().expect("connected above");
        match run(shared, c, &op).await {
            Ok(reply) => return Ok(reply),
            Err(Failure::Failed(e)) => return Err(e),
            Err(Failure::Lost { retry, reason }) => {
                *conn = None;
                if retry && attempt == 0 {
                    tracing::info!(target = %shared.cfg.target, %reason, "PostgreSQL connection lost; retrying on a new one");
                    continue;
                }
                if !retry {
                    return Err(StorageError::Commit {
                        reason: format!(
                            "the connection to PostgreSQL at {} broke during COMMIT ({reason}); the write may or may \
                             not have been saved: read it back before retrying",
                            shared.cfg.target
                        ),
                    });
                }
                return Err(StorageError::Unavailable {
                    op: what,
                    target: shared.cfg.target.clone(),
                    reason,
                });
            }
        }
    }
    unreachable!("the loop returns on its second attempt")
}

impl Conn {
    async fn open(shared: &Shared) -> Result<Conn, Failure> {
        let client = tls::connect(&shared.cfg, &shared.cfg.pg).await?;
        Ok(Conn { client, stmts: None })
    }

    async fn stmts(&mut self, shared: &Shared) -> Result<Stmts, Failure> {
        if let Some(s) = &self.stmts {
            return Ok(s.clone());
        }
        let (sql, client) = (&shared.sql, &self.client);
        let prepared = async {
            Ok::<_, tokio_postgres::Error>(Stmts {
                get: client.prepare(&sql.get).await?,
                put: client.prepare(&sql.put).await?,
                delete: client.prepare(&sql.delete).await?,
                range: client.prepare(&sql.range).await?,
                from: client.prepare(&sql.from).await?,
                all: client.prepare(&sql.all).await?,
            })
        }
        .await;
        match prepared {
            Ok(s) => {
                self.stmts = Some(s.clone());
                Ok(s)
            }
            Err(e) if connection_lost(&e) => Err(Failure::Lost {
                retry: true,
                reason: describe(&e),
            }),
            Err(e) => Err(Failure::Failed(StorageError::Config(format!(
                "table {} in PostgreSQL at {} is not usable: {}",
                shared.cfg.table.plain,
                shared.cfg.target,
                describe(&e)
            )))),
        }
    }
}

async fn run(shared: &Shared, c: &mut Conn, op: &Op) -> Result<Reply, Failure> {
    let err = |what: &'static str, key: &str| {
        let key = key.to_owned();
        move |e: tokio_postgres::Error| -> Failure {
            if connection_lost(&e) {
                Failure::Lost {
                    retry: true,
                    reason: describe(&e),
                }
            } else {
                Failure::Failed(StorageError::Backend {
                    op: what,
                    key,
                    reason: describe(&e),
                })
            }
        }
    };
    match op {
        Op::Get(key) => {
            let st = c.stmts(shared).await?;
            let row = c.client.query_opt(&st.get, &[key]).await.map_err(err("get", key))?;
            Ok(Reply::Value(row.map(|r| r.get::<_, Vec<u8>>(0))))
        }
        Op::List(prefix) => {
            let st = c.stmts(shared).await?;
            let rows = if prefix.is_empty() {
                c.client.query(&st.all, &[]).await
            } else {
                match prefix_upper_bound(prefix) {
                    Some(upper) => c.client.query(&st.range, &[prefix, &upper]).await,
                    None => c.client.query(&st.from, &[prefix]).await,
                }
            }
            .map_err(err("list", prefix))?;
            let keys: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
            Ok(Reply::Keys(immediate_children(prefix, keys.iter().map(String::as_str))))
        }
        Op::Txn(ops) => write(shared, c, ops).await.map(|()| Reply::Done),
        Op::Leader => {
            let key = shared.lock_key;
            let (classid, objid) = ((key as u64 >> 32) as i64, (key as u64 & 0xffff_ffff) as i64);
            let row = c
                .client
                .query_opt(&shared.sql.leader, &[&classid, &objid])
                .await
                .map_err(err("leader lookup", &shared.cfg.ha_table.plain))?;
            Ok(Reply::Leader(row.map(|r| LeaderInfo {
                node_id: r.get(0),
                api_addr: r.get(1),
                since: r.get(2),
                epoch: r.get(3),
            })))
        }
        Op::Migrate { create, ha } => {
            migrate(shared, &c.client, *create, *ha).await?;
            Ok(Reply::Done)
        }
    }
}

async fn write(shared: &Shared, c: &mut Conn, ops: &[TxnOp]) -> Result<(), Failure> {
    let first_key = ops.first().map_or("", |o| o.key()).to_owned();
    let fail = |e: tokio_postgres::Error| -> Failure {
        if connection_lost(&e) {
            Failure::Lost {
                retry: true,
                reason: describe(&e),
            }
        } else {
            Failure::Failed(StorageError::Commit { reason: describe(&e) })
        }
    };
    let st = c.stmts(shared).await?;
    let (put, delete) = (st.put, st.delete);
    let tx = c.client.transaction().await.map_err(fail)?;
    if let Some(fence) = &shared.fence {
        let Some((node_id, epoch)) = fence.current() else {
            return Err(Failure::Failed(StorageError::NotLeader));
        };
        let proof = tx
            .query_opt(&shared.sql.fence, &[&node_id, &epoch])
            .await
            .map_err(fail)?;
        if proof.is_none() {
            // Someone else took over (or the row was removed): this node must stop writing.
            fence.lost(epoch);
            tracing::warn!(epoch, "write refused: the HA lock row no longer names this node");
            return Err(Failure::Failed(StorageError::NotLeader));
        }
    }
    for op in ops {
        let r = match op {
            TxnOp::Put(k, v) => tx.execute(&put, &[k, v]).await,
            TxnOp::Delete(k) => tx.execute(&delete, &[k]).await,
        };
        r.map_err(|e| {
            if connection_lost(&e) {
                Failure::Lost {
                    retry: true,
                    reason: describe(&e),
                }
            } else {
                Failure::Failed(StorageError::Backend {
                    op: "write",
                    key: op.key().to_owned(),
                    reason: describe(&e),
                })
            }
        })?;
    }
    tx.commit().await.map_err(|e| {
        if connection_lost(&e) {
            Failure::Lost {
                retry: false,
                reason: describe(&e),
            }
        } else {
            Failure::Failed(StorageError::Commit {
                reason: format!("{} (first key `{first_key}`)", describe(&e)),
            })
        }
    })
}

/// Create or upgrade the schema. Nodes starting together take turns on a transaction-level advisory lock.
async fn migrate(shared: &Shared, client: &Client, create: bool, ha: bool) -> Result<(), Failure> {
    let cfg = &shared.cfg;
    let (t, m, h, seq) = (
        &cfg.table.quoted,
        &cfg.migrations_table.quoted,
        &cfg.ha_table.quoted,
        &cfg.ha_epoch_seq.quoted,
    );
    let fail = |e: tokio_postgres::Error| -> Failure {
        if connection_lost(&e) {
            Failure::Lost {
                retry: true,
                reason: describe(&e),
            }
        } else {
            Failure::Failed(StorageError::Config(format!(
                "creating or checking the tables in PostgreSQL at {} failed: {}",
                cfg.target,
                describe(&e)
            )))
        }
    };
    if create {
        let migrate_key = ha::lock_key(&format!("migrate:{}", cfg.table.plain));
        client.batch_execute("BEGIN").await.map_err(fail)?;
        let result = async {
            client
                .execute("SELECT pg_advisory_xact_lock($1)", &[&migrate_key])
                .await?;
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {m} (version INTEGER PRIMARY KEY, \
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                ))
                .await?;
            let applied: i32 = client
                .query_one(&format!("SELECT COALESCE(max(version), 0) FROM {m}"), &[])
                .await?
                .get(0);
            if applied < 1 {
                client
                    .batch_execute(&format!(
                        "CREATE TABLE IF NOT EXISTS {t} (key TEXT COLLATE \"C\" PRIMARY KEY, value BYTEA NOT NULL); \
                         INSERT INTO {m} (version) VALUES (1);"
                    ))
                    .await?;
            }
            if ha {
                client
                    .batch_execute(&format!(
                        "CREATE SEQUENCE IF NOT EXISTS {seq}; \
                         CREATE TABLE IF NOT EXISTS {h} (id INTEGER PRIMARY KEY CHECK (id = 1), \
                         node_id TEXT NOT NULL, api_addr TEXT NOT NULL, since BIGINT NOT NULL, \
                         epoch BIGINT NOT NULL, pid INTEGER NOT NULL)"
                    ))
                    .await?;
            }
            Ok::<i32, tokio_postgres::Error>(applied)
        }
        .await;
        match result {
            Ok(applied) => {
                client.batch_execute("COMMIT").await.map_err(fail)?;
                if applied > SCHEMA_VERSION {
                    return Err(Failure::Failed(StorageError::NotLeakstop {
                        path: format!("{} at {}", cfg.table.plain, cfg.target),
                        reason: format!(
                            "schema version {applied} was written by a newer leakstop (this one knows {SCHEMA_VERSION})"
                        ),
                    }));
                }
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(fail(e));
            }
        }
    }
    // With or without creating: prove the tables are there and shaped as expected.
    let probe = format!("SELECT key, value FROM {t} LIMIT 0");
    if let Err(e) = client.batch_execute(&probe).await {
        if connection_lost(&e) {
            return Err(fail(e));
        }
        return Err(Failure::Failed(StorageError::Config(format!(
            "table {} in PostgreSQL at {} is not usable ({}); remove `skip_create_table` to let leakstop create it",
            cfg.table.plain,
            cfg.target,
            describe(&e)
        ))));
    }
    if ha {
        let probe = format!(
            "SELECT node_id, api_addr, since, epoch, pid FROM {h} LIMIT 0; SELECT nextval('{seq}') WHERE false"
        );
        if let Err(e) = client.batch_execute(&probe).await {
            if connection_lost(&e) {
                return Err(fail(e));
            }
            return Err(Failure::Failed(StorageError::Config(format!(
                "HA table {} in PostgreSQL at {} is not usable ({}); remove `skip_create_table` to let leakstop create it",
                cfg.ha_table.plain,
                cfg.target,
                describe(&e)
            ))));
        }
    }
    Ok(())
}
