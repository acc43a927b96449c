//! The request pipeline every authenticated API call goes through, as named steps over a [`Context`]:
//!
//! canonical path → route → authenticate (a token, unless the routed backend declares the path unauthenticated)
//! → resolve the operation (create vs update) → authorise (ACL, sudo) → claim a use of a limited-use token →
//! audit the request → dispatch (engine or system endpoint, writes staged) → finish a login (mint its token) →
//! audit the response → commit → after-commit effects.
//!
//! Why this order:
//! - The path is made canonical once, before anything reads it, so the ACL checks exactly the path the handler
//!   acts on (`sys/mounts//secret` or `sys/policy/admin/` can no longer slip past a `deny`).
//! - Which paths need no token is decided by the backend that serves them, after routing, on the mount-relative
//!   path — never by the shape of the URL. A caller without a valid token learns nothing else: an unknown path
//!   and a forbidden one both answer 403.
//! - A use of a limited-use token is claimed before the request runs, atomically, so `num_uses=1` means one
//!   request however many race, and nothing written afterwards can bring back a revoked token.
//! - Every exit is audited, refusals included, and staged writes commit only once the response is in the audit
//!   log: a request the audit device refuses changes nothing. Revocations, renewals, sealing and key rotation
//!   act once the request line is durable (undoing them is not safer than keeping them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use leakstop_proto::Auth;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::OwnedMutexGuard;
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::audit::{AuditAuth, AuditEntry, EntryKind};
use crate::barrier::BufferedOp;
use crate::core::{ApiRequest, Core, Mount, MountEntry, Reply, Unsealed, audit_auth};
use crate::engine::{LogicalResponse, LoginSpec, unix_seconds};
use crate::leases::Lease;
use crate::token::{SYSTEM_MAX_TTL, TokenEntry, TokenRequest, UseClaim};
use crate::{LogicalRequest, Operation, VaultError};

/// An authenticated caller: the token as presented and its entry.
pub type Caller = (String, Arc<TokenEntry>);

/// Writes a system endpoint stages instead of applying: committed with the request's other writes once the
/// response is audited; `after` then brings the in-memory state (caches, mount tables) in line.
#[derive(Default)]
pub struct Effects {
    ops: Vec<BufferedOp>,
    after: Vec<Box<dyn FnOnce() + Send + Sync>>,
}

impl Effects {
    pub fn put(&mut self, key: impl Into<String>, value: Vec<u8>) {
        self.ops.push(BufferedOp::Put(key.into(), Zeroizing::new(value)));
    }

    pub fn put_json<T: Serialize>(&mut self, key: impl Into<String>, v: &T) -> Result<(), VaultError> {
        self.put(key, serde_json::to_vec(v)?);
        Ok(())
    }

    pub fn delete(&mut self, key: impl Into<String>) {
        self.ops.push(BufferedOp::Delete(key.into()));
    }

    pub fn extend(&mut self, ops: Vec<BufferedOp>) {
        self.ops.extend(ops);
    }

    /// Run `f` once the writes are committed (never when they are not).
    pub fn after(&mut self, f: impl FnOnce() + Send + Sync + 'static) {
        self.after.push(Box::new(f));
    }

    /// Commit now and run the after-commit effects (for callers outside a request, e.g. `init`).
    pub fn apply(self, st: &Unsealed) -> Result<(), VaultError> {
        st.barrier.commit(&self.ops)?;
        for f in self.after {
            f();
        }
        Ok(())
    }
}

/// Where a canonical path leads.
enum Target {
    /// `sys/*` and `auth/token/*`, served by the core itself.
    System,
    /// A mounted engine or auth method, with the path relative to the mount.
    Engine { mount: Mount, rest: String, auth: bool },
    /// Nothing is mounted there.
    Nowhere,
}

