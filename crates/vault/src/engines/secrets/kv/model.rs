//! KV v2 domain logic, free of HTTP and storage. A [`KeyRecord`] per secret path holds the key's metadata and one
//! small entry per retained version (times, deletion, destroyed); each version's data is a record of its own, so
//! a write costs the size of the new version plus this metadata, however many versions are kept.
//!
//! Records written before versions were split out carry each version's data inline ([`Version::inline`]): they
//! still read, and the next write to the secret moves the data out.
//!
//! Request fields are read with [`crate::fields`], so the CLI's strings (`max_versions="5"`,
//! `cas_required="true"`, `delete_version_after="1h"`) mean what typed JSON means. Time is always a parameter
//! (`now`), never read here, so expiry (`delete_version_after`) is testable.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::fields::{self, Fields};

/// Vault's default when neither the key nor the mount sets `max_versions`.
pub const DEFAULT_MAX_VERSIONS: u32 = 10;

/// The most versions a secret may keep. Vault has no cap, but every retained version is an entry of the metadata
/// record read and rewritten by each write to the secret: an unbounded history makes every write slower.
pub const MAX_VERSIONS_LIMIT: u32 = 1000;

/// Default cap on one version's data (its JSON encoding), per mount: OpenBao's integrated storage refuses larger
/// entries by default too. A mount may change it with `max_version_bytes` in its `config`.
pub const DEFAULT_MAX_VERSION_BYTES: u64 = 1024 * 1024;

/// The largest `max_version_bytes` a mount may set: the server's default request size limit.
pub const MAX_VERSION_BYTES_LIMIT: u64 = 32 * 1024 * 1024;

/// Vault's bounds on `custom_metadata`.
const CUSTOM_METADATA_KEYS: usize = 64;
const CUSTOM_METADATA_KEY_BYTES: usize = 128;
const CUSTOM_METADATA_VALUE_BYTES: usize = 512;

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
    #[error(
        "secret data is {size} bytes, more than the {limit} bytes this mount stores per version: keep large \
         files elsewhere and store a reference (a KV v2 mount can raise `max_version_bytes` in its config, up to \
         {MAX_VERSION_BYTES_LIMIT})"
    )]
    TooLarge { size: u64, limit: u64 },
    /// A stored record could not be decoded. Names the storage key: for the server log, never for the client.
    #[error("stored KV record `{key}` is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    /// The path names no KV endpoint (Vault: 404 "unsupported path").
    #[error("unsupported path")]
    Unsupported,
    /// The storage below failed (barrier integrity error, IO). Names storage keys: for the server log only.
    #[error("{0}")]
    Storage(String),
}

impl From<VaultError> for KvError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::BadRequest(m) => KvError::BadRequest(m),
            VaultError::NotFound => KvError::NotFound,
            e => KvError::Storage(e.to_string()),
        }
    }
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
    /// Bytes; 0 = [`DEFAULT_MAX_VERSION_BYTES`]. Not a Vault setting (absent from configs stored before it).
    #[serde(default)]
    pub max_version_bytes: u64,
}

impl EngineConfig {
    pub fn to_json(&self) -> Value {
        json!({
            "max_versions": self.max_versions,
            "cas_required": self.cas_required,
            "delete_version_after": format_duration(self.delete_version_after),
            "max_version_bytes": self.version_limit(),
        })
    }

    /// The most bytes one version's data may take.
    pub fn version_limit(&self) -> u64 {
        match self.max_version_bytes {
            0 => DEFAULT_MAX_VERSION_BYTES,
            n => n,
        }
    }

    /// Apply a `POST config` body; fields not given keep their value, unknown fields are refused.
    pub fn update(&mut self, body: &Map<String, Value>) -> Result<(), KvError> {
        let mut f = Fields::new(body);
        let max_versions = f.u64("max_versions")?.map(max_versions).transpose()?;
        let cas_required = f.bool("cas_required")?;
        let delete_version_after = f.duration("delete_version_after")?;
        let max_version_bytes = f.u64("max_version_bytes")?;
        f.finish()?;
        if let Some(n) = max_version_bytes
            && n > MAX_VERSION_BYTES_LIMIT
        {
            return Err(KvError::BadRequest(format!(
                "field `max_version_bytes` is {n}: at most {MAX_VERSION_BYTES_LIMIT} (0 restores the default, \
                 {DEFAULT_MAX_VERSION_BYTES})"
            )));
        }
        self.max_versions = max_versions.unwrap_or(self.max_versions);
        self.cas_required = cas_required.unwrap_or(self.cas_required);
        self.delete_version_after = delete_version_after.unwrap_or(self.delete_version_after);
        self.max_version_bytes = max_version_bytes.unwrap_or(self.max_version_bytes);
        Ok(())
    }
}

