//! The core: seal state, the unsealed barrier and everything behind it (mount tables, token store, policies).
//! The request pipeline that runs every API call through them is in [`crate::pipeline`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use leakstop_seal::{KeySeal, Seal, SealKind, Zeroizing};
use leakstop_storage::Storage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::audit::{AuditAuth, AuditBroker, DeviceConfig, HmacKey};
use crate::barrier::{Barrier, BarrierView};
use crate::pipeline::Effects;
use crate::policy::{Acl, DEFAULT_POLICY, Policy};
use crate::token::{TokenEntry, TokenRequest, TokenStore};
use crate::{Backend, Operation, VaultError};

const SEAL_CONFIG_PATH: &str = "core/seal-config";
const ROOT_KEY_PATH: &str = "core/root-key";
const MOUNTS_PATH: &str = "core/mounts";
const AUTH_PATH: &str = "core/auth";
const AUDIT_PATH: &str = "core/audit";
const AUDIT_KEY_PATH: &str = "core/audit-hmac-key";
const WRITE_STRIPES: usize = 256;

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

impl MountEntry {
    /// Where this mount's engine keeps its data in the barrier.
    pub fn storage_prefix(&self, auth: bool) -> String {
        format!("{}/{}/", if auth { "auth" } else { "logical" }, self.uuid)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": self.default_lease_ttl,
                "force_no_cache": false,
                "max_lease_ttl": self.max_lease_ttl,
            },
            "description": self.description,
            "external_entropy_access": false,
            "local": false,
            "options": if self.options.is_empty() { Value::Null } else { json!(self.options) },
            "plugin_version": "",
            "running_plugin_version": "",
            "running_sha256": "",
            "seal_wrap": false,
            "type": self.kind,
            "uuid": self.uuid,
        })
    }
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

    /// The secrets engine mounted exactly at `path` (`github/`).
    pub fn mount_at(&self, path: &str) -> Option<Mount> {
        self.mounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|m| m.entry.path == path)
            .cloned()
    }

    /// A mount's store: its own folder of the barrier (`logical/<uuid>/`, `auth/<uuid>/` for auth methods).
    pub fn view(&self, mount: &Mount, auth: bool) -> BarrierView {
        BarrierView::new(self.barrier.clone(), mount.entry.storage_prefix(auth))
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

    fn table(&self, auth: bool) -> &RwLock<Vec<Mount>> {
        if auth { &self.auth } else { &self.mounts }
    }

    /// Stage the secrets-engine table (`auth = false`) or the auth-method table as it will be, and swap it in
    /// once committed.
    fn stage_table(self: &Arc<Self>, auth: bool, next: Vec<Mount>, fx: &mut Effects) -> Result<(), VaultError> {
        let entries: Vec<&MountEntry> = next.iter().map(|m| m.entry.as_ref()).collect();
        fx.put_json(if auth { AUTH_PATH } else { MOUNTS_PATH }, &entries)?;
        let st = self.clone();
        fx.after(move || {
            *st.table(auth).write().unwrap_or_else(|e| e.into_inner()) = next;
        });
        Ok(())
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
}

impl Default for CoreOptions {
    fn default() -> Self {
        CoreOptions {
            storage_type: "inmem".into(),
            cluster_name: "leakstop-cluster".into(),
            audit_deadline: crate::audit::DEFAULT_DEADLINE,
            audit_devices: Vec::new(),
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
}

/// What the HTTP layer turns into a response.
#[derive(Debug, Default)]
pub struct Reply {
    pub status: Option<u16>,
    pub data: Option<Value>,
    pub auth: Option<Value>,
    pub lease_id: String,
    pub lease_duration: u64,
    pub renewable: bool,
    pub warnings: Vec<String>,
    pub mount_type: String,
    /// A body sent as is instead of the envelope (sys/seal-status, sys/health, sys/init...).
    pub raw: Option<Value>,
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
    unseal_shares: Mutex<Zeroizing<Vec<Vec<u8>>>>,
    pub audit: AuditBroker,
    pub options: CoreOptions,
    factories: RwLock<HashMap<String, BackendFactory>>,
    auth_factories: RwLock<HashMap<String, BackendFactory>>,
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
            unseal_shares: Mutex::default(),
            audit: AuditBroker::new(options.audit_deadline),
            options,
            factories: RwLock::default(),
            auth_factories: RwLock::default(),
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
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(VaultError::Sealed)
    }

    pub fn is_sealed(&self) -> bool {
        self.state.read().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    pub fn seal_config(&self) -> Result<Option<SealConfigRecord>, VaultError> {
        match self.storage.get(SEAL_CONFIG_PATH)? {
            None => Ok(None),
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
        }
    }

    pub fn is_initialized(&self) -> Result<bool, VaultError> {
        Ok(self.seal_config()?.is_some())
    }

    pub fn unseal_progress(&self) -> usize {
        self.unseal_shares.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// `sys/init`. Shamir: returns the shares (the server stays sealed). Auto seals: unseals at once.
    /// Returns (unseal key shares, root token).
    pub async fn init(
        self: &Arc<Self>,
        shares: u8,
        threshold: u8,
        root_token_id: Option<String>,
    ) -> Result<(Vec<Zeroizing<Vec<u8>>>, String), VaultError> {
        if self.is_initialized()? {
            return Err(VaultError::BadRequest("Vault is already initialized".into()));
        }
        // `init` is a request of its own: one clock reading for everything it creates.
        let now = crate::engine::unix_seconds(std::time::SystemTime::now());
        let root_key = leakstop_seal::generate_key();
        let (seal, key_shares, cfg): (Arc<dyn Seal>, _, _) = match &self.auto_seal {
            Some(s) => (
                s.clone(),
                vec![],
                SealConfigRecord {
                    kind: s.kind(),
                    secret_shares: 0,
                    secret_threshold: 0,
                },
            ),
            None => {
                if shares == 0 || threshold == 0 || threshold > shares {
                    return Err(VaultError::BadRequest(format!(
                        "invalid seal configuration: secret_threshold ({threshold}) must be between 1 and secret_shares ({shares})"
                    )));
                }
                let unseal_key = leakstop_seal::generate_key();
                let parts = leakstop_seal::shamir::split(&unseal_key, shares, threshold)
                    .map_err(|e| VaultError::BadRequest(e.to_string()))?;
                let seal = KeySeal::new(unseal_key).map_err(|e| VaultError::Internal(e.to_string()))?;
                (
                    Arc::new(seal),
                    parts,
                    SealConfigRecord {
                        kind: SealKind::Shamir,
                        secret_shares: shares,
                        secret_threshold: threshold,
                    },
                )
            }
        };
        let wrapped = seal
            .wrap_root_key(&root_key)
            .map_err(|e| VaultError::Internal(e.to_string()))?;
        let barrier = Arc::new(Barrier::initialize(self.storage.clone(), &root_key, now)?);
        let state = self.load(barrier.clone()).await?;
        state.put_policy(Policy::parse("default", DEFAULT_POLICY)?)?;
        let (root, _) = state.tokens.create(
            TokenRequest {
                id: root_token_id,
                policies: vec!["root".into()],
                display_name: "root".into(),
                path: "auth/token/root".into(),
                ..Default::default()
            },
            now,
        )?;
        self.storage.put(ROOT_KEY_PATH, &wrapped)?;
        // Written last: a crash before this point leaves an uninitialized server, not a half-initialized one.
        self.storage.put(SEAL_CONFIG_PATH, &serde_json::to_vec(&cfg)?)?;
        if self.auto_seal.is_some() {
            *self.state.write().unwrap_or_else(|e| e.into_inner()) = Some(state);
        } else {
            self.audit_disable_all();
        }
        Ok((key_shares, root))
    }

    /// Unseal with the auto seal (pkcs11, dev). Errors say why (wrong PIN, missing key, tampered blob).
    pub async fn auto_unseal(self: &Arc<Self>) -> Result<(), VaultError> {
        let seal = self.auto_seal.clone().ok_or_else(|| {
            VaultError::BadRequest("this server uses Shamir unseal keys: submit them to sys/unseal".into())
        })?;
        self.unseal_with(seal.as_ref()).await
    }

    async fn unseal_with(self: &Arc<Self>, seal: &dyn Seal) -> Result<(), VaultError> {
        let wrapped = self.storage.get(ROOT_KEY_PATH)?.ok_or(VaultError::NotInitialized)?;
        let root_key = seal
            .unwrap_root_key(&wrapped)
            .map_err(|e| VaultError::BadRequest(e.to_string()))?;
        let barrier = Arc::new(Barrier::unseal(self.storage.clone(), &root_key)?);
        let state = self.load(barrier).await?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Some(state);
        Ok(())
    }

    /// `sys/unseal`: add one Shamir share; unseals when the threshold is reached.
    pub async fn submit_unseal_key(self: &Arc<Self>, share: Zeroizing<Vec<u8>>) -> Result<(), VaultError> {
        if !self.is_sealed() {
            return Ok(());
        }
        let cfg = self.seal_config()?.ok_or(VaultError::NotInitialized)?;
        if self.auto_seal.is_some() {
            return self.auto_unseal().await;
        }
        leakstop_seal::shamir::check_unseal_share(&share, cfg.secret_threshold)
            .map_err(|e| VaultError::BadRequest(e.to_string()))?;
        let ready = {
            let mut shares = self.unseal_shares.lock().unwrap_or_else(|e| e.into_inner());
            if !shares.contains(&*share) {
                shares.push(share.to_vec());
            }
            (shares.len() >= cfg.secret_threshold as usize).then(|| std::mem::take(&mut *shares))
        };
        let Some(shares) = ready else { return Ok(()) };
        let seal = KeySeal::from_shares(&shares).map_err(|e| VaultError::BadRequest(e.to_string()))?;
        self.unseal_with(&seal).await.map_err(|e| match e {
            VaultError::BadRequest(_) | VaultError::Integrity(_) => VaultError::BadRequest(
                "the unseal keys did not decrypt the root key: they belong to another init, or one is mistyped".into(),
            ),
            e => e,
        })
    }

    pub fn reset_unseal(&self) {
        self.unseal_shares.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// `sys/seal`: drop every key from memory.
    pub fn seal(&self) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.audit_disable_all();
    }

    fn audit_disable_all(&self) {
        for d in self.audit.configs() {
            let _ = self.audit.disable(&d.path);
        }
    }

    /// Build the unsealed state from the barrier: mounts, auth methods, audit devices and their HMAC key.
    async fn load(self: &Arc<Self>, barrier: Arc<Barrier>) -> Result<Arc<Unsealed>, VaultError> {
        let tokens = TokenStore::open(barrier.clone())?;
        let key = match barrier.get(AUDIT_KEY_PATH)? {
            Some(k) => HmacKey::new(k.to_vec()),
            None => {
                let k = HmacKey::generate();
                barrier.put(AUDIT_KEY_PATH, k.as_bytes())?;
                k
            }
        };
        self.audit.set_key(key);
        let state = Arc::new(Unsealed {
            barrier: barrier.clone(),
            tokens,
            mounts: RwLock::default(),
            auth: RwLock::default(),
            policies: RwLock::default(),
            write_locks: (0..WRITE_STRIPES).map(|_| Arc::default()).collect(),
            sys_lock: Arc::default(),
        });
        let mounts: Vec<MountEntry> = barrier.get_json(MOUNTS_PATH)?.unwrap_or_default();
        let mut live = Vec::new();
        for e in mounts {
            live.push(Mount {
                backend: self.build(&e, false)?,
                entry: Arc::new(e),
            });
        }
        *state.mounts.write().unwrap_or_else(|e| e.into_inner()) = live;
        let auths: Vec<MountEntry> = barrier.get_json(AUTH_PATH)?.unwrap_or_default();
        let mut live = Vec::new();
        for e in auths {
            live.push(Mount {
                backend: self.build(&e, true)?,
                entry: Arc::new(e),
            });
        }
        *state.auth.write().unwrap_or_else(|e| e.into_inner()) = live;
        let mut devices: Vec<DeviceConfig> = barrier.get_json(AUDIT_PATH)?.unwrap_or_default();
        for d in &self.options.audit_devices {
            if !devices.iter().any(|x| x.path == d.path) {
                devices.push(d.clone());
            }
        }
        for d in devices {
            if self.audit.configs().iter().any(|x| x.path == d.path) {
                continue;
            }
            let path = d.path.clone();
            if let Err(e) = self.audit.enable(d).await {
                // Vault refuses to unseal when a configured device cannot start: serving unaudited is worse.
                return Err(VaultError::Internal(format!(
                    "audit device `{path}` could not start: {e}"
                )));
            }
        }
        Ok(state)
    }

    fn build(self: &Arc<Self>, e: &MountEntry, auth: bool) -> Result<Arc<dyn Backend>, VaultError> {
        let table = if auth { &self.auth_factories } else { &self.factories };
        let f = table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&e.kind)
            .cloned()
            .ok_or_else(|| {
                let kinds: Vec<String> = table
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .cloned()
                    .collect();
                VaultError::BadRequest(format!(
                    "unknown {} type {:?}; available: {}",
                    if auth { "auth method" } else { "secrets engine" },
                    e.kind,
                    kinds.join(", ")
                ))
            })?;
        f(e)
    }

    /// Mount a secrets engine (`auth = false`) or an auth method at `path`, now (outside a request).
    pub fn mount(
        self: &Arc<Self>,
        auth: bool,
        path: &str,
        kind: &str,
        description: &str,
        options: BTreeMap<String, String>,
    ) -> Result<(), VaultError> {
        let st = self.unsealed()?;
        let mut fx = Effects::default();
        self.stage_mount(&st, auth, path, kind, description, options, &mut fx)?;
        fx.apply(&st)
    }

    /// Stage a mount: validated and its engine built now, stored and routable once committed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stage_mount(
        self: &Arc<Self>,
        st: &Arc<Unsealed>,
        auth: bool,
        path: &str,
        kind: &str,
        description: &str,
        options: BTreeMap<String, String>,
        fx: &mut Effects,
    ) -> Result<(), VaultError> {
        let path = format!("{}/", path.trim_matches('/'));
        if path == "/" || path.contains("//") {
            return Err(VaultError::BadRequest(
                "a mount path must be non-empty, e.g. `secret`".into(),
            ));
        }
        if !auth
            && ["sys/", "auth/", "cubbyhole/", "identity/"]
                .iter()
                .any(|r| path.starts_with(r))
        {
            return Err(VaultError::BadRequest(format!(
                "cannot mount at reserved path `{path}`"
            )));
        }
        let entry = MountEntry {
            path: path.clone(),
            kind: kind.into(),
            description: description.into(),
            accessor: format!(
                "{}_{}",
                if auth { format!("auth_{kind}") } else { kind.to_string() },
                short_id()
            ),
            uuid: uuid(),
            options,
            default_lease_ttl: 0,
            max_lease_ttl: 0,
        };
        let backend = self.build(&entry, auth)?;
        let mut next = st.table(auth).read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(other) = next
            .iter()
            .find(|m| m.entry.path.starts_with(&path) || path.starts_with(&m.entry.path))
        {
            return Err(VaultError::BadRequest(format!(
                "path is already in use at {}{}",
                if auth { "auth/" } else { "" },
                other.entry.path
            )));
        }
        next.push(Mount {
            entry: Arc::new(entry),
            backend,
        });
        st.stage_table(auth, next, fx)
    }

    /// Stage an unmount: the table entry and everything the engine stored go in the same commit.
    pub(crate) fn stage_unmount(
        &self,
        st: &Arc<Unsealed>,
        auth: bool,
        path: &str,
        fx: &mut Effects,
    ) -> Result<(), VaultError> {
        let path = format!("{}/", path.trim_matches('/'));
        let mut next = st.table(auth).read().unwrap_or_else(|e| e.into_inner()).clone();
        // Vault answers 204 for a path with nothing mounted.
        let Some(i) = next.iter().position(|m| m.entry.path == path) else {
            return Ok(());
        };
        let m = next.remove(i);
        let prefix = m.entry.storage_prefix(auth);
        for k in st.barrier.list_recursive(&prefix)? {
            fx.delete(k);
        }
        st.stage_table(auth, next, fx)
    }

    /// Stage the audit device table as it is now.
    pub(crate) fn stage_audit_table(&self, fx: &mut Effects) -> Result<(), VaultError> {
        fx.put_json(AUDIT_PATH, &self.audit.configs())
    }

    /// Revoke every token and lease whose time is up, and tokens whose last use was claimed by a request that
    /// never finished. Returns how many tokens and leases were revoked.
    pub async fn sweep_expired(&self, now: i64) -> Result<(usize, usize), VaultError> {
        let st = self.unsealed()?;
        let mut tokens = 0;
        for h in st.tokens.all_hashes()? {
            if let Some(e) = st.tokens.load(&h)?
                && TokenStore::is_dead(&e, now)
            {
                // Expired tokens take their leases with them.
                self.revoke_token_tree(&st, &h).await?;
                tokens += 1;
            }
        }
        let leases = crate::leases::revoke_expired(self, now).await?;
        Ok((tokens, leases))
    }

    /// The mount serving `path` (longest prefix), with the path relative to it.
    pub fn route(&self, st: &Unsealed, path: &str) -> Option<(Mount, String)> {
        let (table, rest) = match path.strip_prefix("auth/") {
            Some(r) => (&st.auth, r),
            None => (&st.mounts, path),
        };
        let t = table.read().unwrap_or_else(|e| e.into_inner());
        let with_slash = format!("{rest}/");
        t.iter()
            .filter(|m| rest.starts_with(&m.entry.path) || with_slash == m.entry.path)
            .max_by_key(|m| m.entry.path.len())
            .map(|m| (m.clone(), rest.get(m.entry.path.len()..).unwrap_or("").to_string()))
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
