//! `leakstop github-action`: what the GitHub Action runs (action/action.yml), and `export` for the credentials
//! action (action/credentials/). The decisions live in leakstop-ci; this wires them to the scanner.
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use leakstop_ci::event::{self, Plan};
use leakstop_ci::fetch;
use leakstop_ci::publish::{self, FailOn};
use leakstop_ci::workflow::{ActionsEnv, mask_commands};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ActionArgs {
    #[command(subcommand)]
    command: Option<ActionCommand>,
    #[command(flatten)]
    scan: ScanInputs,
}

#[derive(clap::Subcommand, Debug)]
enum ActionCommand {
    /// Mask a value read from stdin (`::add-mask::`), then export it as NAME for later steps.
    Export {
        /// The variable or output name.
        name: String,
        /// Export to $GITHUB_ENV (environment of later steps; the default).
        #[arg(long, conflicts_with = "output")]
        env: bool,
        /// Set a step output instead.
        #[arg(long)]
        output: bool,
    },
}

/// Inputs arrive as INPUT_* variables, as composite actions pass them; flags override.
#[derive(clap::Args, Debug)]
struct ScanInputs {
    /// When to fail: new (findings not in the baseline), any, none.
    #[arg(long, env = "INPUT_FAIL_ON", default_value = "new")]
    fail_on: String,
    /// Baseline file of accepted fingerprints.
    #[arg(long, env = "INPUT_BASELINE")]
    baseline: Option<PathBuf>,
    /// Config file (.leakstop.toml or .gitleaks.toml); default: the one at the workspace root.
    #[arg(long, env = "INPUT_CONFIG")]
    config: Option<PathBuf>,
    /// Where to write the SARIF report (relative to the workspace).
    #[arg(long = "sarif", env = "INPUT_SARIF_FILE", default_value = "leakstop.sarif")]
    sarif: PathBuf,
    /// Event name (default: $GITHUB_EVENT_NAME).
    #[arg(long, env = "GITHUB_EVENT_NAME")]
    event_name: Option<String>,
    /// Event payload (default: $GITHUB_EVENT_PATH).
    #[arg(long, env = "GITHUB_EVENT_PATH")]
    event_path: Option<PathBuf>,
    /// The checkout (default: $GITHUB_WORKSPACE, else the current directory).
    #[arg(long, env = "GITHUB_WORKSPACE")]
    workspace: Option<PathBuf>,
    /// Remote to fetch missing commits from.
    #[arg(long, default_value = "origin")]
    remote: String,
    /// A leakstop service to send each finding's secret to, so it revokes what it issued before the job ends
    /// (https://, or http:// to loopback). Empty: no report.
    #[arg(long, env = "INPUT_REPORT_TO")]
    report_to: Option<String>,
}

pub fn run(args: ActionArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(ActionCommand::Export { name, env: _, output }) => export(&name, output),
        None => scan(args.scan),
    }
}

fn export(name: &str, as_output: bool) -> anyhow::Result<ExitCode> {
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .context("reading the value from stdin")?;
    // `$(…)` and most producers end with one newline that is not part of the value.
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        bail!("no value on stdin for {name}: nothing exported");
    }
    // Masks first: from here on the runner replaces the value with *** wherever it would appear.
    for line in mask_commands(&value) {
        println!("{line}");
    }
    let env = ActionsEnv::from_env();
    if as_output {
        env.set_output(name, &value)?;
    } else {
        env.export_env(name, &value)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn scan(inputs: ScanInputs) -> anyhow::Result<ExitCode> {
    let fail_on: FailOn = inputs.fail_on.parse().map_err(anyhow::Error::msg)?;
    let report_to = inputs
        .report_to
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .map(|u| super::report::endpoint(u.trim()))
        .transpose()?;
    let workspace = inputs.workspace.clone().unwrap_or_else(|| PathBuf::from("."));
    let event_name = inputs.event_name.clone().context(
        "GITHUB_EVENT_NAME is not set: run inside a GitHub Actions job, or pass --event-name and --event-path",
    )?;
    let event_path = inputs.event_path.clone().ok_or(event::EventError::NoEventPath)?;
    let plan = event::plan_from_file(&event_name, &event_path)?;

    // fail-on=any counts baseline findings too, so no baseline applies then.
    let baseline = inputs.baseline.as_deref().map(|p| workspace.join(p));
    let setup = leakstop_scan::Setup::discover(&leakstop_scan::SetupRequest {
        start: workspace.clone(),
        config: inputs.config.as_deref().map(|p| workspace.join(p)),
        baseline,
        ignore_files: Vec::new(),
        use_baseline: fail_on != FailOn::Any,
    })?;
    super::scan::print_setup(&setup, false);
    let scanner = setup.scanner(leakstop_scan::ScanOptions::default())?;

    let (findings, scanned) = match &plan {
        Plan::Range { base, head, depth_hint } => {
            let prepared = fetch::prepare_range(&workspace, &inputs.remote, base, head, *depth_hint)?;
            prepared.notes.iter().for_each(|n| eprintln!("leakstop: {n}"));
            let range = format!("{base}..{head}");
            (
                leakstop_git::scan_range(&workspace, &range, &scanner)?,
                format!("{}..{}", short(base), short(head)),
            )
        }
        Plan::Commits { commits, head } => {
            let prepared = fetch::prepare_commits(&workspace, &inputs.remote, commits, head)?;
            prepared.notes.iter().for_each(|n| eprintln!("leakstop: {n}"));
            let first = commits.first().map(String::as_str).unwrap_or(head);
            let range = match fetch::parent_of(&workspace, first)? {
                Some(parent) => format!("{parent}..{head}"),
                // The branch starts with a root commit: everything up to head is new.
                None => head.clone(),
            };
            let n = commits.len();
            (
                leakstop_git::scan_range(&workspace, &range, &scanner)?,
                format!("{n} pushed commit(s) up to {}", short(head)),
            )
        }
        Plan::Tree => (
            scanner.scan_paths(std::slice::from_ref(&workspace))?.findings,
            "the checked-out tree".to_string(),
        ),
        Plan::Nothing { reason } => {
            eprintln!("leakstop: nothing to scan: {reason}");
            (Vec::new(), "this event (nothing added)".to_string())
        }
    };

    let sarif_path = workspace.join(&inputs.sarif);
    write_sarif(&sarif_path, &findings)?;
    let env = ActionsEnv::from_env();
    let stdout = std::io::stdout();
    publish::publish(
        &findings,
        &scanned,
        Some(&inputs.sarif.to_string_lossy()),
        &env,
        &mut stdout.lock(),
    )?;

    if findings.is_empty() {
        eprintln!("leakstop: no secrets in {scanned}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "leakstop: {} secret(s) in {scanned}; report: {}",
        findings.len(),
        sarif_path.display()
    );
    if let Some(url) = &report_to
        && let Err(e) = super::report::send(url, super::report::from_findings(&findings), false)
    {
        eprintln!("leakstop: error: the findings were not reported: {e:#}");
    }
    match fail_on {
        FailOn::None => Ok(ExitCode::SUCCESS),
        FailOn::New | FailOn::Any => Ok(ExitCode::from(1)),
    }
}

fn write_sarif(path: &Path, findings: &[leakstop_scan::Finding]) -> anyhow::Result<()> {
    super::scan::write_report_file(path, findings, leakstop_scan::report::Format::Sarif)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
