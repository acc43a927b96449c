//! A broken rule file must say which file, which rule and which field is wrong, so it can be fixed at once.
#![forbid(unsafe_code)]

use leakstop_rules::RuleSet;

const GOOD: &str = r#"
[[rule]]
id = "acme-key"
description = "ACME API key"
severity = "high"
keywords = ["acme_"]
regex = '''\b(?P<secret>acme_[0-9a-f]{32})\b'''
examples = ["ACME=acme_0f1e2d3c4b5a69788796a5b4c3d2e1f0"]
negative_examples = ["acme_ not a key"]
"#;

fn err(src: &str) -> String {
    match RuleSet::from_toml_str(src, "rules/acme.toml") {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e.to_string(),
    }
}

fn assert_names(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} should mention {p:?}");
    }
}

#[test]
fn good_file_loads_and_finds_its_example() {
    let set = RuleSet::from_toml_str(GOOD, "rules/acme.toml").expect("valid");
    let rule = set.get("acme-key").expect("rule present");
    let ex = rule.examples[0].as_bytes();
    let m = rule.find_iter(ex);
    assert_eq!(m.len(), 1);
    assert_eq!(&ex[m[0].secret.clone()], b"acme_0f1e2d3c4b5a69788796a5b4c3d2e1f0");
}

#[test]
fn bad_regex_names_file_rule_and_field() {
    let msg = err(&GOOD.replace(r"[0-9a-f]{32}", r"[0-9a-f{32}"));
    assert_names(&msg, &["rules/acme.toml", "acme-key", "`regex`"]);
}

#[test]
fn unknown_check_is_rejected() {
    let msg = err(&GOOD.replace("severity = \"high\"", "severity = \"high\"\ncheck = \"luhn-ish\""));
    assert_names(
        &msg,
        &["rules/acme.toml", "acme-key", "`check`", "luhn-ish", "github-crc32"],
    );
}

#[test]
fn unknown_severity_is_rejected() {
    let msg = err(&GOOD.replace("\"high\"", "\"urgent\""));
    assert_names(&msg, &["acme-key", "`severity`", "urgent", "critical"]);
}

#[test]
fn missing_examples_are_rejected() {
    let msg = err(&GOOD.replace("examples = [\"ACME=acme_0f1e2d3c4b5a69788796a5b4c3d2e1f0\"]\n", ""));
    assert_names(&msg, &["acme-key", "`examples`"]);
    let msg = err(&GOOD.replace("negative_examples = [\"acme_ not a key\"]\n", ""));
    assert_names(&msg, &["acme-key", "`negative_examples`"]);
}

#[test]
fn missing_field_is_named() {
    let msg = err(&GOOD.replace("keywords = [\"acme_\"]\n", ""));
    assert_names(&msg, &["acme-key", "`keywords`"]);
    let msg = err(&GOOD.replace("description = \"ACME API key\"\n", ""));
    assert_names(&msg, &["acme-key", "`description`"]);
}

#[test]
fn unknown_key_is_rejected() {
    let msg = err(&GOOD.replace("severity = \"high\"", "severity = \"high\"\nsecretGroup = 1"));
    assert_names(&msg, &["rules/acme.toml", "acme-key", "secretGroup"]);
}

#[test]
fn duplicate_id_is_rejected() {
    let msg = err(&format!("{GOOD}\n{GOOD}"));
    assert_names(&msg, &["rules/acme.toml", "acme-key", "twice"]);
}

#[test]
fn invalid_toml_names_file() {
    let msg = err("[[rule]\nid = 1");
    assert_names(&msg, &["rules/acme.toml", "TOML"]);
}

#[test]
fn failing_examples_are_all_reported() {
    let src = GOOD.replace(
        "negative_examples = [\"acme_ not a key\"]",
        "negative_examples = [\"acme_00112233445566778899aabbccddeeff\", \"acme_ffeeddccbbaa99887766554433221100\"]",
    );
    let set = RuleSet::from_toml_str(&src, "rules/acme.toml").expect("structurally valid");
    let e = set.check_examples().expect_err("negatives match");
    assert_eq!(e.problems().len(), 2, "{e}");
    assert_names(
        &e.to_string(),
        &["negative_examples[0]", "negative_examples[1]", "acme-key"],
    );
}
