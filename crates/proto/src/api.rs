//! The typed bodies of the Vault-compatible HTTP API that both the server (`leakstop_server::http`, the core's
//! `sys/*` endpoints) and the client (`leakstop_client`, the CLI) speak.
//!
//! Field order: the envelope and the auth block list their fields alphabetically, the order `serde_json` gives the
//! maps these bodies were built from before they were typed, so the bytes on the wire did not change. Types that
//! carry a token or key material hold it as a [`Secret`] and write their `Debug` by hand, so a `{:?}` in a log line
//! cannot print one.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::{Secret, serde_exposed};

/// Vault's error body: `{"errors": ["..."]}` (an empty list for a plain 404).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub errors: Vec<String>,
}

/// Vault's response envelope around `data` (and `auth` for logins and token creation).
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Envelope {
    pub auth: Option<Auth>,
    pub data: Option<Value>,
    pub lease_duration: u64,
    pub lease_id: String,
    pub mount_type: String,
    pub renewable: bool,
    /// The id of this request, also in the server's trace span and audit lines.
    pub request_id: String,
    /// `null` when there are none (Vault's spelling).
    pub warnings: Option<Vec<String>>,
    /// Response wrapping is not supported: always `null`.
    pub wrap_info: Option<Value>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `data` may be a secret read from KV or a dynamic credential: only whether there is one.
        f.debug_struct("Envelope")
            .field("request_id", &self.request_id)
            .field("lease_id", &self.lease_id)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field("data", &self.data.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// The `auth` block of a login or token-creation response.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Auth {
    pub accessor: String,
    #[serde(with = "serde_exposed")]
    pub client_token: Secret,
    pub entity_id: String,
    pub lease_duration: u64,
    /// `null` when the token has no metadata.
    pub metadata: Option<BTreeMap<String, String>>,
    /// MFA is not supported: always `null`.
    pub mfa_requirement: Option<Value>,
    pub num_uses: u64,
    pub orphan: bool,
    pub policies: Vec<String>,
    pub renewable: bool,
    pub token_policies: Vec<String>,
    pub token_type: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("client_token", &self.client_token)
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field("token_type", &self.token_type)
            .field("orphan", &self.orphan)
            .finish_non_exhaustive()
    }
}

/// `GET sys/seal-status` (also the answer to `sys/unseal`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SealStatus {
    #[serde(rename = "type")]
    pub seal_type: String,
    pub initialized: bool,
    pub sealed: bool,
    /// Shares needed to unseal.
    pub t: u64,
    /// Shares handed out at init.
    pub n: u64,
    /// Shares submitted so far.
    pub progress: u64,
    pub nonce: String,
    pub version: String,
    pub build_date: String,
    pub migration: bool,
    pub cluster_name: String,
    pub cluster_id: String,
    pub recovery_seal: bool,
    pub storage_type: String,
}

/// `GET sys/health` (the HTTP status says the same: 200 unsealed, 503 sealed, 501 not initialized).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    pub initialized: bool,
    pub sealed: bool,
    pub standby: bool,
    pub performance_standby: bool,
    pub replication_performance_mode: String,
    pub replication_dr_mode: String,
    pub server_time_utc: i64,
    pub version: String,
    pub cluster_name: String,
    pub cluster_id: String,
}

/// `PUT sys/init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitRequest {
    pub secret_shares: u64,
    pub secret_threshold: u64,
}

/// The answer to `PUT sys/init`: the unseal key shares (none under an auto seal) and the root token, shown once.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InitResponse {
    pub keys: Vec<String>,
    pub keys_base64: Vec<String>,
    pub recovery_keys: Vec<String>,
    pub recovery_keys_base64: Vec<String>,
    #[serde(with = "serde_exposed")]
    pub root_token: Secret,
}

impl fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitResponse")
            .field("keys", &format_args!("<{} redacted>", self.keys.len()))
            .field("root_token", &self.root_token)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "lkss_0123456789abcdefghijklmnopqrstuvwxyzAB";

    #[test]
    fn the_envelope_keeps_vaults_keys_and_prints_no_token() {
        let env = Envelope {
            request_id: "r-1".into(),
            auth: Some(Auth {
                client_token: TOKEN.into(),
                accessor: "lksa.x".into(),
                policies: vec!["default".into()],
                token_type: "service".into(),
                ..Auth::default()
            }),
            data: Some(serde_json::json!({ "password": "hunter2-hunter2" })),
            ..Envelope::default()
        };
        let wire = serde_json::to_string(&env).unwrap();
        // Byte for byte what the untyped `json!` maps gave clients before these types.
        let untyped = serde_json::json!({
            "request_id": "r-1", "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": { "password": "hunter2-hunter2" }, "wrap_info": null, "warnings": null, "mount_type": "",
            "auth": {
                "client_token": TOKEN, "accessor": "lksa.x", "policies": ["default"], "token_policies": [],
                "metadata": null, "lease_duration": 0, "renewable": false, "entity_id": "", "token_type": "service",
                "orphan": false, "mfa_requirement": null, "num_uses": 0,
            },
        });
        assert_eq!(wire, untyped.to_string());
        let back: Envelope = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.auth.as_ref().unwrap().client_token.expose(), TOKEN.as_bytes());
        let shown = format!("{env:?} {back:?}");
        assert!(!shown.contains(&TOKEN[8..]) && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn an_init_answer_prints_neither_keys_nor_token() {
        let init = InitResponse {
            keys: vec!["a1b2c3d4e5f6".into()],
            keys_base64: vec!["obLD1OX2".into()],
            root_token: TOKEN.into(),
            ..InitResponse::default()
        };
        let shown = format!("{init:?}");
        assert!(!shown.contains("a1b2c3") && !shown.contains(&TOKEN[8..]), "{shown}");
        let wire = serde_json::to_value(&init).unwrap();
        assert_eq!(wire["root_token"], TOKEN);
    }
}
