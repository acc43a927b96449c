//! Replacing sensitive values by `hmac-sha256:<hex>` (Vault's audit format). The key lives in the barrier, so an
//! operator holding a candidate value can confirm it appears in the log (`sys/audit-hash`) but nobody reading the
//! log learns the value.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use zeroize::Zeroizing;

pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// `prefix` followed by `bytes` in lowercase hex. `hex::encode` builds its string a `char` at a time, which showed
/// in the profile of every audited request (a few hashes per line).
pub(crate) fn prefixed_hex(prefix: &str, bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len() * 2];
    // The buffer is exactly twice the input's length, the only way encoding can fail.
    let _ = hex::encode_to_slice(bytes, &mut buf);
    let mut out = String::with_capacity(prefix.len() + buf.len());
    out.push_str(prefix);
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
    out
}

/// The audit HMAC key (32 random bytes, stored in the barrier). Zeroized on drop, never printed.
#[derive(Clone)]
pub struct HmacKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

impl HmacKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn generate() -> Self {
        use rand::RngCore;
        let mut k = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self::new(k)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `hmac-sha256:<hex>` of `s`.
    pub fn hash(&self, s: &str) -> String {
        // A key of any length is valid for HMAC, so `new_from_slice` cannot fail here.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(s.as_bytes());
        prefixed_hex(HMAC_PREFIX, &mac.finalize().into_bytes())
    }
}

/// A JSON value that serializes with every string replaced by its HMAC (recursively, object keys kept), as Vault does
/// for request and response data: values of unknown meaning are treated as secret. Serialized in place, without a
/// hashed copy of the value.
pub(crate) struct Hashed<'a>(pub &'a Value, pub &'a HmacKey);

impl serde::Serialize for Hashed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::String(v) => s.serialize_str(&self.1.hash(v)),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&Hashed(v, self.1))?;
                }
                seq.end()
            }
            Value::Object(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, &Hashed(v, self.1))?;
                }
                map.end()
            }
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_replaced_recursively_and_other_values_kept() {
        let k = HmacKey::new(b"k".to_vec());
        let plain = serde_json::json!({"data": {"pw": "hunter2", "n": 3, "list": ["a"], "ok": true}});
        let v = serde_json::to_value(Hashed(&plain, &k)).unwrap();
        let text = v.to_string();
        assert!(!text.contains("hunter2"));
        assert_eq!(v["data"]["pw"], k.hash("hunter2"));
        assert_eq!(v["data"]["n"], 3);
        assert_eq!(v["data"]["ok"], true);
        assert!(v["data"]["list"][0].as_str().unwrap().starts_with(HMAC_PREFIX));
        assert_eq!(k.hash("x").len(), HMAC_PREFIX.len() + 64);
        assert_ne!(k.hash("x"), HmacKey::new(b"other".to_vec()).hash("x"));
        assert_eq!(format!("{k:?}"), "HmacKey(<redacted>)");
    }
}
