//! Secrets engines and auth methods: `sys/mounts[/:path]`, `sys/auth[/:path]`, and the UI's
//! `sys/internal/ui/mounts[/:path]` (any token, filtered by what it may reach).

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde_json::{Map, Value, json};

use super::SysCall;
use super::policies::caller_acl;
use crate::core::{Mount, MountEntry, Reply};
use crate::fields::Fields;
use crate::pipeline::Effects;
use crate::{Operation, VaultError};

pub(super) fn handle(c: &SysCall<'_>, rest: &str, fx: &mut Effects) -> Result<Reply, VaultError> {
    use Operation::*;
    let st = c.st;
    match (rest, c.lr.op) {
        ("mounts", Read) => Ok(table_reply(
            &st.mounts,
            builtin(
                "sys/",
                "system",
                "system endpoints used for control, policy and debugging",
            ),
        )),
        ("auth", Read) => Ok(table_reply(
            &st.auth,
            builtin("token/", "token", "token based credentials"),
        )),
        ("internal/ui/mounts", Read) => {
            // Any token may ask; it is shown only the mounts it can do something with.
            let acl = caller_acl(st, c.caller)?;
            let to_map = |t: &RwLock<Vec<Mount>>, area: &str| {
                Value::Object(
                    t.read()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .filter(|m| acl.any_under(&format!("{area}{}", m.entry.path)))
                        .map(|m| (m.entry.path.clone(), m.entry.to_json()))
                        .collect(),
                )
            };
            Ok(Reply::data(
                json!({ "secret": to_map(&st.mounts, ""), "auth": to_map(&st.auth, "auth/") }),
            ))
        }
        ("internal/ui/mounts", _) => Err(VaultError::UnsupportedOperation),
        _ => one(c, rest, fx),
    }
}

/// `sys/mounts/:path`, `sys/auth/:path` and `sys/internal/ui/mounts/:path`.
fn one(c: &SysCall<'_>, rest: &str, fx: &mut Effects) -> Result<Reply, VaultError> {
    use Operation::*;
    let st = c.st;
    let (section, name) = rest.split_once('/').ok_or(VaultError::UnsupportedPath)?;
    match (section, c.lr.op) {
        ("mounts" | "auth", Create | Update) => {
            let mut f = Fields::new(&c.lr.data);
            let kind = f
                .text("type")?
                .ok_or_else(|| VaultError::bad("field `type` is required, e.g. \"kv\""))?;
            let mut options = f.string_map("options")?.unwrap_or_default();
            if kind == "kv-v2" {
                options.insert("version".into(), "2".into());
            }
            let kind = if kind == "kv-v2" { "kv" } else { kind.as_str() };
            if kind == "kv" && !options.contains_key("version") {
                options.insert("version".into(), "1".into());
            }
            let desc = f.text("description")?.unwrap_or_default();
            c.core
                .stage_mount(st, section == "auth", name, kind, &desc, options, fx)?;
            Ok(Reply::empty())
        }
        ("mounts" | "auth", Delete) => {
            c.core.stage_unmount(st, section == "auth", name, fx)?;
            Ok(Reply::empty())
        }
        ("mounts" | "auth", Read) => {
            let table = if section == "auth" { &st.auth } else { &st.mounts };
            let want = format!("{}/", name.trim_end_matches("/tune").trim_matches('/'));
            let t = table.read().unwrap_or_else(|e| e.into_inner());
            let m = t
                .iter()
                .find(|m| m.entry.path == want)
                .ok_or_else(|| VaultError::bad(format!("no mount at {want}")))?;
            Ok(Reply::data(m.entry.to_json()))
        }
        ("internal", Read) if name.starts_with("ui/mounts/") => {
            let target = name.trim_start_matches("ui/mounts/");
            let (m, _) = c
                .core
                .route(st, target)
                .ok_or_else(|| VaultError::bad(format!("no secrets engine is mounted at the path {target:?}")))?;
            let area = if target.starts_with("auth/") { "auth/" } else { "" };
            if !caller_acl(st, c.caller)?.any_under(&format!("{area}{}", m.entry.path)) {
                return Err(VaultError::PermissionDenied);
            }
            let mut v = m.entry.to_json();
            if let Some(o) = v.as_object_mut() {
                o.insert("path".into(), json!(m.entry.path));
            }
            Ok(Reply::data(v))
        }
        _ => Err(VaultError::UnsupportedPath),
    }
}

/// The always-present mounts Vault lists next to the configured ones (`sys/`, `auth/token/`).
fn builtin(path: &str, kind: &str, description: &str) -> (String, Value) {
    let e = MountEntry {
        path: path.into(),
        kind: kind.into(),
        description: description.into(),
        accessor: format!("{kind}_builtin"),
        uuid: String::new(),
        options: BTreeMap::new(),
        default_lease_ttl: 0,
        max_lease_ttl: 0,
    };
    (path.into(), e.to_json())
}

fn table_reply(table: &RwLock<Vec<Mount>>, builtin: (String, Value)) -> Reply {
    let mut map: Map<String, Value> = table
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|m| (m.entry.path.clone(), m.entry.to_json()))
        .collect();
    map.insert(builtin.0, builtin.1);
    let mut body = map.clone();
    body.insert("data".into(), Value::Object(map));
    Reply::raw(Value::Object(body))
}
