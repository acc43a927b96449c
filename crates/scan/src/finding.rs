//! A finding and its stable fingerprint.

use hmac::{Hmac, Mac};
use leakstop_rules::{Confidence, Severity};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::secret::Secret;

/// The commit a finding was introduced in (set by the git inputs; `None` for files and stdin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    pub id: String,
    pub author_name: String,
    pub author_email: String,
    /// RFC 3339.
    pub date: String,
    pub summary: String,
}

/// Another place a history finding's secret was seen: a later version of the file, or the same secret again in
/// the same file (git history scans fill this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub path: String,
    pub line: u32,
    pub column: u32,
    /// The commit that introduced this version of the file.
    pub commit: Option<String>,
}

/// One detected secret. The raw value lives in `secret` (zeroized, redacted in Debug); reporters decide whether
/// to show it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub rule_id: String,
    pub description: String,
    pub severity: Severity,
    /// How sure the rule is that this is a real credential (the rule's, lowered for a partly verified format).
    pub confidence: Confidence,
    /// As given/walked, with forward slashes preserved; `stdin` for standard input.
    pub path: String,
    /// 1-based line of the first character of the secret.
    pub line: u32,
    /// 1-based column, in characters, of the first character of the secret.
    pub column: u32,
    pub end_line: u32,
    /// 1-based column (characters) of the last character of the secret.
    pub end_column: u32,
    pub secret: Secret,
    pub redacted: String,
    /// `ls1:` + 32 hex: keyed hash of rule id and secret; independent of path and line so baselines don't churn.
    pub fingerprint: String,
    pub entropy: Option<f64>,
    pub commit: Option<CommitInfo>,
    /// Other paths where the same secret (same fingerprint) was seen (git inputs fill this).
    pub other_paths: Vec<String>,
    /// For history scans: the later versions (and other lines) holding the same secret, oldest first; bounded.
    pub other_locations: Vec<Location>,
    /// Locations beyond those in `other_locations`, counted but not listed.
    pub other_locations_omitted: usize,
    /// For history scans: whether the secret is still present at HEAD.
    pub in_head: Option<bool>,
    pub tags: Vec<String>,
    /// The secret's line with the secret (and any other match on it) redacted, shortened around the secret: what
    /// the text report shows so the finding can be judged without opening the file.
    pub context: String,
}

/// Default HMAC key for fingerprints. Public by design: the fingerprint protects the secret against offline
/// brute force only as much as the secret's own entropy; a deployment may set its own key.
pub const DEFAULT_FINGERPRINT_KEY: &[u8] = b"leakstop fingerprint v1";

/// `ls1:` + hex(HMAC-SHA256(key, rule_id || 0x00 || secret))[..32].
pub fn fingerprint(key: &[u8], rule_id: &str, secret: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(rule_id.as_bytes());
    mac.update(&[0]);
    mac.update(secret);
    let digest = mac.finalize().into_bytes();
    format!("ls1:{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_rule_and_secret_only() {
        let a = fingerprint(DEFAULT_FINGERPRINT_KEY, "r", b"s3cr3t");
        assert_eq!(a, fingerprint(DEFAULT_FINGERPRINT_KEY, "r", b"s3cr3t"));
        assert_ne!(a, fingerprint(DEFAULT_FINGERPRINT_KEY, "r2", b"s3cr3t"));
        assert_ne!(a, fingerprint(DEFAULT_FINGERPRINT_KEY, "r", b"s3cr3u"));
        assert_ne!(a, fingerprint(b"other key", "r", b"s3cr3t"));
        // rule "ab"+secret "c" must differ from rule "a"+secret "bc" (the 0 separator).
        assert_ne!(fingerprint(b"k", "ab", b"c"), fingerprint(b"k", "a", b"bc"));
        assert!(a.starts_with("ls1:") && a.len() == 4 + 32, "{a}");
        assert!(!a.contains("s3cr3t"));
    }
}
