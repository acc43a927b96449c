//! Loading and validation of leakstop rule files (`[[rule]]` tables) and the builtin set.

use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;
use regex::bytes::Regex as BytesRegex;
use serde::Deserialize;

use crate::allow::{AllowRegex, Allowlist};
use crate::checks::{CHECK_NAMES, Check};
use crate::error::RuleError;
use crate::rule::{Confidence, Requires, Rule, RuleSet, Severity};

include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub id: Option<String>,
    pub description: Option<String>,
    pub severity: Option<String>,
    /// `high`, `medium` or `low`; derived from the rule's shape when absent (`Rule::derived_confidence`).
    pub confidence: Option<String>,
    pub keywords: Option<Vec<String>>,
    pub regex: Option<String>,
    pub entropy: Option<f64>,
    pub check: Option<String>,
    pub path: Option<String>,
    pub requires: Option<RawRequires>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub allow: Option<RawAllow>,
    pub examples: Option<Vec<String>>,
    pub negative_examples: Option<Vec<String>>,
    /// Drop matches that look like placeholders (`changeme`, `xxxx`, `${VAR}`...). Default: on for the built-in
    /// rules, off for users' own.
    pub placeholder_guard: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequires {
    pub rule: String,
    #[serde(default = "default_within")]
    pub within_lines: u32,
}

fn default_within() -> u32 {
    5
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllow {
    #[serde(default)]
    pub regexes: Vec<String>,
    #[serde(default)]
    pub stopwords: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub commits: Vec<String>,
    /// Regexes matched against the whole rule match rather than the secret (e.g. to exclude `token_type = ...`).
    #[serde(default)]
    pub match_regexes: Vec<String>,
    /// TOML puts keys written after a `[rule.allow]` header into that table; examples written there belong to the
    /// rule, so they are accepted and moved.
    pub examples: Option<Vec<String>>,
    pub negative_examples: Option<Vec<String>>,
}

/// How strictly to validate: user files are compiled and checked in full at load time; the builtin set (checked by
/// the example test) is compiled lazily so a small scan pays only for the regexes it uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A user's config (`.leakstop.toml`): compiled now, placeholder guard only on request.
    User,
    /// A file in the built-in rules' format (`rules/*.toml`, `[[rule]]` tables only): compiled now, placeholder
    /// guard unless the rule opts out, as the built-in rules it is written like.
    RuleFile,
    /// The embedded rules validated in full (`rules check`, tests).
    BuiltinStrict,
    /// The embedded rules for scanning: compiled on first use.
    Builtin,
}

impl Mode {
    fn builtin(self) -> bool {
        matches!(self, Mode::Builtin | Mode::BuiltinStrict)
    }

    fn guard_by_default(self) -> bool {
        self != Mode::User
    }

    fn strict(self) -> bool {
        self != Mode::Builtin
    }
}

