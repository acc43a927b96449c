//! Reporters: text (human), JSON, JSON Lines, SARIF 2.1.0.
//!
//! Secrets are shown redacted unless `show_secrets`; SARIF never carries a secret in clear because it is meant to
//! be uploaded (GitHub code scanning shows it to everyone with read access).

use std::collections::BTreeMap;
use std::io::{self, Write};

use leakstop_rules::{Confidence, Severity};
use serde_json::{Value, json};

use crate::finding::Finding;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Jsonl,
    Sarif,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "jsonl" => Ok(Format::Jsonl),
            "sarif" => Ok(Format::Sarif),
            _ => Err(format!("unknown format `{s}`: use text, json, jsonl or sarif")),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    pub show_secrets: bool,
    /// ANSI colors (text only); the CLI turns this on for a TTY without NO_COLOR.
    pub color: bool,
}

pub fn write(findings: &[Finding], fmt: Format, out: &mut dyn Write, opts: &ReportOptions) -> io::Result<()> {
    match fmt {
        Format::Text => write_text(findings, out, opts),
        Format::Json => {
            let all: Vec<Value> = findings.iter().map(|f| finding_json(f, opts)).collect();
            serde_json::to_writer_pretty(&mut *out, &all)?;
            out.write_all(b"\n")
        }
        Format::Jsonl => {
            for f in findings {
                serde_json::to_writer(&mut *out, &finding_json(f, opts))?;
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut *out, &sarif(findings))?;
            out.write_all(b"\n")
        }
    }
}

fn shown_secret(f: &Finding, opts: &ReportOptions) -> String {
    if opts.show_secrets {
        f.secret.expose_str()
    } else {
        f.redacted.clone()
    }
}

fn severity_color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "\x1b[1;31m",
        Severity::High => "\x1b[31m",
        Severity::Medium => "\x1b[33m",
        Severity::Low => "\x1b[36m",
        Severity::Info => "\x1b[2m",
    }
}