/// One request on its way through the pipeline.
struct Context {
    op: Operation,
    path: String,
    data: Map<String, Value>,
    query: HashMap<String, String>,
    token: Option<String>,
    /// The request's one clock reading (and the same as Unix seconds): every expiry it sets or checks uses it.
    now: SystemTime,
    unix: i64,
    /// The request's audit line; written before the request runs, or together with the response when the
    /// request ends before running (refused) or changes nothing before its commit (buffered engines).
    audit: AuditEntry,
    request_logged: bool,
    caller: Option<Caller>,
    /// Set when this request claimed the caller's last use: the token is revoked when the request ends.
    last_use: Option<String>,
}

/// A request that ran: its reply and what it wants committed.
#[derive(Default)]
struct Outcome {
    reply: Reply,
    effects: Effects,
    new_token: Option<TokenEntry>,
    /// Serialises writes to the same target from dispatch through commit.
    _guard: Option<OwnedMutexGuard<()>>,
}

/// The canonical form of a request path, or a 400 naming what is wrong with it. One trailing slash is allowed and
/// dropped (LIST is told apart by its operation, not its slash); empty, `.` and `..` segments and control
/// characters are refused, never repaired, so that the ACL and the handler cannot disagree about the path.
pub fn canonical_path(raw: &str) -> Result<String, VaultError> {
    let bad = |why: &str| {
        VaultError::BadRequest(format!(
            "invalid request path: {why}; send the path in its plain form, e.g. `secret/data/app`"
        ))
    };
    if raw.chars().any(char::is_control) {
        return Err(bad("it contains a control character"));
    }
    let body = raw.strip_suffix('/').unwrap_or(raw);
    if body.is_empty() {
        return Err(VaultError::UnsupportedPath);
    }
    for seg in body.split('/') {
        match seg {
            "" => return Err(bad("it contains an empty segment (`//`)")),
            "." | ".." => return Err(bad("it contains a `.` or `..` segment")),
            _ => {}
        }
    }
    Ok(body.to_string())
}

impl Core {
    /// Handle one API request end to end.
    #[tracing::instrument(name = "request", skip_all, fields(op = req.op.as_str()))]
    pub async fn handle(self: &Arc<Self>, req: ApiRequest) -> Result<Reply, VaultError> {
        let reply = self.handle_request(req).await;
        if matches!(reply, Err(VaultError::NotActive)) {
            self.note_fenced();
        }
        reply
    }

    async fn handle_request(self: &Arc<Self>, mut req: ApiRequest) -> Result<Reply, VaultError> {
        let path = canonical_path(&req.path);
        if let Ok(p) = &path {
            req.path.clone_from(p);
            if let Some(r) = self.unauthenticated(&req).await {
                return r;
            }
        }
        let st = self.unsealed()?;
        if path.as_deref().is_ok_and(|p| is_open_system(p, req.op)) {
            // Before anything is read or logged: a flood of reports costs one map lookup each.
            let cfg = self.leaks.config(&st)?;
            let addr = req.remote_addr.as_deref().unwrap_or_default();
            self.leaks.admit(addr, &cfg, std::time::Instant::now())?;
        }
        let now = SystemTime::now();
        let mut audit = AuditEntry::new(EntryKind::Request, now, &req.request_id, req.op.as_str(), &req.path);
        audit.remote_address = req.remote_addr.take();
        audit.request_data = (!req.data.is_empty()).then(|| Value::Object(req.data.clone()));
        // A refused request changes nothing: its lines need not be fsynced before the answer.
        audit.durable = false;
        let mut cx = Context {
            op: req.op,
            path: String::new(),
            data: std::mem::take(&mut req.data),
            query: std::mem::take(&mut req.query),
            token: req.token.take(),
            now,
            unix: unix_seconds(now),
            audit,
            request_logged: false,
            caller: None,
            last_use: None,
        };
        let outcome = match path {
            Ok(p) => {
                cx.path = p;
                self.run(&st, &mut cx).await
            }
            Err(e) => Err(e),
        };
        self.conclude(&st, cx, outcome).await
    }