fn max_versions(n: u64) -> Result<u32, KvError> {
    match u32::try_from(n) {
        Ok(n) if n <= MAX_VERSIONS_LIMIT => Ok(n),
        _ => Err(KvError::BadRequest(format!(
            "field `max_versions` is {n}: at most {MAX_VERSIONS_LIMIT} versions are kept per secret (0 means the \
             mount's setting, or {DEFAULT_MAX_VERSIONS})"
        ))),
    }
}

/// One version of a secret. No `Debug` derive: a record in the old format holds its data.
#[derive(Clone, Serialize, Deserialize)]
pub struct Version {
    pub created: Nanos,
    /// When the version was (or will be, with `delete_version_after`) deleted.
    pub deletion: Option<Nanos>,
    pub destroyed: bool,
    /// The data, in records written before each version had a record of its own; `None` in current records.
    #[serde(rename = "data", default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Map<String, Value>>,
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Version")
            .field("created", &self.created)
            .field("deletion", &self.deletion)
            .field("destroyed", &self.destroyed)
            .field("inline", &self.inline.as_ref().map(|_| "<redacted>"))
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

/// The metadata stored for one secret path.
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

/// The body of a data write or patch: `{"data": {...}, "options": {"cas": N}}`. No `Debug`: it holds secret data.
pub struct DataWrite {
    pub data: Map<String, Value>,
    pub cas: Option<u64>,
}

impl DataWrite {
    pub fn parse(body: &Map<String, Value>) -> Result<DataWrite, KvError> {
        let mut f = Fields::new(body);
        let data = f.object("data")?.ok_or_else(|| {
            KvError::BadRequest("no data provided: send the secret as {\"data\": {\"key\": \"value\"}}".into())
        })?;
        let cas = match f.object("options")? {
            Some(options) => Fields::new(&options).u64("cas")?,
            None => None,
        };
        Ok(DataWrite { data, cas })
    }
}

impl KeyRecord {
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.current_version == 0
    }

