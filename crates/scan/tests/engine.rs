//! The engine on small rule sets written for the test: prefilter, locations, `requires`, path filters,
//! allowlists, inline markers, generic-vs-specific overlap, baselines.
#![forbid(unsafe_code)]

use leakstop_rules::RuleSet;
use leakstop_scan::{Baseline, ScanOptions, Scanner};

const RULES: &str = r#"
[[rule]]
id = "acme-key"
description = "Acme API key"
severity = "high"
keywords = ["acme_"]
regex = '''\b(?P<secret>acme_[0-9a-zA-Z]{24})\b'''
examples = ["k = acme_Zq81LmXv0PaT4rWc9sYbN2Ke"]
negative_examples = ["k = acme_short"]

[[rule]]
id = "acme-secret"
description = "Acme API secret (only next to a key)"
severity = "critical"
keywords = ["acme_secret"]
regex = '''acme_secret\s*=\s*(?P<secret>[0-9a-f]{32})'''
requires = { rule = "acme-key", within_lines = 2 }
examples = ["acme_secret = 5f2b9c0e7a4d3816b2c9e0f1a7d64b3c"]
negative_examples = ["acme_secret = nothex"]

[[rule]]
id = "tf-token"
description = "Token in a Terraform file"
severity = "medium"
keywords = ["tftok"]
regex = '''tftok(?P<secret>[0-9A-Z]{20})'''
path = '''\.tf$'''
examples = ["tftokQ7W3E9R1T5Y2U8I4O6P0"]
negative_examples = ["tftok"]

[[rule]]
id = "generic-assignment"
description = "Generic secret assignment"
severity = "low"
keywords = ["key"]
regex = '''key\s*=\s*(?P<secret>[0-9a-zA-Z_]{16,})'''
tags = ["generic"]
examples = ["key = Zq81LmXv0PaT4rWc9sYbN2Ke"]
negative_examples = ["key = short"]
"#;

const KEY: &str = "acme_Zq81LmXv0PaT4rWc9sYbN2Ke";
const SECRET: &str = "5f2b9c0e7a4d3816b2c9e0f1a7d64b3c";

fn scanner(opts: ScanOptions) -> Scanner {
    let rules = RuleSet::from_toml_str(RULES, "test.toml").expect("test rules load");
    Scanner::new(rules, opts).unwrap()
}

#[test]
fn locations_are_one_based_in_characters_of_the_secret() {
    let s = scanner(ScanOptions::default());
    let data = format!("# café ünïcode\n\tlet é = \"{KEY}\";\n");
    let f = s.scan_blob(data.as_bytes(), "src/a.rs");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].rule_id, "acme-key");
    assert_eq!((f[0].line, f[0].column), (2, 11));
    assert_eq!((f[0].end_line, f[0].end_column), (2, 11 + KEY.len() as u32 - 1));
    assert_eq!(f[0].path, "src/a.rs");
    assert!(
        !format!("{:?}", f[0]).contains(&KEY[5..]),
        "Debug must not show the secret"
    );
}

#[test]
fn prefilter_keyword_is_case_insensitive_and_gates_rules() {
    let s = scanner(ScanOptions::default());
    assert!(!s.might_match(b"nothing to see here"));
    assert!(s.might_match(b"ACME_ in caps"));
    assert!(s.scan_blob(b"nothing to see here", "x").is_empty());
}

#[test]
fn requires_only_reports_the_secret_near_its_key() {
    let s = scanner(ScanOptions::default());
    let near = format!("id = {KEY}\nacme_secret = {SECRET}\n");
    let ids: Vec<String> = s
        .scan_blob(near.as_bytes(), "a")
        .into_iter()
        .map(|f| f.rule_id)
        .collect();
    assert_eq!(ids, ["acme-key", "acme-secret"]);

    let far = format!("id = {KEY}\n\n\n\n\nacme_secret = {SECRET}\n");
    let ids: Vec<String> = s
        .scan_blob(far.as_bytes(), "a")
        .into_iter()
        .map(|f| f.rule_id)
        .collect();
    assert_eq!(ids, ["acme-key"]);

    let alone = format!("acme_secret = {SECRET}\n");
    assert!(s.scan_blob(alone.as_bytes(), "a").is_empty());
}

