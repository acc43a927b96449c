//! Opening repositories, resolving revisions and describing commits.

use std::collections::HashSet;
use std::path::Path;

use git2::{Oid, Repository};
use leakstop_scan::CommitInfo;

use crate::error::GitError;

/// Opens the repository containing `path` (a work tree, any directory inside it, or a bare repository).
pub(crate) fn open(path: &Path) -> Result<Repository, GitError> {
    Repository::open_ext(
        path,
        git2::RepositoryOpenFlags::empty(),
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| GitError::Open {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })
}

/// The commit `rev` names, with a shallow-clone hint when it is simply not there.
pub(crate) fn resolve_commit(repo: &Repository, rev: &str) -> Result<Oid, GitError> {
    match repo.revparse_single(rev).and_then(|o| o.peel_to_commit()) {
        Ok(c) => Ok(c.id()),
        Err(e) => {
            if repo.is_shallow() && looks_like_id(rev) {
                Err(GitError::ShallowBoundary {
                    repo: workdir_or_path(repo),
                    rev: rev.to_string(),
                })
            } else {
                Err(GitError::BadRevision {
                    repo: workdir_or_path(repo),
                    rev: rev.to_string(),
                    message: e.message().to_string(),
                })
            }
        }
    }
}

fn looks_like_id(rev: &str) -> bool {
    rev.len() >= 7 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn workdir_or_path(repo: &Repository) -> std::path::PathBuf {
    repo.workdir().unwrap_or_else(|| repo.path()).to_path_buf()
}

/// Commits at the shallow boundary (their parents were not fetched), from `<gitdir>/shallow`.
pub(crate) fn shallow_commits(repo: &Repository) -> HashSet<Oid> {
    if !repo.is_shallow() {
        return HashSet::new();
    }
    std::fs::read_to_string(repo.path().join("shallow"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| Oid::from_str(l.trim()).ok())
        .collect()
}

/// Provenance of a commit: id, author, author date (RFC 3339, with the author's offset) and summary.
pub fn commit_info(commit: &git2::Commit<'_>) -> CommitInfo {
    let author = commit.author();
    let when = author.when();
    let date = time::OffsetDateTime::from_unix_timestamp(when.seconds())
        .ok()
        .and_then(|t| {
            let offset = time::UtcOffset::from_whole_seconds(when.offset_minutes() * 60).ok()?;
            t.to_offset(offset)
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    CommitInfo {
        id: commit.id().to_string(),
        author_name: String::from_utf8_lossy(author.name_bytes()).into_owned(),
        author_email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
        date,
        summary: commit
            .summary_bytes()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default(),
    }
}
