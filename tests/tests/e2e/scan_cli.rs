//! End-to-end tests of `leakstop scan` on files, directories and stdin: what a user sees (findings with their
//! location, exit codes, redaction, allow markers, baselines and ignore files, reports).

use std::path::Path;
use std::process::{Command, Stdio};

use leakstop_tests::cmd::{Run, leakstop};
use leakstop_tests::secrets::{aws_key_pair, github_pat};
use leakstop_tests::{leakstop_bin, tempdir};
use serde_json::Value;

fn scan_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let cmd = leakstop(["scan"]).args(args).dir(dir).env("NO_COLOR", "1");
    match stdin {
        Some(input) => cmd.stdin(input),
        None => cmd,
    }
    .run()
}

fn json_findings(run: &Run) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(&run.stdout)
        .unwrap_or_else(|e| panic!("not a JSON array ({e}):\n{}\nstderr: {}", run.stdout, run.stderr))
}

fn write(dir: &Path, rel: &str, content: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A repo-like tree with one GitHub token at a known place: line 4, column 14 (`    token = "` is 13 chars).
fn tree_with_token() -> (tempfile::TempDir, String) {
    let dir = tempdir();
    let pat = github_pat();
    write(
        dir.path(),
        "src/app.py",
        &format!("import os\n\ndef f():\n    token = \"{pat}\"\n"),
    );
    write(dir.path(), "README.md", "# nothing to see\n");
    (dir, pat)
}

#[test]
fn directory_scan_reports_the_secret_with_its_location_and_exits_1() {
    let (dir, pat) = tree_with_token();
    let run = scan_in(dir.path(), &["--format", "json", "."], None);
    assert_eq!(run.code, 1, "findings must exit 1; stderr: {}", run.stderr);
    let findings = json_findings(&run);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f["path"], "src/app.py");
    assert_eq!(f["line"], 4);
    assert_eq!(f["column"], 14);
    assert_eq!(f["end_column"], 14 + pat.len() as u64 - 1);
    assert!(f["rule_id"].as_str().unwrap().starts_with("github"), "{f}");
    assert!(f["fingerprint"].as_str().unwrap().starts_with("ls1:"));
    assert!(!run.stdout.contains(&pat), "secret leaked into the JSON report");
}

#[test]
fn clean_tree_exits_0_and_bad_path_exits_2_naming_it() {
    let dir = tempdir();
    write(dir.path(), "a.txt", "hello world\n");
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    let run = scan_in(dir.path(), &["does/not/exist"], None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("does/not/exist") && run.stderr.contains("no such file"),
        "{}",
        run.stderr
    );
}

