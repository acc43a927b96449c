//! Making sure the commits an event names are in the checkout before scanning them.
//!
//! `actions/checkout` makes a depth-1 clone by default, so `before`, the PR base and everything between are
//! usually missing. This fetches exactly what the range needs with the `git` CLI (what the runner has and
//! what speaks every transport and credential helper the job configured): the tips by id, then deeper in
//! steps until the two sides meet, and the whole history only as a last resort.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("running git in {dir}: {source} (is git installed and on PATH?)")]
    Spawn { dir: PathBuf, source: std::io::Error },
    #[error(
        "commit {sha} is not in the checkout at {dir} and could not be fetched from `{remote}`: {stderr}\n\
         Check out with `fetch-depth: 0`, or make sure the remote still has that commit (a force push may have \
         removed it)."
    )]
    Unfetchable {
        sha: String,
        dir: PathBuf,
        remote: String,
        stderr: String,
    },
}

/// How a range was made available, for the job log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub notes: Vec<String>,
}

fn git(dir: &Path, args: &[&str]) -> Result<std::process::Output, FetchError> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|source| FetchError::Spawn {
            dir: dir.to_path_buf(),
            source,
        })
}

/// True when `sha` names a commit present in the repository.
pub fn has_commit(dir: &Path, sha: &str) -> Result<bool, FetchError> {
    Ok(git(dir, &["cat-file", "-e", &format!("{sha}^{{commit}}")])?
        .status
        .success())
}

pub fn is_shallow(dir: &Path) -> Result<bool, FetchError> {
    let out = git(dir, &["rev-parse", "--is-shallow-repository"])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "true")
}

fn merge_base_known(dir: &Path, base: &str, head: &str) -> Result<bool, FetchError> {
    Ok(git(dir, &["merge-base", base, head])?.status.success())
}

/// True when `base` is reachable from `head` through the commits present (so `base..head` is complete).
fn connected(dir: &Path, base: &str, head: &str) -> Result<bool, FetchError> {
    if !has_commit(dir, base)? || !has_commit(dir, head)? {
        return Ok(false);
    }
    merge_base_known(dir, base, head)
}

fn fetch(dir: &Path, remote: &str, extra: &[&str], shas: &[&str]) -> Result<Result<(), String>, FetchError> {
    let mut args = vec!["fetch", "--no-tags", "--quiet", "--no-write-fetch-head"];
    args.extend_from_slice(extra);
    args.push(remote);
    args.extend_from_slice(shas);
    let out = git(dir, &args)?;
    if out.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// Ensures `base..head` can be walked completely in the checkout at `dir`, fetching from `remote` as needed.
/// `depth_hint` is the number of commits the event says the range has.
pub fn prepare_range(
    dir: &Path,
    remote: &str,
    base: &str,
    head: &str,
    depth_hint: usize,
) -> Result<Prepared, FetchError> {
    let mut notes = Vec::new();
    if connected(dir, base, head)? {
        return Ok(Prepared { notes });
    }
    let shallow = is_shallow(dir)?;
    let mut depth = depth_hint.saturating_add(1).max(2);
    // Deepen from both tips in growing steps: a PR branched off long ago needs more than its own commits.
    for _ in 0..6 {
        let depth_arg = format!("--depth={depth}");
        let extra: Vec<&str> = if shallow { vec![&depth_arg] } else { vec![] };
        if let Err(stderr) = fetch(dir, remote, &extra, &[head, base])? {
            let missing = if has_commit(dir, head)? { base } else { head };
            if !has_commit(dir, missing)? {
                return Err(FetchError::Unfetchable {
                    sha: missing.to_string(),
                    dir: dir.to_path_buf(),
                    remote: remote.to_string(),
                    stderr,
                });
            }
        }
        if connected(dir, base, head)? {
            notes.push(format!(
                "fetched {base}..{head} (depth {depth}) into the shallow checkout"
            ));
            return Ok(Prepared { notes });
        }
        if !shallow {
            break;
        }
        depth = depth.saturating_mul(8);
    }
    if is_shallow(dir)? {
        if let Err(stderr) = fetch(dir, remote, &["--unshallow"], &[])? {
            return Err(FetchError::Unfetchable {
                sha: base.to_string(),
                dir: dir.to_path_buf(),
                remote: remote.to_string(),
                stderr,
            });
        }
        notes.push("fetched the full history: the range's two sides only meet far back".to_string());
    }
    // Unrelated histories (e.g. a force push onto an orphan branch) have no merge base; the range then is
    // everything reachable from head, which is what `base..head` means to git as well.
    Ok(Prepared { notes })
}

/// Ensures `head` and the parents of the pushed commits are present (a new branch: `commits` oldest first).
pub fn prepare_commits(dir: &Path, remote: &str, commits: &[String], head: &str) -> Result<Prepared, FetchError> {
    let mut notes = Vec::new();
    let depth = commits.len().saturating_add(1);
    if !has_commit(dir, head)? || is_shallow(dir)? {
        let depth_arg = format!("--depth={depth}");
        let extra: Vec<&str> = if is_shallow(dir)? { vec![&depth_arg] } else { vec![] };
        if let Err(stderr) = fetch(dir, remote, &extra, &[head])? {
            if !has_commit(dir, head)? {
                return Err(FetchError::Unfetchable {
                    sha: head.to_string(),
                    dir: dir.to_path_buf(),
                    remote: remote.to_string(),
                    stderr,
                });
            }
            notes.push(format!(
                "could not deepen the checkout ({stderr}); scanning the commits present"
            ));
        }
    }
    Ok(Prepared { notes })
}

/// The parent of a commit, if it has one and it is present.
pub fn parent_of(dir: &Path, sha: &str) -> Result<Option<String>, FetchError> {
    let out = git(
        dir,
        &["rev-parse", "--verify", "--quiet", &format!("{sha}^1^{{commit}}")],
    )?;
    if out.status.success() {
        Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_string()))
    } else {
        Ok(None)
    }
}
