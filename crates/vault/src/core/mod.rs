//! The core: seal state, the unsealed barrier and everything behind it (mount tables, token store, policies).
//! [`seal`] initialises, unseals and seals it; [`mounts`] keeps the mount tables and routes paths to engines; the
//! request pipeline that runs every API call through them is in [`crate::pipeline`].

mod ha;
mod mounts;
mod seal;

pub use ha::HaView;
pub use seal::{RekeyStatus, RekeyStep};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use leakstop_proto::Auth;
use leakstop_seal::{Seal, SealKind, Zeroizing};
use leakstop_storage::Storage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::audit::{AuditAuth, AuditBroker, DeviceConfig};
use crate::barrier::Barrier;
use crate::pipeline::Effects;
use crate::policy::{Acl, Policy};
use crate::token::{TokenEntry, TokenStore};
use crate::{Backend, Operation, VaultError};

pub(crate) const SEAL_CONFIG_PATH: &str = "core/seal-config";
pub(crate) const ROOT_KEY_PATH: &str = "core/root-key";
pub(crate) const MOUNTS_PATH: &str = "core/mounts";
pub(crate) const AUTH_PATH: &str = "core/auth";
pub(crate) const AUDIT_PATH: &str = "core/audit";
pub(crate) const AUDIT_KEY_PATH: &str = "core/audit-hmac-key";
pub(crate) const WRITE_STRIPES: usize = 256;

/// The version reported by `sys/seal-status` and `sys/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Stored in clear: says how to unseal, holds no secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealConfigRecord {
    #[serde(rename = "type")]
    pub kind: SealKind,
    pub secret_shares: u8,
    pub secret_threshold: u8,
}

/// A mounted secrets engine or auth method, as persisted in the mount tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountEntry {
    /// With trailing slash, e.g. `secret/`.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    pub accessor: String,
    pub uuid: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub default_lease_ttl: u64,
    #[serde(default)]
    pub max_lease_ttl: u64,
}

/// A live mount: its entry and engine (both shared: routing hands out a copy per request).
#[derive(Clone)]
pub struct Mount {
    pub entry: Arc<MountEntry>,
    pub backend: Arc<dyn Backend>,
}

/// Builds engines by type from their mount entry; the core knows only the trait.
pub type BackendFactory = Arc<dyn Fn(&MountEntry) -> Result<Arc<dyn Backend>, VaultError> + Send + Sync>;

/// Everything that exists only while unsealed.
pub struct Unsealed {
    pub barrier: Arc<Barrier>,
    pub tokens: TokenStore,
    /// The lease expiry queue and per-lease locks (rebuilt from the lease records at unseal).
    pub leases: crate::leases::LeaseManager,
    pub mounts: RwLock<Vec<Mount>>,
    pub auth: RwLock<Vec<Mount>>,
    policies: RwLock<HashMap<String, Arc<Policy>>>,
    /// Striped locks serialising writes to one engine target from dispatch to commit (see the pipeline).
    pub(crate) write_locks: Vec<Arc<tokio::sync::Mutex<()>>>,
    /// Serialises `sys/*` writes: they stage changes to shared tables that must not interleave.
    sys_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Unsealed {
    pub fn policy(&self, name: &str) -> Result<Option<Arc<Policy>>, VaultError> {
        if let Some(p) = self.policies.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(Some(p.clone()));
        }
        let Some(raw) = self.barrier.get(&format!("sys/policy/{name}"))? else {
            return Ok(None);
        };
        let p = Arc::new(Policy::parse(name, &String::from_utf8_lossy(&raw))?);
        self.policies
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.into(), p.clone());
        Ok(Some(p))
    }

    pub(crate) async fn sys_lock(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.sys_lock.clone().lock_owned().await
    }

    /// Store a policy now (outside a request, e.g. at init).
    pub fn put_policy(self: &Arc<Self>, p: Policy) -> Result<(), VaultError> {
        let mut fx = Effects::default();
        self.stage_policy(p, &mut fx);
        fx.apply(self)
    }

    /// Stage a policy write; the cache follows once it is committed.
    pub fn stage_policy(self: &Arc<Self>, p: Policy, fx: &mut Effects) {
        fx.put(format!("sys/policy/{}", p.name), p.raw.as_bytes().to_vec());
        let st = self.clone();
        fx.after(move || {
            st.policies
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(p.name.clone(), Arc::new(p));
        });
    }

    pub fn stage_delete_policy(self: &Arc<Self>, name: &str, fx: &mut Effects) {
        fx.delete(format!("sys/policy/{name}"));
        let (st, name) = (self.clone(), name.to_string());
        fx.after(move || {
            st.policies.write().unwrap_or_else(|e| e.into_inner()).remove(&name);
        });
    }

    pub fn policy_names(&self) -> Result<Vec<String>, VaultError> {
        let mut names = self.barrier.list("sys/policy/")?;
        names.push("root".into());
        names.sort();
        Ok(names)
    }

    pub fn acl(&self, policies: &[String]) -> Result<Acl, VaultError> {
        if policies.iter().any(|p| p == "root") {
            return Ok(Acl::root());
        }
        let mut found = Vec::new();
        for name in policies {
            if let Some(p) = self.policy(name)? {
                found.push(p);
            }
        }
        Ok(Acl::new(found.iter().map(|p| p.as_ref())))
    }
}

