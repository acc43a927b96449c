//! The leader lock of a PostgreSQL-backed cluster: a session advisory lock for liveness, a fencing epoch for
//! safety.
//!
//! # Design
//! * **Liveness: `pg_try_advisory_lock` held by a dedicated session.** PostgreSQL releases a session-level
//!   advisory lock the moment the session ends, so there is no lock TTL to wait out (Vault's PostgreSQL HA waits
//!   ~15 s for its TTL row to expire). The session sets aggressive server-side TCP keepalives and a TCP user
//!   timeout (`tcp_keepalives_idle = 1`, `interval = 1`, `count = 3`, `tcp_user_timeout = 4000`), so PostgreSQL
//!   also notices a vanished peer (host crash, cable pulled) within ~4 s rather than the kernel's two hours.
//! * **Safety: the `<ha_table>` row and its epoch.** On acquiring, the holder writes the single row
//!   `(node_id, api_addr, since, epoch, pid)` with a fresh epoch from the `<ha_table>_epoch` sequence (never
//!   reused, also not after the row is deleted). Every write transaction of [`super::PostgresStorage`] first runs
//!   `SELECT 1 FROM <ha_table> WHERE id = 1 AND node_id = $me AND epoch = $mine FOR SHARE` in the same
//!   transaction. No row: rollback, [`StorageError::NotLeader`], and [`HaLock::holds`] turns false. The
//!   `FOR SHARE` row lock makes a takeover's epoch bump wait for every write transaction of the old holder that
//!   already passed the check, so each write commits entirely before or entirely after a takeover: two nodes
//!   never write concurrently, whatever the advisory lock, clocks or networks do.
//!
//! The advisory lock decides *who may become* leader; the epoch decides *whose writes land*. Losing the first
//! (session gone) makes this node stop at its next [`HaLock::check`]; losing the second (someone bumped the
//! epoch, or an operator deleted the row) makes its next write fail, and the lock is then given up so a standby
//! can take over.
//!
//! # Failure model
//! * **Active process crashes (SIGKILL, OOM) on a live host:** the kernel closes its sockets, PostgreSQL ends the
//!   session at once and the advisory lock is free; a standby polling [`HaLock::try_acquire`] takes over on its
//!   next poll. Nothing of the dead node can write any more.
//! * **Active host dies or is cut off from PostgreSQL (partition):** PostgreSQL ends the session after the
//!   keepalive/user timeout (~4 s), then a standby takes over with a new epoch. The cut-off node's own
//!   [`HaLock::check`] fails (queries time out after 2 s) and it stands down; its writes could not reach
//!   PostgreSQL anyway, and any that arrive after the takeover are fenced by the epoch.
//! * **PostgreSQL restarts:** every session ends, so the lock is free and no node holds it. Holders see their
//!   lock session broken at their next check and stand down; all nodes race to re-acquire once PostgreSQL is
//!   back and exactly one wins, with a new epoch. Pooled connections reconnect by themselves (see the parent
//!   module).
//! * **PostgreSQL fails over to a replica:** advisory locks are not replicated, so this is the restart case on
//!   the new primary (point `connection_url` at a name or address that follows the primary, or list the hosts
//!   with `target_session_attrs=read-write`). The epoch sequence is replicated and PostgreSQL logs sequences
//!   ahead, so epochs keep growing on the promoted replica; an old holder's stale epoch cannot match the new one.
//!   Writes acknowledged by the old primary survive only if replication was synchronous: that is PostgreSQL's
//!   guarantee to give, not ours.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tokio_postgres::Client;

use super::{Failure, Shared, connection_lost, describe, runtime};
use crate::{HaLock, LeaderInfo, StorageError};

/// How long a lock-session round trip may take before the session is given up as lost.
const LOCK_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// What a write must prove: shared by the storage (which checks it in every write) and the lock (which sets it).
#[derive(Default)]
pub(crate) struct Fence {
    mine: Mutex<Option<(String, i64)>>,
    holds: AtomicBool,
}

impl Fence {
    /// `(node_id, epoch)` while this node believes it holds the lock.
    pub(crate) fn current(&self) -> Option<(String, i64)> {
        self.mine.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, node_id: &str, epoch: i64) {
        *self.mine.lock().unwrap_or_else(|p| p.into_inner()) = Some((node_id.to_owned(), epoch));
        self.holds.store(true, Ordering::SeqCst);
    }

    fn clear(&self) {
        self.holds.store(false, Ordering::SeqCst);
        *self.mine.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// A write found the row no longer ours: stop writing (unless a newer epoch was acquired meanwhile).
    pub(crate) fn lost(&self, epoch: i64) {
        let mut mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
        if mine.as_ref().is_some_and(|(_, e)| *e == epoch) {
            *mine = None;
            self.holds.store(false, Ordering::SeqCst);
        }
    }
}

/// The advisory lock key for `name`: FNV-1a, stable across builds and platforms (every node must agree).
pub(crate) fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"leakstop-ha:".iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

enum LockOp {
    Acquire { node_id: String, api_addr: String },
    Check,
    Release,
}

struct LockJob {
    op: LockOp,
    reply: Sender<Result<bool, StorageError>>,
}

/// [`HaLock`] on PostgreSQL. See the module docs for the design and failure model. Dropping it releases the lock
/// (the session closes).
pub struct PgHaLock {
    jobs: Option<Sender<LockJob>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// A pooled storage for `leader()`, which any connection can answer.
    reader: super::PostgresStorage,
}

impl std::fmt::Debug for PgHaLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHaLock")
            .field("target", &self.shared.cfg.target)
            .field("ha_table", &self.shared.cfg.ha_table.plain)
            .field("holds", &self.holds())
            .finish()
    }
}

