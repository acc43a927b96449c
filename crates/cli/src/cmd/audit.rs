//! `leakstop audit verify FILE`: check an audit log's hash chain.
//! Exit codes: 0 the chain is intact, 1 it is broken (the first broken line is named), 2 the file cannot be read.
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leakstop_vault::audit::chain::{Verdict, verify};

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the hash chain of a JSON-lines audit log written by `leakstop server`.
    Verify(VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The audit log file.
    pub file: PathBuf,
    /// The genesis hash the server recorded for this file (`sha256:<hex>`), to also catch a log rewritten from
    /// its first line.
    #[arg(long, value_name = "SHA256")]
    pub genesis: Option<String>,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify_file(&args),
    }
}

fn verify_file(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let file =
        std::fs::File::open(&args.file).with_context(|| format!("cannot open audit log {}", args.file.display()))?;
    let verdict = verify(BufReader::new(file), args.genesis.as_deref())
        .with_context(|| format!("cannot read audit log {}", args.file.display()))?;
    match verdict {
        Verdict::Intact {
            lines,
            genesis_hash,
            last_hash,
        } => {
            println!(
                "{}: chain intact, {lines} lines (genesis {genesis_hash}, last {last_hash})",
                args.file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Broken { line, reason } => {
            println!("{}:{line}: chain broken: {reason}", args.file.display());
            Ok(ExitCode::from(1))
        }
    }
}
