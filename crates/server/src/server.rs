//! Running the service: the TOML config, opening storage and the seal, auto-unseal, the listener (rustls TLS, or
//! plain HTTP only on loopback or when explicitly allowed), dev mode, background expiry, graceful shutdown.
//!
//! ```toml
//! listen_address = "0.0.0.0:8200"
//! tls_cert_file = "/etc/leakstop/tls/cert.pem"
//! tls_key_file = "/etc/leakstop/tls/key.pem"
//! # tls_disable = true                  # plain HTTP: refused on non-loopback addresses unless
//! # allow_plaintext_http = true         # ... this is set as well
//! max_request_size = 33554432
//! audit_deadline_ms = 2000              # a request whose audit line is not durable by then gets 503
//! audit_file_dir = "/var/log/leakstop"  # where `sys/audit` may put file devices (default: the [[audit]] dirs)
//! lease_irrevocable_after_s = 3600      # failing revocations are flagged irrevocable after this (still retried)
//! api_addr = "https://10.0.0.1:8200"    # HA: where other nodes and clients reach this node (see `crate::ha`)
//!
//! [ha]
//! forward_ca_file = "/etc/leakstop/tls/ca.pem"  # HA: the CA of the nodes' TLS certificates, trusted (alone) when a
//!                                               # standby forwards to an https:// api_addr
//!
//! [http]                                # listener limits (these are the defaults); see `serve` for their order
//! header_timeout_ms = 10000             # request head and TLS handshake; also the keep-alive idle timeout
//! body_timeout_ms = 30000
//! max_connections = 4096
//! max_unauthenticated_requests = 64     # requests with a body and no valid token in progress at once
//! unauthenticated_body_limit = 65536    # bytes a request without a valid token may send
//!
//! [storage]
//! type = "sqlite"
//! path = "/var/lib/leakstop/leakstop.db"
//!
//! [seal]
//! type = "pkcs11"
//! lib = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "leakstop"
//! key_label = "leakstop-root"
//! pin_env = "LEAKSTOP_HSM_PIN"
//! generate_key = true
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use leakstop_proto::Secret;
use leakstop_seal::{KeySeal, Pin, PinSource, Pkcs11Seal, Seal, SealConfig};
use leakstop_storage::StorageConfig;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::http::HttpLimits;
use leakstop_vault::core::{Core, CoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("config file {path}: {reason}")]
    Config { path: String, reason: String },
    // Transparent: their messages name the storage file / HSM token already, and a prefix plus the source would
    // print the message twice under anyhow's `{:#}`.
    #[error(transparent)]
    Storage(#[from] leakstop_storage::StorageError),
    #[error(transparent)]
    Seal(#[from] leakstop_seal::SealError),
    #[error("could not unseal at start: {0}")]
    Unseal(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(
        "refusing plain HTTP on non-loopback address {0}: set tls_cert_file and tls_key_file, or set allow_plaintext_http = true if a TLS-terminating proxy sits in front"
    )]
    PlaintextRefused(String),
    #[error("{0}")]
    Core(String),
}

fn default_listen() -> String {
    "127.0.0.1:8200".into()
}

fn default_deadline() -> u64 {
    leakstop_vault::audit::DEFAULT_DEADLINE.as_millis() as u64
}

fn default_max_request() -> usize {
    crate::http::DEFAULT_MAX_REQUEST_SIZE
}

/// `leakstop server --config FILE`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen_address: String,
    #[serde(default)]
    pub tls_disable: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_plaintext_http: bool,
    #[serde(default = "default_max_request")]
    pub max_request_size: usize,
    #[serde(default = "default_deadline")]
    pub audit_deadline_ms: u64,
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// Seconds of failing revocation after which a lease is reported irrevocable (it is still retried).
    #[serde(default = "default_irrevocable_after")]
    pub lease_irrevocable_after_s: u64,
    /// The URL other nodes and clients use to reach this node (`http(s)://host:port`). Required with HA storage:
    /// standbys forward requests there and `sys/leader` reports it.
    pub api_addr: Option<String>,
    pub storage: StorageConfig,
    pub seal: Option<SealConfig>,
    /// File audit devices: `[[audit]]` with `path`, `file_path` (and `type = "file"`).
    #[serde(default)]
    pub audit: Vec<AuditToml>,
    /// The directory under which `sys/audit` may enable file devices. Unset: the directories of the `[[audit]]`
    /// files; with neither, file devices cannot be enabled through the API.
    pub audit_file_dir: Option<PathBuf>,
    /// Listener limits: `[http]` (timeouts, connection cap, limits on requests without a token).
    #[serde(default)]
    pub http: HttpLimits,
    /// HA options: `[ha]`.
    #[serde(default)]
    pub ha: HaToml,
}

