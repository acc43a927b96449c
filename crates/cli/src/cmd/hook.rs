//! `leakstop hook` (not implemented yet).
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum HookCommand { Install, Uninstall }

pub fn run(_args: HookCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`leakstop hook` is not implemented yet")
}
