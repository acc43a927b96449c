//! KV v2 request routing (`config`, `data/`, `metadata/`, `delete/`, `undelete/`, `destroy/`, `subkeys/`) over the
//! mount's [`Store`] (the barrier view in production), which encrypts every record with its storage path as associated data.
//!
//! Layout under the mount:
//! - `config`: the engine settings ([`EngineConfig`]).
//! - `meta/<path>`: the secret's [`KeyRecord`] (metadata, one small entry per retained version). Listing
//!   `metadata/<prefix>` is a storage listing of `meta/<prefix>`.
//! - `version/<path>/<n>`: the data of version `n`. The number is the last segment and holds no `/`, so two
//!   secrets never share a key.
//!
//! - `leak-index/<keyed hash>/<escaped path>@<n>`: an empty entry per string value (of at least
//!   [`MIN_INDEXED`] characters) of version `n`, so a leak report finds where a value is stored without the value
//!   being stored anywhere but in its version. The hash key lives in the barrier ([`Store::keyed_hash`]). Kept on
//!   every write, prune, destroy and metadata delete; a soft-deleted version keeps its entries (its data can
//!   still be undeleted, so a leak of it still matters).
//! - `leaked/<path>`: the versions reported leaked and when ([`Leaked`]), shown as `leaked` in the metadata.
//!
//! Writes are buffered in the view and committed by the core in one transaction once the response is audited,
//! under the core's per-secret write lock, which also serializes the read-modify-write of a secret's record. Every
//! request checks what it can before it buffers a write, because the core commits whatever was buffered.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::model::{self, DataWrite, EngineConfig, KeyRecord, KvError};
use crate::engine::Store;
use crate::{LogicalRequest, LogicalResponse, Operation};

const CONFIG_KEY: &str = "config";

/// Shorter strings (`true`, `admin`, port numbers) are not secrets anyone could usefully report.
pub const MIN_INDEXED: usize = 8;

/// Versions of one secret reported leaked → when (nanoseconds).
type Leaked = std::collections::BTreeMap<u64, model::Nanos>;

fn leaked_key(path: &str) -> String {
    format!("leaked/{path}")
}

fn index_key(hash: &str, path: &str, version: u64) -> String {
    format!("leak-index/{hash}/{}@{version}", crate::leases::escape(path))
}

