//! Baselines and ignore files: which findings are already known and must not be reported again.
//!
//! Accepted inputs (detected by content):
//! - leakstop baseline JSON (`--write-baseline`): `{"version":1,"findings":[{"fingerprint","rule_id","path"}]}`;
//! - a gitleaks JSON report (what `gitleaks --baseline-path` takes): `[{"Fingerprint": ...}, ...]`;
//! - line files (`.leakstopignore`, `.gitleaksignore`): `ls1:` fingerprints, or gitleaks fingerprints
//!   `file:rule:line` / `commit:file:rule:line`, `#` comments and blank lines ignored.
//!
//! gitleaks fingerprints name a location, not a secret, so they become location suppressions (path + line, and the
//! rule when leakstop has a rule of that id, and the commit for history scans).

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ScanError;
use crate::finding::Finding;

#[derive(Debug, Clone, Default)]
pub struct Baseline {
    fingerprints: HashSet<String>,
    locations: Vec<LocationSuppression>,
    /// What could not be mapped exactly (for gitleaks inputs); the CLI prints these on stderr.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LocationSuppression {
    commit: Option<String>,
    path: String,
    /// `None` when the gitleaks rule id has no leakstop equivalent: any finding at that path and line is suppressed.
    rule: Option<String>,
    line: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct BaselineFile {
    version: u32,
    #[serde(default)]
    tool: Option<String>,
    findings: Vec<BaselineEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BaselineEntry {
    fingerprint: String,
    #[serde(default)]
    rule_id: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
}

impl Baseline {
    pub fn new() -> Baseline {
        Baseline::default()
    }

    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty() && self.locations.is_empty()
    }

    pub fn len(&self) -> usize {
        self.fingerprints.len() + self.locations.len()
    }

    pub fn add_fingerprint(&mut self, fp: &str) {
        self.fingerprints.insert(fp.to_string());
    }

    pub fn merge(&mut self, other: Baseline) {
        self.fingerprints.extend(other.fingerprints);
        self.locations.extend(other.locations);
        self.notes.extend(other.notes);
    }

    /// Loads any of the accepted formats. `is_rule` tells whether a rule id exists in the active rule set
    /// (used to map gitleaks fingerprints).
    pub fn load(path: &Path, is_rule: &dyn Fn(&str) -> bool) -> Result<Baseline, ScanError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScanError::Read {
            path: path.into(),
            source,
        })?;
        Baseline::parse(&text, path, is_rule)
    }

    pub fn parse(text: &str, origin: &Path, is_rule: &dyn Fn(&str) -> bool) -> Result<Baseline, ScanError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            let file: BaselineFile = serde_json::from_str(text).map_err(|e| ScanError::Baseline {
                path: origin.into(),
                line: e.line(),
                reason: format!("{e} (expected a file written by `leakstop scan --write-baseline`)"),
            })?;
            let mut b = Baseline::new();
            for (i, entry) in file.findings.iter().enumerate() {
                if !entry.fingerprint.starts_with("ls1:") {
                    return Err(ScanError::Baseline {
                        path: origin.into(),
                        line: 0,
                        reason: format!("finding #{}: fingerprint does not start with `ls1:`", i + 1),
                    });
                }
                b.fingerprints.insert(entry.fingerprint.clone());
            }
            return Ok(b);
        }
        if trimmed.starts_with('[') {
            return Baseline::parse_gitleaks_report(text, origin, is_rule);
        }
        let mut b = Baseline::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with("ls1:") {
                b.fingerprints.insert(line.to_string());
                continue;
            }
            match b.add_gitleaks_fingerprint(line, is_rule) {
                Ok(()) => {}
                Err(reason) => {
                    return Err(ScanError::Baseline {
                        path: origin.into(),
                        line: i + 1,
                        reason,
                    });
                }
            }
        }
        Ok(b)
    }

    fn parse_gitleaks_report(text: &str, origin: &Path, is_rule: &dyn Fn(&str) -> bool) -> Result<Baseline, ScanError> {
        let items: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| ScanError::Baseline {
            path: origin.into(),
            line: e.line(),
            reason: format!("{e} (expected a gitleaks JSON report)"),
        })?;
        let mut b = Baseline::new();
        for (i, item) in items.iter().enumerate() {
            let fp = item
                .get("Fingerprint")
                .and_then(|v| v.as_str())
                .ok_or_else(|| ScanError::Baseline {
                    path: origin.into(),
                    line: 0,
                    reason: format!("report entry #{} has no `Fingerprint` field", i + 1),
                })?;
            b.add_gitleaks_fingerprint(fp, is_rule)
                .map_err(|reason| ScanError::Baseline {
                    path: origin.into(),
                    line: 0,
                    reason,
                })?;
        }
        Ok(b)
    }

    /// `file:rule:line` or `commit:file:rule:line` (the file may itself contain colons).
    fn add_gitleaks_fingerprint(&mut self, fp: &str, is_rule: &dyn Fn(&str) -> bool) -> Result<(), String> {
        let bad = || {
            format!(
                "`{fp}` is neither a leakstop fingerprint (ls1:...) nor a gitleaks fingerprint (file:rule:line or \
                 commit:file:rule:line); fix or delete the line"
            )
        };
        let mut parts = fp.rsplitn(3, ':');
        let line: u32 = parts.next().and_then(|l| l.trim().parse().ok()).ok_or_else(bad)?;
        let rule = parts.next().filter(|r| !r.is_empty()).ok_or_else(bad)?;
        let rest = parts.next().filter(|r| !r.is_empty()).ok_or_else(bad)?;
        let (commit, path) = match rest.split_once(':') {
            Some((c, p)) if c.len() >= 7 && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (Some(c.to_ascii_lowercase()), p)
            }
            _ => (None, rest),
        };
        let rule = if is_rule(rule) {
            Some(rule.to_string())
        } else {
            self.notes.push(format!(
                "gitleaks rule `{rule}` has no leakstop rule of that id: `{fp}` suppresses any finding at {path}:{line}"
            ));
            None
        };
        self.locations.push(LocationSuppression {
            commit,
            path: normalize_path(path).to_string(),
            rule,
            line,
        });
        Ok(())
    }

    /// Whether a finding is already known.
    pub fn suppresses(&self, f: &Finding) -> bool {
        if self.fingerprints.contains(&f.fingerprint) {
            return true;
        }
        self.locations.iter().any(|s| {
            s.line == f.line
                && s.rule.as_deref().is_none_or(|r| r == f.rule_id)
                && same_path(&s.path, normalize_path(&f.path))
                && match (&s.commit, &f.commit) {
                    (None, _) => true,
                    (Some(c), Some(fc)) => fc.id.to_ascii_lowercase().starts_with(c.as_str()),
                    (Some(_), None) => false,
                }
        })
    }

    /// Writes a baseline of `findings` to `path` atomically (temp file in the same directory, then rename).
    pub fn write(findings: &[Finding], path: &Path) -> Result<(), ScanError> {
        let mut seen = HashSet::new();
        let entries: Vec<BaselineEntry> = findings
            .iter()
            .filter(|f| seen.insert(f.fingerprint.clone()))
            .map(|f| BaselineEntry {
                fingerprint: f.fingerprint.clone(),
                rule_id: Some(f.rule_id.clone()),
                path: Some(f.path.clone()),
                line: Some(f.line),
            })
            .collect();
        let file = BaselineFile {
            version: 1,
            tool: Some("leakstop".into()),
            findings: entries,
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("baseline serializes");
        bytes.push(b'\n');
        write_atomic(path, &bytes)
    }
}

fn normalize_path(p: &str) -> &str {
    p.strip_prefix("./").unwrap_or(p)
}

/// gitleaks paths are relative to where it ran; ours may carry a directory prefix: compare on path components.
fn same_path(a: &str, b: &str) -> bool {
    a == b || b.ends_with(&format!("/{a}")) || a.ends_with(&format!("/{b}"))
}

/// Write `bytes` to `path` via a temp file in the same directory and a rename, so readers never see half a file.
/// A path that exists and is not a regular file (`/dev/null`, `/dev/stdout`, a named pipe) is written in place:
/// renaming over it would replace the device or pipe with a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ScanError> {
    let err = |source| ScanError::Write {
        path: path.into(),
        source,
    };
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(err);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}
