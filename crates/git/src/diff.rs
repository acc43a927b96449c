//! Scanning what changes add: the staged index versus HEAD, and each commit of a range versus its first parent.
//!
//! The whole new version of each changed file is scanned (so a secret spanning lines, like a private key, is
//! seen whole, and line numbers are those of the file), and only findings that touch an added line are kept.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use git2::{Delta, Diff, DiffFindOptions, DiffOptions, Oid, Patch, Repository, Sort};
use leakstop_scan::{CommitInfo, Finding, Scanner, is_binary};

use crate::error::GitError;
use crate::repo::{commit_info, open, resolve_commit, shallow_commits, workdir_or_path};

fn diff_options() -> DiffOptions {
    let mut o = DiffOptions::new();
    o.context_lines(0).include_typechange(true).ignore_submodules(true);
    o
}

/// Findings in lines the index adds relative to HEAD (relative to the empty tree before the first commit).
/// Paths are relative to the repository root; lines are those of the staged file.
pub fn scan_staged(repo_path: &Path, scanner: &Scanner) -> Result<Vec<Finding>, GitError> {
    scan_staged_when(repo_path, || Some(scanner)).map(Option::unwrap_or_default)
}

/// [`scan_staged`] with the scanner asked for only once the index has been compared with HEAD, so that a caller
/// can build it meanwhile on another thread (the pre-commit hook's start-up is the rules' loading and this
/// comparison). `None` when `scanner` gives none (the caller failed to build it).
pub fn scan_staged_when<S: std::ops::Deref<Target = Scanner>>(
    repo_path: &Path,
    scanner: impl FnOnce() -> Option<S>,
) -> Result<Option<Vec<Finding>>, GitError> {
    let repo = open(repo_path)?;
    let root = workdir_or_path(&repo);
    let head_tree = match repo.head() {
        Ok(head) => Some(
            head.peel_to_tree()
                .map_err(GitError::git(&root, "reading the HEAD tree"))?,
        ),
        // Unborn branch (first commit) or no HEAD: everything staged is new.
        Err(_) => None,
    };
    let index = repo.index().map_err(GitError::git(&root, "reading the index"))?;
    let mut opts = diff_options();
    let mut diff = repo
        .diff_tree_to_index(head_tree.as_ref(), Some(&index), Some(&mut opts))
        .map_err(GitError::git(&root, "comparing the index with HEAD"))?;
    find_renames(&mut diff, &root)?;
    let Some(scanner) = scanner() else {
        return Ok(None);
    };
    scan_diff(&repo, &diff, &scanner, None, &root, &mut Stats::default()).map(Some)
}

/// What a range scan looked at, with its findings.
#[derive(Debug, Default)]
pub struct RangeReport {
    pub findings: Vec<Finding>,
    /// Commits of the range.
    pub commits: usize,
    /// Changed files scanned (each version a commit adds or modifies; binary and oversized ones excluded).
    pub files: usize,
    /// Bytes of those files.
    pub bytes_scanned: u64,
    /// Changed files skipped as binary or over the size limit.
    pub skipped: usize,
}

/// Findings in lines added by the commits of `range` (`BASE..HEAD`, `BASE...HEAD`, or one revision for all
/// of its history), each with the commit that added it; a secret added twice is reported once, at its first.
pub fn scan_range(repo_path: &Path, range: &str, scanner: &Scanner) -> Result<Vec<Finding>, GitError> {
    scan_range_report(repo_path, range, scanner).map(|r| r.findings)
}

/// [`scan_range`], with what it looked at (for a summary).
pub fn scan_range_report(repo_path: &Path, range: &str, scanner: &Scanner) -> Result<RangeReport, GitError> {
    let repo = open(repo_path)?;
    // A CI job may get its repository from anywhere: its packs are checked before libgit2 reads them.
    crate::index::check_all(repo.path())?;
    let git_dir = repo.path().to_path_buf();
    range_report(repo, range, scanner).map_err(|e| crate::history::diagnose(&git_dir, e))
}

fn range_report(repo: Repository, range: &str, scanner: &Scanner) -> Result<RangeReport, GitError> {
    let root = workdir_or_path(&repo);
    let (base, head) = parse_range(&repo, range)?;
    let mut walk = repo.revwalk().map_err(GitError::git(&root, "walking the range"))?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .map_err(GitError::git(&root, "walking the range"))?;
    walk.push(head).map_err(GitError::git(&root, "walking the range"))?;
    if let Some(base) = base {
        walk.hide(base).map_err(GitError::git(&root, "walking the range"))?;
    }
    let shallow = shallow_commits(&repo);
    let mut commits = Vec::new();
    for oid in walk {
        let oid = oid.map_err(|e| shallow_error(&repo, &root, range, e))?;
        // A boundary commit of a shallow clone looks like a root commit: diffing it against nothing would report
        // its whole tree as added. Its parents are simply missing, so say so instead of half-scanning.
        if shallow.contains(&oid) {
            return Err(GitError::ShallowBoundary {
                repo: root,
                rev: oid.to_string(),
            });
        }
        commits.push(oid);
    }
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut report = RangeReport {
        commits: commits.len(),
        ..RangeReport::default()
    };
    for oid in commits {
        let commit = repo
            .find_commit(oid)
            .map_err(GitError::git(&root, "reading a commit"))?;
        let tree = commit.tree().map_err(GitError::git(&root, "reading a commit tree"))?;
        let parent_tree = match commit.parent(0) {
            Ok(p) => Some(p.tree().map_err(GitError::git(&root, "reading a parent tree"))?),
            Err(_) if commit.parent_count() == 0 => None,
            Err(_) => {
                return Err(GitError::ShallowBoundary {
                    repo: root,
                    rev: oid.to_string(),
                });
            }
        };
        let mut opts = diff_options();
        let mut diff = repo
            .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), Some(&mut opts))
            .map_err(GitError::git(&root, "diffing a commit"))?;
        find_renames(&mut diff, &root)?;
        let info = commit_info(&commit);
        let mut stats = Stats::default();
        for f in scan_diff(&repo, &diff, scanner, Some(&info), &root, &mut stats)? {
            // Merges repeat their branches' changes; keep the commit that added the secret first.
            if seen.insert((f.fingerprint.clone(), f.path.clone())) {
                report.findings.push(f);
            }
        }
        report.files += stats.files;
        report.bytes_scanned += stats.bytes;
        report.skipped += stats.skipped;
    }
    scanner.apply_baseline(&mut report.findings);
    Ok(report)
}

