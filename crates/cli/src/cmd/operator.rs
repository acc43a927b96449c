//! `leakstop operator` (not implemented yet).
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum OperatorCommand { Init }

pub fn run(_args: OperatorCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`leakstop operator` is not implemented yet")
}