    async fn run(self: &Arc<Self>, st: &Arc<Unsealed>, cx: &mut Context) -> Result<Outcome, VaultError> {
        let target = self.target(st, &cx.path);
        let open = match &target {
            Target::Engine { mount, rest, .. } => declares_open(mount, rest),
            Target::System => is_open_system(&cx.path, cx.op),
            Target::Nowhere => false,
        };
        if !open {
            let caller = self.authenticate(st, cx)?;
            cx.audit.auth = Some(audit_auth(Some(&caller.0), &caller.1, cx.unix));
            cx.caller = Some(caller);
        }
        let engine = match target {
            Target::Nowhere => return Err(VaultError::UnsupportedPath),
            Target::System => None,
            Target::Engine { mount, rest, auth } => {
                cx.audit.mount_point = Some(if auth {
                    format!("auth/{}", mount.entry.path)
                } else {
                    mount.entry.path.clone()
                });
                cx.audit.mount_type = Some(mount.entry.kind.clone());
                let view = st.view(&mount, auth);
                Some((mount, rest, auth, view, open))
            }
        };
        let mut op = cx.op;
        if let Some((mount, rest, _, view, false)) = &engine
            && op == Operation::Update
            && !mount.backend.exists(rest, view).await?
        {
            op = Operation::Create;
        }
        cx.audit.operation = op.as_str().into();
        self.authorise(st, cx, op)?;
        self.claim_use(st, cx)?;

        // An engine whose every effect is a buffered write changes nothing before the commit, which waits for
        // both lines: its request line goes to the device with the response line, so one flush serves both.
        // Everything else waits for its request line before it runs.
        let pipelined = engine.as_ref().is_some_and(|(m, ..)| m.backend.effects_buffered());
        cx.audit.durable = !pipelined || op.is_write();
        if self.audit.is_enabled() && !pipelined {
            self.audit.log(&cx.audit).await.map_err(audit_unavailable)?;
            cx.request_logged = true;
        }

        let logical = LogicalRequest {
            op,
            path: engine.as_ref().map(|(_, rest, ..)| rest.clone()).unwrap_or_default(),
            data: std::mem::take(&mut cx.data),
            query: std::mem::take(&mut cx.query),
            now: cx.now,
            authenticated: cx.caller.is_some(),
        };
        match engine {
            Some((mount, rest, auth, view, open)) => {
                let guard = match (op.is_write(), open) {
                    (true, false) => Some(st.write_lock(&mount, &rest).await),
                    _ => None,
                };
                // The engine's own span: which mount and type answered, never the request's data.
                let span = tracing::debug_span!("engine", mount = %mount.entry.path, kind = %mount.entry.kind);
                let lr = mount.backend.handle(&logical, &view).instrument(span).await?;
                let mut out = Outcome {
                    _guard: guard,
                    ..Default::default()
                };
                out.effects.extend(view.take_pending());
                out.reply = self.engine_reply(st, cx, &mount, &rest, auth, lr, &mut out)?;
                Ok(out)
            }
            None => {
                // System writes change shared tables: one at a time, from staging through commit.
                let guard = match op.is_write() && cx.path.starts_with("sys/") {
                    true => Some(st.sys_lock().await),
                    false => None,
                };
                let mut out = Outcome {
                    _guard: guard,
                    ..Default::default()
                };
                out.reply = self
                    .handle_system(st, &cx.path, &logical, cx.caller.as_ref(), &mut out.effects)
                    .await?;
                Ok(out)
            }
        }
    }

    /// Where a canonical path leads.
    fn target(&self, st: &Unsealed, path: &str) -> Target {
        if path == "sys" || path.starts_with("sys/") || path == "auth/token" || path.starts_with("auth/token/") {
            return Target::System;
        }
        match self.route(st, path) {
            Some((mount, rest)) => Target::Engine {
                mount,
                rest,
                auth: path.starts_with("auth/"),
            },
            None => Target::Nowhere,
        }
    }

