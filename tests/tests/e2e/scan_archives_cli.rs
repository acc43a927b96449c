//! End-to-end tests of `leakstop scan` on what users keep secrets in besides plain files: a nested archive (a jar in
//! a war in a tar.gz), a Jupyter notebook, and a `docker save` image tarball, each built here with the system's
//! `zip` and `tar`; findings named by their inner path in text, JSON and SARIF; limits as warnings.

use std::path::Path;
use std::process::{Command, Stdio};

use leakstop_tests::cmd::{self, Run};
use leakstop_tests::secrets::{aws_key_pair, github_pat};
use serde_json::Value;

fn scan(dir: &Path, args: &[&str]) -> Run {
    cmd::leakstop(["scan"]).args(args).dir(dir).run()
}

/// Runs a tool (`zip`, `tar`) in `dir`; these tests need them installed (tests/apt-packages.txt).
fn tool(dir: &Path, program: &str, args: &[&str]) {
    let st = Command::new(program)
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("running {program} (install it: tests/apt-packages.txt): {e}"));
    assert!(st.success(), "{program} {args:?} failed");
}

fn write(dir: &Path, rel: &str, content: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn json(run: &Run) -> Vec<Value> {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr: {}", run.stdout, run.stderr))
}

/// `scan/outer.tar.gz` holding `app.war` holding `WEB-INF/lib/app.jar` holding `config/application.yml` with a
/// GitHub token on line 3; built in `work/`, so `scan/` holds only the archive.
fn nested_archive(root: &Path) -> String {
    let pat = github_pat();
    let work = root.join("work");
    write(
        &work,
        "config/application.yml",
        format!("server:\n  port: 8080\ngithub:\n  token: {pat}\n").as_bytes(),
    );
    tool(&work, "zip", &["-qr", "app.jar", "config"]);
    std::fs::create_dir_all(work.join("WEB-INF/lib")).unwrap();
    std::fs::rename(work.join("app.jar"), work.join("WEB-INF/lib/app.jar")).unwrap();
    tool(&work, "zip", &["-qr", "app.war", "WEB-INF"]);
    std::fs::create_dir_all(root.join("scan")).unwrap();
    tool(&work, "tar", &["czf", "../scan/outer.tar.gz", "app.war"]);
    pat
}

#[test]
fn a_token_in_a_jar_in_a_war_in_a_tar_gz_is_reported_with_its_inner_path_in_every_format() {
    let dir = leakstop_tests::tempdir();
    nested_archive(dir.path());
    let scan_dir = dir.path().join("scan");
    let inner = "outer.tar.gz!/app.war!/WEB-INF/lib/app.jar!/config/application.yml";

    let text = scan(&scan_dir, &["."]);
    assert_eq!(text.code, 1, "{}\n{}", text.stdout, text.stderr);
    assert!(text.stdout.contains(&format!("{inner}:4:")), "{}", text.stdout);

    let run = scan(&scan_dir, &[".", "-f", "json"]);
    let found = json(&run);
    assert_eq!(found.len(), 1, "{}", run.stdout);
    assert_eq!(found[0]["path"], inner);
    assert_eq!(found[0]["line"], 4);
    assert_eq!(found[0]["column"], 10);

    let run = scan(&scan_dir, &[".", "-f", "sarif"]);
    let sarif: Value = serde_json::from_str(&run.stdout).unwrap();
    let loc = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], inner);
    assert_eq!(loc["region"]["startLine"], 4);

    // Turned off, the archive is a binary file and is skipped.
    let off = scan(&scan_dir, &[".", "--no-archives"]);
    assert_eq!(off.code, 0, "{}\n{}", off.stdout, off.stderr);
    assert!(off.stderr.contains("1 binary"), "{}", off.stderr);
}

