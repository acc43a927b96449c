//! KV secrets engine, version 2 as Vault (and version 1 for mounts with `options.version = "1"`).
//!
//! [`model`] holds the domain logic (versions, cas, soft delete, destroy, metadata), [`engine`] routes a request's
//! path and operation to it over the [`KvStorage`] trait, which the core's barrier view implements: every record is
//! encrypted there, with its storage path as associated data, before it reaches storage.

mod backend;
pub mod engine;
pub mod model;

pub use backend::KvBackend;
pub use engine::{KvEngine, KvOp, KvReply, KvStorage, StoreFuture, handle_v1};
pub use model::KvError;
