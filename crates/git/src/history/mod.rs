//! Whole-history scans: every blob reachable from the selected refs, each scanned exactly once.
//!
//! Two tasks run side by side and keep memory bounded:
//! 1. one thread walks commits oldest first, in libgit2's topological order (`topo.rs` computes it from the packs,
//!    each commit read once), and their trees: each tree id is read once, and of each tree only the entries that
//!    differ from its version in the commit's first parent (or the last one walked at its path) are looked at. It
//!    records, per new blob id, the first commit and path it appeared under (ids and small integers only, never
//!    contents);
//! 2. the blobs are scanned. A scan of all refs reads the packs directly (`pack.rs`): each pack's delta forests are
//!    walked in pack order, every object inflated once, and a delta's keyword occurrences derived from its base's,
//!    so only what a delta inserts is searched; findings wait for the walk to name their path. One reader thread
//!    runs beside the walk and the others join when it ends. What no pack holds (loose objects), and every blob
//!    of a scan that skips what `since_commit` reaches, is read through libgit2 by worker threads (one handle
//!    each: git2 objects are not `Sync`).
//!
//! Provenance (commit details, other paths, presence at HEAD) is computed afterwards, only for blobs that
//! produced findings, and their findings are merged into one per secret occurrence (`occurrences.rs`). Every pack
//! is checked before anything reads it (`index.rs`).

mod blobs;
mod provenance;
mod trees;
mod walk;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Sort};
use leakstop_scan::{Finding, Scanner};

use crate::error::GitError;
use crate::index::{self, PackIndex};
use crate::oid::ObjectId;
use crate::pack::{Gate, ObjectReader, OpenOnDrop, Outcomes, Pack, PackError, PackErrorKind, packs as packs_of};
use crate::repo::{open, resolve_commit, shallow_commits, workdir_or_path};
use crate::topo;
use blobs::Tally;
use provenance::provenance;
use walk::{BOUNDARY, Enumeration, TREE_CACHE_BUDGET, Trees};

/// Which history to scan.
#[derive(Debug, Clone, Default)]
pub struct HistorySelection {
    /// Only what this branch (or any revision) reaches; default: all refs (branches, tags, remotes) and HEAD.
    pub branch: Option<String>,
    /// Skip what this commit reaches (it and its ancestors were scanned before): only blobs that differ from its
    /// tree are scanned, and only secrets its tree did not hold at the same path are reported.
    pub since_commit: Option<String>,
    /// Read every blob through libgit2 instead of walking the packs' delta forests (`pack.rs`). Slower; the
    /// results are the same (kept to check that, and as a way around a pack the direct reader cannot read).
    pub legacy_reads: bool,
}

/// The result of a history scan.
#[derive(Debug, Default)]
pub struct HistoryReport {
    pub findings: Vec<Finding>,
    pub commits: usize,
    /// Unique blobs reachable from the selected commits (with `since_commit`: those not in its tree).
    pub blobs: usize,
    /// Blob bytes read and scanned (binary and oversized blobs excluded).
    pub bytes_scanned: u64,
    pub skipped_binary: usize,
    pub skipped_large: usize,
    /// Things the user should know (submodules skipped, shallow history).
    pub notes: Vec<String>,
}

/// Paths a blob is recorded under, beyond its first (bounded: enough to show where a secret lives).
const MAX_OTHER_PATHS: usize = 16;
/// Blobs per hand-over from the tree walk to the scan workers.
const BATCH: usize = 256;

/// A blob to scan: its id and the first path it was seen under.
type Job = (ObjectId, String);

/// A commit to walk, with its root tree and its first parent's when already known.
type CommitToWalk = (ObjectId, Option<ObjectId>, Option<ObjectId>);