/// Settings of the core that do not come from storage.
#[derive(Debug, Clone)]
pub struct CoreOptions {
    pub storage_type: String,
    pub cluster_name: String,
    pub audit_deadline: std::time::Duration,
    /// Audit devices declared in the config file, enabled at every unseal (in addition to those enabled via API).
    pub audit_devices: Vec<DeviceConfig>,
    /// Seconds of failing revocation after which a lease is reported irrevocable (it is still retried).
    pub lease_irrevocable_after: u64,
    /// The storage is shared with other nodes behind a leader lock: an unsealed node is a standby until it holds
    /// the lock (see [`ha`]).
    pub ha_enabled: bool,
}

impl Default for CoreOptions {
    fn default() -> Self {
        CoreOptions {
            storage_type: "inmem".into(),
            cluster_name: "leakstop-cluster".into(),
            audit_deadline: crate::audit::DEFAULT_DEADLINE,
            audit_devices: Vec::new(),
            lease_irrevocable_after: crate::leases::DEFAULT_IRREVOCABLE_AFTER,
            ha_enabled: false,
        }
    }
}

/// A request after HTTP decoding.
pub struct ApiRequest {
    /// GET/LIST/DELETE/PATCH map directly; POST/PUT arrive as `Update` and become `Create` when the target is new.
    pub op: Operation,
    pub path: String,
    pub data: Map<String, Value>,
    pub query: HashMap<String, String>,
    pub token: Option<String>,
    pub remote_addr: Option<String>,
    /// Set by the HTTP edge; returned in the envelope and written to the audit lines, so a client's answer, the
    /// server's trace span and the audit log can be matched.
    pub request_id: String,
}

/// What the HTTP layer turns into a response. Its `Debug` shows neither the data nor the token.
#[derive(Default)]
pub struct Reply {
    pub status: Option<u16>,
    pub data: Option<Value>,
    pub auth: Option<Auth>,
    pub lease_id: String,
    pub lease_duration: u64,
    pub renewable: bool,
    pub warnings: Vec<String>,
    pub mount_type: String,
    /// A body sent as is instead of the envelope (sys/seal-status, sys/health, sys/init...).
    pub raw: Option<Value>,
    /// A plain-text body instead of JSON (`sys/metrics?format=prometheus`).
    pub text: Option<String>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("data", &self.data.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth)
            .field("lease_id", &self.lease_id)
            .field("raw", &self.raw.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Reply {
    pub fn data(v: Value) -> Reply {
        Reply {
            data: Some(v),
            ..Default::default()
        }
    }
    pub fn raw(v: Value) -> Reply {
        Reply {
            raw: Some(v),
            ..Default::default()
        }
    }
    pub fn raw_status(status: u16, v: Value) -> Reply {
        Reply {
            raw: Some(v),
            status: Some(status),
            ..Default::default()
        }
    }
    pub fn empty() -> Reply {
        Reply {
            status: Some(204),
            ..Default::default()
        }
    }
}

pub struct Core {
    storage: Arc<dyn Storage>,
    seal_kind: SealKind,
    /// pkcs11 and dev: the seal itself. Shamir: none until enough shares arrive.
    auto_seal: Option<Arc<dyn Seal>>,
    state: RwLock<Option<Arc<Unsealed>>>,
    /// HA only: the root key of an unsealed node, kept so a standby can load when it becomes active.
    root_key: Mutex<Option<Zeroizing<Vec<u8>>>>,
    ha: RwLock<HaView>,
    fenced: tokio::sync::Notify,
    unseal_shares: Mutex<Zeroizing<Vec<Vec<u8>>>>,
    /// The rekey in progress (`sys/rekey/*`), if any.
    rekey: Mutex<Option<seal::Rekey>>,
    pub audit: AuditBroker,
    pub options: CoreOptions,
    factories: RwLock<HashMap<String, BackendFactory>>,
    auth_factories: RwLock<HashMap<String, BackendFactory>>,
    /// Leak reports' rate limiter and settings.
    pub(crate) leaks: crate::leaks::LeakState,
}

pub fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn short_id() -> String {
    hex::encode(rand::random::<[u8; 4]>())
}

impl Core {
    /// A core over `storage`, protected by `seal` (pkcs11 or dev: auto-unseal) or by Shamir shares (`seal = None`).
    pub fn new(storage: Arc<dyn Storage>, seal: Option<Arc<dyn Seal>>, options: CoreOptions) -> Arc<Core> {
        let seal_kind = seal.as_ref().map(|s| s.kind()).unwrap_or(SealKind::Shamir);
        let core = Arc::new(Core {
            storage,
            seal_kind,
            auto_seal: seal,
            state: RwLock::new(None),
            root_key: Mutex::default(),
            ha: RwLock::default(),
            fenced: tokio::sync::Notify::new(),
            unseal_shares: Mutex::default(),
            rekey: Mutex::default(),
            audit: AuditBroker::new(options.audit_deadline),
            options,
            factories: RwLock::default(),
            auth_factories: RwLock::default(),
            leaks: Default::default(),
        });
        crate::engines::register_builtin(&core);
        core
    }

    pub fn register_engine(&self, kind: &str, f: BackendFactory) {
        self.factories
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind.into(), f);
    }

    pub fn register_auth(&self, kind: &str, f: BackendFactory) {
        self.auth_factories
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind.into(), f);
    }

