//! KV v2 request routing (`config`, `data/`, `metadata/`, `delete/`, `undelete/`, `destroy/`, `subkeys/`) over a
//! small storage trait, so the engine is tested without the service core. The core's barrier view implements
//! [`KvStorage`]; every entry it stores is encrypted there with its storage path as associated data.
//!
//! Layout under the mount: `config` (engine settings) and `meta/<path>` (one [`KeyRecord`]: metadata plus every
//! retained version). Listing `metadata/<prefix>` is a storage listing of `meta/<prefix>`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::time::SystemTime;

use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::model::{self, EngineConfig, KeyRecord, KvError};

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send + 'a>>;

/// What the engine needs from storage: plaintext in, encryption is the implementor's job.
pub trait KvStorage: Send + Sync {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()>;
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;
    /// Vault listing semantics: immediate children of `prefix`, folders with a trailing `/`.
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>>;
}

/// The operations the engine distinguishes (mirrors the core's `Operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOp {
    Read,
    Create,
    Update,
    Delete,
    List,
    Patch,
}

/// The answer: a status (200 with data, 204 without, or 404 with data for a deleted version) and a body.
#[derive(Debug, Clone, PartialEq)]
pub struct KvReply {
    pub status: u16,
    pub data: Option<Value>,
}

impl KvReply {
    fn ok(data: Value) -> Self {
        KvReply {
            status: 200,
            data: Some(data),
        }
    }
    fn no_content() -> Self {
        KvReply {
            status: 204,
            data: None,
        }
    }
}

const STRIPES: usize = 64;
const CONFIG_KEY: &str = "config";

/// One KV v2 mount. Writes to the same secret are serialized (read-modify-write of its record); different secrets
/// proceed in parallel through lock striping, and reads take no lock.
pub struct KvEngine {
    stripes: Vec<Mutex<()>>,
}

