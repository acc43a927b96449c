//! The audit broker: the table of enabled devices, the HMAC key, and turning a request or response into one
//! Vault-shaped JSON line with every sensitive value HMACed.
//!
//! Fail closed, never hung: a line counts as logged when at least one device (as in Vault) made it durable within
//! the deadline; otherwise the caller gets [`AuditError`] and the request is refused with 503.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::chain::ChainKey;
use super::device::{DeviceError, FileDevice, Pending};
use super::hash::{Hashed, HmacKey};

/// Default time a request may wait for its audit line before it is refused.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// No enabled device recorded the entry: the request must not be served (503).
    #[error("audit log unavailable, request refused: {0}")]
    Unavailable(String),
    /// A `sys/audit` call with bad input (400); the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("no audit device at `{0}`")]
    UnknownDevice(String),
    #[error("audit is not ready: the HMAC key is not loaded (is the server unsealed?)")]
    NoKey,
}

impl From<DeviceError> for AuditError {
    fn from(e: DeviceError) -> Self {
        AuditError::Unavailable(e.to_string())
    }
}

/// How a device is configured; persisted by the core (in the barrier) so devices come back after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Mount-style path with a trailing slash, e.g. `file/`.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    pub options: BTreeMap<String, String>,
}

impl DeviceConfig {
    /// Validate a `PUT sys/audit/:path` body (`{"type":"file","options":{"file_path":"..."}}`).
    pub fn from_request(path: &str, body: &Map<String, Value>) -> Result<DeviceConfig, AuditError> {
        let path = normalize(path)?;
        let kind = body.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind != "file" {
            return Err(AuditError::Invalid(format!(
                "field `type`: unsupported audit device type {kind:?}; only \"file\" is supported"
            )));
        }
        let mut options = BTreeMap::new();
        if let Some(o) = body.get("options") {
            let Some(o) = o.as_object() else {
                return Err(AuditError::Invalid(
                    "field `options` must be an object, e.g. {\"file_path\": \"/var/log/leakstop/audit.log\"}".into(),
                ));
            };
            for (k, v) in o {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                options.insert(k.clone(), v);
            }
        }
        match options.get("file_path").map(String::as_str) {
            None | Some("") => {
                return Err(AuditError::Invalid(
                    "field `options.file_path` is required: the file the audit log is appended to".into(),
                ));
            }
            Some(p) if !p.starts_with('/') => {
                return Err(AuditError::Invalid(format!(
                    "field `options.file_path` must be an absolute path, got {p:?}"
                )));
            }
            Some(_) => {}
        }
        let description = body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(DeviceConfig {
            path,
            kind: kind.into(),
            description,
            options,
        })
    }

    fn file_path(&self) -> PathBuf {
        PathBuf::from(self.options.get("file_path").cloned().unwrap_or_default())
    }

    /// One entry of `GET sys/audit`.
    pub fn to_json(&self) -> Value {
        json!({ "type": self.kind, "description": self.description, "options": self.options, "path": self.path,
                "local": false })
    }
}

fn normalize(path: &str) -> Result<String, AuditError> {
    let p = path.trim_matches('/');
    if p.is_empty() || p.contains("..") {
        return Err(AuditError::Invalid(format!(
            "audit device path {path:?} is invalid: use a name such as `file`"
        )));
    }
    Ok(format!("{p}/"))
}

struct Device {
    config: DeviceConfig,
    file: FileDevice,
}

/// The devices and the key; cheap to share (`Arc`).
pub struct AuditBroker {
    /// Replaced whole on enable/disable, so each request takes the table with one reference count.
    devices: RwLock<Arc<Vec<Arc<Device>>>>,
    key: RwLock<Option<Arc<HmacKey>>>,
    deadline: Duration,
    /// Canonical directories under which `sys/audit` may place a file device; none: refused.
    api_file_dirs: RwLock<Vec<PathBuf>>,
    /// Tests: how many more submissions succeed before every one fails (a device that breaks mid-request).
    #[cfg(test)]
    pub(crate) submissions_left: std::sync::atomic::AtomicI64,
}

