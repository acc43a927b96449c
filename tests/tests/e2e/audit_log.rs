//! The file audit device end to end: a dev server started by the test, a device enabled through `sys/audit`,
//! the log checked for HMACs instead of values, `leakstop audit verify` on intact, edited and rewritten logs with
//! the key and pins from `sys/audit-chain`, devices confined to the configured directory, and a stuck device
//! turning requests into 503s within the deadline instead of hanging or serving unaudited.

use std::process::{Command, Stdio};

use leakstop_tests::cmd::leakstop;
use leakstop_tests::tempdir;
use std::time::{Duration, Instant};

use leakstop_tests::server::Server;
use serde_json::{Value, json};

fn random_value(tag: &str) -> String {
    format!("{tag}-{:032x}", rand::random::<u128>())
}

/// `leakstop audit verify` with `args`, the key (and pins) fetched from `srv` unless `args` give a key file.
fn verify_with(srv: Option<&Server>, path: &std::path::Path, args: &[&str]) -> (i32, String) {
    let cmd = leakstop(["audit", "verify"]).args(args).arg(path);
    let cmd = match srv {
        Some(srv) => cmd.env("LEAKSTOP_ADDR", &srv.addr).env("LEAKSTOP_TOKEN", &srv.token),
        None => cmd.env("LEAKSTOP_ADDR", "http://127.0.0.1:9"),
    };
    let out = cmd.run();
    (out.code, out.text())
}

async fn enable(srv: &Server, name: &str, file: &std::path::Path) -> (u16, Value) {
    srv.call(
        "PUT",
        &format!("sys/audit/{name}"),
        Some(json!({"type": "file", "options": {"file_path": file}})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_hold_hmacs_not_values_and_the_chain_verifies() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let log = dir.path().join("audit.log");
    let (status, body) = enable(&srv, "file", &log).await;
    assert!(status == 204 || status == 200, "enable audit: {status} {body}");
    let listed = srv.ok("GET", "sys/audit", None).await;
    assert_eq!(listed["file/"]["type"], "file", "{listed}");

    let password = random_value("pw");
    srv.ok(
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"password": password}})),
    )
    .await;
    let read = srv.ok("GET", "secret/data/app/db", None).await;
    assert_eq!(read["data"]["data"]["password"], password.as_str());
    let created = srv
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["default"], "ttl": "1h"})),
        )
        .await;
    let child = created["auth"]["client_token"].as_str().unwrap().to_string();
    let accessor = created["auth"]["accessor"].as_str().unwrap().to_string();
    srv.call_as(&child, "GET", "auth/token/lookup-self", None).await;

    let text = std::fs::read_to_string(&log).unwrap();
    for (what, clear) in [
        ("secret value", password.as_str()),
        ("new token", &child),
        ("accessor", &accessor),
    ] {
        assert!(!text.contains(clear), "the {what} reached the audit log in clear");
    }
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(entries[0]["type"], "genesis", "the log starts with a genesis record");
    assert!(entries.iter().skip(1).all(|e| {
        e["auth"]["client_token"]
            .as_str()
            .is_none_or(|t| t.starts_with("hmac-sha256:"))
    }));
    assert!(
        !entries
            .iter()
            .any(|e| e["auth"]["client_token"] == leakstop_tests::server::ROOT_TOKEN),
        "root token in clear"
    );

    // sys/audit-hash gives the value an operator can search the log for.
    let hashed = srv
        .ok("POST", "sys/audit-hash/file", Some(json!({"input": password})))
        .await;
    let hashed = hashed["data"]["hash"].as_str().unwrap().to_string();
    assert!(hashed.starts_with("hmac-sha256:"));
    let write = entries
        .iter()
        .find(|e| e["type"] == "request" && e["request"]["path"] == "secret/data/app/db")
        .unwrap();
    assert_eq!(write["request"]["data"]["data"]["password"], hashed.as_str());
    let resp = entries
        .iter()
        .find(|e| {
            e["type"] == "response"
                && e["request"]["operation"] == "read"
                && e["request"]["path"] == "secret/data/app/db"
        })
        .expect("the read's response is logged");
    assert_eq!(resp["response"]["data"]["data"]["password"], hashed.as_str());

    let (code, out) = verify_with(Some(&srv), &log, &[]);
    assert_eq!(code, 0, "intact log must verify: {out}");
    assert!(
        out.contains("chain intact") && out.contains("genesis and head as pinned"),
        "{out}"
    );
}

