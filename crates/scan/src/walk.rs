//! Directory and file input: the `ignore` crate's parallel walker (respects .gitignore unless `no_ignore`),
//! symlinks not followed, binary and oversized files skipped with a count/note, unreadable files reported while the
//! scan goes on.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ignore::{WalkBuilder, WalkState};

use crate::error::ScanError;
use crate::finding::Finding;
use crate::scanner::Scanner;

/// Bytes inspected by the binary heuristic.
const BINARY_SNIFF_LEN: usize = 8 * 1024;

/// A file is treated as binary when its first 8 KiB contain a NUL byte (git's and ripgrep's heuristic).
pub fn is_binary(data: &[u8]) -> bool {
    memchr::memchr(0, &data[..data.len().min(BINARY_SNIFF_LEN)]).is_some()
}

#[derive(Debug, Default)]
pub struct ScanSummary {
    pub findings: Vec<Finding>,
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    pub skipped_binary: u64,
    /// Files left out by .gitignore, .ignore or .git/info/exclude (inside a git work tree; `.ignore` anywhere),
    /// not counting those inside ignored directories.
    pub skipped_ignored: u64,
    /// Directories left out whole by those files (not looked into: `target/`, `node_modules/`).
    pub skipped_ignored_dirs: u64,
    /// Files whose path an allowlist excludes from every rule.
    pub skipped_allowlisted: u64,
    /// Files over `max_file_size`: (path, size in bytes).
    pub skipped_large: Vec<(String, u64)>,
    /// Files or directories that could not be read: (path, reason). The scan continued without them.
    pub errors: Vec<(String, String)>,
    /// Archives and notebooks: limits hit, corrupt parts (one line each, naming the file). Not errors: the scan
    /// went on.
    pub warnings: Vec<String>,
}

#[derive(Default)]
struct Shared {
    findings: Mutex<Vec<Finding>>,
    skipped_large: Mutex<Vec<(String, u64)>>,
    errors: Mutex<Vec<(String, String)>>,
    warnings: Mutex<Vec<String>>,
    files: AtomicU64,
    bytes: AtomicU64,
    binary: AtomicU64,
    allowlisted: AtomicU64,
    /// Regular files the walk yielded, scanned or not.
    seen: AtomicU64,
    /// Directories the walk went into.
    dirs: Mutex<std::collections::HashSet<PathBuf>>,
}

impl Scanner {
    /// Walks `paths` (files or directories) in parallel and scans every regular file.
    pub fn scan_paths(&self, paths: &[PathBuf]) -> Result<ScanSummary, ScanError> {
        for p in paths {
            if std::fs::symlink_metadata(p).is_err() {
                return Err(ScanError::NotFound { path: p.clone() });
            }
        }
        let Some((first, rest)) = paths.split_first() else {
            return Ok(ScanSummary::default());
        };
        let mut wb = WalkBuilder::new(first);
        for p in rest {
            wb.add(p);
        }
        let threads = if self.opts.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.opts.threads
        };
        wb.standard_filters(!self.opts.no_ignore)
            // Secrets love dotfiles (.env, .npmrc): scan hidden files; only git's own directory is skipped.
            .hidden(false)
            // .gitignore means something only to git: outside a work tree, a `.env` it lists is still there.
            .require_git(true)
            .follow_links(false)
            .threads(threads)
            .filter_entry(|e| e.file_name() != ".git");
        let shared = Shared::default();
        wb.build_parallel().run(|| {
            let shared = &shared;
            Box::new(move |entry| {
                match entry {
                    Ok(e) => {
                        if !self.opts.no_ignore && e.file_type().is_some_and(|t| t.is_dir()) {
                            shared.dirs.lock().expect("dirs lock").insert(e.path().to_path_buf());
                        }
                        if e.file_type().is_some_and(|t| t.is_file()) {
                            shared.seen.fetch_add(1, Ordering::Relaxed);
                            self.scan_file(e.path(), shared);
                        }
                    }
                    Err(err) => {
                        let path = err_path(&err);
                        shared.errors.lock().expect("errors lock").push((path, err.to_string()));
                    }
                }
                WalkState::Continue
            })
        });
        let mut findings = shared.findings.into_inner().expect("findings lock");
        // Deterministic output regardless of thread interleaving.
        findings.sort_by(|a, b| (&a.path, a.line, a.column, &a.rule_id).cmp(&(&b.path, b.line, b.column, &b.rule_id)));
        let mut errors = shared.errors.into_inner().expect("errors lock");
        errors.sort();
        let mut skipped_large = shared.skipped_large.into_inner().expect("large lock");
        skipped_large.sort();
        let mut warnings = shared.warnings.into_inner().expect("warnings lock");
        warnings.sort();
        let files_scanned = shared.files.load(Ordering::Relaxed);
        let (skipped_ignored, skipped_ignored_dirs) = if self.opts.no_ignore {
            (0, 0)
        } else {
            let dirs = std::mem::take(&mut *shared.dirs.lock().expect("dirs lock"));
            let (files, ignored_dirs) = count_unfiltered(paths, threads, dirs);
            (files.saturating_sub(shared.seen.load(Ordering::Relaxed)), ignored_dirs)
        };
        if files_scanned == 0 && !errors.is_empty() {
            return Err(ScanError::NothingScanned {
                count: errors.len(),
                first: format!("{}: {}", errors[0].0, errors[0].1),
            });
        }
        Ok(ScanSummary {
            findings,
            files_scanned,
            bytes_scanned: shared.bytes.load(Ordering::Relaxed),
            skipped_binary: shared.binary.load(Ordering::Relaxed),
            skipped_ignored,
            skipped_ignored_dirs,
            skipped_allowlisted: shared.allowlisted.load(Ordering::Relaxed),
            skipped_large,
            errors,
            warnings,
        })
    }

    fn scan_file(&self, path: &Path, shared: &Shared) {
        let display = display_path(path);
        if self.rules().global_allow().allows_path(&display) {
            let shown = display.as_str();
            tracing::debug!(path = shown, "skipped: the allowlist excludes this path");
            shared.allowlisted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let data = match read_limited(path, self.opts.max_file_size) {
            Ok(Some(d)) => d,
            Ok(None) => {
                // An archive over the limit is still opened: it is streamed, bounded by --max-archive-bytes.
                if self.opts.archives.enabled && sniff_archive(path) {
                    match self.scan_archive_file(path, &display) {
                        Ok(out) => self.record(out, shared),
                        Err(e) => shared
                            .errors
                            .lock()
                            .expect("errors lock")
                            .push((display, e.to_string())),
                    }
                    return;
                }
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                shared.skipped_large.lock().expect("large lock").push((display, size));
                return;
            }
            Err(e) => {
                shared
                    .errors
                    .lock()
                    .expect("errors lock")
                    .push((display, e.to_string()));
                return;
            }
        };
        // Only files whose first bytes say archive (or named .ipynb) take these paths: a few byte comparisons for
        // every other file.
        if self.opts.archives.enabled && crate::archive::detect(&data[..data.len().min(512)]).is_some() {
            self.record(self.scan_archive_bytes(&data, &display), shared);
            return;
        }
        if crate::archive::is_notebook(&display)
            && let Some(out) = self.scan_notebook(&data, &display)
        {
            self.record(out, shared);
            return;
        }
        if !self.opts.include_binary && is_binary(&data) {
            shared.binary.fetch_add(1, Ordering::Relaxed);
            return;
        }
        shared.files.fetch_add(1, Ordering::Relaxed);
        shared.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let found = self.scan_blob(&data, &display);
        if !found.is_empty() {
            shared.findings.lock().expect("findings lock").extend(found);
        }
    }
}