/// Scans every unique blob reachable from the selection, attributing findings to the commit that introduced
/// the blob.
///
/// Every pack is checked first (`index.rs`), before libgit2 reads anything: a corrupt one stops the scan with an
/// error naming it. When libgit2 fails to read something later, the packs are searched for a damaged entry that
/// explains it, and that is the error reported.
pub fn scan_history(repo_path: &Path, scanner: &Scanner, sel: &HistorySelection) -> Result<HistoryReport, GitError> {
    let repo = open(repo_path)?;
    let git_dir: PathBuf = repo.path().to_path_buf();
    scan_repo(repo, scanner, sel).map_err(|e| diagnose(&git_dir, e))
}

/// After libgit2 failed to read something: the damaged pack entry that explains it, if a pack holds one, else
/// `e` itself.
pub(crate) fn diagnose(git_dir: &Path, e: GitError) -> GitError {
    let GitError::Git { repo, context, message } = e else {
        return e;
    };
    // A partial clone lacks objects by design: no damage to look for.
    let partial = std::fs::read_dir(git_dir.join("objects").join("pack"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|f| f.path().extension().is_some_and(|x| x == "promisor"));
    if partial && message.contains("not found") {
        return GitError::Git {
            repo,
            context,
            message: format!(
                "{message} (this is a partial clone: objects it did not fetch cannot be scanned; scan a full clone)"
            ),
        };
    }
    let e = GitError::Git { repo, context, message };
    tracing::info!(error = %e, "reading the repository failed; checking its packs for damage");
    packs_of(git_dir)
        .iter()
        .find_map(|p| match Pack::open(p).and_then(|pack| pack.verify()) {
            Err(damage) if damage.kind == PackErrorKind::Corrupt => Some(damage.into()),
            _ => None,
        })
        .unwrap_or(e)
}

fn scan_repo(repo: Repository, scanner: &Scanner, sel: &HistorySelection) -> Result<HistoryReport, GitError> {
    let t0 = std::time::Instant::now();
    let (plan, indexes) = Plan::new(&repo, sel)?;
    let (en, tally) = walk_and_scan(&repo, scanner, &plan, indexes, t0)?;
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        bytes = tally.bytes,
        "blobs scanned"
    );
    if let Some(first) = tally.errors.first() {
        return Err(GitError::Git {
            repo: plan.root,
            context: "reading blobs",
            message: first.clone(),
        });
    }
    let mut report = summarize(&plan, &en, &tally);
    report.findings = provenance(&repo, &plan.root, &en, tally.found, plan.hidden)?;
    scanner.apply_baseline(&mut report.findings);
    Ok(report)
}

/// Stage 1: what to scan, settled before any object is read (every pack's index checked against itself and its
/// pack first).
struct Plan {
    root: PathBuf,
    git_dir: PathBuf,
    tips: Vec<ObjectId>,
    /// `since_commit`: what it reaches is not scanned.
    hidden: Option<ObjectId>,
    shallow: HashSet<ObjectId>,
    /// A grafts file rewrites parents in ways `topo` does not model; libgit2's own walk honours it.
    grafted: bool,
    /// Read the packs directly (a scan of everything, every pack readable); otherwise libgit2 reads every blob.
    direct: bool,
}

impl Plan {
    /// The plan, and the checked indexes of the packs to open.
    fn new(repo: &Repository, sel: &HistorySelection) -> Result<(Plan, Vec<PackIndex>), GitError> {
        let root = workdir_or_path(repo);
        let git_dir: PathBuf = repo.path().to_path_buf();
        let checking = std::time::Instant::now();
        let (mut indexes, all_readable) = index::check_all(&git_dir)?;
        tracing::debug!(
            elapsed_ms = checking.elapsed().as_millis() as u64,
            "pack indexes checked"
        );
        let tips = match &sel.branch {
            Some(b) => vec![resolve_commit(repo, b)?],
            None => ref_tips(repo, &root)?,
        };
        let hidden = sel
            .since_commit
            .as_ref()
            .map(|since| resolve_commit(repo, since))
            .transpose()?;
        if sel.legacy_reads {
            // libgit2 reads every object: the direct reader's check of every entry header comes first.
            for index in std::mem::take(&mut indexes) {
                Pack::open_checked(index)?;
            }
            tracing::debug!(elapsed_ms = checking.elapsed().as_millis() as u64, "packs checked");
        }
        let plan = Plan {
            tips: tips.into_iter().map(ObjectId::from).collect(),
            hidden: hidden.map(ObjectId::from),
            shallow: shallow_commits(repo).into_iter().map(ObjectId::from).collect(),
            grafted: repo.commondir().join("info").join("grafts").exists(),
            // A scan that skips what `since_commit` reaches needs few blobs, so it reads just those.
            direct: !sel.legacy_reads && sel.since_commit.is_none() && all_readable,
            root,
            git_dir,
        };
        Ok((plan, indexes))
    }
}

