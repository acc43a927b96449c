//! The overlap rule between generic rules: a `generic-*` catch-all yields to a generic-tagged rule that knows the
//! secret's context, which yields in turn to a specific rule.
#![forbid(unsafe_code)]

use leakstop_rules::RuleSet;
use leakstop_scan::{ScanOptions, Scanner};

const RULES: &str = r#"
[[rule]]
id = "acme-token"
description = "Acme token"
severity = "high"
keywords = ["acme_"]
regex = '''\b(?P<secret>acme_[0-9a-zA-Z]{20})\b'''
examples = ["acme_Zq81LmXv0PaT4rWc9sYb"]
negative_examples = ["acme_short"]

[[rule]]
id = "tool-config-password"
description = "Password field of a tool's config file"
severity = "high"
keywords = ["tool_pass"]
regex = '''tool_pass\s*=\s*(?P<secret>\S{8,})'''
tags = ["generic"]
examples = ["tool_pass = Zq81LmXv0P"]
negative_examples = ["tool_pass = short"]

[[rule]]
id = "generic-assignment"
description = "Anything assigned"
severity = "high"
keywords = ["="]
regex = '''=\s*(?P<secret>\S{8,})'''
tags = ["generic"]
examples = ["x = Zq81LmXv0P"]
negative_examples = ["x = short"]
"#;

fn found(data: &str) -> Vec<String> {
    let rules = RuleSet::from_toml_str(RULES, "test.toml").expect("valid rules");
    let s = Scanner::new(rules, ScanOptions::default()).expect("scanner");
    s.scan_blob(data.as_bytes(), "a")
        .into_iter()
        .map(|f| f.rule_id)
        .collect()
}

#[test]
fn catch_all_yields_to_a_context_rule_which_yields_to_a_specific_rule() {
    assert_eq!(found("tool_pass = Xw93NcPq7LmZ\n"), ["tool-config-password"]);
    assert_eq!(found("tool_pass = acme_Zq81LmXv0PaT4rWc9sYb\n"), ["acme-token"]);
    assert_eq!(found("other = Xw93NcPq7LmZ\n"), ["generic-assignment"]);
}
