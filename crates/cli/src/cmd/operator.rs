//! `leakstop operator init|unseal|seal|status|rotate`: operate a running server over its API.
use std::process::ExitCode;

use anyhow::Context;
use leakstop_vault::client::{Client, default_addr, default_token};
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct Conn {
    /// Server address (default: $LEAKSTOP_ADDR, then $VAULT_ADDR, then http://127.0.0.1:8200).
    #[arg(long, global = true)]
    pub address: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum OperatorCommand {
    /// Initialize a new server: prints the unseal key shares (Shamir) and the initial root token.
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
    Unseal {
        key: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Seal the server (needs a token with sudo on sys/seal).
    Seal {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show seal status.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Add a new barrier key term (old entries stay readable).
    Rotate {
        #[command(flatten)]
        conn: Conn,
    },
}

fn client(conn: &Conn) -> anyhow::Result<Client> {
    Ok(Client::new(
        &conn.address.clone().unwrap_or_else(default_addr),
        default_token(),
    )?)
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

pub fn run(cmd: OperatorCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match cmd {
            OperatorCommand::Init {
                key_shares,
                key_threshold,
                conn,
            } => {
                let c = client(&conn)?;
                let v = c
                    .call(
                        "PUT",
                        "sys/init",
                        Some(&json!({"secret_shares": key_shares, "secret_threshold": key_threshold})),
                    )
                    .await?
                    .context("empty answer to sys/init")?;
                for (i, k) in v["keys_base64"].as_array().into_iter().flatten().enumerate() {
                    println!("Unseal Key {}: {}", i + 1, k.as_str().unwrap_or_default());
                }
                println!("\nInitial Root Token: {}", v["root_token"].as_str().unwrap_or_default());
                println!(
                    "\nStore the unseal keys and the root token separately and safely: they are shown only once.\n\
                     The root token should be revoked once other admin tokens exist."
                );
                Ok(ExitCode::SUCCESS)
            }
            OperatorCommand::Unseal { key, conn } => {
                let key = match key {
                    Some(k) => k,
                    None => {
                        eprint!("Unseal Key (will be hidden if stdin is a terminal): ");
                        let mut s = String::new();
                        std::io::stdin()
                            .read_line(&mut s)
                            .context("cannot read the unseal key from stdin")?;
                        s.trim().to_string()
                    }
                };
                let v = client(&conn)?
                    .call("PUT", "sys/unseal", Some(&json!({"key": key})))
                    .await?
                    .unwrap_or_default();
                print_status(&v);
                Ok(ExitCode::SUCCESS)
            }
            OperatorCommand::Seal { conn } => {
                client(&conn)?.call("PUT", "sys/seal", None).await?;
                println!("Success! Sealed.");
                Ok(ExitCode::SUCCESS)
            }
            OperatorCommand::Status { conn } => {
                let v = client(&conn)?
                    .call("GET", "sys/seal-status", None)
                    .await?
                    .unwrap_or_default();
                print_status(&v);
                // Vault's convention: 2 when sealed, so scripts can test it.
                Ok(if v["sealed"] == true {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                })
            }
            OperatorCommand::Rotate { conn } => {
                let c = client(&conn)?;
                c.call("PUT", "sys/rotate", None).await?;
                let v = c.call("GET", "sys/key-status", None).await?.unwrap_or_default();
                println!("Success! Rotated key. Key Term: {}", v["data"]["term"]);
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
