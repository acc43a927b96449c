//! Leases: credentials an engine hands out, owned by the token that asked for them and revoked with it (or when
//! they expire). An engine returns a [`crate::engine::NewLease`] in its response; the pipeline names it, stores it
//! and links it to the caller's token in the request's commit ([`stage`]). A lease record names the mount whose
//! engine knows how to revoke the credential.
//!
//! Invariants:
//! - The lease records in the barrier (`sys/leases/<escaped id>`) are the source of truth. The in-memory
//!   [`LeaseQueue`] only orders them by when something must happen next (expiry, or the next revocation retry);
//!   it is rebuilt from the records at every unseal, so whatever expired while the server was down is due at once.
//! - A lease is forgotten only once its engine confirmed the revocation (or an operator forced it, which leaves an
//!   abandonment record under `sys/leases-abandoned/`). A failed revocation keeps the record with its retry state
//!   and is retried with capped exponential backoff, forever; after [`LeaseManager::irrevocable_after`] it is also
//!   flagged irrevocable (listed and counted by `sys/leases?type=irrevocable`) until a retry succeeds.
//! - Every change to one lease (renew, revoke, retry) runs under that lease's stripe lock, so the record and its
//!   queue entry move together.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::VaultError;
use crate::barrier::{Barrier, BufferedOp};
use crate::core::{Core, Unsealed};
use crate::pipeline::Effects;
use crate::token::TokenStore;

/// The longest a lease lives when neither its engine nor its mount says otherwise (Vault's default, 32 days).
pub const DEFAULT_MAX_TTL: u64 = 32 * 24 * 3600;
/// How long failed revocations are retried before the lease is flagged irrevocable (it is still retried).
pub const DEFAULT_IRREVOCABLE_AFTER: u64 = 3600;
/// First retry delay after a failed revocation; doubled per failure up to [`RETRY_CAP`].
const RETRY_FIRST: i64 = 1;
const RETRY_CAP: i64 = 300;
/// How many due leases one pass of the expiry task handles (the rest stay due for the next pass).
const BATCH: usize = 1024;
const STRIPES: usize = 64;
/// Stored errors are cut to this many bytes: enough to diagnose, never a whole upstream body.
const MAX_ERROR: usize = 512;

/// A stored lease (`sys/leases/<id>` in the barrier). Fields added after the first release default, so records
/// written before them still load.
#[derive(Clone, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    /// The mount path of the issuing engine, e.g. `github/`.
    pub mount: String,
    /// Engine data needed to revoke (never returned to clients, never logged: no `Debug`).
    pub internal: serde_json::Value,
    pub expire_time: i64,
    #[serde(default)]
    pub renewable: bool,
    pub token_hash: Option<String>,
    /// When the lease was issued (0 on records from before this field).
    #[serde(default)]
    pub issue_time: i64,
    /// The TTL a renewal without an `increment` grants (the issuing TTL).
    #[serde(default)]
    pub ttl: u64,
    /// No renewal goes past this. Records from before this field: their expiry at the time (not extendable).
    #[serde(default)]
    pub max_expire: Option<i64>,
    #[serde(default)]
    pub last_renewal: Option<i64>,
    /// Set while a revocation failed and is being retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

/// The state of a revocation that failed and is being retried.
#[derive(Clone, Serialize, Deserialize)]
pub struct Retry {
    pub attempts: u32,
    pub first_failure: i64,
    pub next_attempt: i64,
    /// The engine's last error, cut short (engines never put secrets in errors; see [`short_error`]).
    pub last_error: String,
    pub irrevocable: bool,
}

impl Lease {
    /// When something must next happen to this lease: its expiry, or the next retry of a failed revocation.
    pub fn due(&self) -> i64 {
        self.retry.as_ref().map_or(self.expire_time, |r| r.next_attempt)
    }

    pub fn max_expire(&self) -> i64 {
        self.max_expire.unwrap_or(self.expire_time)
    }

    pub fn is_irrevocable(&self) -> bool {
        self.retry.as_ref().is_some_and(|r| r.irrevocable)
    }
}

/// What the server records when a lease is dropped without its engine revoking the credential (revoke-force, or
/// its mount is gone): the credential may still be valid outside and someone has to look.
#[derive(Serialize, Deserialize)]
pub struct Abandoned {
    pub lease_id: String,
    pub mount: String,
    pub abandoned_at: i64,
    pub expire_time: i64,
    pub reason: String,
    pub last_error: Option<String>,
}

/// Lease ids contain `/`; storage keys of one folder must not.
pub(crate) fn escape(id: &str) -> String {
    id.replace('%', "%25").replace('/', "%2F")
}

pub(crate) fn unescape(key: &str) -> String {
    key.replace("%2F", "/").replace("%25", "%")
}

const RECORDS: &str = "sys/leases/";
pub(crate) const ABANDONED: &str = "sys/leases-abandoned/";

fn key(id: &str) -> String {
    format!("{RECORDS}{}", escape(id))
}

