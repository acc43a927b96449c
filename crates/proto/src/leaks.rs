//! The leak loop's wire types: what a scanner sends to `sys/leaks/report`, what the service answers, and the
//! records `sys/leaks` lists. Shared so the scanner, the service and the tests cannot drift apart.
//!
//! The answer to a report is the same for a known and an unknown secret (a caller without a token learns nothing
//! about what the service holds): a count and one receipt per secret. A receipt is the id the record of that
//! secret has, or would have, in `sys/leaks`, so a caller allowed to read `sys/leaks` can see what happened.

use serde::{Deserialize, Serialize};

/// Where a secret was found. Every field is optional: a report from a plain file has no commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One reported secret: the bare string, or the string with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReportedSecret {
    Bare(String),
    WithSource {
        secret: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<Source>,
    },
}

impl ReportedSecret {
    pub fn secret(&self) -> &str {
        match self {
            ReportedSecret::Bare(s) | ReportedSecret::WithSource { secret: s, .. } => s,
        }
    }

    /// The secret's own source, else the report's.
    pub fn source<'a>(&'a self, report: Option<&'a Source>) -> Option<&'a Source> {
        match self {
            ReportedSecret::WithSource { source: Some(s), .. } => Some(s),
            _ => report,
        }
    }
}

/// `POST /v1/sys/leaks/report`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    pub secrets: Vec<ReportedSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// The `data` of the answer to a report: identical in shape whatever the secrets were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAnswer {
    /// How many secrets the report carried.
    pub received: usize,
    /// One per secret, in order: the id of its record in `sys/leaks` if the service knew it.
    pub receipts: Vec<String>,
}

/// What a leaked secret was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakKind {
    /// A leakstop token (`lkss_`/`lksb_`).
    Token,
    /// A credential the service issued under a lease (e.g. a brokered GitHub installation token).
    Lease,
    /// A value stored in KV v2.
    Kv,
    /// Unseal or recovery material.
    Unseal,
    /// The password of a database static role (a user leakstop keeps and rotates).
    Static,
}

/// What the service did about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakAction {
    /// The credential no longer works.
    Revoked,
    /// It cannot be revoked (a stored value): marked where users look, for them to rotate.
    Flagged,
    /// The service replaced it where it is used (a static role's password): the leaked one no longer works.
    Rotated,
}

/// Who told the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reporter {
    /// `sys/leaks/report` (a scanner, the Action, anyone holding the secret).
    Report,
    /// GitHub's secret scanning partner program (`sys/leaks/github`).
    Github,
}

/// One place a stored value was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvLocation {
    pub path: String,
    pub version: u64,
}

/// A record in `sys/leaks`. Never holds the secret, in clear or hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakRecord {
    pub id: String,
    pub kind: LeakKind,
    pub action: LeakAction,
    /// The KV path (`secret/data/app`), the lease id without its random suffix, or the token's creation path.
    pub path: String,
    /// The KV version, for `kv` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Every KV location holding the value (the first is `path`/`version`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<KvLocation>,
    /// RFC 3339, UTC.
    pub reported_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    pub reporter: Reporter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_bare_or_with_their_own_source() {
        let r: ReportRequest = serde_json::from_str(
            r#"{"secrets": ["a", {"secret": "b", "source": {"path": "x.env", "line": 3}}],
                "source": {"repository": "o/r"}}"#,
        )
        .unwrap();
        assert_eq!(
            r.secrets[0].source(r.source.as_ref()).unwrap().repository.as_deref(),
            Some("o/r")
        );
        let own = r.secrets[1].source(r.source.as_ref()).unwrap();
        assert_eq!((own.path.as_deref(), own.line), (Some("x.env"), Some(3)));
        assert_eq!(r.secrets[1].secret(), "b");
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        for bad in [
            r#"{"secrets": ["a"], "extra": 1}"#,
            r#"{"secrets": "a"}"#,
            r#"{"secrets": [1]}"#,
            r#"{"secrets": ["a"], "source": {"file": "x"}}"#,
        ] {
            assert!(serde_json::from_str::<ReportRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_serialize_with_lowercase_kinds() {
        let r = LeakRecord {
            id: "x".into(),
            kind: LeakKind::Kv,
            action: LeakAction::Flagged,
            path: "secret/data/app".into(),
            version: Some(2),
            locations: vec![],
            reported_at: "2026-01-01T00:00:00Z".into(),
            source: None,
            reporter: Reporter::Report,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["action"].as_str()),
            (Some("kv"), Some("flagged"))
        );
        assert_eq!(v["reporter"], "report");
    }
}
