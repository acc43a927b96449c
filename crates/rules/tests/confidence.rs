//! Per-rule confidence: written in a rule, or derived from its shape; every built-in rule has one, and the
//! checksummed formats are the sure ones.
use leakstop_rules::{Confidence, RuleSet};

fn one(extra: &str, regex: &str, id: &str) -> Confidence {
    let src = format!(
        "[[rule]]\nid = \"{id}\"\ndescription = \"d\"\nseverity = \"high\"\nkeywords = [\"zz\"]\nregex = '''{regex}'''\n\
         {extra}\nexamples = [\"zz\"]\nnegative_examples = [\"y\"]\n"
    );
    let set = RuleSet::from_toml_str(&src, "t.toml").unwrap_or_else(|e| panic!("{e}\n{src}"));
    set.rules()[0].confidence
}

#[test]
fn confidence_is_derived_from_the_rule_shape_unless_written() {
    // A distinctive fixed prefix: high.
    assert_eq!(
        one("", r"\b(?P<secret>zzqa_[0-9A-Za-z]{30})\b", "acme-token"),
        Confidence::High
    );
    assert_eq!(
        one("", r"\b(?P<secret>(?:ZZKA|ZZSA)[A-Z2-7]{16})\b", "acme-id"),
        Confidence::High
    );
    // A value found through its keyword only: medium.
    assert_eq!(
        one("", r"zz[\w.-]{0,20}?=\s*(?P<secret>[0-9a-f]{32})", "acme-secret"),
        Confidence::Medium
    );
    // A generic rule: low.
    assert_eq!(one("", r"zz\s*=\s*(?P<secret>\S{12,})", "generic-zz"), Confidence::Low);
    // A verified format: high even without a prefix.
    assert_eq!(
        one("check = \"jwt\"", r"(?P<secret>zz[\w.]+)", "acme-jwt"),
        Confidence::High
    );
    // Written explicitly: wins.
    assert_eq!(
        one(
            "confidence = \"low\"",
            r"\b(?P<secret>zzqa_[0-9A-Za-z]{30})\b",
            "acme-token"
        ),
        Confidence::Low
    );
}

#[test]
fn an_unknown_confidence_is_a_clear_error() {
    let src = "[[rule]]\nid = \"a\"\ndescription = \"d\"\nseverity = \"high\"\nconfidence = \"sure\"\nkeywords = [\"zz\"]\n\
               regex = 'zz'\nexamples = [\"zz\"]\nnegative_examples = [\"y\"]\n";
    let e = RuleSet::from_toml_str(src, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("confidence") && e.contains("sure") && e.contains("low, medium, high"),
        "{e}"
    );
}

#[test]
fn builtin_confidences_span_all_levels_and_checksummed_rules_are_high() {
    let set = RuleSet::builtin();
    for level in [Confidence::Low, Confidence::Medium, Confidence::High] {
        assert!(
            set.rules().iter().any(|r| r.confidence == level),
            "no builtin rule at {level}"
        );
    }
    for id in [
        "github-pat-classic",
        "npm-access-token",
        "pypi-token",
        "grafana-service-account-token",
        "jwt",
    ] {
        let r = set.get(id).unwrap_or_else(|| panic!("builtin rule {id}"));
        assert_eq!(r.confidence, Confidence::High, "{id}");
    }
    assert_eq!(
        set.get("generic-password").expect("generic-password").confidence,
        Confidence::Low
    );
}