impl Default for KvEngine {
    fn default() -> Self {
        KvEngine {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

fn record_key(path: &str) -> String {
    format!("meta/{path}")
}

fn valid_path(path: &str, what: &str) -> Result<(), KvError> {
    if path.is_empty() || path.ends_with('/') {
        return Err(KvError::BadRequest(format!(
            "missing or invalid secret path in `{what}`: name a secret, e.g. {what}my-app/db"
        )));
    }
    if path.split('/').any(|seg| seg == ".." || seg == "." || seg.is_empty()) {
        return Err(KvError::BadRequest(format!(
            "invalid secret path {path:?}: empty, `.` and `..` segments are not allowed"
        )));
    }
    Ok(())
}

impl KvEngine {
    fn stripe(&self, path: &str) -> &Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut h);
        &self.stripes[(h.finish() as usize) % STRIPES]
    }

    async fn config(&self, store: &dyn KvStorage) -> Result<EngineConfig, KvError> {
        match store.get(CONFIG_KEY).await? {
            None => Ok(EngineConfig::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| KvError::Corrupt {
                path: CONFIG_KEY.into(),
                reason: e.to_string(),
            }),
        }
    }

    async fn load(&self, store: &dyn KvStorage, path: &str) -> Result<Option<KeyRecord>, KvError> {
        let key = record_key(path);
        match store.get(&key).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| KvError::Corrupt {
                path: key,
                reason: e.to_string(),
            }),
        }
    }

    async fn save(&self, store: &dyn KvStorage, path: &str, rec: &KeyRecord) -> Result<(), KvError> {
        let bytes = serde_json::to_vec(rec).map_err(|e| KvError::Corrupt {
            path: path.into(),
            reason: e.to_string(),
        })?;
        store.put(&record_key(path), bytes).await
    }

    /// Whether a secret exists (for the core's create-vs-update decision on POST/PUT).
    pub async fn exists(&self, store: &dyn KvStorage, path: &str) -> Result<bool, KvError> {
        let key = path.split_once('/').map(|(_, rest)| rest).unwrap_or_default();
        if key.is_empty() {
            return Ok(path == CONFIG_KEY);
        }
        Ok(self.load(store, key).await?.is_some_and(|r| !r.is_empty()))
    }

    /// Handle one request addressed to `path` (relative to the mount).
    pub async fn handle(
        &self,
        store: &dyn KvStorage,
        op: KvOp,
        path: &str,
        body: &Map<String, Value>,
        query: &HashMap<String, String>,
        now: SystemTime,
    ) -> Result<KvReply, KvError> {
        let now = model::to_nanos(now);
        let (section, rest) = path.split_once('/').unwrap_or((path, ""));
        use KvOp::*;
        match (section, op) {
            ("config", Read) if rest.is_empty() => Ok(KvReply::ok(self.config(store).await?.to_json())),
            ("config", Create | Update) if rest.is_empty() => {
                let _guard = self.stripe(CONFIG_KEY).lock().await;
                let mut cfg = self.config(store).await?;
                cfg.update(body)?;
                let bytes = serde_json::to_vec(&cfg).map_err(|e| KvError::BadRequest(e.to_string()))?;
                store.put(CONFIG_KEY, bytes).await?;
                Ok(KvReply::no_content())
            }
            ("metadata", List) => self.list(store, rest).await,
            ("data", Read) => self.read(store, rest, query, now).await,
            ("data", Create | Update) => self.modify(store, rest, |rec, cfg| rec.write(body, cfg, now)).await,
            ("data", Patch) => self.modify(store, rest, |rec, cfg| rec.patch(body, cfg, now)).await,
            ("data", Delete) => {
                valid_path(rest, "data/")?;
                let _guard = self.stripe(rest).lock().await;
                if let Some(mut rec) = self.load(store, rest).await? {
                    let current = rec.current_version;
                    rec.delete_versions(&[current], now);
                    self.save(store, rest, &rec).await?;
                }
                Ok(KvReply::no_content())
            }
            ("delete" | "undelete" | "destroy", Create | Update) => {
                valid_path(rest, &format!("{section}/"))?;
                let versions = model::parse_versions(body)?;
                let _guard = self.stripe(rest).lock().await;
                if let Some(mut rec) = self.load(store, rest).await? {
                    match section {
                        "delete" => rec.delete_versions(&versions, now),
                        "undelete" => rec.undelete(&versions, now),
                        _ => rec.destroy(&versions, now),
                    }
                    self.save(store, rest, &rec).await?;
                }
                Ok(KvReply::no_content())
            }
            ("metadata", Read) => {
                valid_path(rest, "metadata/")?;
                match self.load(store, rest).await? {
                    Some(rec) => Ok(KvReply::ok(rec.metadata_json())),
                    None => Err(KvError::NotFound),
                }
            }
            ("metadata", Create | Update | Patch) => {
                valid_path(rest, "metadata/")?;
                let cfg = self.config(store).await?;
                let _guard = self.stripe(rest).lock().await;
                let mut rec = self.load(store, rest).await?.unwrap_or_default();
                if op == Patch && rec.is_empty() && rec.created == 0 {
                    return Err(KvError::NotFound);
                }
                rec.update_metadata(body, &cfg, now)?;
                self.save(store, rest, &rec).await?;
                Ok(KvReply::no_content())
            }
            ("metadata", Delete) => {
                valid_path(rest, "metadata/")?;
                let _guard = self.stripe(rest).lock().await;
                store.delete(&record_key(rest)).await?;
                Ok(KvReply::no_content())
            }
            ("subkeys", Read) => {
                let rec = self.load(store, rest).await?.ok_or(KvError::NotFound)?;
                let version = rec.resolve(query_version(query)?);
                let depth = match query.get("depth") {
                    Some(d) => d
                        .parse()
                        .map_err(|_| KvError::BadRequest("query `depth` must be a number".into()))?,
                    None => 0,
                };
                match rec.read(version, now)? {
                    Some(data) => Ok(KvReply::ok(json!({
                        "subkeys": model::subkeys(data, depth, 1),
                        "metadata": rec.version_metadata(version),
                    }))),
                    None => Ok(KvReply {
                        status: 404,
                        data: Some(json!({"subkeys": null, "metadata": rec.version_metadata(version)})),
                    }),
                }
            }
            _ => Err(KvError::Unsupported),
        }
    }

    async fn read(
        &self,
        store: &dyn KvStorage,
        path: &str,
        query: &HashMap<String, String>,
        now: i128,
    ) -> Result<KvReply, KvError> {
        valid_path(path, "data/")?;
        let rec = self.load(store, path).await?.ok_or(KvError::NotFound)?;
        let version = rec.resolve(query_version(query)?);
        if version == 0 {
            return Err(KvError::NotFound);
        }
        match rec.read(version, now)? {
            Some(data) => Ok(KvReply::ok(
                json!({ "data": data, "metadata": rec.version_metadata(version) }),
            )),
            // Vault: a deleted or destroyed version is a 404 that still carries its metadata.
            None => Ok(KvReply {
                status: 404,
                data: Some(json!({ "data": null, "metadata": rec.version_metadata(version) })),
            }),
        }
    }

    async fn modify(
        &self,
        store: &dyn KvStorage,
        path: &str,
        f: impl FnOnce(&mut KeyRecord, &EngineConfig) -> Result<u64, KvError>,
    ) -> Result<KvReply, KvError> {
        valid_path(path, "data/")?;
        let cfg = self.config(store).await?;
        let _guard = self.stripe(path).lock().await;
        let mut rec = self.load(store, path).await?.unwrap_or_default();
        let version = f(&mut rec, &cfg)?;
        self.save(store, path, &rec).await?;
        Ok(KvReply::ok(rec.version_metadata(version)))
    }

    async fn list(&self, store: &dyn KvStorage, prefix: &str) -> Result<KvReply, KvError> {
        let mut p = prefix.trim_start_matches('/').to_string();
        if !p.is_empty() && !p.ends_with('/') {
            p.push('/');
        }
        let keys = store.list(&record_key(&p)).await?;
        if keys.is_empty() {
            return Err(KvError::NotFound);
        }
        Ok(KvReply::ok(json!({ "keys": keys })))
    }
}

