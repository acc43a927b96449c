//! `leakstop scan --git`, `--staged` and `--range` on real repositories built with the git CLI: provenance,
//! line numbers, renames, merges, bare and shallow clones, first commits.

use std::path::Path;
use std::process::{Command, Output};

use leakstop_tests::cmd::leakstop;
use leakstop_tests::gitcli::{commit_file, git, git_output, init_repo, isolate, stage};
use leakstop_tests::{leakstop_bin, secrets, tempdir};
use serde_json::Value;

fn scan(dir: &Path, args: &[&str]) -> Output {
    leakstop(["scan"])
        .args(args)
        .args(["--format", "json"])
        .dir(dir)
        .output()
}

fn findings(out: &Output) -> Vec<Value> {
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    match v {
        Value::Array(a) => a,
        Value::Object(ref o) if o.contains_key("findings") => o["findings"].as_array().unwrap().clone(),
        other => panic!("unexpected report shape: {other}"),
    }
}

fn commit_of(f: &Value) -> &str {
    f["commit"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("finding without commit: {f}"))
}

#[test]
fn history_attributes_a_removed_secret_to_the_commit_that_added_it() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("r"));
    commit_file(&repo, "README.md", "# demo\n", "first");
    let token = secrets::github_pat();
    let added = commit_file(
        &repo,
        "conf/app.env",
        &format!("A=1\nB=2\nGH_TOKEN={token}\n"),
        "add config",
    );
    commit_file(&repo, "conf/app.env", "A=1\nB=2\n", "remove the token");

    let out = scan(&repo, &["--git", "."]);
    let fs = findings(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(fs.len(), 1, "{fs:?}");
    let f = &fs[0];
    assert_eq!(f["path"], "conf/app.env");
    assert_eq!(f["line"], 3);
    assert_eq!(f["column"], 10);
    assert_eq!(commit_of(f), added);
    assert_eq!(f["commit"]["author_name"], "Ada Tester");
    assert_eq!(f["commit"]["summary"], "add config");
    assert_eq!(
        f["in_head"], false,
        "the secret was removed, so it is not live at HEAD: {f}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&token),
        "secret shown without --show-secrets"
    );
}

#[test]
fn a_blob_is_reported_once_with_every_path_and_marked_live_at_head() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("r"));
    let (id, secret) = secrets::aws_key_pair();
    let content = format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n");
    let first = commit_file(&repo, "old/credentials", &content, "add creds");
    // Rename: same blob under a new path; then a copy elsewhere.
    std::fs::create_dir_all(repo.join("new")).unwrap();
    git(&repo, &["mv", "old/credentials", "new/credentials"]);
    git(&repo, &["commit", "-q", "-m", "move"]);
    commit_file(&repo, "backup/credentials", &content, "backup");

    let fs = findings(&scan(&repo, &["--git"]));
    let secret_findings: Vec<&Value> = fs.iter().filter(|f| f["rule_id"] == "aws-secret-access-key").collect();
    assert_eq!(secret_findings.len(), 1, "one blob, one finding: {fs:?}");
    let f = secret_findings[0];
    assert_eq!(f["path"], "old/credentials");
    assert_eq!(f["line"], 3);
    assert_eq!(commit_of(f), first);
    let others: Vec<&str> = f["other_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        others.contains(&"new/credentials") && others.contains(&"backup/credentials"),
        "{others:?}"
    );
    assert_eq!(f["in_head"], true);
}