/// A TOML syntax or shape error of `src`, pointing at its line and column.
pub(crate) fn toml_error(origin: &str, src: &str, e: &toml::de::Error) -> RuleError {
    let origin = match e.span() {
        Some(span) => {
            let before = &src[..span.start.min(src.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{origin}:{line}:{column}")
        }
        None => origin.to_string(),
    };
    RuleError::Toml {
        origin,
        message: e.message().trim_end().to_string(),
    }
}

/// The explanation of a regex error without the pattern it quotes: allowlist patterns often spell out the very
/// secret they allow, and errors must not repeat secrets.
pub(crate) fn regex_error_summary(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid regex")
        .trim()
        .to_string()
}

/// Builds a rule's or config's allowlist. With `lazy` (the built-in rules, validated by `rules check`) its regexes
/// are kept as written and compiled on first use; otherwise each is compiled now so an error names it.
pub(crate) fn compile_allow(
    origin: &str,
    rule: &str,
    raw: RawAllow,
    field: &str,
    lazy: bool,
) -> Result<Allowlist, RuleError> {
    if raw.examples.is_some() || raw.negative_examples.is_some() {
        return Err(RuleError::field(
            origin,
            rule,
            &format!("{field}.examples"),
            "examples belong to a [[rule]], not to an allowlist",
        ));
    }
    let regex = |r: &String, what: String| -> Result<AllowRegex, RuleError> {
        if lazy {
            return Ok(AllowRegex::lazy(r.clone()));
        }
        BytesRegex::new(r)
            .map(AllowRegex::from)
            .map_err(|e| RuleError::field(origin, rule, &what, regex_error_summary(&e)))
    };
    let mut list = Allowlist::default();
    for (i, r) in raw.regexes.iter().enumerate() {
        list.regexes.push(regex(r, format!("{field}.regexes[{i}]"))?);
    }
    for (i, p) in raw.paths.iter().enumerate() {
        list.paths.push(
            Regex::new(p).map_err(|e| RuleError::field(origin, rule, &format!("{field}.paths[{i}]"), e.to_string()))?,
        );
    }
    list.stopwords = raw
        .stopwords
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    list.commits = raw.commits;
    if !raw.match_regexes.is_empty() {
        let mut by_match = Allowlist {
            regex_target: crate::allow::RegexTarget::Match,
            ..Allowlist::default()
        };
        for (i, r) in raw.match_regexes.iter().enumerate() {
            by_match.regexes.push(regex(r, format!("{field}.match_regexes[{i}]"))?);
        }
        list.more.push(by_match);
    }
    Ok(list)
}

/// Parses a rule file's text into its `[[rule]]` tables, each with the id (when present) for error messages.
fn rule_tables(src: &str, origin: &str) -> Result<Vec<toml::Value>, RuleError> {
    let table: toml::Table = toml::from_str(src).map_err(|e| toml_error(origin, src, &e))?;
    rules_of(table, origin)
}

/// A built-in rule file's `[[rule]]` tables from the JSON form the build embeds (see build.rs).
fn builtin_tables(json: &str, origin: &str) -> Result<Vec<toml::Value>, RuleError> {
    let table: toml::Table = serde_json::from_str(json).map_err(|e| RuleError::File {
        origin: origin.to_string(),
        message: format!("embedded rule tables do not load ({e}): rebuild leakstop"),
    })?;
    rules_of(table, origin)
}

/// The `[[rule]]` tables of a parsed rule file.
fn rules_of(table: toml::Table, origin: &str) -> Result<Vec<toml::Value>, RuleError> {
    let mut rules = Vec::new();
    for (key, value) in table {
        match (key.as_str(), value) {
            ("rule", toml::Value::Array(items)) => rules.extend(items),
            ("rule", _) => {
                return Err(RuleError::File {
                    origin: origin.to_string(),
                    message: "`rule` must be an array of tables: write each rule as `[[rule]]`".into(),
                });
            }
            (other, _) => {
                return Err(RuleError::File {
                    origin: origin.to_string(),
                    message: format!("unknown top-level key `{other}` (a rule file only contains `[[rule]]` tables)"),
                });
            }
        }
    }
    Ok(rules)
}

/// Builds one rule from its TOML table, validating every field; every problem of the rule is reported at once.
/// `line` (1-based, of the rule's `[[rule]]` header) is added to error origins so they point at the rule.
/// Built-in rules keep the placeholder guard unless they opt out; users' rules only run it when they ask for it
/// (`placeholder_guard = true`), since a team's own token format may well contain `example` or `xxxx`.
pub(crate) fn rule_from_value(
    value: toml::Value,
    index: usize,
    origin: &str,
    line: Option<usize>,
    mode: Mode,
) -> Result<Rule, RuleError> {
    let label = value
        .get("id")
        .and_then(toml::Value::as_str)
        .map_or_else(|| format!("#{}", index + 1), str::to_string);
    let at = line.map_or_else(|| origin.to_string(), |l| format!("{origin}:{l}"));
    let raw = RawRule::deserialize(value).map_err(|e| {
        let msg = e.message().to_string();
        // serde names the offending field in backquotes; surface it as the field.
        match msg.split('`').nth(1) {
            Some(field) if msg.starts_with("unknown field") || msg.starts_with("missing field") => {
                RuleError::field(&at, &label, field, msg.clone())
            }
            _ => RuleError::Rule {
                origin: at.clone(),
                rule: label.clone(),
                message: msg,
            },
        }
    })?;
    let mut errors: Vec<RuleError> = Vec::new();
    let mut err = |field: &str, msg: String| errors.push(RuleError::field(&at, &label, field, msg));
    let id = match raw.id {
        None => {
            err("id", "missing; every rule needs a unique kebab-case id".into());
            label.clone()
        }
        Some(id)
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                || id.starts_with('-') =>
        {
            err(
                "id",
                format!("`{id}` is not kebab-case (lowercase letters, digits and `-`)"),
            );
            id
        }
        Some(id) => id,
    };
    let regex = raw.regex.unwrap_or_else(|| {
        err("regex", "missing; the pattern that finds the credential".into());
        String::new()
    });
    let mut rule = Rule::new(id, regex, origin.to_string());
    rule.builtin = mode.builtin();
    rule.skip_placeholder_guard = !raw.placeholder_guard.unwrap_or(mode.guard_by_default());
    match raw.description.filter(|d| !d.trim().is_empty()) {
        Some(d) => rule.description = d,
        None => err("description", "missing or empty".into()),
    }
    match raw.severity {
        None => err("severity", format!("missing; one of {}", Severity::NAMES.join(", "))),
        Some(sev) => match Severity::parse(&sev) {
            Some(s) => rule.severity = s,
            None => err(
                "severity",
                format!(
                    "unknown severity `{sev}` (expected one of {})",
                    Severity::NAMES.join(", ")
                ),
            ),
        },
    }
    let confidence = match raw.confidence {
        None => None,
        Some(c) => match Confidence::parse(&c) {
            Some(c) => Some(c),
            None => {
                err(
                    "confidence",
                    format!(
                        "unknown confidence `{c}` (expected one of {})",
                        Confidence::NAMES.join(", ")
                    ),
                );
                None
            }
        },
    };
    let keywords = raw.keywords.unwrap_or_default();
    if keywords.is_empty() || keywords.iter().any(|k| k.trim().is_empty()) {
        err(
            "keywords",
            "missing or empty; give at least one literal that every match contains".into(),
        );
    }
    rule.keywords = keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
    rule.tags = raw.tags;
    if let Some(e) = raw.entropy {
        if (0.0..=8.0).contains(&e) {
            rule.entropy = Some(e);
        } else {
            err("entropy", format!("{e} is out of range (bits per character, 0 to 8)"));
        }
    }
    if let Some(c) = raw.check {
        match Check::from_name(&c) {
            Some(check) => rule.check = Some(check),
            None => err(
                "check",
                format!("unknown check `{c}` (known: {})", CHECK_NAMES.join(", ")),
            ),
        }
    }
    if let Some(p) = raw.path {
        match Regex::new(&p) {
            Ok(re) => rule.path = Some(re),
            Err(e) => err("path", e.to_string()),
        }
    }
    if let Some(r) = raw.requires {
        rule.requires = Some(Requires {
            rule: r.rule,
            within_lines: r.within_lines,
        });
    }
    let (mut examples, mut negative_examples) = (
        raw.examples.unwrap_or_default(),
        raw.negative_examples.unwrap_or_default(),
    );
    if let Some(mut a) = raw.allow {
        examples.extend(a.examples.take().unwrap_or_default());
        negative_examples.extend(a.negative_examples.take().unwrap_or_default());
        match compile_allow(&at, &rule.id, a, "allow", !mode.strict()) {
            Ok(list) => rule.allow = list,
            Err(e) => errors.push(e),
        }
    }
    let mut err = |field: &str, msg: String| errors.push(RuleError::field(&at, &label, field, msg));
    rule.confidence = confidence.unwrap_or_else(|| rule.derived_confidence());
    rule.examples = examples;
    rule.negative_examples = negative_examples;
    if rule.examples.is_empty() {
        err(
            "examples",
            "missing or empty; give at least one text in which the rule must find a secret".into(),
        );
    }
    if rule.negative_examples.is_empty() {
        err(
            "negative_examples",
            "missing or empty; give at least one look-alike text in which the rule must find nothing".into(),
        );
    }
    if mode.strict()
        && !rule.regex_source.is_empty()
        && let Err(e) = rule.compile()
    {
        err("regex", e);
    }
    match errors.len() {
        0 => Ok(rule),
        1 => Err(errors.remove(0)),
        _ => Err(RuleError::Many(errors)),
    }
}

/// The 1-based line of each `[[name]]` table header in `src`, in order: the n-th one is the n-th table of the
/// array, which lets errors about a table point at its line.
pub(crate) fn table_lines(src: &str, name: &str) -> Vec<usize> {
    let header = format!("[[{name}]]");
    src.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start();
            t.strip_prefix(header.as_str())
                .is_some_and(|rest| rest.trim_start().is_empty() || rest.trim_start().starts_with('#'))
        })
        .map(|(i, _)| i + 1)
        .collect()
}

