use std::path::PathBuf;

/// Everything that can be wrong with a rule file or a config. Messages name the file (`origin`), the rule and the
/// field so the user can go straight to the line to fix; they never contain scanned data.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not valid TOML: {message}")]
    Toml { origin: String, message: String },
    #[error("{origin}: {message}")]
    File { origin: String, message: String },
    #[error("{origin}: rule `{rule}`: field `{field}`: {message}")]
    Field {
        origin: String,
        rule: String,
        field: String,
        message: String,
    },
    #[error("{origin}: rule `{rule}`: {message}")]
    Rule {
        origin: String,
        rule: String,
        message: String,
    },
    #[error(
        "{origin}: rule `{rule}` is defined twice (ids must be unique; to replace a builtin rule use a config file)"
    )]
    Duplicate { origin: String, rule: String },
    /// Several problems at once (e.g. every failing example of a rule file), one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<RuleError>),
}

impl RuleError {
    pub(crate) fn field(origin: &str, rule: &str, field: &str, message: impl Into<String>) -> RuleError {
        RuleError::Field {
            origin: origin.to_string(),
            rule: rule.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Flattens `Many` so callers can count or list individual problems.
    pub fn problems(&self) -> Vec<&RuleError> {
        match self {
            RuleError::Many(v) => v.iter().flat_map(|e| e.problems()).collect(),
            other => vec![other],
        }
    }
}
