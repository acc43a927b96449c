//! `leakstop audit verify FILE`: check an audit log's keyed hash chain.
//!
//! The chain key comes from `--key-file`, or from the server (`GET /v1/sys/audit-chain`, a token with `sudo`),
//! which then also gives the device's genesis and head hashes to check the file against.
//! Exit codes: 0 the chain is intact, 1 it is broken (the first broken line is named), 2 the file cannot be read,
//! is not an audit log, or no key could be had.
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use leakstop_client::{self as client, Client};
use leakstop_vault::audit::chain::{ChainKey, Pins, Verdict, verify};

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the hash chain of a JSON-lines audit log written by `leakstop server`.
    Verify(VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The audit log file.
    pub file: PathBuf,
    /// A file holding the chain key in hex: the `key` of `GET /v1/sys/audit-chain` (`bao read -field=key
    /// sys/audit-chain > chain.key`). Without it, the key is fetched from the server.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// The log's genesis hash (`hmac-sha256:<hex>`) as recorded from the server: the device's `genesis` in `GET
    /// /v1/sys/audit-chain`, fixed when the device created the file. Catches a log replaced whole.
    #[arg(long, value_name = "HASH")]
    pub genesis: Option<String>,
    /// A head hash recorded earlier from the server (the device's `head` in `GET /v1/sys/audit-chain`): the log
    /// must still hold that line, which catches lines cut from its end.
    #[arg(long, value_name = "HASH")]
    pub head: Option<String>,
    /// The server to fetch the key and the pins from (default: $LEAKSTOP_ADDR, then $VAULT_ADDR); its token
    /// ($LEAKSTOP_TOKEN, then $VAULT_TOKEN) needs `sudo` on sys/audit-chain.
    #[arg(long)]
    pub address: Option<String>,
    /// The server's audit device the file belongs to, e.g. `file/` (default: the device writing FILE).
    #[arg(long)]
    pub device: Option<String>,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify_file(&args),
    }
}

/// The key, and the pins the server reports for the file's device (when the file is one the server writes).
struct FromServer {
    key: ChainKey,
    genesis: Option<String>,
    head: Option<String>,
}

fn fetch(args: &VerifyArgs) -> anyhow::Result<FromServer> {
    let sourced = client::address(args.address.clone());
    let token = client::token()?;
    let client = Client::new(&sourced, token.as_ref())?;
    let addr = sourced.value.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let body = rt
        .block_on(client.call("GET", "sys/audit-chain", None))
        .with_context(|| {
            format!(
                "the audit chain is keyed: give --key-file FILE, or let the server at {addr} give the key (set \
                 LEAKSTOP_ADDR or --address, and LEAKSTOP_TOKEN to a token with sudo on sys/audit-chain)"
            )
        })?
        .unwrap_or_default();
    let data = &body["data"];
    let key = ChainKey::from_hex(data["key"].as_str().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("the server's sys/audit-chain answer: {e}"))?;
    let devices = data["devices"].as_object().cloned().unwrap_or_default();
    let wanted = match &args.device {
        Some(d) => {
            let name = format!("{}/", d.trim_matches('/'));
            match devices.get(&name) {
                Some(v) => Some(v.clone()),
                None => bail!(
                    "the server has no audit device `{name}` (it has: {})",
                    devices.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }
        }
        None => {
            let mine = std::fs::canonicalize(&args.file).ok();
            devices
                .values()
                .find(|v| {
                    v["file_path"]
                        .as_str()
                        .and_then(|p| std::fs::canonicalize(p).ok())
                        .is_some_and(|p| Some(p) == mine)
                })
                .cloned()
        }
    };
    let pin = |field: &str| wanted.as_ref().and_then(|v| v[field].as_str()).map(String::from);
    if wanted.is_none() {
        eprintln!(
            "note: {} is not the file of any audit device of {addr}: checked with the key only, without the \
             server's genesis and head pins",
            args.file.display()
        );
    }
    Ok(FromServer {
        key,
        genesis: pin("genesis"),
        head: pin("head"),
    })
}

fn read_key(path: &Path) -> anyhow::Result<ChainKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    ChainKey::from_hex(&text).map_err(|e| {
        anyhow::anyhow!(
            "key file {}: {e} (write the `key` of GET /v1/sys/audit-chain into it)",
            path.display()
        )
    })
}

fn verify_file(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let file =
        std::fs::File::open(&args.file).with_context(|| format!("cannot open audit log {}", args.file.display()))?;
    let server = match &args.key_file {
        Some(path) => FromServer {
            key: read_key(path)?,
            genesis: None,
            head: None,
        },
        None => fetch(args)?,
    };
    let pins = Pins {
        genesis: args.genesis.as_deref().or(server.genesis.as_deref()),
        head: args.head.as_deref().or(server.head.as_deref()),
    };
    let verdict = verify(&server.key, BufReader::new(file), pins)
        .with_context(|| format!("cannot read audit log {}", args.file.display()))?;
    let name = args.file.display();
    match verdict {
        Verdict::Intact {
            lines,
            genesis_hash,
            last_hash,
        } => {
            let pinned = match (pins.genesis.is_some(), pins.head.is_some()) {
                (true, true) => ", genesis and head as pinned",
                (true, false) => ", genesis as pinned",
                (false, true) => ", head as pinned",
                (false, false) => "",
            };
            println!("{name}: chain intact, {lines} lines (genesis {genesis_hash}, last {last_hash}){pinned}");
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Broken { line, reason } => {
            println!("{name}:{line}: chain broken: {reason}");
            Ok(ExitCode::from(1))
        }
        Verdict::NotAuditLog(reason) => {
            eprintln!("{name}: {reason}");
            Ok(ExitCode::from(2))
        }
    }
}