impl Default for AuditBroker {
    fn default() -> Self {
        Self::new(DEFAULT_DEADLINE)
    }
}

impl AuditBroker {
    pub fn new(deadline: Duration) -> Self {
        AuditBroker {
            devices: RwLock::default(),
            key: RwLock::default(),
            deadline,
            api_file_dirs: RwLock::default(),
            #[cfg(test)]
            submissions_left: std::sync::atomic::AtomicI64::new(i64::MAX),
        }
    }

    /// The directories under which devices enabled through the API may write (config `audit_file_dir`); each must
    /// exist. Without any, `sys/audit` refuses file devices: the API must not let a token append to any file the
    /// server can write.
    pub fn set_api_file_dirs(&self, dirs: &[PathBuf]) -> Result<(), String> {
        let canonical = dirs
            .iter()
            .map(|d| std::fs::canonicalize(d).map_err(|e| format!("audit file directory {}: {e}", d.display())))
            .collect::<Result<Vec<_>, _>>()?;
        *self.api_file_dirs.write().unwrap_or_else(|e| e.into_inner()) = canonical;
        Ok(())
    }

    /// Refuse a file outside the allowed directories: resolved as the kernel would open it (symlinks followed),
    /// `..` refused outright.
    fn check_api_file(&self, path: &Path) -> Result<(), AuditError> {
        let dirs = self.api_file_dirs.read().unwrap_or_else(|e| e.into_inner()).clone();
        if dirs.is_empty() {
            return Err(AuditError::Invalid(
                "this server does not allow file audit devices to be enabled through the API: set \
                 `audit_file_dir = \"/var/log/leakstop\"` in the server config to allow files under that \
                 directory, or declare the device in an [[audit]] section of the config"
                    .into(),
            ));
        }
        let shown = path.display();
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(AuditError::Invalid(format!(
                "field `options.file_path`: {shown} contains `.` or `..`: give the file's plain absolute path"
            )));
        }
        let resolved = match std::fs::canonicalize(path) {
            Ok(p) => p,
            // Not there yet: its directory must be, and the file is created in it.
            Err(_) => match (path.parent().map(std::fs::canonicalize), path.file_name()) {
                (Some(Ok(dir)), Some(name)) => dir.join(name),
                _ => {
                    return Err(AuditError::Invalid(format!(
                        "field `options.file_path`: the directory of {shown} does not exist"
                    )));
                }
            },
        };
        if dirs.iter().any(|d| resolved.starts_with(d)) {
            return Ok(());
        }
        let allowed: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        Err(AuditError::Invalid(format!(
            "field `options.file_path`: {shown} is outside the directory allowed for audit files ({}): choose a \
             file there, or change `audit_file_dir` in the server config to allow another directory",
            allowed.join(", ")
        )))
    }

    /// `PUT sys/audit/:path`: [`Self::enable`] after checking the file is in an allowed directory.
    pub async fn enable_requested(&self, config: DeviceConfig) -> Result<(), AuditError> {
        self.check_api_file(&config.file_path())?;
        self.enable(config).await
    }

    /// `GET sys/audit-chain`: the chain key (hex) and, per device, the genesis and head hashes and line count a
    /// second party records to check the log later (`leakstop audit verify --genesis/--head`).
    pub fn chain_json(&self) -> Result<Value, AuditError> {
        let key = ChainKey::derive(&*self.key()?);
        let devices: Map<String, Value> = self
            .snapshot()
            .iter()
            .map(|d| {
                let st = d.file.chain_state();
                let v = json!({ "file_path": d.file.path(), "genesis": st.genesis, "head": st.head,
                                "lines": st.lines });
                (d.config.path.clone(), v)
            })
            .collect();
        Ok(json!({ "key": key.to_hex(), "devices": devices }))
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Install the HMAC key (loaded from, or first generated into, the barrier at unseal).
    pub fn set_key(&self, key: HmacKey) {
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(key));
    }

    fn key(&self) -> Result<Arc<HmacKey>, AuditError> {
        self.key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(AuditError::NoKey)
    }

    pub fn is_enabled(&self) -> bool {
        !self.snapshot().is_empty()
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Device>>> {
        self.devices.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Start a device; refuses one whose file cannot be opened and written within the deadline.
    pub async fn enable(&self, config: DeviceConfig) -> Result<(), AuditError> {
        if self.snapshot().iter().any(|d| d.config.path == config.path) {
            return Err(AuditError::Invalid(format!(
                "path `{}` is already in use by an audit device",
                config.path
            )));
        }
        let key = ChainKey::derive(&*self.key()?);
        let file = FileDevice::open(
            config.path.trim_end_matches('/'),
            &config.file_path(),
            key,
            self.deadline,
        )
        .await
        .map_err(|e| AuditError::Invalid(e.to_string()))?;
        let mut devices = self.devices.write().unwrap_or_else(|e| e.into_inner());
        if devices.iter().any(|d| d.config.path == config.path) {
            return Err(AuditError::Invalid(format!(
                "path `{}` is already in use by an audit device",
                config.path
            )));
        }
        Arc::make_mut(&mut devices).push(Arc::new(Device { config, file }));
        Ok(())
    }

    pub fn disable(&self, path: &str) -> Result<DeviceConfig, AuditError> {
        let path = normalize(path)?;
        let mut devices = self.devices.write().unwrap_or_else(|e| e.into_inner());
        let i = devices
            .iter()
            .position(|d| d.config.path == path)
            .ok_or(AuditError::UnknownDevice(path))?;
        Ok(Arc::make_mut(&mut devices).remove(i).config.clone())
    }

    /// The device table, to persist.
    pub fn configs(&self) -> Vec<DeviceConfig> {
        self.snapshot().iter().map(|d| d.config.clone()).collect()
    }

    /// `GET sys/audit`: `{"file/": {...}}`.
    pub fn list_json(&self) -> Value {
        Value::Object(
            self.snapshot()
                .iter()
                .map(|d| (d.config.path.clone(), d.config.to_json()))
                .collect(),
        )
    }

    /// `sys/audit-hash/:path`: the HMAC the device would log for `input`.
    pub fn hash(&self, path: &str, input: &str) -> Result<String, AuditError> {
        let path = normalize(path)?;
        if !self.snapshot().iter().any(|d| d.config.path == path) {
            return Err(AuditError::UnknownDevice(path));
        }
        Ok(self.key()?.hash(input))
    }

    /// Queue an entry on every device without waiting. `None` when no device is enabled.
    pub fn submit(&self, entry: &AuditEntry) -> Result<Option<Ticket>, AuditError> {
        self.submit_all(&[entry])
    }

    /// Queue entries on every device, adjacent and in this order, with one wake-up of each device's writer (a
    /// read's request and response lines go together). Durable if any entry is.
    pub fn submit_all(&self, entries: &[&AuditEntry]) -> Result<Option<Ticket>, AuditError> {
        let devices = self.snapshot();
        if devices.is_empty() {
            return Ok(None);
        }
        #[cfg(test)]
        if self.submissions_left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) <= 0 {
            return Err(AuditError::Unavailable("injected device failure".into()));
        }
        let key = self.key()?;
        let mut lines: Vec<String> = entries.iter().map(|e| e.to_line(&key)).collect();
        let durable = entries.iter().any(|e| e.durable);
        let mut pending = Vec::with_capacity(devices.len());
        let mut errors = Vec::new();
        for (i, d) in devices.iter().enumerate() {
            // The last device takes the lines themselves; any before it get copies.
            let these = if i + 1 == devices.len() {
                std::mem::take(&mut lines)
            } else {
                lines.clone()
            };
            match d.file.submit(these, durable) {
                Ok(p) => pending.push(p),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if pending.is_empty() {
            return Err(AuditError::Unavailable(errors.join("; ")));
        }
        Ok(Some(Ticket {
            pending,
            errors,
            deadline: self.deadline,
        }))
    }

    /// Log an entry and wait until it is durable (or refuse within the deadline).
    pub async fn log(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        match self.submit(entry)? {
            Some(t) => t.wait().await,
            None => Ok(()),
        }
    }
}

/// Lines queued on the devices; `wait` resolves when one of them is durable.
pub struct Ticket {
    pending: Vec<Pending>,
    errors: Vec<String>,
    deadline: Duration,
}

impl Ticket {
    pub async fn wait(self) -> Result<(), AuditError> {
        let mut errors = self.errors;
        let mut pending = self.pending;
        // The common case, one device: wait inline, no task per request.
        if pending.len() == 1 {
            let p = pending.pop().unwrap_or_else(|| unreachable!());
            return p.wait(self.deadline).await.map_err(|e| {
                errors.push(e.to_string());
                AuditError::Unavailable(errors.join("; "))
            });
        }
        // Devices are independent: wait for all at once so a stuck one does not delay the others' answer.
        let deadline = self.deadline;
        let handles: Vec<_> = pending.into_iter().map(|p| tokio::spawn(p.wait(deadline))).collect();
        let mut ok = false;
        for h in handles {
            match h.await {
                Ok(Ok(())) => ok = true,
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if ok {
            Ok(())
        } else {
            Err(AuditError::Unavailable(errors.join("; ")))
        }
    }
}

/// Request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Request,
    Response,
}

/// The token behind a request, or the one a login created. Holds raw values: no `Debug`, HMACed on output.
#[derive(Clone, Default)]
pub struct AuditAuth {
    pub client_token: Option<String>,
    pub accessor: Option<String>,
    pub display_name: String,
    pub policies: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub token_type: String,
    pub ttl_secs: Option<u64>,
    /// HMACs of the token and accessor, computed once: each appears twice per line and again in the response line.
    pub(crate) hmacs: std::sync::OnceLock<(Option<String>, Option<String>)>,
}

impl AuditAuth {
    /// HMACs of (client token, accessor).
    fn hashed(&self, key: &HmacKey) -> &(Option<String>, Option<String>) {
        self.hmacs.get_or_init(|| {
            (
                self.client_token.as_deref().map(|t| key.hash(t)),
                self.accessor.as_deref().map(|a| key.hash(a)),
            )
        })
    }

    fn view<'a>(&'a self, key: &HmacKey) -> AuthLine<'a> {
        let (client_token, accessor) = self.hashed(key);
        AuthLine {
            client_token: client_token.as_deref(),
            accessor: accessor.as_deref(),
            display_name: &self.display_name,
            policies: &self.policies,
            token_policies: &self.policies,
            metadata: &self.metadata,
            token_type: &self.token_type,
            token_ttl: self.ttl_secs,
        }
    }
}

// The shape of an audit line (Vault's), serialized straight from borrowed fields: building a `serde_json::Value`
// tree first cost as much as the rest of a KV read.

#[derive(Serialize)]
struct AuthLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accessor: Option<&'a str>,
    display_name: &'a str,
    policies: &'a [String],
    token_policies: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    token_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_ttl: Option<u64>,
}

