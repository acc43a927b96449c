//! `leakstop`: the one binary. A thin clap front end; every behaviour lives in a library crate.
//!
//! Exit codes (as ripgrep): 0 = clean / success, 1 = findings, 2 = error (usage, IO, config).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser, Debug)]
#[command(name = "leakstop", version, about = "Keep secrets from leaking through Git and CI", long_about = None)]
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
            eprintln!("leakstop: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Vault users type `-dev -dev-root-token-id=x` or `-format=json`; clap wants `--dev`. Rewrite a single-dash word
/// to double-dash when it names one of leakstop's long options, so both spellings work and clusters of short flags
/// (`-vv`) stay short flags.
fn normalize_vault_style_flags(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    fn longs(cmd: &clap::Command, out: &mut std::collections::HashSet<String>) {
        for a in cmd.get_arguments() {
            out.extend(a.get_long_and_visible_aliases().into_iter().flatten().map(String::from));
        }
        for sub in cmd.get_subcommands() {
            longs(sub, out);
        }
    }
    let mut known = std::collections::HashSet::new();
    longs(&Cli::command(), &mut known);
    args.enumerate()
        .map(|(i, a)| match a.to_str() {
            Some(s)
                if i > 0
                    && s.starts_with('-')
                    && !s.starts_with("--")
                    && known.contains(s[1..].split('=').next().unwrap_or_default()) =>
            {
                format!("-{s}").into()
            }
            _ => a,
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
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person watching a terminal, not in a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
