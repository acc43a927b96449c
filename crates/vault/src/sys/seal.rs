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
use crate::core::{ApiRequest, Core, RekeyStep, Reply, VERSION};
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
            ("sys/health", Operation::Read) => self.health(&req.query),
            ("sys/init", Operation::Read) => self.is_initialized().map(|i| Reply::raw(json!({ "initialized": i }))),
            ("sys/init", Operation::Update | Operation::Create) => self.init_endpoint(&req.data).await,
            ("sys/unseal", Operation::Update | Operation::Create) => self.unseal_endpoint(&req.data).await,
            ("sys/leader", Operation::Read) => self.leader_status(),
            _ => return None,
        })
    }

    /// `sys/leader`, as Vault answers it. Without HA this node is its own leader.
    fn leader_status(&self) -> Result<Reply, VaultError> {
        if !self.ha_enabled() {
            return Ok(Reply::raw(json!({
                "ha_enabled": false, "is_self": true, "leader_address": "", "leader_cluster_address": "",
                "performance_standby": false,
            })));
        }
        if self.is_sealed() {
            return Err(VaultError::Sealed);
        }
        let view = self.ha_view();
        let active = self.is_active();
        let address = view.leader.map(|l| l.api_addr).unwrap_or_default();
        // Vault's zero time on a node that is not active.
        let active_time = view
            .active_since
            .filter(|_| active)
            .and_then(rfc3339)
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
        Ok(Reply::raw(json!({
            "ha_enabled": true,
            "is_self": active,
            "active_time": active_time,
            // Nodes forward over the API address: there is no separate cluster port.
            "leader_address": address,
            "leader_cluster_address": address,
            "performance_standby": false,
            "performance_standby_last_remote_wal": 0,
        })))
    }

    /// `sys/health`: 200 active, 429 standby, 503 sealed, 501 not initialised; the `*code` query parameters and
    /// `standbyok` change the status as in Vault (load balancers send only healthy traffic to the active node).
    fn health(&self, query: &std::collections::HashMap<String, String>) -> Result<Reply, VaultError> {
        let init = self.is_initialized()?;
        let sealed = self.is_sealed();
        let standby = !sealed && self.is_standby();
        let code = |name: &str, default: u16| {
            query
                .get(name)
                .and_then(|v| v.parse::<u16>().ok())
                .filter(|c| (100..600).contains(c))
                .unwrap_or(default)
        };
        let flag = |name: &str| query.get(name).is_some_and(|v| v.is_empty() || v == "true" || v == "1");
        let status = if !init {
            code("uninitcode", 501)
        } else if sealed {
            code("sealedcode", 503)
        } else if standby && !flag("standbyok") {
            code("standbycode", 429)
        } else {
            code("activecode", 200)
        };
        let health = Health {
            initialized: init,
            sealed,
            standby,
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
        let printed: Vec<String> = keys.iter().map(|k| share_credential(k)).collect();
        raw(InitResponse {
            // Both fields carry the `lksu_` form (Vault's hex and base64 would be invisible to a scanner); clients
            // hand them back to `sys/unseal` as they are.
            keys: printed.clone(),
            keys_base64: printed,
            recovery_keys: Vec::new(),
            recovery_keys_base64: Vec::new(),
            root_token: root.into(),
        })
    }

    pub(super) fn rekey_init_endpoint(&self, data: &Map<String, Value>) -> Result<Reply, VaultError> {
        let mut f = Fields::new(data);
        let (n, t) = (
            share_count(&mut f, "secret_shares")?,
            share_count(&mut f, "secret_threshold")?,
        );
        if f.bool("backup")?.unwrap_or(false) || f.list("pgp_keys")?.is_some_and(|k| !k.is_empty()) {
            return Err(VaultError::bad(
                "PGP-encrypted shares and backups are not supported: rekey without pgp_keys and backup",
            ));
        }
        if f.bool("require_verification")?.unwrap_or(false) {
            return Err(VaultError::bad(
                "rekey verification is not supported: rekey with require_verification=false",
            ));
        }
        self.rekey_start(n, t).and_then(raw)
    }

    pub(super) fn rekey_update_endpoint(&self, data: &Map<String, Value>) -> Result<Reply, VaultError> {
        let mut f = Fields::new(data);
        let key = f
            .text("key")?
            .ok_or_else(|| VaultError::bad("field `key` is required: one current unseal key share"))?;
        let nonce = f
            .text("nonce")?
            .ok_or_else(|| VaultError::bad("field `nonce` is required: read it from GET sys/rekey/init"))?;
        match self.rekey_update(decode_share(&key)?, &nonce)? {
            RekeyStep::Progress(status) => raw(status),
            RekeyStep::Done { nonce, shares } => {
                let keys: Vec<String> = shares.iter().map(|k| share_credential(k)).collect();
                raw(json!({
                "complete": true,
                "nonce": nonce,
                "keys": keys,
                "keys_base64": keys,
                "pgp_fingerprints": null,
                "backup": false,
                "verification_required": false,
                }))
            }
        }
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
        let share = decode_share(&key)?;
        self.submit_unseal_key(share).await?;
        self.seal_status().and_then(raw)
    }
}

/// One unseal key share as a user pastes it: `lksu_…` (checksum verified), or Vault's hex or base64.
fn decode_share(key: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, VaultError> {
    let share = if key.starts_with("lksu_") {
        share_from_credential(key).map_err(|e| match e {
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
        hex::decode(key).or_else(|_| B64.decode(key)).map_err(|_| {
            VaultError::bad(
                "the unseal key is neither an `lksu_` share, hex nor base64: paste one share exactly as \
             `operator init` printed it",
            )
        })?
    };
    Ok(zeroize::Zeroizing::new(share))
}

/// `secret_shares` / `secret_threshold`: 1 to 255.
fn share_count<'a>(f: &mut Fields<'a>, name: &'a str) -> Result<u8, VaultError> {
    let n = f
        .u64(name)?
        .ok_or_else(|| VaultError::bad(format!("field `{name}` is required")))?;
    u8::try_from(n).map_err(|_| VaultError::bad(format!("`{name}` must be at most 255")))
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
        // Rekeying needs a sudo token as well as the shares: unlike Vault's open `sys/rekey/*`, nobody without a
        // token can start, cancel or watch a rekey, and every step is audited.
        ("rekey/init", Read) => c.core.rekey_status().and_then(raw),
        ("rekey/init", Update | Create) => c.core.rekey_init_endpoint(&c.lr.data),
        ("rekey/init", Delete) => {
            c.core.rekey_cancel();
            Ok(Reply::empty())
        }
        ("rekey/update", Update | Create) => c.core.rekey_update_endpoint(&c.lr.data),
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