    /// The caller's token, or 403. Expired, revoked and used-up tokens are all simply unknown.
    fn authenticate(&self, st: &Unsealed, cx: &Context) -> Result<Caller, VaultError> {
        let t = cx
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or(VaultError::PermissionDenied)?;
        let e = st.tokens.lookup(t, cx.unix)?.ok_or(VaultError::PermissionDenied)?;
        Ok((t.to_string(), e))
    }

    /// The ACL, on the canonical path (LIST checks the path with its trailing slash, as Vault's policies expect).
    fn authorise(&self, st: &Unsealed, cx: &Context, op: Operation) -> Result<(), VaultError> {
        let Some((_, entry)) = &cx.caller else { return Ok(()) };
        if is_self_service(&cx.path) {
            return Ok(());
        }
        let acl = st.acl(&entry.policies)?;
        let policy_path = if op == Operation::List {
            format!("{}/", cx.path)
        } else {
            cx.path.clone()
        };
        if acl.allows(&policy_path, op, needs_sudo(&cx.path)) {
            Ok(())
        } else {
            Err(VaultError::PermissionDenied)
        }
    }

    fn claim_use(&self, st: &Unsealed, cx: &mut Context) -> Result<(), VaultError> {
        let Some((_, e)) = &cx.caller else { return Ok(()) };
        if e.num_uses > 0 && st.tokens.claim_use(&e.hash, cx.unix)? == UseClaim::Last {
            cx.last_use = Some(e.hash.clone());
        }
        Ok(())
    }

    /// Turn an engine's answer into the reply: record the lease it issued and mint the token its login asked for,
    /// both staged into the request's commit.
    #[allow(clippy::too_many_arguments)]
    fn engine_reply(
        &self,
        st: &Unsealed,
        cx: &Context,
        mount: &Mount,
        rest: &str,
        auth: bool,
        lr: LogicalResponse,
        out: &mut Outcome,
    ) -> Result<Reply, VaultError> {
        let mut reply = Reply {
            status: lr.status,
            data: lr.data,
            warnings: lr.warnings,
            mount_type: mount.entry.kind.clone(),
            ..Default::default()
        };
        if let Some(new) = lr.lease {
            // Vault's shape: the request path, then a random suffix.
            let id = format!(
                "{}{}/{}",
                mount.entry.path,
                rest.trim_end_matches('/'),
                hex::encode(rand::random::<[u8; 12]>())
            );
            // The engine's max TTL, else the mount's, else the system's; never below the TTL just granted.
            let max_ttl = [new.max_ttl, mount.entry.max_lease_ttl, crate::leases::DEFAULT_MAX_TTL]
                .into_iter()
                .find(|t| *t > 0)
                .unwrap_or(crate::leases::DEFAULT_MAX_TTL)
                .max(new.ttl);
            let lease = Lease {
                id: id.clone(),
                mount: mount.entry.path.clone(),
                internal: new.internal,
                expire_time: cx.unix.saturating_add_unsigned(new.ttl),
                renewable: new.renewable,
                token_hash: cx.caller.as_ref().map(|(_, e)| e.hash.clone()),
                issue_time: cx.unix,
                ttl: new.ttl,
                max_expire: Some(cx.unix.saturating_add_unsigned(max_ttl)),
                last_renewal: None,
                retry: None,
            };
            crate::leases::stage(st, &lease, &mut out.effects)?;
            if let Some(c) = &new.credential {
                out.effects
                    .put(crate::leaks::lease_index_key(st, c)?, id.as_bytes().to_vec());
            }
            reply.lease_id = id;
            reply.lease_duration = new.ttl;
            reply.renewable = new.renewable;
        }
        if let Some(spec) = lr.login {
            if !auth {
                return Err(VaultError::Internal("a secrets engine answered with a login".into()));
            }
            let (token, entry, ops) = self.finish_login(st, &mount.entry, spec, cx.unix)?;
            reply.auth = Some(entry.auth(&token, cx.unix));
            out.effects.extend(ops);
            out.new_token = Some(entry);
        }
        Ok(reply)
    }

