//! `leakstop`: the one binary. A thin clap front end; every behaviour lives in a library crate.
//!
//! Exit codes (as ripgrep): 0 = clean / success, 1 = findings, 2 = error (usage, IO, config).
//!
//! Unsafe code is denied (workspace lint) and allowed in one function: `cmd::server::forget_env_var`, which
//! overwrites and removes the HSM PIN's environment variable before any thread starts (`remove_var` is unsafe, and
//! the bytes /proc/PID/environ shows can only be cleared through `getenv`'s pointer).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// `0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-04)`; the commit is `unknown` outside a git checkout.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LEAKSTOP_COMMIT"),
    ", built ",
    env!("LEAKSTOP_BUILD_DATE"),
    ")"
);

const EXIT_CODES: &str = "Exit codes: 0 = success, nothing found; 1 = `scan`, the hook or the Action found secrets \
(or `audit verify` found tampering); 2 = error: bad usage, unreadable input or config, I/O or server failure.";

#[derive(Parser, Debug)]
#[command(
    name = "leakstop",
    version = VERSION,
    about = "Keep secrets from leaking through Git and CI",
    long_about = None,
    after_help = EXIT_CODES
)]
struct Cli {
    /// Log verbosity (-v info, -vv debug, -vvv trace). Logs go to stderr and never contain secrets.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Scan files, directories, stdin (`-`) or git history for secrets.
    Scan(cmd::scan::ScanArgs),
    /// Send the secrets of a saved JSON report to a leakstop service, which revokes what it issued.
    Report(cmd::report::ReportArgs),
    /// List or check detection rules.
    #[command(subcommand)]
    Rules(cmd::rules::RulesCommand),
    /// Install or remove the git pre-commit hook.
    #[command(subcommand)]
    Hook(cmd::hook::HookCommand),
    /// Run the GitHub Action logic (scan what the event added, annotate, summarize).
    GithubAction(cmd::action::ActionArgs),
    /// Run the credential service.
    Server(cmd::server::ServerArgs),
    /// Operate a running server: init, unseal, seal, status, rotate.
    #[command(subcommand)]
    Operator(cmd::operator::OperatorCommand),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Log in to a leakstop server (e.g. with the CI job's OIDC token).
    Login(cmd::login::LoginArgs),
    /// Read a secret (KV v2 or any logical path) from a leakstop server.
    Read(cmd::login::ReadArgs),
    /// Fetch short-lived credentials (e.g. `github/token/ROLE`) from a leakstop server.
    Creds(cmd::login::ReadArgs),
}

fn main() -> ExitCode {
    let args = normalize_vault_style_flags(std::env::args_os());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Scan(a) => cmd::scan::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Rules(c) => cmd::rules::run(c),
        Command::Hook(c) => cmd::hook::run(c),
        Command::GithubAction(a) => cmd::action::run(a),
        Command::Server(a) => cmd::server::run(a),
        Command::Operator(c) => cmd::operator::run(c),
        Command::Audit(c) => cmd::audit::run(c),
        Command::Login(a) => cmd::login::run_login(a),
        Command::Read(a) => cmd::login::run_read(a),
        Command::Creds(a) => cmd::login::run_read(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("leakstop: error: {}", error_text(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each cause once: many library errors already quote their cause in their message,
/// and `{:#}` would print it again ("X: cannot write: No such file: No such file").
fn error_text(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// Vault users type `-dev -dev-root-token-id=x`; clap wants `--dev`. Rewrite single-dash long flags
/// (more than one letter after the dash) to double-dash so both spellings work; `-vv` and `-vvv` (verbosity)
/// stay short flags.
fn normalize_vault_style_flags(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    args.enumerate()
        .map(|(i, a)| {
            if i == 0 {
                return a;
            }
            match a.to_str() {
                Some(s)
                    if s.len() > 2
                        && s.starts_with('-')
                        && !s.starts_with("--")
                        && s.as_bytes()[1].is_ascii_alphabetic()
                        && s[1..].split('=').next().is_some_and(|n| {
                            n.len() > 1
                                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                                && !n.chars().all(|c| c == 'v')
                        }) =>
                {
                    format!("-{s}").into()
                }
                _ => a,
            }
        })
        .collect()
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEAKSTOP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a person at a terminal: not in files, pipes or CI logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
