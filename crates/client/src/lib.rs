//! A small client for the service's HTTP API, used by the CLI (`operator`, `login`, `read`).
//!
//! Where the address comes from: `--address`, then `LEAKSTOP_ADDR`, then `VAULT_ADDR`, then
//! `http://127.0.0.1:8200`. The token: `LEAKSTOP_TOKEN`, then `VAULT_TOKEN`, then `~/.vault-token` (what
//! `bao login` / `vault login` write). An empty variable counts as unset. Both are checked before any request, so a
//! mistake is named with where it came from instead of surfacing as an HTTP library error.
//!
//! The server's error bodies stay Vault's (clients parse them); [`leakstop_wording`] turns them into leakstop's
//! words for the CLI.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

use std::time::Duration;

use leakstop_proto::{ErrorBody, Secret};
use serde_json::Value;

/// Help text naming where the CLI finds its token, for `--help` and for messages.
pub const TOKEN_PRECEDENCE: &str = "The token comes from LEAKSTOP_TOKEN, else VAULT_TOKEN, else ~/.vault-token \
     (written by `bao login`); an empty variable counts as unset.";

/// Help text naming where the CLI finds the server's address.
pub const ADDRESS_PRECEDENCE: &str =
    "The address comes from --address, else LEAKSTOP_ADDR, else VAULT_ADDR, else http://127.0.0.1:8200.";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {addr}: {reason} (is it running? set LEAKSTOP_ADDR or --address)")]
    Unreachable { addr: String, reason: String },
    #[error("{method} {path}: the server answered {status}: {message}")]
    Status {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A setting and the flag, variable or file it came from (named in messages). Debug shows only the source, as the
/// value may be a token.
#[derive(Clone)]
pub struct Sourced {
    pub value: String,
    pub source: String,
}

impl std::fmt::Debug for Sourced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sourced(<from {}>)", self.source)
    }
}

/// The first of these environment variables that is set and not empty.
fn first_env(names: &[&str]) -> Option<Sourced> {
    names.iter().find_map(|n| {
        std::env::var(n).ok().filter(|v| !v.is_empty()).map(|value| Sourced {
            value,
            source: (*n).to_string(),
        })
    })
}

/// The server address: `flag` (`--address`), else `LEAKSTOP_ADDR`, else `VAULT_ADDR`, else the local default.
pub fn address(flag: Option<String>) -> Sourced {
    if let Some(value) = flag {
        return Sourced {
            value,
            source: "--address".into(),
        };
    }
    first_env(&["LEAKSTOP_ADDR", "VAULT_ADDR"]).unwrap_or_else(|| Sourced {
        value: "http://127.0.0.1:8200".into(),
        source: "the default address".into(),
    })
}

/// The token, in the order of [`TOKEN_PRECEDENCE`]; `None` when there is none.
pub fn token() -> Result<Option<Sourced>, ClientError> {
    if let Some(t) = first_env(&["LEAKSTOP_TOKEN", "VAULT_TOKEN"]) {
        return Ok(Some(t));
    }
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let path = std::path::Path::new(&home).join(".vault-token");
    match std::fs::read_to_string(&path) {
        // The CLI that wrote it may end it with a newline; that is not part of the token.
        Ok(t) if !t.trim().is_empty() => Ok(Some(Sourced {
            value: t.trim().to_string(),
            source: path.display().to_string(),
        })),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::Invalid(format!(
            "cannot read the token file {}: {e} (set LEAKSTOP_TOKEN instead, or fix the file's permissions)",
            path.display()
        ))),
    }
}

/// An address the HTTP client can use: `http://` or `https://` and a host.
fn check_address(addr: &Sourced) -> Result<String, ClientError> {
    let a = addr.value.trim_end_matches('/');
    if !a.contains("://") {
        return Err(ClientError::Invalid(format!(
            "address `{a}` (from {}) has no scheme: use http://{a} or https://{a}",
            addr.source
        )));
    }
    match reqwest::Url::parse(a) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(a.to_string()),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Err(ClientError::Invalid(format!(
            "address `{a}` (from {}) starts with {}://: use http:// or https://",
            addr.source,
            u.scheme()
        ))),
        Ok(_) => Err(ClientError::Invalid(format!(
            "address `{a}` (from {}) names no host: use e.g. http://127.0.0.1:8200",
            addr.source
        ))),
        Err(e) => Err(ClientError::Invalid(format!(
            "address `{a}` (from {}) is not a valid URL ({e}): use e.g. http://127.0.0.1:8200",
            addr.source
        ))),
    }
}

/// A token that can go into an HTTP header. The message names the source and never the token.
fn check_token(token: &Sourced) -> Result<(), ClientError> {
    let t = &token.value;
    if t.contains(['\n', '\r']) {
        return Err(ClientError::Invalid(format!(
            "the token (from {}) contains a newline: check how it was read (`export LEAKSTOP_TOKEN=$(cat file)` and \
             `read -r LEAKSTOP_TOKEN < file` both drop it; a here-string or a file written by another tool may keep it)",
            token.source
        )));
    }
    if t.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(ClientError::Invalid(format!(
            "the token (from {}) contains a control or non-ASCII character: leakstop and Vault tokens are plain \
             ASCII; check how it was copied",
            token.source
        )));
    }
    if t.trim() != t {
        return Err(ClientError::Invalid(format!(
            "the token (from {}) starts or ends with a space: check how it was copied",
            token.source
        )));
    }
    Ok(())
}