    /// A login's token, minted now (the engine never sees it): the token, its entry and the writes that create it
    /// (committed with the request's other writes).
    #[tracing::instrument(name = "login", skip_all, fields(mount = %mount.path))]
    fn finish_login(
        &self,
        st: &Unsealed,
        mount: &MountEntry,
        spec: LoginSpec,
        now: i64,
    ) -> Result<(String, TokenEntry, Vec<BufferedOp>), VaultError> {
        if spec.policies.iter().any(|p| p == "root") {
            return Err(VaultError::BadRequest("auth methods cannot create root tokens".into()));
        }
        let mut policies = spec.policies;
        if !spec.no_default_policy && !policies.iter().any(|p| p == "default") {
            policies.push("default".into());
        }
        // Every login token expires: the role's TTL, else the mount's default, else the system's; never past the
        // smallest of the role's, the mount's and the system's maximum.
        let max_ttl = [spec.max_ttl, mount.max_lease_ttl, SYSTEM_MAX_TTL]
            .into_iter()
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(SYSTEM_MAX_TTL);
        let ttl = [spec.ttl, mount.default_lease_ttl, SYSTEM_MAX_TTL]
            .into_iter()
            .find(|t| *t > 0)
            .unwrap_or(SYSTEM_MAX_TTL)
            .min(max_ttl);
        st.tokens.prepare(
            TokenRequest {
                policies,
                meta: spec.metadata,
                display_name: spec.display_name,
                path: spec.path,
                ttl,
                explicit_max_ttl: max_ttl,
                num_uses: spec.num_uses,
                renewable: true,
                period: spec.period,
                ..Default::default()
            },
            now,
        )
    }

    /// Audit the response, then commit (only if the response is in the log), then run what follows a commit.
    async fn conclude(
        self: &Arc<Self>,
        st: &Arc<Unsealed>,
        cx: Context,
        outcome: Result<Outcome, VaultError>,
    ) -> Result<Reply, VaultError> {
        let result = self.audit_response(&cx, &outcome).await;
        let result = match (result, outcome) {
            (Ok(()), Ok(out)) => {
                let committed = st.barrier.commit(&out.effects.ops);
                match committed {
                    Ok(()) => {
                        for f in out.effects.after {
                            f();
                        }
                        if let Some(e) = &out.new_token {
                            st.tokens.install(e);
                        }
                        Ok(out.reply)
                    }
                    Err(e) => Err(e),
                }
            }
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        };
        if let Some(hash) = &cx.last_use
            && let Err(e) = self.revoke_token_tree(st, hash, cx.unix).await
        {
            // The entry is marked used up, so it authenticates nothing; the expiry sweep retries the revocation.
            tracing::warn!(error = %e, "revoking a used-up token failed; the expiry sweep retries");
        }
        result
    }

    async fn audit_response(&self, cx: &Context, outcome: &Result<Outcome, VaultError>) -> Result<(), VaultError> {
        if !self.audit.is_enabled() {
            return Ok(());
        }
        let mut resp = cx.audit.response(SystemTime::now());
        match outcome {
            Ok(out) => {
                let r = &out.reply;
                resp.status = Some(
                    r.status
                        .unwrap_or(if r.data.is_some() || r.raw.is_some() { 200 } else { 204 }),
                );
                resp.response_data = r.data.clone().or_else(|| r.raw.clone());
                resp.response_auth = r.auth.as_ref().and_then(response_auth);
            }
            Err(e) => {
                resp.status = Some(e.status());
                resp.error = Some(e.to_string());
            }
        }
        let ticket = if cx.request_logged {
            self.audit.submit(&resp)
        } else {
            self.audit.submit_all(&[&cx.audit, &resp])
        }
        .map_err(audit_unavailable)?;
        if let Some(t) = ticket {
            t.wait().await.map_err(audit_unavailable)?;
        }
        Ok(())
    }
}

