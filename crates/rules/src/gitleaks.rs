//! Import of gitleaks configuration (`.gitleaks.toml`, gitleaks v8 format) so a gitleaks user switches without
//! rewriting anything. What cannot be represented is reported in `Config::notes`, one clear sentence each.

use std::path::Path;

use regex::Regex;
use regex::bytes::Regex as BytesRegex;
use toml::Value;

use crate::allow::{AllowCondition, Allowlist, RegexTarget};
use crate::config::Config;
use crate::error::RuleError;
use crate::load::toml_error;
use crate::rule::{Requires, Rule, RuleSet, SecretGroup, Severity};

/// `[extend] path` chains are followed this deep (gitleaks allows a few levels too).
const MAX_EXTEND_DEPTH: usize = 3;

pub(crate) fn import(src: &str, origin: &str, base: Option<&Path>) -> Result<Config, RuleError> {
    let mut notes = Vec::new();
    let rules = import_inner(src, origin, base, 0, &mut notes)?;
    // gitleaks replaces its default rules with a config's unless it says `useDefault = true`; so does the
    // import, which is easy to miss when switching.
    if !rules.rules().iter().any(|r| r.builtin) {
        notes.push(format!(
            "{origin}: warning: no `[extend] useDefault = true`, so only its {} rule(s) are used and leakstop's {} \
             built-in rules are off; add `[extend]` with `useDefault = true` to scan with both",
            rules.len(),
            RuleSet::builtin().len()
        ));
    }
    Ok(Config {
        rules,
        notes,
        min_confidence: None,
    })
}

struct Ctx<'a> {
    origin: &'a str,
    notes: &'a mut Vec<String>,
}

impl Ctx<'_> {
    fn note(&mut self, msg: String) {
        self.notes.push(format!("{}: {msg}", self.origin));
    }
}