#[test]
fn stdin_is_scanned_with_dash() {
    let dir = tempdir();
    let pat = github_pat();
    let run = scan_in(
        dir.path(),
        &["-", "--format", "jsonl"],
        Some(&format!("first line\nexport GH={pat}\n")),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert_eq!(lines[0]["path"], "stdin");
    assert_eq!(lines[0]["line"], 2);
    assert_eq!(lines[0]["column"], 11);

    let run = scan_in(dir.path(), &["-"], Some("nothing secret here\n"));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn secrets_are_redacted_unless_show_secrets() {
    let (dir, pat) = tree_with_token();
    for fmt in ["text", "json", "jsonl", "sarif"] {
        let run = scan_in(dir.path(), &["--format", fmt, "."], None);
        assert_eq!(run.code, 1);
        assert!(
            !run.stdout.contains(&pat) && !run.stderr.contains(&pat),
            "{fmt} report shows the secret"
        );
        assert!(
            !run.stdout.contains(&pat[4..20]),
            "{fmt} report shows part of the secret"
        );
    }
    for fmt in ["text", "json", "jsonl"] {
        let run = scan_in(dir.path(), &["--format", fmt, "--show-secrets", "."], None);
        assert!(
            run.stdout.contains(&pat),
            "{fmt} with --show-secrets must reveal the secret:\n{}",
            run.stdout
        );
    }
    // SARIF is uploaded to code scanning: never in clear.
    let run = scan_in(dir.path(), &["--format", "sarif", "--show-secrets", "."], None);
    assert!(!run.stdout.contains(&pat));
}

#[test]
fn inline_allow_markers_of_leakstop_and_other_scanners_are_honoured() {
    let dir = tempdir();
    let markers = [
        "leakstop:allow",
        "gitleaks:allow",
        "pragma: allowlist secret",
        "kingfisher:ignore",
        "trufflehog:ignore",
    ];
    let mut content = String::new();
    for m in markers {
        content.push_str(&format!("token = \"{}\"  # {m}\n", github_pat()));
    }
    content.push_str(&format!("token = \"{}\"\n", github_pat()));
    write(dir.path(), "cfg.py", &content);
    let run = scan_in(dir.path(), &["--format", "json", "."], None);
    let findings = json_findings(&run);
    assert_eq!(findings.len(), 1, "only the unmarked line is reported: {findings:#?}");
    assert_eq!(findings[0]["line"], markers.len() as u64 + 1);
}

#[test]
fn baseline_round_trip_reports_only_new_findings_even_after_code_moves() {
    let (dir, pat) = tree_with_token();
    let run = scan_in(dir.path(), &["--write-baseline", "baseline.json", "src"], None);
    assert_eq!(
        run.code, 0,
        "writing a baseline accepts the current findings: {}",
        run.stderr
    );
    let text = std::fs::read_to_string(dir.path().join("baseline.json")).unwrap();
    assert!(!text.contains(&pat), "the baseline must not contain the secret");
    let b: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["findings"].as_array().unwrap().len(), 1);

    let run = scan_in(dir.path(), &["--baseline", "baseline.json", "src"], None);
    assert_eq!(run.code, 0, "known finding is not reported: {}", run.stdout);

    // Code moves (lines inserted above): still known, because fingerprints do not depend on lines.
    let moved = format!("# header\n# more\n\nimport os\n\ndef f():\n    token = \"{pat}\"\n");
    write(dir.path(), "src/app.py", &moved);
    // The same secret copied to another file is the same secret: also known.
    write(dir.path(), "src/copy.py", &format!("T = \"{pat}\"\n"));
    let run = scan_in(dir.path(), &["--baseline", "baseline.json", "src"], None);
    assert_eq!(run.code, 0, "{}", run.stdout);

    let new_pat = github_pat();
    write(dir.path(), "src/new.py", &format!("T = \"{new_pat}\"\n"));
    let run = scan_in(
        dir.path(),
        &["--baseline", "baseline.json", "--format", "json", "src"],
        None,
    );
    assert_eq!(run.code, 1);
    let findings = json_findings(&run);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["path"], "src/new.py");

    let run = scan_in(dir.path(), &["--baseline", "missing.json", "src"], None);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("missing.json"), "{}", run.stderr);
}

#[test]
fn leakstopignore_fingerprints_and_gitleaksignore_locations_suppress() {
    let (dir, _pat) = tree_with_token();
    let run = scan_in(dir.path(), &["--format", "json", "."], None);
    let f = &json_findings(&run)[0];
    let fp = f["fingerprint"].as_str().unwrap().to_string();
    let rule = f["rule_id"].as_str().unwrap().to_string();

    write(
        dir.path(),
        ".leakstopignore",
        &format!("# reviewed: test token\n{fp}\n"),
    );
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(run.code, 0, "{}", run.stdout);
    std::fs::remove_file(dir.path().join(".leakstopignore")).unwrap();

    // gitleaks' own ignore format: file:rule:line.
    write(dir.path(), ".gitleaksignore", &format!("src/app.py:{rule}:4\n"));
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(run.code, 0, "{}", run.stdout);

    // A gitleaks rule id leakstop does not have: mapped to path+line, and said so.
    write(dir.path(), ".gitleaksignore", "src/app.py:some-gitleaks-only-rule:4\n");
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("some-gitleaks-only-rule"),
        "the unmapped rule id is reported: {}",
        run.stderr
    );

    // Another line is not suppressed.
    write(dir.path(), ".gitleaksignore", &format!("src/app.py:{rule}:9\n"));
    assert_eq!(scan_in(dir.path(), &["."], None).code, 1);

    write(dir.path(), ".gitleaksignore", "this is not a fingerprint\n");
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(".gitleaksignore") && run.stderr.contains("line 1"),
        "{}",
        run.stderr
    );
}

