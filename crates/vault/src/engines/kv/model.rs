//! KV v2 domain logic, free of HTTP and storage: one [`KeyRecord`] per secret path holds the key's metadata and
//! every retained version. The record is stored as one barrier entry (encrypted with the path as AAD), so a write
//! is one read plus one write and can never leave metadata and data out of step.
//!
//! Time is always a parameter (`now`), never read here, so expiry (`delete_version_after`) is testable.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Vault's default when neither the key nor the mount sets `max_versions`.
pub const DEFAULT_MAX_VERSIONS: u32 = 10;

/// Why a KV operation was refused. Messages are Vault's where clients match on them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// No such key or version (404 with an empty error list, as Vault).
    #[error("not found")]
    NotFound,
    #[error("check-and-set parameter did not match the current version")]
    CasMismatch,
    #[error("check-and-set parameter required for this call")]
    CasRequired,
    /// A request field had the wrong shape; the message names the field and what was expected.
    #[error("{0}")]
    BadRequest(String),
    #[error("stored KV record at `{path}` is unreadable: {reason}")]
    Corrupt { path: String, reason: String },
    /// The path names no KV endpoint (Vault: 404 "unsupported path").
    #[error("unsupported path")]
    Unsupported,
    /// The storage below failed (barrier integrity error, IO); the message carries its context.
    #[error("{0}")]
    Storage(String),
}

/// Unix time in nanoseconds (what the record stores).
pub type Nanos = i128;

pub fn to_nanos(t: SystemTime) -> Nanos {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as Nanos,
        Err(e) => -(e.duration().as_nanos() as Nanos),
    }
}

/// RFC 3339 with nanoseconds, as Vault prints times (`2026-11-22T18:57:29.983010573Z`).
pub fn format_time(n: Nanos) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(n)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Mount-wide settings (`<mount>/config`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EngineConfig {
    pub max_versions: u32,
    pub cas_required: bool,
    /// Seconds; 0 = never.
    pub delete_version_after: u64,
}

impl EngineConfig {
    pub fn to_json(&self) -> Value {
        json!({
            "max_versions": self.max_versions,
            "cas_required": self.cas_required,
            "delete_version_after": format_duration(self.delete_version_after),
        })
    }

    /// Apply a `POST config` body; fields not given keep their value.
    pub fn update(&mut self, body: &Map<String, Value>) -> Result<(), KvError> {
        if let Some(v) = body.get("max_versions") {
            self.max_versions = parse_u32(v, "max_versions")?;
        }
        if let Some(v) = body.get("cas_required") {
            self.cas_required = parse_bool(v, "cas_required")?;
        }
        if let Some(v) = body.get("delete_version_after") {
            self.delete_version_after = parse_duration(v, "delete_version_after")?;
        }
        Ok(())
    }
}

/// One version of a secret. No `Debug`: it holds secret data.
#[derive(Clone, Serialize, Deserialize)]
pub struct Version {
    pub created: Nanos,
    /// When the version was (or will be, with `delete_version_after`) deleted.
    pub deletion: Option<Nanos>,
    pub destroyed: bool,
    /// `None` once destroyed.
    pub data: Option<Map<String, Value>>,
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Version")
            .field("created", &self.created)
            .field("deletion", &self.deletion)
            .field("destroyed", &self.destroyed)
            .field("data", &self.data.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Version {
    pub fn is_deleted(&self, now: Nanos) -> bool {
        self.deletion.is_some_and(|d| d <= now)
    }

    /// `{created_time, deletion_time, destroyed}` as in the metadata `versions` map.
    fn summary(&self) -> Value {
        json!({
            "created_time": format_time(self.created),
            "deletion_time": self.deletion.map(format_time).unwrap_or_default(),
            "destroyed": self.destroyed,
        })
    }
}

/// Everything stored for one secret path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyRecord {
    pub created: Nanos,
    pub updated: Nanos,
    pub current_version: u64,
    pub oldest_version: u64,
    pub max_versions: u32,
    pub cas_required: bool,
    pub delete_version_after: u64,
    pub custom_metadata: Option<BTreeMap<String, String>>,
    pub versions: BTreeMap<u64, Version>,
}

/// The options of a data write: `{"options": {"cas": N}}`.
fn cas_option(body: &Map<String, Value>) -> Result<Option<u64>, KvError> {
    match body.get("options") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => match o.get("cas") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => parse_u64(v, "options.cas").map(Some),
        },
        Some(_) => Err(KvError::BadRequest(
            "field `options` must be an object, e.g. {\"cas\": 1}".into(),
        )),
    }
}

