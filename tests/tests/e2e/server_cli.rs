//! `leakstop server` and the service CLI as an operator meets them: Vault's single-dash flags, TLS from PEM files,
//! plain HTTP refused off loopback, clear errors (exit 2, said once) for a bad config checked before any database
//! is created, where the server listens, no root token from a dev server that cannot listen, oversized requests
//! refused; the CLI's address and token sources, its wording for Vault's errors, and its documented exit codes.

use std::process::Command;

use leakstop_tests::cmd;
use leakstop_tests::server::{Server, free_port, sqlite_shamir, write_config};
use leakstop_tests::tempdir;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_style_single_dash_flags_start_a_dev_server() {
    let dir = tempdir();
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

    // A body over the size limit is refused, not buffered: the server answers 413 from the declared length and
    // closes, so the client sees the 413 or, if it was still sending, a closed connection; never a stored secret.
    let big = "x".repeat(33 << 20);
    let sent = reqwest::Client::new()
        .post(format!("{}/v1/secret/data/big", srv.addr))
        .header("X-Vault-Token", "root")
        .json(&json!({"data": {"v": big}}))
        .send()
        .await;
    if let Ok(r) = sent {
        assert_eq!(r.status().as_u16(), 413);
    }
    let (status, _) = srv.call("GET", "secret/data/big", None).await;
    assert_eq!(status, 404, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_with_the_configured_certificate() {
    let dir = tempdir();
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
    let mut child = cmd::leakstop(["server", "--config"])
        .arg(&cfg)
        .command()
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
    let out = cmd::leakstop(["server", "--config"]).arg(&cfg).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    out.stderr
}

#[test]
fn bad_configs_are_refused_with_a_message_naming_the_problem() {
    let dir = tempdir();
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

/// `leakstop ARGS` with `env` (and no inherited token or address variables); returns (exit code, stdout, stderr).
fn leakstop(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let home = tempdir();
    let out = cmd::leakstop(args)
        .env("HOME", home.path())
        .envs(env.iter().copied())
        .run();
    (out.status.code(), out.stdout, out.stderr)
}

fn plain_config(dir: &std::path::Path, port: u16, db: &std::path::Path) -> std::path::PathBuf {
    write_config(dir, port, &sqlite_shamir(db))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_says_where_it_listens_and_writes_no_colour_codes_to_a_log_file() {
    let dir = tempdir();
    let port = free_port();
    let cfg = plain_config(dir.path(), port, &dir.path().join("leakstop.db"));
    // `-vv` is two -v (debug logs), not an unknown `--vv`.
    let args: Vec<String> = vec![
        "-vv".into(),
        "server".into(),
        "--config".into(),
        cfg.display().to_string(),
    ];
    let srv = Server::start(dir.path(), &args, port, "").await;
    let log = srv.log_text();
    assert!(
        log.contains(&format!("leakstop server listening on http://127.0.0.1:{port}")),
        "{log}"
    );
    assert!(
        log.contains("WARN") && log.contains("not initialized"),
        "logs are on: {log}"
    );
    assert!(!log.contains('\u{1b}'), "no ANSI escape codes in a log file: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_database_is_refused_with_the_reason_said_once() {
    let dir = tempdir();
    let db = dir.path().join("leakstop.db");
    let port = free_port();
    let cfg = plain_config(dir.path(), port, &db);
    let _first = Server::start(
        dir.path(),
        &["server".into(), "--config".into(), cfg.display().to_string()],
        port,
        "",
    )
    .await;
    let other = plain_config(dir.path(), free_port(), &db);
    let (code, _, err) = leakstop(&["server", "--config", other.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.matches("in use by another leakstop server").count(),
        1,
        "said once: {err}"
    );
    assert!(err.contains("stop that server"), "what to do: {err}");
}

#[test]
fn dev_flags_without_dev_ask_for_dev_only() {
    let (code, _, err) = leakstop(&["server", "--dev-root-token-id", "x"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--dev-root-token-id needs --dev"), "{err}");
    assert!(!err.contains("--config"), "--config is not what is missing: {err}");
    let (code, _, err) = leakstop(&["server", "-dev-listen-address=127.0.0.1:1"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--dev-listen-address needs --dev"), "{err}");
}

#[test]
fn a_dev_server_that_cannot_listen_prints_no_root_token() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out, err) = leakstop(
        &[
            "server",
            "--dev",
            "--dev-root-token-id",
            "devroot",
            "--dev-listen-address",
            &addr,
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot listen") && err.contains(&addr), "{err}");
    assert!(
        !err.contains("devroot") && !out.contains("devroot"),
        "no banner before the bind: {err}"
    );
    assert!(!err.contains("listening on"), "{err}");
}

#[test]
fn a_config_that_fails_its_checks_leaves_no_database_behind() {
    let dir = tempdir();
    let db = dir.path().join("leakstop.db");
    let storage = format!("[storage]\ntype = \"sqlite\"\npath = \"{}\"\n", db.display());
    let cases = [
        (
            format!(
                "listen_address = \"127.0.0.1:1\"\ntls_cert_file = \"/nonexistent/cert.pem\"\ntls_key_file = \"/nonexistent/key.pem\"\n{storage}"
            ),
            "/nonexistent/cert.pem",
        ),
        (
            format!("listen_address = \"0.0.0.0:1\"\ntls_disable = true\n{storage}"),
            "plain HTTP",
        ),
        (
            format!("tls_disable = true\n{storage}[[audit]]\nfile_path = \"relative/audit.log\"\n"),
            "absolute path",
        ),
        (
            format!(
                "tls_disable = true\n{storage}[seal]\ntype = \"pkcs11\"\nlib = \"/nonexistent/libhsm.so\"\ntoken_label = \"t\"\nkey_label = \"k\"\npin_env = \"LEAKSTOP_NO_SUCH_PIN_VAR\"\n"
            ),
            "environment variable LEAKSTOP_NO_SUCH_PIN_VAR (pin_env in [seal]) is not set",
        ),
        (
            format!(
                "tls_disable = true\n{storage}[seal]\ntype = \"pkcs11\"\nlib = \"/nonexistent/libhsm.so\"\ntoken_label = \"t\"\nkey_label = \"k\"\npin_env = \"LEAKSTOP_TEST_SET_PIN\"\n"
            ),
            "/nonexistent/libhsm.so",
        ),
    ];
    for (toml, expected) in cases {
        let cfg = dir.path().join("server.toml");
        std::fs::write(&cfg, &toml).unwrap();
        let (code, _, err) = leakstop(
            &["server", "--config", cfg.to_str().unwrap()],
            &[("LEAKSTOP_TEST_SET_PIN", "1234")],
        );
        assert_eq!(code, Some(2), "{toml}\n{err}");
        assert!(err.contains(expected), "{toml}\nexpected {expected:?} in: {err}");
        assert!(!err.contains("TOML parse error"), "{err}");
        assert!(
            !db.exists(),
            "{toml}\nthe database was created before the config was found bad: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_names_address_and_token_mistakes_and_speaks_leakstop() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let port = srv.addr.rsplit(':').next().unwrap().to_string();
    let bare = format!("127.0.0.1:{port}");

    let (code, _, err) = leakstop(
        &["read", "secret/app"],
        &[("VAULT_ADDR", &bare), ("VAULT_TOKEN", "root")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "address `{bare}` (from VAULT_ADDR) has no scheme: use http://{bare} or https://{bare}"
        )),
        "{err}"
    );
    assert!(!err.contains("builder error"), "{err}");

    let (code, _, err) = leakstop(
        &["read", "secret/app"],
        &[("VAULT_ADDR", &srv.addr), ("VAULT_TOKEN", "root\n")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("the token (from VAULT_TOKEN) contains a newline"), "{err}");
    assert!(!err.contains("builder error"), "{err}");

    // An empty LEAKSTOP_TOKEN is unset: VAULT_TOKEN is used.
    srv.ok("POST", "secret/data/app", Some(json!({"data": {"password": "s3cret"}})))
        .await;
    let (code, out, err) = leakstop(
        &["read", "secret/app", "--field", "password"],
        &[
            ("VAULT_ADDR", &srv.addr),
            ("LEAKSTOP_TOKEN", ""),
            ("VAULT_TOKEN", "root"),
        ],
    );
    assert_eq!((code, out.trim()), (Some(0), "s3cret"), "{err}");
    // ... and ~/.vault-token (what `bao login` writes) after both.
    let home = tempdir();
    std::fs::write(home.path().join(".vault-token"), "root\n").unwrap();
    let (code, out, err) = leakstop(
        &["read", "secret/app", "--field", "password"],
        &[("VAULT_ADDR", &srv.addr), ("HOME", home.path().to_str().unwrap())],
    );
    assert_eq!((code, out.trim()), (Some(0), "s3cret"), "{err}");

    let (code, _, err) = leakstop(&["read", "secret/app"], &[("VAULT_ADDR", &srv.addr)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no token") && err.contains("~/.vault-token"), "{err}");

    // Vault's error envelope is not leakstop's output.
    let (code, _, err) = leakstop(
        &["read", "secret/app"],
        &[("VAULT_ADDR", &srv.addr), ("VAULT_TOKEN", "wrong")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(!err.contains("error occurred") && !err.contains("\t*"), "{err}");

    let (code, out, err) = leakstop(&["operator", "status", "-format=json"], &[("VAULT_ADDR", &srv.addr)]);
    assert_eq!(code, Some(0), "unsealed: {err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status -format=json prints JSON");
    assert_eq!(status["sealed"], false, "{out}");
    assert_eq!(status["type"], "dev", "{out}");
    let (code, _, err) = leakstop(
        &["operator", "seal", "--address", &srv.addr],
        &[("VAULT_TOKEN", "root")],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = leakstop(&["operator", "status", "--format", "json", "--address", &srv.addr], &[]);
    assert_eq!(code, Some(2), "sealed is exit 2: {err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["sealed"], true);
    let (code, _, err) = leakstop(
        &["read", "secret/app"],
        &[("VAULT_ADDR", &srv.addr), ("VAULT_TOKEN", "root")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("the server is sealed") && err.contains("operator unseal"),
        "{err}"
    );
    assert!(!err.contains("Vault"), "{err}");

    let (code, _, err) = leakstop(&["operator", "status"], &[("VAULT_ADDR", "http://127.0.0.1:1")]);
    assert_eq!(code, Some(1), "no status is exit 1 (2 is sealed): {err}");
    assert!(err.contains("cannot reach the server"), "{err}");
}

#[test]
fn service_commands_document_their_exit_codes_and_token_sources() {
    for cmd in [
        &["server"][..],
        &["operator", "status"],
        &["operator", "init"],
        &["read"],
        &["creds"],
        &["login"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (code, out, err) = leakstop(&args, &[]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("Exit codes: 0"), "{cmd:?} --help: {out}");
    }
    let (_, out, _) = leakstop(&["read", "--help"], &[]);
    assert!(
        out.contains("LEAKSTOP_TOKEN, else VAULT_TOKEN, else ~/.vault-token"),
        "{out}"
    );
}
