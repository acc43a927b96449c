//! The engine API: what a secrets engine or auth method sees (a [`LogicalRequest`] and a [`Store`] scoped to its
//! mount) and what it answers (a [`LogicalResponse`], possibly carrying a [`NewLease`] or a [`LoginSpec`]).
//!
//! Engines never see the core: the core records the leases an engine returns and mints the tokens a login asks
//! for, in the same audited commit as the engine's own buffered writes. Adding an engine means one folder under
//! `engines/` that implements [`Backend`], plus one registration line in `engines/mod.rs`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::barrier::BufferedOp;
use crate::leases::Lease;

/// Vault's operations. HTTP methods map onto them: GET → read (list with `?list=true`), LIST → list, POST/PUT →
/// create or update (create when the target does not exist yet), DELETE → delete, PATCH → patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    Create,
    Update,
    Delete,
    List,
    Patch,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::Patch => "patch",
        }
    }

    pub fn is_write(self) -> bool {
        !matches!(self, Operation::Read | Operation::List)
    }
}

/// A request as an engine sees it.
pub struct LogicalRequest {
    pub op: Operation,
    /// Relative to the mount (`data/app/db` for `secret/data/app/db`).
    pub path: String,
    pub data: Map<String, Value>,
    pub query: HashMap<String, String>,
    /// The request's one clock reading: every expiry the engine computes starts from it.
    pub now: SystemTime,
    /// Whether a token authenticated the request (false only on the paths the engine declares unauthenticated).
    pub authenticated: bool,
}

impl LogicalRequest {
    /// [`LogicalRequest::now`] as Unix seconds.
    pub fn now_unix(&self) -> i64 {
        unix_seconds(self.now)
    }
}

/// `t` as Unix seconds (0 before the epoch), the form every stored expiry takes.
pub fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A credential an engine issued and wants revoked when its time is up or its token goes: the core names it
/// (`<mount><request path>/<random>`), stores it with the caller's token and answers its id, in the commit that
/// carries the engine's writes.
#[derive(Clone)]
pub struct NewLease {
    pub ttl: u64,
    /// No renewal extends the lease past issue time + this (0: the mount's max lease TTL, else 32 days).
    pub max_ttl: u64,
    pub renewable: bool,
    /// What [`Backend::revoke`] needs later (never returned to clients).
    pub internal: Value,
    /// The credential handed out, when a leak report of it should revoke the lease: the core indexes it by a
    /// keyed hash (never in clear).
    pub credential: Option<Zeroizing<String>>,
}

/// What an auth method's login asks for: the core mints the token, so no engine ever holds one.
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct LoginSpec {
    pub policies: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub display_name: String,
    pub path: String,
    #[serde(default)]
    pub ttl: u64,
    #[serde(default)]
    pub max_ttl: u64,
    /// A periodic token: renewable by this much each time (within `max_ttl`).
    #[serde(default)]
    pub period: u64,
    #[serde(default)]
    pub num_uses: u64,
    #[serde(default)]
    pub no_default_policy: bool,
}

/// An engine's answer. `status` overrides 200/204 (e.g. KV's 404 that still carries metadata).
#[derive(Default)]
pub struct LogicalResponse {
    pub data: Option<Value>,
    pub status: Option<u16>,
    /// A login's token to mint (auth methods only).
    pub login: Option<LoginSpec>,
    /// A credential to track as a lease (secrets engines).
    pub lease: Option<NewLease>,
    pub warnings: Vec<String>,
}

/// Redacted: a response may carry secret data and the parameters of a token to mint; `Debug` shows its shape.
impl std::fmt::Debug for LogicalResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicalResponse")
            .field("status", &self.status)
            .field("data", &self.data.as_ref().map(|_| "<redacted>"))
            .field("login", &self.login.as_ref().map(|_| "<redacted>"))
            .field("lease", &self.lease.as_ref().map(|l| l.ttl))
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl LogicalResponse {
    /// 200 with `data`.
    pub fn data(data: Value) -> LogicalResponse {
        LogicalResponse {
            data: Some(data),
            ..Default::default()
        }
    }

    /// 204.
    pub fn no_content() -> LogicalResponse {
        LogicalResponse {
            status: Some(204),
            ..Default::default()
        }
    }

    /// A LIST answer (`{"keys": [...]}`), or Vault's 404 when there is nothing to list.
    pub fn keys(keys: Vec<String>) -> Result<LogicalResponse, VaultError> {
        if keys.is_empty() {
            return Err(VaultError::NotFound);
        }
        Ok(LogicalResponse::data(serde_json::json!({ "keys": keys })))
    }
}

pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, VaultError>> + Send + 'a>>;

/// The storage an engine sees: keys relative to its mount, values in clear (the production store, the barrier
/// view, encrypts them with their full path as associated data). Writes are buffered until the core commits the
/// request; reads see the request's own buffered writes.
pub trait Store: Send + Sync {
    /// The value at `key`, zeroized when dropped.
    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Option<Zeroizing<Vec<u8>>>>;
    fn put<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BackendFuture<'a, ()>;
    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, ()>;
    /// Committed keys directly under `prefix` (a trailing `/` marks a folder).
    fn list<'a>(&'a self, prefix: &'a str) -> BackendFuture<'a, Vec<String>>;
    /// A keyed hash of `value` (hex), under a key the engine never sees: for indexes that find a value without
    /// storing it (KV's index of stored strings, which leak reports search).
    fn keyed_hash(&self, value: &[u8]) -> Result<String, VaultError>;
    /// Write `value` at `key` durably now, outside the request's commit (and never undone by it): for records
    /// that must be stored before an effect outside leakstop happens (a password written ahead of setting it in
    /// a database). Also drops any buffered write of the same key.
    fn put_now<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BackendFuture<'a, ()>;
    /// Delete `key` durably now, outside the request's commit (see [`Store::put_now`]).
    fn delete_now<'a>(&'a self, key: &'a str) -> BackendFuture<'a, ()>;
}

/// A store in memory, for engine tests: the same buffering contract as the barrier view, [`MemStore::commit`]
/// standing in for the core's commit.
#[derive(Default)]
pub struct MemStore {
    index_key: std::sync::OnceLock<[u8; 32]>,
    committed: Mutex<BTreeMap<String, Zeroizing<Vec<u8>>>>,
    pending: Mutex<Vec<BufferedOp>>,
}

impl MemStore {
    /// Apply the buffered writes.
    pub fn commit(&self) {
        let ops = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut map = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        for op in ops {
            match op {
                BufferedOp::Put(k, v) => map.insert(k, v),
                BufferedOp::Delete(k) => map.remove(&k),
            };
        }
    }

    /// Drop the buffered writes (what the core does when a request fails).
    pub fn discard(&self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn buffer(&self, op: BufferedOp) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }
}

impl Store for MemStore {
    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        Box::pin(async move {
            let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(op) = pending.iter().rev().find(|op| op.key() == key) {
                return Ok(match op {
                    BufferedOp::Put(_, v) => Some(v.clone()),
                    BufferedOp::Delete(_) => None,
                });
            }
            drop(pending);
            Ok(self
                .committed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .cloned())
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BackendFuture<'a, ()> {
        self.buffer(BufferedOp::Put(key.into(), Zeroizing::new(value.to_vec())));
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, ()> {
        self.buffer(BufferedOp::Delete(key.into()));
        Box::pin(async { Ok(()) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BackendFuture<'a, Vec<String>> {
        Box::pin(async move {
            let map = self.committed.lock().unwrap_or_else(|e| e.into_inner());
            let mut out: Vec<String> = Vec::new();
            for k in map.keys().filter_map(|k| k.strip_prefix(prefix)) {
                let item = match k.find('/') {
                    Some(i) => k.get(..=i).unwrap_or(k),
                    None => k,
                };
                if out.last().map(String::as_str) != Some(item) {
                    out.push(item.to_string());
                }
            }
            Ok(out)
        })
    }

    fn put_now<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BackendFuture<'a, ()> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|op| op.key() != key);
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), Zeroizing::new(value.to_vec()));
        Box::pin(async { Ok(()) })
    }

    fn delete_now<'a>(&'a self, key: &'a str) -> BackendFuture<'a, ()> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|op| op.key() != key);
        self.committed.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        Box::pin(async { Ok(()) })
    }

    fn keyed_hash(&self, value: &[u8]) -> Result<String, VaultError> {
        use hmac::{Hmac, Mac};
        let key = self.index_key.get_or_init(rand::random);
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
            .map_err(|_| VaultError::Internal("the index key is unusable".into()))?;
        mac.update(value);
        Ok(hex::encode(mac.finalize().into_bytes()))
    }
}