fn data_field(body: &Map<String, Value>) -> Result<Map<String, Value>, KvError> {
    match body.get("data") {
        Some(Value::Object(m)) => Ok(m.clone()),
        None | Some(Value::Null) => Err(KvError::BadRequest(
            "no data provided: send the secret as {\"data\": {\"key\": \"value\"}}".into(),
        )),
        Some(_) => Err(KvError::BadRequest(
            "field `data` must be a JSON object of key/value pairs".into(),
        )),
    }
}

impl KeyRecord {
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.current_version == 0
    }

    fn effective_max(&self, cfg: &EngineConfig) -> u32 {
        if self.max_versions > 0 {
            self.max_versions
        } else if cfg.max_versions > 0 {
            cfg.max_versions
        } else {
            DEFAULT_MAX_VERSIONS
        }
    }

    fn check_cas(&self, cas: Option<u64>, cfg: &EngineConfig) -> Result<(), KvError> {
        match cas {
            None if self.cas_required || cfg.cas_required => Err(KvError::CasRequired),
            Some(c) if c != self.current_version => Err(KvError::CasMismatch),
            _ => Ok(()),
        }
    }

    fn delete_after(&self, cfg: &EngineConfig) -> u64 {
        if self.delete_version_after > 0 {
            self.delete_version_after
        } else {
            cfg.delete_version_after
        }
    }

    /// Metadata of one version as returned with data reads and writes.
    pub fn version_metadata(&self, version: u64) -> Value {
        let v = self.versions.get(&version);
        json!({
            "created_time": v.map(|v| format_time(v.created)).unwrap_or_default(),
            "custom_metadata": self.custom_metadata,
            "deletion_time": v.and_then(|v| v.deletion).map(format_time).unwrap_or_default(),
            "destroyed": v.is_some_and(|v| v.destroyed),
            "version": version,
        })
    }

    /// Store a new version (POST/PUT `data/:path`). Returns the new version number.
    pub fn write(&mut self, body: &Map<String, Value>, cfg: &EngineConfig, now: Nanos) -> Result<u64, KvError> {
        let data = data_field(body)?;
        self.check_cas(cas_option(body)?, cfg)?;
        Ok(self.push_version(data, cfg, now))
    }

    fn push_version(&mut self, data: Map<String, Value>, cfg: &EngineConfig, now: Nanos) -> u64 {
        if self.is_empty() && self.created == 0 {
            self.created = now;
        }
        let version = self.current_version + 1;
        let after = self.delete_after(cfg);
        let deletion = (after > 0).then(|| now + Nanos::from(after) * 1_000_000_000);
        self.versions.insert(
            version,
            Version {
                created: now,
                deletion,
                destroyed: false,
                data: Some(data),
            },
        );
        self.current_version = version;
        self.updated = now;
        self.prune(cfg);
        version
    }

    /// Drop the oldest versions beyond `max_versions`.
    fn prune(&mut self, cfg: &EngineConfig) {
        let max = self.effective_max(cfg) as usize;
        let mut pruned = false;
        while self.versions.len() > max {
            self.versions.pop_first();
            pruned = true;
        }
        if pruned {
            self.oldest_version = self.versions.keys().next().copied().unwrap_or(0);
        }
    }

    /// The version a read addresses: `?version=N`, 0 or absent = current.
    pub fn resolve(&self, requested: Option<u64>) -> u64 {
        match requested {
            Some(v) if v > 0 => v,
            _ => self.current_version,
        }
    }

    /// Read a version: `Ok(Some(data))` when live, `Ok(None)` when deleted or destroyed (Vault answers 404 but
    /// still returns the metadata), `Err(NotFound)` when it never existed or was pruned.
    pub fn read(&self, version: u64, now: Nanos) -> Result<Option<&Map<String, Value>>, KvError> {
        let v = self.versions.get(&version).ok_or(KvError::NotFound)?;
        if v.destroyed || v.is_deleted(now) {
            Ok(None)
        } else {
            Ok(v.data.as_ref())
        }
    }

    /// JSON merge patch (RFC 7386) onto the current version (PATCH `data/:path`).
    pub fn patch(&mut self, body: &Map<String, Value>, cfg: &EngineConfig, now: Nanos) -> Result<u64, KvError> {
        let patch = data_field(body)?;
        let current = match self.read(self.current_version, now) {
            Ok(Some(d)) => d.clone(),
            _ => return Err(KvError::NotFound),
        };
        self.check_cas(cas_option(body)?, cfg)?;
        let mut merged = Value::Object(current);
        merge_patch(&mut merged, &Value::Object(patch));
        let Value::Object(merged) = merged else {
            return Err(KvError::BadRequest("patch must be an object".into()));
        };
        Ok(self.push_version(merged, cfg, now))
    }

    /// Soft-delete versions (delete/:path, or DELETE data/:path with the current version).
    pub fn delete_versions(&mut self, versions: &[u64], now: Nanos) {
        for n in versions {
            if let Some(v) = self.versions.get_mut(n)
                && !v.destroyed
                && !v.is_deleted(now)
            {
                v.deletion = Some(now);
            }
        }
        self.updated = now;
    }

    pub fn undelete(&mut self, versions: &[u64], now: Nanos) {
        for n in versions {
            if let Some(v) = self.versions.get_mut(n)
                && !v.destroyed
            {
                v.deletion = None;
            }
        }
        self.updated = now;
    }

    /// Remove the data of versions for good; the version entries stay, marked destroyed.
    pub fn destroy(&mut self, versions: &[u64], now: Nanos) {
        for n in versions {
            if let Some(v) = self.versions.get_mut(n) {
                v.destroyed = true;
                v.data = None;
            }
        }
        self.updated = now;
    }

    /// POST `metadata/:path`.
    pub fn update_metadata(
        &mut self,
        body: &Map<String, Value>,
        cfg: &EngineConfig,
        now: Nanos,
    ) -> Result<(), KvError> {
        if let Some(v) = body.get("max_versions") {
            self.max_versions = parse_u32(v, "max_versions")?;
        }
        if let Some(v) = body.get("cas_required") {
            self.cas_required = parse_bool(v, "cas_required")?;
        }
        if let Some(v) = body.get("delete_version_after") {
            self.delete_version_after = parse_duration(v, "delete_version_after")?;
        }
        if let Some(v) = body.get("custom_metadata") {
            self.custom_metadata = parse_custom_metadata(v)?;
        }
        if self.created == 0 {
            self.created = now;
        }
        self.updated = now;
        self.prune(cfg);
        Ok(())
    }

    /// GET `metadata/:path`.
    pub fn metadata_json(&self) -> Value {
        let versions: Map<String, Value> = self
            .versions
            .iter()
            .map(|(n, v)| (n.to_string(), v.summary()))
            .collect();
        json!({
            "cas_required": self.cas_required,
            "created_time": format_time(self.created),
            "current_version": self.current_version,
            "custom_metadata": self.custom_metadata,
            "delete_version_after": format_duration(self.delete_version_after),
            "max_versions": self.max_versions,
            "oldest_version": self.oldest_version,
            "updated_time": format_time(self.updated),
            "versions": versions,
        })
    }
}