fn import_inner(
    src: &str,
    origin: &str,
    base: Option<&Path>,
    depth: usize,
    notes: &mut Vec<String>,
) -> Result<RuleSet, RuleError> {
    let table: toml::Table = toml::from_str(src).map_err(|e| toml_error(origin, src, &e))?;
    let mut cx = Ctx { origin, notes };
    let mut set = RuleSet::default();
    let mut disabled: Vec<String> = Vec::new();

    if let Some(ext) = table.get("extend") {
        let Some(ext) = ext.as_table() else {
            return Err(RuleError::File {
                origin: origin.into(),
                message: "`extend` must be a table ([extend])".into(),
            });
        };
        for (k, v) in ext {
            match k.as_str() {
                "useDefault" => {
                    if v.as_bool() == Some(true) {
                        set = RuleSet::builtin();
                    }
                }
                "disabledRules" => disabled = str_list(v),
                "path" => {
                    let Some(p) = v.as_str() else { continue };
                    let path = base.map_or_else(|| Path::new(p).to_path_buf(), |b| b.join(p));
                    if depth >= MAX_EXTEND_DEPTH {
                        cx.note(format!(
                            "[extend] path `{p}` not followed: more than {MAX_EXTEND_DEPTH} levels of extension"
                        ));
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).map_err(|source| RuleError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    let child_origin = path.display().to_string();
                    let parent = path.parent().map(Path::to_path_buf);
                    let child = import_inner(&text, &child_origin, parent.as_deref(), depth + 1, cx.notes)?;
                    for r in child.rules {
                        set.upsert(r);
                    }
                    merge_allow(&mut set.global_allow, child.global_allow);
                }
                "url" => cx.note(
                    "[extend] url is not supported (leakstop does not fetch configuration over the network); \
                     download the file and use [extend] path instead"
                        .to_string(),
                ),
                other => cx.note(format!("[extend] key `{other}` is not understood and was ignored")),
            }
        }
    }

    // Rules: an id already present (from the default or an extended file) is replaced, as gitleaks does.
    let mut rule_allow_targets: Vec<(Vec<String>, Allowlist)> = Vec::new();
    for (key, value) in &table {
        match key.as_str() {
            "rules" => {
                let Some(items) = value.as_array() else {
                    return Err(RuleError::File {
                        origin: origin.into(),
                        message: "`rules` must be written as [[rules]] tables".into(),
                    });
                };
                for (i, item) in items.iter().enumerate() {
                    if let Some(rule) = import_rule(item, i, &mut cx)? {
                        set.upsert(rule);
                    }
                }
            }
            "allowlist" => {
                let list = import_allowlist(value, "allowlist", "(global)", &mut cx)?;
                merge_allow(&mut set.global_allow, list);
            }
            "allowlists" => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    let field = format!("allowlists[{i}]");
                    let list = import_allowlist(item, &field, "(global)", &mut cx)?;
                    let targets = item.get("targetRules").map(str_list).unwrap_or_default();
                    if targets.is_empty() {
                        merge_allow(&mut set.global_allow, list);
                    } else {
                        rule_allow_targets.push((targets, list));
                    }
                }
            }
            "extend" | "title" | "description" | "minVersion" => {}
            other => cx.note(format!("top-level key `{other}` is not understood and was ignored")),
        }
    }
    for (targets, list) in rule_allow_targets {
        for id in targets {
            match set.rules.iter_mut().find(|r| r.id == id) {
                Some(rule) => rule.allow.more.push(list.clone()),
                None => cx.note(format!(
                    "[[allowlists]] targetRules: no rule `{id}` exists; that entry was ignored"
                )),
            }
        }
    }
    for id in disabled {
        if !set.remove(&id) {
            cx.note(format!(
                "[extend] disabledRules: no rule `{id}` exists in leakstop's rules (its ids differ from gitleaks' \
                 defaults; see `leakstop rules list`), so nothing was disabled for it"
            ));
        }
    }
    Ok(set)
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// Translates a Go RE2 pattern to Rust regex syntax. The two are close; the differences handled here are `\Q...\E`
/// literal quoting and `\C` (any byte), which Rust's syntax lacks.
pub(crate) fn translate_re2(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find('\\') {
        // Count backslashes so `\\Q` (an escaped backslash then Q) is left alone.
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.chars().next() {
            Some('Q') => {
                let body = &after[1..];
                let (lit, tail) = match body.find("\\E") {
                    Some(e) => (&body[..e], &body[e + 2..]),
                    None => (body, ""),
                };
                out.push_str(&regex::escape(lit));
                rest = tail;
            }
            Some('C') => {
                out.push_str("(?s-u:.)");
                rest = &after[1..];
            }
            Some(c) => {
                out.push('\\');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
            None => {
                out.push('\\');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn import_rule(item: &Value, index: usize, cx: &mut Ctx<'_>) -> Result<Option<Rule>, RuleError> {
    let origin = cx.origin.to_string();
    let Some(t) = item.as_table() else {
        return Err(RuleError::File {
            origin,
            message: format!("rules[{index}] must be a table"),
        });
    };
    let Some(id) = t.get("id").and_then(Value::as_str).map(str::to_string) else {
        return Err(RuleError::field(
            &origin,
            &format!("#{}", index + 1),
            "id",
            "missing; every [[rules]] entry needs an id",
        ));
    };
    let Some(regex) = t.get("regex").and_then(Value::as_str) else {
        cx.note(format!(
            "rule `{id}` has no regex (a path-only rule that reports files by name); leakstop reports secrets, not \
             file names, so it was not imported"
        ));
        return Ok(None);
    };
    let mut rule = Rule::new(id.clone(), translate_re2(regex), origin.clone());
    rule.severity = Severity::High;
    rule.description = t.get("description").and_then(Value::as_str).unwrap_or(&id).to_string();
    for (k, v) in t {
        match k.as_str() {
            "id" | "regex" | "description" => {}
            "secretGroup" => {
                let g = v.as_integer().unwrap_or(0);
                if g > 0 {
                    rule.secret_group = SecretGroup::Index(g as usize);
                }
            }
            "entropy" => rule.entropy = v.as_float().or_else(|| v.as_integer().map(|i| i as f64)),
            "keywords" => {
                rule.keywords = str_list(v)
                    .iter()
                    .map(|k| k.to_ascii_lowercase())
                    .filter(|k| !k.is_empty())
                    .collect()
            }
            "tags" => rule.tags = str_list(v),
            "path" => {
                let p = v.as_str().unwrap_or_default();
                rule.path = Some(
                    Regex::new(&translate_re2(p)).map_err(|e| RuleError::field(&origin, &id, "path", e.to_string()))?,
                );
            }
            "allowlist" => {
                let list = import_allowlist(v, "allowlist", &id, cx)?;
                merge_allow(&mut rule.allow, list);
            }
            "allowlists" => {
                for (i, a) in v.as_array().into_iter().flatten().enumerate() {
                    let list = import_allowlist(a, &format!("allowlists[{i}]"), &id, cx)?;
                    rule.allow.more.push(list);
                }
            }
            "required" => {
                let reqs: Vec<&Value> = v.as_array().into_iter().flatten().collect();
                if let Some(first) = reqs.first() {
                    let rid = first.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                    let lines = first.get("withinLines").and_then(Value::as_integer);
                    if first.get("withinColumns").is_some() {
                        cx.note(format!("rule `{id}`: required `{rid}` withinColumns is not supported; only the line distance is checked"));
                    }
                    rule.requires = Some(Requires {
                        rule: rid,
                        within_lines: lines.map_or(u32::MAX, |l| u32::try_from(l.max(0)).unwrap_or(u32::MAX)),
                    });
                }
                if reqs.len() > 1 {
                    cx.note(format!(
                        "rule `{id}` requires {} rules; leakstop checks only the first, so it may report where gitleaks would not",
                        reqs.len()
                    ));
                }
            }
            "skipReport" => {
                if v.as_bool() == Some(true) {
                    rule.skip_report = true;
                }
            }
            other => cx.note(format!("rule `{id}`: key `{other}` is not understood and was ignored")),
        }
    }
    if let Err(e) = rule.compile() {
        cx.note(format!(
            "rule `{id}`: its regex is not valid in leakstop ({}); the rule was not imported",
            first_line(&e)
        ));
        return Ok(None);
    }
    Ok(Some(rule))
}

fn first_line(s: &str) -> String {
    // regex errors put the explanation on their last line.
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

fn import_allowlist(v: &Value, field: &str, rule: &str, cx: &mut Ctx<'_>) -> Result<Allowlist, RuleError> {
    let origin = cx.origin.to_string();
    let Some(t) = v.as_table() else {
        return Err(RuleError::field(&origin, rule, field, "must be a table"));
    };
    let mut list = Allowlist::default();
    for (k, val) in t {
        match k.as_str() {
            "regexes" => {
                for (i, r) in str_list(val).iter().enumerate() {
                    let re = BytesRegex::new(&translate_re2(r)).map_err(|e| {
                        RuleError::field(
                            &origin,
                            rule,
                            &format!("{field}.regexes[{i}]"),
                            crate::load::regex_error_summary(&e),
                        )
                    })?;
                    list.regexes.push(re.into());
                }
            }
            "paths" => {
                for (i, p) in str_list(val).iter().enumerate() {
                    let re = Regex::new(&translate_re2(p)).map_err(|e| {
                        RuleError::field(
                            &origin,
                            rule,
                            &format!("{field}.paths[{i}]"),
                            crate::load::regex_error_summary(&e),
                        )
                    })?;
                    list.paths.push(re);
                }
            }
            "stopwords" => list.stopwords = str_list(val).iter().map(|s| s.to_ascii_lowercase()).collect(),
            "commits" => list.commits = str_list(val),
            "regexTarget" => {
                list.regex_target = match val.as_str().unwrap_or("secret").to_ascii_lowercase().as_str() {
                    "match" => RegexTarget::Match,
                    "line" => RegexTarget::Line,
                    "secret" | "" => RegexTarget::Secret,
                    other => {
                        return Err(RuleError::field(
                            &origin,
                            rule,
                            &format!("{field}.regexTarget"),
                            format!("unknown target `{other}` (expected secret, match or line)"),
                        ));
                    }
                }
            }
            "condition" => {
                list.condition = match val.as_str().unwrap_or("OR").to_ascii_uppercase().as_str() {
                    "AND" => AllowCondition::And,
                    "OR" | "" => AllowCondition::Or,
                    other => {
                        return Err(RuleError::field(
                            &origin,
                            rule,
                            &format!("{field}.condition"),
                            format!("unknown condition `{other}` (expected OR or AND)"),
                        ));
                    }
                }
            }
            "description" | "targetRules" => {}
            other => cx.note(format!(
                "{field} of `{rule}`: key `{other}` is not understood and was ignored"
            )),
        }
    }
    Ok(list)
}

/// Adds `extra` to `into`: simple OR lists with the same target merge, anything else becomes an alternative.
fn merge_allow(into: &mut Allowlist, extra: Allowlist) {
    if extra.is_empty() {
        return;
    }
    if into.is_empty() && into.more.is_empty() {
        *into = extra;
    } else {
        into.more.push(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re2_quote_and_any_byte_are_translated() {
        assert_eq!(translate_re2(r"\Qa.b\E+x"), r"a\.b+x");
        assert_eq!(translate_re2(r"a\Cb"), "a(?s-u:.)b");
        assert_eq!(translate_re2(r"\d\\Q"), r"\d\\Q");
    }
}