/// `[ha]`: how this node talks to the other nodes of an HA cluster.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaToml {
    /// PEM file with the CA certificate(s) that sign the nodes' TLS certificates: a standby forwarding to an
    /// `https://` `api_addr` trusts these and only these. Unset: the public web roots built into the binary.
    pub forward_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditToml {
    #[serde(default = "default_audit_path")]
    pub path: String,
    #[serde(rename = "type", default = "default_audit_type")]
    pub kind: String,
    pub file_path: String,
}

fn default_irrevocable_after() -> u64 {
    leakstop_vault::leases::DEFAULT_IRREVOCABLE_AFTER
}

fn default_audit_path() -> String {
    "file".into()
}

fn default_audit_type() -> String {
    "file".into()
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<ServerConfig, ServerError> {
        let err = |reason: String| ServerError::Config {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// Where the PKCS#11 seal's PIN comes from, when the config has such a seal.
    pub fn pin_source(&self) -> Option<&PinSource> {
        match &self.seal {
            Some(SealConfig::Pkcs11(p)) => Some(&p.pin),
            Some(SealConfig::Shamir) | None => None,
        }
    }
}

/// Options of `leakstop server --dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// `--dev-root-token-id`: a token, so redacted in `Debug`.
    pub root_token_id: Option<Secret>,
    pub listen_address: String,
}

/// Where TLS material comes from (None: plain HTTP).
struct Listen {
    addr: String,
    tls: Option<(PathBuf, PathBuf)>,
}

/// What a config asks for, checked before anything is created.
struct Checked {
    listen: Listen,
    audit_devices: Vec<leakstop_vault::audit::DeviceConfig>,
}

/// Every check that needs no storage and no HSM: TLS files, plain HTTP off loopback, audit devices. A config
/// that fails one leaves nothing behind (no database file).
fn check(cfg: &ServerConfig) -> Result<Checked, ServerError> {
    let tls = match (&cfg.tls_cert_file, &cfg.tls_key_file, cfg.tls_disable) {
        (Some(c), Some(k), false) => Some((c.clone(), k.clone())),
        (_, _, true) => None,
        _ => {
            return Err(ServerError::Tls(
                "set tls_cert_file and tls_key_file (PEM), or tls_disable = true for plain HTTP on loopback".into(),
            ));
        }
    };
    if let Some((cert, key)) = &tls {
        tls_acceptor(cert, key)?;
    }
    // A host name is resolved at bind time, where `serve` checks again.
    if tls.is_none()
        && !cfg.allow_plaintext_http
        && let Ok(addr) = cfg.listen_address.parse::<SocketAddr>()
        && !is_loopback(&addr)
    {
        return Err(ServerError::PlaintextRefused(addr.to_string()));
    }
    let mut audit_devices = Vec::new();
    for a in &cfg.audit {
        let mut body = serde_json::Map::new();
        body.insert("type".into(), a.kind.clone().into());
        body.insert("options".into(), serde_json::json!({ "file_path": a.file_path }));
        audit_devices.push(
            leakstop_vault::audit::DeviceConfig::from_request(&a.path, &body)
                .map_err(|e| ServerError::Core(format!("[[audit]] {}: {e}", a.path)))?,
        );
    }
    for d in api_audit_dirs(cfg) {
        std::fs::canonicalize(&d)
            .map_err(|e| ServerError::Core(format!("audit_file_dir: audit file directory {}: {e}", d.display())))?;
    }
    Ok(Checked {
        listen: Listen {
            addr: cfg.listen_address.clone(),
            tls,
        },
        audit_devices,
    })
}

/// Where `sys/audit` may put file devices: `audit_file_dir`, else the directories of the config's own devices.
fn api_audit_dirs(cfg: &ServerConfig) -> Vec<PathBuf> {
    match &cfg.audit_file_dir {
        Some(d) => vec![d.clone()],
        None => cfg
            .audit
            .iter()
            .filter_map(|a| Path::new(&a.file_path).parent().map(Path::to_path_buf))
            .collect(),
    }
}

/// Run a server from a config file until SIGINT/SIGTERM. `pin` is the PKCS#11 seal's PIN when the caller already
/// read it (to clear it from its environment); otherwise it is read from the config's source.
pub async fn run(cfg: ServerConfig, pin: Option<Pin>) -> Result<(), ServerError> {
    let Checked { listen, audit_devices } = check(&cfg)?;
    // The seal before the storage: a wrong PIN or a missing HSM key leaves no new database behind.
    let seal: Option<Arc<dyn Seal>> = match &cfg.seal {
        Some(SealConfig::Pkcs11(p)) => {
            let pin = match pin {
                Some(pin) => pin,
                None => p.pin.read()?,
            };
            Some(Arc::new(Pkcs11Seal::open(p, pin)?))
        }
        Some(SealConfig::Shamir) | None => None,
    };
    let storage_type = match &cfg.storage {
        StorageConfig::Sqlite { .. } => "sqlite",
        StorageConfig::Memory => "inmem",
        StorageConfig::Postgresql(_) => "postgresql",
    };
    // Read and checked before anything starts: a broken CA file must stop the node, not silently turn forwarding off.
    let forward_ca = match &cfg.ha.forward_ca_file {
        Some(path) => {
            let bad = |reason: String| ServerError::Config {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| bad(format!("[ha] forward_ca_file: {e}")))?;
            crate::forward::Forwarder::new(Some(&pem)).map_err(|e| bad(format!("[ha] forward_ca_file: {e}")))?;
            Some(pem)
        }
        None => None,
    };
    let opened = cfg.storage.open_ha()?;
    let ha = match (opened.ha, &cfg.api_addr) {
        (Some(lock), Some(addr)) => Some((lock, api_addr(addr)?)),
        (Some(_), None) => {
            return Err(ServerError::Core(
                "HA storage needs `api_addr`: the URL (http(s)://host:port) other nodes and clients reach this node on"
                    .into(),
            ));
        }
        (None, _) => None,
    };
    let core = Core::new(
        opened.storage,
        seal,
        CoreOptions {
            audit_devices,
            storage_type: storage_type.into(),
            cluster_name: cfg.cluster_name.clone().unwrap_or_else(|| "leakstop-cluster".into()),
            audit_deadline: Duration::from_millis(cfg.audit_deadline_ms),
            lease_irrevocable_after: cfg.lease_irrevocable_after_s,
            ha_enabled: ha.is_some(),
        },
    );
    core.audit
        .set_api_file_dirs(&api_audit_dirs(&cfg))
        .map_err(|e| ServerError::Core(format!("audit_file_dir: {e}")))?;
    let initialized = core.is_initialized().map_err(|e| ServerError::Core(e.to_string()))?;
    if initialized && core.seal_kind() == leakstop_seal::SealKind::Pkcs11 {
        core.auto_unseal()
            .await
            .map_err(|e| ServerError::Unseal(e.to_string()))?;
        tracing::info!(standby = core.ha_enabled(), "unsealed with the PKCS#11 seal");
    } else if !initialized {
        tracing::warn!("not initialized: run `leakstop operator init` (or PUT /v1/sys/init)");
    } else {
        tracing::warn!("sealed: submit unseal key shares with `leakstop operator unseal` (or PUT /v1/sys/unseal)");
    }
    let scheme = if listen.tls.is_some() { "https" } else { "http" };
    let ha_task = ha.as_ref().map(|(lock, addr)| {
        let node = crate::ha::Node {
            id: leakstop_vault::core::uuid(),
            api_addr: addr.clone(),
        };
        tracing::info!(node_id = %node.id, api_addr = %node.api_addr, "HA enabled: standing by until this node holds the lock");
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tokio::spawn(crate::ha::run(core.clone(), lock.clone(), node, Some(tx))), rx)
    });
    // Listen only once the loop has tried for the lock (bounded: an unreachable database must not keep the node
    // from answering sys/health), so a new cluster's first node holds it before a sys/init can arrive.
    let ha_task = match ha_task {
        Some((task, first_try)) => {
            let _ = tokio::time::timeout(FIRST_LOCK_TRY_WAIT, first_try).await;
            Some(task)
        }
        None => None,
    };
    let (ready, bound) = tokio::sync::oneshot::channel();
    let serving = serve(
        core.clone(),
        listen,
        cfg.max_request_size,
        cfg.allow_plaintext_http,
        cfg.http.clone(),
        forward_ca,
        Some(ready),
    );
    let served = announce(serving, bound, |local| {
        eprintln!("leakstop server listening on {scheme}://{local}");
    })
    .await;
    // In-flight requests are done: give the lock up so a standby takes over at its next poll.
    if let (Some(task), Some((lock, _))) = (ha_task, &ha) {
        task.abort();
        let _ = task.await;
        crate::ha::release(&core, lock).await;
    }
    served
}

