//! `sys/*`: the system endpoints, with the request and response shapes Vault clients (hvac, the bao/vault CLI)
//! expect, one module per group: [`seal`] (init, unseal, seal, health, key rotation), [`mounts`] (secrets engines
//! and auth methods), [`policies`] (ACL policies and capabilities), [`audit`] (devices, hashes, the chain key) [`leases`] and
//! [`leaks`] (leak reports and their records). The token store's endpoints (`auth/token/*`) live beside it in [`crate::token::endpoints`].
//!
//! Every handler stages its writes in the request's [`Effects`]; the pipeline commits them once the response is
//! audited.

mod audit;
mod leaks;
mod leases;
mod metrics;
mod mounts;
mod policies;
mod seal;

use std::sync::Arc;

use crate::core::{Core, Reply, Unsealed};
use crate::pipeline::{Caller, Effects};
use crate::{LogicalRequest, VaultError};

/// A call to a system endpoint: who asks, on what state, with which request.
pub(crate) struct SysCall<'a> {
    pub core: &'a Arc<Core>,
    pub st: &'a Arc<Unsealed>,
    pub lr: &'a LogicalRequest,
    pub caller: Option<&'a Caller>,
}

impl Core {
    /// Everything under `sys/` and `auth/token/` that needs a token. Writes to shared state are staged in `fx`.
    pub(crate) async fn handle_system(
        self: &Arc<Self>,
        st: &Arc<Unsealed>,
        path: &str,
        lr: &LogicalRequest,
        caller: Option<&Caller>,
        fx: &mut Effects,
    ) -> Result<Reply, VaultError> {
        let call = SysCall {
            core: self,
            st,
            lr,
            caller,
        };
        if let Some(rest) = path.strip_prefix("auth/token/") {
            return crate::token::endpoints::handle(&call, rest, fx).await;
        }
        let rest = path.strip_prefix("sys/").unwrap_or(path);
        let section = rest.split_once('/').map_or(rest, |(s, _)| s);
        match section {
            "mounts" | "auth" | "internal" => mounts::handle(&call, rest, fx),
            "policy" | "policies" | "capabilities" | "capabilities-self" => policies::handle(&call, rest, fx),
            "audit" | "audit-hash" | "audit-chain" => audit::handle(&call, rest, fx).await,
            "leases" | "revoke" | "renew" | "revoke-prefix" | "revoke-force" => leases::handle(&call, rest).await,
            "leaks" => leaks::handle(&call, rest, fx).await,
            "metrics" if rest == "metrics" && lr.op == crate::Operation::Read => metrics::handle(&call),
            "rotate" | "key-status" | "seal" | "rekey" => seal::handle(&call, rest),
            _ => Err(VaultError::UnsupportedPath),
        }
    }
}
