//! The token store's endpoints (`auth/token/*`: create, lookup, renew, revoke), beside the store they act on.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{SYSTEM_MAX_TTL, TokenEntry, TokenRequest};
use crate::core::{Core, Reply, Unsealed};
use crate::fields::Fields;
use crate::pipeline::Effects;
use crate::sys::SysCall;
use crate::{Operation, VaultError};

pub(crate) async fn handle(c: &SysCall<'_>, rest: &str, fx: &mut Effects) -> Result<Reply, VaultError> {
    use Operation::*;
    let (st, lr) = (c.st, c.lr);
    let (op, data, query) = (lr.op, &lr.data, &lr.query);
    let (caller_token, caller) = c
        .caller
        .map(|(t, e)| (t.as_str(), e.clone()))
        .ok_or(VaultError::PermissionDenied)?;
    let now = lr.now_unix();
    let token = Fields::new(data).text("token")?.or_else(|| query.get("token").cloned());
    let token_arg = || {
        token
            .as_deref()
            .ok_or_else(|| VaultError::bad("field `token` is required"))
    };
    let accessor = Fields::new(data).text("accessor")?;
    let accessor_arg = || {
        accessor
            .as_deref()
            .ok_or_else(|| VaultError::bad("field `accessor` is required"))
    };
    let increment = || Fields::new(data).duration("increment");
    let lookup_token = |t: &str| st.tokens.lookup(t, now)?.ok_or_else(|| VaultError::bad("bad token"));
    match (rest, op) {
        ("create" | "create-orphan", Create | Update) => {
            c.core.create_token(st, &caller, data, rest == "create-orphan", now, fx)
        }
        ("lookup-self", Read | Update | Create) => Ok(Reply::data(caller.lookup_json(caller_token, now))),
        ("lookup", Read | Update | Create) => {
            let t = token_arg()?;
            Ok(Reply::data(lookup_token(t)?.lookup_json(t, now)))
        }
        ("lookup-accessor", Update | Create) => {
            let e = st
                .tokens
                .lookup_accessor(accessor_arg()?, now)?
                .ok_or_else(|| VaultError::bad("invalid accessor"))?;
            Ok(Reply::data(e.lookup_json("", now)))
        }
        ("renew-self", Update | Create) => {
            let e = st.tokens.renew(&caller.hash, increment()?, now)?;
            Ok(Reply {
                auth: Some(e.auth(caller_token, now)),
                ..Default::default()
            })
        }
        ("renew", Update | Create) => {
            let t = token_arg()?;
            let e = lookup_token(t)?;
            let e = st.tokens.renew(&e.hash, increment()?, now)?;
            Ok(Reply {
                auth: Some(e.auth(t, now)),
                ..Default::default()
            })
        }
        ("renew-accessor", Update | Create) => {
            let e = st
                .tokens
                .lookup_accessor(accessor_arg()?, now)?
                .ok_or_else(|| VaultError::bad("invalid accessor"))?;
            let e = st.tokens.renew(&e.hash, increment()?, now)?;
            // Renewing by accessor hands out no token.
            Ok(Reply {
                auth: Some(e.auth("", now)),
                ..Default::default()
            })
        }
        ("revoke-self", Update | Create) => {
            c.core.revoke_token_tree(st, &caller.hash, now).await?;
            Ok(Reply::empty())
        }
        ("revoke", Update | Create) => {
            if let Some(e) = st.tokens.lookup(token_arg()?, now)? {
                c.core.revoke_token_tree(st, &e.hash, now).await?;
            }
            Ok(Reply::empty())
        }
        ("revoke-accessor", Update | Create) => {
            if let Some(e) = st.tokens.lookup_accessor(accessor_arg()?, now)? {
                c.core.revoke_token_tree(st, &e.hash, now).await?;
            }
            Ok(Reply::empty())
        }
        ("revoke-orphan", Update | Create) => {
            if let Some(e) = st.tokens.lookup(token_arg()?, now)? {
                let mut moved = Vec::new();
                let leases = st
                    .tokens
                    .revoke_orphan_with(&e.hash, |ids| crate::leases::stage_due_now(st, ids, now, &mut moved))?;
                crate::leases::requeue(st, &moved);
                c.core.revoke_leases(&leases, now).await?;
            }
            Ok(Reply::empty())
        }
        _ => Err(VaultError::UnsupportedPath),
    }
}

