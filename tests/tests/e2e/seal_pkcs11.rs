//! The PKCS#11 seal end to end on SoftHSM2: a token created by the test with softhsm2-util, a server that
//! initializes with its root key wrapped by an AES key inside the token, restarts auto-unsealed with its data, and
//! refuses to start (with a message naming the cause, once) on a wrong PIN or a missing key; the PIN does not stay
//! in the server's environment, and `operator init` asks to store no unseal keys. Also Shamir: fewer than T shares
//! stay sealed, a share of the wrong length is refused without losing progress, T shares unseal.

use std::path::{Path, PathBuf};
use std::process::Command;

use leakstop_tests::cmd::leakstop;
use leakstop_tests::server::{Server, config_args as args, free_port};
use leakstop_tests::tempdir;
use serde_json::json;

const LIB: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "4711-test-pin";

/// A private SoftHSM token directory and config, and the token itself.
fn softhsm(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    assert!(
        Path::new(LIB).exists(),
        "{LIB} missing: install the Debian package softhsm2 (tests/setup.sh does)"
    );
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "leakstop-test",
            "--pin",
            PIN,
            "--so-pin",
            "99887766",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util must be installed (Debian package softhsm2)");
    assert!(
        out.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

fn config(dir: &Path, port: u16, key_label: &str, generate: bool) -> PathBuf {
    let cfg = dir.join(format!("server-{key_label}-{generate}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "listen_address = \"127.0.0.1:{port}\"\ntls_disable = true\n\n[storage]\ntype = \"sqlite\"\npath = \"{}\"\n\n\
             [seal]\ntype = \"pkcs11\"\nlib = \"{LIB}\"\ntoken_label = \"leakstop-test\"\nkey_label = \"{key_label}\"\n\
             pin_env = \"LEAKSTOP_TEST_HSM_PIN\"\ngenerate_key = {generate}\n",
            dir.join("leakstop.db").display()
        ),
    )
    .unwrap();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs11_seal_auto_unseals_after_restart_and_refuses_a_wrong_pin_or_missing_key() {
    let dir = tempdir();
    let conf = softhsm(dir.path());
    let conf_s = conf.display().to_string();
    let port = free_port();
    let cfg = config(dir.path(), port, "leakstop-root", true);
    let env = [("SOFTHSM2_CONF", conf_s.as_str()), ("LEAKSTOP_TEST_HSM_PIN", PIN)];

    let mut srv = Server::start_env(dir.path(), &args(&cfg), &env, port, "").await;
    // The PIN was read, then removed from the server's environment, bytes included: /proc/PID/environ shows the
    // environment block as it was at exec, and the server overwrote the value there.
    let environ = std::fs::read(format!("/proc/{}/environ", srv.child.id())).unwrap();
    assert!(
        !environ.windows(PIN.len()).any(|w| w == PIN.as_bytes()),
        "the PIN is still readable in /proc/PID/environ"
    );
    let out = leakstop(["operator", "init", "--address", &srv.addr]).run();
    let printed = &out.stdout;
    assert!(out.success(), "{}", out.text());
    let root = printed
        .lines()
        .find_map(|l| l.strip_prefix("Initial Root Token: "))
        .unwrap_or_else(|| panic!("no root token printed: {printed}"))
        .to_string();
    assert!(
        !printed.contains("Unseal Key") && !printed.contains("Store the unseal keys"),
        "an HSM seal hands out no unseal keys, and init does not ask to store any: {printed}"
    );
    assert!(
        printed.contains("no unseal keys") && printed.contains("pkcs11"),
        "{printed}"
    );
    srv.token = root.clone();
    let status = srv.ok("GET", "sys/seal-status", None).await;
    assert_eq!(status["sealed"], false, "{status}");
    assert_eq!(status["type"], "pkcs11");
    srv.ok(
        "POST",
        "sys/mounts/secret",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    srv.ok(
        "POST",
        "secret/data/ci/deploy",
        Some(json!({"data": {"key": "hsm-protected-value"}})),
    )
    .await;
    drop(srv);

    // Restart: unsealed by the HSM with no operator action, data intact.
    let mut srv = Server::start_env(dir.path(), &args(&cfg), &env, port, "").await;
    srv.token = root.clone();
    let status = srv.ok("GET", "sys/seal-status", None).await;
    assert_eq!(status["sealed"], false, "auto-unsealed after restart: {status}");
    let got = srv.ok("GET", "secret/data/ci/deploy", None).await;
    assert_eq!(got["data"]["data"]["key"], "hsm-protected-value");
    drop(srv);

    // A wrong PIN: the server does not start, and says why.
    let out = leakstop(args(&cfg))
        .env("SOFTHSM2_CONF", &conf)
        .env("LEAKSTOP_TEST_HSM_PIN", "0000-wrong")
        .run();
    let err = &out.stderr;
    assert_eq!(out.code, 2, "{err}");
    assert_eq!(
        err.matches("PIN rejected by token leakstop-test").count(),
        1,
        "said once: {err}"
    );
    assert!(err.contains("pin_env"), "what to check: {err}");
    assert!(!err.contains("0000-wrong"), "the PIN itself is never printed: {err}");

    // A missing key (another label, not generated): refused with the label named.
    let missing = config(dir.path(), port, "no-such-key", false);
    let out = leakstop(args(&missing))
        .env("SOFTHSM2_CONF", &conf)
        .env("LEAKSTOP_TEST_HSM_PIN", PIN)
        .run();
    let err = &out.stderr;
    assert_eq!(out.code, 2, "{err}");
    assert_eq!(
        err.matches("no AES key with label `no-such-key`").count(),
        1,
        "the error names the missing key, once: {err}"
    );
    assert!(err.contains("generate_key = true"), "what to do: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shamir_needs_threshold_shares_to_unseal() {
    let dir = tempdir();
    let port = free_port();
    let cfg = dir.path().join("server.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen_address = \"127.0.0.1:{port}\"\ntls_disable = true\n[storage]\ntype = \"sqlite\"\npath = \"{}\"\n[seal]\ntype = \"shamir\"\n",
            dir.path().join("leakstop.db").display()
        ),
    )
    .unwrap();
    let srv = Server::start(dir.path(), &args(&cfg), port, "").await;
    let (status, health) = srv.call("GET", "sys/health", None).await;
    assert_eq!(status, 501, "not initialized yet: {health}");
    let (_, init) = srv
        .call(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 5, "secret_threshold": 3})),
        )
        .await;
    let keys: Vec<String> = init["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 5);
    let root = init["root_token"].as_str().unwrap().to_string();
    assert!(
        root.starts_with("lkss_"),
        "root tokens are scannable leakstop tokens: {root}"
    );
    // The shares are scannable too: pasted anywhere, the scanner finds every one of them.
    let pasted: String = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("Unseal Key {}: {k}\n", i + 1))
        .collect();
    let scan = leakstop(["scan", "-", "-f", "json"]).stdin(pasted).run();
    assert_eq!(scan.code, 1, "{}", scan.stderr);
    let found: Vec<serde_json::Value> = serde_json::from_str(&scan.stdout).unwrap();
    assert_eq!(found.len(), 5, "{}", scan.stdout);
    assert!(found.iter().all(|f| f["rule_id"] == "leakstop-token"));

    for (i, k) in keys.iter().take(2).enumerate() {
        let (_, st) = srv.call("PUT", "sys/unseal", Some(json!({"key": k}))).await;
        assert_eq!(st["sealed"], true, "{} of 3 shares must not unseal: {st}", i + 1);
        assert_eq!(st["progress"], i + 1);
    }
    let (status, _) = srv.call_as(&root, "GET", "sys/mounts", None).await;
    assert_eq!(status, 503, "sealed servers refuse requests");
    // A share cut short, or with a character changed, is refused alone: the two shares entered so far stay.
    let (status, body) = srv
        .call("PUT", "sys/unseal", Some(json!({"key": &keys[3][..40]})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("not a whole `lksu_` share"), "{body}");
    let mut typo = keys[3].clone().into_bytes();
    typo[20] = if typo[20] == b'0' { b'1' } else { b'0' };
    let (status, body) = srv
        .call(
            "PUT",
            "sys/unseal",
            Some(json!({"key": String::from_utf8(typo).unwrap()})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("checksum does not match"), "{body}");
    // Shares in Vault's hex form (servers initialised before `lksu_`) still work; a wrong length is named.
    let (status, body) = srv
        .call("PUT", "sys/unseal", Some(json!({"key": "ab".repeat(20)})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("34 bytes"),
        "names the expected length: {body}"
    );
    let (_, st) = srv.call("GET", "sys/seal-status", None).await;
    assert_eq!(st["progress"], 2, "the other holders' progress is kept: {st}");
    let (_, st) = srv.call("PUT", "sys/unseal", Some(json!({"key": keys[4]}))).await;
    assert_eq!(st["sealed"], false, "the third share unseals: {st}");
    let (status, _) = srv.call_as(&root, "GET", "sys/mounts", None).await;
    assert_eq!(status, 200);

    // Seal again, then a mistyped share is a clear error, not an unseal.
    let (status, _) = srv.call_as(&root, "PUT", "sys/seal", None).await;
    assert_eq!(status, 204);
    let (status, body) = srv.call("PUT", "sys/unseal", Some(json!({"key": "not-a-key!"}))).await;
    assert_eq!(status, 400, "{body}");
}
