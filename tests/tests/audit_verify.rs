//! `leakstop audit verify` on logs built here with nothing but `sha256sum`, which also pins the documented line
//! format: `{"prev_hash":"sha256:<previous line's hash>",...,"hash":"sha256:<SHA-256 of the line before ,"hash">"}`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const ZERO: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn sha256(data: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (Debian package coreutils) must be installed");
    child.stdin.take().unwrap().write_all(data.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "sha256:{}",
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap()
    )
}

/// One chained line: returns (line, its hash).
fn line(prev: &str, fields: &str) -> (String, String) {
    let body = format!("{{\"prev_hash\":\"{prev}\",{fields}");
    let hash = sha256(&body);
    (format!("{body},\"hash\":\"{hash}\"}}"), hash)
}

fn build_log(entries: usize) -> Vec<String> {
    let (genesis, mut prev) = line(
        ZERO,
        r#""type":"genesis","time":"2026-11-22T00:00:00Z","device":"file","nonce":"ab""#,
    );
    let mut lines = vec![genesis];
    for i in 0..entries {
        let (l, h) = line(
            &prev,
            &format!(r#""type":"request","request":{{"path":"secret/data/app{i}"}}"#),
        );
        lines.push(l);
        prev = h;
    }
    lines
}

fn verify(path: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(leakstop_tests::leakstop_bin())
        .args(["audit", "verify"])
        .args(extra)
        .arg(path)
        .output()
        .expect("run leakstop");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn write(dir: &Path, name: &str, lines: &[String]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

#[test]
fn an_intact_log_verifies_and_reports_its_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let lines = build_log(6);
    let p = write(dir.path(), "audit.log", &lines);
    let (code, out) = verify(&p, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("chain intact, 7 lines"), "{out}");
    let genesis = sha256(lines[0].split(",\"hash\":").next().unwrap());
    assert!(
        out.contains(&genesis),
        "the genesis hash is reported so it can be recorded: {out}"
    );
    assert_eq!(verify(&p, &["--genesis", &genesis]).0, 0);
    let (code, out) = verify(&p, &["--genesis", ZERO]);
    assert_eq!(code, 1, "a different recorded genesis fails: {out}");
    assert!(out.contains(":1:"), "{out}");
}

#[test]
fn tampering_is_reported_at_the_first_broken_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines = build_log(6);

    let mut edited = lines.clone();
    edited[3] = edited[3].replace("app2", "app9");
    let (code, out) = verify(&write(dir.path(), "edited.log", &edited), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("edited.log:4:") && out.contains("edited"),
        "the edited line 4 is named: {out}"
    );

    // Rewriting a line with a fresh own hash still breaks the next line's link.
    let mut forged = lines.clone();
    let prev = lines[2]
        .rsplit("\"hash\":\"")
        .next()
        .unwrap()
        .trim_end_matches("\"}")
        .to_string();
    forged[3] = line(&prev, r#""type":"request","request":{"path":"secret/data/innocent"}"#).0;
    let (code, out) = verify(&write(dir.path(), "forged.log", &forged), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("forged.log:5:"), "{out}");

    let mut removed = lines.clone();
    removed.remove(2);
    let (code, out) = verify(&write(dir.path(), "removed.log", &removed), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("removed.log:3:"), "{out}");

    let (code, out) = verify(&write(dir.path(), "headless.log", &lines[2..]), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("headless.log:1:") && out.contains("genesis"), "{out}");

    let cut = dir.path().join("cut.log");
    let full = lines.join("\n") + "\n";
    std::fs::write(&cut, &full[..full.len() - 10]).unwrap();
    let (code, out) = verify(&cut, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cut.log:7:"), "{out}");
}

#[test]
fn an_unreadable_log_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = verify(&dir.path().join("missing.log"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("missing.log"), "{out}");
}