impl Core {
    /// Revoke a token, its children, and every lease they own. A lease whose engine fails to revoke it outlives
    /// the token: it keeps its record and retry state and is retried in the background (the error says so).
    pub async fn revoke_token_tree(&self, st: &Unsealed, hash: &str, now: i64) -> Result<(), VaultError> {
        let mut moved = Vec::new();
        let leases = st
            .tokens
            .revoke_tree_with(hash, |ids| crate::leases::stage_due_now(st, ids, now, &mut moved))?;
        crate::leases::requeue(st, &moved);
        self.revoke_leases(&leases, now).await
    }

    /// Revoke leases through their engines (see [`crate::leases::revoke_all`]).
    pub async fn revoke_leases(&self, leases: &[String], now: i64) -> Result<(), VaultError> {
        if leases.is_empty() {
            return Ok(());
        }
        crate::leases::revoke_all(self, leases, now).await
    }

    fn create_token(
        self: &Arc<Self>,
        st: &Arc<Unsealed>,
        parent: &TokenEntry,
        data: &Map<String, Value>,
        orphan_endpoint: bool,
        now: i64,
        fx: &mut Effects,
    ) -> Result<Reply, VaultError> {
        // A limited-use token would otherwise multiply itself into unlimited ones (Vault refuses too).
        if parent.num_uses > 0 {
            return Err(VaultError::bad("a token with a use limit cannot create child tokens"));
        }
        let mut f = Fields::new(data);
        let parent_root = parent.policies.iter().any(|p| p == "root");
        let mut policies = f.list("policies")?.unwrap_or_else(|| parent.policies.clone());
        if !parent_root
            && let Some(p) = policies
                .iter()
                .find(|p| *p != "default" && !parent.policies.contains(p))
        {
            return Err(VaultError::bad(format!(
                "child policies must be a subset of the parent's: the parent token does not have policy {p:?}"
            )));
        }
        let no_default = f.bool("no_default_policy")?.unwrap_or(false);
        if !no_default && !policies.iter().any(|p| p == "default" || p == "root") {
            policies.push("default".into());
        }
        let no_parent = orphan_endpoint || f.bool("no_parent")?.unwrap_or(false);
        if no_parent && !parent_root && !orphan_endpoint {
            return Err(VaultError::bad(
                "root or sudo privileges required to create an orphan token",
            ));
        }
        let id = f.string("id")?.filter(|s| !s.is_empty());
        if id.is_some() && !parent_root {
            return Err(VaultError::bad(
                "root or sudo privileges required to specify a token id",
            ));
        }
        let explicit_max_ttl = f.duration("explicit_max_ttl")?.unwrap_or(0);
        let period = f.duration("period")?.unwrap_or(0);
        let mut ttl = f.duration("ttl")?.unwrap_or(0);
        if ttl == 0 {
            ttl = if period > 0 { period } else { SYSTEM_MAX_TTL };
        }
        if explicit_max_ttl > 0 {
            ttl = ttl.min(explicit_max_ttl);
        }
        let is_root_token = policies.iter().any(|p| p == "root");
        if is_root_token && !parent_root {
            return Err(VaultError::bad("root tokens can only be created by root tokens"));
        }
        let display = f
            .string("display_name")?
            .filter(|d| !d.is_empty())
            .map(|d| format!("token-{d}"))
            .unwrap_or_else(|| "token".into());
        let meta = f.string_map("meta")?.unwrap_or_default();
        let num_uses = f.u64("num_uses")?.unwrap_or(0);
        let renewable = f.bool("renewable")?.unwrap_or(true);
        match f.string("type")?.as_deref() {
            None | Some("" | "service" | "default") => {}
            Some(t) => {
                return Err(VaultError::bad(format!(
                    "token type `{t}` is not supported: use `service`"
                )));
            }
        }
        // Accepted from clients that always send them, honoured only in their neutral form.
        if f.list("bound_cidrs")?.is_some_and(|c| !c.is_empty()) {
            return Err(VaultError::bad(
                "bound_cidrs is not supported: a token bound to addresses cannot be issued here",
            ));
        }
        f.accept(&["entity_alias", "lease", "format"]);
        f.finish()?;
        let (token, entry, ops) = st.tokens.prepare(
            TokenRequest {
                id,
                policies,
                meta,
                display_name: display,
                path: "auth/token/create".into(),
                ttl,
                explicit_max_ttl,
                num_uses,
                renewable,
                period,
                parent: (!no_parent).then(|| parent.hash.clone()),
            },
            now,
        )?;
        fx.extend(ops);
        let (st2, installed) = (st.clone(), entry.clone());
        fx.after(move || st2.tokens.install(&installed));
        Ok(Reply {
            auth: Some(entry.auth(&token, now)),
            ..Default::default()
        })
    }
}
