//! The logical request an engine sees (path relative to its mount, operation, body) and what it answers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::{BarrierView, VaultError};

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
    pub now: SystemTime,
    /// The mount the request arrived at (`github/`), for lease records.
    pub mount_path: String,
    /// The keyed hash of the caller's token (leases are attached to it, and revoked with it).
    pub token_hash: Option<String>,
}

/// An engine's answer. `status` overrides 200/204 (e.g. KV's 404 that still carries metadata).
#[derive(Debug, Default)]
pub struct LogicalResponse {
    pub data: Option<Value>,
    pub status: Option<u16>,
    pub auth: Option<Value>,
    pub lease_id: Option<String>,
    pub lease_duration: u64,
    pub renewable: bool,
    pub warnings: Vec<String>,
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

/// A secrets engine mounted at a path.
pub trait Backend: Send + Sync {
    fn handle<'a>(&'a self, req: &'a LogicalRequest, store: &'a BarrierView) -> BackendFuture<'a, LogicalResponse>;

    /// Mount-relative paths callable without a token (Vault's `PathsSpecial.Unauthenticated`), matched after
    /// routing: an exact path (`login`), or a prefix when it ends in `*`. Everything else needs a token and passes
    /// the ACL. Deliberately no default beyond "none": an engine opts each open path in by name.
    fn unauthenticated_paths(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether `path` exists, so a POST/PUT counts as `create` or `update` for policies (Vault's existence check).
    fn exists<'a>(&'a self, _path: &'a str, _store: &'a BarrierView) -> BackendFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    /// Revoke a credential this engine issued under `lease` (called when the lease or its token is revoked).
    fn revoke<'a>(&'a self, _lease: &'a crate::leases::Lease) -> BackendFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// True when every effect of a request is a write through the [`BarrierView`] (buffered until the response is
    /// audited): such requests may run while their request audit line is still being flushed.
    fn effects_buffered(&self) -> bool {
        false
    }

    /// Top-level request fields whose values the audit log must HMAC (all strings are HMACed anyway).
    fn sensitive_fields(&self) -> &'static [&'static str] {
        &[]
    }
}
