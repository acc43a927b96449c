//! High availability, the core's side: with `CoreOptions::ha_enabled`, an unsealed node keeps only its root key
//! (a *standby*: unsealed, nothing loaded) until the server's HA loop wins the storage's leader lock and calls
//! [`Core::activate`], which runs the same load as an unseal (mounts, policies, token store, audit devices and
//! their chain heads). [`Core::step_down`] drops everything loaded, so a node that becomes active again starts
//! from what storage holds, never from stale caches. The lock itself lives in the server crate and the storage
//! backend; the core is told who leads ([`Core::set_leader`]) and raises [`Core::fenced`] when storage refused a
//! write because this node no longer holds the lock.

use std::sync::Arc;

use leakstop_storage::LeaderInfo;

use super::Core;
use crate::VaultError;
use crate::barrier::Barrier;

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
}