    pub fn seal_kind(&self) -> SealKind {
        self.seal_kind
    }

    pub fn unsealed(&self) -> Result<Arc<Unsealed>, VaultError> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner()).clone();
        match state {
            Some(st) => Ok(st),
            None if self.is_standby() => Err(VaultError::Standby),
            None => Err(VaultError::Sealed),
        }
    }

    /// Neither active nor a standby.
    pub fn is_sealed(&self) -> bool {
        !self.is_active() && !self.is_standby()
    }

    /// Revoke every token whose time is up (and tokens whose last use was claimed by a request that never
    /// finished), then every lease that is due ([`Core::revoke_due_leases`]). Returns how many tokens and leases
    /// were revoked.
    pub async fn sweep_expired(&self, now: i64) -> Result<(usize, usize), VaultError> {
        let st = self.unsealed()?;
        let mut tokens = 0;
        for h in st.tokens.all_hashes()? {
            if let Some(e) = st.tokens.load(&h)?
                && TokenStore::is_dead(&e, now)
            {
                // Expired tokens take their leases with them; a lease that fails is kept and retried, and must not
                // hold up the other tokens.
                if let Err(e) = self.revoke_token_tree(&st, &h, now).await {
                    tracing::warn!(error = %e, "an expired token's leases are not all revoked yet");
                }
                tokens += 1;
            }
        }
        let (leases, _) = self.revoke_due_leases(now).await?;
        Ok((tokens, leases))
    }

    /// Revoke the leases due at `now` (expired, or a failed revocation whose retry time came), straight from the
    /// expiry queue: cheap when nothing is due, so the server runs it several times a second. Returns how many
    /// were revoked and how many failed (kept, retried with backoff).
    pub async fn revoke_due_leases(&self, now: i64) -> Result<(usize, usize), VaultError> {
        crate::leases::revoke_due(self, now).await
    }

    /// Give every mounted secrets engine its periodic turn ([`Backend::tick`]) at `now`, committing what each
    /// buffered. One engine's failure is logged and does not stop the others; the next pass calls them all again.
    pub async fn tick_engines(&self, now: std::time::SystemTime) -> Result<(), VaultError> {
        let st = self.unsealed()?;
        let mounts = st.mounts.read().unwrap_or_else(|e| e.into_inner()).clone();
        for m in mounts {
            let view = st.view(&m, false);
            let result = m.backend.tick(now, &view).await;
            let ops = view.take_pending();
            if !ops.is_empty() {
                st.barrier.commit(&ops)?;
            }
            if let Err(e) = result {
                tracing::warn!(mount = %m.entry.path, error = %e, "an engine's periodic work failed; retried next pass");
            }
        }
        Ok(())
    }
}

pub fn audit_auth(token: Option<&str>, e: &TokenEntry, now: i64) -> AuditAuth {
    AuditAuth {
        client_token: token.map(String::from),
        accessor: Some(e.accessor.clone()),
        display_name: e.display_name.clone(),
        policies: e.policies.clone(),
        metadata: e.meta.clone(),
        token_type: "service".into(),
        ttl_secs: e.expire_time.map(|_| e.ttl(now)),
        ..Default::default()
    }
}