/// Stages 2 and 3, side by side: this thread walks commits and trees (`walk.rs`) while the blobs are scanned,
/// either by the pack reader (`read_packs`, the delta forests of every pack) or, for what no pack holds and for
/// scans that read through libgit2, by worker threads the walk hands new blobs to (`blobs.rs`). Only ids and
/// paths travel between them; contents are read and dropped where they are scanned.
fn walk_and_scan(
    repo: &Repository,
    scanner: &Scanner,
    plan: &Plan,
    indexes: Vec<PackIndex>,
    t0: std::time::Instant,
) -> Result<(Enumeration, Tally), GitError> {
    let root = &plan.root;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Opened by whichever thread needs them first: the pack reader, while this one orders the commits.
    let indexes = std::sync::Mutex::new(indexes);
    let packs: std::sync::OnceLock<Result<Vec<Pack>, PackError>> = std::sync::OnceLock::new();
    let open_packs = || {
        packs
            .get_or_init(|| {
                let indexes = std::mem::take(&mut *indexes.lock().unwrap_or_else(|e| e.into_inner()));
                let packs = indexes.into_iter().map(Pack::open_checked).collect();
                tracing::debug!(elapsed_ms = t0.elapsed().as_millis() as u64, "packs opened");
                packs
            })
            .as_ref()
    };
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Job>>(workers * 4);
    let gate = Gate::default();
    // `tx` moves into the scope (`drop(tx)` below): however it ends, the workers see the channel close.
    std::thread::scope(|scope| -> Result<(Enumeration, Tally), GitError> {
        let handles = blobs::spawn_workers(scope, &plan.git_dir, scanner, workers, rx);
        let packed = plan.direct.then(|| {
            scope.spawn(|| match open_packs() {
                Ok(packs) => read_packs(packs, scanner, workers, &gate),
                Err(e) => Err(e.clone()),
            })
        });
        // However this closure ends, the pack reader's waiting threads must start, or joining them would hang.
        let walk_done = OpenOnDrop(&gate);
        let odb = repo.odb().map_err(GitError::git(root, "opening the object database"))?;
        let packs: &[Pack] = if plan.direct {
            open_packs().map_err(|e| GitError::from(e.clone()))?
        } else {
            &[]
        };
        let direct = !packs.is_empty();
        let reader = direct
            .then(|| ObjectReader::new(packs, TREE_CACHE_BUDGET))
            .transpose()?;
        let mut trees = Trees::new(reader, odb);
        let commits = commit_order(repo, plan, &mut trees, direct, t0)?;
        let mut en = Enumeration::default();
        let walked = walk_commits(repo, plan, &mut en, &mut trees, commits, direct, &tx);
        // The walk's caches (rebuilt trees, previous tree versions: up to `TREE_CACHE_BUDGET` and
        // `LAST_TREE_BUDGET`) are of no use to the rest of the scan: freed, and handed back to the system, before
        // the other pack readers start, so their peak does not add to the walk's.
        let corrupt = trees.corrupt.take();
        drop(trees);
        en.forget_walk_caches();
        release_freed_memory();
        if walked.is_ok() && corrupt.is_none() {
            gate.set_reachable(en.blobs.keys().map(|&id| (id, ())).collect());
        }
        drop(walk_done);
        if let Some(e) = corrupt {
            return Err(e.into());
        }
        tracing::debug!(elapsed_ms = t0.elapsed().as_millis() as u64, "walk done");
        let mut tally = Tally::default();
        // Without packs to read, the walk sent every blob to the workers itself.
        if let Some(packed) = packed.filter(|_| direct) {
            // A pack the direct reader found corrupt is not handed to libgit2 instead.
            let outcomes = match packed.join() {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(GitError::Pack("the pack reader panicked".into())),
            };
            let mut rest = tally.add_outcomes(packs, outcomes, &en, scanner);
            tracing::info!(
                elapsed_ms = t0.elapsed().as_millis() as u64,
                through_libgit2 = rest.len(),
                "packs scanned"
            );
            while !rest.is_empty() {
                let batch = rest.split_off(rest.len().saturating_sub(BATCH));
                if tx.send(batch).is_err() {
                    break;
                }
            }
        }
        drop(tx);
        tracing::info!(
            elapsed_ms = t0.elapsed().as_millis() as u64,
            commits = en.commits.len(),
            blobs = en.blobs.len(),
            "history enumerated"
        );
        tally.join(handles);
        walked?;
        Ok((en, tally))
    })
}