#[test]
fn path_restricted_rules_apply_only_to_their_files() {
    let s = scanner(ScanOptions::default());
    let data = b"token = \"tftokQ7W3E9R1T5Y2U8I4O6P0\"\n";
    assert_eq!(s.scan_blob(data, "infra/main.tf").len(), 1);
    assert!(s.scan_blob(data, "infra/main.py").is_empty());
}

#[test]
fn generic_rule_is_shadowed_by_a_specific_rule_on_the_same_secret() {
    let s = scanner(ScanOptions::default());
    let data = format!("key = {KEY}\nkey = Xw93NcPq7LmZ2RtY8vB4\n");
    let got: Vec<(String, u32)> = s
        .scan_blob(data.as_bytes(), "a")
        .into_iter()
        .map(|f| (f.rule_id, f.line))
        .collect();
    assert_eq!(
        got,
        [("acme-key".to_string(), 1), ("generic-assignment".to_string(), 2)]
    );
}

#[test]
fn inline_markers_allow_their_line_only() {
    let s = scanner(ScanOptions::default());
    let data = format!("a = {KEY} # leakstop:allow\nb = {KEY}\nc = {KEY} // pragma: allowlist secret\n");
    let lines: Vec<u32> = s.scan_blob(data.as_bytes(), "a").into_iter().map(|f| f.line).collect();
    assert_eq!(lines, [2]);
}

#[test]
fn fingerprint_is_stable_across_paths_and_lines_and_baseline_drops_known() {
    let s = scanner(ScanOptions::default());
    let a = s.scan_blob(format!("x = {KEY}\n").as_bytes(), "one.py");
    let b = s.scan_blob(format!("\n\n\n   y = {KEY}\n").as_bytes(), "dir/two.py");
    assert_eq!(a[0].fingerprint, b[0].fingerprint);

    let mut baseline = Baseline::new();
    baseline.add_fingerprint(&a[0].fingerprint);
    let s = scanner(ScanOptions {
        baseline: Some(baseline),
        ..ScanOptions::default()
    });
    assert!(s.scan_blob(format!("z = {KEY}\n").as_bytes(), "three.py").is_empty());
    assert_eq!(s.scan_blob(b"z = acme_Pq81LmXv0PaT4rWc9sYbN2Kf\n", "three.py").len(), 1);
}

#[test]
fn different_keys_give_different_fingerprints() {
    let s1 = scanner(ScanOptions::default());
    let s2 = scanner(ScanOptions {
        fingerprint_key: b"org-key".to_vec(),
        ..ScanOptions::default()
    });
    let d = format!("x = {KEY}\n");
    assert_ne!(
        s1.scan_blob(d.as_bytes(), "a")[0].fingerprint,
        s2.scan_blob(d.as_bytes(), "a")[0].fingerprint
    );
}

#[test]
fn gitleaksignore_lines_map_to_locations_and_report_unknown_rules() {
    let s = scanner(ScanOptions::default());
    let found = s.scan_blob(format!("\nx = {KEY}\n").as_bytes(), "src/app.py");
    let is_rule = |id: &str| id == "acme-key";
    let text = "# reviewed\nsrc/app.py:acme-key:2\n0123456789abcdef0123456789abcdef01234567:src/app.py:acme-key:2\nlib.py:aws-access-token:9\n";
    let b = Baseline::parse(text, std::path::Path::new(".gitleaksignore"), &is_rule).unwrap();
    assert!(b.suppresses(&found[0]));
    assert_eq!(b.notes.len(), 1, "{:?}", b.notes);
    assert!(b.notes[0].contains("aws-access-token"));

    let err = Baseline::parse("garbage\n", std::path::Path::new(".gitleaksignore"), &is_rule).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(".gitleaksignore") && msg.contains("line 1"), "{msg}");
}

#[test]
fn scan_paths_walks_in_parallel_and_reports_sorted_findings() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..30 {
        std::fs::write(dir.path().join(format!("f{i:02}.txt")), format!("k{i} = {KEY}\n")).unwrap();
    }
    std::fs::write(dir.path().join("bin.dat"), format!("\0{KEY}")).unwrap();
    let s = scanner(ScanOptions {
        threads: 2,
        ..ScanOptions::default()
    });
    let sum = s.scan_paths(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(sum.findings.len(), 30);
    assert_eq!(sum.files_scanned, 30);
    assert_eq!(sum.skipped_binary, 1);
    let paths: Vec<&str> = sum.findings.iter().map(|f| f.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);

    let err = s.scan_paths(&[dir.path().join("missing")]).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