/// Changed files a diff scan looked at.
#[derive(Default)]
struct Stats {
    files: usize,
    bytes: u64,
    skipped: usize,
}

fn shallow_error(repo: &Repository, root: &Path, range: &str, e: git2::Error) -> GitError {
    if repo.is_shallow() {
        GitError::ShallowBoundary {
            repo: root.to_path_buf(),
            rev: range.to_string(),
        }
    } else {
        GitError::Git {
            repo: root.to_path_buf(),
            context: "walking the range",
            message: e.message().to_string(),
        }
    }
}

fn parse_range(repo: &Repository, range: &str) -> Result<(Option<Oid>, Oid), GitError> {
    let root = workdir_or_path(repo);
    if let Some((a, b)) = range.split_once("...") {
        if a.is_empty() || b.is_empty() {
            return Err(GitError::BadRange {
                range: range.to_string(),
            });
        }
        let (a, b) = (resolve_commit(repo, a)?, resolve_commit(repo, b)?);
        let base = repo
            .merge_base(a, b)
            .map_err(GitError::git(&root, "finding the merge base"))?;
        return Ok((Some(base), b));
    }
    if let Some((a, b)) = range.split_once("..") {
        if a.is_empty() || b.is_empty() {
            return Err(GitError::BadRange {
                range: range.to_string(),
            });
        }
        return Ok((Some(resolve_commit(repo, a)?), resolve_commit(repo, b)?));
    }
    Ok((None, resolve_commit(repo, range)?))
}

fn find_renames(diff: &mut Diff<'_>, root: &Path) -> Result<(), GitError> {
    let mut find = DiffFindOptions::new();
    find.renames(true).copies(false);
    diff.find_similar(Some(&mut find))
        .map_err(GitError::git(root, "detecting renames"))
}

/// Scans the new side of every added/modified/renamed file of `diff`, keeping findings on added lines.
fn scan_diff(
    repo: &Repository,
    diff: &Diff<'_>,
    scanner: &Scanner,
    commit: Option<&CommitInfo>,
    root: &Path,
    stats: &mut Stats,
) -> Result<Vec<Finding>, GitError> {
    let opts = scanner.options();
    let mut out = Vec::new();
    for (i, delta) in diff.deltas().enumerate() {
        if !matches!(
            delta.status(),
            Delta::Added | Delta::Modified | Delta::Renamed | Delta::Copied | Delta::Typechange
        ) {
            continue;
        }
        let new = delta.new_file();
        if new.id().is_zero() || new.mode() == git2::FileMode::Commit {
            continue;
        }
        let Some(path) = new.path().map(|p| p.to_string_lossy().replace('\\', "/")) else {
            continue;
        };
        let blob = repo
            .find_blob(new.id())
            .map_err(GitError::git(root, "reading a changed file"))?;
        let data = blob.content();
        if data.len() as u64 > opts.max_file_size || (!opts.include_binary && is_binary(data)) {
            stats.skipped += 1;
            continue;
        }
        stats.files += 1;
        stats.bytes += data.len() as u64;
        // Cheap keyword check before computing any diff lines.
        if !scanner.might_match(data) {
            continue;
        }
        let findings = scanner.scan_blob(data, &path);
        if findings.is_empty() {
            continue;
        }
        let added = added_lines(diff, i, root)?;
        for mut f in findings {
            if (f.line..=f.end_line.max(f.line)).any(|l| added.contains(&l)) {
                f.commit = commit.cloned();
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// Line numbers (in the new file) that delta `i` adds.
fn added_lines(diff: &Diff<'_>, i: usize, root: &Path) -> Result<BTreeSet<u32>, GitError> {
    let mut lines = BTreeSet::new();
    let Some(patch) = Patch::from_diff(diff, i).map_err(GitError::git(root, "computing a file diff"))? else {
        return Ok(lines);
    };
    for h in 0..patch.num_hunks() {
        let n = patch
            .num_lines_in_hunk(h)
            .map_err(GitError::git(root, "computing a file diff"))?;
        for l in 0..n {
            let line = patch
                .line_in_hunk(h, l)
                .map_err(GitError::git(root, "computing a file diff"))?;
            if line.origin() == '+'
                && let Some(no) = line.new_lineno()
            {
                lines.insert(no);
            }
        }
    }
    Ok(lines)
}