#[test]
fn gitignore_binary_and_size_limits_are_respected_with_notes() {
    let dir = tempdir();
    leakstop_tests::gitcli::init_repo(dir.path());
    write(dir.path(), ".gitignore", "ignored/\n");
    write(dir.path(), "ignored/secret.py", &format!("t = \"{}\"\n", github_pat()));
    write(dir.path(), "blob.bin", &format!("\0\0\0binary {}\n", github_pat()));
    write(
        dir.path(),
        "big.txt",
        &format!("{}\nt = \"{}\"\n", "x".repeat(4096), github_pat()),
    );

    let run = scan_in(dir.path(), &["--max-file-size", "1K", "."], None);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("big.txt") && run.stderr.contains("--max-file-size"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("binary"), "{}", run.stderr);
    // Every file left out is counted in the summary, with its reason.
    assert!(
        run.stderr.contains(
            "skipped 1 director(ies) ignored by .gitignore/.ignore (--no-ignore scans them), 1 binary (--include-binary), \
             1 over --max-file-size"
        ),
        "{}",
        run.stderr
    );

    let run = scan_in(dir.path(), &["--format", "json", "."], None);
    let paths: Vec<String> = json_findings(&run)
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["big.txt"]);

    let run = scan_in(
        dir.path(),
        &["--format", "json", "--no-ignore", "--include-binary", "."],
        None,
    );
    let mut paths: Vec<String> = json_findings(&run)
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, ["big.txt", "blob.bin", "ignored/secret.py"]);
}

