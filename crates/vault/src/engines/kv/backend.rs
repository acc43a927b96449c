//! The KV engine as a core [`Backend`]: maps the core's logical request onto [`KvEngine`] and the barrier view
//! onto [`KvStorage`].

use std::sync::Arc;

use serde_json::Value;

use super::engine::{KvEngine, KvOp, KvStorage, StoreFuture, handle_v1};
use super::model::KvError;
use crate::{Backend, BackendFuture, BarrierView, LogicalRequest, LogicalResponse, Operation, VaultError};

/// One KV mount (`version` 2 unless the mount says `options.version = "1"`).
pub struct KvBackend {
    engine: KvEngine,
    v1: bool,
}

impl KvBackend {
    pub fn new(version: Option<&str>) -> Arc<KvBackend> {
        Arc::new(KvBackend {
            engine: KvEngine::default(),
            v1: version == Some("1"),
        })
    }
}

struct Barrier<'a>(&'a BarrierView);

fn storage_err(e: impl std::fmt::Display) -> KvError {
    KvError::Storage(e.to_string())
}

impl KvStorage for Barrier<'_> {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.0.get(key).await.map_err(storage_err) })
    }
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.0.put(key, &value).await.map_err(storage_err) })
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.0.delete(key).await.map_err(storage_err) })
    }
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move { self.0.list(prefix).await.map_err(storage_err) })
    }
}

fn op(o: Operation) -> KvOp {
    match o {
        Operation::Read => KvOp::Read,
        Operation::Create => KvOp::Create,
        Operation::Update => KvOp::Update,
        Operation::Delete => KvOp::Delete,
        Operation::List => KvOp::List,
        Operation::Patch => KvOp::Patch,
    }
}

fn to_vault(e: KvError) -> VaultError {
    match e {
        KvError::NotFound => VaultError::NotFound,
        KvError::Unsupported => VaultError::UnsupportedPath,
        KvError::CasMismatch | KvError::CasRequired | KvError::BadRequest(_) => VaultError::BadRequest(e.to_string()),
        KvError::Corrupt { .. } | KvError::Storage(_) => VaultError::Internal(e.to_string()),
    }
}

impl Backend for KvBackend {
    fn handle<'a>(&'a self, req: &'a LogicalRequest, store: &'a BarrierView) -> BackendFuture<'a, LogicalResponse> {
        Box::pin(async move {
            let store = Barrier(store);
            let reply = if self.v1 {
                handle_v1(&store, op(req.op), &req.path, &req.data).await
            } else {
                self.engine
                    .handle(&store, op(req.op), &req.path, &req.data, &req.query, req.now)
                    .await
            }
            .map_err(to_vault)?;
            Ok(LogicalResponse {
                data: reply.data.map(|d: Value| d),
                status: (reply.status != 200).then_some(reply.status),
                ..Default::default()
            })
        })
    }

    fn exists<'a>(&'a self, path: &'a str, store: &'a BarrierView) -> BackendFuture<'a, bool> {
        Box::pin(async move {
            if self.v1 {
                return Ok(true);
            }
            self.engine.exists(&Barrier(store), path).await.map_err(to_vault)
        })
    }

    fn effects_buffered(&self) -> bool {
        true
    }

    fn sensitive_fields(&self) -> &'static [&'static str] {
        &["data"]
    }
}
