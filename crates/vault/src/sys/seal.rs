//! The seal lifecycle: `sys/init`, `sys/unseal`, `sys/seal-status`, `sys/health`, `sys/leader` (open, and served
//! while sealed), and with a token `sys/seal`, `sys/rotate` and `sys/key-status`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use leakstop_proto::token::{ShareError, share_credential, share_from_credential};
use leakstop_proto::{Health, InitResponse, SealStatus};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::SysCall;
use crate::core::{ApiRequest, Core, Reply, VERSION};
use crate::engine::unix_seconds;
use crate::fields::Fields;
use crate::{Operation, VaultError};

impl Core {
    /// `sys/seal-status` body.
    pub fn seal_status(&self) -> Result<SealStatus, VaultError> {
        let cfg = self.seal_config()?;
        let (t, n) = cfg
            .as_ref()
            .map(|c| (c.secret_threshold.max(1), c.secret_shares.max(1)))
            .unwrap_or((0, 0));
        Ok(SealStatus {
            seal_type: self.seal_kind().as_str().into(),
            initialized: cfg.is_some(),
            sealed: self.is_sealed(),
            t: t.into(),
            n: n.into(),
            progress: self.unseal_progress() as u64,
            nonce: String::new(),
            version: VERSION.into(),
            build_date: String::new(),
            migration: false,
            cluster_name: self.options.cluster_name.clone(),
            cluster_id: String::new(),
            recovery_seal: self.seal_kind() == leakstop_seal::SealKind::Pkcs11,
            storage_type: self.options.storage_type.clone(),
        })
    }

    /// Endpoints that work without a token and while sealed.
    pub(crate) async fn unauthenticated(self: &Arc<Self>, req: &ApiRequest) -> Option<Result<Reply, VaultError>> {
        let op = req.op;
        Some(match (req.path.as_str(), op) {
            ("sys/seal-status", Operation::Read) => self.seal_status().and_then(raw),
            ("sys/health", Operation::Read) => self.health(),
            ("sys/init", Operation::Read) => self.is_initialized().map(|i| Reply::raw(json!({ "initialized": i }))),
            ("sys/init", Operation::Update | Operation::Create) => self.init_endpoint(&req.data).await,
            ("sys/unseal", Operation::Update | Operation::Create) => self.unseal_endpoint(&req.data).await,
            ("sys/leader", Operation::Read) => Ok(Reply::raw(json!({
                "ha_enabled": false, "is_self": true, "leader_address": "", "leader_cluster_address": "",
                "performance_standby": false,
            }))),
            _ => return None,
        })
    }

    fn health(&self) -> Result<Reply, VaultError> {
        let init = self.is_initialized()?;
        let sealed = self.is_sealed();
        let status = if !init {
            501
        } else if sealed {
            503
        } else {
            200
        };
        let health = Health {
            initialized: init,
            sealed,
            standby: false,
            performance_standby: false,
            replication_performance_mode: "disabled".into(),
            replication_dr_mode: "disabled".into(),
            server_time_utc: unix_seconds(std::time::SystemTime::now()),
            version: VERSION.into(),
            cluster_name: self.options.cluster_name.clone(),
            cluster_id: String::new(),
        };
        Ok(Reply::raw_status(status, to_value(&health)?))
    }

    async fn init_endpoint(self: &Arc<Self>, data: &Map<String, Value>) -> Result<Reply, VaultError> {
        let mut f = Fields::new(data);
        let shares = f.u64("secret_shares")?.unwrap_or(5);
        let threshold = f.u64("secret_threshold")?.unwrap_or(3);
        if shares > 255 || threshold > 255 {
            return Err(VaultError::bad(
                "secret_shares and secret_threshold must be at most 255",
            ));
        }
        let (keys, root) = self.init(shares as u8, threshold as u8, None).await?;
        raw(InitResponse {
            // Both fields carry the `lksu_` form (Vault's hex and base64 would be invisible to a scanner); clients
            // hand them back to `sys/unseal` as they are.
            keys: keys.iter().map(|k| share_credential(k)).collect(),
            keys_base64: keys.iter().map(|k| share_credential(k)).collect(),
            recovery_keys: Vec::new(),
            recovery_keys_base64: Vec::new(),
            root_token: root.into(),
        })
    }

    async fn unseal_endpoint(self: &Arc<Self>, data: &Map<String, Value>) -> Result<Reply, VaultError> {
        let mut f = Fields::new(data);
        if f.bool("reset").unwrap_or(None).unwrap_or(false) {
            self.reset_unseal();
            return self.seal_status().and_then(raw);
        }
        let key = f
            .text("key")?
            .ok_or_else(|| VaultError::bad("field `key` is required: one unseal key share (hex or base64)"))?;
        let share = if key.starts_with("lksu_") {
            share_from_credential(&key).map_err(|e| match e {
                ShareError::Checksum => VaultError::bad(
                    "the unseal key's checksum does not match: a character was mistyped or lost; paste the share \
                     exactly as `operator init` printed it",
                ),
                ShareError::Malformed => VaultError::bad(
                    "the unseal key is not a whole `lksu_` share: paste the share exactly as `operator init` printed it",
                ),
            })?
        } else {
            // Hex or base64: shares of servers initialised before shares were `lksu_` credentials.
            hex::decode(&key).or_else(|_| B64.decode(&key)).map_err(|_| {
                VaultError::bad(
                    "the unseal key is neither an `lksu_` share, hex nor base64: paste one share exactly as \
                     `operator init` printed it",
                )
            })?
        };
        let share = zeroize::Zeroizing::new(share);
        self.submit_unseal_key(share).await?;
        self.seal_status().and_then(raw)
    }
}

/// A typed body as Vault's raw (unenveloped) answer.
fn raw(body: impl Serialize) -> Result<Reply, VaultError> {
    to_value(&body).map(Reply::raw)
}

fn to_value(body: &impl Serialize) -> Result<Value, VaultError> {
    serde_json::to_value(body).map_err(|e| VaultError::Internal(format!("cannot encode a response: {e}")))
}

/// `sys/seal`, `sys/rotate`, `sys/key-status`.
pub(super) fn handle(c: &SysCall<'_>, rest: &str) -> Result<Reply, VaultError> {
    use Operation::*;
    match (rest, c.lr.op) {
        ("seal", Update | Create) => {
            c.core.seal();
            Ok(Reply::empty())
        }
        // Takes effect at once: the new term is stored before it is used (see `Barrier::rotate`).
        ("rotate", Update | Create) => {
            c.st.barrier.rotate(c.lr.now_unix())?;
            Ok(Reply::empty())
        }
        ("key-status", Read) => {
            let k = c.st.barrier.key_status();
            Ok(Reply::data(
                json!({ "term": k.term, "install_time": rfc3339(k.installed), "encryptions": k.encryptions_hint }),
            ))
        }
        _ => Err(VaultError::UnsupportedPath),
    }
}

/// Unix seconds as Vault prints times (`null` when out of range).
pub(super) fn rfc3339(t: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
}
