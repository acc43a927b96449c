//! The barrier: every entry the service stores is AES-256-GCM encrypted with its storage path as associated data,
//! under a keyring of term-numbered data keys. The keyring itself is encrypted under the root key, and the root key
//! is wrapped by the seal (HSM, Shamir or dev), so storage alone never yields a secret.
//!
//! Entry layout: `0x01 || term (u32 BE) || 12-byte nonce || ciphertext+tag`. Binding the path as AAD means an entry
//! copied to another path fails to decrypt instead of being served as the other path's data.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use leakstop_storage::{Storage, TxnOp};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::engine::{BackendFuture, Store};
use leakstop_seal::generate_key as new_key;

const ENTRY_VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + 12;
/// Where the keyring lives, encrypted under the root key (not under itself).
pub const KEYRING_PATH: &str = "core/keyring";

/// One data key of the keyring.
struct Term {
    cipher: Aes256Gcm,
    key: Zeroizing<Vec<u8>>,
    installed: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredKeyring {
    active: u32,
    keys: Vec<StoredTerm>,
}

#[derive(Serialize, Deserialize)]
struct StoredTerm {
    term: u32,
    key: String,
    installed: i64,
}

impl Drop for StoredTerm {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

struct Keyring {
    terms: BTreeMap<u32, Term>,
    active: u32,
}

fn term_of(key: Zeroizing<Vec<u8>>, installed: i64) -> Result<Term, VaultError> {
    let cipher =
        Aes256Gcm::new_from_slice(&key).map_err(|_| VaultError::Internal("data key is not 32 bytes".into()))?;
    Ok(Term { cipher, key, installed })
}

fn seal_bytes(cipher: &Aes256Gcm, term: u32, path: &str, plain: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: path.as_bytes(),
            },
        )
        .map_err(|_| VaultError::Internal("encryption failed".into()))?;
    let mut out = Vec::with_capacity(HEADER + ct.len());
    out.push(ENTRY_VERSION);
    out.extend_from_slice(&term.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// The entry's term and nonce, and its ciphertext.
fn split_entry<'b>(path: &str, blob: &'b [u8]) -> Result<(u32, [u8; 12], &'b [u8]), VaultError> {
    let bad = || VaultError::Integrity(path.into());
    let (&version, rest) = blob.split_first().ok_or_else(bad)?;
    let (term, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let (nonce, ct) = rest.split_first_chunk::<12>().ok_or_else(bad)?;
    if version != ENTRY_VERSION || ct.len() < 16 {
        return Err(bad());
    }
    Ok((u32::from_be_bytes(*term), *nonce, ct))
}

fn open_bytes(cipher: &Aes256Gcm, path: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let (_, nonce, ct) = split_entry(path, blob)?;
    cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: ct,
                aad: path.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| VaultError::Integrity(path.into()))
}

/// The unsealed barrier over a storage backend.
pub struct Barrier {
    storage: Arc<dyn Storage>,
    root: Aes256Gcm,
    keyring: RwLock<Keyring>,
    cache: ReadCache,
    /// The key of [`Barrier::keyed_hash`], loaded (or created) on first use, under `index_key_init`.
    index_key: std::sync::OnceLock<Zeroizing<Vec<u8>>>,
    index_key_init: std::sync::Mutex<()>,
}

/// Where the key of [`Barrier::keyed_hash`] lives.
pub const INDEX_KEY_PATH: &str = "core/leak-index-key";

/// Entries most recently read or written, as stored (encrypted: a hit is still decrypted and its AAD checked).
/// The server is the storage's only writer, so every write passes here and keeps the cache exact; a write epoch
/// stops a read that raced a write from caching the older value. Bounded: when full it starts over.
struct ReadCache {
    map: RwLock<std::collections::HashMap<String, Arc<[u8]>>>,
    epoch: std::sync::atomic::AtomicU64,
    capacity: usize,
}

/// Entries kept by the read cache (a full cache is emptied and refills with what is read next).
const READ_CACHE_ENTRIES: usize = 64 * 1024;

impl ReadCache {
    fn new(capacity: usize) -> ReadCache {
        ReadCache {
            map: RwLock::default(),
            epoch: Default::default(),
            capacity,
        }
    }

    fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        if self.capacity == 0 {
            return None;
        }
        self.map.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Cache what a read found, unless a write happened since the read began.
    fn fill(&self, key: &str, blob: &[u8], epoch_before: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch() != epoch_before {
            return;
        }
        self.insert(&mut m, key, blob);
    }

    /// Insert into a held map, starting over when it is full.
    fn insert(&self, m: &mut std::collections::HashMap<String, Arc<[u8]>>, key: &str, blob: &[u8]) {
        if m.len() >= self.capacity {
            m.clear();
        }
        m.insert(key.to_string(), Arc::from(blob));
    }

    /// After a write: the new value (or its absence) replaces whatever was cached.
    fn written(&self, key: &str, blob: Option<&[u8]>) {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match blob {
            Some(b) if self.capacity > 0 => self.insert(&mut m, key, b),
            _ => {
                m.remove(key);
            }
        }
    }
}

/// Key status for `sys/key-status`.
pub struct KeyStatus {
    pub term: u32,
    pub installed: i64,
    pub encryptions_hint: usize,
}

/// Storage calls block (SQLite, group commit); run them without stalling the async workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Barrier {
    /// Create a fresh keyring (term 1) under `root_key` and store it. Used by `init`.
    pub fn initialize(storage: Arc<dyn Storage>, root_key: &[u8], now: i64) -> Result<Barrier, VaultError> {
        let root =
            Aes256Gcm::new_from_slice(root_key).map_err(|_| VaultError::Internal("root key is not 32 bytes".into()))?;
        let mut terms = BTreeMap::new();
        terms.insert(1, term_of(new_key(), now)?);
        let b = Barrier {
            storage,
            root,
            keyring: RwLock::new(Keyring { terms, active: 1 }),
            cache: ReadCache::new(READ_CACHE_ENTRIES),
            index_key: Default::default(),
            index_key_init: Default::default(),
        };
        b.persist_keyring()?;
        Ok(b)
    }

    /// Open the stored keyring with `root_key`. A wrong root key or a tampered keyring is an integrity error.
    pub fn unseal(storage: Arc<dyn Storage>, root_key: &[u8]) -> Result<Barrier, VaultError> {
        let root =
            Aes256Gcm::new_from_slice(root_key).map_err(|_| VaultError::Internal("root key is not 32 bytes".into()))?;
        let blob = blocking(|| storage.get(KEYRING_PATH))?.ok_or(VaultError::NotInitialized)?;
        let plain = open_bytes(&root, KEYRING_PATH, &blob)?;
        let stored: StoredKeyring = serde_json::from_slice(&plain)?;
        let mut terms = BTreeMap::new();
        for t in &stored.keys {
            let key = Zeroizing::new(
                B64.decode(&t.key)
                    .map_err(|_| VaultError::Integrity(KEYRING_PATH.into()))?,
            );
            terms.insert(t.term, term_of(key, t.installed)?);
        }
        if !terms.contains_key(&stored.active) {
            return Err(VaultError::Integrity(KEYRING_PATH.into()));
        }
        Ok(Barrier {
            storage,
            root,
            keyring: RwLock::new(Keyring {
                terms,
                active: stored.active,
            }),
            cache: ReadCache::new(READ_CACHE_ENTRIES),
            index_key: Default::default(),
            index_key_init: Default::default(),
        })
    }

    fn persist_keyring(&self) -> Result<(), VaultError> {
        let ring = self.keyring.read().unwrap_or_else(|e| e.into_inner());
        self.persist(&ring)
    }

