//! `leakstop server`: run the credential service from a config file, or `--dev` for a throwaway in-memory one.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leakstop_vault::server::{DevOptions, ServerConfig, run as run_config, run_dev};

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Server config (TOML): listener, TLS, storage, seal. See the README for an example.
    #[arg(long, value_name = "FILE", required_unless_present = "dev")]
    pub config: Option<PathBuf>,
    /// Dev mode: in memory, unsealed, `secret/` mounted as KV v2, root token printed. Never for production.
    #[arg(long, conflicts_with = "config")]
    pub dev: bool,
    /// Dev mode: use this root token id instead of a random one.
    #[arg(long, value_name = "ID", requires = "dev")]
    pub dev_root_token_id: Option<String>,
    /// Dev mode: the address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8200", requires = "dev")]
    pub dev_listen_address: String,
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    // Request-handling threads (default: one per core); LEAKSTOP_WORKER_THREADS overrides.
    if let Some(n) = std::env::var("LEAKSTOP_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build().context("cannot start the async runtime")?;
    if args.dev {
        rt.block_on(run_dev(DevOptions {
            root_token_id: args.dev_root_token_id,
            listen_address: args.dev_listen_address,
        }))?;
    } else {
        let path = args.config.context("--config FILE is required (or --dev)")?;
        let cfg = ServerConfig::load(&path)?;
        rt.block_on(run_config(cfg))?;
    }
    Ok(ExitCode::SUCCESS)
}
