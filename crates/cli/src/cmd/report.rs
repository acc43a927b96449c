//! Sending found secrets to a leakstop service (`scan --report-to URL`, `report REPORT.json --to URL`), which
//! revokes the credentials it issued and flags the values it stores: the detect → revoke loop.
//!
//! Secrets travel only over TLS, or to a loopback address (a local server); plain HTTP elsewhere is refused before
//! anything is scanned or sent. The service answers alike for secrets it knows and does not, so the summary says
//! what it did only when a token that may read `sys/leaks` is available (LEAKSTOP_TOKEN, VAULT_TOKEN...).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use leakstop_client::{self as client, Client};
use leakstop_proto::leaks::{ReportAnswer, ReportRequest, ReportedSecret, Source};
use leakstop_scan::Finding;
use serde_json::Value;

/// Secrets per request: well within the service's default cap and its body limit for requests without a token.
const BATCH: usize = 100;
/// How often a rate-limited batch is retried (waiting `Retry-After` each time).
const RETRIES: usize = 5;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 reported; 2 error (unreadable or redacted report, refused URL, server \
                        unreachable or refusing)."
)]
pub struct ReportArgs {
    /// A JSON or JSON Lines report written by `leakstop scan --format json --show-secrets -o REPORT.json`.
    pub report: PathBuf,
    /// The leakstop service (e.g. https://leakstop.example.com): https://, or http:// to a loopback address.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Do not print the summary line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// The endpoint for `url` (a server address, or the endpoint itself), refused unless it is TLS or loopback.
pub fn endpoint(url: &str) -> anyhow::Result<reqwest::Url> {
    let u = reqwest::Url::parse(url).with_context(|| {
        format!("--report-to {url:?} is not a URL: give the service's address, e.g. https://leakstop.example.com")
    })?;
    let host = u.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => bail!(
            "refusing to send secrets to {url} over plain HTTP: anyone on the way could read them. Use https://, \
             or http:// only to a loopback address (127.0.0.1, ::1, localhost) for a local server"
        ),
        s => bail!("--report-to {url}: unsupported scheme `{s}`: use https:// (or http:// to a loopback address)"),
    }
    let base = u.as_str().trim_end_matches('/');
    let full = if base.ends_with("/v1/sys/leaks/report") {
        base.to_string()
    } else {
        format!("{base}/v1/sys/leaks/report")
    };
    Ok(reqwest::Url::parse(&full)?)
}

/// Each finding's secret with where it was found (the repository from GitHub Actions' environment, when set).
pub fn from_findings(findings: &[Finding]) -> Vec<ReportedSecret> {
    let repository = std::env::var("GITHUB_REPOSITORY").ok().filter(|r| !r.is_empty());
    let server = std::env::var("GITHUB_SERVER_URL").unwrap_or_else(|_| "https://github.com".into());
    findings
        .iter()
        .map(|f| {
            let commit = f.commit.as_ref().map(|c| c.id.clone());
            let url = match (&repository, &commit) {
                (Some(r), Some(c)) => Some(format!("{server}/{r}/blob/{c}/{}#L{}", f.path, f.line)),
                _ => None,
            };
            ReportedSecret::WithSource {
                secret: f.secret.expose_str(),
                source: Some(Source {
                    repository: repository.clone(),
                    commit,
                    path: Some(f.path.clone()),
                    line: Some(u64::from(f.line)),
                    url,
                }),
            }
        })
        .collect()
}

/// Send `secrets` in batches and print what the service did (without a secret); returns the summary line.
pub fn send(url: &reqwest::Url, secrets: Vec<ReportedSecret>, quiet: bool) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let line = rt.block_on(send_async(url, secrets))?;
    if !quiet {
        eprintln!("leakstop: {line}");
    }
    Ok(line)
}

async fn send_async(url: &reqwest::Url, secrets: Vec<ReportedSecret>) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot set up the HTTP client")?;
    let total = secrets.len();
    let mut receipts = Vec::with_capacity(total);
    for batch in secrets.chunks(BATCH) {
        let body = ReportRequest {
            secrets: batch.to_vec(),
            source: None,
        };
        let answer = post(&http, url, &body).await?;
        receipts.extend(answer.receipts);
    }
    let server = url.as_str().trim_end_matches("/v1/sys/leaks/report").to_string();
    let outcome = outcomes(&server, &receipts).await;
    Ok(match outcome {
        Some(counts) if counts.is_empty() => {
            format!("reported {total} secret(s) to {server}: none was a credential or value it holds")
        }
        Some(counts) => format!("reported {total} secret(s) to {server}: {}", describe(&counts)),
        None => format!(
            "reported {total} secret(s) to {server} (it answers alike for secrets it knows and does not; with a \
             token that may read sys/leaks in LEAKSTOP_TOKEN, this line says what it revoked)"
        ),
    })
}

