use std::path::PathBuf;

/// Errors of the scanning library. Each names what went wrong and, where it helps, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{}: no such file or directory (check the path you passed to `leakstop scan`)", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("reading {name}: {source}")]
    Input { name: String, source: std::io::Error },
    #[error("nothing could be scanned: all {count} input file(s) were unreadable (first: {first})")]
    NothingScanned { count: usize, first: String },
    #[error("{}: invalid baseline/ignore file at line {line}: {reason}", path.display())]
    Baseline { path: PathBuf, line: usize, reason: String },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{what} {} does not exist ({hint})", path.display())]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error(transparent)]
    Rules(#[from] leakstop_rules::RuleError),
    #[error("starting the scan thread pool: {0}")]
    ThreadPool(String),
}
