//! Wire-level facts shared by the service, the CLI, the scanner and the tests: the credential format leakstop
//! issues (so the scanner can recognise exactly what the service mints) and the Vault-compatible error body.
#![forbid(unsafe_code)]

pub mod leaks;
pub mod token;

use serde::{Deserialize, Serialize};

/// Vault's error body: `{"errors": ["..."]}` (an empty list for a plain 404).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub errors: Vec<String>,
}

/// Header carrying the client token (Vault's name, which every Vault client sends).
pub const TOKEN_HEADER: &str = "X-Vault-Token";
