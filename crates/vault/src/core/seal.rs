//! Initialising, unsealing and sealing: the root key comes from the seal (HSM, dev key) or from enough Shamir
//! shares, unwraps the keyring, and [`Core::load`] rebuilds the unsealed state from the barrier.

use std::sync::{Arc, RwLock};

use leakstop_proto::token::share_credential;
use leakstop_seal::{KeySeal, Seal, SealKind, Zeroizing};

use super::*;
use crate::VaultError;
use crate::audit::{DeviceConfig, HmacKey};
use crate::barrier::{Barrier, BufferedOp};
use crate::policy::{DEFAULT_POLICY, Policy};
use crate::token::{TokenRequest, TokenStore};

/// A rekey in progress: the new share count and threshold, and the current shares entered so far.
pub(crate) struct Rekey {
    nonce: String,
    shares: u8,
    threshold: u8,
    entered: Zeroizing<Vec<Vec<u8>>>,
}

/// Where a rekey stands (`sys/rekey/init`, `sys/rekey/update`), in Vault's field names.
#[derive(Debug, Clone, Serialize)]
pub struct RekeyStatus {
    pub started: bool,
    pub nonce: String,
    /// The new threshold and share count.
    pub t: u8,
    pub n: u8,
    /// Current shares entered, of `required`.
    pub progress: usize,
    pub required: u8,
    pub pgp_fingerprints: Option<Vec<String>>,
    pub backup: bool,
    pub verification_required: bool,
}

/// What one `sys/rekey/update` did: more shares needed, or the new shares (shown once).
pub enum RekeyStep {
    Progress(RekeyStatus),
    Done {
        nonce: String,
        shares: Vec<Zeroizing<Vec<u8>>>,
    },
}

impl Core {
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
        barrier.commit(&share_index(&barrier, &key_shares, Vec::new())?)?;
        self.storage.put(ROOT_KEY_PATH, &wrapped)?;
        // Written last: a crash before this point leaves an uninitialized server, not a half-initialized one.
        self.storage.put(SEAL_CONFIG_PATH, &serde_json::to_vec(&cfg)?)?;
        if self.auto_seal.is_some() {
            if self.options.ha_enabled {
                // Initialising took the lock (see the server's HA loop): this node is the active one.
                *self.root_key.lock().unwrap_or_else(|e| e.into_inner()) = Some(root_key.clone());
                self.ha.write().unwrap_or_else(|e| e.into_inner()).active_since = Some(now);
            }
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
        if self.options.ha_enabled {
            // A standby loads nothing: the active node may change what it would load at any time.
            return self.become_standby(&root_key);
        }
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

    /// `sys/rekey/init`: start replacing every unseal key share with `shares` new ones, `threshold` of them needed.
    /// The data is not re-encrypted: only the root key is wrapped again, under a new unseal key.
    pub fn rekey_start(&self, shares: u8, threshold: u8) -> Result<RekeyStatus, VaultError> {
        self.rekeyable()?;
        if shares == 0 || threshold == 0 || threshold > shares {
            return Err(VaultError::bad(format!(
                "invalid rekey: secret_threshold ({threshold}) must be between 1 and secret_shares ({shares})"
            )));
        }
        let mut rekey = self.rekey.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = rekey.as_ref() {
            return Err(VaultError::bad(format!(
                "a rekey is already in progress (nonce {}): finish it with sys/rekey/update or cancel it with \
                 DELETE sys/rekey/init",
                r.nonce
            )));
        }
        *rekey = Some(Rekey {
            nonce: uuid(),
            shares,
            threshold,
            entered: Zeroizing::default(),
        });
        drop(rekey);
        self.rekey_status()
    }

    pub fn rekey_status(&self) -> Result<RekeyStatus, VaultError> {
        let required = self.seal_config()?.map_or(0, |c| c.secret_threshold);
        let rekey = self.rekey.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match rekey.as_ref() {
            Some(r) => RekeyStatus {
                started: true,
                nonce: r.nonce.clone(),
                t: r.threshold,
                n: r.shares,
                progress: r.entered.len(),
                required,
                pgp_fingerprints: None,
                backup: false,
                verification_required: false,
            },
            None => RekeyStatus {
                started: false,
                nonce: String::new(),
                t: 0,
                n: 0,
                progress: 0,
                required,
                pgp_fingerprints: None,
                backup: false,
                verification_required: false,
            },
        })
    }