#[cfg(unix)]
#[test]
fn symlinks_are_not_followed() {
    let dir = tempdir();
    let outside = tempdir();
    write(outside.path(), "secret.py", &format!("t = \"{}\"\n", github_pat()));
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.py"), dir.path().join("file-link.py")).unwrap();
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[test]
fn output_file_gets_the_report_and_stdout_stays_empty() {
    let (dir, _pat) = tree_with_token();
    let run = scan_in(dir.path(), &["--format", "jsonl", "--output", "out.jsonl", "src"], None);
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty());
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 1);
    // No temp file left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn sarif_has_rules_results_regions_and_fingerprints() {
    let (dir, pat) = tree_with_token();
    let run = scan_in(dir.path(), &["--format", "sarif", "."], None);
    assert_eq!(run.code, 1);
    let s: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(s["version"], "2.1.0");
    let run0 = &s["runs"][0];
    assert_eq!(run0["tool"]["driver"]["name"], "leakstop");
    let rules = run0["tool"]["driver"]["rules"].as_array().unwrap();
    let result = &run0["results"][0];
    let rule_id = result["ruleId"].as_str().unwrap();
    let rule = &rules[result["ruleIndex"].as_u64().unwrap() as usize];
    assert_eq!(rule["id"], rule_id);
    assert!(rule["shortDescription"]["text"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(rule["help"]["text"].as_str().is_some_and(|t| t.contains("Rotate")));
    assert_eq!(result["level"], "error");
    let loc = &result["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "src/app.py");
    assert_eq!(loc["region"]["startLine"], 4);
    assert_eq!(loc["region"]["startColumn"], 14);
    assert_eq!(loc["region"]["endColumn"], 14 + pat.len() as u64);
    assert!(
        result["partialFingerprints"]["leakstopFingerprint/v1"]
            .as_str()
            .unwrap()
            .starts_with("ls1:")
    );
}

#[test]
fn aws_key_id_and_secret_pair_is_reported() {
    let dir = tempdir();
    let (id, secret) = aws_key_pair();
    write(
        dir.path(),
        "deploy/.env",
        &format!("AWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}\nREGION=eu-west-1\n"),
    );
    let run = scan_in(dir.path(), &["--format", "json", "."], None);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let findings = json_findings(&run);
    let lines: Vec<u64> = findings.iter().map(|f| f["line"].as_u64().unwrap()).collect();
    assert!(
        lines.contains(&1) && lines.contains(&2),
        "both halves of the pair are reported: {findings:#?}"
    );
    // Hidden files (.env) are scanned: that is where secrets live.
    assert!(findings.iter().all(|f| f["path"] == "deploy/.env"));
}

#[test]
fn config_disables_a_rule_and_bad_config_is_a_clear_error() {
    let (dir, _pat) = tree_with_token();
    let run = scan_in(dir.path(), &["--format", "json", "."], None);
    let rule = json_findings(&run)[0]["rule_id"].as_str().unwrap().to_string();

    write(
        dir.path(),
        ".leakstop.toml",
        &format!("[extend]\ndisable = [\"{rule}\"]\n"),
    );
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(
        run.code, 0,
        "a disabled rule reports nothing: {}{}",
        run.stdout, run.stderr
    );

    write(
        dir.path(),
        "bad.toml",
        "[[rule]]\nid = \"broken\"\nregex = '''(unclosed'''\n",
    );
    let run = scan_in(dir.path(), &["--config", "bad.toml", "."], None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("bad.toml"),
        "the error names the file: {}",
        run.stderr
    );

    let run = scan_in(dir.path(), &["--config", "nope.toml", "."], None);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nope.toml"), "{}", run.stderr);
}

#[test]
fn gitleaks_config_in_the_scanned_dir_is_imported_and_unmapped_parts_are_named() {
    let dir = tempdir();
    write(
        dir.path(),
        ".gitleaks.toml",
        r#"title = "team config"
frobnicate = true

[extend]
useDefault = true

[[rules]]
id = "internal-service-key"
description = "Internal service key"
regex = '''isk_[a-z0-9]{32}'''
keywords = ["isk_"]
"#,
    );
    write(dir.path(), "app.cfg", "key = isk_9f3k2m8q1z7x4c6v0b5n8m2l4k6j8h0g\n");
    let run = scan_in(dir.path(), &["--format", "json", "."], None);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let findings = json_findings(&run);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["rule_id"], "internal-service-key");
    assert_eq!(findings[0]["column"], 7);
    assert!(
        run.stderr.contains("frobnicate"),
        "what could not be mapped is said on stderr: {}",
        run.stderr
    );
}

#[test]
fn a_report_to_a_named_pipe_goes_through_it_and_leaves_it_a_pipe() {
    use std::os::unix::fs::FileTypeExt as _;
    let (tmp, token) = tree_with_token();
    let pipe = tmp.path().join("report.pipe");
    let made = Command::new("mkfifo").arg(&pipe).status().expect("mkfifo (coreutils)");
    assert!(made.success());
    // The reader must be open before the writer's open returns: read on a thread.
    let reader = {
        let pipe = pipe.clone();
        std::thread::spawn(move || std::fs::read_to_string(pipe).unwrap())
    };
    let pipe_arg = pipe.to_string_lossy().into_owned();
    let run = scan_in(tmp.path(), &["src", "--format", "json", "-o", &pipe_arg], None);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // Checked before joining: had the pipe been replaced, the reader would wait on it forever.
    assert!(
        std::fs::symlink_metadata(&pipe).unwrap().file_type().is_fifo(),
        "a rename over the pipe would have replaced it with a file (as it once did to /dev/null)"
    );
    let report = reader.join().unwrap();
    let v: Vec<Value> = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"));
    assert_eq!(v.len(), 1, "{report}");
    assert!(!report.contains(&token), "redacted");
}

#[test]
fn gitignore_applies_only_inside_a_git_work_tree() {
    // A directory that is not a repository (an unpacked archive, a copied build context): git ignores nothing
    // there, and neither does the scan.
    let dir = tempdir();
    write(dir.path(), ".gitignore", ".env\n");
    write(dir.path(), ".env", &format!("GITHUB_TOKEN={}\n", github_pat()));
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(".env:1:"), "{}", run.stdout);
    assert!(!run.stderr.contains("ignored"), "{}", run.stderr);
    // A `.ignore` file applies in any directory.
    let plain = tempdir();
    write(plain.path(), ".ignore", "local.env\n");
    write(plain.path(), "local.env", &format!("GITHUB_TOKEN={}\n", github_pat()));
    let run = scan_in(plain.path(), &["."], None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("skipped 1 ignored by .gitignore/.ignore"),
        "{}",
        run.stderr
    );

    // The same files in a work tree: .env is skipped, and the summary says so.
    leakstop_tests::gitcli::init_repo(dir.path());
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("in 1 file(s)"), "{}", run.stderr);
    assert!(run.stderr.contains("skipped 1 ignored by .gitignore"), "{}", run.stderr);
    // An ignored directory counts once, without being read.
    write(dir.path(), ".gitignore", ".env\ntarget/\n");
    write(dir.path(), "target/a/b.txt", "x\n");
    write(dir.path(), "target/c.txt", "x\n");
    let run = scan_in(dir.path(), &["."], None);
    assert!(
        run.stderr
            .contains("skipped 1 file(s) and 1 director(ies) ignored by .gitignore"),
        "{}",
        run.stderr
    );
    // A scan of a directory inside the work tree: the repository is above where the walk starts, and its ignore
    // files are still counted.
    write(dir.path(), "sub/.gitignore", "local.env\n");
    write(dir.path(), "sub/local.env", &format!("GITHUB_TOKEN={}\n", github_pat()));
    let run = scan_in(&dir.path().join("sub"), &["."], None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("skipped 1 ignored by .gitignore"), "{}", run.stderr);
}