    fn persist(&self, ring: &Keyring) -> Result<(), VaultError> {
        let stored = StoredKeyring {
            active: ring.active,
            keys: ring
                .terms
                .iter()
                .map(|(n, t)| StoredTerm {
                    term: *n,
                    key: B64.encode(&t.key[..]),
                    installed: t.installed,
                })
                .collect(),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&stored)?);
        let blob = seal_bytes(&self.root, 0, KEYRING_PATH, &plain)?;
        blocking(|| self.storage.put(KEYRING_PATH, &blob))?;
        Ok(())
    }

    /// `sys/rotate`: add a new term and make it active; entries written under older terms stay readable.
    ///
    /// The new term is stored before anything is encrypted under it (the write lock is held throughout): a
    /// failed write leaves the old term active, never entries sealed under a key that a restart would not know.
    pub fn rotate(&self, now: i64) -> Result<KeyStatus, VaultError> {
        {
            let mut ring = self.keyring.write().unwrap_or_else(|e| e.into_inner());
            let (previous, next) = (ring.active, ring.active + 1);
            ring.terms.insert(next, term_of(new_key(), now)?);
            ring.active = next;
            if let Err(e) = self.persist(&ring) {
                ring.terms.remove(&next);
                ring.active = previous;
                return Err(e);
            }
        }
        Ok(self.key_status())
    }

    pub fn key_status(&self) -> KeyStatus {
        let ring = self.keyring.read().unwrap_or_else(|e| e.into_inner());
        KeyStatus {
            term: ring.active,
            installed: ring.terms.get(&ring.active).map_or(0, |t| t.installed),
            encryptions_hint: 0,
        }
    }

    pub fn encrypt(&self, path: &str, plain: &[u8]) -> Result<Vec<u8>, VaultError> {
        let ring = self.keyring.read().unwrap_or_else(|e| e.into_inner());
        let term = ring
            .terms
            .get(&ring.active)
            .ok_or_else(|| VaultError::Internal("the keyring has no active term".into()))?;
        seal_bytes(&term.cipher, ring.active, path, plain)
    }

    pub fn decrypt(&self, path: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let (term, _, _) = split_entry(path, blob)?;
        let ring = self.keyring.read().unwrap_or_else(|e| e.into_inner());
        let t = ring
            .terms
            .get(&term)
            .ok_or_else(|| VaultError::Integrity(path.into()))?;
        open_bytes(&t.cipher, path, blob)
    }

    /// Turn the read cache off (for tests that modify storage behind the barrier's back).
    pub fn without_cache(mut self) -> Barrier {
        self.cache = ReadCache::new(0);
        self
    }

    /// HMAC-SHA256 of `value` (lowercase hex) under a key that lives in the barrier: an index can find a value by
    /// it without storing the value, and nobody without the key can test a guess against the index. The key is
    /// created on first use, under a lock, so two first users cannot create two keys; later calls take no lock.
    pub fn keyed_hash(&self, value: &[u8]) -> Result<String, VaultError> {
        use hmac::{Hmac, Mac};
        let key = match self.index_key.get() {
            Some(k) => k,
            None => {
                let _init = self.index_key_init.lock().unwrap_or_else(|e| e.into_inner());
                match self.index_key.get() {
                    Some(k) => k,
                    None => {
                        let k = match self.get(INDEX_KEY_PATH)? {
                            Some(k) => k,
                            None => {
                                let k = new_key();
                                self.put(INDEX_KEY_PATH, &k)?;
                                k
                            }
                        };
                        self.index_key.get_or_init(|| k)
                    }
                }
            }
        };
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
            .map_err(|_| VaultError::Internal("the index key is unusable".into()))?;
        mac.update(value);
        Ok(crate::audit::hash::prefixed_hex("", &mac.finalize().into_bytes()))
    }

    pub fn get(&self, path: &str) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        if let Some(blob) = self.cache.get(path) {
            return self.decrypt(path, &blob).map(Some);
        }
        let epoch = self.cache.epoch();
        match blocking(|| self.storage.get(path))? {
            None => Ok(None),
            Some(blob) => {
                let plain = self.decrypt(path, &blob)?;
                self.cache.fill(path, &blob, epoch);
                Ok(Some(plain))
            }
        }
    }

    pub fn put(&self, path: &str, plain: &[u8]) -> Result<(), VaultError> {
        let blob = self.encrypt(path, plain)?;
        let r = blocking(|| self.storage.put(path, &blob));
        // Success or not, the cache must not keep a value storage may no longer hold.
        self.cache.written(path, r.is_ok().then_some(&blob[..]));
        r?;
        Ok(())
    }

    pub fn delete(&self, path: &str) -> Result<(), VaultError> {
        let r = blocking(|| self.storage.delete(path));
        self.cache.written(path, None);
        r?;
        Ok(())
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        Ok(blocking(|| self.storage.list(prefix))?)
    }

    /// Apply plaintext puts and deletes atomically (all encrypted first).
    pub fn commit(&self, ops: &[BufferedOp]) -> Result<(), VaultError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut txn = Vec::with_capacity(ops.len());
        for op in ops {
            txn.push(match op {
                BufferedOp::Put(k, v) => TxnOp::Put(k.clone(), self.encrypt(k, v)?),
                BufferedOp::Delete(k) => TxnOp::Delete(k.clone()),
            });
        }
        let r = blocking(|| self.storage.transaction(&txn));
        for op in &txn {
            match (op, r.is_ok()) {
                (TxnOp::Put(k, v), true) => self.cache.written(k, Some(v)),
                _ => self.cache.written(op.key(), None),
            }
        }
        r?;
        Ok(())
    }

    /// Every key under `prefix`, recursively (for unmounting).
    pub fn list_recursive(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        let mut out = Vec::new();
        let mut stack = vec![prefix.to_string()];
        while let Some(p) = stack.pop() {
            for k in self.list(&p)? {
                let full = format!("{p}{k}");
                if k.ends_with('/') {
                    stack.push(full);
                } else {
                    out.push(full);
                }
            }
        }
        Ok(out)
    }

    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>, VaultError> {
        match self.get(path)? {
            None => Ok(None),
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
        }
    }

    pub fn put_json<T: Serialize>(&self, path: &str, v: &T) -> Result<(), VaultError> {
        let bytes = Zeroizing::new(serde_json::to_vec(v)?);
        self.put(path, &bytes)
    }
}

