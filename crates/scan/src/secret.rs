//! The secret value of a finding: zeroized on drop, redacted in `Debug`/`Display`, deliberately not `Serialize`
//! so it can only reach an output through an explicit `expose()` call (the reporters do that for --show-secrets).

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
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
        leakstop_rules::redacted(&self.0)
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
