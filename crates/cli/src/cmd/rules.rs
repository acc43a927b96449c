//! `leakstop rules list|check`: show the detection rules and validate rule files or configs.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use leakstop_rules::config::{self, ConfigKind};
use leakstop_rules::{RuleError, RuleSet};

#[derive(clap::Subcommand, Debug)]
pub enum RulesCommand {
    /// List the rules in effect: id, severity, confidence, description.
    List(ListArgs),
    /// Validate a rule file or a config (.leakstop.toml / .gitleaks.toml) and run its rules' examples.
    /// Without FILE, checks the builtin rules. Exit 0 if valid, 2 with every problem listed otherwise.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    format: ListFormat,
    /// List the rules a config yields (.leakstop.toml or .gitleaks.toml). Default: the config `leakstop scan`
    /// would use in DIR (the nearest one up to the repository root), else the built-in rules.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the scan would run.
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ListFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Rule file (`[[rule]]` tables) or config file to validate.
    file: Option<PathBuf>,
}

pub fn run(args: RulesCommand) -> anyhow::Result<ExitCode> {
    match args {
        RulesCommand::List(a) => list(&a),
        RulesCommand::Check(a) => check(a.file.as_deref()),
    }
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    match write_list(args) {
        // `leakstop rules list | head` closes the pipe early; that is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

fn write_list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let setup = leakstop_scan::Setup::discover(&leakstop_scan::SetupRequest {
        start: args.dir.clone(),
        config: args.config.clone(),
        use_baseline: false,
        ..Default::default()
    })?;
    for w in &setup.warnings {
        eprintln!("leakstop: note: {w}");
    }
    let rules = setup.rules;
    let mut out = std::io::stdout().lock();
    match args.format {
        ListFormat::Text => {
            let own = rules.rules().iter().filter(|r| !r.builtin).count();
            match &setup.config {
                Some(path) => writeln!(
                    out,
                    "{} rule(s) from {} ({own} of its own, {} built-in):",
                    rules.len(),
                    leakstop_scan::walk::display_path(path),
                    rules.len() - own
                )?,
                None => writeln!(out, "{} built-in rule(s):", rules.len())?,
            }
            let width = rules.rules().iter().map(|r| r.id.len()).max().unwrap_or(0).max(2);
            writeln!(
                out,
                "{:<width$}  {:<8}  {:<10}  DESCRIPTION",
                "ID", "SEVERITY", "CONFIDENCE"
            )?;
            for r in rules.rules() {
                writeln!(
                    out,
                    "{:<width$}  {:<8}  {:<10}  {}",
                    r.id,
                    r.severity.as_str(),
                    r.confidence.as_str(),
                    r.description
                )?;
            }
        }
        ListFormat::Json => {
            let items: Vec<serde_json::Value> = rules
                .rules()
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id,
                        "severity": r.severity.as_str(),
                        "confidence": r.confidence.as_str(),
                        "description": r.description,
                        "keywords": r.keywords,
                        "tags": r.tags,
                        "check": r.check.map(|c| c.name()),
                        "entropy": r.entropy,
                        "origin": r.origin,
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &items)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (label, result) = match file {
        None => (
            "builtin rules".to_string(),
            RuleSet::builtin_strict().map(|s| (s, Vec::new(), None)),
        ),
        Some(path) => {
            anyhow::ensure!(path.exists(), "{} does not exist", path.display());
            (path.display().to_string(), load_for_check(path))
        }
    };
    // A rule file's broken rules do not stop its valid ones' examples from running: one run reports everything.
    let (set, notes, mut problems) = match result {
        Ok((set, notes, broken)) => (set, notes, broken.into_iter().collect::<Vec<_>>()),
        Err(e) => return Ok(report_errors(&[e])),
    };
    for note in &notes {
        eprintln!("leakstop: note: {note}");
    }
    if let Err(e) = set.check_examples() {
        problems.push(e);
    }
    if !problems.is_empty() {
        return Ok(report_errors(&problems));
    }
    let examples: usize = set
        .rules()
        .iter()
        .map(|r| r.examples.len() + r.negative_examples.len())
        .sum();
    println!(
        "{label}: {} rule(s) valid, {examples} example(s) behave as declared",
        set.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// A rule file is checked as is; a config is loaded as a scan would load it and only its own rules are checked
/// (the builtin ones it extends are checked by `leakstop rules check` without a file). A rule file's broken rules
/// come back beside its valid ones.
fn load_for_check(path: &Path) -> Result<(RuleSet, Vec<String>, Option<RuleError>), RuleError> {
    let src = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let is_rule_file = config::detect_kind(path, &src) == ConfigKind::Leakstop && config::is_rule_file(&src);
    if is_rule_file {
        let (set, broken) = RuleSet::from_toml_str_partial(&src, &path.display().to_string());
        return Ok((set, Vec::new(), broken));
    }
    let cfg = config::load_config(path)?;
    let origin = path.display().to_string();
    let mut own = cfg.rules.clone();
    let others: Vec<String> = own
        .rules()
        .iter()
        .filter(|r| r.origin != origin)
        .map(|r| r.id.clone())
        .collect();
    for id in others {
        own.remove(&id);
    }
    Ok((own, cfg.notes, None))
}

fn report_errors(errors: &[RuleError]) -> ExitCode {
    let problems: Vec<&RuleError> = errors.iter().flat_map(RuleError::problems).collect();
    for p in &problems {
        eprintln!("leakstop: error: {p}");
    }
    eprintln!("leakstop: {} problem(s) found", problems.len());
    ExitCode::from(2)
}
