//! A `leakstop server` started by the test itself (dev mode, or from a config the test writes), and a small
//! Vault-API client to drive it. The server is killed when the [`Server`] is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ROOT_TOKEN: &str = "root";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Writes `server-{port}.toml` in `dir`: a plain-HTTP loopback listener on `port`, then `rest` (more top-level keys
/// first, then the storage, seal and other tables).
pub fn write_config(dir: &Path, port: u16, rest: &str) -> PathBuf {
    let cfg = dir.join(format!("server-{port}.toml"));
    std::fs::write(
        &cfg,
        format!("listen_address = \"127.0.0.1:{port}\"\ntls_disable = true\n{rest}"),
    )
    .expect("write the server config");
    cfg
}

/// The config tables for durable SQLite storage at `db` and the Shamir seal.
pub fn sqlite_shamir(db: &Path) -> String {
    format!(
        "[storage]\ntype = \"sqlite\"\npath = \"{}\"\n[seal]\ntype = \"shamir\"\n",
        db.display()
    )
}

/// The arguments `server --config CFG`.
pub fn config_args(cfg: &Path) -> Vec<String> {
    vec!["server".into(), "--config".into(), cfg.display().to_string()]
}

/// A running server; killed on drop.
pub struct Server {
    pub addr: String,
    pub child: Child,
    pub log: std::path::PathBuf,
    pub token: String,
    http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `leakstop server --dev` on a free loopback port, with the root token `root`.
    pub async fn dev(dir: &Path) -> Server {
        let port = free_port();
        let args = [
            "server".to_string(),
            "--dev".into(),
            "--dev-root-token-id".into(),
            ROOT_TOKEN.into(),
            "--dev-listen-address".into(),
            format!("127.0.0.1:{port}"),
        ];
        Self::start(dir, &args, port, ROOT_TOKEN).await
    }

    /// `leakstop server --config` with in-memory storage and the Shamir seal, initialised and unsealed through the
    /// API, using its root token: the config holds `top` (top-level keys) and `tables` (TOML tables), so a test can
    /// set any option (listener limits, audit directories).
    pub async fn configured(dir: &Path, top: &str, tables: &str) -> Server {
        let port = free_port();
        let cfg = write_config(
            dir,
            port,
            &format!("{top}\n[storage]\ntype = \"memory\"\n[seal]\ntype = \"shamir\"\n{tables}\n"),
        );
        let mut srv = Server::start(dir, &config_args(&cfg), port, "").await;
        let init = srv
            .ok(
                "PUT",
                "sys/init",
                Some(json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .await;
        let key = init["keys"][0].as_str().expect("an unseal key").to_string();
        let unsealed = srv.ok("PUT", "sys/unseal", Some(json!({ "key": key }))).await;
        assert_eq!(unsealed["sealed"], false, "{unsealed}");
        srv.token = init["root_token"].as_str().expect("a root token").to_string();
        srv
    }

    /// Start `leakstop` with `args` and wait until it answers on `port`.
    pub async fn start(dir: &Path, args: &[String], port: u16, token: &str) -> Server {
        Self::start_env(dir, args, &[], port, token).await
    }

    /// `start` with extra environment variables (e.g. the HSM PIN and SOFTHSM2_CONF).
    pub async fn start_env(dir: &Path, args: &[String], envs: &[(&str, &str)], port: u16, token: &str) -> Server {
        let log = dir.join(format!("server-{port}.log"));
        let out = std::fs::File::create(&log).expect("create server log");
        let child = crate::cmd::leakstop(args)
            .envs(envs.iter().copied())
            .command()
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .stdin(Stdio::null())
            .current_dir(dir)
            .spawn()
            .expect("start leakstop server");
        let mut s = Server {
            addr: format!("http://127.0.0.1:{port}"),
            child,
            log,
            token: token.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        };
        s.wait_listening().await;
        s
    }

    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("leakstop server exited with {status}:\n{}", self.log_text());
            }
            if self
                .http
                .get(format!("{}/v1/sys/seal-status", self.addr))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("leakstop server did not listen within 30 s:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send a request with the server's token; returns (status, JSON body or Null).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token.clone(), method, path, body).await
    }

    pub async fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(m, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log_text()));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `call` that must succeed (2xx).
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} -> {status} {v}\n{}",
            self.log_text()
        );
        v
    }

    /// Enable a file audit device `name` appending to `file`.
    pub async fn enable_file_audit(&self, name: &str, file: &Path) {
        self.ok(
            "PUT",
            &format!("sys/audit/{name}"),
            Some(json!({"type": "file", "options": {"file_path": file}})),
        )
        .await;
    }

    /// Enable the JWT auth method at `jwt/` trusting the OIDC issuer at `issuer_url` (discovery + bound issuer), and
    /// write ACL policy `name` (HCL).
    pub async fn enable_jwt_with_policy(&self, issuer_url: &str, name: &str, policy_hcl: &str) {
        self.ok("POST", "sys/auth/jwt", Some(json!({"type": "jwt"}))).await;
        self.ok(
            "POST",
            "auth/jwt/config",
            Some(json!({"oidc_discovery_url": issuer_url, "bound_issuer": issuer_url})),
        )
        .await;
        self.ok(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": policy_hcl })),
        )
        .await;
    }
}