fn write_text(findings: &[Finding], out: &mut dyn Write, opts: &ReportOptions) -> io::Result<()> {
    let (bold, reset) = if opts.color { ("\x1b[1m", "\x1b[0m") } else { ("", "") };
    for f in findings {
        let sev = if opts.color {
            format!("{}{}{reset}", severity_color(f.severity), f.severity)
        } else {
            f.severity.to_string()
        };
        writeln!(
            out,
            "{bold}{}:{}:{}{reset}: {sev} ({} confidence): {} [{}]",
            f.path, f.line, f.column, f.confidence, f.description, f.rule_id
        )?;
        if !f.context.is_empty() {
            writeln!(out, "    line: {}", f.context)?;
        }
        write!(
            out,
            "    secret: {}  fingerprint: {}",
            shown_secret(f, opts),
            f.fingerprint
        )?;
        if let Some(c) = &f.commit {
            let short = &c.id[..c.id.len().min(12)];
            write!(
                out,
                "\n    commit: {short} {} <{}> {}: {}",
                c.author_name, c.author_email, c.date, c.summary
            )?;
        }
        if f.tags.iter().any(|t| t == crate::archive::DELETED_TAG) {
            write!(
                out,
                "\n    deleted by a later image layer (still in the image: rotate it)"
            )?;
        }
        if f.in_head == Some(false) {
            write!(out, "\n    no longer at HEAD (still in history: rotate it)")?;
        }
        if !f.other_paths.is_empty() {
            write!(out, "\n    also in: {}", f.other_paths.join(", "))?;
        }
        write_other_locations(f, out)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Later versions holding the secret, a few of them (JSON lists them all).
fn write_other_locations(f: &Finding, out: &mut dyn Write) -> io::Result<()> {
    const SHOWN: usize = 3;
    let total = f.other_locations.len() + f.other_locations_omitted;
    if total == 0 {
        return Ok(());
    }
    let shown: Vec<String> = f
        .other_locations
        .iter()
        .take(SHOWN)
        .map(|l| match &l.commit {
            Some(c) => format!("{}:{} ({})", l.path, l.line, &c[..c.len().min(12)]),
            None => format!("{}:{}", l.path, l.line),
        })
        .collect();
    let more = total - shown.len();
    write!(
        out,
        "\n    {total} later occurrence(s): {}{}",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

fn finding_json(f: &Finding, opts: &ReportOptions) -> Value {
    let mut v = json!({
        "rule_id": f.rule_id,
        "description": f.description,
        "severity": f.severity.to_string(),
        "confidence": f.confidence.as_str(),
        "path": f.path,
        "line": f.line,
        "column": f.column,
        "end_line": f.end_line,
        "end_column": f.end_column,
        "secret": shown_secret(f, opts),
        "redacted": !opts.show_secrets,
        "fingerprint": f.fingerprint,
        "entropy": f.entropy.map(|e| (e * 1000.0).round() / 1000.0),
        "tags": f.tags,
    });
    let obj = v.as_object_mut().expect("object");
    if let Some(c) = &f.commit {
        obj.insert("commit".into(), serde_json::to_value(c).expect("commit serializes"));
    }
    if !f.other_paths.is_empty() {
        obj.insert("other_paths".into(), json!(f.other_paths));
    }
    if !f.other_locations.is_empty() {
        obj.insert("other_locations".into(), json!(f.other_locations));
    }
    if f.other_locations_omitted > 0 {
        obj.insert("other_locations_omitted".into(), json!(f.other_locations_omitted));
    }
    if let Some(h) = f.in_head {
        obj.insert("in_head".into(), json!(h));
    }
    v
}

/// The SARIF level: by severity, one step lower for a low-confidence finding (a likely look-alike should not
/// block a pull request as an error would).
fn sarif_level(s: Severity, c: Confidence) -> &'static str {
    let by_severity = match s {
        Severity::Critical | Severity::High => 2,
        Severity::Medium => 1,
        Severity::Low | Severity::Info => 0,
    };
    match by_severity - i32::from(c == Confidence::Low && by_severity > 0) {
        2 => "error",
        1 => "warning",
        _ => "note",
    }
}

/// SARIF `rank` (0–100, how likely the result is a real problem) from confidence.
fn sarif_rank(c: Confidence) -> f64 {
    match c {
        Confidence::High => 90.0,
        Confidence::Medium => 60.0,
        Confidence::Low => 30.0,
    }
}

/// GitHub code scanning's `precision` property (`very-high`, `high`, `medium`, `low`) from confidence.
fn sarif_precision(c: Confidence) -> &'static str {
    match c {
        Confidence::High => "very-high",
        Confidence::Medium => "high",
        Confidence::Low => "medium",
    }
}

/// GitHub code scanning's `security-severity` (CVSS-like score) drives its critical/high/medium/low labels.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

/// A relative URI reference with forward slashes; bytes outside the unreserved set are percent-encoded.
pub fn sarif_uri(path: &str) -> String {
    let mut p = path.replace('\\', "/");
    if let Some(stripped) = p.strip_prefix("./") {
        p = stripped.to_string();
    }
    if p.starts_with('/')
        && let Ok(cwd) = std::env::current_dir()
    {
        let cwd = cwd.to_string_lossy().replace('\\', "/");
        if let Some(rel) = p.strip_prefix(&format!("{}/", cwd.trim_end_matches('/'))) {
            p = rel.to_string();
        }
    }
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        // `!` kept: `outer.tar.gz!/app.jar!/x.yml` names a file inside an archive, as jar URLs do.
        if b.is_ascii_alphanumeric() || b"-._~/!".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.starts_with('/') {
        format!("file://{out}")
    } else {
        out
    }
}

fn sarif(findings: &[Finding]) -> Value {
    // Rules: one entry per rule that produced a finding, in a stable order; results point at them by index.
    let mut rules: BTreeMap<&str, &Finding> = BTreeMap::new();
    for f in findings {
        rules.entry(&f.rule_id).or_insert(f);
    }
    let index: BTreeMap<&str, usize> = rules.keys().enumerate().map(|(i, k)| (*k, i)).collect();
    let rules_json: Vec<Value> = rules
        .values()
        .map(|f| {
            json!({
                "id": f.rule_id,
                "name": f.rule_id,
                "shortDescription": { "text": f.description },
                "fullDescription": { "text": format!("{}: a credential that must not be committed.", f.description) },
                "help": {
                    "text": format!("{} detected. Rotate (revoke and reissue) the credential, then remove it from \
                        the code; if it was committed, it stays in git history until rotated. If it is not a real \
                        secret, add `leakstop:allow` on the line or its fingerprint to .leakstopignore.", f.description),
                    "markdown": format!("**{}** detected.\n\n1. Rotate (revoke and reissue) the credential.\n2. Remove \
                        it from the code (a secret manager or environment variable instead).\n\nIf it is not a real \
                        secret, add `leakstop:allow` on the line or add its fingerprint to `.leakstopignore`.",
                        f.description),
                },
                "defaultConfiguration": { "level": sarif_level(f.severity, f.confidence) },
                "properties": {
                    "tags": std::iter::once("security".to_string()).chain(f.tags.iter().cloned()).collect::<Vec<_>>(),
                    "security-severity": security_severity(f.severity),
                    "precision": sarif_precision(f.confidence),
                    "confidence": f.confidence.as_str(),
                },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut r = json!({
                "ruleId": f.rule_id,
                "ruleIndex": index[f.rule_id.as_str()],
                "level": sarif_level(f.severity, f.confidence),
                "rank": sarif_rank(f.confidence),
                "message": { "text": format!("{} ({}): {}", f.description, f.rule_id, f.redacted) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": sarif_uri(&f.path) },
                        "region": {
                            "startLine": f.line,
                            "startColumn": f.column,
                            "endLine": f.end_line,
                            // SARIF end columns are exclusive.
                            "endColumn": f.end_column + 1,
                        }
                    }
                }],
                "partialFingerprints": { "leakstopFingerprint/v1": f.fingerprint },
                "properties": { "confidence": f.confidence.as_str() },
            });
            if !f.other_locations.is_empty() {
                r.as_object_mut().expect("object").insert(
                    "relatedLocations".into(),
                    f.other_locations
                        .iter()
                        .enumerate()
                        .map(|(i, l)| {
                            json!({
                                "id": i + 1,
                                "physicalLocation": {
                                    "artifactLocation": { "uri": sarif_uri(&l.path) },
                                    "region": { "startLine": l.line, "startColumn": l.column },
                                },
                                "message": { "text": match &l.commit {
                                    Some(c) => format!("the same secret, in commit {c}"),
                                    None => "the same secret".to_string(),
                                } },
                            })
                        })
                        .collect::<Value>(),
                );
            }
            if f.tags.iter().any(|t| t == crate::archive::DELETED_TAG) {
                r.as_object_mut()
                    .expect("object")
                    .insert("properties".into(), json!({ "tags": [crate::archive::DELETED_TAG] }));
            }
            if let Some(c) = &f.commit {
                r["properties"]["commit"] = json!(c.id);
                r["properties"]["author"] = json!(c.author_name);
                r["properties"]["date"] = json!(c.date);
            }
            r
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "leakstop",
                "informationUri": "https://example.invalid/leakstop",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules_json,
            }},
            "results": results,
            "columnKind": "unicodeCodePoints",
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sarif_uris_are_relative_and_encoded() {
        assert_eq!(sarif_uri("./a/b c.txt"), "a/b%20c.txt");
        assert_eq!(sarif_uri("dir\\x.env"), "dir/x.env");
        assert_eq!(sarif_uri("/nowhere/x"), "file:///nowhere/x");
    }
}