impl PgHaLock {
    pub(super) fn start(shared: Arc<Shared>) -> Result<PgHaLock, StorageError> {
        let (tx, rx) = crossbeam_channel::unbounded::<LockJob>();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("leakstop-pg-halock".into())
            .spawn(move || lock_thread(&thread_shared, &rx))
            .map_err(|e| StorageError::Config(format!("cannot start the HA lock thread: {e}")))?;
        // One connection is enough to answer leader(); it never writes, so it needs no fence.
        let reader = super::PostgresStorage::with_shared(
            Arc::new(Shared {
                cfg: shared.cfg.clone(),
                fence: None,
                sql: super::Sql::new(&shared.cfg),
                lock_key: shared.lock_key,
            }),
            1,
        )?;
        Ok(PgHaLock {
            jobs: Some(tx),
            thread: Some(thread),
            shared,
            reader,
        })
    }

    fn fence(&self) -> &Fence {
        self.shared.fence.as_deref().expect("an HA storage has a fence")
    }

    fn call(&self, op: LockOp) -> Result<bool, StorageError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let jobs = self.jobs.as_ref().ok_or(StorageError::WriterStopped)?;
        jobs.send(LockJob { op, reply })
            .map_err(|_| StorageError::WriterStopped)?;
        rx.recv().map_err(|_| StorageError::WriterStopped)?
    }
}

impl HaLock for PgHaLock {
    #[tracing::instrument(level = "debug", skip_all)]
    fn try_acquire(&self, node_id: &str, api_addr: &str) -> Result<bool, StorageError> {
        self.call(LockOp::Acquire {
            node_id: node_id.to_owned(),
            api_addr: api_addr.to_owned(),
        })
    }