    /// `DELETE sys/rekey/init`: forget the rekey and the shares entered for it.
    pub fn rekey_cancel(&self) {
        *self.rekey.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// `sys/rekey/update`: one current share. With the threshold reached, the root key is wrapped under a new
    /// unseal key, and the new shares replace the old ones in one storage transaction with the new seal
    /// configuration (a crash leaves either the old shares working or the new ones, never neither).
    pub fn rekey_update(&self, share: Zeroizing<Vec<u8>>, nonce: &str) -> Result<RekeyStep, VaultError> {
        let st = self.rekeyable()?;
        let cfg = self.seal_config()?.ok_or(VaultError::NotInitialized)?;
        let mut guard = self.rekey.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rekey) = guard.as_mut() else {
            return Err(VaultError::bad(
                "no rekey is in progress: start one with sys/rekey/init",
            ));
        };
        if nonce != rekey.nonce {
            return Err(VaultError::bad(
                "the nonce does not match the rekey in progress: read it from GET sys/rekey/init",
            ));
        }
        leakstop_seal::shamir::check_unseal_share(&share, cfg.secret_threshold)
            .map_err(|e| VaultError::BadRequest(e.to_string()))?;
        if !rekey.entered.contains(&*share) {
            rekey.entered.push(share.to_vec());
        }
        if rekey.entered.len() < cfg.secret_threshold as usize {
            drop(guard);
            return self.rekey_status().map(RekeyStep::Progress);
        }
        let entered = std::mem::take(&mut rekey.entered);
        let (n, t, nonce) = (rekey.shares, rekey.threshold, rekey.nonce.clone());
        let wrong = || {
            VaultError::bad(
                "the unseal keys entered did not decrypt the root key: they belong to another init, or one is \
                 mistyped; enter the shares again",
            )
        };
        let current = KeySeal::from_shares(&entered).map_err(|_| wrong())?;
        let wrapped = self.storage.get(ROOT_KEY_PATH)?.ok_or(VaultError::NotInitialized)?;
        let root_key = current.unwrap_root_key(&wrapped).map_err(|_| wrong())?;
        let unseal_key = leakstop_seal::generate_key();
        let parts =
            leakstop_seal::shamir::split(&unseal_key, n, t).map_err(|e| VaultError::BadRequest(e.to_string()))?;
        let seal = KeySeal::new(unseal_key).map_err(|e| VaultError::Internal(e.to_string()))?;
        let rewrapped = seal
            .wrap_root_key(&root_key)
            .map_err(|e| VaultError::Internal(e.to_string()))?;
        let new_cfg = SealConfigRecord {
            kind: SealKind::Shamir,
            secret_shares: n,
            secret_threshold: t,
        };
        self.storage.transaction(&[
            leakstop_storage::TxnOp::Put(ROOT_KEY_PATH.into(), rewrapped),
            leakstop_storage::TxnOp::Put(SEAL_CONFIG_PATH.into(), serde_json::to_vec(&new_cfg)?),
        ])?;
        *guard = None;
        drop(guard);
        // The leak index follows: reported old shares are no longer this server's.
        let index = crate::leaks::UNSEAL_SHARE_INDEX;
        let old = st.barrier.list(index)?;
        let old = old.into_iter().map(|k| BufferedOp::Delete(format!("{index}{k}")));
        st.barrier.commit(&share_index(&st.barrier, &parts, old.collect())?)?;
        Ok(RekeyStep::Done { nonce, shares: parts })
    }

    /// Rekeying needs an unsealed server with Shamir shares.
    fn rekeyable(&self) -> Result<Arc<Unsealed>, VaultError> {
        if self.auto_seal.is_some() {
            return Err(VaultError::bad(format!(
                "this server is sealed by its {} seal, which has no unseal key shares to rekey",
                self.seal_kind().as_str()
            )));
        }
        self.unsealed()
    }

    pub fn reset_unseal(&self) {
        self.unseal_shares.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// `sys/seal`: drop every key from memory.
    pub fn seal(&self) {
        *self.root_key.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.audit_disable_all();
    }

    pub(super) fn audit_disable_all(&self) {
        for d in self.audit.configs() {
            let _ = self.audit.disable(&d.path);
        }
    }

    /// Build the unsealed state from the barrier: mounts, auth methods, audit devices and their HMAC key.
    pub(super) async fn load(self: &Arc<Self>, barrier: Arc<Barrier>) -> Result<Arc<Unsealed>, VaultError> {
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
        let leases = crate::leases::LeaseManager::load(&barrier, self.options.lease_irrevocable_after)?;
        let state = Arc::new(Unsealed {
            barrier: barrier.clone(),
            tokens,
            leases,
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
}

/// `ops` plus the keyed hashes of `shares` (in `lksu_` form) under the leak index, so a reported share is recognised
/// (and flagged) without the share being kept.
fn share_index(
    barrier: &Barrier,
    shares: &[Zeroizing<Vec<u8>>],
    mut ops: Vec<BufferedOp>,
) -> Result<Vec<BufferedOp>, VaultError> {
    for share in shares {
        let hash = barrier.keyed_hash(share_credential(share).as_bytes())?;
        let key = format!("{}{hash}", crate::leaks::UNSEAL_SHARE_INDEX);
        ops.push(BufferedOp::Put(key, Zeroizing::new(Vec::new())));
    }
    Ok(ops)
}