/// RFC 7386: objects merge recursively, `null` removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// `{"a": 1, "b": {"c": 2}}` -> `{"a": null, "b": {"c": null}}` (the `subkeys` endpoint).
pub fn subkeys(data: &Map<String, Value>, depth: u64, level: u64) -> Value {
    Value::Object(
        data.iter()
            .map(|(k, v)| match v {
                Value::Object(m) if depth == 0 || level < depth => (k.clone(), subkeys(m, depth, level + 1)),
                _ => (k.clone(), Value::Null),
            })
            .collect(),
    )
}

/// The `versions` field of delete/undelete/destroy bodies: a list of numbers (hvac sends ints, the CLI strings).
pub fn parse_versions(body: &Map<String, Value>) -> Result<Vec<u64>, KvError> {
    let bad =
        || KvError::BadRequest("field `versions` must be a non-empty list of version numbers, e.g. [1, 2]".into());
    let list = match body.get("versions") {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => s.split(',').map(|p| Value::String(p.trim().to_string())).collect(),
        Some(v @ Value::Number(_)) => vec![v.clone()],
        _ => return Err(bad()),
    };
    if list.is_empty() {
        return Err(bad());
    }
    list.iter()
        .map(|v| parse_u64(v, "versions").map_err(|_| bad()))
        .collect()
}

