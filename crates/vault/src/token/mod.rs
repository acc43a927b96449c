//! The token store. Tokens are `lkss_…` credentials (see `leakstop_proto::token`); only an HMAC-SHA256 of a token
//! (keyed by a salt kept inside the barrier) is ever stored, so neither storage nor a storage dump yields a usable
//! token. Accessors identify a token for lookup and revocation without granting anything.
//!
//! Layout in the barrier: `sys/token/id/<hash>` (the entry), `sys/token/accessor/<hash(accessor)>` (→ token hash),
//! `sys/token/parent/<parent hash>/<child hash>` (the tree that revoking a parent walks), `sys/token/lease/<hash>/<lease>`
//! (the leases revoked with the token). Its HTTP endpoints are in [`endpoints`].

pub mod endpoints;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use hmac::{Hmac, Mac};
use leakstop_proto::Auth;
use leakstop_proto::token::{Kind, accessor, mint};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::VaultError;
use crate::barrier::{Barrier, BufferedOp};

/// Tokens live at most this long unless a shorter max TTL is set (Vault's default of 32 days).
pub const SYSTEM_MAX_TTL: u64 = 768 * 3600;
const SALT_PATH: &str = "core/token-salt";

/// A stored token (keyed by the token's hash, which is not part of the record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenEntry {
    #[serde(skip)]
    pub hash: String,
    pub accessor: String,
    pub parent: Option<String>,
    pub policies: Vec<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    pub display_name: String,
    pub path: String,
    pub creation_time: i64,
    /// The TTL asked for at creation (0: no expiry, root tokens only).
    pub creation_ttl: u64,
    pub explicit_max_ttl: u64,
    /// Unix seconds; `None` never expires.
    pub expire_time: Option<i64>,
    pub num_uses: u64,
    pub renewable: bool,
    #[serde(default)]
    pub period: u64,
    /// Lease ids this token owns, revoked with it.
    #[serde(default)]
    pub leases: Vec<String>,
    /// A limited-use token whose last use was claimed by a request still running: it authenticates nothing more
    /// and is revoked (with whatever that request attached to it) when the request ends, or by the expiry sweep
    /// after a crash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exhausted: bool,
}

/// What claiming one use of a token found (see [`TokenStore::claim_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseClaim {
    /// No use limit.
    Unlimited,
    /// One use counted; more remain.
    Counted,
    /// This was the last use: revoke the token once the request is over.
    Last,
}

impl TokenEntry {
    pub fn orphan(&self) -> bool {
        self.parent.is_none()
    }

    pub fn ttl(&self, now: i64) -> u64 {
        self.expire_time.map(|e| (e - now).max(0) as u64).unwrap_or(0)
    }

    /// The absolute limit renewals cannot pass.
    pub fn max_expire(&self) -> i64 {
        let max = if self.explicit_max_ttl > 0 {
            self.explicit_max_ttl
        } else {
            SYSTEM_MAX_TTL
        };
        self.creation_time.saturating_add_unsigned(max)
    }

    /// `lookup` data. `id` is the token itself where the caller holds it, "" otherwise.
    pub fn lookup_json(&self, id: &str, now: i64) -> Value {
        let fmt = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .ok()
                .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_default()
        };
        json!({
            "accessor": self.accessor,
            "creation_time": self.creation_time,
            "creation_ttl": self.creation_ttl,
            "display_name": self.display_name,
            "entity_id": "",
            "expire_time": self.expire_time.map(fmt),
            "explicit_max_ttl": self.explicit_max_ttl,
            "id": id,
            "issue_time": fmt(self.creation_time),
            "meta": if self.meta.is_empty() { Value::Null } else { json!(self.meta) },
            "num_uses": self.num_uses,
            "orphan": self.orphan(),
            "path": self.path,
            "policies": self.policies,
            "renewable": self.renewable,
            "ttl": self.ttl(now),
            "type": "service",
        })
    }

    /// The `auth` block of a create or login response.
    pub fn auth(&self, token: &str, now: i64) -> Auth {
        Auth {
            client_token: token.into(),
            accessor: self.accessor.clone(),
            policies: self.policies.clone(),
            token_policies: self.policies.clone(),
            metadata: (!self.meta.is_empty()).then(|| self.meta.clone()),
            lease_duration: self.ttl(now),
            renewable: self.renewable,
            entity_id: String::new(),
            token_type: "service".into(),
            orphan: self.orphan(),
            mfa_requirement: None,
            num_uses: self.num_uses,
        }
    }
}