/// How long start-up waits for the HA loop's first try for the lock before listening anyway.
const FIRST_LOCK_TRY_WAIT: Duration = Duration::from_secs(5);

/// `api_addr` as a base URL: a scheme and a host, no path to lose requests under.
fn api_addr(addr: &str) -> Result<String, ServerError> {
    let bad = |why: &str| ServerError::Core(format!("api_addr `{addr}`: {why} (write it as http(s)://host:port)"));
    let rest = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .ok_or_else(|| bad("the scheme must be http:// or https://"))?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(bad("it must name a host and port only"));
    }
    Ok(addr.trim_end_matches('/').to_string())
}

/// `leakstop server --dev`: in memory, unsealed, `secret/` mounted as KV v2, the root token printed.
pub async fn run_dev(opts: DevOptions) -> Result<(), ServerError> {
    let storage = StorageConfig::Memory.open()?;
    let core = Core::new(storage, Some(Arc::new(KeySeal::random_dev())), CoreOptions::default());
    // Dev mode lets `sys/audit` write under the temporary directory, nowhere else.
    core.audit
        .set_api_file_dirs(&[std::env::temp_dir()])
        .map_err(ServerError::Core)?;
    let (_, root) = core
        .init(1, 1, opts.root_token_id.as_ref().map(Secret::expose_str))
        .await
        .map_err(|e| ServerError::Core(e.to_string()))?;
    let mut kv = std::collections::BTreeMap::new();
    kv.insert("version".to_string(), "2".to_string());
    core.mount(false, "secret", "kv", "key/value secret storage", kv)
        .map_err(|e| ServerError::Core(e.to_string()))?;
    let listen = Listen {
        addr: opts.listen_address,
        tls: None,
    };
    let (ready, bound) = tokio::sync::oneshot::channel();
    let serving = serve(
        core,
        listen,
        crate::http::DEFAULT_MAX_REQUEST_SIZE,
        false,
        HttpLimits::default(),
        None,
        Some(ready),
    );
    announce(serving, bound, |local| {
        eprintln!(
            "WARNING! dev mode is enabled! In this mode, leakstop runs entirely in-memory and starts unsealed with \
             a single root token. Nothing survives a restart. Do not run dev mode in production!\n\n\
             You may need to set the following environment variables:\n\n    \
             export VAULT_ADDR='http://{local}'\n    export LEAKSTOP_ADDR='http://{local}'\n\n\
             Root Token: {root}\n\nDevelopment mode should NOT be used in production installations!\n\n\
             leakstop server listening on http://{local}"
        );
    })
    .await
}