/// Vault's error strings in leakstop's words: the `N errors occurred:` envelope removed (one string per error),
/// Vault's name replaced by what to do. The HTTP API keeps Vault's strings because hvac and bao parse them.
pub fn leakstop_wording(raw: &str) -> Vec<String> {
    let raw = raw.trim();
    let items: Vec<&str> = match raw.split_once(":\n") {
        Some((head, rest))
            if head.ends_with(" occurred") && head.split(' ').nth(1).is_some_and(|w| w.starts_with("error")) =>
        {
            rest.split('\n')
                .map(|l| l.trim().trim_start_matches("* ").trim())
                .filter(|l| !l.is_empty())
                .collect()
        }
        _ => vec![raw],
    };
    items
        .into_iter()
        .map(|m| match m {
            "Vault is sealed" => {
                "the server is sealed: unseal it with `leakstop operator unseal` (one key share per call)".into()
            }
            "Vault is not initialized" => "the server is not initialized: run `leakstop operator init`".into(),
            "Vault is already initialized" => "the server is already initialized".into(),
            m => m.to_string(),
        })
        .collect()
}

pub struct Client {
    pub addr: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl Client {
    /// A client for `addr` sending `token`; both are checked here, so a bad one fails before any request.
    pub fn new(addr: &Sourced, token: Option<&Sourced>) -> Result<Client, ClientError> {
        let addr = check_address(addr)?;
        if let Some(t) = token {
            check_token(t)?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Invalid(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            addr,
            token: token.map(|t| Secret::from(t.value.as_str())),
            http,
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Send a request to `/v1/<path>`; a non-2xx answer becomes an error carrying the server's message.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Option<Value>, ClientError> {
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ClientError::Invalid(format!("`{method}` is not an HTTP method")))?;
        let url = format!("{}/v1/{}", self.addr, path.trim_start_matches('/'));
        let mut req = self.http.request(m, &url);
        if let Some(t) = &self.token {
            req = req.header(leakstop_proto::TOKEN_HEADER, t.expose());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            addr: self.addr.clone(),
            reason: reqwest_reason(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<ErrorBody>(&text)
                .ok()
                .map(|e| {
                    e.errors
                        .iter()
                        .flat_map(|m| leakstop_wording(m))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| {
                    if status == 404 {
                        "not found".into()
                    } else {
                        "no error message".into()
                    }
                });
            let message = if status == 403 {
                format!("{message} (the token is missing, expired, revoked, or has no policy allowing this)")
            } else {
                message
            };
            return Err(ClientError::Status {
                method: method.into(),
                path: path.into(),
                status,
                message,
            });
        }
        Ok(serde_json::from_str(&text).ok())
    }
}

/// Why a request got no answer, in a few words: reqwest's own message wraps the cause in two layers of context
/// ("error sending request for url (…): client error (Connect): …"); the innermost cause is what a person can act on.
fn reqwest_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer within 30 s".into();
    }
    let mut innermost: &dyn std::error::Error = e;
    while let Some(s) = innermost.source() {
        innermost = s;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(value: &str, source: &str) -> Sourced {
        Sourced {
            value: value.into(),
            source: source.into(),
        }
    }

    #[test]
    fn an_address_without_a_scheme_says_which_to_add() {
        let err = check_address(&from("127.0.0.1:8200", "VAULT_ADDR"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "address `127.0.0.1:8200` (from VAULT_ADDR) has no scheme: use http://127.0.0.1:8200 or https://127.0.0.1:8200"
        );
        let err = check_address(&from("ftp://h:1", "--address")).unwrap_err().to_string();
        assert!(err.contains("ftp://") && err.contains("http://"), "{err}");
        assert_eq!(
            check_address(&from("https://vault.example:8200/", "x")).unwrap(),
            "https://vault.example:8200"
        );
    }

    #[test]
    fn a_token_with_a_newline_is_named_by_source_and_never_shown() {
        let err = check_token(&from("lkss_secretvalue\n", "VAULT_TOKEN"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("VAULT_TOKEN") && err.contains("newline"), "{err}");
        assert!(!err.contains("secretvalue"), "{err}");
        assert!(check_token(&from("tab\there", "x")).is_err());
        check_token(&from("lkss_abc", "x")).unwrap();
    }

    #[test]
    fn vault_envelopes_become_one_plain_message_each() {
        assert_eq!(
            leakstop_wording("1 error occurred:\n\t* permission denied\n\n"),
            vec!["permission denied"]
        );
        assert_eq!(
            leakstop_wording("2 errors occurred:\n\t* a is wrong\n\t* b is missing\n\n"),
            vec!["a is wrong", "b is missing"]
        );
        let sealed = leakstop_wording("Vault is sealed");
        assert!(
            sealed[0].contains("operator unseal") && !sealed[0].contains("Vault"),
            "{sealed:?}"
        );
        assert_eq!(leakstop_wording("field `x`: bad"), vec!["field `x`: bad"]);
    }
}
