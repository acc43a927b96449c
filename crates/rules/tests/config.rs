//! User configuration: .leakstop.toml overrides/extensions and .gitleaks.toml import.
#![forbid(unsafe_code)]

use std::path::Path;

use leakstop_rules::RuleSet;
use leakstop_rules::config::{discover, load_config};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

fn found(set: &RuleSet, id: &str, text: &str) -> bool {
    set.get(id)
        .unwrap_or_else(|| panic!("rule {id} missing"))
        .find_iter(text.as_bytes())
        .len()
        == 1
}

#[test]
fn leakstop_config_adds_overrides_disables_and_allowlists() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        ".leakstop.toml",
        r#"
[extend]
disable = ["uri-http-basic-auth", "no-such-rule"]

[[rule]]
id = "acme-key"
description = "ACME API key"
severity = "critical"
keywords = ["acme_"]
regex = '''\b(acme_[0-9a-f]{32})\b'''
examples = ["acme_0f1e2d3c4b5a69788796a5b4c3d2e1f0"]
negative_examples = ["acme_123"]

[[rule]]
id = "jwt"
description = "JWT (ours: info only)"
severity = "info"
keywords = ["eyj"]
regex = '''(eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})'''
examples = ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLWJ5dGVz"]
negative_examples = ["eyJ"]

[allowlist]
paths = ['''^fixtures/''']
stopwords = ["0f1e2d3c"]
"#,
    );
    let cfg = discover(dir.path()).expect("valid config").expect("config found");
    let rules = &cfg.rules;
    assert!(
        rules.get("github-pat-classic").is_some(),
        "builtin rules are kept by default"
    );
    assert!(rules.get("uri-http-basic-auth").is_none(), "disabled rule is gone");
    assert!(
        cfg.notes.iter().any(|n| n.contains("no-such-rule")),
        "unknown disable id is reported: {:?}",
        cfg.notes
    );
    assert!(found(rules, "acme-key", "k=acme_a1b2c3d4e5f60718293a4b5c6d7e8f90"));
    let jwt = rules.get("jwt").expect("overridden rule present");
    assert_eq!(
        jwt.severity,
        leakstop_rules::Severity::Info,
        "same id replaces the builtin rule"
    );
    assert_eq!(rules.rules().iter().filter(|r| r.id == "jwt").count(), 1);
    assert!(rules.global_allow().allows_path("fixtures/keys.txt"));
    assert!(
        rules
            .global_allow()
            .allows_secret(b"acme_0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    );
    assert!(!rules.global_allow().allows_path("src/main.rs"));
}

#[test]
fn use_default_false_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), ".leakstop.toml", "[extend]\nuse_default = false\n");
    let cfg = load_config(&p).expect("valid");
    assert!(cfg.rules.is_empty());
}

#[test]
fn leakstop_config_errors_name_file_rule_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        ".leakstop.toml",
        "[[rule]]\nid = \"x-key\"\ndescription = \"d\"\nseverity = \"high\"\nkeywords = [\"x\"]\nregex = '''(x'''\nexamples = [\"x\"]\nnegative_examples = [\"y\"]\n",
    );
    let e = load_config(&p).expect_err("bad regex").to_string();
    assert!(
        e.contains(".leakstop.toml") && e.contains("x-key") && e.contains("`regex`"),
        "{e}"
    );
    let p = write(dir.path(), ".leakstop.toml", "[extend]\nusedefault = true\n");
    let e = load_config(&p).expect_err("unknown key").to_string();
    assert!(e.contains("usedefault"), "{e}");
}

/// A config as a gitleaks user would have it: extends the default set, custom rules with secretGroup, entropy,
/// keywords, path and both allowlist syntaxes, a global allowlist, targeted [[allowlists]], a composite rule and
/// RE2-only syntax.
const GITLEAKS: &str = r#"
title = "acme gitleaks config"

[extend]
useDefault = true
disabledRules = ["generic-api-key", "aws-access-token"]

[[rules]]
id = "acme-internal-token"
description = "ACME internal service token"
regex = '''(?i)acme[_-]?token\s*[:=]\s*["']?(atk_[a-z0-9]{24})'''
secretGroup = 1
entropy = 3.0
keywords = ["ACME_TOKEN", "acme-token"]
tags = ["acme", "internal"]

  [rules.allowlist]
  regexes = ['''atk_0{24}''']
  stopwords = ["testtoken"]

[[rules]]
id = "acme-legacy-key"
description = "ACME legacy key (quoted literal prefix)"
regex = '''\Qacme.key=\E([A-Z0-9]{20})'''
keywords = ["acme.key="]
path = '''\.properties$'''

  [[rules.allowlists]]
  regexTarget = "line"
  regexes = ['''legacy-ok''']

  [[rules.allowlists]]
  condition = "AND"
  paths = ['''^test/''']
  regexes = ['''^ZZ''']