/// What a new token should be.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// A caller-chosen id (root and `--dev-root-token-id` only); a fresh `lkss_` token otherwise.
    pub id: Option<String>,
    pub policies: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub display_name: String,
    pub path: String,
    pub ttl: u64,
    pub explicit_max_ttl: u64,
    pub num_uses: u64,
    pub renewable: bool,
    pub period: u64,
    pub parent: Option<String>,
}

pub struct TokenStore {
    barrier: Arc<Barrier>,
    salt: Zeroizing<Vec<u8>>,
    cache: RwLock<HashMap<String, Arc<TokenEntry>>>,
    /// Held across every read-modify-write of a stored entry (use claims, renewals, lease attachment, revocation),
    /// so no writer saves a stale copy over another's change: a revoked token stays revoked, a counted use stays
    /// counted.
    entry_lock: Mutex<()>,
}

impl TokenStore {
    pub fn open(barrier: Arc<Barrier>) -> Result<TokenStore, VaultError> {
        let salt = match barrier.get(SALT_PATH)? {
            Some(s) => s,
            None => {
                let s = leakstop_seal::generate_key();
                barrier.put(SALT_PATH, &s)?;
                s
            }
        };
        Ok(TokenStore {
            barrier,
            salt,
            cache: RwLock::default(),
            entry_lock: Mutex::new(()),
        })
    }