fn parse_u64(v: &Value, field: &str) -> Result<u64, KvError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| KvError::BadRequest(format!("field `{field}` must be a non-negative integer")))
}

fn parse_u32(v: &Value, field: &str) -> Result<u32, KvError> {
    u32::try_from(parse_u64(v, field)?).map_err(|_| KvError::BadRequest(format!("field `{field}` is too large")))
}

fn parse_bool(v: &Value, field: &str) -> Result<bool, KvError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" || s.is_empty() => Ok(false),
        _ => Err(KvError::BadRequest(format!("field `{field}` must be true or false"))),
    }
}

fn parse_custom_metadata(v: &Value) -> Result<Option<BTreeMap<String, String>>, KvError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(KvError::BadRequest(format!(
                    "field `custom_metadata`: value of `{k}` must be a string (custom metadata is string to string)"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        _ => Err(KvError::BadRequest(
            "field `custom_metadata` must be an object of string values".into(),
        )),
    }
}

/// Go-style durations as Vault accepts them: `30`, `90s`, `1h30m`, `10m`, `0s`; result in seconds.
pub fn parse_duration(v: &Value, field: &str) -> Result<u64, KvError> {
    let bad = || {
        KvError::BadRequest(format!(
            "field `{field}` must be a duration such as \"30s\", \"1h30m\" or 90"
        ))
    };
    let s = match v {
        Value::Number(_) => return parse_u64(v, field),
        Value::String(s) => s.trim(),
        _ => return Err(bad()),
    };
    if s.is_empty() {
        return Ok(0);
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let (mut total, mut num) = (0u64, String::new());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let mult = match c {
            'h' => 3600,
            's' => 1,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                total += n / 1000;
                continue;
            }
            'm' => 60,
            'd' => 86400,
            _ => return Err(bad()),
        };
        total = total
            .checked_add(n.checked_mul(mult).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// Seconds as Go prints a `time.Duration`: `0s`, `45s`, `3m0s`, `1h30m0s`.
pub fn format_duration(secs: u64) -> String {
    let d = Duration::from_secs(secs).as_secs();
    let (h, m, s) = (d / 3600, (d % 3600) / 60, d % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    const T0: Nanos = 1_700_000_000_000_000_000;

    #[test]
    fn writes_number_versions_and_prune_beyond_max() {
        let cfg = EngineConfig {
            max_versions: 2,
            ..Default::default()
        };
        let mut r = KeyRecord::default();
        for i in 1..=3 {
            assert_eq!(
                r.write(&body(json!({"data": {"n": i}})), &cfg, T0 + i).unwrap(),
                i as u64
            );
        }
        assert_eq!(r.versions.keys().copied().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(r.oldest_version, 2);
        assert_eq!(r.read(1, T0), Err(KvError::NotFound));
        assert_eq!(r.read(3, T0).unwrap().unwrap()["n"], 3);
    }

    #[test]
    fn cas_mismatch_and_required() {
        let mut cfg = EngineConfig::default();
        let mut r = KeyRecord::default();
        r.write(&body(json!({"data": {"a": 1}, "options": {"cas": 0}})), &cfg, T0)
            .unwrap();
        let again = r.write(&body(json!({"data": {"a": 2}, "options": {"cas": 0}})), &cfg, T0);
        assert_eq!(again, Err(KvError::CasMismatch));
        assert_eq!(
            KvError::CasMismatch.to_string(),
            "check-and-set parameter did not match the current version"
        );
        cfg.cas_required = true;
        assert_eq!(
            r.write(&body(json!({"data": {"a": 2}})), &cfg, T0),
            Err(KvError::CasRequired)
        );
        assert_eq!(
            r.write(&body(json!({"data": {"a": 2}, "options": {"cas": "1"}})), &cfg, T0),
            Ok(2)
        );
    }

    #[test]
    fn delete_undelete_destroy() {
        let cfg = EngineConfig::default();
        let mut r = KeyRecord::default();
        r.write(&body(json!({"data": {"a": 1}})), &cfg, T0).unwrap();
        r.delete_versions(&[1], T0 + 5);
        assert!(r.read(1, T0 + 6).unwrap().is_none());
        assert_eq!(r.version_metadata(1)["deletion_time"], format_time(T0 + 5));
        r.undelete(&[1], T0 + 7);
        assert!(r.read(1, T0 + 8).unwrap().is_some());
        r.destroy(&[1], T0 + 9);
        assert!(r.read(1, T0 + 10).unwrap().is_none());
        r.undelete(&[1], T0 + 11);
        assert!(r.read(1, T0 + 12).unwrap().is_none(), "destroyed stays destroyed");
        assert!(r.versions[&1].data.is_none(), "destroy drops the data");
    }

    #[test]
    fn delete_version_after_expires_versions_by_the_clock_given() {
        let cfg = EngineConfig {
            delete_version_after: 60,
            ..Default::default()
        };
        let mut r = KeyRecord::default();
        r.write(&body(json!({"data": {"a": 1}})), &cfg, T0).unwrap();
        assert!(r.read(1, T0 + 59_000_000_000).unwrap().is_some());
        assert!(r.read(1, T0 + 60_000_000_000).unwrap().is_none());
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}, "n": [1]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "n": [1]}));
    }

    #[test]
    fn patch_needs_a_live_version() {
        let cfg = EngineConfig::default();
        let mut r = KeyRecord::default();
        assert_eq!(
            r.patch(&body(json!({"data": {"a": 1}})), &cfg, T0),
            Err(KvError::NotFound)
        );
        r.write(&body(json!({"data": {"a": 1, "b": 2}})), &cfg, T0).unwrap();
        assert_eq!(r.patch(&body(json!({"data": {"b": null, "c": 3}})), &cfg, T0), Ok(2));
        assert_eq!(
            Value::Object(r.read(2, T0).unwrap().unwrap().clone()),
            json!({"a": 1, "c": 3})
        );
    }

    #[test]
    fn durations_parse_and_print_like_go() {
        for (input, secs) in [
            (json!("1h30m"), 5400),
            (json!("90s"), 90),
            (json!(45), 45),
            (json!("0s"), 0),
        ] {
            assert_eq!(parse_duration(&input, "d").unwrap(), secs);
        }
        assert!(
            parse_duration(&json!("soon"), "d")
                .unwrap_err()
                .to_string()
                .contains("`d`")
        );
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(5400), "1h30m0s");
        assert_eq!(format_duration(180), "3m0s");
    }

    #[test]
    fn version_debug_redacts_data() {
        let v = Version {
            created: 0,
            deletion: None,
            destroyed: false,
            data: Some(body(json!({"pw": "hunter2"}))),
        };
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let cfg = EngineConfig::default();
        let mut r = KeyRecord::default();
        let e = r.write(&body(json!({"data": "x"})), &cfg, T0).unwrap_err();
        assert!(e.to_string().contains("`data`"), "{e}");
        let e = parse_versions(&body(json!({"versions": []}))).unwrap_err();
        assert!(e.to_string().contains("`versions`"), "{e}");
        assert_eq!(parse_versions(&body(json!({"versions": [1, "2"]}))).unwrap(), [1, 2]);
    }
}