/// Leases in time order of what is due next: `(due unix second, lease id)`, nothing else (the record stays in
/// the barrier), so a million leases cost tens of megabytes, not the records themselves.
#[derive(Default)]
pub struct LeaseQueue {
    due: Mutex<BTreeSet<(i64, Box<str>)>>,
}

impl LeaseQueue {
    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<(i64, Box<str>)>> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, due: i64, id: &str) {
        self.set().insert((due, id.into()));
    }

    pub fn remove(&self, due: i64, id: &str) {
        self.set().remove(&(due, Box::<str>::from(id)));
    }

    /// Remove and return up to `max` ids due at or before `now`, earliest first.
    pub fn take_due(&self, now: i64, max: usize) -> Vec<Box<str>> {
        let mut set = self.set();
        let mut out = Vec::new();
        while out.len() < max {
            match set.first() {
                Some((due, _)) if *due <= now => {}
                _ => break,
            }
            if let Some((_, id)) = set.pop_first() {
                out.push(id);
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.set().len()
    }

    pub fn is_empty(&self) -> bool {
        self.set().is_empty()
    }

    /// The earliest due time, if any lease is queued.
    pub fn next_due(&self) -> Option<i64> {
        self.set().first().map(|(d, _)| *d)
    }
}

/// The lease manager of an unsealed core: the due queue and the per-lease locks.
pub struct LeaseManager {
    queue: Arc<LeaseQueue>,
    locks: Vec<tokio::sync::Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
    /// Seconds of failing revocations after which a lease is reported irrevocable.
    pub irrevocable_after: i64,
}

impl LeaseManager {
    /// Rebuild the queue from the stored lease records (at unseal).
    pub(crate) fn load(barrier: &Barrier, irrevocable_after: u64) -> Result<LeaseManager, VaultError> {
        let m = LeaseManager {
            queue: Arc::default(),
            locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: Default::default(),
            irrevocable_after: i64::try_from(irrevocable_after).unwrap_or(i64::MAX),
        };
        for k in barrier.list(RECORDS)? {
            if let Some(l) = barrier.get_json::<Lease>(&format!("{RECORDS}{k}"))? {
                m.queue.insert(l.due(), &l.id);
            }
        }
        Ok(m)
    }

    pub fn queue(&self) -> &LeaseQueue {
        &self.queue
    }

    /// The lock of `id`'s stripe (held across the engine call; `None` only if there were no stripes at all).
    async fn lock(&self, id: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let i = usize::try_from(self.hasher.hash_one(id) % STRIPES as u64).unwrap_or_default();
        match self.locks.get(i).or_else(|| self.locks.first()) {
            Some(l) => Some(l.lock().await),
            None => None,
        }
    }
}

/// Stage a new lease and its link to the owning token (committed with the request that issued the credential);
/// it joins the expiry queue once committed.
pub fn stage(st: &Unsealed, lease: &Lease, fx: &mut Effects) -> Result<(), VaultError> {
    fx.put_json(key(&lease.id), lease)?;
    if let Some(h) = &lease.token_hash {
        fx.extend(vec![TokenStore::lease_link(h, &lease.id)]);
    }
    let (queue, due, id) = (st.leases.queue.clone(), lease.due(), lease.id.clone());
    fx.after(move || queue.insert(due, &id));
    Ok(())
}

/// The writes that make the leases `ids` due at `now` (their expiry brought forward; a lease already retrying
/// keeps its retry time), committed by the caller with the token revocation that orphaned them. Each changed
/// queue position is pushed to `moved` as `(old due, new due, id)`, for [`requeue`] once committed.
pub(crate) fn stage_due_now(
    st: &Unsealed,
    ids: &[String],
    now: i64,
    moved: &mut Vec<(i64, i64, String)>,
) -> Result<Vec<BufferedOp>, VaultError> {
    let mut ops = Vec::new();
    for id in ids {
        let Some(mut lease) = st.barrier.get_json::<Lease>(&key(id))? else {
            continue;
        };
        if lease.expire_time <= now {
            continue;
        }
        let old_due = lease.due();
        lease.expire_time = now;
        ops.push(BufferedOp::Put(
            key(id),
            zeroize::Zeroizing::new(serde_json::to_vec(&lease)?),
        ));
        moved.push((old_due, lease.due(), id.clone()));
    }
    Ok(ops)
}

/// Move committed leases to their new queue positions (see [`stage_due_now`]).
pub(crate) fn requeue(st: &Unsealed, moved: &[(i64, i64, String)]) {
    for (old, new, id) in moved {
        st.leases.queue.remove(*old, id);
        st.leases.queue.insert(*new, id);
    }
}

pub fn get(core: &Core, id: &str) -> Result<Option<Lease>, VaultError> {
    core.unsealed()?.barrier.get_json(&key(id))
}

/// Every stored lease id (unescaped), in key order.
pub(crate) fn all_ids(st: &Unsealed) -> Result<Vec<String>, VaultError> {
    Ok(st.barrier.list(RECORDS)?.iter().map(|k| unescape(k)).collect())
}

/// Every stored lease record (admin listings and tidy; not on any request's hot path).
pub(crate) fn all(st: &Unsealed) -> Result<Vec<Lease>, VaultError> {
    let mut out = Vec::new();
    for k in st.barrier.list(RECORDS)? {
        if let Some(l) = st.barrier.get_json::<Lease>(&format!("{RECORDS}{k}"))? {
            out.push(l);
        }
    }
    Ok(out)
}

/// An engine error as stored on a lease: first line only, cut to [`MAX_ERROR`] bytes. Engine errors name the
/// failure, never the credential (project rule); the cut keeps an upstream's echoed body out of the record.
fn short_error(e: &VaultError) -> String {
    let s = e.to_string();
    let mut line = s.lines().next().unwrap_or_default().to_string();
    if line.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

/// The retry delay after the `attempts`-th failure: 1 s doubling, capped at 5 minutes.
fn backoff(attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(16);
    (RETRY_FIRST << shift).min(RETRY_CAP)
}

/// Why a lease left (or did not leave) the store.
enum Revoked {
    Done,
    Gone,
}

/// Revoke one lease through its engine, under its lock. Success removes the record and its token link in the
/// commit that carries the engine's writes; failure keeps the record with its retry state and reschedules it.
async fn revoke_locked(st: &Unsealed, id: &str, now: i64) -> Result<Revoked, VaultError> {
    let Some(mut lease) = st.barrier.get_json::<Lease>(&key(id))? else {
        return Ok(Revoked::Gone);
    };
    let old_due = lease.due();
    let Some(mount) = st.mount_at(&lease.mount) else {
        // Nothing can revoke it any more: drop it, but say so where an operator looks.
        drop_record(st, &lease, now, "the mount that issued it no longer exists")?;
        st.leases.queue.remove(old_due, id);
        return Ok(Revoked::Done);
    };
    let view = st.view(&mount, false);
    match mount.backend.revoke(&lease, &view).await {
        Ok(()) => {
            let mut ops = view.take_pending();
            ops.push(BufferedOp::Delete(key(id)));
            if let Some(h) = &lease.token_hash {
                ops.push(BufferedOp::Delete(format!("sys/token/lease/{h}/{}", escape(id))));
            }
            st.barrier.commit(&ops)?;
            st.leases.queue.remove(old_due, id);
            if lease.is_irrevocable() {
                tracing::info!(lease = %id, "irrevocable lease revoked at last");
            }
            Ok(Revoked::Done)
        }
        Err(e) => {
            let msg = short_error(&e);
            let mut r = lease.retry.take().unwrap_or(Retry {
                attempts: 0,
                first_failure: now,
                next_attempt: now,
                last_error: String::new(),
                irrevocable: false,
            });
            r.attempts = r.attempts.saturating_add(1);
            r.next_attempt = now.saturating_add(backoff(r.attempts));
            r.last_error = msg;
            let was = r.irrevocable;
            r.irrevocable = now.saturating_sub(r.first_failure) >= st.leases.irrevocable_after;
            if r.irrevocable && !was {
                tracing::warn!(lease = %id, attempts = r.attempts, "lease flagged irrevocable; revocation still retried");
            }
            let next = r.next_attempt;
            lease.retry = Some(r);
            st.barrier.put_json(&key(id), &lease)?;
            st.leases.queue.remove(old_due, id);
            st.leases.queue.insert(next, id);
            Err(e)
        }
    }
}

/// Remove a lease record without revoking its credential, leaving an abandonment record.
fn drop_record(st: &Unsealed, lease: &Lease, now: i64, reason: &str) -> Result<(), VaultError> {
    let rec = Abandoned {
        lease_id: lease.id.clone(),
        mount: lease.mount.clone(),
        abandoned_at: now,
        expire_time: lease.expire_time,
        reason: reason.into(),
        last_error: lease.retry.as_ref().map(|r| r.last_error.clone()),
    };
    let mut ops = vec![
        BufferedOp::Delete(key(&lease.id)),
        BufferedOp::Put(
            format!("{ABANDONED}{}", escape(&lease.id)),
            zeroize::Zeroizing::new(serde_json::to_vec(&rec)?),
        ),
    ];
    if let Some(h) = &lease.token_hash {
        ops.push(BufferedOp::Delete(format!("sys/token/lease/{h}/{}", escape(&lease.id))));
    }
    st.barrier.commit(&ops)?;
    tracing::warn!(lease = %lease.id, reason, "lease dropped without revoking its credential");
    Ok(())
}

/// Revoke leases through their engines. A lease whose engine fails to revoke stays recorded with its retry
/// state (retried in the background with backoff) and the error is returned: never a half-revoked lease that is
/// forgotten.
pub async fn revoke_all(core: &Core, ids: &[String], now: i64) -> Result<(), VaultError> {
    let st = core.unsealed()?;
    let mut failures = Vec::new();
    for id in ids {
        let _g = st.leases.lock(id).await;
        if let Err(e) = revoke_locked(&st, id, now).await {
            failures.push(format!("{id}: {}", short_error(&e)));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(VaultError::Internal(format!(
            "{} of {} leases could not be revoked yet; they are kept and retried in the background: {}",
            failures.len(),
            ids.len(),
            failures.join("; ")
        )))
    }
}

/// Revoke what is due at `now`: expired leases and failed revocations whose retry time came. Returns how many
/// leases were revoked and how many failed (and were rescheduled).
pub async fn revoke_due(core: &Core, now: i64) -> Result<(usize, usize), VaultError> {
    let st = core.unsealed()?;
    let (mut done, mut failed) = (0, 0);
    loop {
        let ids = st.leases.queue.take_due(now, BATCH);
        if ids.is_empty() {
            break;
        }
        for id in ids {
            let _g = st.leases.lock(&id).await;
            // The queue entry is gone; the record decides (a renewal since may have moved it, and re-queued it).
            match st.barrier.get_json::<Lease>(&key(&id))? {
                Some(l) if l.due() <= now => {}
                _ => continue,
            }
            match revoke_locked(&st, &id, now).await {
                Ok(Revoked::Done) => done += 1,
                Ok(Revoked::Gone) => {}
                Err(e) => {
                    failed += 1;
                    tracing::warn!(lease = %id, error = %short_error(&e), "lease revocation failed; retried with backoff");
                }
            }
        }
    }
    Ok((done, failed))
}

/// The result of a renewal: the new TTL and whether the max TTL cut the asked increment.
pub struct Renewed {
    pub ttl: u64,
    pub capped_at: Option<u64>,
}

/// Renew a lease by `increment` seconds from `now` (its issuing TTL when `None`), never past its max TTL. The
/// engine may extend the credential itself ([`crate::Backend::renew`]); its writes commit with the new expiry.
pub async fn renew(core: &Core, id: &str, increment: Option<u64>, now: i64) -> Result<Renewed, VaultError> {
    let st = core.unsealed()?;
    let _g = st.leases.lock(id).await;
    let mut lease = st
        .barrier
        .get_json::<Lease>(&key(id))?
        .filter(|l| l.retry.is_none() && l.expire_time > now)
        .ok_or_else(|| VaultError::bad("lease not found or lease is not renewable (it expired or is being revoked)"))?;
    if !lease.renewable {
        return Err(VaultError::bad(format!(
            "lease {id} is not renewable: ask its engine for a new credential instead"
        )));
    }
    let asked = increment.filter(|i| *i > 0).unwrap_or(lease.ttl.max(1));
    let wanted = now.saturating_add_unsigned(asked);
    let new_expire = wanted.min(lease.max_expire());
    if new_expire <= now {
        return Err(VaultError::bad(format!(
            "lease {id} has reached its max TTL and cannot be renewed"
        )));
    }
    let mount = st.mount_at(&lease.mount).ok_or_else(|| {
        VaultError::bad(format!(
            "lease {id} cannot be renewed: the mount {} that issued it no longer exists",
            lease.mount
        ))
    })?;
    let view = st.view(&mount, false);
    mount.backend.renew(&lease, new_expire, &view).await?;
    let old_due = lease.due();
    lease.expire_time = new_expire;
    lease.last_renewal = Some(now);
    let mut ops = view.take_pending();
    ops.push(BufferedOp::Put(
        key(id),
        zeroize::Zeroizing::new(serde_json::to_vec(&lease)?),
    ));
    st.barrier.commit(&ops)?;
    st.leases.queue.remove(old_due, id);
    st.leases.queue.insert(lease.due(), id);
    let ttl = u64::try_from(new_expire - now).unwrap_or_default();
    Ok(Renewed {
        ttl,
        capped_at: (new_expire < wanted).then_some(ttl),
    })
}

/// Drop leases without asking their engines (`revoke-force`): each leaves an abandonment record.
pub async fn force_drop(core: &Core, ids: &[String], now: i64) -> Result<usize, VaultError> {
    let st = core.unsealed()?;
    let mut n = 0;
    for id in ids {
        let _g = st.leases.lock(id).await;
        if let Some(l) = st.barrier.get_json::<Lease>(&key(id))? {
            drop_record(&st, &l, now, "revoke-force: removed without revoking the credential")?;
            st.leases.queue.remove(l.due(), id);
            n += 1;
        }
    }
    Ok(n)
}

/// What `tidy` removed.
pub struct Tidied {
    pub leases: usize,
    pub links: usize,
}

/// Remove lease records whose mount is gone (recorded as abandoned) and token links to leases that no longer
/// exist.
pub async fn tidy(core: &Core, now: i64) -> Result<Tidied, VaultError> {
    let st = core.unsealed()?;
    let mut leases = 0;
    for l in all(&st)? {
        if st.mount_at(&l.mount).is_none() {
            let _g = st.leases.lock(&l.id).await;
            if let Some(l) = st.barrier.get_json::<Lease>(&key(&l.id))? {
                drop_record(&st, &l, now, "tidy: the mount that issued it no longer exists")?;
                st.leases.queue.remove(l.due(), &l.id);
                leases += 1;
            }
        }
    }
    let mut links = 0;
    for token in st.barrier.list("sys/token/lease/")? {
        let folder = format!("sys/token/lease/{token}");
        for l in st.barrier.list(&folder)? {
            let lease_alive = st.barrier.get(&format!("{RECORDS}{l}"))?.is_some();
            // A live lease keeps its link even when its token is gone: the lease is still revoked on expiry.
            if !lease_alive {
                st.barrier.delete(&format!("{folder}{l}"))?;
                links += 1;
            }
        }
    }
    Ok(Tidied { leases, links })
}

#[cfg(test)]
mod tests {
    //! The lease manager through the API, with the toy engine as issuer and the clock passed to the expiry pass.

    use std::collections::HashMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::Operation;
    use crate::core::{ApiRequest, CoreOptions, MountEntry, Reply};
    use crate::engine::unix_seconds;
    use crate::engines::toy::ToyBackend;

    struct Env {
        core: Arc<Core>,
        root: String,
    }

    fn core_on(
        storage: Arc<dyn leakstop_storage::Storage>,
        seal: Arc<dyn leakstop_seal::Seal>,
        irrevocable_after: u64,
    ) -> Arc<Core> {
        let core = Core::new(
            storage,
            Some(seal),
            CoreOptions {
                lease_irrevocable_after: irrevocable_after,
                ..Default::default()
            },
        );
        core.register_engine(
            "toy",
            Arc::new(|_: &MountEntry| Ok(ToyBackend::new() as Arc<dyn crate::Backend>)),
        );
        core
    }

    async fn env(irrevocable_after: u64) -> Env {
        let seal: Arc<dyn leakstop_seal::Seal> = Arc::new(leakstop_seal::KeySeal::random_dev());
        let core = core_on(
            Arc::new(leakstop_storage::MemoryStorage::new()),
            seal,
            irrevocable_after,
        );
        let (_, root) = core.init(1, 1, None).await.unwrap();
        let e = Env { core, root };
        e.call(Operation::Update, "sys/mounts/play", json!({"type": "toy"}))
            .await
            .unwrap();
        e
    }

    impl Env {
        async fn call(&self, op: Operation, path: &str, data: Value) -> Result<Reply, VaultError> {
            self.call_as(&self.root, op, path, data).await
        }

        async fn call_as(&self, token: &str, op: Operation, path: &str, data: Value) -> Result<Reply, VaultError> {
            self.core
                .handle(ApiRequest {
                    op,
                    path: path.into(),
                    data: data.as_object().cloned().unwrap_or_default(),
                    query: HashMap::new(),
                    token: Some(token.into()),
                    remote_addr: None,
                    request_id: "test".into(),
                })
                .await
        }

        async fn ticket(&self, name: &str, body: Value) -> String {
            let r = self
                .call(Operation::Update, &format!("play/ticket/{name}"), body)
                .await
                .unwrap();
            r.lease_id
        }

        async fn exists(&self, id: &str) -> bool {
            get(&self.core, id).unwrap().is_some()
        }

        async fn engine_revoked(&self, name: &str) -> bool {
            self.call(Operation::Read, &format!("play/revoked/{name}"), json!({}))
                .await
                .is_ok()
        }

        async fn fail_revocations(&self, fail: bool) {
            self.call(Operation::Update, "play/fail-revoke", json!({ "fail": fail }))
                .await
                .unwrap();
        }

        async fn irrevocable(&self) -> Value {
            let mut q = HashMap::new();
            q.insert("type".to_string(), "irrevocable".to_string());
            let r = self
                .core
                .handle(ApiRequest {
                    op: Operation::Read,
                    path: "sys/leases".into(),
                    data: Default::default(),
                    query: q,
                    token: Some(self.root.clone()),
                    remote_addr: None,
                    request_id: "test".into(),
                })
                .await
                .unwrap();
            r.data.unwrap()
        }
    }

    fn now() -> i64 {
        unix_seconds(std::time::SystemTime::now())
    }

    #[tokio::test]
    async fn renew_extends_the_ttl_from_now_and_is_capped_by_the_max_ttl() {
        let e = env(3600).await;
        let id = e
            .ticket("r", json!({"ttl": "10s", "max_ttl": "30s", "renewable": true}))
            .await;
        let r = e
            .call(
                Operation::Update,
                "sys/leases/renew",
                json!({"lease_id": id, "increment": 20}),
            )
            .await
            .unwrap();
        assert_eq!(r.lease_id, id);
        assert!((19..=20).contains(&r.lease_duration), "{}", r.lease_duration);
        assert!(r.warnings.is_empty());
        // hvac sends `"increment": null`: the issuing TTL again.
        let r = e
            .call(
                Operation::Update,
                "sys/leases/renew",
                json!({"lease_id": id, "increment": null}),
            )
            .await
            .unwrap();
        assert!((9..=10).contains(&r.lease_duration), "{}", r.lease_duration);
        let r = e
            .call(
                Operation::Update,
                &format!("sys/renew/{id}"),
                json!({"increment": "1h"}),
            )
            .await
            .unwrap();
        assert!(r.lease_duration <= 30, "capped by max_ttl: {}", r.lease_duration);
        assert!(r.lease_duration >= 28, "{}", r.lease_duration);
        assert!(r.warnings[0].contains("max TTL"), "{:?}", r.warnings);
        let l = e
            .call(Operation::Update, "sys/leases/lookup", json!({"lease_id": id}))
            .await
            .unwrap()
            .data
            .unwrap();
        assert!(l["last_renewal"].is_string(), "{l}");
        assert!(l["issue_time"].is_string(), "{l}");
        assert_eq!(l["renewable"], true);
        // The renewal moved the queue entry: the old expiry revokes nothing.
        assert_eq!(e.core.revoke_due_leases(now() + 12).await.unwrap(), (0, 0));
        assert!(e.exists(&id).await);
        assert_eq!(e.core.revoke_due_leases(now() + 31).await.unwrap(), (1, 0));
        assert!(!e.exists(&id).await);
    }

    #[tokio::test]
    async fn a_lease_that_is_not_renewable_is_refused_with_a_reason() {
        let e = env(3600).await;
        let id = e.ticket("n", json!({})).await;
        let err = e
            .call(
                Operation::Update,
                "sys/leases/renew",
                json!({"lease_id": id, "increment": 60}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("is not renewable"), "{err}");
    }

    #[tokio::test]
    async fn revoke_prefix_revokes_everything_under_the_prefix_and_nothing_else() {
        let e = env(3600).await;
        let a1 = e.ticket("a", json!({})).await;
        let a2 = e.ticket("a", json!({})).await;
        let ab = e.ticket("ab", json!({})).await;
        let b = e.ticket("b", json!({})).await;
        let listed = e
            .call(Operation::List, "sys/leases/lookup/play/ticket/", json!({}))
            .await
            .unwrap()
            .data
            .unwrap();
        assert_eq!(listed["keys"], json!(["a/", "ab/", "b/"]));
        e.call(Operation::Update, "sys/leases/revoke-prefix/play/ticket/a", json!({}))
            .await
            .unwrap();
        assert!(!e.exists(&a1).await && !e.exists(&a2).await);
        assert!(e.engine_revoked("a").await, "the engine revoked the credentials");
        assert!(e.exists(&ab).await, "a prefix ends at a path boundary");
        assert!(e.exists(&b).await);
        assert!(!e.engine_revoked("b").await);
    }

    #[tokio::test]
    async fn revoke_force_drops_the_lease_and_records_the_abandoned_credential() {
        let e = env(3600).await;
        let id = e.ticket("f", json!({})).await;
        e.fail_revocations(true).await;
        let err = e
            .call(Operation::Update, "sys/leases/revoke", json!({"lease_id": id}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("retried"), "{err}");
        assert!(e.exists(&id).await, "a failed revocation keeps the lease");
        e.call(Operation::Update, "sys/leases/revoke-force/play/ticket/f", json!({}))
            .await
            .unwrap();
        assert!(!e.exists(&id).await);
        assert!(!e.engine_revoked("f").await, "the engine was not asked");
        let ab = e
            .call(Operation::List, "sys/leases/abandoned", json!({}))
            .await
            .unwrap()
            .data
            .unwrap();
        assert_eq!(ab["keys"], json!([id]));
        assert!(ab["key_info"][&id]["reason"].as_str().unwrap().contains("revoke-force"));
        assert!(
            ab["key_info"][&id]["last_error"]
                .as_str()
                .unwrap()
                .contains("unreachable")
        );
        // The queue forgot it too: nothing is retried.
        assert_eq!(e.core.revoke_due_leases(now() + 10_000).await.unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn a_lease_is_revoked_by_the_first_pass_after_its_expiry_and_not_before() {
        let e = env(3600).await;
        let id = e.ticket("x", json!({"ttl": "2s"})).await;
        let t0 = get(&e.core, &id).unwrap().unwrap().issue_time;
        assert_eq!(e.core.revoke_due_leases(t0 + 1).await.unwrap(), (0, 0));
        assert!(e.exists(&id).await);
        assert_eq!(e.core.revoke_due_leases(t0 + 3).await.unwrap(), (1, 0));
        assert!(!e.exists(&id).await);
        assert!(e.engine_revoked("x").await);
    }

    #[tokio::test]
    async fn leases_that_expired_while_the_server_was_down_are_due_at_unseal() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("leakstop.db");
        let seal: Arc<dyn leakstop_seal::Seal> = Arc::new(leakstop_seal::KeySeal::random_dev());
        let t0 = now();
        let (short, long) = {
            let storage = Arc::new(leakstop_storage::SqliteStorage::open(&db).unwrap());
            let core = core_on(storage, seal.clone(), 3600);
            let (_, root) = core.init(1, 1, None).await.unwrap();
            let e = Env { core, root };
            e.call(Operation::Update, "sys/mounts/play", json!({"type": "toy"}))
                .await
                .unwrap();
            (
                e.ticket("s", json!({"ttl": "2s"})).await,
                e.ticket("l", json!({"ttl": "1h"})).await,
            )
        };
        let storage = Arc::new(leakstop_storage::SqliteStorage::open(&db).unwrap());
        let core = core_on(storage, seal, 3600);
        core.auto_unseal().await.unwrap();
        assert_eq!(
            core.unsealed().unwrap().leases.queue().len(),
            2,
            "the queue is rebuilt from the records"
        );
        assert_eq!(core.revoke_due_leases(t0 + 5).await.unwrap(), (1, 0));
        assert!(get(&core, &short).unwrap().is_none());
        assert!(get(&core, &long).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_failing_revocation_is_retried_flagged_irrevocable_and_cleared_by_success() {
        let e = env(2).await;
        let id = e.ticket("i", json!({"ttl": "1s"})).await;
        let t0 = get(&e.core, &id).unwrap().unwrap().issue_time;
        e.fail_revocations(true).await;
        // Expiry at t0+1 fails; retries at +1 s, then +2 s, ... with no give-up.
        assert_eq!(e.core.revoke_due_leases(t0 + 1).await.unwrap(), (0, 1));
        assert_eq!(e.irrevocable().await["lease_count"], 0);
        assert_eq!(e.core.revoke_due_leases(t0 + 2).await.unwrap(), (0, 1));
        assert_eq!(
            e.irrevocable().await["lease_count"],
            0,
            "1 s of failures is under the threshold"
        );
        assert_eq!(e.core.revoke_due_leases(t0 + 3).await.unwrap(), (0, 0), "backing off");
        assert_eq!(e.core.revoke_due_leases(t0 + 4).await.unwrap(), (0, 1));
        let list = e.irrevocable().await;
        assert_eq!(list["lease_count"], 1, "{list}");
        assert_eq!(list["leases"][0]["lease_id"], id.as_str());
        assert!(
            list["leases"][0]["error"].as_str().unwrap().contains("unreachable"),
            "{list}"
        );
        let count = e
            .call(Operation::Read, "sys/leases/count", json!({"type": "irrevocable"}))
            .await
            .unwrap()
            .data
            .unwrap();
        assert_eq!(count["lease_count"], 1);
        // Still retried long after; once the upstream is back, the lease goes and the flag with it.
        assert_eq!(e.core.revoke_due_leases(t0 + 1000).await.unwrap(), (0, 1));
        e.fail_revocations(false).await;
        assert_eq!(e.core.revoke_due_leases(t0 + 2000).await.unwrap(), (1, 0));
        assert!(!e.exists(&id).await);
        assert!(e.engine_revoked("i").await);
        assert_eq!(e.irrevocable().await["lease_count"], 0);
    }

    /// A child token of root and the id of a one-hour lease it took on ticket `name`.
    async fn child_token_with_lease(e: &Env, name: &str) -> (String, String) {
        let child = e
            .call(Operation::Update, "auth/token/create", json!({"policies": ["root"]}))
            .await
            .unwrap();
        let child = child.auth.unwrap().client_token.expose_str().to_string();
        let id = e
            .call_as(
                &child,
                Operation::Update,
                &format!("play/ticket/{name}"),
                json!({"ttl": "1h"}),
            )
            .await
            .unwrap()
            .lease_id;
        (child, id)
    }

    #[tokio::test]
    async fn revoking_a_token_whose_lease_cannot_be_revoked_keeps_the_lease_for_retry() {
        let e = env(3600).await;
        let (child, id) = child_token_with_lease(&e, "t").await;
        e.fail_revocations(true).await;
        let err = e
            .call_as(&child, Operation::Update, "auth/token/revoke-self", json!({}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("retried in the background"), "{err}");
        let l = get(&e.core, &id).unwrap().expect("the lease outlives its token");
        assert!(l.retry.is_some());
        e.fail_revocations(false).await;
        assert_eq!(e.core.revoke_due_leases(now() + 5).await.unwrap(), (1, 0));
        assert!(e.engine_revoked("t").await);
    }

    #[tokio::test]
    async fn a_revoked_tokens_leases_are_made_due_at_once_even_when_their_revocation_fails() {
        let e = env(3600).await;
        let (child, id) = child_token_with_lease(&e, "d").await;
        e.fail_revocations(true).await;
        let before = now();
        e.call_as(&child, Operation::Update, "auth/token/revoke-self", json!({}))
            .await
            .unwrap_err();
        let l = get(&e.core, &id).unwrap().expect("the failing lease is kept");
        assert!(
            l.expire_time <= now() && l.expire_time >= before,
            "a revoked token's lease keeps its own expiry ({} vs now {})",
            l.expire_time,
            now()
        );
        // A fresh queue (as after a restart) holds it as due now, not in an hour.
        let rebuilt = LeaseManager::load(&e.core.unsealed().unwrap().barrier, 3600).unwrap();
        assert!(rebuilt.queue().next_due().unwrap() <= now() + 1);
        assert!(
            e.core
                .unsealed()
                .unwrap()
                .tokens
                .lookup(&child, now())
                .unwrap()
                .is_none(),
            "the token outlived its revocation"
        );
        e.fail_revocations(false).await;
        assert_eq!(e.core.revoke_due_leases(now() + 2).await.unwrap(), (1, 0));
    }

    #[tokio::test]
    async fn revoke_orphan_revokes_the_token_and_its_leases_and_leaves_its_children_as_orphans() {
        let e = env(3600).await;
        let token = |r: Reply| r.auth.unwrap().client_token.expose_str().to_string();
        let parent = token(
            e.call(Operation::Update, "auth/token/create", json!({"policies": ["root"]}))
                .await
                .unwrap(),
        );
        let child = token(
            e.call_as(
                &parent,
                Operation::Update,
                "auth/token/create",
                json!({"policies": ["root"]}),
            )
            .await
            .unwrap(),
        );
        let id = e
            .call_as(&parent, Operation::Update, "play/ticket/o", json!({"ttl": "1h"}))
            .await
            .unwrap()
            .lease_id;
        e.call(Operation::Update, "auth/token/revoke-orphan", json!({"token": parent}))
            .await
            .unwrap();
        assert!(!e.exists(&id).await, "the orphaned token's lease outlived it");
        assert!(e.engine_revoked("o").await);
        let st = e.core.unsealed().unwrap();
        assert!(
            st.tokens.lookup(&parent, now()).unwrap().is_none(),
            "the token outlived revoke-orphan"
        );
        let c = st
            .tokens
            .lookup(&child, now())
            .unwrap()
            .expect("the child was revoked with its parent");
        assert!(c.parent.is_none(), "the child still names its revoked parent");
        // The orphan still authenticates.
        e.call_as(&child, Operation::Read, "auth/token/lookup-self", json!({}))
            .await
            .unwrap();
    }

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let d: Vec<i64> = (1..=12).map(backoff).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    /// `VmRSS` and `VmHWM` of this process, in MiB.
    fn rss_mib() -> (u64, u64) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Not a test: the lease memory benchmark that bench/lease-memory.sh runs, in two processes over one SQLite
    /// file: `fill` issues LEASE_BENCH_N leases through the API, `load` unseals a fresh core over them, so its
    /// figures are what a restarted server holds for that many live leases (the rebuilt due queue).
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "benchmark, run by bench/lease-memory.sh"]
    async fn lease_memory_benchmark() {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is required (bench/lease-memory.sh)"));
        let dir = std::path::PathBuf::from(var("LEASE_BENCH_DIR"));
        let n: usize = var("LEASE_BENCH_N").parse().expect("LEASE_BENCH_N: a number");
        let seal: Arc<dyn leakstop_seal::Seal> =
            Arc::new(leakstop_seal::KeySeal::new(zeroize::Zeroizing::new(vec![7u8; 32])).unwrap());
        let storage = Arc::new(leakstop_storage::SqliteStorage::open(dir.join("leakstop.db")).unwrap());
        let core = core_on(storage, seal, 3600);
        let started = std::time::Instant::now();
        match var("LEASE_BENCH_PHASE").as_str() {
            "fill" => {
                let (_, root) = core.init(1, 1, None).await.unwrap();
                let e = Arc::new(Env { core, root });
                e.call(Operation::Update, "sys/mounts/play", json!({"type": "toy"}))
                    .await
                    .unwrap();
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..n {
                    if tasks.len() >= 64 {
                        tasks.join_next().await.unwrap().unwrap();
                    }
                    let e = e.clone();
                    tasks.spawn(async move { e.ticket(&format!("t{i:08}"), json!({"ttl": "24h"})).await });
                }
                while let Some(r) = tasks.join_next().await {
                    r.unwrap();
                }
                let (rss, hwm) = rss_mib();
                println!(
                    "fill: {n} leases in {:.1} s; RSS {rss} MiB, peak {hwm} MiB",
                    started.elapsed().as_secs_f64()
                );
            }
            "load" => {
                let (before, _) = rss_mib();
                core.auto_unseal().await.unwrap();
                let queued = core.unsealed().unwrap().leases.queue().len();
                assert_eq!(queued, n, "every stored lease is queued at unseal");
                let (rss, hwm) = rss_mib();
                println!(
                    "load: unseal with {queued} leases in {:.2} s; RSS {before} -> {rss} MiB, peak {hwm} MiB",
                    started.elapsed().as_secs_f64()
                );
            }
            other => panic!("LEASE_BENCH_PHASE={other}: use fill or load"),
        }
    }
}
