//! A small client for the service's HTTP API, used by the CLI (`operator`, `login`, `read`). Addresses and tokens
//! come from `LEAKSTOP_ADDR`/`LEAKSTOP_TOKEN`, falling back to Vault's `VAULT_ADDR`/`VAULT_TOKEN`.

use std::time::Duration;

use serde_json::Value;

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

pub struct Client {
    pub addr: String,
    pub token: Option<String>,
    http: reqwest::Client,
}

/// `LEAKSTOP_ADDR`, else `VAULT_ADDR`, else the default local address.
pub fn default_addr() -> String {
    std::env::var("LEAKSTOP_ADDR")
        .or_else(|_| std::env::var("VAULT_ADDR"))
        .unwrap_or_else(|_| "http://127.0.0.1:8200".into())
}

/// `LEAKSTOP_TOKEN`, else `VAULT_TOKEN`.
pub fn default_token() -> Option<String> {
    std::env::var("LEAKSTOP_TOKEN")
        .or_else(|_| std::env::var("VAULT_TOKEN"))
        .ok()
        .filter(|t| !t.is_empty())
}

impl Client {
    pub fn new(addr: &str, token: Option<String>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        Ok(Client {
            addr: addr.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// Send a request to `/v1/<path>`; a non-2xx answer becomes an error carrying the server's message.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Option<Value>, ClientError> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let url = format!("{}/v1/{}", self.addr, path.trim_start_matches('/'));
        let mut req = self.http.request(m, &url);
        if let Some(t) = &self.token {
            req = req.header(leakstop_proto::TOKEN_HEADER, t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            addr: self.addr.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value: Option<Value> = serde_json::from_str(&text).ok();
        if !(200..300).contains(&status) {
            let message = value
                .as_ref()
                .and_then(|v| v.get("errors"))
                .and_then(Value::as_array)
                .map(|e| {
                    e.iter()
                        .filter_map(Value::as_str)
                        .map(|s| s.trim().replace("\n\t* ", " "))
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
            return Err(ClientError::Status {
                method: method.into(),
                path: path.into(),
                status,
                message,
            });
        }
        Ok(value)
    }
}