/// Every string of a version's data (at any depth) worth indexing, once each.
fn indexed_strings(data: &Map<String, Value>) -> std::collections::BTreeSet<&str> {
    fn walk<'a>(v: &'a Value, out: &mut std::collections::BTreeSet<&'a str>) {
        match v {
            Value::String(s) if s.chars().count() >= MIN_INDEXED => {
                out.insert(s);
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    data.values().for_each(|v| walk(v, &mut out));
    out
}

/// Add (or remove) the index entries of one version's data.
async fn index_version(
    store: &dyn Store,
    path: &str,
    version: u64,
    data: &Map<String, Value>,
    add: bool,
) -> Result<(), KvError> {
    for s in indexed_strings(data) {
        let key = index_key(&store.keyed_hash(s.as_bytes())?, path, version);
        if add {
            store.put(&key, b"").await?;
        } else {
            store.delete(&key).await?;
        }
    }
    Ok(())
}

/// The places of a KV v2 mount holding `value` (live or soft-deleted versions), each marked leaked in its
/// secret's `leaked/` record.
pub async fn find_leaked(
    store: &dyn Store,
    value: &str,
    now: model::Nanos,
) -> Result<Vec<crate::engine::StoredMatch>, KvError> {
    let hash = store.keyed_hash(value.as_bytes())?;
    let mut found = Vec::new();
    for entry in store.list(&format!("leak-index/{hash}/")).await? {
        let Some((escaped, version)) = entry.rsplit_once('@') else {
            continue;
        };
        let (path, Ok(version)) = (crate::leases::unescape(escaped), version.parse::<u64>()) else {
            continue;
        };
        // The index follows every destroy; checking the record as well costs one read per match.
        let Some(rec) = load(store, &path).await? else { continue };
        if rec.versions.get(&version).is_none_or(|v| v.destroyed) {
            continue;
        }
        let key = leaked_key(&path);
        let mut leaked: Leaked = match get(store, &key).await? {
            Some(b) => decode(&key, &b)?,
            None => Leaked::new(),
        };
        if let std::collections::btree_map::Entry::Vacant(e) = leaked.entry(version) {
            e.insert(now);
            let bytes = serde_json::to_vec(&leaked).map_err(|e| KvError::Corrupt {
                key: key.clone(),
                reason: e.to_string(),
            })?;
            store.put(&key, &bytes).await?;
        }
        found.push(crate::engine::StoredMatch {
            path: format!("data/{path}"),
            version,
            rotated: false,
        });
    }
    Ok(found)
}

/// A version's data when a v1 mount has no config to say otherwise.
const V1_LIMIT: u64 = model::DEFAULT_MAX_VERSION_BYTES;

fn meta_key(path: &str) -> String {
    format!("meta/{path}")
}

fn version_key(path: &str, version: u64) -> String {
    format!("version/{path}/{version}")
}

/// Control characters (NUL above all) cannot be stored in a key: refused as a bad path, not a storage failure.
fn no_control(path: &str) -> Result<(), KvError> {
    if path.chars().any(char::is_control) {
        return Err(KvError::BadRequest(
            "invalid secret path: control characters (such as NUL) are not allowed".into(),
        ));
    }
    Ok(())
}

fn valid_path(path: &str, what: &str) -> Result<(), KvError> {
    if path.is_empty() || path.ends_with('/') {
        return Err(KvError::BadRequest(format!(
            "missing or invalid secret path in `{what}`: name a secret, e.g. {what}my-app/db"
        )));
    }
    no_control(path)?;
    if path.split('/').any(|seg| seg == ".." || seg == "." || seg.is_empty()) {
        return Err(KvError::BadRequest(format!(
            "invalid secret path {path:?}: empty, `.` and `..` segments are not allowed"
        )));
    }
    Ok(())
}

/// A stored record, in a buffer zeroized on drop.
async fn get(store: &dyn Store, key: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KvError> {
    Ok(store.get(key).await?)
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, KvError> {
    serde_json::from_slice(bytes).map_err(|e| KvError::Corrupt {
        key: key.into(),
        reason: e.to_string(),
    })
}

async fn config(store: &dyn Store) -> Result<EngineConfig, KvError> {
    match get(store, CONFIG_KEY).await? {
        None => Ok(EngineConfig::default()),
        Some(b) => decode(CONFIG_KEY, &b),
    }
}

async fn load(store: &dyn Store, path: &str) -> Result<Option<KeyRecord>, KvError> {
    let key = meta_key(path);
    match get(store, &key).await? {
        None => Ok(None),
        Some(b) => decode(&key, &b).map(Some),
    }
}

/// Buffer the secret's record, first moving version data still inline (the old format) to records of its own.
async fn save(store: &dyn Store, path: &str, rec: &mut KeyRecord) -> Result<(), KvError> {
    for (version, data) in rec.take_inline() {
        // Already stored once: no size limit applies to moving it.
        let bytes = model::encode_data(&data, u64::MAX)?;
        store.put(&version_key(path, version), &bytes).await?;
    }
    let bytes = Zeroizing::new(serde_json::to_vec(rec).map_err(|e| KvError::Corrupt {
        key: meta_key(path),
        reason: e.to_string(),
    })?);
    store.put(&meta_key(path), &bytes).await?;
    Ok(())
}

/// The data of a version the record lists.
async fn read_data(
    store: &dyn Store,
    path: &str,
    rec: &KeyRecord,
    version: u64,
) -> Result<Map<String, Value>, KvError> {
    if let Some(data) = rec.versions.get(&version).and_then(|v| v.inline.clone()) {
        return Ok(data);
    }
    let key = version_key(path, version);
    match get(store, &key).await? {
        Some(bytes) => decode(&key, &bytes),
        None => Err(KvError::Corrupt {
            key,
            reason: "the version's data record is missing".into(),
        }),
    }
}

/// Delete the data records of versions that were pruned or destroyed (absent ones are no error).
async fn drop_data(store: &dyn Store, path: &str, versions: &[u64]) -> Result<(), KvError> {
    for v in versions {
        let key = version_key(path, *v);
        if let Some(bytes) = get(store, &key).await? {
            let data: Map<String, Value> = decode(&key, &bytes)?;
            index_version(store, path, *v, &data, false).await?;
        }
        store.delete(&key).await?;
    }
    Ok(())
}

/// A deleted or destroyed version: Vault answers 404 and still returns the metadata.
fn gone(data: Value) -> LogicalResponse {
    LogicalResponse {
        data: Some(data),
        status: Some(404),
        ..Default::default()
    }
}

/// Whether a secret exists (for the core's create-vs-update decision on POST/PUT).
pub async fn exists(store: &dyn Store, path: &str) -> Result<bool, KvError> {
    let key = path.split_once('/').map(|(_, rest)| rest).unwrap_or_default();
    if key.is_empty() {
        return Ok(path == CONFIG_KEY);
    }
    if valid_path(key, "").is_err() {
        // The request itself refuses the path.
        return Ok(false);
    }
    Ok(load(store, key).await?.is_some_and(|r| !r.is_empty()))
}

/// Handle one request to a KV v2 mount (`req.path` is relative to the mount).
pub async fn handle(store: &dyn Store, req: &LogicalRequest) -> Result<LogicalResponse, KvError> {
    let now = model::to_nanos(req.now);
    let (section, rest) = req.path.split_once('/').unwrap_or((&req.path, ""));
    let body = &req.data;
    use Operation::*;
    match (section, req.op) {
        ("config", Read) if rest.is_empty() => Ok(LogicalResponse::data(config(store).await?.to_json())),
        ("config", Create | Update) if rest.is_empty() => {
            let mut cfg = config(store).await?;
            cfg.update(body)?;
            let bytes = serde_json::to_vec(&cfg).map_err(|e| KvError::BadRequest(e.to_string()))?;
            store.put(CONFIG_KEY, &bytes).await?;
            Ok(LogicalResponse::no_content())
        }
        ("metadata", List) => list(store, rest).await,
        ("data", Read) => read(store, rest, &req.query, now).await,
        ("data", Create | Update) => write(store, rest, body, false, now).await,
        ("data", Patch) => write(store, rest, body, true, now).await,
        ("data", Delete) => {
            valid_path(rest, "data/")?;
            if let Some(mut rec) = load(store, rest).await? {
                let current = rec.current_version;
                rec.delete_versions(&[current], now);
                save(store, rest, &mut rec).await?;
            }
            Ok(LogicalResponse::no_content())
        }
        ("delete" | "undelete" | "destroy", Create | Update) => {
            valid_path(rest, &format!("{section}/"))?;
            let versions = model::parse_versions(body)?;
            if let Some(mut rec) = load(store, rest).await? {
                match section {
                    "delete" => rec.delete_versions(&versions, now),
                    "undelete" => rec.undelete(&versions, now),
                    _ => drop_data(store, rest, &rec.destroy(&versions, now)).await?,
                }
                save(store, rest, &mut rec).await?;
            }
            Ok(LogicalResponse::no_content())
        }
        ("metadata", Read) => {
            valid_path(rest, "metadata/")?;
            let rec = load(store, rest).await?.ok_or(KvError::NotFound)?;
            let mut meta = rec.metadata_json();
            let key = leaked_key(rest);
            if let (Some(b), Value::Object(m)) = (get(store, &key).await?, &mut meta) {
                let leaked: Leaked = decode(&key, &b)?;
                let list: Vec<Value> = leaked
                    .iter()
                    .map(|(v, at)| json!({"version": v, "reported_at": model::format_time(*at)}))
                    .collect();
                m.insert("leaked".into(), Value::Array(list));
            }
            Ok(LogicalResponse::data(meta))
        }
        ("metadata", Create | Update | Patch) => {
            valid_path(rest, "metadata/")?;
            let cfg = config(store).await?;
            let mut rec = load(store, rest).await?.unwrap_or_default();
            if req.op == Patch && rec.is_empty() && rec.created == 0 {
                return Err(KvError::NotFound);
            }
            let dropped = rec.update_metadata(body, &cfg, now)?;
            drop_data(store, rest, &dropped).await?;
            save(store, rest, &mut rec).await?;
            Ok(LogicalResponse::no_content())
        }
        ("metadata", Delete) => {
            valid_path(rest, "metadata/")?;
            if let Some(rec) = load(store, rest).await? {
                let versions: Vec<u64> = rec.versions.keys().copied().collect();
                drop_data(store, rest, &versions).await?;
                store.delete(&meta_key(rest)).await?;
                store.delete(&leaked_key(rest)).await?;
            }
            Ok(LogicalResponse::no_content())
        }
        ("subkeys", Read) => {
            valid_path(rest, "subkeys/")?;
            let rec = load(store, rest).await?.ok_or(KvError::NotFound)?;
            let version = rec.resolve(query_version(&req.query)?);
            let depth = match req.query.get("depth") {
                Some(d) => d
                    .parse()
                    .map_err(|_| KvError::BadRequest("query `depth` must be a number".into()))?,
                None => 0,
            };
            if rec.is_live(version, now)? {
                let data = read_data(store, rest, &rec, version).await?;
                Ok(LogicalResponse::data(json!({
                    "subkeys": model::subkeys(&data, depth, 1),
                    "metadata": rec.version_metadata(version),
                })))
            } else {
                Ok(gone(
                    json!({"subkeys": null, "metadata": rec.version_metadata(version)}),
                ))
            }
        }
        _ => Err(KvError::Unsupported),
    }
}

async fn read(
    store: &dyn Store,
    path: &str,
    query: &HashMap<String, String>,
    now: model::Nanos,
) -> Result<LogicalResponse, KvError> {
    valid_path(path, "data/")?;
    let rec = load(store, path).await?.ok_or(KvError::NotFound)?;
    let version = rec.resolve(query_version(query)?);
    if version == 0 {
        return Err(KvError::NotFound);
    }
    if rec.is_live(version, now)? {
        let data = read_data(store, path, &rec, version).await?;
        Ok(LogicalResponse::data(
            json!({ "data": data, "metadata": rec.version_metadata(version) }),
        ))
    } else {
        Ok(gone(json!({ "data": null, "metadata": rec.version_metadata(version) })))
    }
}

/// A new version: the whole secret (POST/PUT), or a JSON merge patch onto the current version (PATCH).
async fn write(
    store: &dyn Store,
    path: &str,
    body: &Map<String, Value>,
    patch: bool,
    now: model::Nanos,
) -> Result<LogicalResponse, KvError> {
    valid_path(path, "data/")?;
    let w = DataWrite::parse(body)?;
    let cfg = config(store).await?;
    let mut rec = load(store, path).await?.unwrap_or_default();
    let data = if patch {
        if rec.is_live(rec.current_version, now) != Ok(true) {
            return Err(KvError::NotFound);
        }
        let mut merged = Value::Object(read_data(store, path, &rec, rec.current_version).await?);
        model::merge_patch(&mut merged, &Value::Object(w.data));
        let Value::Object(merged) = merged else {
            return Err(KvError::BadRequest("patch must be an object".into()));
        };
        merged
    } else {
        w.data
    };
    let bytes = model::encode_data(&data, cfg.version_limit())?;
    let (version, dropped) = rec.add_version(w.cas, &cfg, now)?;
    store.put(&version_key(path, version), &bytes).await?;
    index_version(store, path, version, &data, true).await?;
    drop_data(store, path, &dropped).await?;
    save(store, path, &mut rec).await?;
    Ok(LogicalResponse::data(rec.version_metadata(version)))
}

async fn list(store: &dyn Store, prefix: &str) -> Result<LogicalResponse, KvError> {
    no_control(prefix)?;
    let mut p = prefix.trim_start_matches('/').to_string();
    if !p.is_empty() && !p.ends_with('/') {
        p.push('/');
    }
    Ok(LogicalResponse::keys(store.list(&meta_key(&p)).await?)?)
}

/// KV version 1 (a mount with `options.version = "1"`): no versions or metadata, the body is the secret.
/// Entries live under `v1/` so a mount's storage never mixes the two layouts.
pub async fn handle_v1(store: &dyn Store, req: &LogicalRequest) -> Result<LogicalResponse, KvError> {
    let path = req.path.as_str();
    let key = format!("v1/{path}");
    match req.op {
        Operation::List => {
            no_control(path)?;
            let mut p = key.clone();
            if !p.ends_with('/') {
                p.push('/');
            }
            Ok(LogicalResponse::keys(store.list(&p).await?)?)
        }
        Operation::Read => {
            valid_path(path, "")?;
            let bytes = get(store, &key).await?.ok_or(KvError::NotFound)?;
            Ok(LogicalResponse::data(decode::<Value>(&key, &bytes)?))
        }
        Operation::Create | Operation::Update => {
            valid_path(path, "")?;
            if req.data.is_empty() {
                return Err(KvError::BadRequest(
                    "no data provided: send the secret as a JSON object".into(),
                ));
            }
            let bytes = model::encode_data(&req.data, V1_LIMIT)?;
            store.put(&key, &bytes).await?;
            Ok(LogicalResponse::no_content())
        }
        Operation::Delete => {
            valid_path(path, "")?;
            store.delete(&key).await?;
            Ok(LogicalResponse::no_content())
        }
        Operation::Patch => Err(KvError::Unsupported),
    }
}

fn query_version(query: &HashMap<String, String>) -> Result<Option<u64>, KvError> {
    match query.get("version") {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| KvError::BadRequest(format!("query `version` must be a version number, got {v:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::SystemTime;

    use leakstop_storage::{MemoryStorage, Storage, StorageError, TxnOp};

    use super::*;
    use crate::VaultError;
    use crate::barrier::{Barrier, BarrierView};

    const PREFIX: &str = "logical/6f1c0e52-0d2a-4b7e-9c11-3f0a5d7e8b90/";

    /// Memory storage that counts the bytes read and written, so a test can assert what a request costs; it
    /// can also be told to fail.
    #[derive(Default)]
    struct Counting {
        inner: MemoryStorage,
        read: AtomicU64,
        written: AtomicU64,
        fail: AtomicBool,
    }

    impl Counting {
        fn check(&self, key: &str) -> Result<(), StorageError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(StorageError::InvalidKey {
                    key: key.into(),
                    reason: "injected failure".into(),
                });
            }
            Ok(())
        }

        /// (bytes read, bytes written) since the last call.
        fn take(&self) -> (u64, u64) {
            (
                self.read.swap(0, Ordering::SeqCst),
                self.written.swap(0, Ordering::SeqCst),
            )
        }
    }

    impl Storage for Counting {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
            self.check(key)?;
            let v = self.inner.get(key)?;
            let n = v.as_ref().map_or(0, Vec::len) as u64;
            self.read.fetch_add(n, Ordering::SeqCst);
            Ok(v)
        }
        fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
            self.check(key)?;
            self.written.fetch_add(value.len() as u64, Ordering::SeqCst);
            self.inner.put(key, value)
        }
        fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.check(key)?;
            self.inner.delete(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            self.check(prefix)?;
            self.inner.list(prefix)
        }
        fn transaction(&self, ops: &[TxnOp]) -> Result<(), StorageError> {
            for op in ops {
                self.check(op.key())?;
                if let TxnOp::Put(_, v) = op {
                    self.written.fetch_add(v.len() as u64, Ordering::SeqCst);
                }
            }
            self.inner.transaction(ops)
        }
    }

    /// One KV mount over a real barrier (no read cache, so every read reaches the counting storage); each call
    /// commits what the engine buffered, as the core does.
    struct Mount {
        storage: Arc<Counting>,
        barrier: Arc<Barrier>,
    }

    impl Mount {
        fn new() -> Mount {
            let storage = Arc::new(Counting::default());
            let key = leakstop_seal::generate_key();
            let barrier = Barrier::initialize(storage.clone(), &key, 0).unwrap().without_cache();
            storage.take();
            Mount {
                storage,
                barrier: Arc::new(barrier),
            }
        }

        async fn call(&self, op: Operation, path: &str, body: Value) -> Result<LogicalResponse, KvError> {
            self.call_q(op, path, body, &[]).await
        }

        async fn call_q(
            &self,
            op: Operation,
            path: &str,
            body: Value,
            query: &[(&str, &str)],
        ) -> Result<LogicalResponse, KvError> {
            self.run(op, path, body, query, false).await
        }

        async fn run(
            &self,
            op: Operation,
            path: &str,
            body: Value,
            query: &[(&str, &str)],
            v1: bool,
        ) -> Result<LogicalResponse, KvError> {
            let view = BarrierView::new(self.barrier.clone(), PREFIX);
            let req = LogicalRequest {
                op,
                path: path.into(),
                data: body.as_object().cloned().unwrap_or_default(),
                query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                now: SystemTime::now(),
                authenticated: true,
            };
            let r = if v1 {
                handle_v1(&view, &req).await
            } else {
                handle(&view, &req).await
            };
            self.barrier.commit(&view.take_pending()).unwrap();
            r
        }

        /// Where a leak report of `value` points (`path@version`, sorted), committing the flags it sets.
        async fn find(&self, value: &str) -> Vec<String> {
            let view = BarrierView::new(self.barrier.clone(), PREFIX);
            let r = find_leaked(&view, value, model::to_nanos(SystemTime::now()))
                .await
                .unwrap();
            self.barrier.commit(&view.take_pending()).unwrap();
            let mut paths: Vec<String> = r.into_iter().map(|s| format!("{}@{}", s.path, s.version)).collect();
            paths.sort();
            paths
        }

        async fn ok(&self, op: Operation, path: &str, body: Value) -> Value {
            let r = self.call(op, path, body).await.unwrap();
            r.data.unwrap_or(Value::Null)
        }

        /// Every storage key of the mount (relative to it), with the size stored there.
        fn stored(&self) -> Vec<(String, usize)> {
            self.barrier
                .list_recursive(PREFIX)
                .unwrap()
                .into_iter()
                .map(|k| {
                    let n = self.storage.inner.get(&k).unwrap().unwrap().len();
                    (k[PREFIX.len()..].to_string(), n)
                })
                .collect()
        }

        fn keys(&self) -> Vec<String> {
            let mut keys: Vec<String> = self.stored().into_iter().map(|(k, _)| k).collect();
            keys.sort();
            keys
        }

        /// Store a plaintext record under the mount as an earlier release would have.
        fn put_plain(&self, key: &str, value: &[u8]) {
            self.barrier.put(&format!("{PREFIX}{key}"), value).unwrap();
        }

        fn get_plain(&self, key: &str) -> Option<Vec<u8>> {
            self.barrier.get(&format!("{PREFIX}{key}")).unwrap().map(|z| z.to_vec())
        }
    }

    fn bad(r: Result<LogicalResponse, KvError>) -> String {
        match r {
            Err(e @ (KvError::BadRequest(_) | KvError::TooLarge { .. })) => e.to_string(),
            Err(e) => panic!("expected a 400, got {e:?}"),
            Ok(r) => panic!("expected a 400, got {:?}", r.data),
        }
    }

    #[tokio::test]
    async fn write_read_list_and_delete_through_the_router() {
        let m = Mount::new();
        let w = m
            .ok(Operation::Create, "data/app/db", json!({"data": {"pw": "x"}}))
            .await;
        assert_eq!(w["version"], 1);
        m.ok(Operation::Create, "data/app/sub/k", json!({"data": {"a": "b"}}))
            .await;
        let r = m.ok(Operation::Read, "data/app/db", json!({})).await;
        assert_eq!(r["data"]["pw"], "x");
        let l = m.ok(Operation::List, "metadata/app", json!({})).await;
        assert_eq!(l["keys"], json!(["db", "sub/"]));
        let l = m.ok(Operation::List, "metadata/", json!({})).await;
        assert_eq!(l["keys"], json!(["app/"]), "data records are not listed as secrets");
        let d = m.call(Operation::Delete, "data/app/db", json!({})).await.unwrap();
        assert_eq!(d.status, Some(204));
        let r = m.call(Operation::Read, "data/app/db", json!({})).await.unwrap();
        assert_eq!(r.status, Some(404));
        assert_eq!(r.data.unwrap()["data"], Value::Null);
        assert_eq!(
            m.call(Operation::Read, "data/nope", json!({})).await.err(),
            Some(KvError::NotFound)
        );
        m.ok(Operation::Delete, "metadata/app/db", json!({})).await;
        assert_eq!(
            m.call(Operation::Read, "metadata/app/db", json!({})).await.err(),
            Some(KvError::NotFound)
        );
        assert_eq!(
            m.call(Operation::Read, "bogus/x", json!({})).await.err(),
            Some(KvError::Unsupported)
        );
        bad(m.call(Operation::Create, "data/a/../b", json!({"data": {}})).await);
    }

    #[tokio::test]
    async fn a_reported_value_is_found_flagged_and_forgotten_once_destroyed() {
        let m = Mount::new();
        let value = "correct-horse-battery-staple";
        m.ok(
            Operation::Update,
            "data/app/db",
            json!({"data": {"password": value, "port": "5432"}}),
        )
        .await;
        m.ok(
            Operation::Update,
            "data/other",
            json!({"data": {"nested": {"k": [value]}}}),
        )
        .await;
        assert_eq!(m.find(value).await, ["data/app/db@1", "data/other@1"]);
        assert!(m.find("5432").await.is_empty(), "short strings are not indexed");
        assert!(m.find("not-stored-anywhere").await.is_empty());
        let meta = m.ok(Operation::Read, "metadata/app/db", json!({})).await;
        assert_eq!(meta["leaked"][0]["version"], 1, "{meta}");
        assert!(
            !m.keys().iter().any(|k| k.contains(value)),
            "the index holds no value in clear"
        );
        // A new version with another value: the old version still holds the leaked one until destroyed.
        m.ok(
            Operation::Update,
            "data/app/db",
            json!({"data": {"password": "a-fresh-rotated-value"}}),
        )
        .await;
        assert_eq!(m.find(value).await, ["data/app/db@1", "data/other@1"]);
        m.call(Operation::Update, "destroy/app/db", json!({"versions": [1]}))
            .await
            .unwrap();
        m.call(Operation::Delete, "metadata/other", json!({})).await.unwrap();
        assert!(m.find(value).await.is_empty());
        assert_eq!(m.find("a-fresh-rotated-value").await, ["data/app/db@2"]);
        assert!(
            !m.keys().iter().any(|k| k.starts_with("leaked/other")),
            "{:?}",
            m.keys()
        );
    }

    #[tokio::test]
    async fn kv_v1_stores_the_body_as_the_secret() {
        let m = Mount::new();
        let r = m
            .run(Operation::Create, "team/app", json!({"pw": "x"}), &[], true)
            .await
            .unwrap();
        assert_eq!(r.status, Some(204));
        let r = m.run(Operation::Read, "team/app", json!({}), &[], true).await.unwrap();
        assert_eq!(r.data.unwrap(), json!({"pw": "x"}));
        let r = m.run(Operation::List, "team", json!({}), &[], true).await.unwrap();
        assert_eq!(r.data.unwrap()["keys"], json!(["app"]));
        m.run(Operation::Delete, "team/app", json!({}), &[], true)
            .await
            .unwrap();
        assert_eq!(
            m.run(Operation::Read, "team/app", json!({}), &[], true).await.err(),
            Some(KvError::NotFound)
        );
        let big = "x".repeat(V1_LIMIT as usize);
        bad(m
            .run(Operation::Create, "team/big", json!({ "v": big }), &[], true)
            .await);
    }

    #[tokio::test]
    async fn mount_config_applies_to_new_writes() {
        let m = Mount::new();
        m.ok(
            Operation::Update,
            "config",
            json!({"cas_required": "true", "max_versions": "3", "max_version_bytes": 100}),
        )
        .await;
        let cfg = m.ok(Operation::Read, "config", json!({})).await;
        assert_eq!(
            cfg,
            json!({"cas_required": true, "max_versions": 3, "delete_version_after": "0s", "max_version_bytes": 100})
        );
        let err = m
            .call(Operation::Create, "data/k", json!({"data": {"a": 1}}))
            .await
            .unwrap_err();
        assert_eq!(err, KvError::CasRequired);
        let e = bad(m
            .call(
                Operation::Create,
                "data/k",
                json!({"data": {"a": "x".repeat(100)}, "options": {"cas": 0}}),
            )
            .await);
        assert!(e.contains("100 bytes") && e.contains("max_version_bytes"), "{e}");
        bad(m.call(Operation::Update, "config", json!({"max_versions": 1001})).await);
        bad(m.call(Operation::Update, "config", json!({"max_version": 5})).await);
        assert_eq!(
            m.ok(Operation::Read, "config", json!({})).await,
            cfg,
            "refused writes change nothing"
        );
    }

    #[tokio::test]
    async fn oversized_versions_are_refused_before_anything_is_stored() {
        let m = Mount::new();
        m.ok(Operation::Create, "data/k", json!({"data": {"a": "small"}})).await;
        let before = m.stored();
        let big = "x".repeat(model::DEFAULT_MAX_VERSION_BYTES as usize);
        let e = bad(m.call(Operation::Update, "data/k", json!({"data": { "a": big }})).await);
        assert!(e.contains(&model::DEFAULT_MAX_VERSION_BYTES.to_string()), "{e}");
        let e = bad(m.call(Operation::Patch, "data/k", json!({"data": { "b": big }})).await);
        assert!(e.contains("per version"), "{e}");
        assert_eq!(m.stored(), before, "no partial write");
    }

    #[tokio::test]
    async fn each_write_costs_its_own_version_not_the_history() {
        let m = Mount::new();
        const SIZE: usize = 64 * 1024;
        // Room for every version written below: nothing is pruned, the history only grows.
        m.ok(Operation::Update, "metadata/big", json!({"max_versions": 100}))
            .await;
        let mut written = Vec::new();
        for i in 0..60 {
            m.storage.take();
            let value = format!("{i:04}{}", "v".repeat(SIZE));
            m.ok(Operation::Update, "data/big", json!({"data": {"blob": value}}))
                .await;
            let (r, w) = m.storage.take();
            // The new version plus a metadata record of small per-version entries.
            assert!(w < (SIZE + 16 * 1024) as u64, "write {i} wrote {w} bytes");
            assert!(r < 16 * 1024, "write {i} read {r} bytes: it loaded old versions");
            written.push(w);
        }
        let r = m
            .call_q(Operation::Read, "data/big", json!({}), &[("version", "1")])
            .await
            .unwrap();
        assert!(r.data.unwrap()["data"]["blob"].as_str().unwrap().starts_with("0000"));
        let (r, _) = m.storage.take();
        assert!(r < (SIZE + 16 * 1024) as u64, "a read loads one version, not {r} bytes");

        // Lowering max_versions deletes the dropped versions' data: storage holds what is retained, no more.
        m.ok(Operation::Update, "metadata/big", json!({"max_versions": "5"}))
            .await;
        for i in 0..10 {
            m.ok(
                Operation::Update,
                "data/big",
                json!({"data": {"blob": format!("{i}{}", "w".repeat(SIZE))}}),
            )
            .await;
        }
        let stored = m.stored();
        let versions: Vec<&str> = stored
            .iter()
            .filter_map(|(k, _)| k.strip_prefix("version/big/"))
            .collect();
        assert_eq!(versions, ["66", "67", "68", "69", "70"]);
        let total: usize = stored.iter().map(|(_, n)| n).sum();
        assert!(total < 6 * (SIZE + 1024), "storage holds {total} bytes for 5 versions");
    }

    #[tokio::test]
    async fn destroy_and_metadata_delete_remove_the_data_records() {
        let m = Mount::new();
        for i in 1..=3 {
            m.ok(Operation::Update, "data/app", json!({"data": {"n": i}})).await;
        }
        m.ok(Operation::Update, "destroy/app", json!({"versions": "1,2"})).await;
        assert_eq!(m.keys(), ["meta/app", "version/app/3"]);
        let meta = m.ok(Operation::Read, "metadata/app", json!({})).await;
        assert_eq!(meta["versions"]["1"]["destroyed"], true);
        let r = m
            .call_q(Operation::Read, "data/app", json!({}), &[("version", "1")])
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.data.unwrap()["metadata"]["destroyed"].clone()),
            (Some(404), json!(true))
        );
        m.ok(Operation::Delete, "metadata/app", json!({})).await;
        assert!(m.keys().is_empty(), "left behind: {:?}", m.keys());
    }

    #[tokio::test]
    async fn records_in_the_old_single_record_format_read_and_move_out_on_write() {
        let m = Mount::new();
        // Exactly what earlier releases stored at meta/<path>: every version's data inside the record.
        let legacy = br#"{"created":1700000000000000000,"updated":1700000003000000000,"current_version":3,
            "oldest_version":0,"max_versions":0,"cas_required":false,"delete_version_after":0,
            "custom_metadata":{"owner":"ci"},"versions":{
            "1":{"created":1700000000000000000,"deletion":null,"destroyed":false,"data":{"pw":"one","n":{"a":1}}},
            "2":{"created":1700000001000000000,"deletion":null,"destroyed":true,"data":null},
            "3":{"created":1700000002000000000,"deletion":null,"destroyed":false,"data":{"pw":"three"}}}}"#;
        m.put_plain("meta/app/db", legacy);

        assert_eq!(
            m.ok(Operation::Read, "data/app/db", json!({})).await["data"],
            json!({"pw": "three"})
        );
        let one = m
            .call_q(Operation::Read, "data/app/db", json!({}), &[("version", "1")])
            .await
            .unwrap();
        assert_eq!(one.data.unwrap()["data"], json!({"pw": "one", "n": {"a": 1}}));
        let two = m
            .call_q(Operation::Read, "data/app/db", json!({}), &[("version", "2")])
            .await
            .unwrap();
        assert_eq!(two.status, Some(404), "a destroyed version stays destroyed");
        let sub = m
            .call_q(Operation::Read, "subkeys/app/db", json!({}), &[("version", "1")])
            .await
            .unwrap();
        assert_eq!(sub.data.unwrap()["subkeys"], json!({"pw": null, "n": {"a": null}}));
        let meta = m.ok(Operation::Read, "metadata/app/db", json!({})).await;
        assert_eq!(
            (
                meta["current_version"].clone(),
                meta["custom_metadata"]["owner"].clone()
            ),
            (json!(3), json!("ci"))
        );
        assert_eq!(m.keys(), ["meta/app/db"], "reads change nothing");

        // The next write (a patch, which reads the inline current version) moves every version out.
        let w = m
            .ok(Operation::Patch, "data/app/db", json!({"data": {"new": "4"}}))
            .await;
        assert_eq!(w["version"], 4);
        assert_eq!(
            m.keys(),
            [
                "meta/app/db",
                "version/app/db/1",
                "version/app/db/3",
                "version/app/db/4"
            ]
        );
        let rec: Value = serde_json::from_slice(&m.get_plain("meta/app/db").unwrap()).unwrap();
        assert!(
            rec["versions"]
                .as_object()
                .unwrap()
                .values()
                .all(|v| v.get("data").is_none()),
            "the metadata record holds no data any more: {rec}"
        );
        assert_eq!(
            m.ok(Operation::Read, "data/app/db", json!({})).await["data"],
            json!({"pw": "three", "new": "4"})
        );
        let one = m
            .call_q(Operation::Read, "data/app/db", json!({}), &[("version", "1")])
            .await
            .unwrap();
        assert_eq!(one.data.unwrap()["data"], json!({"pw": "one", "n": {"a": 1}}));
    }

    #[tokio::test]
    async fn cli_strings_and_refusals_on_metadata_and_version_endpoints() {
        let m = Mount::new();
        m.ok(
            Operation::Update,
            "metadata/app",
            json!({"max_versions": "5", "cas_required": "true", "delete_version_after": "1h"}),
        )
        .await;
        let meta = m.ok(Operation::Read, "metadata/app", json!({})).await;
        assert_eq!(
            (
                &meta["max_versions"],
                &meta["cas_required"],
                &meta["delete_version_after"]
            ),
            (&json!(5), &json!(true), &json!("1h0m0s"))
        );
        bad(m
            .call(Operation::Update, "metadata/app", json!({"max_versions": "lots"}))
            .await);
        bad(m
            .call(
                Operation::Update,
                "metadata/app",
                json!({"max_versions": 4294967295u64}),
            )
            .await);
        bad(m
            .call(Operation::Update, "metadata/app", json!({"cas_requried": true}))
            .await);
        bad(m
            .call(
                Operation::Patch,
                "metadata/app",
                json!({"delete_version_after": "a while"}),
            )
            .await);
        assert_eq!(
            m.ok(Operation::Read, "metadata/app", json!({})).await["max_versions"],
            5
        );
        m.ok(
            Operation::Update,
            "data/app",
            json!({"data": {"a": 1}, "options": {"cas": "0"}}),
        )
        .await;
        bad(m
            .call(
                Operation::Update,
                "delete/app",
                json!({"versions": [1], "verions": [2]}),
            )
            .await);
        bad(m
            .call(Operation::Update, "undelete/app", json!({"versions": "one"}))
            .await);
    }

    #[tokio::test]
    async fn control_characters_are_a_bad_path_not_a_storage_failure() {
        let m = Mount::new();
        let view = BarrierView::new(m.barrier.clone(), PREFIX);
        assert!(!exists(&view, "data/x\0").await.unwrap());
        for (op, path) in [
            (Operation::Read, "data/x\0"),
            (Operation::Update, "data/x\0"),
            (Operation::Read, "metadata/x\u{1}"),
            (Operation::List, "metadata/x\0/"),
            (Operation::Update, "destroy/x\0"),
        ] {
            let e = bad(m.call(op, path, json!({"data": {"a": 1}, "versions": [1]})).await);
            assert!(e.contains("control characters"), "{e}");
        }
    }

    #[tokio::test]
    async fn storage_failures_reach_the_client_without_storage_keys() {
        let m = Mount::new();
        m.ok(Operation::Update, "data/app/db", json!({"data": {"pw": "x"}}))
            .await;
        let leaks = |e: &VaultError| {
            let msg = e.to_string();
            ["logical/", "6f1c0e52", "meta/", "version/", "app/db"]
                .iter()
                .any(|k| msg.contains(k))
        };

        m.storage.fail.store(true, Ordering::SeqCst);
        let e = m.call(Operation::Read, "data/app/db", json!({})).await.unwrap_err();
        assert!(matches!(&e, KvError::Storage(s) if s.contains("logical/")), "{e:?}");
        let e = VaultError::from(e);
        assert_eq!(e.status(), 500);
        assert!(!leaks(&e), "{e}");
        m.storage.fail.store(false, Ordering::SeqCst);

        // A tampered data record and an undecodable metadata record: integrity and decoding errors alike.
        let key = format!("{PREFIX}version/app/db/1");
        let mut raw = m.storage.inner.get(&key).unwrap().unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        m.storage.inner.put(&key, &raw).unwrap();
        let e = VaultError::from(m.call(Operation::Read, "data/app/db", json!({})).await.unwrap_err());
        assert!(e.status() == 500 && !leaks(&e), "{e}");
        m.put_plain("meta/app/db", b"not json");
        let e = VaultError::from(m.call(Operation::Read, "data/app/db", json!({})).await.unwrap_err());
        assert!(e.status() == 500 && !leaks(&e), "{e}");
    }
}
