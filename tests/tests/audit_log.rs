//! The file audit device end to end: a dev server started by the test, a device enabled through `sys/audit`,
//! the log checked for HMACs instead of values, `leakstop audit verify` on intact and edited logs, and a stuck
//! device turning requests into 503s within the deadline instead of hanging or serving unaudited.

mod kvsupport;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kvsupport::Server;
use serde_json::{Value, json};

fn random_value(tag: &str) -> String {
    format!("{tag}-{:032x}", rand::random::<u128>())
}

fn verify(path: &std::path::Path) -> (i32, String) {
    let out = Command::new(leakstop_tests::leakstop_bin())
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
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
    let dir = tempfile::tempdir().unwrap();
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
            .any(|e| e["auth"]["client_token"] == kvsupport::ROOT_TOKEN),
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

    let (code, out) = verify(&log);
    assert_eq!(code, 0, "intact log must verify: {out}");
    assert!(out.contains("chain intact"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_the_first_broken_line() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::dev(dir.path()).await;
    let log = dir.path().join("audit.log");
    enable(&srv, "file", &log).await;
    for i in 0..5 {
        srv.ok("POST", &format!("secret/data/v{i}"), Some(json!({"data": {"n": i}})))
            .await;
    }
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
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
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