async fn post(http: &reqwest::Client, url: &reqwest::Url, body: &ReportRequest) -> anyhow::Result<ReportAnswer> {
    for _ in 0..=RETRIES {
        let resp = http
            .post(url.clone())
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the leakstop service at {url}"))?;
        let status = resp.status().as_u16();
        if status == 429 {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
                .min(60);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let msg = v["errors"]
                .as_array()
                .map(|e| e.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
                .unwrap_or_default();
            bail!("the leakstop service at {url} refused the report ({status}): {msg}");
        }
        return serde_json::from_value(v["data"].clone())
            .with_context(|| format!("{url} did not answer like a leakstop service (no receipts)"));
    }
    bail!("the leakstop service at {url} kept answering 429 (rate limited): report again later")
}

/// `kind/action` → count for the receipts that have a record, when a token may read them.
async fn outcomes(server: &str, receipts: &[String]) -> Option<BTreeMap<(String, String), usize>> {
    let token = client::token().ok().flatten()?;
    let addr = client::Sourced {
        value: server.to_string(),
        source: "--report-to".into(),
    };
    let c = Client::new(&addr, Some(&token)).ok()?;
    let mut counts = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in receipts.iter().filter(|r| seen.insert(r.as_str())) {
        match c.call("GET", &format!("sys/leaks/{r}"), None).await {
            Ok(Some(v)) => {
                let kind = v["data"]["kind"].as_str().unwrap_or_default().to_string();
                let action = v["data"]["action"].as_str().unwrap_or_default().to_string();
                *counts.entry((kind, action)).or_default() += 1;
            }
            Err(client::ClientError::Status { status: 404, .. }) => {}
            // No permission (or no server): the summary cannot say what happened.
            _ => return None,
        }
    }
    Some(counts)
}

/// `revoked 1 token, flagged 1 stored secret`.
fn describe(counts: &BTreeMap<(String, String), usize>) -> String {
    let mut parts = Vec::new();
    for ((kind, action), n) in counts {
        let (one, many) = match kind.as_str() {
            "token" => ("token", "tokens"),
            "lease" => ("leased credential", "leased credentials"),
            "kv" => ("stored secret", "stored secrets"),
            "unseal" => ("unseal key share", "unseal key shares"),
            _ => ("secret", "secrets"),
        };
        parts.push(format!("{action} {n} {}", if *n == 1 { one } else { many }));
    }
    // Revocations first: they are what a reader looks for.
    parts.sort_by_key(|p| !p.starts_with("revoked"));
    parts.join(", ")
}

/// `leakstop report REPORT.json --to URL`.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let url = endpoint(&args.to)?;
    let text = std::fs::read_to_string(&args.report)
        .with_context(|| format!("cannot read the report {}", args.report.display()))?;
    let items: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(a)) => a,
        Ok(_) => bail!(
            "{} is not a leakstop JSON report (a list of findings)",
            args.report.display()
        ),
        // JSON Lines: one finding per line.
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|_| {
                    anyhow::anyhow!(
                        "{} line {}: not JSON; give a report written with --format json or jsonl",
                        args.report.display(),
                        i + 1
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let mut secrets = Vec::with_capacity(items.len());
    for (i, f) in items.iter().enumerate() {
        if f["redacted"] != Value::Bool(false) {
            bail!(
                "{}: finding {} has its secret redacted: write the report with `leakstop scan --format json \
                 --show-secrets -o REPORT.json` (and keep that file private)",
                args.report.display(),
                i + 1
            );
        }
        let Some(secret) = f["secret"].as_str().filter(|s| !s.is_empty()) else {
            bail!("{}: finding {} has no `secret`", args.report.display(), i + 1);
        };
        secrets.push(ReportedSecret::WithSource {
            secret: secret.to_string(),
            source: Some(Source {
                repository: std::env::var("GITHUB_REPOSITORY").ok().filter(|r| !r.is_empty()),
                commit: f["commit"]["id"].as_str().map(String::from),
                path: f["path"].as_str().map(String::from),
                line: f["line"].as_u64(),
                url: None,
            }),
        });
    }
    if secrets.is_empty() {
        if !args.quiet {
            eprintln!("leakstop: {} has no findings: nothing to report", args.report.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    send(&url, secrets, args.quiet)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_over_tls_or_to_loopback_only() {
        for ok in [
            "https://vault.example.com",
            "http://127.0.0.1:8200",
            "http://[::1]:8200/",
            "http://localhost:1",
        ] {
            let u = endpoint(ok).unwrap();
            assert!(u.path().ends_with("/v1/sys/leaks/report"), "{u}");
        }
        for bad in [
            "http://vault.example.com",
            "http://10.0.0.5:8200",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
        let e = endpoint("http://vault.example.com").unwrap_err().to_string();
        assert!(e.contains("plain HTTP") && e.contains("https://"), "{e}");
    }

    #[test]
    fn the_summary_names_what_was_done() {
        let mut c = BTreeMap::new();
        c.insert(("kv".to_string(), "flagged".to_string()), 1);
        c.insert(("token".to_string(), "revoked".to_string()), 2);
        assert_eq!(describe(&c), "revoked 2 tokens, flagged 1 stored secret");
    }
}
