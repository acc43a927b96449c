//! Leases, with Vault's paths and shapes: `sys/leases/lookup` (and LIST of a prefix), `sys/leases/renew` (and the
//! older `sys/renew`), `sys/leases/revoke` (and `sys/revoke`), `revoke-prefix`, `revoke-force`, `tidy`, `count`
//! and the irrevocable listing (`sys/leases?type=irrevocable`). leakstop adds `sys/leases/abandoned`: the leases
//! dropped without their credential being revoked (revoke-force, or their mount gone), for someone to check.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::SysCall;
use super::seal::rfc3339;
use crate::core::Reply;
use crate::fields::Fields;
use crate::leases::{self, Abandoned};
use crate::{Operation, VaultError};

/// Vault's default cap on the irrevocable listing.
const DEFAULT_LIST_LIMIT: usize = 10_000;

pub(super) async fn handle(c: &SysCall<'_>, rest: &str) -> Result<Reply, VaultError> {
    use Operation::*;
    let now = c.lr.now_unix();
    // The lease id from the path (`sys/leases/renew/<id>`) or the body.
    let id = |from_path: &str| -> Result<String, VaultError> {
        if !from_path.is_empty() {
            return Ok(from_path.to_string());
        }
        Fields::new(&c.lr.data)
            .text("lease_id")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| VaultError::bad("field `lease_id` is required"))
    };
    let rest = rest.strip_prefix("leases/").map_or(rest, |r| r);
    let (verb, arg) = rest.split_once('/').unwrap_or((rest, ""));
    match (verb, c.lr.op) {
        ("lookup", Update | Create) => lookup(c, &id(arg)?, now),
        ("lookup", List | Read) => list_prefix(c, arg),
        ("renew", Update | Create) => {
            let increment = Fields::new(&c.lr.data).duration("increment")?;
            let id = id(arg)?;
            let r = leases::renew(c.core, &id, increment, now).await?;
            let mut warnings = Vec::new();
            if let Some(ttl) = r.capped_at {
                warnings.push(format!(
                    "TTL of the requested increment exceeded the lease's max TTL; the TTL is capped at {ttl}s"
                ));
            }
            Ok(Reply {
                lease_id: id,
                lease_duration: r.ttl,
                renewable: true,
                warnings,
                ..Default::default()
            })
        }
        ("revoke", Update | Create) => {
            // `sync=false` asks Vault to revoke in the background; revoking at once satisfies it too.
            let id = id(arg)?;
            leases::revoke_all(c.core, &[id], now).await?;
            Ok(Reply::empty())
        }
        ("revoke-prefix", Update | Create) => {
            let ids = under(c, arg)?;
            leases::revoke_all(c.core, &ids, now).await?;
            Ok(Reply::empty())
        }
        ("revoke-force", Update | Create) => {
            let ids = under(c, arg)?;
            leases::force_drop(c.core, &ids, now).await?;
            Ok(Reply::empty())
        }
        ("tidy", Update | Create) => {
            let t = leases::tidy(c.core, now).await?;
            Ok(Reply::data(json!({
                "removed_leases": t.leases,
                "removed_token_links": t.links,
            })))
        }
        ("count", Read) => count(c),
        ("abandoned", List | Read) => abandoned(c),
        ("leases" | "", Read | List) => irrevocable(c),
        _ => Err(VaultError::UnsupportedPath),
    }
}

/// The ids of every lease under `prefix` (a path boundary: `github/creds/ci` covers `github/creds/ci/...`).
fn under(c: &SysCall<'_>, prefix: &str) -> Result<Vec<String>, VaultError> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Err(VaultError::bad(
            "a prefix is required, e.g. sys/leases/revoke-prefix/database/creds/app",
        ));
    }
    let p = format!("{prefix}/");
    Ok(leases::all_ids(c.st)?
        .into_iter()
        .filter(|id| id.starts_with(&p))
        .collect())
}

fn lookup(c: &SysCall<'_>, id: &str, now: i64) -> Result<Reply, VaultError> {
    let l = leases::get(c.core, id)?.ok_or_else(|| VaultError::bad("invalid lease"))?;
    let ts = |t: i64| rfc3339(t).map_or(Value::Null, Value::String);
    Ok(Reply::data(json!({
        "id": l.id,
        "issue_time": if l.issue_time > 0 { ts(l.issue_time) } else { Value::Null },
        "expire_time": ts(l.expire_time),
        "last_renewal": l.last_renewal.map_or(Value::Null, ts),
        "renewable": l.renewable && l.retry.is_none(),
        "ttl": (l.expire_time - now).max(0),
    })))
}