/// A directory copied whole is one tree under two paths (read once): its files' other paths are derived from
/// that, and only for the version of a file the copy really holds.
#[test]
fn a_copied_directory_gives_other_paths_only_for_the_files_it_holds() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("r"));
    let old = secrets::github_pat();
    commit_file(&repo, "app/deploy.env", &format!("TOKEN={old}\n"), "add app");
    commit_file(&repo, "app/README", "app\n", "readme");
    std::fs::create_dir_all(repo.join("vendor")).unwrap();
    git(&repo, &["read-tree", "--prefix=vendor/app/", "HEAD:app"]);
    git(&repo, &["checkout", "--", "vendor"]);
    git(&repo, &["commit", "-q", "-m", "vendor a copy of app"]);
    let new = secrets::github_pat();
    commit_file(&repo, "app/deploy.env", &format!("TOKEN={new}\n"), "rotate");

    let fs = findings(&scan(&repo, &["--git", "--show-secrets"]));
    assert_eq!(fs.len(), 2, "{fs:?}");
    let by_secret = |s: &str| {
        fs.iter()
            .find(|f| f["secret"] == s)
            .unwrap_or_else(|| panic!("no finding: {fs:?}"))
    };
    let others = |f: &Value| -> Vec<String> {
        f["other_paths"]
            .as_array()
            .map(|a| a.iter().map(|p| p.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    assert_eq!(others(by_secret(&old)), ["vendor/app/deploy.env"]);
    assert!(
        others(by_secret(&new)).is_empty(),
        "the copy holds the old version, not the new one: {:?}",
        by_secret(&new)
    );
}

#[test]
fn merges_branches_and_bare_clones_are_scanned() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("r"));
    commit_file(&repo, "a.txt", "a\n", "base");
    git(&repo, &["checkout", "-q", "-b", "feature"]);
    let token = secrets::github_pat();
    let on_branch = commit_file(
        &repo,
        "src/deploy.sh",
        &format!("#!/bin/sh\ncurl -H 'Authorization: token {token}'\n"),
        "deploy script",
    );
    git(&repo, &["checkout", "-q", "main"]);
    commit_file(&repo, "b.txt", "b\n", "main work");
    git(&repo, &["merge", "-q", "--no-ff", "-m", "merge feature", "feature"]);

    let fs = findings(&scan(&repo, &["--git"]));
    assert_eq!(fs.len(), 1, "{fs:?}");
    assert_eq!(commit_of(&fs[0]), on_branch);
    assert_eq!(fs[0]["line"], 2);

    let bare = tmp.path().join("bare.git");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &repo.to_string_lossy(),
            &bare.to_string_lossy(),
        ],
    );
    let fs = findings(&scan(tmp.path(), &["--git", &bare.to_string_lossy()]));
    assert_eq!(fs.len(), 1, "bare clone: {fs:?}");
    assert_eq!(commit_of(&fs[0]), on_branch);

    // --branch limits the walk: main before the merge did not have it.
    let fs = findings(&scan(&repo, &["--git", ".", "--branch", "main~1"]));
    assert!(fs.is_empty(), "{fs:?}");
}

