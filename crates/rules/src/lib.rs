//! leakstop detection rules: the rule model, loading and validation of rule files (`rules/*.toml`, embedded at
//! build time), per-rule matching (`Rule::find_iter`), structured checks, false-positive guards, and user
//! configuration (`.leakstop.toml`, or an existing `.gitleaks.toml`).
#![forbid(unsafe_code)]

mod allow;
pub mod checks;
pub mod config;
mod error;
mod gitleaks;
mod guard;
mod load;
mod rule;

pub use allow::{AllowCondition, AllowRegex, Allowlist, RegexTarget};
pub use checks::Check;
pub use error::RuleError;
pub use guard::{is_placeholder, shannon_entropy};
pub use rule::{Confidence, Requires, Rule, RuleMatch, RuleSet, Severity, redacted};
