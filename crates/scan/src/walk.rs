//! Directory and file input: the `ignore` crate's parallel walker (respects .gitignore unless `no_ignore`),
//! symlinks not followed, binary and oversized files skipped with a count/note, unreadable files reported while the
//! scan goes on.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
            .threads(threads);
        let shared = Shared::default();
        // Whether the walk met an ignore file's reason to be: a `.ignore`, or a `.git` (a work tree).
        let ignore_seen = std::sync::Arc::new(AtomicBool::new(false));
        let seen = ignore_seen.clone();
        wb.filter_entry(move |e| {
            let name = e.file_name();
            if name == ".git" || name == ".ignore" {
                seen.store(true, Ordering::Relaxed);
            }
            name != ".git"
        });
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
        // Only an ignore file can have left anything out: a `.ignore` anywhere, or git's files inside a work tree
        // (`.gitignore` means nothing outside one). With none in the walk or above its roots, nothing was left
        // out, and the walk that counts what was is not needed.
        let may_ignore = ignore_seen.load(Ordering::Relaxed) || paths.iter().any(|p| ignore_files_above(p));
        let (skipped_ignored, skipped_ignored_dirs) = if self.opts.no_ignore || !may_ignore {
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
        // Taken out of the thread's slot, not borrowed in it: nothing below can find the slot borrowed.
        let mut buf = READ_BUF.take();
        let read = read_text(path, self.opts.max_file_size, &mut buf, |head| {
            // Binary bytes past the sniffed head are never read, except in files whose first bytes say archive (or
            // named .ipynb).
            self.opts.include_binary
                || !is_binary(head)
                || self.opens_as_archive(head)
                || crate::archive::is_notebook(&display)
        });
        match read {
            Ok(Read::Whole) => self.scan_data(&buf, display, shared),
            Ok(Read::Binary) => {
                shared.binary.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Read::TooLarge) => self.scan_large(path, display, shared),
            Err(e) => shared
                .errors
                .lock()
                .expect("errors lock")
                .push((display, e.to_string())),
        }
        if buf.capacity() <= KEPT_BUFFER {
            buf.clear();
            READ_BUF.set(buf);
        }
    }

    /// Whether a file starting with `head` (its first bytes, or all of it) is opened as an archive.
    fn opens_as_archive(&self, head: &[u8]) -> bool {
        self.opts.archives.enabled && crate::archive::detect(head).is_some()
    }

    /// A file over `max_file_size`: an archive is still opened (streamed, bounded by --max-archive-bytes); any
    /// other file is listed as skipped.
    fn scan_large(&self, path: &Path, display: String, shared: &Shared) {
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
    }

    fn scan_data(&self, data: &[u8], display: String, shared: &Shared) {
        // Only files whose first bytes say archive (or named .ipynb) take these paths: a few byte comparisons for
        // every other file.
        if self.opens_as_archive(data) {
            self.record(self.scan_archive_bytes(data, &display), shared);
            return;
        }
        if crate::archive::is_notebook(&display)
            && let Some(out) = self.scan_notebook(data, &display)
        {
            self.record(out, shared);
            return;
        }
        if !self.opts.include_binary && is_binary(data) {
            shared.binary.fetch_add(1, Ordering::Relaxed);
            return;
        }
        shared.files.fetch_add(1, Ordering::Relaxed);
        shared.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let found = self.scan_blob(data, &display);
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

/// Whether `path` or a directory above it holds a `.ignore` file or a `.git` (then the ignore files of a work tree
/// may apply to what is under `path`).
fn ignore_files_above(path: &Path) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    path.ancestors()
        .any(|d| d.join(".git").symlink_metadata().is_ok() || d.join(".ignore").symlink_metadata().is_ok())
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

/// What [`read_text`] left in the buffer.
enum Read {
    /// The whole file.
    Whole,
    /// Only its first [`BINARY_SNIFF_LEN`] bytes: `wanted` turned the rest down.
    Binary,
    /// Nothing: the file is larger than `max`.
    TooLarge,
}

/// A thread keeps the buffer it reads files into up to this capacity; a larger one (a big file) is freed.
const KEPT_BUFFER: usize = 8 << 20;

thread_local! {
    /// Each walker thread reads every file into the same buffer: its pages stay mapped, so reading costs the
    /// kernel's copy alone, not that plus faulting in fresh zeroed pages for every file.
    static READ_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Reads the file at `path` into `buf` (cleared first) unless it is larger than `max`. A file longer than the
/// binary sniff is read in two steps: its head, then the rest only if `wanted(head)`.
fn read_text(path: &Path, max: u64, buf: &mut Vec<u8>, wanted: impl FnOnce(&[u8]) -> bool) -> std::io::Result<Read> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > max {
        return Ok(Read::TooLarge);
    }
    buf.clear();
    buf.reserve(len as usize + 1);
    if len > BINARY_SNIFF_LEN as u64 {
        (&mut f).take(BINARY_SNIFF_LEN as u64).read_to_end(buf)?;
        if buf.len() == BINARY_SNIFF_LEN && !wanted(buf) {
            return Ok(Read::Binary);
        }
    }
    // Take one byte more than allowed so a file that grew meanwhile is still caught.
    f.take(max + 1 - buf.len() as u64).read_to_end(buf)?;
    if buf.len() as u64 > max {
        buf.clear();
        return Ok(Read::TooLarge);
    }
    Ok(Read::Whole)
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
    fn binary_files_are_read_no_further_than_the_sniffed_head() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, text) = (dir.path().join("a.bin"), dir.path().join("a.txt"));
        let mut data = vec![0u8; 4];
        data.resize(20_000, b'x');
        std::fs::write(&bin, &data).unwrap();
        std::fs::write(&text, "k = v\n".repeat(4000)).unwrap();
        let mut buf = b"left over".to_vec();
        assert!(matches!(
            read_text(&bin, 1 << 20, &mut buf, |h| !is_binary(h)),
            Ok(Read::Binary)
        ));
        assert_eq!(buf.len(), BINARY_SNIFF_LEN, "only the head was read");
        assert!(matches!(read_text(&bin, 1 << 20, &mut buf, |_| true), Ok(Read::Whole)));
        assert_eq!(buf, data, "a wanted file is read whole, after the head");
        assert!(matches!(
            read_text(&text, 1 << 20, &mut buf, |h| !is_binary(h)),
            Ok(Read::Whole)
        ));
        assert_eq!(buf.len(), 24_000, "the buffer starts empty for each file");
        assert!(matches!(
            read_text(&text, 23_999, &mut buf, |_| true),
            Ok(Read::TooLarge)
        ));
    }

    #[test]
    fn binary_heuristic_looks_at_the_first_8k_only() {
        assert!(is_binary(b"abc\0def"));
        assert!(!is_binary(b"plain text\n"));
        let mut late = vec![b'a'; 9000];
        late.push(0);
        assert!(!is_binary(&late));
    }
}
