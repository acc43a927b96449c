//! `leakstop rules list|check` as a user runs them: listing, validating rule files and configs, exit codes.
use std::path::Path;

use leakstop_tests::cmd::{self, Run};
use leakstop_tests::{repo_root, tempdir};

fn leakstop(dir: &Path, args: &[&str]) -> Run {
    cmd::leakstop(args).dir(dir).run()
}

#[test]
fn list_shows_builtin_rules_as_text_and_json() {
    let dir = tempdir();
    let out = leakstop(dir.path(), &["rules", "list"]);
    assert!(out.status.success(), "{}", out.stderr);
    let text = &out.stdout;
    let line = text
        .lines()
        .find(|l| l.starts_with("github-pat-classic "))
        .expect("github rule listed");
    assert!(
        line.contains("critical") && line.contains("GitHub personal access token"),
        "{line}"
    );

    let out = leakstop(dir.path(), &["rules", "list", "--format", "json"]);
    assert!(out.status.success(), "{}", out.stderr);
    let rules: serde_json::Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    let rules = rules.as_array().expect("array");
    assert!(rules.len() >= 40, "only {} rules", rules.len());
    let lks = rules
        .iter()
        .find(|r| r["id"] == "leakstop-token")
        .expect("leakstop-token listed");
    assert_eq!(lks["severity"], "critical");
    assert_eq!(lks["check"], "leakstop-crc32");
}

#[test]
fn check_validates_the_builtin_rules_and_the_repository_rule_files() {
    let dir = tempdir();
    let out = leakstop(dir.path(), &["rules", "check"]);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("valid"), "{}", out.stdout);
    // Each rule file checks as it is embedded (built-in rules keep the placeholder guard).
    for entry in std::fs::read_dir(repo_root().join("rules")).expect("rules/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = leakstop(dir.path(), &["rules", "check", path.to_str().expect("utf-8 path")]);
            assert!(out.status.success(), "{}: {}", path.display(), out.stderr);
        }
    }
}

