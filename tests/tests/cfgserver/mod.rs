//! A `leakstop server --config` started by the test: in-memory storage, Shamir seal, initialised and unsealed
//! through the API, so a test can set any config option (listener limits, audit directories).
#![allow(dead_code)]

use std::path::Path;

use serde_json::json;

use crate::kvsupport::{Server, free_port};

/// Start a server whose config holds `top` (top-level keys) and `tables` (TOML tables), init and unseal it, and
/// use its root token.
pub async fn start(dir: &Path, top: &str, tables: &str) -> Server {
    let port = free_port();
    let cfg = dir.join(format!("server-{port}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "listen_address = \"127.0.0.1:{port}\"\ntls_disable = true\n{top}\n[storage]\ntype = \"memory\"\n\
             [seal]\ntype = \"shamir\"\n{tables}\n"
        ),
    )
    .unwrap();
    let args = ["server".to_string(), "--config".into(), cfg.display().to_string()];
    let mut srv = Server::start(dir, &args, port, "").await;
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
