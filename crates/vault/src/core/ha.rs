//! High availability, the core's side: with `CoreOptions::ha_enabled`, an unsealed node keeps only its root key
//! (a *standby*: unsealed, nothing loaded) until the server's HA loop wins the storage's leader lock and calls
//! [`Core::activate`], which runs the same load as an unseal (mounts, policies, token store, audit devices and
//! their chain heads). [`Core::step_down`] drops everything loaded, so a node that becomes active again starts
//! from what storage holds, never from stale caches. The lock itself lives in the server crate and the storage
//! backend; the core is told who leads ([`Core::set_leader`]) and raises [`Core::fenced`] when storage refused a
//! write because this node no longer holds the lock.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use leakstop_storage::LeaderInfo;
use sha2::Sha256;

use super::Core;
use crate::VaultError;
use crate::barrier::Barrier;

/// How far (seconds) the time in a vouched client address may be from this node's clock: the nodes' clocks may
/// differ a little, and a captured header is useless for longer than this.
const VOUCH_WINDOW: i64 = 60;

/// What this node knows of the cluster, for `sys/leader` and `sys/health`.
#[derive(Debug, Clone, Default)]
pub struct HaView {
    /// The active node as last read from the lock (this node's own entry while active).
    pub leader: Option<LeaderInfo>,
    /// Unix seconds at which this node became active, while it is.
    pub active_since: Option<i64>,
}

impl Core {
    pub fn ha_enabled(&self) -> bool {
        self.options.ha_enabled
    }

    /// Unsealed and serving (with HA: holding the lock and loaded).
    pub fn is_active(&self) -> bool {
        self.state.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Unsealed but not active: requests go to the active node.
    pub fn is_standby(&self) -> bool {
        !self.is_active() && self.root_key.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Keep the root key of an HA node that unsealed, after checking that it opens the keyring.
    pub(super) fn become_standby(&self, root_key: &[u8]) -> Result<(), VaultError> {
        Barrier::unseal(self.storage.clone(), root_key)?;
        *self.root_key.lock().unwrap_or_else(|e| e.into_inner()) = Some(zeroize::Zeroizing::new(root_key.to_vec()));
        Ok(())
    }

    /// Become the active node: rebuild every in-memory table from storage, as an unseal does. Called by the HA loop
    /// once it holds the lock; `now` (unix seconds) is reported as `active_time`.
    pub async fn activate(self: &Arc<Self>, now: i64) -> Result<(), VaultError> {
        if self.is_active() {
            return Ok(());
        }
        let key = self
            .root_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(VaultError::Sealed)?;
        // The keyring is read again: the previous active node may have rotated it.
        let barrier = Arc::new(Barrier::unseal(self.storage.clone(), &key)?);
        let state = self.load(barrier).await?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Some(state);
        self.ha.write().unwrap_or_else(|e| e.into_inner()).active_since = Some(now);
        Ok(())
    }

    /// Stop being the active node: drop the loaded state (caches, mount tables, audit devices) and stay a standby.
    /// Requests already running keep their copy, and storage fences their writes.
    pub fn step_down(&self) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.audit_disable_all();
        let mut ha = self.ha.write().unwrap_or_else(|e| e.into_inner());
        ha.active_since = None;
        ha.leader = None;
    }

    /// Record who leads, as the HA loop last read it.
    pub fn set_leader(&self, leader: Option<LeaderInfo>) {
        self.ha.write().unwrap_or_else(|e| e.into_inner()).leader = leader;
    }

    pub fn ha_view(&self) -> HaView {
        self.ha.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Signalled when storage refused a write because this node lost the lock: the HA loop steps down at once
    /// rather than at its next check.
    pub fn fenced(&self) -> &tokio::sync::Notify {
        &self.fenced
    }

    pub(crate) fn note_fenced(&self) {
        tracing::warn!("storage refused a write: this node no longer holds the HA lock");
        self.fenced.notify_one();
    }

    /// The MAC a node puts on a client address it forwards, keyed by the root key: only a node unsealed with this
    /// cluster's key can vouch for an address. `None` while this node has no root key (sealed).
    fn vouch_mac(&self, ip: &str, at: i64) -> Option<Hmac<Sha256>> {
        let key = self.root_key.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
        mac.update(b"leakstop forwarded-for v1\0");
        mac.update(ip.as_bytes());
        mac.update(b"\0");
        mac.update(at.to_string().as_bytes());
        Some(mac)
    }

    /// A standby's statement that it forwards a request from client address `ip` at `now` (unix seconds), for
    /// the active node to audit the request with the client's address instead of the standby's:
    /// `<ip> <unix seconds> <hex HMAC-SHA256>`. `None` when this node cannot vouch (sealed).
    pub fn vouch_for_client(&self, ip: &str, now: i64) -> Option<String> {
        let mac = self.vouch_mac(ip, now)?;
        Some(format!("{ip} {now} {}", hex::encode(mac.finalize().into_bytes())))
    }

    /// The client address in a statement made by [`Core::vouch_for_client`] on another node of this cluster, if
    /// its MAC checks out (compared in constant time) and it was made within a minute of `now`. Anything else
    /// (a client's forged header, an old captured one, another cluster's) gives `None`.
    pub fn vouched_client(&self, statement: &str, now: i64) -> Option<String> {
        let mut parts = statement.split(' ');
        let (ip, at, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || ip.parse::<std::net::IpAddr>().is_err() {
            return None;
        }
        let at: i64 = at.parse().ok()?;
        if (now - at).abs() > VOUCH_WINDOW {
            return None;
        }
        let tag = hex::decode(tag).ok()?;
        self.vouch_mac(ip, at)?.verify_slice(&tag).ok()?;
        Some(ip.to_owned())
    }
}