#[derive(Serialize)]
struct RequestLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token_accessor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Hashed<'a>>,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount_point: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount_type: Option<&'a str>,
    operation: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_address: Option<&'a str>,
}

#[derive(Serialize)]
struct ResponseLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<AuthLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Hashed<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount_point: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<AuthLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    request: RequestLine<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseLine<'a>>,
    time: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// One audit record, built by the core for the request and again for its response. Raw values go in; the line
/// that comes out has every token, accessor and data string replaced by its HMAC.
#[derive(Clone)]
pub struct AuditEntry {
    pub kind: EntryKind,
    pub time: SystemTime,
    pub request_id: String,
    /// Vault's operation names: read, create, update, delete, list, patch.
    pub operation: String,
    /// The full logical path, e.g. `secret/data/app`.
    pub path: String,
    pub mount_point: Option<String>,
    pub mount_type: Option<String>,
    pub remote_address: Option<String>,
    /// The token that made the request (`auth` in Vault's format).
    pub auth: Option<AuditAuth>,
    pub request_data: Option<Value>,
    pub response_data: Option<Value>,
    /// A login's new token.
    pub response_auth: Option<AuditAuth>,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Flush to stable storage before acknowledging (default). The core clears it only for requests that cannot
    /// change state, whose lines are written (ordered, chained) but not fdatasync'ed, as Vault's file device does.
    pub durable: bool,
}