[[rules]]
id = "acme-secret"
description = "ACME secret, only next to an ACME token"
regex = '''acme_secret\s*=\s*([A-Za-z0-9]{32})'''
keywords = ["acme_secret"]
skipReport = false
  [[rules.required]]
  id = "acme-internal-token"
  withinLines = 3
  withinColumns = 40

[[rules]]
id = "acme-key-file"
description = "ACME key file by name"
path = '''acme\.pem$'''

[allowlist]
description = "global"
paths = ['''(^|/)vendor/''']
commits = ["a1b2c3d4e5f6"]

[[allowlists]]
targetRules = ["acme-internal-token"]
regexes = ['''atk_allowed[a-z0-9]{13}''']

[[allowlists]]
description = "docs"
stopwords = ["docs-example"]
"#;

#[test]
fn gitleaks_config_is_imported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), ".gitleaks.toml", GITLEAKS);
    let cfg = discover(dir.path()).expect("imports").expect("found");
    let rules = &cfg.rules;
    let notes = cfg.notes.join("\n");

    // useDefault keeps leakstop's builtin set; disabledRules applies to ids that exist, the others are explained.
    assert!(rules.get("github-pat-classic").is_some());
    assert!(rules.get("generic-api-key").is_none(), "disabled");
    assert!(notes.contains("aws-access-token"), "{notes}");

    // Custom rule with secretGroup, entropy, lowercased keywords and its allowlist.
    let r = rules.get("acme-internal-token").expect("imported");
    assert_eq!(r.keywords, vec!["acme_token", "acme-token"]);
    let text = "ACME_TOKEN = 'atk_q8z2m4x7c1v9b3n5k0l6j2h8'";
    let m = r.find_iter(text.as_bytes());
    assert_eq!(m.len(), 1);
    assert_eq!(&text.as_bytes()[m[0].secret.clone()], b"atk_q8z2m4x7c1v9b3n5k0l6j2h8");
    assert!(
        r.find_iter(b"ACME_TOKEN=atk_000000000000000000000000").is_empty(),
        "rule allowlist regex"
    );
    assert!(
        r.find_iter(b"acme-token: atk_testtoken0123456789abcd").is_empty(),
        "rule allowlist stopword"
    );
    assert!(
        r.find_iter(b"acme_token=atk_allowedq8z2m4x7c1v9b").is_empty(),
        "targeted [[allowlists]]"
    );

    // \Q...\E translated; path kept; regexTarget = line; AND condition needs path and regex together.
    let r = rules.get("acme-legacy-key").expect("imported");
    assert!(r.path.as_ref().expect("path").is_match("conf/app.properties"));
    assert_eq!(r.find_iter(b"acme.key=AB12CD34EF56GH78IJ90").len(), 1);
    assert!(r.find_iter(b"acme.key=AB12CD34EF56GH78IJ90 # legacy-ok").is_empty());
    assert!(
        r.allow
            .allows_finding(b"ZZ12CD34EF56GH78IJ90", b"", b"", "test/a.properties", None)
    );
    assert!(
        !r.allow
            .allows_finding(b"ZZ12CD34EF56GH78IJ90", b"", b"", "src/a.properties", None)
    );

    // Composite rule -> requires; withinColumns is explained.
    let req = rules
        .get("acme-secret")
        .and_then(|r| r.requires.clone())
        .expect("requires mapped");
    assert_eq!((req.rule.as_str(), req.within_lines), ("acme-internal-token", 3));
    assert!(notes.contains("withinColumns"), "{notes}");

    // Path-only rule cannot be represented: explained, not silently dropped.
    assert!(rules.get("acme-key-file").is_none());
    assert!(notes.contains("acme-key-file"), "{notes}");

    // Global allowlists.
    let g = rules.global_allow();
    assert!(g.allows_path("third_party/vendor/lib.go"));
    assert!(g.allows_commit("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"));
    assert!(g.allows_secret(b"token-docs-example-123"));
    assert!(!g.allows_path("src/lib.go"));
}

#[test]
fn gitleaks_extend_path_is_followed_and_errors_name_the_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "base.toml",
        "[[rules]]\nid = \"base-rule\"\nregex = '''base_[0-9]{8}'''\nkeywords = [\"base_\"]\n",
    );
    let p = write(dir.path(), ".gitleaks.toml", "[extend]\npath = \"base.toml\"\n");
    let cfg = load_config(&p).expect("imports");
    assert!(cfg.rules.get("base-rule").is_some());
    assert!(
        cfg.rules.get("github-pat-classic").is_none(),
        "no useDefault: only the configured rules, as gitleaks"
    );

    let p = write(
        dir.path(),
        ".gitleaks.toml",
        "[[rules]]\nid = \"broken\"\nregex = '''x'''\n[rules.allowlist]\nregexes = ['''(unclosed''']\n",
    );
    let e = load_config(&p).expect_err("bad allowlist regex").to_string();
    assert!(
        e.contains(".gitleaks.toml") && e.contains("broken") && e.contains("allowlist.regexes[0]"),
        "{e}"
    );
}