/// Drive `serving` and call `on_listening` once its listener is bound, so nothing (not the dev root token, not
/// "listening on") is printed by a server that cannot listen.
async fn announce(
    serving: impl std::future::Future<Output = Result<(), ServerError>>,
    bound: tokio::sync::oneshot::Receiver<SocketAddr>,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    tokio::pin!(serving);
    tokio::select! {
        done = &mut serving => return done,
        Ok(local) = bound => on_listening(local),
    }
    serving.await
}

/// How often expired tokens and leases are revoked (`LEAKSTOP_EXPIRY_SWEEP_MS` overrides, for tests).
static EXPIRY_SWEEP: std::sync::LazyLock<Duration> = std::sync::LazyLock::new(|| {
    std::env::var("LEAKSTOP_EXPIRY_SWEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
});

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Serve until SIGINT/SIGTERM. A connection meets these limits in this order; each sits where it is because of
/// what it must bound before the next one costs anything:
///
/// 1. **Connection cap** (`http.max_connections`): a slot is taken *before* `accept`, so past the cap a new
///    connection waits in the kernel's accept queue instead of costing a task, a descriptor and buffers; the slot
///    is held until the connection closes, which the timeouts below guarantee happens.
/// 2. **TLS handshake**, bounded by the header timeout: a peer that opens TCP and stalls keeps its slot no longer.
/// 3. **Header read timeout** (hyper, `http.header_timeout_ms`): the request head must arrive within it. hyper arms
///    it again while a kept-alive connection waits for its next request, so it is the idle timeout too: a
///    slow-header (slowloris) or idle connection gives its slot back.
/// 4. **Token pre-check** (`http.rs`), once the head is in and before any body byte is read: without a token the
///    token store accepts, a request may send only `http.unauthenticated_body_limit` bytes, and only
///    `http.max_unauthenticated_requests` such requests with a body run at once (the rest wait briefly, then 429).
///    With one, `max_request_size`. GET/HEAD without a large declared body skip the lookup (they stay at the small
///    limit): the core checks their token anyway. Authentication and the ACL proper stay in the core.
/// 5. **Body read**, streamed with the limit of step 4 (413 beyond, before reading when `Content-Length` says so)
///    within `http.body_timeout_ms` (408).
/// 6. The JSON body is parsed and the core takes over (token, route, ACL, audit, engine).
async fn serve(
    core: Arc<Core>,
    listen: Listen,
    max_request_size: usize,
    allow_plain: bool,
    limits: HttpLimits,
    forward_ca: Option<Vec<u8>>,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(&listen.addr).await.map_err(|e| ServerError::Listen {
        addr: listen.addr.clone(),
        reason: e.to_string(),
    })?;
    let local = listener.local_addr().map_err(|e| ServerError::Listen {
        addr: listen.addr.clone(),
        reason: e.to_string(),
    })?;
    if listen.tls.is_none() && !is_loopback(&local) && !allow_plain {
        return Err(ServerError::PlaintextRefused(local.to_string()));
    }
    let tls = match &listen.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    spawn_expiry(core.clone());
    let router = crate::http::router_forwarding_with(core.clone(), max_request_size, &limits, forward_ca.as_deref());
    if let Some(r) = ready {
        let _ = r.send(local);
    }
    tracing::info!(%local, tls = tls.is_some(), "listening");
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout())
        .keep_alive(true);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: retry shortly, never spin.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            router: router.clone(),
            http1: http1.clone(),
            watcher: graceful.watcher(),
            peer,
        };
        let tls = tls.clone();
        let handshake = limits.header_timeout();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => conn.serve(tcp).await,
                Some(acceptor) => match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => conn.serve(stream).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    // In-flight requests finish; idle connections are closed at once.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "connections still open after {} s; closing them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}