#[test]
fn range_reports_only_what_the_commits_added() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("r"));
    let old_token = secrets::github_pat();
    let base = commit_file(&repo, "legacy.env", &format!("TOKEN={old_token}\n"), "old leak");
    commit_file(&repo, "app.py", "print(1)\n", "clean");
    let new_token = secrets::github_pat();
    let adding = commit_file(
        &repo,
        "app.py",
        &format!("print(1)\nTOKEN = '{new_token}'\n"),
        "add token",
    );
    let head = commit_file(&repo, "notes.md", "done\n", "notes");

    let out = scan(&repo, &["--range", &format!("{base}..{head}")]);
    let fs = findings(&out);
    assert_eq!(fs.len(), 1, "{fs:?}");
    // What the range held: three commits, each changing one file.
    assert!(
        scan_stderr(&out).contains("3 commit(s), 3 changed file(s)"),
        "{}",
        scan_stderr(&out)
    );
    assert_eq!(fs[0]["path"], "app.py");
    assert_eq!(fs[0]["line"], 2);
    assert_eq!(commit_of(&fs[0]), adding);

    let out = scan(&repo, &["--range", "nope..HEAD"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn staged_scan_sees_only_added_lines_with_staged_line_numbers() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("r"));
    // First commit: everything staged is new (no HEAD yet).
    let token = secrets::github_pat();
    stage(&repo, "first.env", &format!("X=1\nTOKEN={token}\n"));
    let fs = findings(&scan(&repo, &["--staged"]));
    assert_eq!(fs.len(), 1, "{fs:?}");
    assert_eq!(fs[0]["line"], 2);
    assert!(fs[0]["commit"].is_null());
    git(&repo, &["commit", "-q", "--no-verify", "-m", "first"]);

    // An existing secret in a modified file is not this commit's finding; a new one is, at its staged line.
    let token2 = secrets::github_pat();
    stage(
        &repo,
        "first.env",
        &format!("X=1\nTOKEN={token}\nY=2\nTOKEN2={token2}\n"),
    );
    let fs = findings(&scan(&repo, &["--staged"]));
    assert_eq!(fs.len(), 1, "{fs:?}");
    assert_eq!(fs[0]["line"], 4);

    // A pure rename adds no lines; a binary file is skipped.
    git(&repo, &["reset", "-q", "--hard"]);
    git(&repo, &["mv", "first.env", "renamed.env"]);
    let mut bin = vec![0u8, 1, 2, 3];
    bin.extend_from_slice(format!("TOKEN={}", secrets::github_pat()).as_bytes());
    std::fs::write(repo.join("blob.bin"), &bin).unwrap();
    git(&repo, &["add", "blob.bin"]);
    let out = scan(&repo, &["--staged"]);
    assert!(findings(&out).is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn shallow_clone_range_past_the_boundary_is_a_clear_error() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("r"));
    let c1 = commit_file(&repo, "a.txt", "1\n", "one");
    commit_file(&repo, "a.txt", "2\n", "two");
    commit_file(&repo, "a.txt", "3\n", "three");
    let shallow = tmp.path().join("shallow");
    let url = format!("file://{}", repo.display());
    git(
        tmp.path(),
        &["clone", "-q", "--depth", "1", &url, &shallow.to_string_lossy()],
    );

    // Past the boundary by id, or as an ancestor of HEAD, for a range or an incremental history scan.
    for args in [
        vec!["--range".to_string(), format!("{c1}..HEAD")],
        vec!["--range".to_string(), "HEAD~2..HEAD".to_string()],
        vec![
            "--git".to_string(),
            ".".to_string(),
            "--since-commit".to_string(),
            "HEAD~1".to_string(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = scan(&shallow, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("shallow"), "{args:?}: {err}");
        assert!(err.contains("fetch"), "{args:?}: the message says how to fix it: {err}");
    }
    // A name that is simply wrong is not blamed on the shallow clone.
    let out = scan(&shallow, &["--range", "nope~1..HEAD"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nope") && !err.contains("fetch"), "{err}");

    // A whole-history scan of a shallow clone works and says what it could not see.
    let out = scan(&shallow, &["--git"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shallow clone"));
    let _ = git_output(&shallow, &["status"], &[]);
}

/// Runs a history scan with the pack reader's progress logged; returns the report's findings and stderr.
fn history_scan(repo: &Path, extra: &[&str]) -> (Vec<Value>, String) {
    let out = leakstop(["scan", "--git", ".", "--format", "json", "--max-file-size", "20000"])
        .args(extra)
        .dir(repo)
        .env("LEAKSTOP_LOG", "leakstop_git=info")
        .env("NO_COLOR", "1")
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (findings(&out), stderr)
}

/// The summary line (`N commit(s), M unique blob(s), ... scanned (B binary, L over --max-file-size skipped)`).
fn summary(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("unique blob(s)"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"))
}

#[test]
fn packed_history_gives_exactly_what_reading_every_blob_gives() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("r"));
    // One file in many versions, so packing stores most of them as deltas: secrets come and go, one is built up
    // over two versions (its halves in different delta instructions), one sits right after an edited line.
    let mut lines: Vec<String> = (0..80)
        .map(|i| format!("setting_{i} = value number {i} for the service\n"))
        .collect();
    let kept = secrets::github_pat();
    let removed = secrets::github_pat();
    let split = secrets::github_pat();
    let (aws_id, aws_secret) = secrets::aws_key_pair();
    let mut introduced = std::collections::HashMap::new();
    for v in 0..40 {
        lines[(v * 7) % 80] = format!("setting_{v} = changed in version {v}\n");
        match v {
            5 => lines[10] = format!("github_token = {removed}\n"),
            9 => lines[10] = "github_token = (moved to the vault)\n".into(),
            12 => lines[40] = format!("token: {}\n", &split[..20]),
            13 => lines[40] = format!("token: {split}\n"),
            20 => lines[60] = format!("aws_access_key_id = {aws_id}\naws_secret_access_key = {aws_secret}\n"),
            25 => lines[3] = format!("deploy_token = {kept}\n"),
            _ => {}
        }
        let id = commit_file(&repo, "config/app.ini", &lines.concat(), &format!("version {v}"));
        introduced.insert(v, id);
    }
    // A binary file, a file over --max-file-size, and a copy of the config under another path.
    std::fs::write(repo.join("logo.bin"), [0u8, 159, 146, 150, 0, 1, 2, 3].repeat(64)).unwrap();
    stage(
        &repo,
        "big.txt",
        &"filler line for a file over the size limit\n".repeat(800),
    );
    git(&repo, &["add", "logo.bin"]);
    stage(&repo, "vendor/app.ini", &lines.concat());
    git(&repo, &["commit", "-q", "--no-verify", "-m", "assets"]);

    // First pack with deltas by object id (REF_DELTA), a second with offset deltas, then loose objects.
    git(
        &repo,
        &[
            "-c",
            "repack.useDeltaBaseOffset=false",
            "repack",
            "-q",
            "-a",
            "-d",
            "-f",
            "--depth=20",
        ],
    );
    for v in 40..46 {
        lines[(v * 5) % 80] = format!("setting_{v} = later change {v}\n");
        commit_file(&repo, "config/app.ini", &lines.concat(), &format!("version {v}"));
    }
    git(&repo, &["repack", "-q", "-d"]);
    let late = secrets::github_pat();
    lines[70] = format!("ci_token = {late}\n");
    let late_commit = commit_file(&repo, "config/app.ini", &lines.concat(), "late");
    let packs = std::fs::read_dir(repo.join(".git/objects/pack"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "pack"))
        .count();
    assert_eq!(packs, 2, "two packs to read");

    let (direct, log) = history_scan(&repo, &[]);
    let (legacy, legacy_log) = history_scan(&repo, &["--no-pack-reader"]);
    assert!(
        log.contains("packs scanned") && !log.contains("through_libgit2=0"),
        "the packs were read directly and the loose objects through libgit2:\n{log}"
    );
    assert!(!legacy_log.contains("packs scanned"), "{legacy_log}");
    assert_eq!(direct, legacy, "same findings, provenance and order both ways");
    assert_eq!(summary(&log), summary(&legacy_log));
    assert!(
        summary(&log).contains("(1 binary, 1 over --max-file-size skipped)"),
        "{}",
        summary(&log)
    );

    let by_line = |line: u64| -> Vec<&Value> { direct.iter().filter(|f| f["line"] == line).collect() };
    assert!(
        by_line(11).iter().any(|f| commit_of(f) == introduced[&5]),
        "the removed token, at the commit that added it: {direct:?}"
    );
    assert!(
        by_line(41).iter().any(|f| commit_of(f) == introduced[&13]),
        "the token completed in version 13: {direct:?}"
    );
    assert!(
        by_line(4)
            .iter()
            .any(|f| commit_of(f) == introduced[&25] && f["in_head"] == true),
        "the token still at HEAD: {direct:?}"
    );
    assert!(
        direct.iter().any(|f| commit_of(f) == late_commit),
        "the loose object's token: {direct:?}"
    );
    assert!(
        direct
            .iter()
            .any(|f| commit_of(f) == introduced[&20] && f["rule_id"].as_str().is_some_and(|r| r.contains("aws"))),
        "the AWS key pair: {direct:?}"
    );
}

fn scan_stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The commits `git log -S<secret> --reverse` names for `path`: the first is where it was added.
fn pickaxe(repo: &Path, secret: &str, path: &str) -> Vec<String> {
    git(
        repo,
        &[
            "log",
            "--all",
            &format!("-S{secret}"),
            "--reverse",
            "--format=%H",
            "--",
            path,
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// A secret left in a file edited many times is one finding, at the commit that added it, with the later versions
/// as other locations; `--since-commit` reports only what its boundary did not hold.
#[test]
fn history_reports_each_secret_occurrence_once_at_the_commit_that_added_it() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("r"));
    let mut lines: Vec<String> = (0..30).map(|i| format!("setting_{i} = {i}\n")).collect();
    let (kept, second, copied, late) = (
        secrets::github_pat(),
        secrets::github_pat(),
        secrets::github_pat(),
        secrets::github_pat(),
    );
    let mut path = "config/app.ini";
    // Commits whose version of the file holds `kept`, oldest first.
    let mut with_kept = Vec::new();
    for v in 0..12 {
        lines[(v * 7) % 30] = format!("setting_{v} = edited in version {v}\n");
        match v {
            // Line 2: no later version edits it (they edit line (v * 7) % 30 + 1).
            2 => lines[1] = format!("token = {kept}\n"),
            4 => lines[20] = format!("second = {second}\n"),
            // Renamed (its version unchanged), then edited under its new name.
            6 => {
                std::fs::create_dir_all(repo.join("conf")).unwrap();
                git(&repo, &["mv", path, "conf/app.ini"]);
                git(&repo, &["commit", "-q", "-m", "rename"]);
                path = "conf/app.ini";
            }
            // The same secret in another file is another occurrence.
            7 => {
                commit_file(&repo, "deploy.sh", &format!("export TOKEN={kept}\n"), "deploy");
            }
            _ => {}
        }
        let id = commit_file(&repo, path, &lines.concat(), &format!("version {v}"));
        if v >= 2 {
            with_kept.push(id);
        }
        if v == 8 {
            git(&repo, &["tag", "boundary"]);
        }
    }
    // After the boundary: a new secret, a copy of an old one into a new file, the old ones' file edited again.
    commit_file(&repo, "ci.env", &format!("CI_TOKEN={late}\n"), "ci token");
    commit_file(&repo, "copy.env", &format!("COPIED={copied}\nKEPT={kept}\n"), "copy");
    lines[0] = "setting_0 = edited after the boundary\n".into();
    with_kept.push(commit_file(&repo, path, &lines.concat(), "after"));
    git(&repo, &["gc", "-q"]);

    let out = scan(&repo, &["--git", ".", "--show-secrets"]);
    let fs = findings(&out);
    let mut got: Vec<(String, String)> = fs
        .iter()
        .map(|f| {
            (
                f["secret"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (kept.clone(), "config/app.ini".to_string()),
        (second.clone(), "config/app.ini".to_string()),
        (kept.clone(), "deploy.sh".to_string()),
        (late.clone(), "ci.env".to_string()),
        (copied.clone(), "copy.env".to_string()),
        (kept.clone(), "copy.env".to_string()),
    ];
    want.sort();
    assert_eq!(got, want, "one finding per secret occurrence: {fs:#?}");
    for f in &fs {
        let (secret, path) = (f["secret"].as_str().unwrap(), f["path"].as_str().unwrap());
        let first = pickaxe(&repo, secret, path);
        assert_eq!(
            commit_of(f),
            first[0],
            "{secret} in {path} is blamed on the commit that added it"
        );
    }
    let main = fs
        .iter()
        .find(|f| f["secret"] == kept.as_str() && f["path"] == "config/app.ini")
        .unwrap();
    assert_eq!(main["line"], 2);
    let later: Vec<&str> = main["other_locations"]
        .as_array()
        .unwrap_or_else(|| panic!("later versions listed: {main}"))
        .iter()
        .map(|l| l["commit"].as_str().unwrap())
        .collect();
    assert_eq!(later, with_kept[1..], "every later version, oldest first: {main}");
    assert!(
        main["other_locations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["path"] == "conf/app.ini" && l["line"] == 2),
        "{main}"
    );
    assert_eq!(main["in_head"], true);

    // Since the boundary: only what it did not hold, although the file holding `kept` and `second` changed.
    let out = scan(&repo, &["--git", ".", "--show-secrets", "--since-commit", "boundary"]);
    let fs = findings(&out);
    let mut got: Vec<(&str, &str)> = fs
        .iter()
        .map(|f| (f["secret"].as_str().unwrap(), f["path"].as_str().unwrap()))
        .collect();
    got.sort();
    let mut want = vec![
        (late.as_str(), "ci.env"),
        (copied.as_str(), "copy.env"),
        (kept.as_str(), "copy.env"),
    ];
    want.sort();
    assert_eq!(got, want, "{fs:#?}");
    // Only the blobs that differ from the boundary's tree were scanned: one per commit after it.
    let after = git(&repo, &["rev-list", "--count", "boundary..HEAD"]);
    assert_eq!(after, "6");
    assert!(
        scan_stderr(&out).contains("6 commit(s) since boundary, 6 unique blob(s)"),
        "{}",
        scan_stderr(&out)
    );
}

/// A repository whose packs hold delta chains, made the same way every time (fixed dates, one packing thread).
fn delta_chain_repo(dir: &Path, rng: &mut impl rand::Rng) -> std::path::PathBuf {
    let repo = init_repo(dir);
    let body: String = (0..30)
        .map(|_| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..62)]))
        .collect();
    let token = format!(
        "ghp_{body}{}",
        secrets::base62(u64::from(secrets::crc32(body.as_bytes())), 6)
    );
    let mut lines: Vec<String> = (0..60).map(|i| format!("key_{i} = value {i}\n")).collect();
    for v in 0..30 {
        lines[(v * 11) % 60] = format!("key_{v} = version {v}\n");
        if v == 4 {
            lines[30] = format!("token = {token}\n");
        }
        std::fs::write(repo.join("settings.ini"), lines.concat()).unwrap();
        if v % 7 == 0 {
            std::fs::write(
                repo.join(format!("notes-{v}.md")),
                format!("# notes {v}\n").repeat(v + 1),
            )
            .unwrap();
        }
        git(&repo, &["add", "-A"]);
        let date = format!("{} +0000", 1_700_000_000 + v * 3600);
        let out = git_output(
            &repo,
            &["commit", "-q", "--no-verify", "-m", &format!("version {v}")],
            &[("GIT_AUTHOR_DATE", &date), ("GIT_COMMITTER_DATE", &date)],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    git(&repo, &["-c", "pack.threads=1", "gc", "-q", "--aggressive"]);
    repo
}

/// The pack of `repo` (one after `gc`) and its index.
fn pack_files(repo: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = repo.join(".git/objects/pack");
    let pack = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .expect("a pack");
    let idx = pack.with_extension("idx");
    for f in [&pack, &idx] {
        // git writes packs read-only; the test rewrites them.
        let mut perm = std::fs::metadata(f).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(f, perm).unwrap();
    }
    (pack, idx)
}

/// Random byte changes in a pack and its index never crash a history or range scan, whichever way it reads them: the
/// scan ends normally (findings or none) or refuses with exit 2 and an error naming the damaged file. Runs under an
/// address-space limit, so an allocation sized from corrupt data fails the test instead of swapping.
#[test]
fn corrupted_packs_are_refused_by_name_and_never_crash_the_scan() {
    use rand::{Rng as _, SeedableRng as _};
    use sha1::Digest as _;
    const TRIALS: usize = 240;
    const WORKERS: usize = 2;
    let tmp = tempdir();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1eaf_5709);
    let first = delta_chain_repo(&tmp.path().join("r0"), &mut rng);
    let (pack, idx) = pack_files(&first);
    let deltas = git(&first, &["verify-pack", "-v", &idx.to_string_lossy()]);
    assert!(
        deltas.contains("chain length = 5"),
        "the pack holds delta chains:\n{deltas}"
    );
    let clean = findings(&scan(&first, &["--git", "."]));
    assert!(!clean.is_empty(), "the token is found in the intact repository");
    let repos: Vec<std::path::PathBuf> = (0..WORKERS)
        .map(|w| {
            let copy = tmp.path().join(format!("r{}", w + 1));
            let out = Command::new("cp").arg("-a").arg(&first).arg(&copy).output().unwrap();
            assert!(out.status.success());
            copy
        })
        .collect();
    let (pack_bytes, idx_bytes) = (std::fs::read(&pack).unwrap(), std::fs::read(&idx).unwrap());
    let pack_name = pack.file_stem().unwrap().to_string_lossy().into_owned();

    // Each trial: which file, whether a changed index gets a valid checksum again (so the checks behind the
    // checksum are reached), the changes, and how the scan reads.
    struct Trial {
        idx: bool,
        resign: bool,
        changes: Vec<(usize, u8)>,
        mode: &'static [&'static str],
    }
    const MODES: [&[&str]; 4] = [
        &["--git", "."],
        &["--git", ".", "--no-pack-reader"],
        &["--git", ".", "--since-commit", "HEAD~20"],
        &["--range", "HEAD~20..HEAD"],
    ];
    let trials: Vec<Trial> = (0..TRIALS)
        .map(|t| {
            let idx = t % 3 != 2;
            let len = if idx { idx_bytes.len() } else { pack_bytes.len() };
            let changes = (0..1 + rng.gen_range(0..3))
                .map(|_| (rng.gen_range(0..len), rng.gen_range(1..=255u8)))
                .collect();
            Trial {
                idx,
                resign: t % 3 == 1,
                changes,
                mode: MODES[(t / 3) % MODES.len()],
            }
        })
        .collect();

    let run = |repo: &Path, trial: &Trial| -> (Option<i32>, String) {
        let (target, original) = if trial.idx {
            (pack_files(repo).1, &idx_bytes)
        } else {
            (pack_files(repo).0, &pack_bytes)
        };
        let mut bytes = original.clone();
        for &(at, x) in &trial.changes {
            bytes[at] ^= x;
        }
        if trial.resign {
            let n = bytes.len() - 20;
            let sum = sha1::Sha1::digest(&bytes[..n]);
            bytes[n..].copy_from_slice(&sum);
        }
        std::fs::write(&target, &bytes).unwrap();
        let mut cmd = Command::new("prlimit");
        isolate(&mut cmd);
        let out = cmd
            .arg("--as=4294967296")
            .arg("--")
            .arg(leakstop_bin())
            .args(["scan", "-q", "--format", "json"])
            .args(trial.mode)
            .current_dir(repo)
            .output()
            .expect("prlimit (util-linux) runs leakstop");
        std::fs::write(&target, original).unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let results: Vec<(usize, Option<i32>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = repos
            .iter()
            .enumerate()
            .map(|(w, repo)| {
                let (trials, run) = (&trials, &run);
                s.spawn(move || {
                    (w..trials.len())
                        .step_by(WORKERS)
                        .map(|t| {
                            let (code, err) = run(repo, &trials[t]);
                            (t, code, err)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });

    // (refused, scanned) per kind of change: stale index checksum, re-signed index, pack.
    let mut tally = [[0usize; 2]; 3];
    let mut failed = Vec::new();
    for (t, code, err) in &results {
        let trial = &trials[*t];
        let what = format!(
            "trial {t}: {} {:?}{} with {:?}",
            if trial.idx { "idx" } else { "pack" },
            trial.changes,
            if trial.resign { " (re-signed)" } else { "" },
            trial.mode
        );
        let kind = if !trial.idx { 2 } else { usize::from(trial.resign) };
        match code {
            Some(0 | 1) => tally[kind][1] += 1,
            Some(2) => {
                tally[kind][0] += 1;
                if !err.contains(&pack_name) {
                    failed.push(format!("{what}: the error does not name the damaged file:\n{err}"));
                }
            }
            other => failed.push(format!(
                "{what}: the scan ended with {other:?} (a signal or an unexpected code):\n{err}"
            )),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {TRIALS} trials failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert_eq!(
        tally[0],
        [TRIALS / 3, 0],
        "an index changed behind its checksum is always refused"
    );
    for (kind, [refused, scanned]) in tally.iter().enumerate().skip(1) {
        assert!(
            *refused > 0 && refused + scanned == TRIALS / 3,
            "kind {kind}: {refused} refused, {scanned} scanned"
        );
    }
}

/// A partial clone lacks the blobs it did not fetch: the scan says so instead of searching its packs for damage.
#[test]
fn a_partial_clone_is_named_as_the_reason_blobs_are_missing() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("r"));
    commit_file(&repo, "a.txt", "one\n", "one");
    commit_file(&repo, "a.txt", "two\n", "two");
    git(&repo, &["config", "uploadpack.allowFilter", "true"]);
    let partial = tmp.path().join("partial");
    let url = format!("file://{}", repo.display());
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            "--filter=blob:none",
            &url,
            &partial.to_string_lossy(),
        ],
    );
    let out = scan(tmp.path(), &["--git", &partial.to_string_lossy()]);
    let err = scan_stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("partial clone"), "{err}");
}