impl AuditEntry {
    pub fn new(kind: EntryKind, time: SystemTime, request_id: &str, operation: &str, path: &str) -> Self {
        AuditEntry {
            kind,
            time,
            request_id: request_id.into(),
            operation: operation.into(),
            path: path.into(),
            mount_point: None,
            mount_type: None,
            remote_address: None,
            auth: None,
            request_data: None,
            response_data: None,
            response_auth: None,
            status: None,
            error: None,
            durable: true,
        }
    }

    /// The same request seen on its way out.
    pub fn response(&self, time: SystemTime) -> Self {
        AuditEntry {
            kind: EntryKind::Response,
            time,
            ..self.clone()
        }
    }

    /// The line for this entry (without `prev_hash`, which the device adds), sensitive values HMACed.
    pub fn to_line(&self, key: &HmacKey) -> String {
        let line = Line {
            auth: self.auth.as_ref().map(|a| a.view(key)),
            error: self.error.as_deref(),
            request: RequestLine {
                client_token: self.auth.as_ref().and_then(|a| a.hashed(key).0.as_deref()),
                client_token_accessor: self.auth.as_ref().and_then(|a| a.hashed(key).1.as_deref()),
                data: self.request_data.as_ref().map(|d| Hashed(d, key)),
                id: &self.request_id,
                mount_point: self.mount_point.as_deref(),
                mount_type: self.mount_type.as_deref(),
                operation: &self.operation,
                path: &self.path,
                remote_address: self.remote_address.as_deref(),
            },
            response: (self.kind == EntryKind::Response).then(|| ResponseLine {
                auth: self.response_auth.as_ref().map(|a| a.view(key)),
                data: self.response_data.as_ref().map(|d| Hashed(d, key)),
                mount_point: self.mount_point.as_deref(),
                status: self.status,
            }),
            time: time::OffsetDateTime::from(self.time)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            kind: match self.kind {
                EntryKind::Request => "request",
                EntryKind::Response => "response",
            },
        };
        // Serializing borrowed strings and numbers into a String cannot fail.
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// The line as JSON (for tests and tools).
    pub fn to_json(&self, key: &HmacKey) -> Value {
        serde_json::from_str(&self.to_line(key)).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn device_config_validation_names_the_field() {
        let e = DeviceConfig::from_request("file", &body(json!({"type": "syslog"}))).unwrap_err();
        assert!(e.to_string().contains("`type`"), "{e}");
        let e = DeviceConfig::from_request("file", &body(json!({"type": "file"}))).unwrap_err();
        assert!(e.to_string().contains("options.file_path"), "{e}");
        let e = DeviceConfig::from_request("file", &body(json!({"type": "file", "options": {"file_path": "rel"}})));
        assert!(e.unwrap_err().to_string().contains("absolute"));
        let c = DeviceConfig::from_request("/file/", &body(json!({"type": "file", "options": {"file_path": "/x"}})));
        assert_eq!(c.unwrap().path, "file/");
    }

    #[test]
    fn entries_carry_hmacs_not_values() {
        let key = HmacKey::new(b"test-key".to_vec());
        let mut e = AuditEntry::new(
            EntryKind::Request,
            SystemTime::UNIX_EPOCH,
            "id-1",
            "update",
            "secret/data/app",
        );
        e.auth = Some(AuditAuth {
            client_token: Some("lkss_token".into()),
            accessor: Some("lksa.acc".into()),
            policies: vec!["root".into()],
            ..Default::default()
        });
        e.request_data = Some(json!({"data": {"password": "hunter2"}}));
        let line = e.to_json(&key).to_string();
        for clear in ["lkss_token", "lksa.acc", "hunter2"] {
            assert!(!line.contains(clear), "{clear} in {line}");
        }
        assert!(line.contains(&key.hash("hunter2")));
        let resp = e.response(SystemTime::UNIX_EPOCH);
        let v = resp.to_json(&key);
        assert_eq!(v["type"], "response");
        assert_eq!(v["request"]["client_token"], key.hash("lkss_token"));
    }

    /// A FIFO whose reader never reads: the writer blocks once the pipe is full, like a stuck NFS mount.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_device_refuses_within_the_deadline_instead_of_hanging() {
        let deadline = Duration::from_millis(300);
        let broker = AuditBroker::new(deadline);
        broker.set_key(HmacKey::new(b"k".to_vec()));
        let fifo = super::super::device::test_dir().join("audit.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo (coreutils) is needed");
        assert!(made.success());
        let reader_path = fifo.clone();
        // Holds the read end open without reading.
        let reader = std::thread::spawn(move || std::fs::File::open(reader_path).unwrap());
        let cfg = body(json!({"type": "file", "options": {"file_path": fifo.to_str().unwrap()}}));
        broker
            .enable(DeviceConfig::from_request("pipe", &cfg).unwrap())
            .await
            .unwrap();
        let _read_end = reader.join().unwrap();
        let mut e = AuditEntry::new(EntryKind::Request, SystemTime::now(), "id", "update", "secret/data/x");
        e.request_data = Some(json!({"data": {"blob": "x".repeat(4096)}}));
        let mut refused = false;
        for _ in 0..200 {
            let started = std::time::Instant::now();
            match broker.log(&e).await {
                Ok(()) => {}
                Err(err) => {
                    assert!(matches!(err, AuditError::Unavailable(_)), "{err}");
                    assert!(err.to_string().contains("did not accept the entry"), "{err}");
                    assert!(
                        started.elapsed() < deadline + Duration::from_millis(700),
                        "took {:?}",
                        started.elapsed()
                    );
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused, "a full pipe must make logging fail within the deadline");
    }

    #[tokio::test]
    async fn a_broker_without_devices_logs_nothing_and_one_with_a_broken_device_refuses() {
        let broker = AuditBroker::new(Duration::from_millis(500));
        broker.set_key(HmacKey::new(b"k".to_vec()));
        let e = AuditEntry::new(EntryKind::Request, SystemTime::now(), "id", "read", "secret/data/x");
        broker.log(&e).await.unwrap();
        let dir = super::super::device::test_dir();
        let path = dir.join("a.log");
        let cfg = body(json!({"type": "file", "options": {"file_path": path.to_str().unwrap()}}));
        broker
            .enable(DeviceConfig::from_request("file", &cfg).unwrap())
            .await
            .unwrap();
        broker.log(&e).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            2,
            "genesis + one entry"
        );
        assert!(broker.hash("file", "x").unwrap().starts_with("hmac-sha256:"));
        assert!(matches!(broker.hash("nope", "x"), Err(AuditError::UnknownDevice(_))));
        broker.disable("file").unwrap();
        let full = body(json!({"type": "file", "options": {"file_path": "/dev/full"}}));
        let enabled = broker.enable(DeviceConfig::from_request("full", &full).unwrap()).await;
        if enabled.is_ok() {
            assert!(matches!(broker.log(&e).await, Err(AuditError::Unavailable(_))));
        }
    }
}
