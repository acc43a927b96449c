//! `sys/*` and `auth/token/*`: seal lifecycle, mounts, auth methods, policies, audit devices, key rotation and the
//! token store's endpoints, with the request and response shapes Vault clients (hvac, the bao/vault CLI) expect.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use crate::audit::DeviceConfig;
use crate::core::{ApiRequest, Core, Reply, Unsealed, VERSION};
use crate::engine::unix_seconds;
use crate::fields::{self, Fields};
use crate::pipeline::{Caller, Effects};
use crate::policy::{Acl, Policy};
use crate::token::{SYSTEM_MAX_TTL, TokenEntry, TokenRequest};
use crate::{LogicalRequest, Operation, VaultError};

fn bad(msg: impl Into<String>) -> VaultError {
    VaultError::BadRequest(msg.into())
}

fn str_field<'a>(data: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    data.get(field).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn duration(data: &Map<String, Value>, field: &str) -> Result<Option<u64>, VaultError> {
    data.get(field)
        .filter(|v| !v.is_null())
        .map(|v| fields::duration(v, field))
        .transpose()
}

/// A list field as Vault takes it: a JSON array of strings or one comma-separated string (the CLI's form).
pub(crate) fn string_list(data: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, VaultError> {
    data.get(field)
        .filter(|v| !v.is_null())
        .map(|v| fields::list(v, field))
        .transpose()
}

impl Core {
    /// `sys/seal-status` body.
    pub fn seal_status(&self) -> Result<Value, VaultError> {
        let cfg = self.seal_config()?;
        let (t, n) = cfg
            .as_ref()
            .map(|c| (c.secret_threshold.max(1), c.secret_shares.max(1)))
            .unwrap_or((0, 0));
        Ok(json!({
            "type": self.seal_kind().as_str(),
            "initialized": cfg.is_some(),
            "sealed": self.is_sealed(),
            "t": t,
            "n": n,
            "progress": self.unseal_progress(),
            "nonce": "",
            "version": VERSION,
            "build_date": "",
            "migration": false,
            "cluster_name": self.options.cluster_name,
            "cluster_id": "",
            "recovery_seal": self.seal_kind() == leakstop_seal::SealKind::Pkcs11,
            "storage_type": self.options.storage_type,
        }))
    }

    /// Endpoints that work without a token and while sealed.
    pub(crate) async fn unauthenticated(self: &Arc<Self>, req: &ApiRequest) -> Option<Result<Reply, VaultError>> {
        let op = req.op;
        Some(match (req.path.as_str(), op) {
            ("sys/seal-status", Operation::Read) => self.seal_status().map(Reply::raw),
            ("sys/health", Operation::Read) => self.health(),
            ("sys/init", Operation::Read) => self.is_initialized().map(|i| Reply::raw(json!({ "initialized": i }))),
            ("sys/init", Operation::Update | Operation::Create) => self.init_endpoint(&req.data).await,
            ("sys/unseal", Operation::Update | Operation::Create) => self.unseal_endpoint(&req.data).await,
            ("sys/leader", Operation::Read) => Ok(Reply::raw(json!({
                "ha_enabled": false, "is_self": true, "leader_address": "", "leader_cluster_address": "",
                "performance_standby": false,
            }))),
            _ => return None,
        })
    }

    fn health(&self) -> Result<Reply, VaultError> {
        let init = self.is_initialized()?;
        let sealed = self.is_sealed();
        let status = if !init {
            501
        } else if sealed {
            503
        } else {
            200
        };
        Ok(Reply::raw_status(
            status,
            json!({
                "initialized": init, "sealed": sealed, "standby": false, "performance_standby": false,
                "replication_performance_mode": "disabled", "replication_dr_mode": "disabled",
                "server_time_utc": unix_seconds(std::time::SystemTime::now()), "version": VERSION, "cluster_name": self.options.cluster_name,
                "cluster_id": "",
            }),
        ))
    }

    async fn init_endpoint(self: &Arc<Self>, data: &Map<String, Value>) -> Result<Reply, VaultError> {
        let num = |f: &str, d: u64| -> Result<u64, VaultError> {
            data.get(f)
                .filter(|v| !v.is_null())
                .map(|v| fields::unsigned(v, f))
                .unwrap_or(Ok(d))
        };
        let shares = num("secret_shares", 5)?;
        let threshold = num("secret_threshold", 3)?;
        if shares > 255 || threshold > 255 {
            return Err(bad("secret_shares and secret_threshold must be at most 255"));
        }
        let (keys, root) = self.init(shares as u8, threshold as u8, None).await?;
        Ok(Reply::raw(json!({
            "keys": keys.iter().map(hex::encode).collect::<Vec<_>>(),
            "keys_base64": keys.iter().map(|k| B64.encode(k)).collect::<Vec<_>>(),
            "recovery_keys": [],
            "recovery_keys_base64": [],
            "root_token": root,
        })))
    }

    async fn unseal_endpoint(self: &Arc<Self>, data: &Map<String, Value>) -> Result<Reply, VaultError> {
        if data
            .get("reset")
            .is_some_and(|v| fields::boolean(v, "reset").unwrap_or(false))
        {
            self.reset_unseal();
            return self.seal_status().map(Reply::raw);
        }
        let key = str_field(data, "key")
            .ok_or_else(|| bad("field `key` is required: one unseal key share (hex or base64)"))?;
        let share = zeroize::Zeroizing::new(hex::decode(key).or_else(|_| B64.decode(key)).map_err(|_| {
            bad("the unseal key is neither hex nor base64: paste one share exactly as `operator init` printed it")
        })?);
        self.submit_unseal_key(share).await?;
        self.seal_status().map(Reply::raw)
    }

    /// Everything under `sys/` and `auth/token/` that needs a token. Writes to shared state are staged in `fx`.
    pub(crate) async fn handle_system(
        self: &Arc<Self>,
        st: &Arc<Unsealed>,
        path: &str,
        lr: &LogicalRequest,
        token: Option<&Caller>,
        fx: &mut Effects,
    ) -> Result<Reply, VaultError> {
        let data = &lr.data;
        let op = lr.op;
        use Operation::*;
        if let Some(rest) = path.strip_prefix("auth/token/") {
            return self.token_endpoint(st, rest, lr, token, fx).await;
        }
        let rest = path.strip_prefix("sys/").unwrap_or(path);
        match (rest, op) {
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
            ("audit", Read) => {
                let list = self.audit.list_json();
                let mut body = list.as_object().cloned().unwrap_or_default();
                body.insert("data".into(), list);
                Ok(Reply::raw(Value::Object(body)))
            }
            // Hands out the chain key: sudo, as the other audit endpoints.
            // Root-protected: the pipeline's `needs_sudo` lists it.
            ("audit-chain", Read) => Ok(Reply::data(self.audit.chain_json().map_err(|e| bad(e.to_string()))?)),
            ("policy", Read) | ("policies/acl", List) | ("policies/acl", Read) => {
                let names = st.policy_names()?;
                Ok(Reply::data(json!({ "keys": names, "policies": names })))
            }
            // Takes effect at once: the new term is stored before it is used (see `Barrier::rotate`).
            ("rotate", Update | Create) => {
                st.barrier.rotate(lr.now_unix())?;
                Ok(Reply::empty())
            }
            ("key-status", Read) => {
                let k = st.barrier.key_status();
                let installed = time::OffsetDateTime::from_unix_timestamp(k.installed)
                    .ok()
                    .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok());
                Ok(Reply::data(
                    json!({ "term": k.term, "install_time": installed, "encryptions": k.encryptions_hint }),
                ))
            }
            ("seal", Update | Create) => {
                self.seal();
                Ok(Reply::empty())
            }
            ("capabilities-self", Update | Create) | ("capabilities", Update | Create) => {
                let policies = match (rest, token) {
                    ("capabilities", _) => {
                        let t = str_field(data, "token").ok_or_else(|| bad("field `token` is required"))?;
                        st.tokens
                            .lookup(t, lr.now_unix())?
                            .ok_or_else(|| bad("token not found"))?
                            .policies
                            .clone()
                    }
                    (_, Some((_, e))) => e.policies.clone(),
                    _ => vec![],
                };
                let acl = st.acl(&policies)?;
                let paths = string_list(data, "paths")?
                    .or(string_list(data, "path")?)
                    .ok_or_else(|| bad("field `paths` is required"))?;
                let mut out = Map::new();
                for p in &paths {
                    out.insert(p.clone(), json!(caps_of(&acl, p)));
                }
                if paths.len() == 1 {
                    out.insert("capabilities".into(), json!(caps_of(&acl, &paths[0])));
                }
                Ok(Reply::data(Value::Object(out)))
            }
            ("leases/revoke", Update | Create) | ("revoke", Update | Create) => {
                let id = str_field(data, "lease_id").ok_or_else(|| bad("field `lease_id` is required"))?;
                crate::leases::revoke_all(self, &[id.to_string()]).await?;
                Ok(Reply::empty())
            }
            ("leases/lookup", Update | Create) => {
                let id = str_field(data, "lease_id").ok_or_else(|| bad("field `lease_id` is required"))?;
                let l = crate::leases::get(self, id)?.ok_or_else(|| bad("invalid lease"))?;
                let now = lr.now_unix();
                let expire = time::OffsetDateTime::from_unix_timestamp(l.expire_time)
                    .ok()
                    .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok());
                Ok(Reply::data(json!({
                    "id": l.id, "expire_time": expire, "ttl": (l.expire_time - now).max(0), "renewable": false,
                })))
            }
            ("internal/ui/mounts", Read) => {
                // Any token may ask; it is shown only the mounts it can do something with.
                let acl = caller_acl(st, token)?;
                let to_map = |t: &std::sync::RwLock<Vec<crate::core::Mount>>, area: &str| {
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
            _ => self.sys_with_name(st, rest, op, data, token, fx).await,
        }
    }

    async fn sys_with_name(
        self: &Arc<Self>,
        st: &Arc<Unsealed>,
        rest: &str,
        op: Operation,
        data: &Map<String, Value>,
        token: Option<&Caller>,
        fx: &mut Effects,
    ) -> Result<Reply, VaultError> {
        use Operation::*;
        let (section, name) = rest.split_once('/').ok_or(VaultError::UnsupportedPath)?;
        match (section, op) {
            ("mounts" | "auth", Create | Update) => {
                let kind = str_field(data, "type").ok_or_else(|| bad("field `type` is required, e.g. \"kv\""))?;
                let mut options = match data.get("options").filter(|v| !v.is_null()) {
                    Some(v) => fields::string_map(v, "options")?,
                    None => BTreeMap::new(),
                };
                if kind == "kv-v2" {
                    options.insert("version".into(), "2".into());
                }
                let kind = if kind == "kv-v2" { "kv" } else { kind };
                if kind == "kv" && !options.contains_key("version") {
                    options.insert("version".into(), "1".into());
                }
                let desc = str_field(data, "description").unwrap_or_default();
                self.stage_mount(st, section == "auth", name, kind, desc, options, fx)?;
                Ok(Reply::empty())
            }
            ("mounts" | "auth", Delete) => {
                self.stage_unmount(st, section == "auth", name, fx)?;
                Ok(Reply::empty())
            }
            ("mounts" | "auth", Read) => {
                let table = if section == "auth" { &st.auth } else { &st.mounts };
                let want = format!("{}/", name.trim_end_matches("/tune").trim_matches('/'));
                let t = table.read().unwrap_or_else(|e| e.into_inner());
                let m = t
                    .iter()
                    .find(|m| m.entry.path == want)
                    .ok_or_else(|| bad(format!("no mount at {want}")))?;
                Ok(Reply::data(m.entry.to_json()))
            }
            ("policies", _) if name.starts_with("acl/") => self.policy_endpoint(st, &name[4..], op, data, fx),
            ("policy", _) => self.policy_endpoint(st, name, op, data, fx),
            ("audit", Create | Update) => {
                let cfg = DeviceConfig::from_request(name, data).map_err(|e| bad(e.to_string()))?;
                self.audit.enable_requested(cfg).await.map_err(|e| bad(e.to_string()))?;
                self.stage_audit_table(fx)?;
                Ok(Reply::empty())
            }
            ("audit", Delete) => {
                self.audit.disable(name).map_err(|e| bad(e.to_string()))?;
                self.stage_audit_table(fx)?;
                Ok(Reply::empty())
            }
            ("audit-hash", Create | Update) => {
                let input = data
                    .get("input")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("field `input` is required"))?;
                let hash = self.audit.hash(name, input).map_err(|e| bad(e.to_string()))?;
                Ok(Reply::data(json!({ "hash": hash })))
            }
            ("internal", Read) if name.starts_with("ui/mounts/") => {
                let target = &name["ui/mounts/".len()..];
                let (m, _) = self
                    .route(st, target)
                    .ok_or_else(|| bad(format!("no secrets engine is mounted at the path {target:?}")))?;
                let area = if target.starts_with("auth/") { "auth/" } else { "" };
                if !caller_acl(st, token)?.any_under(&format!("{area}{}", m.entry.path)) {
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

    fn policy_endpoint(
        &self,
        st: &Arc<Unsealed>,
        name: &str,
        op: Operation,
        data: &Map<String, Value>,
        fx: &mut Effects,
    ) -> Result<Reply, VaultError> {
        use Operation::*;
        // The path is canonical and the ACL has checked exactly this name: refuse any other spelling of it
        // rather than fold it into one (`ADMIN` written as `admin` would overwrite a policy the caller may not).
        if name.is_empty() || name.contains('/') {
            return Err(bad("a policy name is required, without `/`"));
        }
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad(format!(
                "policy names are lower case: use `{}`",
                name.to_ascii_lowercase()
            )));
        }
        let name = name.to_string();
        match op {
            Read => {
                if name == "root" {
                    return Ok(Reply::data(json!({ "name": "root", "policy": "", "rules": "" })));
                }
                let p = st.policy(&name)?.ok_or(VaultError::NotFound)?;
                Ok(Reply::data(json!({ "name": p.name, "policy": p.raw, "rules": p.raw })))
            }
            Create | Update => {
                if name == "root" {
                    return Err(bad("cannot update the root policy"));
                }
                let text = match data.get("policy").or_else(|| data.get("rules")) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ Value::Object(_)) => v.to_string(),
                    _ => return Err(bad("field `policy` is required: the policy in HCL or JSON")),
                };
                st.stage_policy(Policy::parse(&name, &text)?, fx);
                Ok(Reply::empty())
            }
            Delete => {
                if name == "root" || name == "default" {
                    return Err(bad(format!("cannot delete the {name} policy")));
                }
                st.stage_delete_policy(&name, fx);
                Ok(Reply::empty())
            }
            _ => Err(VaultError::UnsupportedOperation),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn token_endpoint(
        self: &Arc<Self>,
        st: &Arc<Unsealed>,
        rest: &str,
        lr: &LogicalRequest,
        caller: Option<&Caller>,
        fx: &mut Effects,
    ) -> Result<Reply, VaultError> {
        use Operation::*;
        let (op, data, query) = (lr.op, &lr.data, &lr.query);
        let (caller_token, caller) = caller
            .map(|(t, e)| (t.as_str(), e.clone()))
            .ok_or(VaultError::PermissionDenied)?;
        let now = lr.now_unix();
        let token_arg = || {
            str_field(data, "token")
                .or(query.get("token").map(String::as_str))
                .ok_or_else(|| bad("field `token` is required"))
        };
        let accessor_arg = || str_field(data, "accessor").ok_or_else(|| bad("field `accessor` is required"));
        let lookup_token = |t: &str| st.tokens.lookup(t, now)?.ok_or_else(|| bad("bad token"));
        match (rest, op) {
            ("create" | "create-orphan", Create | Update) => {
                self.create_token(st, &caller, data, rest == "create-orphan", now, fx)
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
                    .ok_or_else(|| bad("invalid accessor"))?;
                Ok(Reply::data(e.lookup_json("", now)))
            }
            ("renew-self", Update | Create) => {
                let e = st.tokens.renew(&caller.hash, duration(data, "increment")?, now)?;
                Ok(Reply {
                    auth: Some(e.auth_json(caller_token, now)),
                    ..Default::default()
                })
            }
            ("renew", Update | Create) => {
                let t = token_arg()?;
                let e = lookup_token(t)?;
                let e = st.tokens.renew(&e.hash, duration(data, "increment")?, now)?;
                Ok(Reply {
                    auth: Some(e.auth_json(t, now)),
                    ..Default::default()
                })
            }
            ("renew-accessor", Update | Create) => {
                let e = st
                    .tokens
                    .lookup_accessor(accessor_arg()?, now)?
                    .ok_or_else(|| bad("invalid accessor"))?;
                let e = st.tokens.renew(&e.hash, duration(data, "increment")?, now)?;
                let mut auth = e.auth_json("", now);
                auth["client_token"] = json!("");
                Ok(Reply {
                    auth: Some(auth),
                    ..Default::default()
                })
            }
            ("revoke-self", Update | Create) => {
                self.revoke_token_tree(st, &caller.hash).await?;
                Ok(Reply::empty())
            }
            ("revoke", Update | Create) => {
                if let Some(e) = st.tokens.lookup(token_arg()?, now)? {
                    self.revoke_token_tree(st, &e.hash).await?;
                }
                Ok(Reply::empty())
            }
            ("revoke-accessor", Update | Create) => {
                if let Some(e) = st.tokens.lookup_accessor(accessor_arg()?, now)? {
                    self.revoke_token_tree(st, &e.hash).await?;
                }
                Ok(Reply::empty())
            }
            ("revoke-orphan", Update | Create) => {
                if let Some(e) = st.tokens.lookup(token_arg()?, now)? {
                    let leases = st.tokens.revoke_orphan(&e.hash)?;
                    self.revoke_leases(&leases).await?;
                }
                Ok(Reply::empty())
            }
            _ => Err(VaultError::UnsupportedPath),
        }
    }

    /// Revoke a token, its children, and every lease they own.
    pub async fn revoke_token_tree(&self, st: &Unsealed, hash: &str) -> Result<(), VaultError> {
        let leases = st.tokens.revoke_tree(hash)?;
        self.revoke_leases(&leases).await
    }

    /// Hook for lease revocation (engines that issue leases register through `crate::leases`).
    pub async fn revoke_leases(&self, leases: &[String]) -> Result<(), VaultError> {
        if leases.is_empty() {
            return Ok(());
        }
        crate::leases::revoke_all(self, leases).await
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
            return Err(bad("a token with a use limit cannot create child tokens"));
        }
        let mut f = Fields::new(data);
        let parent_root = parent.policies.iter().any(|p| p == "root");
        let mut policies = f.list("policies")?.unwrap_or_else(|| parent.policies.clone());
        if !parent_root
            && let Some(p) = policies
                .iter()
                .find(|p| *p != "default" && !parent.policies.contains(p))
        {
            return Err(bad(format!(
                "child policies must be a subset of the parent's: the parent token does not have policy {p:?}"
            )));
        }
        let no_default = f.bool("no_default_policy")?.unwrap_or(false);
        if !no_default && !policies.iter().any(|p| p == "default" || p == "root") {
            policies.push("default".into());
        }
        let no_parent = orphan_endpoint || f.bool("no_parent")?.unwrap_or(false);
        if no_parent && !parent_root && !orphan_endpoint {
            return Err(bad("root or sudo privileges required to create an orphan token"));
        }
        let id = f.string("id")?.filter(|s| !s.is_empty());
        if id.is_some() && !parent_root {
            return Err(bad("root or sudo privileges required to specify a token id"));
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
            return Err(bad("root tokens can only be created by root tokens"));
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
            Some(t) => return Err(bad(format!("token type `{t}` is not supported: use `service`"))),
        }
        // Accepted from clients that always send them, honoured only in their neutral form.
        if f.list("bound_cidrs")?.is_some_and(|c| !c.is_empty()) {
            return Err(bad(
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
            auth: Some(entry.auth_json(&token, now)),
            ..Default::default()
        })
    }
}

/// The ACL of the caller (none for a caller without a token: it may see nothing).
fn caller_acl(st: &Unsealed, token: Option<&Caller>) -> Result<Acl, VaultError> {
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

/// The always-present mounts Vault lists next to the configured ones (`sys/`, `auth/token/`).
fn builtin(path: &str, kind: &str, description: &str) -> (String, Value) {
    let e = crate::core::MountEntry {
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

fn table_reply(table: &std::sync::RwLock<Vec<crate::core::Mount>>, builtin: (String, Value)) -> Reply {
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
