//! `leakstop login`, `read`, `creds` (not implemented yet).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct LoginArgs {}

#[derive(clap::Args, Debug)]
pub struct ReadArgs {}

pub fn run_login(_args: LoginArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`leakstop login` is not implemented yet")
}

pub fn run_read(_args: ReadArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`leakstop read` is not implemented yet")
}
