//! `leakstop scan --min-confidence`, `[scan] min_confidence` and the confidence column of `rules list`, driven
//! through the binary.

use std::path::Path;

use leakstop_tests::cmd;
use leakstop_tests::secrets::github_pat;
use serde_json::Value;

fn leakstop(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let run = cmd::leakstop(args).dir(dir).run();
    (run.code, run.stdout, run.stderr)
}

/// A checksummed GitHub token (high confidence) and a generic password (low) in one tree.
fn tree() -> tempfile::TempDir {
    let dir = leakstop_tests::tempdir();
    std::fs::write(
        dir.path().join("settings.py"),
        format!(
            "GITHUB_TOKEN = \"{}\"\nDB_PASSWORD = \"Tq8vN3zK1pWx7LmR\"\n",
            github_pat()
        ),
    )
    .unwrap();
    dir
}

fn confidences(stdout: &str) -> Vec<String> {
    let v: Vec<Value> = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    v.iter()
        .map(|f| f["confidence"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn min_confidence_hides_weaker_findings_and_the_config_sets_the_default() {
    let dir = tree();
    let (code, out, err) = leakstop(dir.path(), &["scan", "-f", "json", "."]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(confidences(&out), ["high", "low"]);

    let (code, out, _) = leakstop(dir.path(), &["scan", "-f", "json", "--min-confidence", "medium", "."]);
    assert_eq!(code, 1);
    assert_eq!(confidences(&out), ["high"]);

    // Only low-confidence findings left: a clean exit once they are hidden.
    std::fs::write(dir.path().join("settings.py"), "DB_PASSWORD = \"Tq8vN3zK1pWx7LmR\"\n").unwrap();
    let (code, _, _) = leakstop(dir.path(), &["scan", "--min-confidence", "high", "."]);
    assert_eq!(code, 0);

    std::fs::write(
        dir.path().join(".leakstop.toml"),
        "[scan]\nmin_confidence = \"medium\"\n",
    )
    .unwrap();
    let (code, out, _) = leakstop(dir.path(), &["scan", "-f", "json", "."]);
    assert_eq!((code, confidences(&out).len()), (0, 0));
    // The flag wins over the config.
    let (code, out, _) = leakstop(dir.path(), &["scan", "-f", "json", "--min-confidence", "low", "."]);
    assert_eq!((code, confidences(&out)), (1, vec!["low".to_string()]));
}

#[test]
fn a_bad_min_confidence_is_a_usage_error_naming_the_choices() {
    let dir = tree();
    let (code, _, err) = leakstop(dir.path(), &["scan", "--min-confidence", "sure", "."]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sure") && err.contains("medium"), "{err}");
}

#[test]
fn rules_list_shows_each_rules_confidence() {
    let dir = leakstop_tests::tempdir();
    let (code, out, err) = leakstop(dir.path(), &["rules", "list"]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().nth(1).unwrap();
    assert!(header.contains("CONFIDENCE"), "{header}");
    let row = |id: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} listed"))
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_string()
    };
    assert_eq!(row("github-pat-classic"), "high");
    assert_eq!(row("generic-password"), "low");
    let (_, json, _) = leakstop(dir.path(), &["rules", "list", "--format", "json"]);
    let v: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert!(
        v.iter()
            .all(|r| ["low", "medium", "high"].contains(&r["confidence"].as_str().unwrap()))
    );
}