/// The chain key and the device's pins, as `GET sys/audit-chain` gives them.
async fn chain_of(srv: &Server, device: &str) -> (String, String, String, u64) {
    let v = srv.ok("GET", "sys/audit-chain", None).await;
    let d = &v["data"]["devices"][device];
    (
        v["data"]["key"].as_str().expect("key").to_string(),
        d["genesis"].as_str().expect("genesis").to_string(),
        d["head"].as_str().expect("head").to_string(),
        d["lines"].as_u64().expect("lines"),
    )
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Recompute every `prev_hash` and `hash` of `lines` with plain SHA-256 under `prefix`: what someone who can write
/// the file but holds no key can do.
fn rechain_sha256(lines: &[String], prefix: &str) -> Vec<String> {
    let mut prev = format!("{prefix}{}", "0".repeat(64));
    lines
        .iter()
        .map(|l| {
            let body = l.rsplit_once(",\"hash\":").unwrap().0;
            let rest = body.split_once(',').unwrap().1;
            let body = format!("{{\"prev_hash\":\"{prev}\",{rest}");
            prev = format!("{prefix}{}", sha256_hex(body.as_bytes()));
            format!("{body},\"hash\":\"{prev}\"}}")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rewritten_with_recomputed_hashes_or_cut_short_is_caught() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let log = dir.path().join("audit.log");
    enable(&srv, "file", &log).await;
    for i in 0..10 {
        srv.ok("POST", &format!("secret/data/v{i}"), Some(json!({"data": {"n": i}})))
            .await;
    }
    let (key, genesis, head, lines) = chain_of(&srv, "file/").await;
    assert!(genesis.starts_with("hmac-sha256:") && head.starts_with("hmac-sha256:"));
    let text = std::fs::read_to_string(&log).unwrap();
    let original: Vec<String> = text.lines().map(String::from).collect();
    assert!(
        lines >= 21 && lines as usize <= original.len(),
        "{lines} of {}",
        original.len()
    );
    assert_eq!(
        original[0]
            .rsplit("\"hash\":\"")
            .next()
            .unwrap()
            .trim_end_matches("\"}"),
        genesis
    );
    let key_file = dir.path().join("chain.key");
    std::fs::write(&key_file, &key).unwrap();
    let kf = ["--key-file", key_file.to_str().unwrap()];

    // 6 lines deleted, the paths of others edited, every hash recomputed with SHA-256.
    let mut rewritten = original.clone();
    rewritten.drain(5..11);
    for l in rewritten.iter_mut().skip(2) {
        *l = l.replace("secret/data/v", "secret/data/harmless");
    }
    for prefix in ["sha256:", "hmac-sha256:"] {
        let forged = rechain_sha256(&rewritten, prefix);
        std::fs::write(&log, forged.join("\n") + "\n").unwrap();
        let (code, out) = verify_with(Some(&srv), &log, &[]);
        assert_eq!(code, 1, "a log rewritten with {prefix} hashes must fail: {out}");
        assert!(out.contains(":1:"), "{out}");
        let (code, out) = verify_with(None, &log, &kf);
        assert_eq!(code, 1, "{out}");
    }

    // The last 6 lines cut off: the rest is a whole chain, but the head the server reported is gone.
    let cut = dir.path().join("cut.log");
    std::fs::write(&cut, original[..original.len() - 6].join("\n") + "\n").unwrap();
    let (code, out) = verify_with(None, &cut, &kf);
    assert_eq!(code, 0, "without pins a shorter whole chain verifies: {out}");
    let (code, out) = verify_with(None, &cut, &[kf[0], kf[1], "--head", &head, "--genesis", &genesis]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("removed from its end"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_key_needs_sudo() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    srv.ok(
        "PUT",
        "sys/policy/auditor",
        Some(json!({"policy": "path \"sys/audit-chain\" { capabilities = [\"read\"] }"})),
    )
    .await;
    let created = srv
        .ok("POST", "auth/token/create", Some(json!({"policies": ["auditor"]})))
        .await;
    let token = created["auth"]["client_token"].as_str().unwrap();
    let (status, body) = srv.call_as(token, "GET", "sys/audit-chain", None).await;
    assert_eq!(status, 403, "read without sudo must not get the chain key: {body}");
    let (status, _) = srv.call_as("", "GET", "sys/audit-chain", None).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_devices_are_confined_to_the_configured_directory() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, logs.join("escape")).unwrap();
    let srv = Server::configured(dir.path(), &format!("audit_file_dir = \"{}\"", logs.display()), "").await;

    let outside = elsewhere.join("audit.log");
    let (status, body) = enable(&srv, "out", &outside).await;
    assert_eq!(status, 400, "{body}");
    let msg = body["errors"][0].as_str().unwrap_or_default();
    assert!(
        msg.contains("audit_file_dir") && msg.contains(&logs.display().to_string()),
        "{body}"
    );
    for sneaky in [logs.join("escape/audit.log"), logs.join("../elsewhere/audit.log")] {
        let (status, body) = enable(&srv, "sneaky", &sneaky).await;
        assert_eq!(status, 400, "{} must be refused: {body}", sneaky.display());
    }
    assert!(!outside.exists(), "nothing was written outside the allowed directory");
    let inside = logs.join("audit.log");
    let (status, body) = enable(&srv, "in", &inside).await;
    assert!(status == 200 || status == 204, "{status} {body}");
    assert!(inside.exists());
    drop(srv);

    // Nothing configured: the API may not enable file devices at all, and says how to allow it.
    let srv = Server::configured(dir.path(), "", "").await;
    let (status, body) = enable(&srv, "any", &logs.join("other.log")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("audit_file_dir"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_the_first_broken_line() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let log = dir.path().join("audit.log");
    enable(&srv, "file", &log).await;
    for i in 0..5 {
        srv.ok("POST", &format!("secret/data/v{i}"), Some(json!({"data": {"n": i}})))
            .await;
    }
    let key_file = dir.path().join("chain.key");
    std::fs::write(&key_file, chain_of(&srv, "file/").await.0).unwrap();
    let verify = |p: &std::path::Path| verify_with(None, p, &["--key-file", key_file.to_str().unwrap()]);
    drop(srv);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    assert!(
        lines.len() >= 11,
        "genesis + request and response per call, got {}",
        lines.len()
    );

    // Someone hides what happened on line 4 by changing the path it records.
    let edited_at = 4;
    let original = lines[edited_at - 1].clone();
    lines[edited_at - 1] = original.replacen("secret/data/v", "secret/data/x", 1);
    assert_ne!(
        lines[edited_at - 1],
        original,
        "fixture: line 4 must name a secret path"
    );
    let edited = dir.path().join("edited.log");
    std::fs::write(&edited, lines.join("\n") + "\n").unwrap();
    let (code, out) = verify(&edited);
    assert_eq!(code, 1, "an edited log must fail: {out}");
    assert!(out.contains(":4:"), "the edited line (4) is named: {out}");

    // A removed line breaks the chain where it was.
    lines[edited_at - 1] = original;
    lines.remove(6);
    std::fs::write(&edited, lines.join("\n") + "\n").unwrap();
    let (code, out) = verify(&edited);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(":7:"), "the line after the gap (7) is named: {out}");

    let (code, out) = verify(&dir.path().join("does-not-exist.log"));
    assert_eq!(code, 2, "a missing file is an IO error: {out}");
    assert!(out.contains("does-not-exist.log"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_device_is_refused_when_enabled() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let (status, body) = enable(&srv, "full", std::path::Path::new("/dev/full")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap_or_default().contains("/dev/full"),
        "{body}"
    );
    let (status, body) = enable(&srv, "nodir", &dir.path().join("missing-dir/audit.log")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = srv.call("PUT", "sys/audit/bad", Some(json!({"type": "syslog"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap_or_default().contains("type"),
        "{body}"
    );
    // Nothing was enabled, so requests are still served.
    srv.ok("POST", "secret/data/still-ok", Some(json!({"data": {"a": "b"}})))
        .await;
}

/// A FIFO whose reader stops reading stands in for a stuck NFS mount or a full disk: the writer blocks for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_device_turns_requests_into_503_within_the_deadline() {
    let dir = tempdir();
    let fifo = dir.path().join("audit.fifo");
    let st = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils) must be installed");
    assert!(st.success());
    let mut reader = Command::new("cat")
        .arg(&fifo)
        .stdout(Stdio::null())
        .spawn()
        .expect("start cat");
    let srv = Server::dev(dir.path()).await;
    let (status, body) = enable(&srv, "pipe", &fifo).await;
    assert!(status == 204 || status == 200, "{status} {body}");
    srv.ok("POST", "secret/data/guarded", Some(json!({"data": {"v": "before"}})))
        .await;

    let stop = Command::new("kill")
        .args(["-STOP", &reader.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    let mut refused = None;
    for i in 0..400 {
        let value = format!("attempt-{i}-{}", "x".repeat(512));
        let started = Instant::now();
        let (status, body) = srv
            .call("POST", "secret/data/guarded", Some(json!({"data": {"v": value}})))
            .await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "a request took {took:?} with a stuck audit device: it must not hang"
        );
        if status == 503 {
            let msg = body["errors"][0].as_str().unwrap_or_default().to_string();
            assert!(
                msg.contains("audit"),
                "the 503 says the audit log is the problem: {body}"
            );
            refused = Some(value);
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let refused = refused.expect("a stuck audit device must lead to 503 once the pipe is full");
    // Still refused while the device is stuck, and quickly.
    let started = Instant::now();
    let (status, _) = srv.call("GET", "secret/data/guarded", None).await;
    assert_eq!(status, 503, "reads are not served unaudited either");
    assert!(started.elapsed() < Duration::from_secs(5));

    Command::new("kill")
        .args(["-CONT", &reader.id().to_string()])
        .status()
        .unwrap();
    let mut healthy = false;
    for _ in 0..50 {
        let (status, body) = srv.call("GET", "secret/data/guarded", None).await;
        if status == 200 {
            assert_ne!(
                body["data"]["data"]["v"],
                refused.as_str(),
                "a write refused for audit must not be applied"
            );
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "requests are served again once the device drains");
    drop(srv);
    let _ = reader.kill();
    let _ = reader.wait();
}
