//! Confidence in findings: carried from the rule, shown by every reporter, mapped to SARIF level/rank, and
//! filtered by `min_confidence` (option or the config's `[scan]` section).

use leakstop_rules::{Confidence, RuleSet};
use leakstop_scan::report::{self, Format, ReportOptions};
use leakstop_scan::{Finding, ScanOptions, Scanner, Setup, SetupRequest};
use serde_json::Value;

const RULES: &str = r#"
[[rule]]
id = "acme-token"
description = "Acme token"
severity = "high"
keywords = ["acmt_"]
regex = '''\b(?P<secret>acmt_[0-9a-zA-Z]{24})\b'''
examples = ["acmt_Zq81LmXv0PaT4rWc9sYbN2Ke"]
negative_examples = ["acmt_short"]

[[rule]]
id = "generic-thing"
description = "Secret-named assignment"
severity = "high"
keywords = ["thing_secret"]
regex = '''thing_secret\s*=\s*(?P<secret>[0-9a-zA-Z]{16,})'''
examples = ["thing_secret = Hq72LmXv0PaT4rWc9sYb"]
negative_examples = ["thing_secret = short"]
"#;

const DATA: &str = "a = acmt_Zq81LmXv0PaT4rWc9sYbN2Ke\nthing_secret = Hq72LmXv0PaT4rWc9sYb\n";

fn findings(min: Option<Confidence>) -> Vec<Finding> {
    let rules = RuleSet::from_toml_str(RULES, "t.toml").expect("rules");
    let s = Scanner::new(
        rules,
        ScanOptions {
            min_confidence: min,
            ..ScanOptions::default()
        },
    )
    .expect("scanner");
    s.scan_blob(DATA.as_bytes(), "app.cfg")
}

fn report(f: &[Finding], fmt: Format) -> String {
    let mut out = Vec::new();
    report::write(f, fmt, &mut out, &ReportOptions::default()).expect("report");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn findings_carry_their_rules_confidence_and_min_confidence_hides_weaker_ones() {
    let all = findings(None);
    let by_rule: Vec<(&str, Confidence)> = all.iter().map(|f| (f.rule_id.as_str(), f.confidence)).collect();
    assert_eq!(
        by_rule,
        [("acme-token", Confidence::High), ("generic-thing", Confidence::Low)]
    );
    let medium: Vec<String> = findings(Some(Confidence::Medium))
        .into_iter()
        .map(|f| f.rule_id)
        .collect();
    assert_eq!(medium, ["acme-token"]);
    assert_eq!(findings(Some(Confidence::Low)).len(), 2);
    assert_eq!(findings(Some(Confidence::High)).len(), 1);
}

#[test]
fn every_report_format_shows_confidence() {
    let f = findings(None);
    let text = report(&f, Format::Text);
    assert!(
        text.contains("high (high confidence): Acme token [acme-token]"),
        "{text}"
    );
    assert!(
        text.contains("high (low confidence): Secret-named assignment [generic-thing]"),
        "{text}"
    );

    let json: Vec<Value> = serde_json::from_str(&report(&f, Format::Json)).expect("json");
    let conf: Vec<&str> = json
        .iter()
        .map(|v| v["confidence"].as_str().expect("confidence"))
        .collect();
    assert_eq!(conf, ["high", "low"]);
    let lines: Vec<Value> = report(&f, Format::Jsonl)
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect();
    assert_eq!(lines[1]["confidence"], "low");

    let sarif: Value = serde_json::from_str(&report(&f, Format::Sarif)).expect("sarif");
    let run = &sarif["runs"][0];
    let results = run["results"].as_array().expect("results");
    // Same severity, but the low-confidence result is a warning with a lower rank, not a blocking error.
    assert_eq!(results[0]["level"], "error");
    assert_eq!(results[1]["level"], "warning");
    assert!(results[0]["rank"].as_f64() > results[1]["rank"].as_f64());
    assert_eq!(results[1]["properties"]["confidence"], "low");
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let precision: Vec<&str> = rules
        .iter()
        .map(|r| r["properties"]["precision"].as_str().expect("precision"))
        .collect();
    assert_eq!(precision, ["very-high", "medium"]);
}

#[test]
fn config_scan_section_sets_the_default_and_an_option_overrides_it() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join(".leakstop.toml"), "[scan]\nmin_confidence = \"high\"\n").expect("write");
    let req = SetupRequest {
        start: dir.path().to_path_buf(),
        use_baseline: true,
        ..SetupRequest::default()
    };
    let setup = Setup::discover(&req).expect("setup");
    assert_eq!(setup.min_confidence, Some(Confidence::High));
    let scanner = setup.clone().scanner(ScanOptions::default()).expect("scanner");
    assert_eq!(scanner.options().min_confidence, Some(Confidence::High));
    let low = ScanOptions {
        min_confidence: Some(Confidence::Low),
        ..ScanOptions::default()
    };
    assert_eq!(
        setup.scanner(low).expect("scanner").options().min_confidence,
        Some(Confidence::Low)
    );

    std::fs::write(
        dir.path().join(".leakstop.toml"),
        "[scan]\nmin_confidence = \"certain\"\n",
    )
    .expect("write");
    let e = Setup::discover(&req).expect_err("bad value").to_string();
    assert!(e.contains("min_confidence") && e.contains("certain"), "{e}");
}