/// KV version 1 (a mount with `options.version = "1"`): no versions or metadata, the body is the secret.
/// Entries live under `v1/` so a mount's storage never mixes the two layouts.
pub async fn handle_v1(
    store: &dyn KvStorage,
    op: KvOp,
    path: &str,
    body: &Map<String, Value>,
) -> Result<KvReply, KvError> {
    let key = format!("v1/{path}");
    match op {
        KvOp::List => {
            let mut p = key.clone();
            if !p.ends_with('/') {
                p.push('/');
            }
            let keys = store.list(&p).await?;
            if keys.is_empty() {
                Err(KvError::NotFound)
            } else {
                Ok(KvReply::ok(json!({ "keys": keys })))
            }
        }
        KvOp::Read => {
            valid_path(path, "")?;
            let bytes = store.get(&key).await?.ok_or(KvError::NotFound)?;
            let data: Value = serde_json::from_slice(&bytes).map_err(|e| KvError::Corrupt {
                path: key,
                reason: e.to_string(),
            })?;
            Ok(KvReply::ok(data))
        }
        KvOp::Create | KvOp::Update => {
            valid_path(path, "")?;
            if body.is_empty() {
                return Err(KvError::BadRequest(
                    "no data provided: send the secret as a JSON object".into(),
                ));
            }
            let bytes = serde_json::to_vec(body).map_err(|e| KvError::BadRequest(e.to_string()))?;
            store.put(&key, bytes).await?;
            Ok(KvReply::no_content())
        }
        KvOp::Delete => {
            valid_path(path, "")?;
            store.delete(&key).await?;
            Ok(KvReply::no_content())
        }
        KvOp::Patch => Err(KvError::Unsupported),
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
    use std::collections::BTreeMap;
    use std::sync::Mutex as StdMutex;

    use super::*;

    #[derive(Default)]
    struct Mem(StdMutex<BTreeMap<String, Vec<u8>>>);

    impl KvStorage for Mem {
        fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
            Box::pin(async move { Ok(self.0.lock().unwrap().get(key).cloned()) })
        }
        fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
            Box::pin(async move {
                self.0.lock().unwrap().insert(key.to_string(), value);
                Ok(())
            })
        }
        fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
            Box::pin(async move {
                self.0.lock().unwrap().remove(key);
                Ok(())
            })
        }
        fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>> {
            Box::pin(async move {
                let mut out: Vec<String> = Vec::new();
                for k in self.0.lock().unwrap().keys() {
                    if let Some(rest) = k.strip_prefix(prefix) {
                        let item = match rest.find('/') {
                            Some(i) => rest[..=i].to_string(),
                            None => rest.to_string(),
                        };
                        if out.last() != Some(&item) && !out.contains(&item) {
                            out.push(item);
                        }
                    }
                }
                out.sort();
                Ok(out)
            })
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    async fn call(e: &KvEngine, s: &Mem, op: KvOp, path: &str, body: Value) -> Result<KvReply, KvError> {
        e.handle(s, op, path, &obj(body), &HashMap::new(), SystemTime::now())
            .await
    }

    #[tokio::test]
    async fn write_read_list_and_delete_through_the_router() {
        let (e, s) = (KvEngine::default(), Mem::default());
        let w = call(&e, &s, KvOp::Create, "data/app/db", json!({"data": {"pw": "x"}}))
            .await
            .unwrap();
        assert_eq!(w.data.unwrap()["version"], 1);
        call(&e, &s, KvOp::Create, "data/app/sub/k", json!({"data": {"a": "b"}}))
            .await
            .unwrap();
        let r = call(&e, &s, KvOp::Read, "data/app/db", json!({})).await.unwrap();
        assert_eq!(r.data.unwrap()["data"]["pw"], "x");
        let l = call(&e, &s, KvOp::List, "metadata/app", json!({})).await.unwrap();
        assert_eq!(l.data.unwrap()["keys"], json!(["db", "sub/"]));
        assert_eq!(
            call(&e, &s, KvOp::List, "metadata/", json!({}))
                .await
                .unwrap()
                .data
                .unwrap()["keys"],
            json!(["app/"])
        );
        assert_eq!(
            call(&e, &s, KvOp::Delete, "data/app/db", json!({}))
                .await
                .unwrap()
                .status,
            204
        );
        let r = call(&e, &s, KvOp::Read, "data/app/db", json!({})).await.unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.data.unwrap()["data"], Value::Null);
        assert_eq!(
            call(&e, &s, KvOp::Read, "data/nope", json!({})).await,
            Err(KvError::NotFound)
        );
        call(&e, &s, KvOp::Delete, "metadata/app/db", json!({})).await.unwrap();
        assert_eq!(
            call(&e, &s, KvOp::Read, "metadata/app/db", json!({})).await,
            Err(KvError::NotFound)
        );
        assert_eq!(
            call(&e, &s, KvOp::Read, "bogus/x", json!({})).await,
            Err(KvError::Unsupported)
        );
        assert!(matches!(
            call(&e, &s, KvOp::Create, "data/a/../b", json!({"data": {}})).await,
            Err(KvError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn concurrent_writers_to_one_secret_get_distinct_versions() {
        let (e, s) = (
            std::sync::Arc::new(KvEngine::default()),
            std::sync::Arc::new(Mem::default()),
        );
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (e, s) = (e.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                call(&e, &s, KvOp::Update, "data/hot", json!({"data": {"i": i}}))
                    .await
                    .unwrap()
                    .data
                    .unwrap()["version"]
                    .as_u64()
                    .unwrap()
            }));
        }
        let mut versions = Vec::new();
        for t in tasks {
            versions.push(t.await.unwrap());
        }
        versions.sort();
        assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn kv_v1_stores_the_body_as_the_secret() {
        let s = Mem::default();
        let r = handle_v1(&s, KvOp::Create, "team/app", &obj(json!({"pw": "x"})))
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(
            handle_v1(&s, KvOp::Read, "team/app", &Map::new())
                .await
                .unwrap()
                .data
                .unwrap(),
            json!({"pw": "x"})
        );
        assert_eq!(
            handle_v1(&s, KvOp::List, "team", &Map::new())
                .await
                .unwrap()
                .data
                .unwrap()["keys"],
            json!(["app"])
        );
        handle_v1(&s, KvOp::Delete, "team/app", &Map::new()).await.unwrap();
        assert_eq!(
            handle_v1(&s, KvOp::Read, "team/app", &Map::new()).await,
            Err(KvError::NotFound)
        );
    }

    #[tokio::test]
    async fn mount_config_applies_to_new_writes() {
        let (e, s) = (KvEngine::default(), Mem::default());
        call(
            &e,
            &s,
            KvOp::Update,
            "config",
            json!({"cas_required": true, "max_versions": 3}),
        )
        .await
        .unwrap();
        let cfg = call(&e, &s, KvOp::Read, "config", json!({}))
            .await
            .unwrap()
            .data
            .unwrap();
        assert_eq!(
            cfg,
            json!({"cas_required": true, "max_versions": 3, "delete_version_after": "0s"})
        );
        let err = call(&e, &s, KvOp::Create, "data/k", json!({"data": {"a": 1}}))
            .await
            .unwrap_err();
        assert_eq!(err, KvError::CasRequired);
    }
}
