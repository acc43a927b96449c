//! `leakstop audit verify` on logs built here with nothing but `openssl dgst -mac HMAC`, which also pins the
//! documented line format: `{"prev_hash":"hmac-sha256:<previous line's hash>",...,"hash":"hmac-sha256:<HMAC-SHA256
//! under the chain key of the line before ,"hash">"}`, the first line a genesis record with an all-zero prev_hash.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use leakstop_tests::cmd::leakstop;
use leakstop_tests::tempdir;

const ZERO: &str = "hmac-sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// `hmac-sha256:<hex>` of `data` under `key_hex`, or `sha256:<hex>` (the old, unkeyed chain) without a key.
fn digest(key_hex: Option<&str>, prefix: &str, data: &str) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["dgst", "-sha256"]);
    if let Some(k) = key_hex {
        cmd.args(["-mac", "HMAC", "-macopt", &format!("hexkey:{k}")]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl (Debian package openssl) must be installed");
    child.stdin.take().unwrap().write_all(data.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    format!("{prefix}{}", text.split_whitespace().last().unwrap())
}

/// How a forger or the server chains lines.
#[derive(Clone, Copy)]
enum Chain<'a> {
    Keyed(&'a str),
    /// Plain SHA-256, labelled as it was before keyed chains or disguised as an HMAC.
    Sha256(&'a str),
}

impl Chain<'_> {
    fn hash(self, data: &str) -> String {
        match self {
            Chain::Keyed(k) => digest(Some(k), "hmac-sha256:", data),
            Chain::Sha256(prefix) => digest(None, prefix, data),
        }
    }
}

/// One chained line: returns (line, its hash).
fn line(chain: Chain<'_>, prev: &str, fields: &str) -> (String, String) {
    let body = format!("{{\"prev_hash\":\"{prev}\",{fields}");
    let hash = chain.hash(&body);
    (format!("{body},\"hash\":\"{hash}\"}}"), hash)
}

fn entry(i: usize) -> String {
    format!(r#""type":"request","request":{{"path":"secret/data/app{i}"}}"#)
}

fn chain_all(chain: Chain<'_>, entries: &[String]) -> Vec<String> {
    let (genesis, mut prev) = line(
        chain,
        ZERO,
        r#""type":"genesis","time":"2026-11-22T00:00:00Z","device":"file","nonce":"ab""#,
    );
    let mut lines = vec![genesis];
    for e in entries {
        let (l, h) = line(chain, &prev, e);
        lines.push(l);
        prev = h;
    }
    lines
}

fn build_log(key: &str, entries: usize) -> Vec<String> {
    chain_all(Chain::Keyed(key), &(0..entries).map(entry).collect::<Vec<_>>())
}

fn hash_of(line: &str) -> String {
    line.rsplit("\"hash\":\"")
        .next()
        .unwrap()
        .trim_end_matches("\"}")
        .to_string()
}

fn random_key() -> String {
    format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>())
}

fn verify(path: &Path, extra: &[&str]) -> (i32, String) {
    let out = leakstop(["audit", "verify"])
        .args(extra)
        .arg(path)
        // Nothing listens there: a key must come from the arguments.
        .env("LEAKSTOP_ADDR", "http://127.0.0.1:9")
        .run();
    (out.code, out.text())
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn key_file(dir: &Path, key: &str) -> String {
    let p = dir.join(format!("key-{}", &key[..8]));
    std::fs::write(&p, format!("{key}\n")).unwrap();
    p.display().to_string()
}

#[test]
fn an_intact_log_verifies_and_reports_its_anchors() {
    let dir = tempdir();
    let key = random_key();
    let kf = key_file(dir.path(), &key);
    let lines = build_log(&key, 6);
    let p = write(dir.path(), "audit.log", &lines);
    let (code, out) = verify(&p, &["--key-file", &kf]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("chain intact, 7 lines"), "{out}");
    let (genesis, head) = (hash_of(&lines[0]), hash_of(&lines[4]));
    assert!(
        out.contains(&genesis),
        "the genesis hash is reported so it can be recorded: {out}"
    );
    let (code, out) = verify(&p, &["--key-file", &kf, "--genesis", &genesis, "--head", &head]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("genesis and head as pinned"), "{out}");
    let (code, out) = verify(&p, &["--key-file", &kf, "--genesis", ZERO]);
    assert_eq!(code, 1, "a different recorded genesis fails: {out}");
    assert!(out.contains(":1:"), "{out}");
}

#[test]
fn tampering_is_reported_at_the_first_broken_line() {
    let dir = tempdir();
    let key = random_key();
    let kf = key_file(dir.path(), &key);
    let lines = build_log(&key, 6);
    let check = |name: &str, lines: &[String]| verify(&write(dir.path(), name, lines), &["--key-file", &kf]);

    let mut edited = lines.clone();
    edited[3] = edited[3].replace("app2", "app9");
    let (code, out) = check("edited.log", &edited);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("edited.log:4:") && out.contains("edited"),
        "the edited line 4 is named: {out}"
    );

    let mut removed = lines.clone();
    removed.remove(2);
    let (code, out) = check("removed.log", &removed);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("removed.log:3:"), "{out}");

    let (code, out) = check("headless.log", &lines[2..]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("headless.log:1:") && out.contains("genesis"), "{out}");

    let cut = dir.path().join("cut.log");
    let full = lines.join("\n") + "\n";
    std::fs::write(&cut, &full[..full.len() - 10]).unwrap();
    let (code, out) = verify(&cut, &["--key-file", &kf]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cut.log:7:"), "{out}");

    // Lines cut from the end leave a whole chain: the head recorded from the server catches it.
    let head = hash_of(&lines[6]);
    let short = write(dir.path(), "short.log", &lines[..5]);
    assert_eq!(verify(&short, &["--key-file", &kf]).0, 0);
    let (code, out) = verify(&short, &["--key-file", &kf, "--head", &head]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("removed from its end"), "{out}");
}

/// The attack the unkeyed chain did not stop: remove lines and edit others, then recompute every hash.
#[test]
fn a_log_rewritten_without_the_key_is_caught() {
    let dir = tempdir();
    let key = random_key();
    let kf = key_file(dir.path(), &key);
    let mut entries: Vec<String> = (0..20).map(entry).collect();
    let log = write(dir.path(), "audit.log", &chain_all(Chain::Keyed(&key), &entries));
    assert_eq!(verify(&log, &["--key-file", &kf]).0, 0);

    entries.drain(5..11);
    for e in entries.iter_mut().skip(2) {
        *e = e.replace("secret/data/app", "secret/data/harmless");
    }
    for forger in [
        Chain::Sha256("sha256:"),
        Chain::Sha256("hmac-sha256:"),
        Chain::Keyed(&random_key()),
    ] {
        let forged = write(dir.path(), "forged.log", &chain_all(forger, &entries));
        let (code, out) = verify(&forged, &["--key-file", &kf]);
        assert_eq!(code, 1, "a rewritten log must fail: {out}");
        assert!(out.contains("forged.log:1:"), "{out}");
    }
}

#[test]
fn a_file_that_is_no_audit_log_is_a_usage_error_not_tampering() {
    let dir = tempdir();
    let kf = key_file(dir.path(), &random_key());
    for (name, text) in [("notes.txt", "shopping list\n"), ("data.json", "{\"a\": 1}\n")] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let (code, out) = verify(&p, &["--key-file", &kf]);
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains("not an audit log") && !out.contains("chain broken"),
            "{out}"
        );
    }
}

#[test]
fn unreadable_logs_and_missing_keys_are_errors_naming_what_to_do() {
    let dir = tempdir();
    let kf = key_file(dir.path(), &random_key());
    let (code, out) = verify(&dir.path().join("missing.log"), &["--key-file", &kf]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("missing.log"), "{out}");

    let key = random_key();
    let log = write(dir.path(), "audit.log", &build_log(&key, 2));
    let (code, out) = verify(&log, &[]);
    assert_eq!(code, 2, "without a key file or a server there is no key: {out}");
    assert!(out.contains("--key-file"), "{out}");
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not hex").unwrap();
    let (code, out) = verify(&log, &["--key-file", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("bad.key"), "{out}");
}
