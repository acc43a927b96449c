//! GitHub Actions workflow commands and environment files, as the runner parses them.
//!
//! Annotations (`::error file=…::msg`) and masks go to stdout; outputs, exported variables and the job
//! summary go to the files named by `GITHUB_OUTPUT`, `GITHUB_ENV` and `GITHUB_STEP_SUMMARY`. Values are
//! escaped the way the runner unescapes them, so a path with a comma or a message with a newline survives.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("{var} is not set: this must run inside a GitHub Actions job (or set {var} to a file path)")]
    MissingEnv { var: &'static str },
    #[error("writing {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("`{name}` is not a valid output or variable name (letters, digits, `_` and `-` only)")]
    BadName { name: String },
}

/// Escapes the message part of a workflow command.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a property value (`file=`, `title=`…) of a workflow command.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Annotation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
}

/// One file annotation, shown inline on the pull request diff.
#[derive(Debug, Clone)]
pub struct Annotation {
    pub level: Level,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub end_line: Option<u32>,
    pub end_column: Option<u32>,
    pub title: String,
    pub message: String,
}

impl Annotation {
    /// The workflow command line (without the trailing newline).
    pub fn command(&self) -> String {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        };
        let mut props = format!(
            "file={},line={},col={}",
            escape_property(&self.file),
            self.line,
            self.column
        );
        if let Some(l) = self.end_line {
            let _ = write!(props, ",endLine={l}");
        }
        if let Some(c) = self.end_column {
            let _ = write!(props, ",endColumn={c}");
        }
        let _ = write!(props, ",title={}", escape_property(&self.title));
        format!("::{level} {props}::{}", escape_data(&self.message))
    }
}

/// `::add-mask::` lines for a value: one per line of it, since the runner masks line by line.
pub fn mask_commands(value: &str) -> Vec<String> {
    value
        .split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("::add-mask::{}", escape_data(l)))
        .collect()
}

fn check_name(name: &str) -> Result<(), WorkflowError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(WorkflowError::BadName { name: name.to_string() });
    }
    Ok(())
}

/// Formats `name=value` for an environment file, using the heredoc form with a random delimiter that does not
/// occur in the value whenever the value has a newline (the form GitHub documents for multiline values).
pub fn env_file_entry(name: &str, value: &str) -> Result<String, WorkflowError> {
    check_name(name)?;
    if !value.contains('\n') && !value.contains('\r') {
        return Ok(format!("{name}={value}\n"));
    }
    let mut delimiter = format!("ghadelimiter_{}", random_hex());
    while value.contains(&delimiter) {
        delimiter = format!("ghadelimiter_{}", random_hex());
    }
    Ok(format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"))
}

fn random_hex() -> String {
    rand::random::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// The files of the Actions environment a step writes to.
#[derive(Debug, Clone, Default)]
pub struct ActionsEnv {
    pub output: Option<PathBuf>,
    pub env: Option<PathBuf>,
    pub step_summary: Option<PathBuf>,
}

impl ActionsEnv {
    pub fn from_env() -> ActionsEnv {
        let path = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty()).map(PathBuf::from);
        ActionsEnv {
            output: path("GITHUB_OUTPUT"),
            env: path("GITHUB_ENV"),
            step_summary: path("GITHUB_STEP_SUMMARY"),
        }
    }

    pub fn set_output(&self, name: &str, value: &str) -> Result<(), WorkflowError> {
        let path = self
            .output
            .as_deref()
            .ok_or(WorkflowError::MissingEnv { var: "GITHUB_OUTPUT" })?;
        append(path, &env_file_entry(name, value)?)
    }

    pub fn export_env(&self, name: &str, value: &str) -> Result<(), WorkflowError> {
        let path = self
            .env
            .as_deref()
            .ok_or(WorkflowError::MissingEnv { var: "GITHUB_ENV" })?;
        append(path, &env_file_entry(name, value)?)
    }

    /// Appends Markdown to the job summary; a job without one (a local run) just skips it.
    pub fn append_summary(&self, markdown: &str) -> Result<(), WorkflowError> {
        match self.step_summary.as_deref() {
            Some(path) => append(path, markdown),
            None => Ok(()),
        }
    }
}

fn append(path: &Path, text: &str) -> Result<(), WorkflowError> {
    let err = |source| WorkflowError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    // One write call, so a concurrent step never interleaves inside an entry.
    f.write_all(text.as_bytes()).map_err(err)
}

/// Escapes text for a Markdown table cell.
pub fn md_cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('\n', " ")
        .replace('`', "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_escapes_properties_and_message() {
        let a = Annotation {
            level: Level::Error,
            file: "src/a,b:c.rs".into(),
            line: 3,
            column: 7,
            end_line: Some(3),
            end_column: Some(20),
            title: "leakstop: aws-access-key".into(),
            message: "100% a key\nnext".into(),
        };
        assert_eq!(
            a.command(),
            "::error file=src/a%2Cb%3Ac.rs,line=3,col=7,endLine=3,endColumn=20,title=leakstop%3A aws-access-key::100%25 a key%0Anext"
        );
    }

    #[test]
    fn multiline_values_use_a_delimiter_absent_from_the_value() {
        let e = env_file_entry("KEY", "line1\nline2").unwrap();
        let mut lines = e.lines();
        let head = lines.next().unwrap();
        let delim = head.strip_prefix("KEY<<").unwrap();
        assert!(delim.starts_with("ghadelimiter_") && delim.len() > 20);
        assert_eq!(lines.collect::<Vec<_>>(), vec!["line1", "line2", delim]);
        assert_eq!(env_file_entry("K", "v").unwrap(), "K=v\n");
        assert!(env_file_entry("BAD NAME", "v").is_err());
    }

    #[test]
    fn masks_every_line() {
        assert_eq!(mask_commands("a\nb\n"), vec!["::add-mask::a", "::add-mask::b"]);
    }
}