#[test]
fn files_excluded_by_allowlist_paths_are_counted() {
    let dir = tempdir();
    write(dir.path(), ".leakstop.toml", "[allowlist]\npaths = [\"^fixtures/\"]\n");
    write(dir.path(), "fixtures/a.txt", &format!("t = \"{}\"\n", github_pat()));
    write(dir.path(), "fixtures/b.txt", "nothing\n");
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("2 excluded by allowlist paths"), "{}", run.stderr);
}

#[test]
fn config_baseline_and_ignore_files_are_found_from_a_subdirectory_up_to_the_repository_root() {
    let top = tempdir();
    let repo = top.path().join("repo");
    leakstop_tests::gitcli::init_repo(&repo);
    // Above the repository: not the repository's business, never used.
    write(top.path(), ".leakstop.toml", "[extend]\ndisable = [\"acme-key\"]\n");
    write(
        &repo,
        ".leakstop.toml",
        "[[rule]]\nid = \"acme-key\"\ndescription = \"ACME key\"\nseverity = \"high\"\nkeywords = [\"acme_\"]\n\
         regex = '''acme_[0-9a-f]{16}'''\nexamples = [\"acme_0123456789abcdef\"]\nnegative_examples = [\"acme_\"]\n",
    );
    let pat = github_pat();
    write(
        &repo,
        "src/app/keys.py",
        &format!("A = \"acme_9f8e7d6c5b4a3f2e\"\nT = \"{pat}\"\n"),
    );

    // `scan src` from the root and a scan from the subdirectory both use the root's config.
    for (dir, arg) in [(repo.clone(), "src"), (repo.join("src/app"), ".")] {
        let run = scan_in(&dir, &["--format", "json", arg], None);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let mut rules: Vec<String> = json_findings(&run)
            .iter()
            .map(|f| f["rule_id"].as_str().unwrap().to_string())
            .collect();
        rules.sort();
        assert_eq!(
            rules,
            ["acme-key", "github-pat-classic"],
            "from {}: {}",
            dir.display(),
            run.stderr
        );
        assert!(
            run.stderr.contains("using ") && run.stderr.contains(".leakstop.toml: "),
            "{}",
            run.stderr
        );
    }

    // A baseline at the conventional place is honoured by `scan` as by the hook, and said so.
    let run = scan_in(&repo, &["--write-baseline", ".leakstop-baseline", "."], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = scan_in(&repo.join("src/app"), &["."], None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("using baseline ") && run.stderr.contains(".leakstop-baseline: 3 fingerprint(s)"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(repo.join(".leakstop-baseline")).unwrap();

    // So is an ignore file at the root.
    let out = scan_in(&repo, &["--format", "json", "src"], None);
    let fps: Vec<String> = json_findings(&out)
        .iter()
        .map(|f| f["fingerprint"].as_str().unwrap().to_string())
        .collect();
    write(&repo, ".leakstopignore", &format!("{}\n", fps[0]));
    let run = scan_in(&repo.join("src"), &["--format", "json", "."], None);
    assert_eq!(json_findings(&run).len(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("using ignore file ") && run.stderr.contains(".leakstopignore: 1 entries"),
        "{}",
        run.stderr
    );
    // -q keeps stderr for problems only.
    let run = scan_in(&repo.join("src"), &["-q", "."], None);
    assert!(!run.stderr.contains("using"), "{}", run.stderr);
}

#[test]
fn users_rules_skip_the_placeholder_guard_unless_they_ask_for_it_and_drops_are_logged_at_debug() {
    let dir = tempdir();
    let rule = "[[rule]]\nid = \"acme-key\"\ndescription = \"ACME key\"\nseverity = \"high\"\nkeywords = [\"acme_\"]\n\
                regex = '''acme_[0-9a-z]{16}'''\nexamples = [\"acme_0123456789abcdez\"]\nnegative_examples = [\"acme_\"]\n";
    write(dir.path(), ".leakstop.toml", rule);
    // A real key of the team's own format may well contain a placeholder word.
    write(dir.path(), "k.txt", "k = acme_example7q2w9e4r1\n");
    let run = scan_in(dir.path(), &["."], None);
    assert_eq!(run.code, 1, "the user's rule reports it: {}{}", run.stdout, run.stderr);

    write(
        dir.path(),
        ".leakstop.toml",
        &format!("{rule}placeholder_guard = true\n"),
    );
    let run = scan_in(dir.path(), &["-vv", "."], None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("match dropped: looks like a placeholder") && run.stderr.contains("acme-key"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("acme_example7q2w9e4r1"),
        "never the secret in clear: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("\x1b["),
        "no colour codes into a pipe: {}",
        run.stderr
    );

    // A failed checksum is logged too (a GitHub token with its last character changed).
    let mut bad = github_pat();
    let last = bad.pop().unwrap();
    bad.push(if last == 'a' { 'b' } else { 'a' });
    write(dir.path(), "k.txt", &format!("t = \"{bad}\"\n"));
    let run = scan_in(dir.path(), &["-vv", "."], None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("failed the github-crc32 check"), "{}", run.stderr);
    assert!(!run.stderr.contains(&bad), "{}", run.stderr);
}

#[test]
fn stdin_gets_the_size_limit_and_binary_detection_files_get() {
    let dir = tempdir();
    let input = format!("{}\nt = \"{}\"\n", "x".repeat(4096), github_pat());
    let run = scan_in(dir.path(), &["--max-file-size", "1K", "-"], Some(&input));
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("skipped stdin") && run.stderr.contains("--max-file-size"),
        "{}",
        run.stderr
    );
    let binary = format!("\0\0\0binary {}\n", github_pat());
    let run = scan_in(dir.path(), &["-"], Some(&binary));
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("1 binary (--include-binary)"), "{}", run.stderr);
    let run = scan_in(dir.path(), &["--include-binary", "-"], Some(&binary));
    assert_eq!(run.code, 1, "{}", run.stderr);
}

/// Peak resident memory (KiB) of `leakstop scan ARGS` in `dir`, measured by GNU time.
fn peak_rss_kib(dir: &Path, args: &[&str]) -> u64 {
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("peak-kib=%M")
        .arg(leakstop_bin())
        .arg("scan")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .output()
        .expect("/usr/bin/time (Debian package `time`, installed by tests/setup.sh)");
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.strip_prefix("peak-kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in: {err}"))
}

#[test]
fn memory_beyond_the_input_does_not_grow_with_a_pathological_input() {
    // One character that a built-in keyword is made of, repeated: a keyword occurrence at every position. Held
    // for the whole input at once that took many times the input's size; held per piece, the input itself plus
    // a bounded amount.
    let dir = tempdir();
    const SIZE: usize = 6 << 20;
    std::fs::write(dir.path().join("a.txt"), "a".repeat(SIZE)).unwrap();
    std::fs::write(dir.path().join("small.txt"), "a").unwrap();
    let base = peak_rss_kib(dir.path(), &["-q", "small.txt"]);
    let big = peak_rss_kib(dir.path(), &["-q", "a.txt"]);
    let extra = big.saturating_sub(base) * 1024;
    // The input (read whole) and one piece's keyword occurrences and matches, with room to spare; the old way
    // needed 16 bytes per position for the occurrences alone (96 MiB here).
    assert!(
        extra < (SIZE as u64) + (40 << 20),
        "a {} MiB input took {} MiB more than a 1-byte one",
        SIZE >> 20,
        extra >> 20
    );
}

#[test]
fn version_names_the_commit_and_build_date_and_help_documents_exit_codes() {
    let out = leakstop(["--version"]).run();
    assert!(out.success());
    let v = &out.stdout;
    // `leakstop 0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-04)`, or `commit unknown` outside a checkout.
    let (commit, date) = v
        .trim()
        .strip_prefix("leakstop ")
        .and_then(|r| r.split_once(" (commit "))
        .and_then(|(_, r)| r.strip_suffix(')'))
        .and_then(|r| r.split_once(", built "))
        .unwrap_or_else(|| panic!("unexpected --version: {v}"));
    assert!(
        commit == "unknown"
            || commit
                .trim_end_matches("-modified")
                .chars()
                .all(|c| c.is_ascii_hexdigit()),
        "{v}"
    );
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "{v}"
    );
    let out = leakstop(["--help"]).run();
    let help = &out.stdout;
    assert!(
        help.contains("Exit codes: 0 = ") && help.contains("1 = ") && help.contains("2 = error"),
        "{help}"
    );
}

#[test]
fn a_report_into_a_missing_directory_is_one_clear_error_and_exit_2() {
    let (dir, _pat) = tree_with_token();
    let run = scan_in(dir.path(), &["-o", "no/such/dir/out.json", "src"], None);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no/such/dir/out.json"), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "the cause once, not twice: {}",
        run.stderr
    );
}

#[test]
fn text_report_shows_the_matched_line_redacted() {
    let (dir, pat) = tree_with_token();
    let run = scan_in(dir.path(), &["src"], None);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("    line: token = \"ghp_*****\"\n"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(&pat), "{}", run.stdout);
    // Another secret on the same line is not shown in clear through the line either.
    write(dir.path(), "src/two.env", &format!("A={pat} B={}\n", aws_key_pair().0));
    let run = scan_in(dir.path(), &["src/two.env"], None);
    assert!(
        !run.stdout.contains(&pat) && !run.stdout.contains(&aws_key_pair().0),
        "{}",
        run.stdout
    );
}
