//! The KV engine as a core [`Backend`]: routes the core's logical request to [`engine`](super::engine) and turns
//! its errors into what a client may see.

use std::sync::Arc;

use super::engine;
use super::model::KvError;
use crate::core::MountEntry;
use crate::engine::Store;
use crate::{Backend, BackendFuture, LogicalRequest, LogicalResponse, VaultError};

/// One KV mount (`version` 2 unless the mount says `options.version = "1"`).
pub struct KvBackend {
    v1: bool,
}

impl KvBackend {
    pub fn new(mount: &MountEntry) -> Arc<KvBackend> {
        Arc::new(KvBackend {
            v1: mount.options.get("version").map(String::as_str) == Some("1"),
        })
    }
}

impl From<KvError> for VaultError {
    /// Storage failures name storage keys (mount uuid, layout): they go to the server log, and the client gets a
    /// message without them.
    fn from(e: KvError) -> VaultError {
        match e {
            KvError::NotFound => VaultError::NotFound,
            KvError::Unsupported => VaultError::UnsupportedPath,
            KvError::CasMismatch | KvError::CasRequired | KvError::BadRequest(_) | KvError::TooLarge { .. } => {
                VaultError::BadRequest(e.to_string())
            }
            KvError::Corrupt { .. } | KvError::Storage(_) => {
                tracing::warn!(error = %e, "KV storage failure");
                VaultError::Internal("the KV engine could not read or write its storage (see the server log)".into())
            }
        }
    }
}

impl Backend for KvBackend {
    fn handle<'a>(&'a self, req: &'a LogicalRequest, store: &'a dyn Store) -> BackendFuture<'a, LogicalResponse> {
        Box::pin(async move {
            let reply = if self.v1 {
                engine::handle_v1(store, req).await
            } else {
                engine::handle(store, req).await
            };
            Ok(reply?)
        })
    }

    fn exists<'a>(&'a self, path: &'a str, store: &'a dyn Store) -> BackendFuture<'a, bool> {
        Box::pin(async move {
            if self.v1 {
                return Ok(true);
            }
            Ok(engine::exists(store, path).await?)
        })
    }

    /// v2 reaches one secret through `data/`, `metadata/`, `delete/`, `undelete/` and `destroy/`: one lock per
    /// secret, whatever the first segment. (v1 paths are the secret itself.)
    fn write_lock_key<'a>(&self, path: &'a str) -> &'a str {
        if self.v1 {
            return path;
        }
        path.split_once('/').map(|(_, r)| r).unwrap_or(path)
    }

    fn find_leaked<'a>(
        &'a self,
        value: &'a str,
        now: std::time::SystemTime,
        store: &'a dyn Store,
    ) -> BackendFuture<'a, Vec<crate::engine::StoredMatch>> {
        Box::pin(async move {
            if self.v1 {
                return Ok(Vec::new());
            }
            Ok(engine::find_leaked(store, value, super::model::to_nanos(now)).await?)
        })
    }

    fn effects_buffered(&self) -> bool {
        true
    }

    fn sensitive_fields(&self) -> &'static [&'static str] {
        &["data"]
    }
}
