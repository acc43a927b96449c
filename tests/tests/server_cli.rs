//! `leakstop server` as an operator meets it: Vault's single-dash flags, TLS from PEM files, plain HTTP refused off
//! loopback, clear errors (exit 2) for a bad config, and oversized requests refused.

mod kvsupport;

use std::process::Command;

use kvsupport::{Server, free_port};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_style_single_dash_flags_start_a_dev_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let args: Vec<String> = vec![
        "server".into(),
        "-dev".into(),
        "-dev-root-token-id=root".into(),
        format!("-dev-listen-address=127.0.0.1:{port}"),
    ];
    let srv = Server::start(dir.path(), &args, port, "root").await;
    let mounts = srv.ok("GET", "sys/mounts", None).await;
    assert_eq!(mounts["data"]["secret/"]["options"]["version"], "2");
    assert!(
        srv.log_text().contains("dev mode"),
        "dev mode warns loudly: {}",
        srv.log_text()
    );

    // A body over the size limit is refused, not buffered.
    let big = "x".repeat(33 << 20);
    let (status, _) = srv
        .call("POST", "secret/data/big", Some(json!({"data": {"v": big}})))
        .await;
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // A throw-away CA and a server certificate it signs (what an operator gets from their PKI).
    let ca_key = dir.path().join("ca.key");
    let ca = dir.path().join("ca.pem");
    let key = dir.path().join("key.pem");
    let csr = dir.path().join("server.csr");
    let cert = dir.path().join("cert.pem");
    let ext = dir.path().join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=leakstop test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    assert!(ca_key.exists() && csr.exists());
    let port = free_port();
    let cfg = dir.path().join("server.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen_address = \"127.0.0.1:{port}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n[storage]\ntype = \"memory\"\n[seal]\ntype = \"shamir\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(leakstop_tests::leakstop_bin())
        .args(["server", "--config"])
        .arg(&cfg)
        .spawn()
        .unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let mut answered = None;
    let mut last = String::new();
    for _ in 0..100 {
        match client
            .get(format!("https://localhost:{port}/v1/sys/seal-status"))
            .send()
            .await
        {
            Ok(r) => {
                answered = Some(r.json::<serde_json::Value>().await.unwrap());
                break;
            }
            Err(e) => last = format!("{e:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let status = answered.unwrap_or_else(|| panic!("the server answers over TLS: {last}"));
    assert_eq!(status["initialized"], false, "{status}");
    assert_eq!(status["type"], "shamir");
}

fn start_fails(dir: &std::path::Path, toml: &str) -> String {
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, toml).unwrap();
    let out = Command::new(leakstop_tests::leakstop_bin())
        .args(["server", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_configs_are_refused_with_a_message_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let err = start_fails(
        dir.path(),
        &format!("listen_address = \"0.0.0.0:{port}\"\ntls_disable = true\n[storage]\ntype = \"memory\"\n"),
    );
    assert!(err.contains("plain HTTP") && err.contains("0.0.0.0"), "{err}");
    let err = start_fails(
        dir.path(),
        "listen_address = \"127.0.0.1:1\"\n[storage]\ntype = \"memory\"\n",
    );
    assert!(err.contains("tls_cert_file"), "{err}");
    let err = start_fails(dir.path(), "[storage]\ntype = \"carrier-pigeon\"\n");
    assert!(err.contains("bad.toml") && err.contains("carrier-pigeon"), "{err}");
    let err = start_fails(
        dir.path(),
        "tls_disable = true\n[storage]\ntype = \"memory\"\n[seal]\ntype = \"pkcs11\"\nlib = \"/nonexistent/libhsm.so\"\ntoken_label = \"t\"\nkey_label = \"k\"\npin_env = \"LEAKSTOP_NO_SUCH_PIN_VAR\"\n",
    );
    assert!(
        err.contains("LEAKSTOP_NO_SUCH_PIN_VAR"),
        "the missing PIN source is named: {err}"
    );
}
