//! `leakstop login`, `read`, `creds`: what a CI job runs to reach the service without a stored secret.
//!
//! `login --oidc` fetches the job's OIDC ID token (GitHub Actions: `ACTIONS_ID_TOKEN_REQUEST_URL` +
//! `ACTIONS_ID_TOKEN_REQUEST_TOKEN`; GitLab CI and others: `--jwt-env VAR` or `--jwt-file FILE`), exchanges it at
//! `auth/<mount>/login` for a short-lived leakstop token and prints the token on stdout (nothing else), so
//! `export LEAKSTOP_TOKEN=$(leakstop login --oidc --role ci)` works.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use leakstop_client::{self as client, Client};
use leakstop_proto::Envelope;
use serde_json::{Value, json};

const LOGIN_HELP: &str = "Prints the token on stdout and nothing else.\n\n\
Exit codes: 0 logged in; 2 error (no identity token, server unreachable, login refused).";

fn read_help() -> String {
    format!(
        "{}\n\nExit codes: 0 printed; 2 error (no token, server unreachable, permission denied, path or field not \
         found).",
        client::TOKEN_PRECEDENCE
    )
}

#[derive(clap::Args, Debug)]
#[command(after_help = LOGIN_HELP)]
pub struct LoginArgs {
    /// Log in with the CI job's OIDC identity token (JWT auth method).
    #[arg(long)]
    pub oidc: bool,
    /// The role to log in as.
    #[arg(long)]
    pub role: String,
    /// Mount path of the JWT auth method.
    #[arg(long, default_value = "jwt")]
    pub mount: String,
    /// Audience to request for the GitHub Actions ID token (must match the role's bound_audiences).
    #[arg(long, default_value = "leakstop")]
    pub audience: String,
    /// Read the ID token from this environment variable (GitLab CI: an `id_tokens:` variable).
    #[arg(long, value_name = "VAR", conflicts_with = "jwt_file")]
    pub jwt_env: Option<String>,
    /// Read the ID token from this file.
    #[arg(long, value_name = "FILE")]
    pub jwt_file: Option<PathBuf>,
    /// Server address (default: $LEAKSTOP_ADDR, then $VAULT_ADDR, then http://127.0.0.1:8200).
    #[arg(long)]
    pub address: Option<String>,
    /// Print the whole auth response as JSON instead of just the token.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
#[command(after_help = read_help())]
pub struct ReadArgs {
    /// A logical path: `secret/app/db` (KV v2 is detected and `data/` inserted), or any API path such as
    /// `github/token/deploy` or `auth/token/lookup-self`.
    pub path: String,
    /// Print only this field of the secret's data.
    #[arg(long)]
    pub field: Option<String>,
    /// Server address (default: $LEAKSTOP_ADDR, then $VAULT_ADDR, then http://127.0.0.1:8200).
    #[arg(long)]
    pub address: Option<String>,
}

async fn github_id_token(audience: &str) -> anyhow::Result<String> {
    let url = std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL").context(
        "no OIDC token source: ACTIONS_ID_TOKEN_REQUEST_URL is not set (GitHub Actions needs `permissions: id-token: write`; elsewhere pass --jwt-env or --jwt-file)",
    )?;
    let bearer = std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .context("ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set (GitHub Actions needs `permissions: id-token: write`)")?;
    let sep = if url.contains('?') { '&' } else { '?' };
    let full = format!("{url}{sep}audience={audience}");
    let resp = reqwest::Client::new()
        .get(&full)
        .bearer_auth(bearer)
        .header("Accept", "application/json; api-version=2.0")
        .send()
        .await
        .context("cannot reach the GitHub Actions OIDC token endpoint")?;
    let status = resp.status();
    if !status.is_success() {
        bail!("the GitHub Actions OIDC token endpoint answered {status}");
    }
    let v: Value = resp
        .json()
        .await
        .context("the OIDC token endpoint did not answer JSON")?;
    v["value"]
        .as_str()
        .map(String::from)
        .context("the OIDC token endpoint's answer has no `value`")
}

pub fn run_login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    if !args.oidc && args.jwt_env.is_none() && args.jwt_file.is_none() {
        bail!("choose how to log in: --oidc (the CI job's identity token), --jwt-env VAR or --jwt-file FILE");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let jwt = if let Some(var) = &args.jwt_env {
            let jwt =
                std::env::var(var).with_context(|| format!("environment variable {var} (--jwt-env) is not set"))?;
            if jwt.trim().is_empty() {
                bail!("environment variable {var} (--jwt-env) is empty");
            }
            jwt
        } else if let Some(f) = &args.jwt_file {
            std::fs::read_to_string(f).with_context(|| format!("cannot read --jwt-file {}", f.display()))?
        } else if let Ok(t) = std::env::var("LEAKSTOP_OIDC_TOKEN") {
            t
        } else {
            github_id_token(&args.audience).await?
        };
        let c = Client::new(&client::address(args.address.clone()), None)?;
        let v = c
            .call(
                "POST",
                &format!("auth/{}/login", args.mount.trim_matches('/')),
                Some(&json!({"role": args.role, "jwt": jwt.trim()})),
            )
            .await?
            .context("the login answer was empty")?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&v["auth"])?);
        } else {
            let answer: Envelope = serde_json::from_value(v).context("the login answer is not Vault's envelope")?;
            let t = answer
                .auth
                .map(|a| a.client_token)
                .filter(|t| !t.is_empty())
                .context("the login answer has no auth.client_token")?;
            println!("{}", t.expose_str());
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run_read(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let Some(token) = client::token()? else {
            bail!(
                "no token: set LEAKSTOP_TOKEN (e.g. `export LEAKSTOP_TOKEN=$(leakstop login --oidc --role ROLE)`); \
                 {}",
                client::TOKEN_PRECEDENCE
            );
        };
        let c = Client::new(&client::address(args.address.clone()), Some(&token))?;
        let path = args.path.trim_matches('/');
        // KV v2 mounts take `data/` after the mount; ask the server which mount serves the path.
        let mut api_path = path.to_string();
        let mut kv2 = false;
        if let Ok(Some(m)) = c.call("GET", &format!("sys/internal/ui/mounts/{path}"), None).await {
            let mount = m["data"]["path"].as_str().unwrap_or_default().to_string();
            if m["data"]["type"] == "kv" && m["data"]["options"]["version"] == "2" && !mount.is_empty() {
                let rest = path.strip_prefix(mount.as_str()).unwrap_or_default();
                if !rest.starts_with("data/") {
                    api_path = format!("{mount}data/{rest}");
                }
                kv2 = true;
            }
        }
        let method = if api_path.starts_with("github/token/") {
            "POST"
        } else {
            "GET"
        };
        let v = c
            .call(method, &api_path, None)
            .await?
            .context("the server returned no data")?;
        let data = if kv2 { &v["data"]["data"] } else { &v["data"] };
        match &args.field {
            Some(f) => match data.get(f) {
                Some(Value::String(s)) => println!("{s}"),
                Some(other) => println!("{other}"),
                None => bail!("field {f:?} not found at {path}"),
            },
            None => println!("{}", serde_json::to_string_pretty(data)?),
        }
        Ok(ExitCode::SUCCESS)
    })
}