    fn effective_max(&self, cfg: &EngineConfig) -> u32 {
        let max = if self.max_versions > 0 {
            self.max_versions
        } else if cfg.max_versions > 0 {
            cfg.max_versions
        } else {
            DEFAULT_MAX_VERSIONS
        };
        // Records and configs stored before the limit existed may name more.
        max.min(MAX_VERSIONS_LIMIT)
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

    /// Add a version (its data is stored by the caller) after checking `cas`. Returns the new version number and
    /// the versions dropped beyond `max_versions`, whose data records the caller deletes.
    pub fn add_version(
        &mut self,
        cas: Option<u64>,
        cfg: &EngineConfig,
        now: Nanos,
    ) -> Result<(u64, Vec<u64>), KvError> {
        self.check_cas(cas, cfg)?;
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
                inline: None,
            },
        );
        self.current_version = version;
        self.updated = now;
        Ok((version, self.prune(cfg)))
    }

    /// Drop the oldest versions beyond `max_versions`; returns their numbers.
    fn prune(&mut self, cfg: &EngineConfig) -> Vec<u64> {
        let max = self.effective_max(cfg) as usize;
        let mut dropped = Vec::new();
        while self.versions.len() > max {
            if let Some((n, _)) = self.versions.pop_first() {
                dropped.push(n);
            }
        }
        if !dropped.is_empty() {
            self.oldest_version = self.versions.keys().next().copied().unwrap_or(0);
        }
        dropped
    }

    /// The version a read addresses: `?version=N`, 0 or absent = current.
    pub fn resolve(&self, requested: Option<u64>) -> u64 {
        match requested {
            Some(v) if v > 0 => v,
            _ => self.current_version,
        }
    }

    /// Whether a version can be read: `Ok(true)` when live, `Ok(false)` when deleted or destroyed (Vault answers
    /// 404 but still returns the metadata), `Err(NotFound)` when it never existed or was pruned.
    pub fn is_live(&self, version: u64, now: Nanos) -> Result<bool, KvError> {
        let v = self.versions.get(&version).ok_or(KvError::NotFound)?;
        Ok(!(v.destroyed || v.is_deleted(now)))
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

    /// Mark versions destroyed (the entries stay); returns those whose data records the caller deletes.
    pub fn destroy(&mut self, versions: &[u64], now: Nanos) -> Vec<u64> {
        let mut gone = Vec::new();
        for n in versions {
            if let Some(v) = self.versions.get_mut(n) {
                v.destroyed = true;
                v.inline = None;
                gone.push(*n);
            }
        }
        self.updated = now;
        gone
    }

    /// POST/PATCH `metadata/:path`; unknown fields are refused. Returns the versions dropped by a lower
    /// `max_versions`, whose data records the caller deletes.
    pub fn update_metadata(
        &mut self,
        body: &Map<String, Value>,
        cfg: &EngineConfig,
        now: Nanos,
    ) -> Result<Vec<u64>, KvError> {
        let mut f = Fields::new(body);
        let max = f.u64("max_versions")?.map(max_versions).transpose()?;
        let cas_required = f.bool("cas_required")?;
        let delete_version_after = f.duration("delete_version_after")?;
        // `null` clears the custom metadata; absent keeps it.
        let clear_custom = f.has("custom_metadata");
        let custom = f.string_map("custom_metadata")?;
        f.finish()?;
        if let Some(m) = &custom {
            check_custom_metadata(m)?;
        }
        self.max_versions = max.unwrap_or(self.max_versions);
        self.cas_required = cas_required.unwrap_or(self.cas_required);
        self.delete_version_after = delete_version_after.unwrap_or(self.delete_version_after);
        if custom.is_some() || clear_custom {
            self.custom_metadata = custom;
        }
        if self.created == 0 {
            self.created = now;
        }
        self.updated = now;
        Ok(self.prune(cfg))
    }

    /// Versions whose data is still inline (a record in the old format), taken out to be stored on their own.
    pub fn take_inline(&mut self) -> Vec<(u64, Map<String, Value>)> {
        self.versions
            .iter_mut()
            .filter_map(|(n, v)| v.inline.take().map(|d| (*n, d)))
            .collect()
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

fn check_custom_metadata(m: &BTreeMap<String, String>) -> Result<(), KvError> {
    let bad = |what: String| KvError::BadRequest(format!("field `custom_metadata`: {what}"));
    if m.len() > CUSTOM_METADATA_KEYS {
        return Err(bad(format!("{} keys, at most {CUSTOM_METADATA_KEYS}", m.len())));
    }
    for (k, v) in m {
        if k.is_empty() || k.len() > CUSTOM_METADATA_KEY_BYTES {
            return Err(bad(format!("keys must be 1 to {CUSTOM_METADATA_KEY_BYTES} bytes long")));
        }
        if v.len() > CUSTOM_METADATA_VALUE_BYTES {
            return Err(bad(format!(
                "the value of `{k}` is {} bytes, at most {CUSTOM_METADATA_VALUE_BYTES}",
                v.len()
            )));
        }
    }
    Ok(())
}

/// A version's data as stored: its JSON, in a buffer zeroized on drop and sized exactly (so no reallocation leaves
/// a copy behind), refused when longer than `limit`.
pub fn encode_data(data: &Map<String, Value>, limit: u64) -> Result<Zeroizing<Vec<u8>>, KvError> {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let encode_err = |e: serde_json::Error| KvError::BadRequest(format!("secret data cannot be encoded: {e}"));
    let mut count = Count(0);
    serde_json::to_writer(&mut count, data).map_err(encode_err)?;
    if count.0 > limit {
        return Err(KvError::TooLarge { size: count.0, limit });
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(count.0 as usize));
    serde_json::to_writer(&mut *buf, data).map_err(encode_err)?;
    Ok(buf)
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

/// The `versions` field of delete/undelete/destroy bodies: a list of numbers (hvac sends ints, the CLI a
/// comma-separated string). Unknown fields are refused.
pub fn parse_versions(body: &Map<String, Value>) -> Result<Vec<u64>, KvError> {
    let bad =
        || KvError::BadRequest("field `versions` must be a non-empty list of version numbers, e.g. [1, 2]".into());
    let mut f = Fields::new(body);
    let list = match f.raw("versions") {
        None => return Err(bad()),
        Some(v @ Value::Number(_)) => vec![fields::unsigned(v, "versions").map_err(|_| bad())?.to_string()],
        Some(v) => fields::list(v, "versions").map_err(|_| bad())?,
    };
    f.finish()?;
    if list.is_empty() {
        return Err(bad());
    }
    list.iter().map(|s| s.trim().parse().map_err(|_| bad())).collect()
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
    fn versions_are_numbered_and_pruned_beyond_max() {
        let cfg = EngineConfig {
            max_versions: 2,
            ..Default::default()
        };
        let mut r = KeyRecord::default();
        let mut dropped = Vec::new();
        for i in 1..=3 {
            let (v, d) = r.add_version(None, &cfg, T0 + i).unwrap();
            assert_eq!(v, i as u64);
            dropped.extend(d);
        }
        assert_eq!(dropped, [1], "the caller is told which data records to delete");
        assert_eq!(r.versions.keys().copied().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(r.oldest_version, 2);
        assert_eq!(r.is_live(1, T0), Err(KvError::NotFound));
        assert_eq!(r.is_live(3, T0), Ok(true));
    }

    #[test]
    fn cas_mismatch_and_required() {
        let mut cfg = EngineConfig::default();
        let mut r = KeyRecord::default();
        r.add_version(Some(0), &cfg, T0).unwrap();
        assert_eq!(r.add_version(Some(0), &cfg, T0), Err(KvError::CasMismatch));
        assert_eq!(
            KvError::CasMismatch.to_string(),
            "check-and-set parameter did not match the current version"
        );
        cfg.cas_required = true;
        assert_eq!(r.add_version(None, &cfg, T0), Err(KvError::CasRequired));
        let w = DataWrite::parse(&body(json!({"data": {"a": 2}, "options": {"cas": "1"}}))).unwrap();
        assert_eq!(r.add_version(w.cas, &cfg, T0).map(|(v, _)| v), Ok(2));
    }

    #[test]
    fn delete_undelete_destroy() {
        let cfg = EngineConfig::default();
        let mut r = KeyRecord::default();
        r.add_version(None, &cfg, T0).unwrap();
        r.delete_versions(&[1], T0 + 5);
        assert_eq!(r.is_live(1, T0 + 6), Ok(false));
        assert_eq!(r.version_metadata(1)["deletion_time"], format_time(T0 + 5));
        r.undelete(&[1], T0 + 7);
        assert_eq!(r.is_live(1, T0 + 8), Ok(true));
        assert_eq!(
            r.destroy(&[1, 9], T0 + 9),
            [1],
            "only versions that exist have data to delete"
        );
        assert_eq!(r.is_live(1, T0 + 10), Ok(false));
        r.undelete(&[1], T0 + 11);
        assert_eq!(r.is_live(1, T0 + 12), Ok(false), "destroyed stays destroyed");
    }

    #[test]
    fn delete_version_after_expires_versions_by_the_clock_given() {
        let cfg = EngineConfig {
            delete_version_after: 60,
            ..Default::default()
        };
        let mut r = KeyRecord::default();
        r.add_version(None, &cfg, T0).unwrap();
        assert_eq!(r.is_live(1, T0 + 59_000_000_000), Ok(true));
        assert_eq!(r.is_live(1, T0 + 60_000_000_000), Ok(false));
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}, "n": [1]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "n": [1]}));
    }

    #[test]
    fn cli_strings_configure_like_typed_json() {
        for b in [
            json!({"max_versions": "5", "cas_required": "true", "delete_version_after": "1h"}),
            json!({"max_versions": 5, "cas_required": true, "delete_version_after": 3600}),
        ] {
            let mut cfg = EngineConfig::default();
            cfg.update(&body(b.clone())).unwrap();
            assert_eq!(
                (cfg.max_versions, cfg.cas_required, cfg.delete_version_after),
                (5, true, 3600)
            );
            let mut r = KeyRecord::default();
            r.update_metadata(&body(b), &cfg, T0).unwrap();
            assert_eq!(
                (r.max_versions, r.cas_required, r.delete_version_after),
                (5, true, 3600)
            );
            assert_eq!(r.metadata_json()["delete_version_after"], "1h0m0s");
        }
    }

    #[test]
    fn malformed_unknown_and_oversized_settings_are_refused_and_change_nothing() {
        for b in [
            json!({"max_versions": "five"}),
            json!({"cas_required": "yes"}),
            json!({"delete_version_after": "soon"}),
            json!({"max_versions": 1001}),
            json!({"max_versions": 4294967295u64}),
            json!({"max_versions": 3, "max_version": 5}),
            json!({"custom_metadata": "[1]"}),
        ] {
            let mut r = KeyRecord::default();
            let e = r
                .update_metadata(&body(b.clone()), &EngineConfig::default(), T0)
                .unwrap_err();
            assert!(matches!(e, KvError::BadRequest(_)), "{b}: {e:?}");
            assert_eq!(r.max_versions, 0, "{b}: a refused update applies nothing");
            let mut cfg = EngineConfig::default();
            assert!(
                matches!(cfg.update(&body(b.clone())), Err(KvError::BadRequest(_))),
                "{b}"
            );
            assert_eq!(cfg, EngineConfig::default());
        }
        let e = EngineConfig::default()
            .update(&body(json!({"max_versions": 5000})))
            .unwrap_err();
        assert!(e.to_string().contains("at most 1000"), "{e}");
        let e = EngineConfig::default()
            .update(&body(json!({"cas_requird": true})))
            .unwrap_err();
        assert!(e.to_string().contains("`cas_requird`"), "{e}");
    }

    #[test]
    fn custom_metadata_is_bounded_and_null_clears_it() {
        let cfg = EngineConfig::default();
        let mut r = KeyRecord::default();
        r.update_metadata(&body(json!({"custom_metadata": "{\"owner\":\"ci\"}"})), &cfg, T0)
            .unwrap();
        assert_eq!(r.custom_metadata.as_ref().unwrap()["owner"], "ci");
        r.update_metadata(&body(json!({"max_versions": 3})), &cfg, T0).unwrap();
        assert!(r.custom_metadata.is_some(), "absent keeps it");
        r.update_metadata(&body(json!({"custom_metadata": null})), &cfg, T0)
            .unwrap();
        assert!(r.custom_metadata.is_none(), "null clears it");
        let many: Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(
            r.update_metadata(&body(json!({ "custom_metadata": many })), &cfg, T0)
                .is_err()
        );
        let long = "x".repeat(513);
        assert!(
            r.update_metadata(&body(json!({"custom_metadata": {"k": long}})), &cfg, T0)
                .is_err()
        );
    }

    #[test]
    fn a_lower_max_versions_reports_the_dropped_versions() {
        let cfg = EngineConfig::default();
        let mut r = KeyRecord::default();
        for _ in 0..5 {
            r.add_version(None, &cfg, T0).unwrap();
        }
        let dropped = r
            .update_metadata(&body(json!({"max_versions": "2"})), &cfg, T0)
            .unwrap();
        assert_eq!(dropped, [1, 2, 3]);
    }

    #[test]
    fn encoded_data_is_exact_and_bounded() {
        let data = body(json!({"pw": "hunter2", "n": [1, 2]}));
        let enc = encode_data(&data, 1024).unwrap();
        assert_eq!(
            enc.len(),
            enc.capacity(),
            "no spare capacity: the buffer was never reallocated"
        );
        assert_eq!(serde_json::from_slice::<Map<String, Value>>(&enc).unwrap(), data);
        let e = encode_data(&data, 10).unwrap_err();
        assert_eq!(
            e,
            KvError::TooLarge {
                size: enc.len() as u64,
                limit: 10
            }
        );
        assert!(e.to_string().contains("max_version_bytes"), "{e}");
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(5400), "1h30m0s");
        assert_eq!(format_duration(180), "3m0s");
    }

    #[test]
    fn version_debug_redacts_inline_data() {
        let v = Version {
            created: 0,
            deletion: None,
            destroyed: false,
            inline: Some(body(json!({"pw": "hunter2"}))),
        };
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let e = DataWrite::parse(&body(json!({"data": "x"}))).err().unwrap();
        assert!(e.to_string().contains("`data`"), "{e}");
        let e = DataWrite::parse(&body(json!({"data": {}, "options": {"cas": "x"}})))
            .err()
            .unwrap();
        assert!(e.to_string().contains("`cas`"), "{e}");
        let e = parse_versions(&body(json!({"versions": []}))).unwrap_err();
        assert!(e.to_string().contains("`versions`"), "{e}");
        assert_eq!(parse_versions(&body(json!({"versions": [1, "2"]}))).unwrap(), [1, 2]);
        assert_eq!(parse_versions(&body(json!({"versions": "1, 3"}))).unwrap(), [1, 3]);
        assert_eq!(parse_versions(&body(json!({"versions": 4}))).unwrap(), [4]);
        assert!(parse_versions(&body(json!({"versions": [1], "version": 2}))).is_err());
    }
}
