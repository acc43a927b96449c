//! `leakstop hook install|uninstall|run`: the native git pre-commit hook.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use leakstop_ci::hook::{self, Installed, Uninstalled};

#[derive(clap::Subcommand, Debug)]
pub enum HookCommand {
    /// Install the pre-commit hook (respects core.hooksPath; an existing hook is kept and run first).
    Install {
        /// Repository to install into (default: the one containing the current directory).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Chain behind a hook manager's hook, or replace a leftover chained hook.
        #[arg(long)]
        force: bool,
    },
    /// Remove the hook and restore the hook it chained, if any.
    Uninstall {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
    /// What the hook runs: scan the staged changes, block the commit if they add a secret.
    Run {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
}

pub fn run(cmd: HookCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HookCommand::Install { repo, force } => {
            let exe = std::env::current_exe().context("locating the leakstop binary")?;
            match hook::install(&repo, &exe, force)? {
                Installed::New { hook, chained: None } => {
                    eprintln!("leakstop: installed the pre-commit hook at {}", hook.display())
                }
                Installed::New { hook, chained: Some(c) } => eprintln!(
                    "leakstop: installed the pre-commit hook at {}; your existing hook now lives at {} and still runs first",
                    hook.display(),
                    c.display()
                ),
                Installed::Updated { hook } => {
                    eprintln!("leakstop: refreshed the pre-commit hook at {}", hook.display())
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        HookCommand::Uninstall { repo } => {
            match hook::uninstall(&repo)? {
                Uninstalled::Removed { hook, restored: None } => {
                    eprintln!("leakstop: removed the pre-commit hook at {}", hook.display())
                }
                Uninstalled::Removed {
                    hook,
                    restored: Some(_),
                } => {
                    eprintln!(
                        "leakstop: removed leakstop's hook; restored your previous hook at {}",
                        hook.display()
                    )
                }
                Uninstalled::NotInstalled { hook } => {
                    eprintln!("leakstop: no pre-commit hook at {}; nothing to do", hook.display())
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        HookCommand::Run { repo } => run_staged(&repo),
    }
}

/// Scans the staged changes; on findings prints where, what and how to proceed, and exits 1 (blocks the commit).
///
/// It is `leakstop scan --staged` (same discovery of config, baseline and ignore files) plus the advice a
/// developer needs at that moment.
fn run_staged(repo: &std::path::Path) -> anyhow::Result<ExitCode> {
    let code = super::scan::run(super::scan::ScanArgs::staged(repo))?;
    if code == ExitCode::from(1) {
        eprintln!(
            "\nleakstop: commit blocked: the staged changes add the secret(s) above.\n\
             \x20 - remove the secret (use an environment variable or a secret store); if it was ever pushed, rotate it;\n\
             \x20 - a false positive? add `leakstop:allow` in a comment on that line;\n\
             \x20 - accept it knowingly: leakstop scan --write-baseline .leakstop-baseline\n\
             \x20 - skip this check once: SKIP=leakstop git commit ...  (or git commit --no-verify)"
        );
    }
    Ok(code)
}