impl Unsealed {
    /// The lock serialising writes to one target of an engine, named by the engine
    /// ([`crate::Backend::write_lock_key`]): held from dispatch through the commit.
    async fn write_lock(&self, mount: &Mount, rest: &str) -> OwnedMutexGuard<()> {
        use std::hash::{Hash, Hasher};
        let key = mount.backend.write_lock_key(rest);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        mount.entry.uuid.hash(&mut h);
        key.hash(&mut h);
        let stripe = (h.finish() as usize) % self.write_locks.len().max(1);
        match self.write_locks.get(stripe) {
            Some(l) => l.clone().lock_owned().await,
            None => self.sys_lock().await,
        }
    }
}

fn audit_unavailable(e: crate::audit::AuditError) -> VaultError {
    VaultError::AuditUnavailable(e.to_string())
}

fn response_auth(a: &Auth) -> Option<AuditAuth> {
    Some(AuditAuth {
        client_token: Some(a.client_token.expose_str()),
        accessor: Some(a.accessor.clone()),
        policies: a.policies.clone(),
        token_type: "service".into(),
        ..Default::default()
    })
}

/// Whether the mount's backend serves `rest` without a token.
fn declares_open(mount: &Mount, rest: &str) -> bool {
    mount
        .backend
        .unauthenticated_paths()
        .iter()
        .any(|p| match p.strip_suffix('*') {
            Some(prefix) => rest.starts_with(prefix),
            None => rest == *p,
        })
}

/// System paths served without a token: leak reports, where holding the secret is the authority to kill it (as
/// with GitHub's credential revocation API), and GitHub's partner endpoint (authenticated by its signature). Audited, committed and rate limited like everything else.
fn is_open_system(path: &str, op: Operation) -> bool {
    (path == "sys/leaks/report" || path == crate::leaks::partner::PATH)
        && matches!(op, Operation::Update | Operation::Create)
}

/// Paths any token may call whatever its policies; their handlers show only what the caller may see.
fn is_self_service(path: &str) -> bool {
    path == "sys/internal/ui/mounts" || path.starts_with("sys/internal/ui/mounts/")
}