impl Scanner {
    fn record(&self, out: crate::archive::Outcome, shared: &Shared) {
        shared.files.fetch_add(out.files, Ordering::Relaxed);
        shared.bytes.fetch_add(out.bytes, Ordering::Relaxed);
        shared.binary.fetch_add(out.binary, Ordering::Relaxed);
        if !out.findings.is_empty() {
            shared.findings.lock().expect("findings lock").extend(out.findings);
        }
        if !out.warnings.is_empty() {
            shared.warnings.lock().expect("warnings lock").extend(out.warnings);
        }
    }
}

/// Whether the file at `path` starts like an archive (read only for files too large to read whole).
fn sniff_archive(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path).is_ok_and(|f| f.take(512).read_to_end(&mut head).is_ok())
        && crate::archive::detect(&head).is_some()
}

/// What the ignore files left out, from a second walk without them that goes only into the directories the
/// filtered walk went into (`visited`; an ignored `target/` is counted, never read): regular files in those
/// directories (with the number the filtered walk yielded, the ignored files) and the directories it did not go
/// into.
fn count_unfiltered(paths: &[PathBuf], threads: usize, visited: std::collections::HashSet<PathBuf>) -> (u64, u64) {
    let Some((first, rest)) = paths.split_first() else {
        return (0, 0);
    };
    let mut wb = WalkBuilder::new(first);
    for p in rest {
        wb.add(p);
    }
    let visited = std::sync::Arc::new(visited);
    let ignored_dirs = std::sync::Arc::new(AtomicU64::new(0));
    let (v, d) = (visited.clone(), ignored_dirs.clone());
    wb.standard_filters(false)
        .follow_links(false)
        .threads(threads)
        .filter_entry(move |e| {
            if e.file_name() == ".git" {
                return false;
            }
            if e.file_type().is_some_and(|t| t.is_dir()) && e.depth() > 0 && !v.contains(e.path()) {
                d.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            true
        });
    let n = AtomicU64::new(0);
    wb.build_parallel().run(|| {
        let n = &n;
        Box::new(move |entry| {
            if entry.is_ok_and(|e| e.file_type().is_some_and(|t| t.is_file())) {
                n.fetch_add(1, Ordering::Relaxed);
            }
            WalkState::Continue
        })
    });
    (n.into_inner(), ignored_dirs.load(Ordering::Relaxed))
}

/// Reads a file unless it is larger than `max` (then `Ok(None)`).
fn read_limited(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > max {
        return Ok(None);
    }
    let mut data = Vec::with_capacity(len as usize + 1);
    // Take one byte more than allowed so a file that grew meanwhile is still caught.
    f.take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Ok(None);
    }
    Ok(Some(data))
}

/// Paths as users typed them, without a leading `./`, with forward slashes.
pub fn display_path(path: &Path) -> String {
    let s = path.to_string_lossy();
    let s = s.strip_prefix("./").unwrap_or(&s);
    if std::path::MAIN_SEPARATOR == '\\' {
        s.replace('\\', "/")
    } else {
        s.to_string()
    }
}

fn err_path(err: &ignore::Error) -> String {
    match err {
        ignore::Error::WithPath { path, .. } => display_path(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => err_path(err),
        _ => String::from("(walk)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_heuristic_looks_at_the_first_8k_only() {
        assert!(is_binary(b"abc\0def"));
        assert!(!is_binary(b"plain text\n"));
        let mut late = vec![b'a'; 9000];
        late.push(0);
        assert!(!is_binary(&late));
    }
}