    fn holds(&self) -> bool {
        self.fence().holds.load(Ordering::SeqCst)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    fn check(&self) -> Result<bool, StorageError> {
        self.call(LockOp::Check)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    fn release(&self) -> Result<(), StorageError> {
        self.call(LockOp::Release).map(|_| ())
    }

    fn leader(&self) -> Result<Option<LeaderInfo>, StorageError> {
        self.reader.leader()
    }
}

impl Drop for PgHaLock {
    fn drop(&mut self) {
        self.fence().clear();
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock_thread(shared: &Shared, rx: &Receiver<LockJob>) {
    let Some(rt) = runtime() else { return };
    let fence = shared.fence.as_deref().expect("an HA storage has a fence");
    let mut session: Option<Client> = None;
    while let Ok(job) = rx.recv() {
        let result = rt.block_on(async {
            match job.op {
                LockOp::Acquire { node_id, api_addr } => {
                    acquire(shared, fence, &mut session, &node_id, &api_addr).await
                }
                LockOp::Check => check(shared, fence, &mut session).await,
                LockOp::Release => {
                    fence.clear();
                    if let Some(client) = session.take() {
                        // Unlock explicitly so the standbys see it before the socket close is processed.
                        let _ = tokio::time::timeout(
                            LOCK_QUERY_TIMEOUT,
                            client.execute("SELECT pg_advisory_unlock_all()", &[]),
                        )
                        .await;
                    }
                    Ok(false)
                }
            }
        });
        let _ = job.reply.send(result);
    }
    fence.clear();
}

fn unavailable(shared: &Shared, op: &'static str, reason: String) -> StorageError {
    StorageError::Unavailable {
        op,
        target: shared.cfg.target.clone(),
        reason,
    }
}

/// A dedicated session for the lock, with server-side keepalives so PostgreSQL drops it (and the lock) soon
/// after this node vanishes.
async fn open_session(shared: &Shared) -> Result<Client, StorageError> {
    let mut pg = shared.cfg.pg.clone();
    pg.application_name("leakstop-ha-lock");
    pg.keepalives_idle(Duration::from_secs(1))
        .keepalives_interval(Duration::from_secs(1));
    pg.keepalives_retries(3).tcp_user_timeout(Duration::from_secs(4));
    let client = match super::tls::connect(&shared.cfg, &pg).await {
        Ok(c) => c,
        Err(Failure::Lost { reason, .. }) => return Err(unavailable(shared, "HA lock", reason)),
        Err(Failure::Failed(e)) => return Err(e),
    };
    client
        .batch_execute(
            "SET tcp_keepalives_idle = 1; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3; \
             SET tcp_user_timeout = 4000",
        )
        .await
        .map_err(|e| unavailable(shared, "HA lock", describe(&e)))?;
    Ok(client)
}

async fn timed<T>(
    shared: &Shared,
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, (bool, StorageError)> {
    match tokio::time::timeout(LOCK_QUERY_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            let lost = connection_lost(&e);
            let err = if lost {
                unavailable(shared, "HA lock", describe(&e))
            } else {
                StorageError::Backend {
                    op: "HA lock",
                    key: shared.cfg.ha_table.plain.clone(),
                    reason: describe(&e),
                }
            };
            Err((lost, err))
        }
        Err(_) => Err((
            true,
            unavailable(
                shared,
                "HA lock",
                format!("no answer within {} s", LOCK_QUERY_TIMEOUT.as_secs()),
            ),
        )),
    }
}

async fn acquire(
    shared: &Shared,
    fence: &Fence,
    session: &mut Option<Client>,
    node_id: &str,
    api_addr: &str,
) -> Result<bool, StorageError> {
    if fence.current().is_some() {
        // Already ours: confirm rather than re-take (a re-take would bump the epoch under our own writes).
        if check(shared, fence, session).await? {
            return Ok(true);
        }
    }
    if session.as_ref().is_some_and(Client::is_closed) {
        *session = None;
    }
    let client = match session {
        Some(c) => c,
        None => session.insert(open_session(shared).await?),
    };
    let key = shared.lock_key;
    let got: bool = match timed(shared, client.query_one("SELECT pg_try_advisory_lock($1)", &[&key])).await {
        Ok(row) => row.get(0),
        Err((lost, e)) => {
            if lost {
                *session = None;
            }
            return Err(e);
        }
    };
    if !got {
        return Ok(false);
    }
    let h = &shared.cfg.ha_table.quoted;
    let seq = &shared.cfg.ha_epoch_seq.quoted;
    let upsert = format!(
        "INSERT INTO {h} (id, node_id, api_addr, since, epoch, pid) \
         VALUES (1, $1, $2, extract(epoch FROM now())::bigint, nextval('{seq}'), pg_backend_pid()) \
         ON CONFLICT (id) DO UPDATE SET node_id = EXCLUDED.node_id, api_addr = EXCLUDED.api_addr, \
         since = EXCLUDED.since, epoch = EXCLUDED.epoch, pid = EXCLUDED.pid RETURNING epoch"
    );
    // Autocommit: the row update is its own transaction. It waits (row lock) for in-flight fenced writes of the
    // previous holder, so none of theirs can commit after this returns. No timeout here: that wait is bounded by
    // the old holder's transactions, and giving up half-way would leave the lock taken with no row naming us.
    match client.query_one(&upsert, &[&node_id, &api_addr]).await {
        Ok(row) => {
            let epoch: i64 = row.get(0);
            fence.set(node_id, epoch);
            tracing::info!(epoch, "became the active node (HA lock acquired)");
            Ok(true)
        }
        Err(e) => {
            let lost = connection_lost(&e);
            if lost {
                *session = None;
            } else {
                let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&key]).await;
            }
            Err(StorageError::Backend {
                op: "HA lock",
                key: shared.cfg.ha_table.plain.clone(),
                reason: describe(&e),
            })
        }
    }
}

async fn check(shared: &Shared, fence: &Fence, session: &mut Option<Client>) -> Result<bool, StorageError> {
    let Some((node_id, epoch)) = fence.current() else {
        // A write found the row gone (or we never held it): make sure the advisory lock is not kept either, or
        // no standby could ever take over.
        if let Some(client) = session.as_ref()
            && timed(shared, client.execute("SELECT pg_advisory_unlock_all()", &[]))
                .await
                .is_err()
        {
            *session = None;
        }
        return Ok(false);
    };
    let Some(client) = session.as_ref().filter(|c| !c.is_closed()) else {
        *session = None;
        fence.clear();
        tracing::warn!("HA lock session is gone: standing down");
        return Ok(false);
    };
    let h = &shared.cfg.ha_table.quoted;
    let key = shared.lock_key;
    let (classid, objid) = ((key as u64 >> 32) as i64, (key as u64 & 0xffff_ffff) as i64);
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {h} WHERE id = 1 AND node_id = $1 AND epoch = $2), \
         EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() \
         AND classid::bigint = $3 AND objid::bigint = $4 AND objsubid = 1)"
    );
    match timed(shared, client.query_one(&sql, &[&node_id, &epoch, &classid, &objid])).await {
        Ok(row) => {
            let (row_ours, locked): (bool, bool) = (row.get(0), row.get(1));
            if row_ours && locked {
                return Ok(true);
            }
            tracing::warn!(row_ours, locked, "HA lock lost: standing down");
            fence.clear();
            if timed(shared, client.execute("SELECT pg_advisory_unlock_all()", &[]))
                .await
                .is_err()
            {
                *session = None;
            }
            Ok(false)
        }
        Err((true, e)) => {
            // The session (and with it the lock) is gone or unreachable: stop writing now.
            tracing::warn!(error = %e, "HA lock session lost: standing down");
            *session = None;
            fence.clear();
            Ok(false)
        }
        Err((false, e)) => Err(e),
    }
}