/// A write held back until the request's response is audited (see [`BarrierView`]).
#[derive(Clone)]
pub enum BufferedOp {
    Put(String, Zeroizing<Vec<u8>>),
    Delete(String),
}

impl BufferedOp {
    pub fn key(&self) -> &str {
        match self {
            BufferedOp::Put(k, _) | BufferedOp::Delete(k) => k,
        }
    }
}

/// An engine's window on the barrier: its keys live under `prefix`. Writes are buffered in the view and committed
/// by the core in one transaction once the response is audited, so a request refused for audit changes nothing;
/// reads see the view's own buffered writes.
pub struct BarrierView {
    barrier: Arc<Barrier>,
    prefix: String,
    pending: std::sync::Mutex<Vec<BufferedOp>>,
}

impl BarrierView {
    pub fn new(barrier: Arc<Barrier>, prefix: impl Into<String>) -> BarrierView {
        BarrierView {
            barrier,
            prefix: prefix.into(),
            pending: Default::default(),
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// `key`'s full name, with any write of it buffered by this request dropped: a `*_now` write supersedes it.
    fn drop_pending(&self, key: &str) -> String {
        let full = self.full(key);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|op| op.key() != full);
        full
    }

    /// Take the buffered writes (the core commits them).
    pub fn take_pending(&self) -> Vec<BufferedOp> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Store for BarrierView {
    /// This request's own pending write first, then the barrier.
    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        Box::pin(async move {
            let full = self.full(key);
            {
                let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(op) = pending.iter().rev().find(|op| op.key() == full) {
                    return Ok(match op {
                        BufferedOp::Put(_, v) => Some(v.clone()),
                        BufferedOp::Delete(_) => None,
                    });
                }
            }
            self.barrier.get(&full)
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let op = BufferedOp::Put(self.full(key), Zeroizing::new(value.to_vec()));
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(op);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let op = BufferedOp::Delete(self.full(key));
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(op);
            Ok(())
        })
    }

    /// Committed keys only (buffered writes of the same request are not listed).
    fn list<'a>(&'a self, prefix: &'a str) -> BackendFuture<'a, Vec<String>> {
        Box::pin(async move { self.barrier.list(&self.full(prefix)) })
    }

    fn put_now<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let full = self.drop_pending(key);
            self.barrier.put(&full, value)
        })
    }

    fn delete_now<'a>(&'a self, key: &'a str) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let full = self.drop_pending(key);
            self.barrier.delete(&full)
        })
    }

    /// One key for every mount: a reported value is looked up once, whichever mount holds it.
    fn keyed_hash(&self, value: &[u8]) -> Result<String, VaultError> {
        self.barrier.keyed_hash(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakstop_storage::MemoryStorage;

    fn fresh() -> (Arc<dyn Storage>, Vec<u8>, Barrier) {
        let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let root = new_key().to_vec();
        let b = Barrier::initialize(s.clone(), &root, 0).unwrap().without_cache();
        (s, root, b)
    }

    #[test]
    fn round_trip_and_no_plaintext_in_storage() {
        let (s, _, b) = fresh();
        b.put("logical/x/secret", b"hunter2-value").unwrap();
        assert_eq!(&b.get("logical/x/secret").unwrap().unwrap()[..], b"hunter2-value");
        let raw = s.get("logical/x/secret").unwrap().unwrap();
        assert!(!raw.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn a_flipped_byte_or_a_moved_entry_is_an_integrity_error() {
        let (s, _, b) = fresh();
        b.put("a/one", b"value").unwrap();
        let mut raw = s.get("a/one").unwrap().unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        s.put("a/one", &raw).unwrap();
        assert!(matches!(b.get("a/one"), Err(VaultError::Integrity(p)) if p == "a/one"));
        b.put("a/two", b"value").unwrap();
        let moved = s.get("a/two").unwrap().unwrap();
        s.put("a/three", &moved).unwrap();
        assert!(matches!(b.get("a/three"), Err(VaultError::Integrity(_))));
    }

    #[test]
    fn rotation_keeps_old_entries_readable_and_survives_unseal() {
        let (s, root, b) = fresh();
        b.put("old", b"1").unwrap();
        assert_eq!(b.rotate(1).unwrap().term, 2);
        b.put("new", b"2").unwrap();
        let again = Barrier::unseal(s.clone(), &root).unwrap().without_cache();
        assert_eq!(again.key_status().term, 2);
        assert_eq!(&again.get("old").unwrap().unwrap()[..], b"1");
        assert_eq!(&again.get("new").unwrap().unwrap()[..], b"2");
        assert_eq!(s.get("new").unwrap().unwrap()[4], 2, "new entries use the new term");
        let wrong = new_key();
        assert!(matches!(Barrier::unseal(s, &wrong), Err(VaultError::Integrity(_))));
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use leakstop_storage::MemoryStorage;

    #[test]
    fn the_read_cache_follows_every_write_and_is_bounded() {
        let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let root = new_key().to_vec();
        let b = Barrier::initialize(s.clone(), &root, 0).unwrap();
        b.put("k", b"one").unwrap();
        assert_eq!(&b.get("k").unwrap().unwrap()[..], b"one");
        b.commit(&[BufferedOp::Put("k".into(), Zeroizing::new(b"two".to_vec()))])
            .unwrap();
        assert_eq!(
            &b.get("k").unwrap().unwrap()[..],
            b"two",
            "a committed write replaces the cached value"
        );
        b.commit(&[BufferedOp::Delete("k".into())]).unwrap();
        assert!(b.get("k").unwrap().is_none(), "a delete removes it");
        // A read that raced a write does not cache the older value.
        let c = ReadCache::new(4);
        let before = c.epoch();
        c.written("x", Some(b"new"));
        c.fill("x", b"old", before);
        assert_eq!(&c.get("x").unwrap()[..], b"new");
        for i in 0..10 {
            c.fill(&format!("k{i}"), b"v", c.epoch());
        }
        assert!(c.map.read().unwrap().len() <= 4, "bounded");
    }
}
