//! A secret value (a scanner finding, a token, a dev root token id, a credential the client holds): zeroized on
//! drop, redacted in `Debug`/`Display`, deliberately not `Serialize` so it can only reach an output through an
//! explicit `expose()` call (the scanner's reporters under --show-secrets; a wire struct's field through
//! [`serde_exposed`], which names the exposure where the field is declared).

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

#[derive(Clone, Default, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }

    /// The raw secret. Callers must not log it; only reporters under `--show-secrets` print it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Lossy UTF-8 view of the raw secret (same rule as `expose`).
    pub fn expose_str(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What users see by default: a short non-secret prefix for long tokens (so `ghp_` or `AKIA` still tells
    /// a human what it is) and stars; short secrets (passwords) show nothing of themselves.
    pub fn redacted(&self) -> String {
        redacted(&self.0)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        // The bytes move; nothing is left behind to zeroize.
        Secret(s.into_bytes())
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::new(s.as_bytes())
    }
}

/// The first 4 characters of a secret of 20 or more, then stars (as reports redact it); only stars if shorter.
pub fn redacted(secret: &[u8]) -> String {
    let s = String::from_utf8_lossy(secret);
    if s.chars().count() >= 20 {
        let head: String = s.chars().take(4).collect();
        format!("{head}*****")
    } else {
        "*****".to_string()
    }
}

/// `#[serde(with = "leakstop_proto::secret::serde_exposed")]`: a wire field that carries a [`Secret`] as a JSON
/// string. The one sanctioned way a secret reaches a serializer.
pub mod serde_exposed {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(secret.expose()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::from)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.redacted())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let s = Secret::new(b"ghp_abcdefghijklmnopqrstuvwxyz0123456789");
        let shown = format!("{s:?} {s}");
        assert!(!shown.contains("abcdefghij"), "{shown}");
        assert!(shown.contains("ghp_*****"), "{shown}");
        assert_eq!(Secret::new(b"hunter2").redacted(), "*****");
    }
}