/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// One accepted connection and what serves it.
struct Connection {
    router: axum::Router,
    http1: hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
}

impl Connection {
    async fn serve<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            router,
            http1,
            watcher,
            peer,
        } = self;
        let service = hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let conn = http1.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Expired tokens are refused on sight; this sweep also removes the ones nobody presents again.
/// Leases come off their due queue every quarter second (cheap when nothing is due), so one is revoked within a
/// second of its expiry, and right after unseal for those that expired while the server was down.
fn spawn_expiry(core: Arc<Core>) {
    // Engines' own schedules (static-role rotations) on a separate task: a slow database must not hold up the
    // lease queue.
    let engines = core.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if engines.is_sealed() {
                continue;
            }
            if let Err(e) = engines.tick_engines(std::time::SystemTime::now()).await {
                tracing::debug!(error = %e, "engine pass skipped");
            }
        }
    });
    let leases = core.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if leases.is_sealed() {
                continue;
            }
            let now = leakstop_vault::engine::unix_seconds(std::time::SystemTime::now());
            match leases.revoke_due_leases(now).await {
                Ok((0, 0)) => {}
                Ok((revoked, failed)) => tracing::info!(revoked, failed, "due leases processed"),
                Err(e) => tracing::warn!(error = %e, "lease expiry pass failed; retried next pass"),
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(*EXPIRY_SWEEP);
        loop {
            tick.tick().await;
            if core.is_sealed() {
                continue;
            }
            match core
                .sweep_expired(leakstop_vault::engine::unix_seconds(std::time::SystemTime::now()))
                .await
            {
                Ok((0, 0)) => {}
                Ok((tokens, leases)) => tracing::info!(tokens, leases, "expired tokens and leases revoked"),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed; retried next sweep"),
            }
        }
    });
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| ServerError::Tls(format!("tls_cert_file {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ServerError::Tls(format!("tls_cert_file {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "tls_cert_file {} holds no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServerError::Tls(format!("tls_key_file {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(format!("certificate and key do not fit together: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
