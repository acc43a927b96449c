//! Storage backends for the credential service.
//!
//! The service only ever stores ciphertext produced by its barrier; a backend is a plain ordered key-value store
//! with Vault's listing semantics and atomic multi-key transactions. Three backends live here:
//! [`SqliteStorage`] (the embedded, durable, crash-safe default: one file plus SQLite's `-wal`/`-shm`/`.lock`
//! companions), [`PostgresStorage`] (shared by several server nodes, with a leader lock for HA: see the
//! [`postgres`] module) and [`MemoryStorage`] (dev mode, tests). Every backend must pass
//! [`conformance::run_all`].
//!
//! # Blocking
//! The trait is synchronous. On [`SqliteStorage`], `get`/`list` take microseconds when pages are cached (a
//! pooled read connection, no lock shared with writers), while `put`/`delete`/`transaction` block until the
//! group-commit batch containing the write is fsynced: typically 1-10 ms, longer on slow disks. Async callers
//! should run writes through `tokio::task::spawn_blocking` (or `block_in_place` on the multi-threaded runtime);
//! reads are cheap enough to call inline. [`MemoryStorage`] never blocks beyond a lock. [`PostgresStorage`] costs a
//! network round trip per call; it runs them on threads of its own, so calling it from a runtime thread only
//! blocks that thread.
#![forbid(unsafe_code)]

pub mod conformance;
mod memory;
pub mod postgres;
mod sqlite;

pub use memory::MemoryStorage;
pub use postgres::{PgHaLock, PostgresConfig, PostgresStorage};
pub use sqlite::{CommitStats, SqliteStorage};

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

/// The `[storage]` table of the server config:
///
/// ```toml
/// [storage]
/// type = "sqlite"                        # or "memory" (nothing persists; dev and tests)
/// path = "/var/lib/leakstop/leakstop.db"
/// ```
///
/// or `type = "postgresql"` with the keys of [`PostgresConfig`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    Sqlite { path: PathBuf },
    Memory,
    Postgresql(PostgresConfig),
}

impl StorageConfig {
    /// Open the configured backend.
    pub fn open(&self) -> Result<Arc<dyn Storage>, StorageError> {
        Ok(match self {
            StorageConfig::Sqlite { path } => Arc::new(SqliteStorage::open(path)?),
            StorageConfig::Memory => Arc::new(MemoryStorage::new()),
            StorageConfig::Postgresql(cfg) => Arc::new(PostgresStorage::open(cfg)?),
        })
    }

    /// Open the configured backend with its leader lock when the backend is shared between nodes and HA is on.
    /// With `ha_enabled`, every write through `storage` is refused with [`StorageError::NotLeader`] until `ha`
    /// has been acquired.
    pub fn open_ha(&self) -> Result<Opened, StorageError> {
        if let StorageConfig::Postgresql(cfg) = self
            && cfg.ha_enabled
        {
            let (storage, lock) = PostgresStorage::open_ha(cfg)?;
            return Ok(Opened {
                storage: Arc::new(storage),
                ha: Some(Arc::new(lock)),
            });
        }
        Ok(Opened {
            storage: self.open()?,
            ha: None,
        })
    }
}

/// An opened backend and, for a shared backend with HA on, its leader lock.
pub struct Opened {
    pub storage: Arc<dyn Storage>,
    pub ha: Option<Arc<dyn HaLock>>,
}

/// One step of an atomic [`Storage::transaction`].
#[derive(Clone, PartialEq, Eq)]
pub enum TxnOp {
    Put(String, Vec<u8>),
    Delete(String),
}

impl TxnOp {
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Put(k, _) | TxnOp::Delete(k) => k,
        }
    }
}

// Values are barrier ciphertext but may be anything in tests: never print them.
impl std::fmt::Debug for TxnOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxnOp::Put(k, v) => write!(f, "Put({k:?}, <{} bytes>)", v.len()),
            TxnOp::Delete(k) => write!(f, "Delete({k:?})"),
        }
    }
}

/// A key-value store with Vault semantics.
pub trait Storage: Send + Sync {
    /// The value at `key`, or `None`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Create or overwrite `key`. Durable once this returns `Ok`.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError>;
    /// Remove `key`; removing a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Immediate children of `prefix` (which normally ends in `/` or is empty): leaf keys as their name relative
    /// to `prefix`, sub-folders once with a trailing `/`, sorted. An unknown prefix gives an empty list.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Apply all `ops` in order, atomically: either all are visible afterwards or none.
    fn transaction(&self, ops: &[TxnOp]) -> Result<(), StorageError>;
}