#[test]
fn archive_limits_are_warnings_naming_the_archive_and_the_flag() {
    let dir = leakstop_tests::tempdir();
    nested_archive(dir.path());
    let scan_dir = dir.path().join("scan");

    let run = scan(&scan_dir, &[".", "--max-archive-depth", "2"]);
    assert_eq!(run.code, 0, "the jar is not opened: {}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("warning: outer.tar.gz!/app.war!/WEB-INF/lib/app.jar: not opened")
            && run.stderr.contains("--max-archive-depth 2"),
        "{}",
        run.stderr
    );

    // A large compressible log in the archive, over a 1 KiB budget.
    let log: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    write(&dir.path().join("work"), "big.log", log.as_bytes());
    tool(&dir.path().join("work"), "tar", &["czf", "../scan/logs.tgz", "big.log"]);
    let run = scan(&scan_dir, &["logs.tgz", "--max-archive-bytes", "1K"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("warning: logs.tgz: stopped after 1 KiB decompressed (--max-archive-bytes)"),
        "{}",
        run.stderr
    );

    // A corrupt archive: a warning, and the other files are still scanned.
    let (key_id, _) = aws_key_pair();
    write(&scan_dir, "broken.zip", b"PK\x03\x04 this is not really a zip");
    write(&scan_dir, "notes.txt", format!("aws = {key_id}\n").as_bytes());
    let run = scan(&scan_dir, &["broken.zip", "notes.txt", "-f", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("warning: broken.zip: cannot read the archive"),
        "{}",
        run.stderr
    );
    assert_eq!(json(&run)[0]["path"], "notes.txt");
}

#[test]
fn a_token_in_a_notebook_cell_is_reported_at_its_line_in_the_file() {
    let dir = leakstop_tests::tempdir();
    let pat = github_pat();
    let nb = serde_json::json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": { "kernelspec": { "name": "python3", "display_name": "Python 3", "language": "python" } },
        "cells": [
            { "cell_type": "markdown", "id": "a1", "metadata": {}, "source": ["# Fetch issues\n", "Uses the API."] },
            { "cell_type": "code", "id": "b2", "metadata": {}, "execution_count": 1, "outputs": [],
              "source": ["import requests\n", "\n", format!("TOKEN = \"{pat}\"\n"), "requests.get(URL, auth=TOKEN)"] }
        ]
    });
    let text = String::from_utf8(serde_json::to_vec_pretty(&nb).unwrap()).unwrap();
    write(dir.path(), "analysis.ipynb", text.as_bytes());
    let run = scan(dir.path(), &[".", "-f", "json"]);
    let found = json(&run);
    assert_eq!(found.len(), 1, "{}", run.stdout);
    // Found in the decoded cell (the JSON escapes the quotes), reported where it is in the file.
    let (line, content) = (text.lines().enumerate()).find(|(_, l)| l.contains(&pat)).unwrap();
    assert_eq!(found[0]["path"], "analysis.ipynb");
    assert_eq!(found[0]["line"], line as u64 + 1);
    assert_eq!(found[0]["column"], content.find(&pat).unwrap() as u64 + 1);
}

#[test]
fn a_docker_save_tarball_reports_each_layer_and_marks_a_file_deleted_by_a_later_layer() {
    let dir = leakstop_tests::tempdir();
    let work = dir.path().join("work");
    let pat = github_pat();
    let (key_id, _) = aws_key_pair();
    // Layer 1 adds two files; layer 2 deletes one of them (an image built with `COPY .env` then `RUN rm .env`).
    write(&work, "l1/app/.env", format!("GITHUB_TOKEN={pat}\n").as_bytes());
    write(
        &work,
        "l1/app/settings.ini",
        format!("[aws]\nkey = {key_id}\n").as_bytes(),
    );
    write(&work, "l2/app/.wh..env", b"");
    write(&work, "l2/app/run.sh", b"#!/bin/sh\nexec app\n");
    let image = work.join("image");
    for (layer, id) in [("l1", "1111"), ("l2", "2222")] {
        std::fs::create_dir_all(image.join(id)).unwrap();
        let out = image.join(id).join("layer.tar");
        tool(&work.join(layer), "tar", &["cf", out.to_str().unwrap(), "app"]);
    }
    write(&image, "cfg.json", b"{\"architecture\":\"amd64\"}");
    write(
        &image,
        "manifest.json",
        br#"[{"Config":"cfg.json","RepoTags":["app:1"],"Layers":["1111/layer.tar","2222/layer.tar"]}]"#,
    );
    std::fs::create_dir_all(dir.path().join("scan")).unwrap();
    tool(
        &image,
        "tar",
        &[
            "cf",
            "../../scan/app-image.tar",
            "1111",
            "2222",
            "cfg.json",
            "manifest.json",
        ],
    );
    let scan_dir = dir.path().join("scan");

    let run = scan(&scan_dir, &[".", "-f", "json"]);
    let found = json(&run);
    let got: Vec<(String, bool)> = found
        .iter()
        .map(|f| {
            let deleted = f["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "deleted-in-later-layer");
            (f["path"].as_str().unwrap().to_string(), deleted)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("app-image.tar!/1111/layer.tar!/app/.env".to_string(), true),
            ("app-image.tar!/1111/layer.tar!/app/settings.ini".to_string(), false),
        ],
        "{}",
        run.stdout
    );
    let text = scan(&scan_dir, &["."]);
    assert!(
        text.stdout.contains("deleted by a later image layer"),
        "{}",
        text.stdout
    );
}