/// Where an engine stores a value a leak report named: a path relative to the mount (`data/app` for KV v2) and
/// the version holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMatch {
    pub path: String,
    pub version: u64,
    /// The engine replaced the value where it is used (a static role's password), rather than only flagging it.
    pub rotated: bool,
}

/// A secrets engine or auth method mounted at a path.
pub trait Backend: Send + Sync {
    fn handle<'a>(&'a self, req: &'a LogicalRequest, store: &'a dyn Store) -> BackendFuture<'a, LogicalResponse>;

    /// Mount-relative paths callable without a token (Vault's `PathsSpecial.Unauthenticated`), matched after
    /// routing: an exact path (`login`), or a prefix when it ends in `*`. Everything else needs a token and passes
    /// the ACL. Deliberately no default beyond "none": an engine opts each open path in by name.
    fn unauthenticated_paths(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether `path` exists, so a POST/PUT counts as `create` or `update` for policies (Vault's existence check).
    fn exists<'a>(&'a self, _path: &'a str, _store: &'a dyn Store) -> BackendFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    /// The name of the one lock that serialises writes to what `path` addresses, from the engine's read through
    /// the core's commit. Paths naming the same thing must share it (KV v2 reaches one secret through `data/`,
    /// `metadata/`, `delete/`, `undelete/` and `destroy/`).
    fn write_lock_key<'a>(&self, path: &'a str) -> &'a str {
        path
    }

    /// Revoke a credential this engine issued under `lease` (when the lease expires, is revoked, or its token
    /// is). `store` is the engine's mount store, as in [`Backend::handle`]. An error keeps the lease for a retry.
    fn revoke<'a>(&'a self, _lease: &'a Lease, _store: &'a dyn Store) -> BackendFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Extend the credential of `lease` until `new_expire` (unix seconds, already capped by the lease's max TTL)
    /// when it is renewed. The default accepts: credentials whose validity the engine does not enforce itself
    /// only live as long as their lease. An error leaves the lease's expiry unchanged.
    fn renew<'a>(&'a self, _lease: &'a Lease, _new_expire: i64, _store: &'a dyn Store) -> BackendFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// True when every effect of a request is a write through the [`Store`] (buffered until the response is
    /// audited): such requests may run while their request audit line is still being flushed.
    fn effects_buffered(&self) -> bool {
        false
    }

    /// Where this engine stores `value`, for a leak report: each place found is marked as leaked in the engine's
    /// own metadata (a write through `store`, committed with the report) and returned. Engines that store no
    /// user values find nothing.
    fn find_leaked<'a>(
        &'a self,
        _value: &'a str,
        _now: SystemTime,
        _store: &'a dyn Store,
    ) -> BackendFuture<'a, Vec<StoredMatch>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Work the engine does on its own schedule (the database engine's static-role rotations), called by the
    /// server's periodic pass with that pass's clock reading. Buffered writes through `store` are committed when
    /// it returns; what must be durable before an outside effect goes through [`Store::put_now`]. An error is
    /// logged and the next pass calls again.
    fn tick<'a>(&'a self, _now: SystemTime, _store: &'a dyn Store) -> BackendFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Top-level request fields whose values the audit log must HMAC (all strings are HMACed anyway).
    fn sensitive_fields(&self) -> &'static [&'static str] {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_buffers_until_commit() {
        let s = MemStore::default();
        s.put("a/1", b"x").await.unwrap();
        assert_eq!(
            &s.get("a/1").await.unwrap().unwrap()[..],
            b"x",
            "a request reads its own write"
        );
        assert!(
            s.list("a/").await.unwrap().is_empty(),
            "listing shows committed keys only"
        );
        s.commit();
        s.put("a/b/2", b"y").await.unwrap();
        s.delete("a/1").await.unwrap();
        assert!(s.get("a/1").await.unwrap().is_none());
        s.discard();
        assert_eq!(
            s.list("a/").await.unwrap(),
            vec!["1"],
            "a discarded request changed nothing"
        );
        s.put("a/b/2", b"y").await.unwrap();
        s.commit();
        assert_eq!(s.list("a/").await.unwrap(), vec!["1", "b/"]);
    }
}
