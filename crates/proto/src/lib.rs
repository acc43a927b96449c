//! Wire-level facts shared by the service, the CLI, the scanner and the tests: the credential format leakstop
//! issues (so the scanner can recognise exactly what the service mints), the typed Vault-compatible bodies
//! ([`api`]) and the redacting [`Secret`] that holds tokens and findings.
#![forbid(unsafe_code)]

pub mod api;
pub mod leaks;
pub mod secret;
pub mod token;

pub use secret::Secret;

pub use api::{Auth, Envelope, ErrorBody, Health, InitRequest, InitResponse, SealStatus};

/// Header carrying the client token (Vault's name, which every Vault client sends).
pub const TOKEN_HEADER: &str = "X-Vault-Token";
