//! `leakstop rules` (not implemented yet).
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum RulesCommand { List }

pub fn run(_args: RulesCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`leakstop rules` is not implemented yet")
}
