//! The acceptance fixtures: every planted secret in tests/fixtures/planted/ (listed in EXPECTED.tsv as
//! path, line, column, rule id) is found at its exact place, covering at least 40 rule kinds; the look-alike tree
//! (placeholders, hashes, UUIDs, test vectors, minified JS, lockfiles) gives no finding at all.

use std::collections::{BTreeSet, HashSet};

use leakstop_tests::cmd::leakstop;
use leakstop_tests::repo_root;
use serde_json::Value;

fn scan_json(dir: &std::path::Path) -> (i32, Vec<Value>, String) {
    let out = leakstop(["scan", "--format", "json", "."])
        .dir(dir)
        .env("NO_COLOR", "1")
        .run();
    let findings: Vec<Value> =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", out.stdout, out.stderr));
    (out.code, findings, out.stderr)
}

#[test]
fn every_planted_secret_is_found_at_its_line_and_column() {
    let dir = repo_root().join("tests/fixtures/planted");
    let expected_path = dir.join("EXPECTED.tsv");
    let expected_text = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("{}: {e} (the planted fixture list is missing)", expected_path.display()));
    let mut expected: Vec<(String, u64, u64, String)> = Vec::new();
    for (i, line) in expected_text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(
            cols.len() >= 4,
            "EXPECTED.tsv line {}: want path<TAB>line<TAB>column<TAB>rule-id",
            i + 1
        );
        if cols[1] == "line" {
            continue; // header
        }
        expected.push((
            cols[0].to_string(),
            cols[1].parse().unwrap(),
            cols[2].parse().unwrap(),
            cols[3].to_string(),
        ));
    }
    let (code, findings, stderr) = scan_json(&dir);
    assert_eq!(code, 1, "{stderr}");
    let found: HashSet<(String, u64, u64, String)> = findings
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
                f["column"].as_u64().unwrap(),
                f["rule_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|e| !found.contains(*e))
        .map(|(p, l, c, r)| {
            let near: Vec<String> = found
                .iter()
                .filter(|f| &f.0 == p && f.1 == *l)
                .map(|f| format!("{}:{}:{} {}", f.0, f.1, f.2, f.3))
                .collect();
            format!("{p}:{l}:{c} {r} (found on that line: {near:?})")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} planted secret(s) not found:\n{}",
        missing.len(),
        missing.join("\n")
    );
    let kinds: BTreeSet<&str> = expected.iter().map(|e| e.3.as_str()).collect();
    assert!(
        kinds.len() >= 40,
        "only {} distinct rule kinds planted: {kinds:?}",
        kinds.len()
    );
    // Nothing beyond what was planted (the fixture list is the whole truth for that tree).
    let expected_set: HashSet<_> = expected.iter().cloned().collect();
    let extra: Vec<String> = found
        .iter()
        .filter(|f| !expected_set.contains(*f))
        .map(|(p, l, c, r)| format!("{p}:{l}:{c} {r}"))
        .collect();
    assert!(
        extra.is_empty(),
        "{} unexpected finding(s):\n{}",
        extra.len(),
        extra.join("\n")
    );
}

#[test]
fn lookalikes_give_no_findings() {
    let dir = repo_root().join("tests/fixtures/lookalikes");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    let (code, findings, stderr) = scan_json(&dir);
    let shown: Vec<String> = findings
        .iter()
        .map(|f| format!("{}:{}:{} {}", f["path"], f["line"], f["column"], f["rule_id"]))
        .collect();
    assert!(findings.is_empty(), "false positives:\n{}\n{stderr}", shown.join("\n"));
    assert_eq!(code, 0, "{stderr}");
}