impl RuleSet {
    /// Parses and validates a rule file (the format of `rules/*.toml`); `origin` names it in errors. Regexes are
    /// compiled now.
    pub fn from_toml_str(src: &str, origin: &str) -> Result<RuleSet, RuleError> {
        let (set, errors) = RuleSet::parse_checked(src, origin, Mode::RuleFile);
        match errors {
            None => Ok(set),
            Some(e) => Err(e),
        }
    }

    /// The valid rules of a rule file and every problem of the others (`leakstop rules check` runs the examples
    /// of the valid ones even when others are broken, so one run reports everything).
    pub fn from_toml_str_partial(src: &str, origin: &str) -> (RuleSet, Option<RuleError>) {
        RuleSet::parse_checked(src, origin, Mode::RuleFile)
    }

    fn parse_checked(src: &str, origin: &str, mode: Mode) -> (RuleSet, Option<RuleError>) {
        let mut set = RuleSet::default();
        let mut errors = Vec::new();
        let tables = match rule_tables(src, origin) {
            Ok(t) => t,
            Err(e) => return (set, Some(e)),
        };
        let lines = table_lines(src, "rule");
        let lines = (lines.len() == tables.len()).then_some(lines);
        for (i, v) in tables.into_iter().enumerate() {
            let line = lines.as_ref().map(|l| l[i]);
            match rule_from_value(v, i, origin, line, mode) {
                Ok(rule) => {
                    if set.get(&rule.id).is_some() {
                        errors.push(RuleError::Duplicate {
                            origin: origin.to_string(),
                            rule: rule.id,
                        });
                    } else {
                        set.rules.push(rule);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let errors = match errors.len() {
            0 => None,
            1 => Some(errors.remove(0)),
            _ => Some(RuleError::Many(errors)),
        };
        (set, errors)
    }

    /// Reads and validates a rule file.
    pub fn load_file(path: &Path) -> Result<RuleSet, RuleError> {
        let src = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        RuleSet::from_toml_str(&src, &path.display().to_string())
    }

    /// The rules embedded from the repository's `rules/*.toml`. A broken builtin rule is skipped with an error log
    /// (the example test fails on it), so one bad rule never disables scanning.
    pub fn builtin() -> RuleSet {
        static BUILTIN: OnceLock<RuleSet> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                let mut set = RuleSet::default();
                for (origin, json) in BUILTIN_JSON {
                    let tables = match builtin_tables(json, origin) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!("builtin rules skipped: {e}");
                            continue;
                        }
                    };
                    for (i, v) in tables.into_iter().enumerate() {
                        match rule_from_value(v, i, origin, None, Mode::Builtin) {
                            Ok(rule) if set.get(&rule.id).is_some() => {
                                tracing::error!(
                                    "builtin rule `{}` in {origin} is defined twice; the first one is kept",
                                    rule.id
                                );
                            }
                            Ok(rule) => set.rules.push(rule),
                            Err(e) => tracing::error!("builtin rule skipped: {e}"),
                        }
                    }
                }
                set
            })
            .clone()
    }

    /// The builtin rules validated in full (every file parses, no duplicates, every regex compiles); for tests and
    /// `leakstop rules check --builtin`.
    pub fn builtin_strict() -> Result<RuleSet, RuleError> {
        let mut all = RuleSet::default();
        let mut errors = Vec::new();
        for (origin, src) in BUILTIN_FILES {
            match RuleSet::parse_checked(src, origin, Mode::BuiltinStrict) {
                (set, None) => {
                    for r in set.rules {
                        if let Some(prev) = all.get(&r.id) {
                            errors.push(RuleError::Rule {
                                origin: (*origin).to_string(),
                                rule: r.id.clone(),
                                message: format!(
                                    "id already used in {}; ids must be unique across rule files",
                                    prev.origin
                                ),
                            });
                        } else {
                            all.rules.push(r);
                        }
                    }
                }
                (_, Some(e)) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(all)
        } else {
            Err(RuleError::Many(errors))
        }
    }

    /// Names of the embedded rule files (`rules/<topic>.toml`).
    pub fn builtin_files() -> Vec<&'static str> {
        BUILTIN_FILES.iter().map(|(n, _)| *n).collect()
    }
}
