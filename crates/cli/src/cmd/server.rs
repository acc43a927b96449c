//! `leakstop server`: run the credential service from a config file, or `--dev` for a throwaway in-memory one.
//!
//! Start-up order: arguments, config file, the HSM PIN (then removed from the environment), and only then the async
//! runtime and its threads; the library checks TLS and the rest of the config before it opens storage.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use leakstop_server::{DevOptions, ServerConfig, run as run_config, run_dev};

const EXIT_CODES: &str = "\
Prints `leakstop server listening on URL` to stderr once it listens (dev mode: the root token first).

Exit codes: 0 after a clean shutdown (SIGINT or SIGTERM); 2 when it cannot start (bad arguments or config, storage in \
use, HSM PIN or key, TLS files, address in use).";

#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct ServerArgs {
    /// Server config (TOML): listener, TLS, storage, seal. See the README for an example.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Dev mode: in memory, unsealed, `secret/` mounted as KV v2, root token printed. Never for production.
    #[arg(long, conflicts_with = "config")]
    pub dev: bool,
    /// Dev mode: use this root token id instead of a random one.
    #[arg(long, value_name = "ID")]
    pub dev_root_token_id: Option<String>,
    /// Dev mode: the address to listen on [default: 127.0.0.1:8200].
    #[arg(long, value_name = "ADDR")]
    pub dev_listen_address: Option<String>,
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    if !args.dev {
        // Checked here rather than by clap, whose message for these asks for both --dev and --config.
        for (given, flag) in [
            (args.dev_root_token_id.is_some(), "--dev-root-token-id"),
            (args.dev_listen_address.is_some(), "--dev-listen-address"),
        ] {
            if given {
                bail!("{flag} needs --dev: it only applies to the in-memory dev server");
            }
        }
    }
    let start = if args.dev {
        Start::Dev(DevOptions {
            root_token_id: args.dev_root_token_id.map(leakstop_proto::Secret::from),
            listen_address: args.dev_listen_address.unwrap_or_else(|| "127.0.0.1:8200".into()),
        })
    } else {
        let Some(path) = args.config else {
            bail!("--config FILE is required (or --dev for a throw-away in-memory server)");
        };
        let cfg = ServerConfig::load(&path)?;
        let pin = match cfg.pin_source() {
            Some(source) => {
                let pin = source.read()?;
                if let leakstop_seal::PinSource::Env(name) = source {
                    forget_env_var(name);
                }
                Some(pin)
            }
            None => None,
        };
        Start::Config(Box::new(cfg), pin)
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    // Request-handling threads (default: one per core); LEAKSTOP_WORKER_THREADS overrides.
    if let Some(n) = std::env::var("LEAKSTOP_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build().context("cannot start the async runtime")?;
    match start {
        Start::Dev(opts) => rt.block_on(run_dev(opts))?,
        Start::Config(cfg, pin) => rt.block_on(run_config(*cfg, pin))?,
    }
    Ok(ExitCode::SUCCESS)
}

enum Start {
    Dev(DevOptions),
    Config(Box<ServerConfig>, Option<leakstop_seal::Pin>),
}

/// Remove a variable that held the HSM PIN from this process's environment, its bytes included, so the PIN cannot
/// be read back later (`/proc/PID/environ`, a core dump, a child process). Must run before any thread exists.
#[allow(unsafe_code)]
fn forget_env_var(name: &str) {
    #[cfg(target_os = "linux")]
    if let Ok(cname) = std::ffi::CString::new(name) {
        use zeroize::Zeroize;
        // SAFETY: called from `run` before the async runtime starts, while the process has one thread, so nothing
        // reads or changes the environment meanwhile. glibc's and musl's `getenv` return a pointer into the
        // environment strings themselves (at first those the kernel copied at exec, which /proc/PID/environ
        // shows), NUL-terminated and writable; the `strlen` bytes it points to are the value, overwritten in
        // place before `remove_var` unlinks the entry.
        unsafe {
            let value = libc::getenv(cname.as_ptr());
            if !value.is_null() {
                std::slice::from_raw_parts_mut(value.cast::<u8>(), libc::strlen(value)).zeroize();
            }
        }
    }
    // SAFETY: as above, no other thread exists yet to read the environment concurrently.
    unsafe { std::env::remove_var(name) };
}
