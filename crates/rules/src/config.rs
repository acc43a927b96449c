//! User configuration: `.leakstop.toml` (extend, override or disable builtin rules, add an allowlist), or an
//! existing `.gitleaks.toml` imported as faithfully as the formats allow.
//!
//! ```toml
//! [extend]
//! use_default = true          # start from the builtin rules (default)
//! disable = ["generic-password"]
//!
//! [[rule]]                    # same format as rules/*.toml; an existing id replaces that rule
//! id = "acme-api-key"
//! ...
//!
//! [allowlist]                 # applies to every rule
//! paths = ['''^testdata/''']
//!
//! [scan]
//! min_confidence = "medium"   # hide low-confidence findings (as `--min-confidence`, which wins)
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::error::RuleError;
use crate::load::{Mode, RawAllow, compile_allow, rule_from_value, toml_error};
use crate::rule::{Confidence, RuleSet};

/// A loaded configuration: the rules to scan with and what could not be mapped (for imported configs).
#[derive(Debug, Clone)]
pub struct Config {
    pub rules: RuleSet,
    /// One sentence per thing that could not be applied as written, to show the user.
    pub notes: Vec<String>,
    /// `[scan] min_confidence`: the default of `leakstop scan --min-confidence`.
    pub min_confidence: Option<Confidence>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    extend: Option<RawExtend>,
    #[serde(default)]
    rule: Vec<toml::Value>,
    allowlist: Option<RawAllow>,
    scan: Option<RawScan>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScan {
    min_confidence: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtend {
    #[serde(default = "yes")]
    use_default: bool,
    #[serde(default)]
    disable: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Which format a config file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Leakstop,
    Gitleaks,
}

/// Decides by name (`*gitleaks*.toml`) and then by content (gitleaks uses `[[rules]]`, `[extend] useDefault`,
/// `[[allowlists]]`; leakstop uses `[[rule]]`).
pub fn detect_kind(path: &Path, src: &str) -> ConfigKind {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if name.contains("gitleaks") {
        return ConfigKind::Gitleaks;
    }
    if name.contains("leakstop") {
        return ConfigKind::Leakstop;
    }
    let gitleaks_markers = [
        "[[rules]]",
        "useDefault",
        "[[allowlists]]",
        "secretGroup",
        "disabledRules",
        "[rules.",
    ];
    if gitleaks_markers.iter().any(|m| src.contains(m)) {
        ConfigKind::Gitleaks
    } else {
        ConfigKind::Leakstop
    }
}

/// Whether `src` is a rule file (only `[[rule]]` tables, as in `rules/*.toml`) rather than a config.
pub fn is_rule_file(src: &str) -> bool {
    toml::from_str::<toml::Table>(src).is_ok_and(|t| !t.is_empty() && t.keys().all(|k| k == "rule"))
}

/// Loads `.leakstop.toml` or `.gitleaks.toml` (detected by name, then content).
pub fn load_config(path: &Path) -> Result<Config, RuleError> {
    let src = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    match detect_kind(path, &src) {
        ConfigKind::Leakstop => from_leakstop_str(&src, &origin),
        ConfigKind::Gitleaks => crate::gitleaks::import(&src, &origin, path.parent()),
    }
}

/// Finds the config of a directory: `.leakstop.toml`, else `.gitleaks.toml` (also `.config/` and `.github/` for
/// gitleaks' conventional places). `Ok(None)` if there is none.
pub fn discover(dir: &Path) -> Result<Option<Config>, RuleError> {
    for name in [
        ".leakstop.toml",
        "leakstop.toml",
        ".gitleaks.toml",
        ".github/.gitleaks.toml",
        ".config/gitleaks.toml",
    ] {
        let p = dir.join(name);
        if p.is_file() {
            return load_config(&p).map(Some);
        }
    }
    Ok(None)
}

/// Parses a `.leakstop.toml` from text; `origin` names it in errors.
pub fn from_leakstop_str(src: &str, origin: &str) -> Result<Config, RuleError> {
    let raw: RawConfig = toml::from_str(src).map_err(|e| toml_error(origin, src, &e))?;
    let min_confidence = match raw.scan.and_then(|s| s.min_confidence) {
        None => None,
        Some(c) => Some(Confidence::parse(&c).ok_or_else(|| RuleError::File {
            origin: origin.to_string(),
            message: format!(
                "[scan] min_confidence: unknown confidence `{c}` (expected one of {})",
                Confidence::NAMES.join(", ")
            ),
        })?),
    };
    let extend = raw.extend.unwrap_or(RawExtend {
        use_default: true,
        disable: Vec::new(),
    });
    let mut rules = if extend.use_default {
        RuleSet::builtin()
    } else {
        RuleSet::default()
    };
    let mut notes = Vec::new();
    let mut user_ids: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    let lines = crate::load::table_lines(src, "rule");
    let lines = (lines.len() == raw.rule.len()).then_some(lines);
    for (i, v) in raw.rule.into_iter().enumerate() {
        let line = lines.as_ref().map(|l| l[i]);
        match rule_from_value(v, i, origin, line, Mode::User) {
            Ok(rule) => {
                if user_ids.contains(&rule.id) {
                    errors.push(RuleError::Duplicate {
                        origin: origin.to_string(),
                        rule: rule.id,
                    });
                    continue;
                }
                user_ids.push(rule.id.clone());
                rules.upsert(rule);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            RuleError::Many(errors)
        });
    }
    for id in &extend.disable {
        if !rules.remove(id) {
            notes.push(format!(
                "{origin}: [extend] disable: no rule `{id}` exists (see `leakstop rules list`); nothing disabled"
            ));
        }
    }
    if let Some(a) = raw.allowlist {
        rules.global_allow = compile_allow(origin, "(global)", a, "allowlist", false)?;
    }
    // A user rule may require a rule that was disabled or never existed: say so rather than silently never report.
    for r in rules.rules() {
        if let Some(req) = &r.requires
            && rules.get(&req.rule).is_none()
        {
            notes.push(format!(
                "{origin}: rule `{}` requires rule `{}`, which is not enabled, so it can never report",
                r.id, req.rule
            ));
        }
    }
    Ok(Config {
        rules,
        notes,
        min_confidence,
    })
}
