//! Leases: credentials an engine hands out, owned by the token that asked for them and revoked with it (or when
//! they expire). An engine returns a [`crate::engine::NewLease`] in its response; the pipeline names it, stores it
//! and links it to the caller's token in the request's commit ([`stage`]). A lease record names the mount whose
//! engine knows how to revoke the credential.

use serde::{Deserialize, Serialize};

use crate::VaultError;
use crate::barrier::BufferedOp;
use crate::core::{Core, Unsealed};
use crate::pipeline::Effects;
use crate::token::TokenStore;

/// A stored lease (`sys/leases/<id>` in the barrier).
#[derive(Clone, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    /// The mount path of the issuing engine, e.g. `github/`.
    pub mount: String,
    /// Engine data needed to revoke (never returned to clients, never logged: no `Debug`).
    pub internal: serde_json::Value,
    pub expire_time: i64,
    #[serde(default)]
    pub renewable: bool,
    pub token_hash: Option<String>,
}

/// Lease ids contain `/`; storage keys of one folder must not.
pub(crate) fn escape(id: &str) -> String {
    id.replace('%', "%25").replace('/', "%2F")
}

pub(crate) fn unescape(key: &str) -> String {
    key.replace("%2F", "/").replace("%25", "%")
}

fn key(id: &str) -> String {
    format!("sys/leases/{}", escape(id))
}

/// Stage a new lease and its link to the owning token (committed with the request that issued the credential).
pub fn stage(lease: &Lease, fx: &mut Effects) -> Result<(), VaultError> {
    fx.put_json(key(&lease.id), lease)?;
    if let Some(h) = &lease.token_hash {
        fx.extend(vec![TokenStore::lease_link(h, &lease.id)]);
    }
    Ok(())
}

pub fn get(core: &Core, id: &str) -> Result<Option<Lease>, VaultError> {
    core.unsealed()?.barrier.get_json(&key(id))
}

/// Revoke leases through their engines. A lease whose engine fails to revoke stays recorded (and the error is
/// returned) so the revocation can be retried: never a half-revoked lease that is forgotten. What the engine
/// writes while revoking commits together with the removal of the lease record.
pub async fn revoke_all(core: &Core, ids: &[String]) -> Result<(), VaultError> {
    let st = core.unsealed()?;
    let mut failures = Vec::new();
    for id in ids {
        let Some(lease) = st.barrier.get_json::<Lease>(&key(id))? else {
            continue;
        };
        let mut ops = Vec::new();
        if let Some(mount) = st.mount_at(&lease.mount) {
            let view = st.view(&mount, false);
            if let Err(e) = mount.backend.revoke(&lease, &view).await {
                failures.push(format!("{id}: {e}"));
                continue;
            }
            ops = view.take_pending();
        }
        ops.push(BufferedOp::Delete(key(id)));
        st.barrier.commit(&ops)?;
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
    let due = expired(&st, now)?;
    let n = due.len();
    if n > 0 {
        revoke_all(core, &due).await?;
    }
    Ok(n)
}

fn expired(st: &Unsealed, now: i64) -> Result<Vec<String>, VaultError> {
    let mut due = Vec::new();
    for k in st.barrier.list("sys/leases/")? {
        if let Some(l) = st.barrier.get_json::<Lease>(&format!("sys/leases/{k}"))?
            && l.expire_time <= now
        {
            due.push(l.id);
        }
    }
    Ok(due)
}
