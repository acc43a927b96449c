//! Leases: dynamic credentials an engine hands out, owned by the token that asked for them and revoked with it (or
//! when they expire). A lease record names the mount whose engine knows how to revoke the credential.

use serde::{Deserialize, Serialize};

use crate::VaultError;
use crate::core::Core;

/// A stored lease (`sys/leases/<id>` in the barrier).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    /// The mount path of the issuing engine, e.g. `github/`.
    pub mount: String,
    /// Engine data needed to revoke (never returned to clients).
    pub internal: serde_json::Value,
    pub expire_time: i64,
    pub token_hash: Option<String>,
}

fn key(id: &str) -> String {
    format!("sys/leases/{}", id.replace('/', "%2F"))
}

/// Store a lease and attach it to its token.
pub fn record(core: &Core, lease: &Lease) -> Result<(), VaultError> {
    let st = core.unsealed()?;
    st.barrier.put_json(&key(&lease.id), lease)?;
    if let Some(h) = &lease.token_hash {
        st.tokens.attach_lease(h, &lease.id)?;
    }
    Ok(())
}

pub fn get(core: &Core, id: &str) -> Result<Option<Lease>, VaultError> {
    core.unsealed()?.barrier.get_json(&key(id))
}

/// Revoke leases through their engines. A lease whose engine fails to revoke stays recorded (and the error is
/// returned) so the revocation can be retried: never a half-revoked lease that is forgotten.
pub async fn revoke_all(core: &Core, ids: &[String]) -> Result<(), VaultError> {
    let st = core.unsealed()?;
    let mut failures = Vec::new();
    for id in ids {
        let Some(lease) = st.barrier.get_json::<Lease>(&key(id))? else {
            continue;
        };
        let backend = st
            .mounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|m| m.entry.path == lease.mount)
            .map(|m| m.backend.clone());
        if let Some(b) = backend
            && let Err(e) = b.revoke(&lease).await
        {
            failures.push(format!("{id}: {e}"));
            continue;
        }
        st.barrier.delete(&key(id))?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(VaultError::Internal(format!(
            "failed to revoke leases: {}",
            failures.join("; ")
        )))
    }
}

/// Revoke every lease whose time is up (run periodically by the server).
pub async fn revoke_expired(core: &Core, now: i64) -> Result<usize, VaultError> {
    let st = core.unsealed()?;
    let mut due = Vec::new();
    for k in st.barrier.list("sys/leases/")? {
        if let Some(l) = st.barrier.get_json::<Lease>(&format!("sys/leases/{k}"))?
            && l.expire_time <= now
        {
            due.push(l.id);
        }
    }
    let n = due.len();
    if n > 0 {
        revoke_all(core, &due).await?;
    }
    Ok(n)
}
