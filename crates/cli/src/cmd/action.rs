//! `leakstop github-action` (not implemented yet).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ActionArgs {}

pub fn run(_args: ActionArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`leakstop github-action` is not implemented yet")
}