/// The commits to walk, oldest first, with their root trees and their first parents' when the order came from
/// `topo` (which read them anyway); libgit2's walk when `topo` cannot give it.
fn commit_order(
    repo: &Repository,
    plan: &Plan,
    trees: &mut Trees<'_>,
    direct: bool,
    t0: std::time::Instant,
) -> Result<Vec<CommitToWalk>, GitError> {
    let own_order = (direct && !plan.grafted)
        .then(|| topo::order(&plan.tips, &plan.shallow, |id, buf| trees.read_raw(id, buf)))
        .flatten();
    if let Some(e) = trees.corrupt.take() {
        return Err(e.into());
    }
    match own_order {
        Some(order) => {
            tracing::debug!(
                elapsed_ms = t0.elapsed().as_millis() as u64,
                commits = order.commits.len(),
                "commits ordered"
            );
            Ok(order.commits.into_iter().map(|(c, t, p)| (c, Some(t), p)).collect())
        }
        None => {
            if direct {
                tracing::debug!("commit order from libgit2's walk (a commit or graft topo does not model)");
            }
            let tips: Vec<Oid> = plan.tips.iter().map(|t| t.to_git2()).collect();
            libgit2_walk(repo, &tips, plan.hidden.map(ObjectId::to_git2), &plan.root)?
                .map(|c| c.map(|c| (ObjectId::from(c), None, None)))
                .collect::<Result<_, _>>()
                .map_err(GitError::git(&plan.root, "walking history"))
        }
    }
}

/// Stage 2: the walk proper. Each commit's tree is walked for what it changed; new blobs go to the workers in
/// batches when no pack reader scans them. An incremental scan first walks its boundary's tree as already seen, so
/// only blobs that differ from it are scanned and each directory is compared with its version there.
fn walk_commits(
    repo: &Repository,
    plan: &Plan,
    en: &mut Enumeration,
    trees: &mut Trees<'_>,
    commits: Vec<CommitToWalk>,
    direct: bool,
    tx: &crossbeam_channel::Sender<Vec<Job>>,
) -> Result<(), GitError> {
    let root = &plan.root;
    if let Some(b) = plan.hidden {
        let tree = trees
            .commit_tree(repo, b)
            .map_err(GitError::git(root, "reading the --since-commit commit"))?;
        let mut known = Vec::new();
        en.walk_tree(trees, tree, None, BOUNDARY, root, &mut known)?;
        en.boundary_blobs = known.len();
    }
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
    let walked = (|| -> Result<(), GitError> {
        for (id, tree, base_tree) in commits {
            let tree = match tree {
                Some(t) => t,
                None => trees
                    .commit_tree(repo, id)
                    .map_err(GitError::git(root, "reading a commit"))?,
            };
            let idx = en.commits.len() as u32;
            en.commits.push(id);
            en.walk_tree(trees, tree, base_tree, idx, root, &mut batch)?;
            if direct {
                batch.clear();
            } else if batch.len() >= BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if tx.send(full).is_err() {
                    break;
                }
            }
        }
        Ok(())
    })();
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    walked
}