/// LIST `sys/leases/lookup/<prefix>`: the next path segment of every lease id under the prefix (folders end in
/// `/`), as Vault lists them.
fn list_prefix(c: &SysCall<'_>, prefix: &str) -> Result<Reply, VaultError> {
    let p = match prefix.trim_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    let mut keys: Vec<String> = Vec::new();
    for id in leases::all_ids(c.st)? {
        let Some(rest) = id.strip_prefix(&p) else { continue };
        let item = match rest.find('/') {
            Some(i) => rest.get(..=i).unwrap_or(rest),
            None => rest,
        };
        if !item.is_empty() && keys.last().map(String::as_str) != Some(item) {
            keys.push(item.to_string());
        }
    }
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return Err(VaultError::NotFound);
    }
    Ok(Reply::data(json!({ "keys": keys })))
}

/// `type` from the query (GET) or the body.
fn param(c: &SysCall<'_>, name: &str) -> Option<String> {
    c.lr.query
        .get(name)
        .cloned()
        .or_else(|| c.lr.data.get(name).and_then(Value::as_str).map(String::from))
}

fn kind(c: &SysCall<'_>) -> Result<bool, VaultError> {
    match param(c, "type").as_deref() {
        Some("irrevocable") => Ok(true),
        Some("all") => Ok(false),
        _ => Err(VaultError::bad(
            "field `type` is required: `irrevocable` or `all` (count only)",
        )),
    }
}

/// `sys/leases/count?type=irrevocable|all`: how many, and per mount.
fn count(c: &SysCall<'_>) -> Result<Reply, VaultError> {
    let only_irrevocable = kind(c)?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for l in leases::all(c.st)? {
        if !only_irrevocable || l.is_irrevocable() {
            *counts.entry(l.mount).or_default() += 1;
            total += 1;
        }
    }
    Ok(Reply::data(json!({ "lease_count": total, "counts": counts })))
}

/// `sys/leases?type=irrevocable[&limit=N|none][&include_child=...]`: leases whose revocation keeps failing, with
/// their last error. Still retried; a later success removes them from this list.
fn irrevocable(c: &SysCall<'_>) -> Result<Reply, VaultError> {
    if !kind(c)? {
        return Err(VaultError::bad("only `type=irrevocable` leases can be listed"));
    }
    let limit = match param(c, "limit").as_deref() {
        None | Some("") => Some(DEFAULT_LIST_LIMIT),
        Some("none") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| VaultError::bad("`limit` must be a number or `none`"))?,
        ),
    };
    let found: Vec<_> = leases::all(c.st)?
        .into_iter()
        .filter(leases::Lease::is_irrevocable)
        .collect();
    let total = found.len();
    let mut warnings = Vec::new();
    if let Some(n) = limit
        && total > n
    {
        warnings.push(format!(
            "{total} irrevocable leases, only {n} listed: raise `limit` or set it to `none`"
        ));
    }
    let list: Vec<Value> = found
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|l| {
            let mount_id =
                c.st.mount_at(&l.mount)
                    .map_or_else(|| l.mount.clone(), |m| m.entry.accessor.clone());
            let r = l.retry.as_ref();
            json!({
                "lease_id": l.id,
                "mount_id": mount_id,
                "mount": l.mount,
                "error": r.map(|r| r.last_error.clone()),
                "expire_time": rfc3339(l.expire_time),
                "attempts": r.map(|r| r.attempts),
                "failing_since": r.and_then(|r| rfc3339(r.first_failure)),
                "next_attempt": r.and_then(|r| rfc3339(r.next_attempt)),
            })
        })
        .collect();
    Ok(Reply {
        data: Some(json!({ "lease_count": total, "leases": list })),
        warnings,
        ..Default::default()
    })
}

/// LIST `sys/leases/abandoned`: leases dropped without revoking their credential (ids with `key_info`).
fn abandoned(c: &SysCall<'_>) -> Result<Reply, VaultError> {
    let mut keys = Vec::new();
    let mut info = serde_json::Map::new();
    for k in c.st.barrier.list(leases::ABANDONED)? {
        let Some(a) =
            c.st.barrier
                .get_json::<Abandoned>(&format!("{}{k}", leases::ABANDONED))?
        else {
            continue;
        };
        info.insert(
            a.lease_id.clone(),
            json!({
                "mount": a.mount,
                "abandoned_at": rfc3339(a.abandoned_at),
                "expire_time": rfc3339(a.expire_time),
                "reason": a.reason,
                "last_error": a.last_error,
            }),
        );
        keys.push(a.lease_id);
    }
    if keys.is_empty() {
        return Err(VaultError::NotFound);
    }
    Ok(Reply::data(json!({ "keys": keys, "key_info": info })))
}
