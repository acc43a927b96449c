//! `leakstop scan` (not implemented yet).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ScanArgs {}

pub fn run(_args: ScanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`leakstop scan` is not implemented yet")
}
