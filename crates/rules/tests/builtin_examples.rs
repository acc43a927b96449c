//! Every builtin rule proves itself: each positive example must match, each negative example must not.
#![forbid(unsafe_code)]

use leakstop_rules::RuleSet;

#[test]
fn builtin_rule_files_are_valid() {
    if let Err(e) = RuleSet::builtin_strict() {
        panic!("builtin rule files are invalid:\n{e}");
    }
}

#[test]
fn every_builtin_example_behaves() {
    let set = RuleSet::builtin_strict().unwrap_or_else(|e| panic!("builtin rule files are invalid:\n{e}"));
    assert!(!set.is_empty(), "no builtin rules were embedded (rules/*.toml)");
    if let Err(e) = set.check_examples() {
        let n = e.problems().len();
        panic!("{n} rule example(s) failed:\n{e}");
    }
}

#[test]
fn lenient_builtin_loads_the_same_rules() {
    let strict = RuleSet::builtin_strict().expect("valid builtin rules");
    let lazy = RuleSet::builtin();
    assert_eq!(strict.len(), lazy.len());
    for r in lazy.rules() {
        assert!(
            r.keywords.iter().all(|k| *k == k.to_ascii_lowercase()),
            "rule {} has non-lowercase keywords",
            r.id
        );
    }
}

#[test]
fn requires_points_at_existing_rules() {
    let set = RuleSet::builtin();
    for r in set.rules() {
        if let Some(req) = &r.requires {
            assert!(
                set.get(&req.rule).is_some(),
                "rule {} requires unknown rule {}",
                r.id,
                req.rule
            );
        }
    }
}
