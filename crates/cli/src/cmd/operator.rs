//! `leakstop operator init|unseal|seal|status|rotate`: operate a running server over its API.
use std::process::ExitCode;

use anyhow::Context;
use leakstop_client::{self as client, Client};
use leakstop_proto::{InitRequest, InitResponse};
use serde_json::{Value, json};

const EXIT_CODES: &str = "Exit codes: 0 success; 2 error (server unreachable, request refused, bad input).";

const STATUS_EXIT_CODES: &str = "Exit codes: 0 unsealed; 2 sealed; 1 the status could not be read (server \
     unreachable, bad address). As `vault status`, so scripts can test them.";

#[derive(clap::Args, Debug)]
pub struct Conn {
    /// Server address (default: $LEAKSTOP_ADDR, then $VAULT_ADDR, then http://127.0.0.1:8200). The token comes from
    /// $LEAKSTOP_TOKEN, else $VAULT_TOKEN, else ~/.vault-token; an empty variable counts as unset.
    #[arg(long, global = true)]
    pub address: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatusFormat {
    /// Aligned `Key Value` lines.
    #[default]
    Table,
    /// The server's `sys/seal-status` answer as JSON.
    Json,
}

#[derive(clap::Subcommand, Debug)]
pub enum OperatorCommand {
    /// Initialize a new server: prints the unseal key shares (Shamir) and the initial root token.
    #[command(after_help = EXIT_CODES)]
    Init {
        /// Number of unseal key shares (Shamir seal).
        #[arg(long = "key-shares", default_value_t = 5)]
        key_shares: u8,
        /// Shares needed to unseal (Shamir seal).
        #[arg(long = "key-threshold", default_value_t = 3)]
        key_threshold: u8,
        #[command(flatten)]
        conn: Conn,
    },
    /// Submit one unseal key share (read from stdin when not given, so it stays out of shell history).
    #[command(after_help = EXIT_CODES)]
    Unseal {
        key: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Seal the server (needs a token with sudo on sys/seal).
    #[command(after_help = EXIT_CODES)]
    Seal {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show seal status.
    #[command(after_help = STATUS_EXIT_CODES)]
    Status {
        /// Output format (Vault's spelling `-format=json` works too).
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
        #[command(flatten)]
        conn: Conn,
    },
    /// Add a new barrier key term (old entries stay readable).
    #[command(after_help = EXIT_CODES)]
    Rotate {
        #[command(flatten)]
        conn: Conn,
    },
}

/// A client for `conn`; with `token` it sends the caller's token (init, unseal and status need none).
fn client(conn: &Conn, token: bool) -> anyhow::Result<Client> {
    let token = if token { client::token()? } else { None };
    Ok(Client::new(&client::address(conn.address.clone()), token.as_ref())?)
}

fn print_status(v: &Value) {
    let g = |k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    println!("Seal Type       {}", g("type"));
    println!("Initialized     {}", g("initialized"));
    println!("Sealed          {}", g("sealed"));
    println!("Total Shares    {}", g("n"));
    println!("Threshold       {}", g("t"));
    println!("Unseal Progress {}/{}", g("progress"), g("t"));
    println!("Version         {}", g("version"));
    println!("Storage Type    {}", g("storage_type"));
}

async fn init(c: &Client, key_shares: u8, key_threshold: u8) -> anyhow::Result<()> {
    let request = InitRequest {
        secret_shares: key_shares.into(),
        secret_threshold: key_threshold.into(),
    };
    let v = c
        .call("PUT", "sys/init", Some(&serde_json::to_value(request)?))
        .await?
        .context("empty answer to sys/init")?;
    let answer: InitResponse = serde_json::from_value(v).context("the answer to sys/init is not Vault's")?;
    let keys = &answer.keys_base64;
    for (i, k) in keys.iter().enumerate() {
        println!("Unseal Key {}: {k}", i + 1);
    }
    println!(
        "{}Initial Root Token: {}",
        if keys.is_empty() { "" } else { "\n" },
        answer.root_token.expose_str()
    );
    if keys.is_empty() {
        // An auto seal (PKCS#11) unseals the server itself: there are no unseal keys to hand out.
        let status = c.call("GET", "sys/seal-status", None).await?.unwrap_or_default();
        println!(
            "\nleakstop is initialized and unsealed by its {} seal, which unseals it again at every start: there \
             are no unseal keys.\nStore the root token safely: it is shown only once. Revoke it once other admin \
             tokens exist.",
            status["type"].as_str().unwrap_or("automatic")
        );
    } else {
        println!(
            "\nleakstop is initialized and sealed. Unseal it with {key_threshold} of these {} keys, one \
             `leakstop operator unseal` each.\nStore the unseal keys and the root token separately and safely: they \
             are shown only once. Revoke the root token once other admin tokens exist.",
            keys.len()
        );
    }
    Ok(())
}

pub fn run(cmd: OperatorCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match cmd {
            OperatorCommand::Init {
                key_shares,
                key_threshold,
                conn,
            } => {
                init(&client(&conn, false)?, key_shares, key_threshold).await?;
                Ok(ExitCode::SUCCESS)
            }
            OperatorCommand::Unseal { key, conn } => {
                let c = client(&conn, false)?;
                let key = match key {
                    Some(k) => k,
                    None => {
                        eprint!("Unseal Key: ");
                        let mut s = String::new();
                        std::io::stdin()
                            .read_line(&mut s)
                            .context("cannot read the unseal key from stdin")?;
                        s.trim().to_string()
                    }
                };
                let v = c
                    .call("PUT", "sys/unseal", Some(&json!({"key": key})))
                    .await?
                    .unwrap_or_default();
                print_status(&v);
                Ok(ExitCode::SUCCESS)
            }
            OperatorCommand::Seal { conn } => {
                client(&conn, true)?.call("PUT", "sys/seal", None).await?;
                println!("Success! Sealed.");
                Ok(ExitCode::SUCCESS)
            }
            OperatorCommand::Status { format, conn } => {
                let v = match status(&conn).await {
                    Ok(v) => v,
                    Err(err) => {
                        // 1, not 2: 2 means "sealed" here (`vault status`'s convention).
                        eprintln!("leakstop: error: {err:#}");
                        return Ok(ExitCode::from(1));
                    }
                };
                match format {
                    StatusFormat::Table => print_status(&v),
                    StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                }
                Ok(if v["sealed"] == true {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                })
            }
            OperatorCommand::Rotate { conn } => {
                let c = client(&conn, true)?;
                c.call("PUT", "sys/rotate", None).await?;
                let v = c.call("GET", "sys/key-status", None).await?.unwrap_or_default();
                println!("Success! Rotated key. Key Term: {}", v["data"]["term"]);
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn status(conn: &Conn) -> anyhow::Result<Value> {
    Ok(client(conn, false)?
        .call("GET", "sys/seal-status", None)
        .await?
        .unwrap_or_default())
}
