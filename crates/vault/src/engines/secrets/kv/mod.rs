//! KV secrets engine, version 2 as Vault (and version 1 for mounts with `options.version = "1"`).
//!
//! [`model`] holds the domain logic (versions, cas, soft delete, destroy, metadata, request fields), [`engine`]
//! routes a request's path and operation to it over the mount's barrier view, where every record is encrypted
//! with its storage path as associated data before it reaches storage.
//!
//! Limits (Vault has none of the first two): a secret keeps at most [`model::MAX_VERSIONS_LIMIT`] versions, and
//! one version's data is at most [`model::DEFAULT_MAX_VERSION_BYTES`] unless the mount's `config` sets
//! `max_version_bytes` (up to [`model::MAX_VERSION_BYTES_LIMIT`]); `custom_metadata` has Vault's bounds.

mod backend;
pub mod engine;
pub mod model;

pub use backend::KvBackend;
pub use model::KvError;
