//! The credential service's HTTP edge, over the domain in `leakstop_vault`: [`http`] maps Vault's URL space,
//! methods, token header and JSON envelopes onto `Core::handle`; [`server`] reads the TOML config, opens storage and
//! the seal, runs the listener (TLS, connection and body limits, in the order documented on `serve`) and the
//! background expiry sweep. Kept apart from the domain so the engines and the pipeline build and test without a web
//! framework, and apart from the client so `leakstop login`/`read` link no server code.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

pub mod forward;
pub mod ha;
pub mod http;
pub mod server;

pub use server::{DevOptions, ServerConfig, ServerError, run, run_dev};