    fn lock_entries(&self) -> MutexGuard<'_, ()> {
        self.entry_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keyed hash under which a token (or accessor) is stored.
    pub fn hash(&self, token: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.salt).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        mac.update(token.as_bytes());
        crate::audit::hash::prefixed_hex("", &mac.finalize().into_bytes())
    }

    fn save(&self, e: &TokenEntry) -> Result<(), VaultError> {
        self.barrier.put_json(&format!("sys/token/id/{}", e.hash), e)?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(e.hash.clone(), Arc::new(e.clone()));
        Ok(())
    }

    /// Create a token; returns it in clear (the only time it exists in clear) with its entry.
    pub fn create(&self, req: TokenRequest, now: i64) -> Result<(String, TokenEntry), VaultError> {
        let (token, e, ops) = self.prepare(req, now)?;
        self.barrier.commit(&ops)?;
        self.install(&e);
        Ok((token, e))
    }

    /// Make the cache aware of a token whose `prepare` writes were committed.
    pub fn install(&self, e: &TokenEntry) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(e.hash.clone(), Arc::new(e.clone()));
    }

    /// Build a token and the writes that create it, without committing them (a login commits them together with
    /// its other writes, after its response is audited).
    pub fn prepare(&self, req: TokenRequest, now: i64) -> Result<(String, TokenEntry, Vec<BufferedOp>), VaultError> {
        let token = req.id.clone().unwrap_or_else(|| mint(Kind::Service));
        let hash = self.hash(&token);
        if self.barrier.get(&format!("sys/token/id/{hash}"))?.is_some() {
            return Err(VaultError::BadRequest("a token with this id already exists".into()));
        }
        let mut policies = req.policies;
        policies.sort();
        policies.dedup();
        let mut e = TokenEntry {
            hash,
            accessor: accessor(),
            parent: req.parent,
            policies,
            meta: req.meta,
            display_name: req.display_name,
            path: req.path,
            creation_time: now,
            creation_ttl: req.ttl,
            explicit_max_ttl: req.explicit_max_ttl,
            expire_time: None,
            num_uses: req.num_uses,
            renewable: req.renewable,
            period: req.period,
            leases: vec![],
            exhausted: false,
        };
        if req.ttl > 0 {
            e.expire_time = Some(now.saturating_add_unsigned(req.ttl).min(e.max_expire()));
        }
        // Entry, accessor index and parent link in one transaction: one durable write, never a half-created token.
        let mut ops = vec![
            BufferedOp::Put(
                format!("sys/token/id/{}", e.hash),
                Zeroizing::new(serde_json::to_vec(&e)?),
            ),
            BufferedOp::Put(
                format!("sys/token/accessor/{}", self.hash(&e.accessor)),
                Zeroizing::new(e.hash.as_bytes().to_vec()),
            ),
        ];
        if let Some(p) = &e.parent {
            ops.push(BufferedOp::Put(
                format!("sys/token/parent/{p}/{}", e.hash),
                Zeroizing::new(Vec::new()),
            ));
        }
        Ok((token, e, ops))
    }

    /// The live entry for a token hash; an expired or used-up one is treated as absent (the expiry sweep revokes
    /// it and its leases).
    pub fn get(&self, hash: &str, now: i64) -> Result<Option<Arc<TokenEntry>>, VaultError> {
        Ok(self
            .load(hash)?
            .filter(|e| !e.exhausted && e.expire_time.is_none_or(|t| t > now)))
    }

    /// Whether the sweep should revoke this stored entry: expired, or used up by a request that never finished.
    pub fn is_dead(e: &TokenEntry, now: i64) -> bool {
        e.exhausted || e.expire_time.is_some_and(|t| t <= now)
    }

    /// The stored entry, expired or not.
    pub fn load(&self, hash: &str) -> Result<Option<Arc<TokenEntry>>, VaultError> {
        let cached = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(hash).cloned();
        let entry = match cached {
            Some(e) => e,
            None => {
                let Some(mut e) = self.barrier.get_json::<TokenEntry>(&format!("sys/token/id/{hash}"))? else {
                    return Ok(None);
                };
                e.hash = hash.to_string();
                let e = Arc::new(e);
                self.cache
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(hash.to_string(), e.clone());
                e
            }
        };
        Ok(Some(entry))
    }

    pub fn lookup(&self, token: &str, now: i64) -> Result<Option<Arc<TokenEntry>>, VaultError> {
        self.get(&self.hash(token), now)
    }

    pub fn lookup_accessor(&self, acc: &str, now: i64) -> Result<Option<Arc<TokenEntry>>, VaultError> {
        let key = format!("sys/token/accessor/{}", self.hash(acc));
        match self.barrier.get(&key)? {
            None => Ok(None),
            Some(h) => self.get(&String::from_utf8_lossy(&h), now),
        }
    }

    /// Claim one use of a token before its request runs (Vault's `UseToken`). Under the entry lock and on the
    /// current stored entry, so concurrent requests with a `num_uses=1` token get exactly one success, and nothing
    /// written after the request can bring back a token revoked meanwhile. The last use marks the entry
    /// `exhausted`; the caller revokes it when the request is over.
    pub fn claim_use(&self, hash: &str, now: i64) -> Result<UseClaim, VaultError> {
        let _g = self.lock_entries();
        let e = self.get(hash, now)?.ok_or(VaultError::PermissionDenied)?;
        if e.num_uses == 0 {
            return Ok(UseClaim::Unlimited);
        }
        let mut next = (*e).clone();
        let claim = if next.num_uses == 1 {
            next.exhausted = true;
            UseClaim::Last
        } else {
            next.num_uses -= 1;
            UseClaim::Counted
        };
        self.save(&next)?;
        Ok(claim)
    }

    /// Revoke a token and every token created from it in one storage transaction that also carries `extra`'s
    /// writes, computed from the lease ids the tree owned (the core makes those leases due now, so a stop right
    /// after this commit still revokes them at once after unseal). Returns the lease ids (the caller revokes them).
    pub fn revoke_tree_with(
        &self,
        hash: &str,
        extra: impl FnOnce(&[String]) -> Result<Vec<BufferedOp>, VaultError>,
    ) -> Result<Vec<String>, VaultError> {
        let _g = self.lock_entries();
        let mut ops = Vec::new();
        let mut leases = Vec::new();
        let mut hashes = Vec::new();
        let mut stack = vec![hash.to_string()];
        while let Some(h) = stack.pop() {
            let prefix = format!("sys/token/parent/{h}/");
            for child in self.barrier.list(&prefix)? {
                stack.push(child.trim_end_matches('/').to_string());
                ops.push(BufferedOp::Delete(format!("{prefix}{child}")));
            }
            self.stage_revoke_one(&h, &mut ops, &mut leases)?;
            hashes.push(h);
        }
        leases.sort();
        leases.dedup();
        ops.extend(extra(&leases)?);
        self.evict(&hashes);
        self.barrier.commit(&ops)?;
        // Again after the commit: a lookup racing with it may have cached an entry read just before.
        self.evict(&hashes);
        Ok(leases)
    }

    fn evict(&self, hashes: &[String]) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        for h in hashes {
            cache.remove(h);
        }
    }

    /// The deletes that remove token `h` (entry, accessor index, parent link, lease links); its lease ids are
    /// added to `leases`.
    fn stage_revoke_one(&self, h: &str, ops: &mut Vec<BufferedOp>, leases: &mut Vec<String>) -> Result<(), VaultError> {
        let key = format!("sys/token/id/{h}");
        if let Some(e) = self.barrier.get_json::<TokenEntry>(&key)? {
            ops.push(BufferedOp::Delete(format!(
                "sys/token/accessor/{}",
                self.hash(&e.accessor)
            )));
            if let Some(p) = &e.parent {
                ops.push(BufferedOp::Delete(format!("sys/token/parent/{p}/{h}")));
            }
            ops.push(BufferedOp::Delete(key));
            leases.extend(e.leases);
        }
        let links = format!("sys/token/lease/{h}/");
        for l in self.barrier.list(&links)? {
            ops.push(BufferedOp::Delete(format!("{links}{l}")));
            leases.push(crate::leases::unescape(&l));
        }
        Ok(())
    }

    /// Revoke only this token (its children become orphans), in one storage transaction with `extra`'s writes
    /// (as [`TokenStore::revoke_tree_with`]). Returns the lease ids it owned.
    pub fn revoke_orphan_with(
        &self,
        hash: &str,
        extra: impl FnOnce(&[String]) -> Result<Vec<BufferedOp>, VaultError>,
    ) -> Result<Vec<String>, VaultError> {
        let _g = self.lock_entries();
        let mut ops = Vec::new();
        let mut orphans = Vec::new();
        let prefix = format!("sys/token/parent/{hash}/");
        for child in self.barrier.list(&prefix)? {
            let child = child.trim_end_matches('/').to_string();
            if let Some(mut e) = self.barrier.get_json::<TokenEntry>(&format!("sys/token/id/{child}"))? {
                e.hash = child.clone();
                e.parent = None;
                ops.push(BufferedOp::Put(
                    format!("sys/token/id/{child}"),
                    Zeroizing::new(serde_json::to_vec(&e)?),
                ));
                orphans.push(e);
            }
            ops.push(BufferedOp::Delete(format!("{prefix}{child}")));
        }
        let mut leases = Vec::new();
        self.stage_revoke_one(hash, &mut ops, &mut leases)?;
        leases.sort();
        leases.dedup();
        ops.extend(extra(&leases)?);
        let hashes = [hash.to_string()];
        self.evict(&hashes);
        self.barrier.commit(&ops)?;
        self.evict(&hashes);
        for e in &orphans {
            self.install(e);
        }
        Ok(leases)
    }

    /// Extend a token's life by `increment` (or its creation TTL), never past its max TTL.
    pub fn renew(&self, hash: &str, increment: Option<u64>, now: i64) -> Result<TokenEntry, VaultError> {
        let _g = self.lock_entries();
        let e = self.get(hash, now)?.ok_or(VaultError::PermissionDenied)?;
        if e.expire_time.is_none() {
            return Ok((*e).clone());
        }
        if !e.renewable {
            return Err(VaultError::BadRequest("this token is not renewable".into()));
        }
        let inc = increment
            .filter(|i| *i > 0)
            .unwrap_or(if e.period > 0 { e.period } else { e.creation_ttl });
        let mut next = (*e).clone();
        next.expire_time = Some(now.saturating_add_unsigned(inc).min(e.max_expire()));
        self.save(&next)?;
        Ok(next)
    }

    /// The write recording that a lease belongs to a token (revoked with it), committed with the request that
    /// created the lease. A key of its own, not a field of the entry: no read-modify-write of the entry, so it
    /// cannot race a use claim or a renewal. Also on a token whose last use the running request claimed: its
    /// revocation at the end of the request then takes the lease along.
    pub fn lease_link(hash: &str, lease_id: &str) -> BufferedOp {
        BufferedOp::Put(
            format!("sys/token/lease/{hash}/{}", crate::leases::escape(lease_id)),
            Zeroizing::new(Vec::new()),
        )
    }

    /// Hashes of all stored tokens (for the expiry sweep).
    pub fn all_hashes(&self) -> Result<Vec<String>, VaultError> {
        self.barrier.list("sys/token/id/")
    }
}