#[test]
fn check_reports_every_problem_of_every_rule_with_its_line_and_exits_2() {
    let dir = tempdir();
    let file = dir.path().join("acme.toml");
    std::fs::write(
        &file,
        r#"
[[rule]]
id = "acme-key"
description = "ACME API key"
severity = "urgent"
check = "luhn-ish"
keywords = ["acme_"]
regex = '''acme_[0-9a-f]{32}'''
examples = ["acme_0f1e2d3c4b5a69788796a5b4c3d2e1f0"]
negative_examples = ["none"]

[[rule]]
id = "acme-other"
description = "ACME other key"
severity = "high"
keywords = ["acmeo_"]
regex = '''acmeo_[0-9a-f]{8}'''
check = "luhn"
examples = ["acmeo_0f1e2d3c"]
negative_examples = ["none"]
"#,
    )
    .expect("write rule file");
    let out = leakstop(dir.path(), &["rules", "check", "acme.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    let err = &out.stderr;
    // Both problems of the first rule, not just the first one found, each with the line of its rule.
    assert!(err.contains("acme.toml:2: rule `acme-key`: field `severity`"), "{err}");
    assert!(err.contains("acme.toml:2: rule `acme-key`: field `check`"), "{err}");
    assert!(err.contains("acme.toml:12: rule `acme-other`: field `check`"), "{err}");
    assert!(err.contains("3 problem(s)"), "{err}");

    // A broken rule does not hide a valid rule's failing example: one run reports both.
    std::fs::write(
        &file,
        "[[rule]]\nid = \"acme-key\"\ndescription = \"d\"\nseverity = \"high\"\nkeywords = [\"acme_\"]\n\
         regex = '''acme_[0-9a-f]{8}'''\nexamples = [\"acme_0f1e2d3c\"]\nnegative_examples = [\"acme_1a2b3c4d\"]\n\n\
         [[rule]]\nid = \"Bad Id\"\ndescription = \"d\"\nseverity = \"high\"\nkeywords = [\"x\"]\nregex = '''x'''\n\
         examples = [\"x\"]\nnegative_examples = [\"y\"]\n",
    )
    .expect("write rule file");
    let out = leakstop(dir.path(), &["rules", "check", "acme.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = &out.stderr;
    assert!(err.contains("acme.toml:10: rule `Bad Id`: field `id`"), "{err}");
    assert!(err.contains("negative_examples[0]"), "{err}");

    // TOML syntax errors point at a line and column, not a byte offset.
    std::fs::write(&file, "[[rule]]\nid = \"a\"\nseverity = high\n").expect("write rule file");
    let out = leakstop(dir.path(), &["rules", "check", "acme.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = &out.stderr;
    assert!(err.contains("acme.toml:3:12"), "{err}");
    assert!(!err.contains("byte"), "{err}");

    // A rule whose negative example matches fails the example run.
    std::fs::write(
        &file,
        "[[rule]]\nid = \"acme-key\"\ndescription = \"d\"\nseverity = \"high\"\nkeywords = [\"acme_\"]\n\
         regex = '''acme_[0-9a-f]{8}'''\nexamples = [\"acme_0f1e2d3c\"]\nnegative_examples = [\"acme_1a2b3c4d\"]\n",
    )
    .expect("write rule file");
    let out = leakstop(dir.path(), &["rules", "check", "acme.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("negative_examples[0]"), "{}", out.stderr);
}

#[test]
fn check_accepts_a_gitleaks_config_and_explains_what_it_cannot_map() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join(".gitleaks.toml"),
        "[extend]\nuseDefault = true\n\n[[rules]]\nid = \"acme-key\"\nregex = '''acme_([0-9a-f]{32})'''\n\
         keywords = [\"acme_\"]\n\n[[rules]]\nid = \"pem-files\"\npath = '''\\.pem$'''\n",
    )
    .expect("write config");
    let out = leakstop(dir.path(), &["rules", "check", ".gitleaks.toml"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("pem-files"),
        "path-only rule is explained: {}",
        out.stderr
    );

    let out = leakstop(dir.path(), &["rules", "list", "--config", ".gitleaks.toml"]);
    assert!(out.status.success());
    assert!(out.stdout.lines().any(|l| l.starts_with("acme-key ")));
    assert!(
        out.stdout.lines().any(|l| l.starts_with("github-pat-classic ")),
        "useDefault keeps builtin rules"
    );
}

#[test]
fn list_has_a_header_with_the_count_and_shows_what_a_scan_there_would_use() {
    let dir = tempdir();
    let out = leakstop(dir.path(), &["rules", "list"]);
    let text = &out.stdout;
    let first = text.lines().next().unwrap_or_default();
    let listed = text.lines().skip(2).filter(|l| !l.trim().is_empty()).count();
    assert!(listed >= 40, "{text}");
    assert_eq!(first, format!("{listed} built-in rule(s):"), "{text}");
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("ID ") && l.contains("SEVERITY"))
    );

    // A repository whose root holds a gitleaks config without useDefault, listed from a subdirectory: its rule
    // only, a count saying where they come from, and a warning that the built-in rules are off.
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".git")).expect("mkdir");
    std::fs::create_dir_all(repo.join("src/deep")).expect("mkdir");
    std::fs::write(
        repo.join(".gitleaks.toml"),
        "[[rules]]\nid = \"acme-key\"\nregex = '''acme_[0-9a-f]{32}'''\nkeywords = [\"acme_\"]\n",
    )
    .expect("write config");
    let out = leakstop(&repo.join("src/deep"), &["rules", "list"]);
    assert!(out.status.success(), "{}", out.stderr);
    let text = &out.stdout;
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("1 rule(s) from ") && first.contains(".gitleaks.toml"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("acme-key ")), "{text}");
    assert!(!text.contains("github-pat-classic"), "{text}");
    assert!(out.stderr.contains("useDefault = true"), "{}", out.stderr);
}
