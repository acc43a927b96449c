use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use crate::{Storage, StorageError, TxnOp, check_key, immediate_children};

/// An in-memory backend: for dev mode and tests. Nothing survives the process.
#[derive(Default)]
pub struct MemoryStorage {
    map: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is one insert/remove
        // or a pre-validated batch), so a poisoned lock is safe to keep using.
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("entries", &self.read().len())
            .finish()
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        Ok(self.read().get(key).cloned())
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        self.write().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.write().remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let map = self.read();
        let keys = map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .map(|(k, _)| k.as_str())
            .take_while(|k| k.starts_with(prefix));
        Ok(immediate_children(prefix, keys))
    }

    fn transaction(&self, ops: &[TxnOp]) -> Result<(), StorageError> {
        // Validate everything first so the batch is all-or-nothing.
        for op in ops {
            check_key(op.key())?;
        }
        let mut map = self.write();
        for op in ops {
            match op {
                TxnOp::Put(k, v) => {
                    map.insert(k.clone(), v.clone());
                }
                TxnOp::Delete(k) => {
                    map.remove(k);
                }
            }
        }
        Ok(())
    }
}