macro_rules! forward_storage {
    ($($ptr:ident),*) => {$(
        /// Shared handles are storages too, so `Arc<SqliteStorage>` can go wherever a `Storage` is expected.
        impl<T: Storage + ?Sized> Storage for $ptr<T> {
            fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
                (**self).get(key)
            }
            fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
                (**self).put(key, value)
            }
            fn delete(&self, key: &str) -> Result<(), StorageError> {
                (**self).delete(key)
            }
            fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
                (**self).list(prefix)
            }
            fn transaction(&self, ops: &[TxnOp]) -> Result<(), StorageError> {
                (**self).transaction(ops)
            }
        }
    )*};
}
forward_storage!(Arc, Box);

/// Who holds the active role of an HA cluster (`sys/leader`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderInfo {
    /// The holder's node id (random per process start).
    pub node_id: String,
    /// The holder's `api_addr`, where standbys forward requests.
    pub api_addr: String,
    /// Unix seconds when the holder became active.
    pub since: i64,
    /// Incremented on every takeover; writes are fenced on it.
    pub epoch: i64,
}

/// The leader lock of a storage backend that more than one server node can share (PostgreSQL). One node is
/// active at a time. The backend fences every write on the lock: once [`HaLock::holds`] would answer `false`, a
/// write through the shared storage fails with [`StorageError::NotLeader`] rather than landing, so a node that lost
/// the lock can never write.
///
/// Calls block (network round trips); async callers use `spawn_blocking`.
pub trait HaLock: Send + Sync {
    /// Try once to become the active node. `Ok(true)` when this node now holds the lock (or already did).
    fn try_acquire(&self, node_id: &str, api_addr: &str) -> Result<bool, StorageError>;
    /// Whether this node still holds the lock, as last observed (cheap: no round trip).
    fn holds(&self) -> bool;
    /// Check with the database that the lock is still held (and update what [`HaLock::holds`] answers).
    fn check(&self) -> Result<bool, StorageError>;
    /// Give the lock up at once (graceful shutdown, step-down).
    fn release(&self) -> Result<(), StorageError>;
    /// The current active node, if any.
    fn leader(&self) -> Result<Option<LeaderInfo>, StorageError>;
}

/// Storage errors. They name the file or key involved; they never contain values.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error(
        "storage file {path} is in use by another leakstop server (lock {lock} is held); stop that server or point `storage.path` elsewhere"
    )]
    Locked { path: String, lock: String },
    #[error(
        "{path} is not a leakstop database ({reason}); point `storage.path` at a new file or an existing leakstop database"
    )]
    NotLeakstop { path: String, reason: String },
    #[error("cannot open storage file {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("storage {op} failed for key `{key}`: {reason}")]
    Backend {
        op: &'static str,
        key: String,
        reason: String,
    },
    #[error("storage commit failed, nothing in this write was saved: {reason}")]
    Commit { reason: String },
    #[error("invalid storage key `{key}`: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("this node is not the active node (the HA lock is held elsewhere or was lost); the write was refused")]
    NotLeader,
    #[error("the storage writer has stopped (an earlier fatal error or shutdown); restart the server")]
    WriterStopped,
    /// A network backend cannot be reached. `target` is `user@host:port/database`, never a password.
    #[error(
        "storage {op} failed: PostgreSQL at {target} cannot be reached ({reason}); the server reconnects by itself, retry shortly"
    )]
    Unavailable {
        op: &'static str,
        target: String,
        reason: String,
    },
    /// The backend's configuration cannot work (bad URL, table name, TLS files, missing tables).
    #[error("storage configuration: {0}")]
    Config(String),
}

pub(crate) fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::InvalidKey {
            key: String::new(),
            reason: "keys must not be empty".into(),
        });
    }
    if key.contains('\0') {
        return Err(StorageError::InvalidKey {
            key: key.replace('\0', "\\0"),
            reason: "keys must not contain NUL".into(),
        });
    }
    Ok(())
}

/// Reduce keys that all start with `prefix` to Vault's immediate-children listing.
pub(crate) fn immediate_children<'a>(prefix: &str, keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for key in keys {
        let rest = &key[prefix.len()..];
        match rest.find('/') {
            Some(i) => out.insert(rest[..=i].to_owned()),
            None => out.insert(rest.to_owned()),
        };
    }
    out.remove("");
    out.into_iter().collect()
}

/// The smallest string greater than every string starting with `prefix` (`None` when there is none).
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}
