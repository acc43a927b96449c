use std::path::PathBuf;

/// Errors of the git inputs. Each names the repository or revision and what to do.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{path} is not a git repository (or cannot be opened): {message}")]
    Open { path: PathBuf, message: String },
    #[error("`{rev}` does not name a commit in {repo}: {message}")]
    BadRevision {
        repo: PathBuf,
        rev: String,
        message: String,
    },
    #[error(
        "`{rev}` is not in this shallow clone of {repo}: the range reaches past its shallow boundary. Fetch more \
         history first (`git fetch --deepen=N` or `git fetch --unshallow`; in GitHub Actions `fetch-depth: 0`)"
    )]
    ShallowBoundary { repo: PathBuf, rev: String },
    #[error("`{range}` is not a range: use BASE..HEAD (or a single revision for everything reachable from it)")]
    BadRange { range: String },
    #[error(
        "{file} is corrupt: {problem}. leakstop does not read a damaged pack: check the repository with `git fsck \
         --full`, and scan an intact copy of it (a fresh clone, a backup)"
    )]
    CorruptPack { file: PathBuf, problem: String },
    #[error("{0}")]
    Pack(String),
    #[error("{context} in {repo}: {message}")]
    Git {
        repo: PathBuf,
        context: &'static str,
        message: String,
    },
}

impl From<crate::pack::PackError> for GitError {
    fn from(e: crate::pack::PackError) -> GitError {
        match (e.kind, e.file) {
            (crate::pack::PackErrorKind::Corrupt, Some(file)) => GitError::CorruptPack {
                file,
                problem: e.problem,
            },
            (_, file) => GitError::Pack(match file {
                Some(f) => format!("{}: {}", f.display(), e.problem),
                None => e.problem,
            }),
        }
    }
}

impl GitError {
    pub(crate) fn git<'a>(
        repo: &'a std::path::Path,
        context: &'static str,
    ) -> impl FnOnce(git2::Error) -> GitError + 'a {
        move |e| GitError::Git {
            repo: repo.to_path_buf(),
            context,
            message: e.message().to_string(),
        }
    }
}
