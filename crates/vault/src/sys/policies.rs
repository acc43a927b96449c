//! ACL policies (`sys/policy[/:name]`, `sys/policies/acl[/:name]`) and what a token may do
//! (`sys/capabilities`, `sys/capabilities-self`).

use serde_json::{Map, Value, json};

use super::SysCall;
use crate::core::{Reply, Unsealed};
use crate::fields::Fields;
use crate::pipeline::{Caller, Effects};
use crate::policy::{Acl, Policy};
use crate::{Operation, VaultError};

pub(super) fn handle(c: &SysCall<'_>, rest: &str, fx: &mut Effects) -> Result<Reply, VaultError> {
    use Operation::*;
    match (rest, c.lr.op) {
        ("policy", Read) | ("policies/acl", List) | ("policies/acl", Read) => {
            let names = c.st.policy_names()?;
            Ok(Reply::data(json!({ "keys": names, "policies": names })))
        }
        ("capabilities-self" | "capabilities", Update | Create) => capabilities(c, rest),
        _ => match rest.split_once('/') {
            Some(("policies", name)) if name.starts_with("acl/") => one(c, name.trim_start_matches("acl/"), fx),
            Some(("policy", name)) => one(c, name, fx),
            _ => Err(VaultError::UnsupportedPath),
        },
    }
}

fn capabilities(c: &SysCall<'_>, rest: &str) -> Result<Reply, VaultError> {
    let mut f = Fields::new(&c.lr.data);
    let policies = match (rest, c.caller) {
        ("capabilities", _) => {
            let t = f
                .text("token")?
                .ok_or_else(|| VaultError::bad("field `token` is required"))?;
            c.st.tokens
                .lookup(&t, c.lr.now_unix())?
                .ok_or_else(|| VaultError::bad("token not found"))?
                .policies
                .clone()
        }
        (_, Some((_, e))) => e.policies.clone(),
        _ => vec![],
    };
    let acl = c.st.acl(&policies)?;
    let paths = match f.list("paths")? {
        Some(p) => p,
        None => f
            .list("path")?
            .ok_or_else(|| VaultError::bad("field `paths` is required"))?,
    };
    let mut out = Map::new();
    for p in &paths {
        out.insert(p.clone(), json!(caps_of(&acl, p)));
    }
    if let [only] = paths.as_slice() {
        out.insert("capabilities".into(), json!(caps_of(&acl, only)));
    }
    Ok(Reply::data(Value::Object(out)))
}

fn one(c: &SysCall<'_>, name: &str, fx: &mut Effects) -> Result<Reply, VaultError> {
    use Operation::*;
    let st = c.st;
    // The path is canonical and the ACL has checked exactly this name: refuse any other spelling of it
    // rather than fold it into one (`ADMIN` written as `admin` would overwrite a policy the caller may not).
    if name.is_empty() || name.contains('/') {
        return Err(VaultError::bad("a policy name is required, without `/`"));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(VaultError::bad(format!(
            "policy names are lower case: use `{}`",
            name.to_ascii_lowercase()
        )));
    }
    match c.lr.op {
        Read => {
            if name == "root" {
                return Ok(Reply::data(json!({ "name": "root", "policy": "", "rules": "" })));
            }
            let p = st.policy(name)?.ok_or(VaultError::NotFound)?;
            Ok(Reply::data(json!({ "name": p.name, "policy": p.raw, "rules": p.raw })))
        }
        Create | Update => {
            if name == "root" {
                return Err(VaultError::bad("cannot update the root policy"));
            }
            let data = &c.lr.data;
            let text = match data.get("policy").or_else(|| data.get("rules")) {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Object(_)) => v.to_string(),
                _ => return Err(VaultError::bad("field `policy` is required: the policy in HCL or JSON")),
            };
            st.stage_policy(Policy::parse(name, &text)?, fx);
            Ok(Reply::empty())
        }
        Delete => {
            if name == "root" || name == "default" {
                return Err(VaultError::bad(format!("cannot delete the {name} policy")));
            }
            st.stage_delete_policy(name, fx);
            Ok(Reply::empty())
        }
        _ => Err(VaultError::UnsupportedOperation),
    }
}

/// The ACL of the caller (none for a caller without a token: it may see nothing).
pub(super) fn caller_acl(st: &Unsealed, token: Option<&Caller>) -> Result<Acl, VaultError> {
    match token {
        Some((_, e)) => st.acl(&e.policies),
        None => Ok(Acl::default()),
    }
}

fn caps_of(acl: &Acl, path: &str) -> Vec<&'static str> {
    if acl.is_root() {
        return vec!["root"];
    }
    let names = acl.capabilities(path).names();
    if names.is_empty() { vec!["deny"] } else { names }
}
