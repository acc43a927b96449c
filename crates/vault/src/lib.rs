//! The credential service: a Vault-compatible HTTP API over a sealed, encrypted store.
//!
//! Request path: `leakstop_server::http` (Vault's envelopes and status codes) → [`pipeline`] (canonical path, route, token,
//! policy, audit, commit) →
//! an engine ([`engines`]) → [`barrier`] (AES-256-GCM with the storage path as AAD, keyring under the root key) →
//! `leakstop_storage`. The root key is wrapped by a `leakstop_seal` seal (PKCS#11 HSM, Shamir shares or dev).
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

pub mod audit;
pub mod barrier;
pub mod core;
pub mod engine;
pub mod engines;
mod error;
pub mod fields;
pub mod leaks;
pub mod leases;
pub mod pipeline;
pub mod policy;
mod sys;
pub mod token;

pub use barrier::BarrierView;
pub use core::{ApiRequest, Core, CoreOptions, Reply};
pub use engine::{Backend, BackendFuture, LogicalRequest, LogicalResponse, Operation, Store};
pub use error::VaultError;