/// Paths that need `sudo` on top of the operation's capability (Vault's root-protected paths).
pub(crate) fn needs_sudo(path: &str) -> bool {
    const EXACT_OR_UNDER: &[&str] = &[
        "sys/audit",
        "sys/audit-hash",
        "sys/audit-chain",
        "sys/rotate",
        "sys/rekey",
        "sys/seal",
        "sys/raw",
        "sys/remount",
        "sys/config",
        "sys/leaks/config",
        "sys/leases/revoke-prefix",
        "sys/leases/revoke-force",
        "sys/leases/lookup",
        "sys/leases/tidy",
        "sys/leases/count",
        "sys/leases/abandoned",
        "sys/revoke-prefix",
        "sys/revoke-force",
        "auth/token/revoke-orphan",
        "auth/token/accessors",
    ];
    // Enabling, disabling and tuning auth methods: `sys/auth/<path>` (listing `sys/auth` is not protected).
    // `sys/leases` itself is the irrevocable listing; renew and revoke under it are not protected.
    path.starts_with("sys/auth/")
        || path == "sys/leases"
        || EXACT_OR_UNDER.iter().any(|p| {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// Compile-time check: the HTTP edge runs `handle` on a multi-threaded runtime, so its future must be `Send`.
#[allow(dead_code)]
fn handle_is_send(core: Arc<Core>, req: ApiRequest) {
    fn is_send<T: Send>(_: T) {}
    is_send(async move { core.handle(req).await });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_refuse_what_could_fool_the_acl() {
        assert_eq!(canonical_path("sys/policy/admin/").unwrap(), "sys/policy/admin");
        assert_eq!(canonical_path("secret/metadata/").unwrap(), "secret/metadata");
        for bad in [
            "sys/mounts//secret",
            "/sys/mounts",
            "sys/./mounts",
            "secret/../sys/mounts",
            "secret/data/x\0",
            "secret/data/x\n",
            "secret//",
        ] {
            assert_eq!(canonical_path(bad).unwrap_err().status(), 400, "{bad:?}");
        }
    }

    async fn dev_core(dir: &std::path::Path) -> (Arc<Core>, String) {
        let seal: Arc<dyn leakstop_seal::Seal> = Arc::new(leakstop_seal::KeySeal::random_dev());
        let core = Core::new(
            Arc::new(leakstop_storage::MemoryStorage::new()),
            Some(seal),
            crate::core::CoreOptions::default(),
        );
        core.audit.set_api_file_dirs(&[dir.to_path_buf()]).unwrap();
        let (_, root) = core.init(1, 1, None).await.unwrap();
        let audit = dir.join("audit.log");
        let data = serde_json::json!({"type": "file", "options": {"file_path": audit}});
        let req = api(Operation::Update, "sys/audit/file", &root, data);
        core.handle(req).await.unwrap();
        (core, root)
    }

    fn api(op: Operation, path: &str, token: &str, data: Value) -> ApiRequest {
        ApiRequest {
            op,
            path: path.into(),
            data: data.as_object().cloned().unwrap_or_default(),
            query: HashMap::new(),
            token: Some(token.into()),
            remote_addr: None,
            request_id: "test".into(),
        }
    }

    /// A device that takes the request line and then fails: nothing the request staged may be applied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn system_writes_wait_for_the_audited_response() {
        let dir = tempfile::tempdir().unwrap();
        let (core, root) = dev_core(dir.path()).await;
        let st = core.unsealed().unwrap();
        let tokens_before = st.tokens.all_hashes().unwrap().len();
        let writes = [
            (
                "sys/policies/acl/staged",
                serde_json::json!({"policy": "path \"x/*\" { capabilities = [\"read\"] }"}),
            ),
            ("sys/mounts/staged", serde_json::json!({"type": "kv"})),
            ("auth/token/create", serde_json::json!({"policies": ["default"]})),
        ];
        for (path, body) in writes {
            core.audit
                .submissions_left
                .store(1, std::sync::atomic::Ordering::SeqCst);
            let e = core
                .handle(api(Operation::Update, path, &root, body))
                .await
                .unwrap_err();
            assert_eq!(e.status(), 503, "{path}: {e}");
        }
        core.audit
            .submissions_left
            .store(i64::MAX, std::sync::atomic::Ordering::SeqCst);
        assert!(st.policy("staged").unwrap().is_none(), "the policy was not written");
        assert!(core.route(&st, "staged/x").is_none(), "the mount was not made");
        assert_eq!(
            st.tokens.all_hashes().unwrap().len(),
            tokens_before,
            "no token was created"
        );
        // The same writes go through once the device works.
        let body = serde_json::json!({"policy": "path \"x/*\" { capabilities = [\"read\"] }"});
        core.handle(api(Operation::Update, "sys/policies/acl/staged", &root, body))
            .await
            .unwrap();
        assert!(st.policy("staged").unwrap().is_some());
    }

    #[test]
    fn sudo_protects_auth_method_changes_not_the_listing() {
        assert!(needs_sudo("sys/auth/jwt"));
        assert!(needs_sudo("sys/auth/jwt/tune"));
        assert!(!needs_sudo("sys/auth"));
        assert!(needs_sudo("sys/audit/file"));
        assert!(!needs_sudo("sys/auditx"));
    }
}
