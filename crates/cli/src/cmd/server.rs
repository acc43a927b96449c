//! `leakstop server` (not implemented yet).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ServerArgs {}

pub fn run(_args: ServerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`leakstop server` is not implemented yet")
}
