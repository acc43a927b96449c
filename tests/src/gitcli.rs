//! Real repositories for end-to-end tests, made with the `git` CLI exactly as a user makes them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs git in `dir` with a fixed identity and no user/system config, panicking with git's stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args, &[]);
    assert!(
        out.status.success(),
        "git {} failed in {}:\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs git with extra environment variables and returns the whole output (for commands expected to fail).
pub fn git_output(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args);
    isolate(&mut cmd);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("git is installed (Debian package `git`)")
}

/// Keeps the machine's git configuration out of a test.
pub fn isolate(cmd: &mut Command) {
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada Tester")
        .env("GIT_AUTHOR_EMAIL", "ada@example.test")
        .env("GIT_COMMITTER_NAME", "Ada Tester")
        .env("GIT_COMMITTER_EMAIL", "ada@example.test")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_WORK_TREE");
}

/// A new repository with branch `main` in a fresh directory.
pub fn init_repo(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
    dir.to_path_buf()
}

/// Writes `content` to `rel` (creating directories) and stages it.
pub fn stage(repo: &Path, rel: &str, content: &str) {
    let path = repo.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    git(repo, &["add", "--", rel]);
}

/// Stages and commits one file; returns the new commit id.
pub fn commit_file(repo: &Path, rel: &str, content: &str, message: &str) -> String {
    stage(repo, rel, content);
    git(repo, &["commit", "-q", "--no-verify", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}
