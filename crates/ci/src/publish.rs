//! Turning findings into what a GitHub job shows: inline annotations, a job summary table and step outputs.
//! Every value shown is the redacted form; the secret itself never reaches the job log.

use std::io::Write;

use leakstop_scan::Finding;

use crate::workflow::{ActionsEnv, Annotation, Level, WorkflowError, md_cell};

/// The most annotations written per step: GitHub shows at most 10 errors per step and 50 per job, so more
/// only bloat the log; the summary and SARIF still list every finding.
pub const MAX_ANNOTATIONS: usize = 50;

/// When the action fails the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailOn {
    /// Any finding not covered by the baseline (the default).
    #[default]
    New,
    /// Any finding at all, baseline or not.
    Any,
    /// Never: report only.
    None,
}

impl std::str::FromStr for FailOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "new" | "" => Ok(FailOn::New),
            "any" | "all" => Ok(FailOn::Any),
            "none" | "never" | "false" => Ok(FailOn::None),
            other => Err(format!("fail-on must be one of new, any, none (got `{other}`)")),
        }
    }
}

/// The annotation for one finding.
pub fn annotation(f: &Finding) -> Annotation {
    let mut message = format!(
        "{} ({}, {} confidence): {}",
        f.description, f.severity, f.confidence, f.redacted
    );
    if let Some(c) = &f.commit {
        message.push_str(&format!(
            "\nadded in {} by {}: {}",
            short(&c.id),
            c.author_name,
            c.summary
        ));
    }
    message.push_str(
        "\nRemove it and rotate the credential; if it is not a secret, add `leakstop:allow` on the line or add its \
         fingerprint to the baseline.",
    );
    Annotation {
        // A low-confidence finding is likely a look-alike: a warning, not an error on the diff.
        level: if f.confidence == leakstop_scan::Confidence::Low {
            Level::Warning
        } else {
            Level::Error
        },
        file: f.path.clone(),
        line: f.line,
        column: f.column,
        end_line: Some(f.end_line),
        end_column: Some(f.end_column),
        title: format!("leakstop: {}", f.rule_id),
        message,
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The job summary: a heading, a count and a table of findings (redacted).
pub fn summary_markdown(findings: &[Finding], scanned: &str) -> String {
    let mut md = String::from("## leakstop\n\n");
    if findings.is_empty() {
        md.push_str(&format!("No secrets found in {}.\n", md_cell(scanned)));
        return md;
    }
    md.push_str(&format!(
        "**{} secret{} found** in {}.\n\n| file | line | rule | severity | confidence | value | commit |\n|---|---|---|---|---|---|---|\n",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        md_cell(scanned)
    ));
    for f in findings {
        let commit = f.commit.as_ref().map(|c| short(&c.id).to_string()).unwrap_or_default();
        md.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | `{}` | {} |\n",
            md_cell(&f.path),
            f.line,
            md_cell(&f.rule_id),
            f.severity,
            f.confidence,
            md_cell(&f.redacted),
            commit
        ));
    }
    md.push_str(
        "\nRemove each secret and rotate it (it is in the git history now). For a false positive, add \
         `leakstop:allow` to the line or put the finding's fingerprint in the baseline file.\n",
    );
    md
}

/// Writes annotations to `out` (the step's stdout), the summary, and the `findings` and `sarif` outputs.
pub fn publish(
    findings: &[Finding],
    scanned: &str,
    sarif_path: Option<&str>,
    env: &ActionsEnv,
    out: &mut dyn Write,
) -> Result<(), WorkflowError> {
    let io = |source| WorkflowError::Io {
        path: "<stdout>".into(),
        source,
    };
    for f in findings.iter().take(MAX_ANNOTATIONS) {
        writeln!(out, "{}", annotation(f).command()).map_err(io)?;
    }
    if findings.len() > MAX_ANNOTATIONS {
        writeln!(
            out,
            "::warning title=leakstop::{} more findings are listed in the job summary and the SARIF report",
            findings.len() - MAX_ANNOTATIONS
        )
        .map_err(io)?;
    }
    env.append_summary(&summary_markdown(findings, scanned))?;
    if env.output.is_some() {
        env.set_output("findings", &findings.len().to_string())?;
        if let Some(p) = sarif_path {
            env.set_output("sarif", p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod confidence_tests {
    use super::*;
    use leakstop_scan::{Confidence, ScanOptions, Setup, SetupRequest};

    fn a_finding() -> Finding {
        let setup = Setup::discover(&SetupRequest {
            start: env!("CARGO_MANIFEST_DIR").into(),
            ..SetupRequest::default()
        })
        .expect("builtin rules");
        let scanner = setup.scanner(ScanOptions::default()).expect("scanner");
        let found = scanner.scan_blob(b"db:\n  password: \"Tq8vN3zK1pWx7LmR\"\n", "config.yml");
        found.into_iter().next().expect("the password is found")
    }

    #[test]
    fn annotations_name_the_confidence_and_low_confidence_is_a_warning() {
        let mut f = a_finding();
        f.confidence = Confidence::High;
        let a = annotation(&f);
        assert!(matches!(a.level, Level::Error));
        assert!(a.message.contains("high confidence"), "{}", a.message);
        f.confidence = Confidence::Low;
        let a = annotation(&f);
        assert!(matches!(a.level, Level::Warning));
        assert!(a.message.contains("low confidence"), "{}", a.message);
        let md = summary_markdown(&[f], ".");
        assert!(md.contains("| confidence |") && md.contains("| low |"), "{md}");
    }
}
