//! `leakstop audit` (not implemented yet).
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand { Verify }

pub fn run(_args: AuditCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`leakstop audit` is not implemented yet")
}
