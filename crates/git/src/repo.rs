//! Opening repositories, resolving revisions and describing commits.

use std::collections::HashSet;
use std::path::Path;

use git2::{ErrorClass, Oid, Repository};
use leakstop_scan::CommitInfo;

use crate::error::GitError;

/// Opens the repository containing `path` (a work tree, any directory inside it, or a bare repository).
pub(crate) fn open(path: &Path) -> Result<Repository, GitError> {
    configure_libgit2();
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

/// libgit2 re-hashes every object it reads (SHA-1 with collision detection) to check it against its id: a
/// quarter of a history scan's CPU. A scanner only reads; git's own `fsck` is the tool for integrity, and a corrupt
/// object still fails to inflate. So the check is turned off, once per process.
///
/// The same once-per-process setup bounds libgit2's memory, which otherwise grows with the repository: its object
/// cache (256 MiB by default) and the pack windows it keeps mapped (up to 8 GiB, all counted in RSS once touched).
/// A scan reads each object once, so a small cache and a few mapped windows cost almost nothing.
#[allow(unsafe_code)]
pub(crate) fn configure_libgit2() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        git2::opts::strict_hash_verification(false);
        // Each object is read once: libgit2's object cache would only hold memory.
        git2::opts::enable_caching(false);
        // SAFETY: these only set libgit2's global limits, before any repository is opened by this process.
        unsafe {
            let _ = git2::opts::set_mwindow_size(64 << 20);
            let _ = git2::opts::set_mwindow_mapped_limit(256 << 20);
        }
    });
}

/// The commit `rev` names, with a shallow-clone hint when it is simply not there (an id, or an ancestor like
/// `HEAD~5` past the shallow boundary).
pub(crate) fn resolve_commit(repo: &Repository, rev: &str) -> Result<Oid, GitError> {
    match repo.revparse_single(rev).and_then(|o| o.peel_to_commit()) {
        Ok(c) => Ok(c.id()),
        Err(e) => {
            if repo.is_shallow() && (looks_like_id(rev) || ancestor_of_a_commit(repo, rev)) {
                Err(GitError::ShallowBoundary {
                    repo: workdir_or_path(repo),
                    rev: rev.to_string(),
                })
            } else if matches!(e.class(), ErrorClass::Zlib | ErrorClass::Odb) && !looks_like_id(rev) {
                // A name that resolves to objects that cannot be read: damage, not a wrong name.
                Err(GitError::Git {
                    repo: workdir_or_path(repo),
                    context: "resolving a revision",
                    message: format!("`{rev}`: {}", e.message()),
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

/// True when `rev` asks for an ancestor (`X~N`, `X^`, `X^2`) of a commit `X` that exists.
fn ancestor_of_a_commit(repo: &Repository, rev: &str) -> bool {
    let Some(cut) = rev.find(['~', '^']) else {
        return false;
    };
    let suffix = &rev[cut..];
    cut > 0
        && suffix.bytes().all(|b| matches!(b, b'~' | b'^') || b.is_ascii_digit())
        && repo
            .revparse_single(&rev[..cut])
            .and_then(|o| o.peel_to_commit())
            .is_ok()
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
