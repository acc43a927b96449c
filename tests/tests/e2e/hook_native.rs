//! The native pre-commit hook, installed with `leakstop hook install` into real repositories and exercised
//! through real `git commit`s.

use std::path::Path;
use std::process::Output;

use leakstop_tests::cmd::{self, Run};
use leakstop_tests::gitcli::{commit_file, git, git_output, init_repo, stage};
use leakstop_tests::{secrets, tempdir};

fn leakstop(dir: &Path, args: &[&str]) -> Output {
    cmd::leakstop(args).dir(dir).output()
}

/// stdout then stderr, of leakstop or of git (the hook speaks through git).
fn text(out: &Output) -> String {
    Run::from(out.clone()).text()
}

fn commit(repo: &Path, envs: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut args = vec!["commit", "-q", "-m", "change"];
    args.extend_from_slice(extra);
    git_output(repo, &args, envs)
}

fn installed_repo() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("app"));
    commit_file(&repo, "README.md", "# app\n", "first");
    let out = leakstop(&repo, &["hook", "install"]);
    assert!(out.status.success(), "install failed: {}", text(&out));
    assert!(text(&out).contains("installed the pre-commit hook"), "{}", text(&out));
    (tmp, repo)
}

#[test]
fn blocks_a_commit_that_adds_a_secret_and_lets_clean_ones_through() {
    let (_tmp, repo) = installed_repo();

    stage(&repo, "src/lib.rs", "pub fn answer() -> u32 {\n    42\n}\n");
    let out = commit(&repo, &[], &[]);
    assert!(out.status.success(), "clean commit was blocked: {}", text(&out));

    let token = secrets::github_pat();
    stage(
        &repo,
        "deploy/settings.py",
        &format!("DEBUG = False\n\nGITHUB_TOKEN = \"{token}\"\n"),
    );
    let out = commit(&repo, &[], &[]);
    let msg = text(&out);
    assert!(!out.status.success(), "commit with a secret went through: {msg}");
    assert!(msg.contains("deploy/settings.py:3"), "no file:line in {msg}");
    assert!(msg.contains("github"), "no rule named in {msg}");
    assert!(msg.contains("leakstop:allow"), "no advice in {msg}");
    assert!(!msg.contains(&token), "the secret was printed in clear: {msg}");
    // Nothing was committed.
    assert_eq!(git(&repo, &["log", "--format=%s"]).lines().count(), 2);

    // SKIP=leakstop and --no-verify let it through, as git users expect.
    let out = commit(&repo, &[("SKIP", "flake8,leakstop")], &[]);
    assert!(out.status.success(), "SKIP=leakstop did not skip: {}", text(&out));
    stage(
        &repo,
        "deploy/other.py",
        &format!("TOKEN = \"{}\"\n", secrets::github_pat()),
    );
    let out = commit(&repo, &[], &["--no-verify"]);
    assert!(out.status.success(), "--no-verify did not skip: {}", text(&out));
}

#[test]
fn an_allow_comment_lets_a_false_positive_through() {
    let (_tmp, repo) = installed_repo();
    let token = secrets::github_pat();
    stage(
        &repo,
        "tests/fixture.py",
        &format!("FAKE = \"{token}\"  # leakstop:allow test fixture\n"),
    );
    let out = commit(&repo, &[], &[]);
    assert!(out.status.success(), "allowed line was blocked: {}", text(&out));
}

#[test]
fn respects_core_hooks_path() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("app"));
    commit_file(&repo, "README.md", "# app\n", "first");
    git(&repo, &["config", "core.hooksPath", ".githooks"]);
    let out = leakstop(&repo, &["hook", "install"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(repo.join(".githooks/pre-commit").exists());
    assert!(!repo.join(".git/hooks/pre-commit").exists());

    stage(&repo, "id_rsa", &secrets::rsa_private_key_pem());
    let out = commit(&repo, &[], &[]);
    assert!(
        !out.status.success(),
        "hook in core.hooksPath did not run: {}",
        text(&out)
    );
    // The key body (the secret) starts on the line after the BEGIN marker.
    assert!(text(&out).contains("id_rsa:2"), "{}", text(&out));
}

#[test]
fn chains_an_existing_hook_and_uninstall_restores_it() {
    let tmp = tempdir();
    let repo = init_repo(&tmp.path().join("app"));
    commit_file(&repo, "README.md", "# app\n", "first");
    let hook = repo.join(".git/hooks/pre-commit");
    let original = "#!/bin/sh\necho ran >> \"$(git rev-parse --git-dir)/team-hook-ran\"\n";
    std::fs::write(&hook, original).unwrap();
    make_executable(&hook);

    let out = leakstop(&repo, &["hook", "install"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("still runs first"), "{}", text(&out));

    stage(&repo, "a.txt", "hello\n");
    let out = commit(&repo, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(repo.join(".git/team-hook-ran").exists(), "the chained hook did not run");

    stage(&repo, "b.env", &format!("GH_TOKEN={}\n", secrets::github_pat()));
    assert!(
        !commit(&repo, &[], &[]).status.success(),
        "leakstop did not run after the chained hook"
    );

    let out = leakstop(&repo, &["hook", "uninstall"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&hook).unwrap(), original);
}

#[test]
fn refuses_outside_a_repository_with_exit_2() {
    let tmp = tempdir();
    let out = leakstop(tmp.path(), &["hook", "install"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not inside a git repository"), "{}", text(&out));
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_hook_uses_the_config_and_ignore_files_scan_finds_and_commits_from_a_subdirectory_too() {
    let (_tmp, repo) = installed_repo();
    // The repository's own rule (from its root config) blocks; an ignore file at the root accepts a finding.
    commit_file(
        &repo,
        ".leakstop.toml",
        "[[rule]]\nid = \"acme-key\"\ndescription = \"ACME key\"\nseverity = \"high\"\nkeywords = [\"acme_\"]\n\
         regex = '''acme_[0-9a-f]{16}'''\nexamples = [\"acme_0123456789abcdef\"]\nnegative_examples = [\"acme_\"]\n",
        "config",
    );
    stage(&repo, "src/deep/keys.py", "A = \"acme_9f8e7d6c5b4a3f2e\"\n");
    let out = git_output(
        &repo.join("src/deep"),
        &["commit", "-q", "-m", "from a subdirectory"],
        &[],
    );
    let msg = text(&out);
    assert!(!out.status.success(), "the repository's own rule did not block: {msg}");
    assert!(msg.contains("acme-key") && msg.contains("src/deep/keys.py:1"), "{msg}");

    // What `scan` reports for the staged change is what the hook blocks on: accept it through .leakstopignore.
    let out = leakstop(&repo, &["scan", "--staged", "--format", "json", "."]);
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let fp = findings[0]["fingerprint"].as_str().expect("fingerprint").to_string();
    stage(&repo, ".leakstopignore", &format!("{fp}\n"));
    let out = commit(&repo, &[], &[]);
    assert!(out.status.success(), "the ignore file was not honoured: {}", text(&out));
}