/// Returns the heap's free pages to the system (glibc keeps freed memory in its arenas, resident, unless asked):
/// called once, when the walk's caches are freed mid-scan.
#[allow(unsafe_code)]
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap pages to the kernel; it is thread-safe and touches no live
    // allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Stage 4a: the report's counts and notes (findings come from [`provenance`]).
fn summarize(plan: &Plan, en: &Enumeration, tally: &Tally) -> HistoryReport {
    let mut report = HistoryReport {
        commits: en.commits.len(),
        blobs: en.blobs.len() - en.boundary_blobs,
        bytes_scanned: tally.bytes,
        skipped_binary: tally.binary,
        skipped_large: tally.large,
        ..Default::default()
    };
    if !en.submodules.is_empty() {
        let n = en.submodules.len();
        report.notes.push(format!(
            "{n} submodule path{} skipped: scan each submodule's repository on its own",
            if n == 1 { "" } else { "s" }
        ));
    }
    if !plan.shallow.is_empty() {
        report.notes.push(format!(
            "this is a shallow clone: history before its {} boundary commit(s) is not available, and secrets first \
             seen at the boundary are attributed to the boundary commit (fetch with --unshallow for exact provenance)",
            plan.shallow.len()
        ));
    }
    report
}

/// Every blob of every pack, scanned with its path unknown (`Scanner::findings` decides once it is): one
/// [`Outcomes`] per pack, in the order of `packs` (a blob in several packs keeps its first outcome).
fn read_packs(packs: &[Pack], scanner: &Scanner, threads: usize, gate: &Gate) -> Result<Vec<Outcomes>, PackError> {
    let t0 = std::time::Instant::now();
    let all = packs
        .iter()
        .map(|pack| pack.scan_blobs(scanner, threads, gate))
        .collect::<Result<Vec<_>, _>>()?;
    tracing::debug!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        blobs = all.iter().map(Outcomes::scanned).sum::<usize>(),
        "packs read"
    );
    Ok(all)
}

/// What a scan of all refs starts from, in the order libgit2's walk would be given them: the commit of every ref
/// that leads to one (branches, tags, remotes), then HEAD's.
pub(crate) fn ref_tips(repo: &Repository, root: &Path) -> Result<Vec<Oid>, GitError> {
    let refs = repo.references().map_err(GitError::git(root, "listing refs"))?;
    let mut tips = Vec::new();
    for r in refs.flatten() {
        // Tags may point at blobs or trees; only commits have history.
        if let Ok(c) = r.peel_to_commit() {
            tips.push(c.id());
        }
    }
    if let Ok(head) = repo.head()
        && let Ok(c) = head.peel_to_commit()
    {
        tips.push(c.id());
    }
    Ok(tips)
}

/// libgit2's walk from `tips`, minus what `hidden` reaches, oldest first (`topo` computes the same order faster
/// when nothing is hidden).
pub(crate) fn libgit2_walk<'r>(
    repo: &'r Repository,
    tips: &[Oid],
    hidden: Option<Oid>,
    root: &Path,
) -> Result<git2::Revwalk<'r>, GitError> {
    let err = || GitError::git(root, "walking history");
    let mut walk = repo.revwalk().map_err(err())?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE).map_err(err())?;
    for &tip in tips {
        walk.push(tip).map_err(err())?;
    }
    if let Some(h) = hidden {
        walk.hide(h).map_err(err())?;
    }
    Ok(walk)
}
