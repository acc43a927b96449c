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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use git2::{ObjectType, Oid, Repository, Sort};
use leakstop_scan::{Finding, Scanner, is_binary};

use crate::error::GitError;
use crate::index;
use crate::occurrences::Occurrences;
use crate::pack::{Gate, IdHash, ObjectReader, OpenOnDrop, Outcome, Pack, PackError, PackErrorKind, packs as packs_of};
use crate::repo::{commit_info, open, resolve_commit, shallow_commits, workdir_or_path};
use crate::topo;

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

struct BlobSeen {
    commit: u32,
    path: u32,
    /// [`place`] of `path`, to tell cheaply whether a later sighting is under the same path.
    place: u64,
    others: Vec<u32>,
}

/// An object id as a map key. `git2::Oid` compares through a call into libgit2 (`git_oid_equal`, an eighth of
/// the tree walk); plain bytes compare inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key([u8; 20]);

impl Key {
    fn oid(self) -> Oid {
        Oid::from_bytes(&self.0).expect("20 bytes")
    }
}

impl From<Oid> for Key {
    fn from(id: Oid) -> Key {
        Key(id.as_bytes().try_into().unwrap_or([0; 20]))
    }
}

type OidMap<V> = HashMap<Key, V, std::hash::BuildHasherDefault<IdHash>>;

/// A blob to scan: its id and the first path it was seen under.
type Job = (Oid, String);

#[derive(Default)]
struct Enumeration {
    commits: Vec<Oid>,
    paths: Vec<String>,
    path_ids: HashMap<String, u32>,
    blobs: OidMap<BlobSeen>,
    /// Tree id -> the directory path it was first walked under, and that path's [`place`]. A tree is read once; when
    /// it shows up again under another directory (a renamed or copied directory), the pair of directories is kept
    /// in `aliases` so the blob paths it holds can be derived afterwards without re-reading it.
    trees: OidMap<(u32, u64)>,
    /// (first path, other path, tree id), ordered so that reports are the same from run to run.
    aliases: std::collections::BTreeSet<(u32, u32, Key)>,
    submodules: HashSet<u32>,
    /// The last few trees walked at each directory path (most recent last), to walk only what the next version
    /// there changed.
    last_tree: HashMap<u32, Vec<(Key, TreeEntries)>>,
    last_tree_bytes: usize,
    /// Blobs of an incremental scan's boundary (recorded with commit [`BOUNDARY`], never scanned).
    boundary_blobs: usize,
}

/// The commit index of what an incremental scan's boundary holds.
const BOUNDARY: u32 = u32::MAX;

/// A 64-bit hash of the entry `name` in directory `dir`: equal for sightings under the same path, so a walk can
/// tell a blob seen again where it was first seen without reading the path string back (a cache miss per entry,
/// most of the walk's comparisons). Different paths collide with odds of 2^-64 per comparison, which would only
/// leave out one "other path".
fn place(dir: u32, name: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = (u64::from(dir) ^ (name.len() as u64) << 32).wrapping_mul(K);
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 29)
}

fn join(prefix: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if prefix.is_empty() {
        name.into_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

impl Enumeration {
    fn intern(&mut self, path: &str) -> u32 {
        if let Some(&id) = self.path_ids.get(path) {
            return id;
        }
        let id = self.paths.len() as u32;
        self.paths.push(path.to_string());
        self.path_ids.insert(path.to_string(), id);
        id
    }

    /// Walk the trees of one commit that were not walked before; new blobs go to `out`.
    fn walk_tree(
        &mut self,
        trees: &mut Trees<'_>,
        root: Oid,
        base_root: Option<Oid>,
        commit: u32,
        repo_path: &Path,
        out: &mut Vec<Job>,
    ) -> Result<(), GitError> {
        if self.trees.contains_key(&Key::from(root)) {
            return Ok(());
        }
        let root_id = self.intern("");
        self.trees.insert(root.into(), (root_id, place(u32::MAX, b"")));
        // Each tree with the id of its version in the commit's first parent, when known: the diff base of choice.
        let mut stack: Vec<(Oid, u32, Option<Key>)> = vec![(root, root_id, base_root.map(Key::from))];
        while let Some((tree_id, prefix_id, base)) = stack.pop() {
            let prefix = self.paths[prefix_id as usize].clone();
            let raw = trees
                .read(tree_id)
                .map_err(GitError::git(repo_path, "reading a tree"))?;
            // The parent's version when it is among the last few walked here (a merge after a short topic), else the
            // last one. Each changed entry comes with the base's version of it when both are directories.
            let (entries, changed) = {
                let recent = self.last_tree.get(&prefix_id).map_or(&[][..], |v| &v[..]);
                let prev = recent
                    .iter()
                    .rfind(|(k, _)| Some(*k) == base)
                    .or(recent.last())
                    .map(|(_, t)| t);
                let (entries, changed) = TreeEntries::parse(raw, prev).ok_or_else(|| GitError::Git {
                    repo: repo_path.to_path_buf(),
                    context: "reading a tree",
                    message: format!("tree {tree_id} is malformed"),
                })?;
                let changed: Vec<(u32, Option<Key>)> = changed
                    .into_iter()
                    .map(|(e, was)| {
                        let was = prev
                            .filter(|_| was != u32::MAX)
                            .map(|p| p.entry(was as usize))
                            .filter(|(mode, _, _)| entry_kind(mode) == ObjectType::Tree)
                            .map(|(_, _, id)| Key(id));
                        (e, was)
                    })
                    .collect();
                (entries, changed)
            };
            for (e, was) in changed {
                let (mode, name, id) = entries.entry(e as usize);
                let key = Key(id);
                let at = place(prefix_id, name);
                match entry_kind(mode) {
                    ObjectType::Blob => match self.blobs.get(&key) {
                        Some(seen) => {
                            if seen.others.len() < MAX_OTHER_PATHS && seen.place != at {
                                let pid = self.intern(&join(&prefix, name));
                                let seen = self.blobs.get_mut(&key).expect("present");
                                // `place` hashes raw name bytes; a name that is not UTF-8 only matches once
                                // decoded, here.
                                if pid != seen.path && !seen.others.contains(&pid) {
                                    seen.others.push(pid);
                                }
                            }
                        }
                        None => {
                            let path = join(&prefix, name);
                            let pid = self.intern(&path);
                            self.blobs.insert(
                                key,
                                BlobSeen {
                                    commit,
                                    path: pid,
                                    place: at,
                                    others: Vec::new(),
                                },
                            );
                            out.push((key.oid(), path));
                        }
                    },
                    ObjectType::Tree => match self.trees.get(&key) {
                        Some(&(first, first_place)) => {
                            if first_place != at {
                                let pid = self.intern(&join(&prefix, name));
                                if pid != first {
                                    self.aliases.insert((first, pid, key));
                                }
                            }
                        }
                        None => {
                            let pid = self.intern(&join(&prefix, name));
                            self.trees.insert(key, (pid, at));
                            // The entry it replaced names the base's version of this directory.
                            stack.push((key.oid(), pid, was));
                        }
                    },
                    // A gitlink: the submodule's history lives in another repository.
                    _ => {
                        let pid = self.intern(&join(&prefix, name));
                        self.submodules.insert(pid);
                    }
                }
            }
            self.last_tree_bytes += entries.raw.len();
            if self.last_tree_bytes > LAST_TREE_BUDGET {
                // Forgetting only costs speed: the next version of each directory is walked in full.
                self.last_tree.clear();
                self.last_tree_bytes = entries.raw.len();
            }
            let kept = self.last_tree.entry(prefix_id).or_default();
            if kept.len() == RECENT_TREES {
                self.last_tree_bytes -= kept.remove(0).1.raw.len();
            }
            kept.push((Key::from(tree_id), entries));
        }
        Ok(())
    }
}

/// Where the walk reads commits and trees: the packs directly when they could be opened (libgit2 for what they do
/// not hold), libgit2 otherwise. A pack found corrupt on the way is kept in `corrupt` and never handed to libgit2.
struct Trees<'r> {
    packs: Option<ObjectReader<'r>>,
    odb: git2::Odb<'r>,
    corrupt: Option<PackError>,
}

impl Trees<'_> {
    /// The root tree of commit `id`, from the `tree` line of the raw commit (libgit2's parse if that is malformed).
    fn commit_tree(&mut self, repo: &Repository, id: Oid) -> Result<Oid, git2::Error> {
        let mut raw = Vec::new();
        if self.read_raw(&Key::from(id).0, &mut raw)
            && let Some(hex) = raw.strip_prefix(b"tree ").and_then(|r| r.get(..40))
            && let Ok(tree) = std::str::from_utf8(hex)
                .map_err(|_| ())
                .and_then(|h| Oid::from_str(h).map_err(|_| ()))
        {
            return Ok(tree);
        }
        self.check()?;
        repo.find_commit(id).map(|c| c.tree_id())
    }

    /// The raw bytes of object `id` into `out` (not cached: for commits, each read once); false when it cannot be
    /// read.
    fn read_raw(&mut self, id: &[u8; 20], out: &mut Vec<u8>) -> bool {
        if self.corrupt.is_some() {
            return false;
        }
        if let Some(reader) = &mut self.packs {
            match reader.read_into(id, out) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    self.corrupt = Some(e);
                    return false;
                }
            }
        }
        let Ok(obj) = Oid::from_bytes(id).and_then(|id| self.odb.read(id)) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(obj.data());
        true
    }

    /// A tree's bytes, shared with the pack reader's cache (no copy) when the packs hold it.
    fn read(&mut self, id: Oid) -> Result<Rc<Vec<u8>>, git2::Error> {
        self.check()?;
        if let Some(reader) = &mut self.packs {
            match reader.read(&Key::from(id).0) {
                Ok(Some(b)) => return Ok(b),
                Ok(None) => {}
                Err(e) => {
                    self.corrupt = Some(e);
                    self.check()?;
                }
            }
        }
        self.odb.read(id).map(|o| Rc::new(o.data().to_vec()))
    }

    /// An error once a pack was found corrupt (the caller reports `corrupt` itself).
    fn check(&self) -> Result<(), git2::Error> {
        match &self.corrupt {
            Some(e) => Err(git2::Error::from_str(&e.to_string())),
            None => Ok(()),
        }
    }
}

/// Trees rebuilt from pack deltas kept for the walk (each older version of a directory is one delta away from the
/// newer one read before it).
const TREE_CACHE_BUDGET: usize = 24 << 20;

/// Versions of each directory kept as diff bases: enough that a merge after a topic of a few commits finds its
/// first parent's version (on git/git, diffing against whatever was walked last there made a sixth of all trees
/// differ in over 50 entries).
const RECENT_TREES: usize = 8;

/// Bytes of previous tree versions kept to skip unchanged entries (bounded for repositories with huge trees).
const LAST_TREE_BUDGET: usize = 32 << 20;

/// The kind of a tree entry, from its mode (`40000` tree, `160000` gitlink, regular files and symlinks blobs).
fn entry_kind(mode: &[u8]) -> ObjectType {
    match mode {
        b"40000" | b"040000" => ObjectType::Tree,
        b"160000" => ObjectType::Commit,
        _ => ObjectType::Blob,
    }
}

/// A raw tree object (`<mode> <name>\0<20-byte id>` repeated) with its entry boundaries.
///
/// Reading trees raw instead of through `git2::Tree` skips libgit2's per-entry parsing, and keeping the previous
/// version of each directory lets a walk skip the entries a commit did not change: a new tree usually differs from
/// the last one at its path in an entry or two, so only those are looked up.
struct TreeEntries {
    raw: Rc<Vec<u8>>,
    /// Start offset of each entry, then the end of the last.
    bounds: Vec<u32>,
}

impl TreeEntries {
    /// Parses `raw`, comparing it with `prev` (an earlier version of the same directory, already walked): runs of
    /// bytes equal in both hold the same entries, so only entries where the two differ are parsed, and of those
    /// only the ones not in `prev` are reported (added or changed; removed ones are just passed over). Returns the
    /// entries and the indices of those reported (all of them without a `prev`), each with the index of the entry
    /// of the same name in `prev` (`u32::MAX` for an added one); `None` if the tree is malformed. Entries out of
    /// git's order (a malformed tree) may be reported although `prev` holds them, never the other way round.
    ///
    /// A new version usually differs in an entry or two, often far apart (a commit touching `Documentation/` and
    /// `t/`): reporting only those, instead of everything between the first difference and the last, took the
    /// entries the walk looks up on git/git from 31 million to 6 million (3.6 million with the first parent's
    /// version as `prev`).
    fn parse(shared: Rc<Vec<u8>>, prev: Option<&TreeEntries>) -> Option<(TreeEntries, Vec<(u32, u32)>)> {
        let raw = &shared[..];
        let empty = TreeEntries {
            raw: Rc::default(),
            bounds: vec![0],
        };
        let prev = prev.unwrap_or(&empty);
        let (old, ob) = (&prev.raw[..], &prev.bounds[..]);
        let n_old = ob.len() - 1;
        let mut bounds: Vec<u32> = Vec::with_capacity(ob.len() + 4);
        bounds.push(0);
        let mut changed = Vec::new();
        // `at` in the new tree and old entry `i` both start an entry.
        let (mut at, mut i) = (0usize, 0usize);
        while at < raw.len() {
            if i < n_old {
                let from = ob[i] as usize;
                // Old entries that end inside a run of equal bytes are entries of the new tree as well.
                let same = common_prefix(&raw[at..], &old[from..]);
                let j = i + ob[i + 1..].partition_point(|&e| e as usize <= from + same);
                if j > i {
                    bounds.extend(ob[i + 1..=j].iter().map(|&e| (e as usize - from + at) as u32));
                    at += ob[j] as usize - from;
                    i = j;
                    continue;
                }
                let end = entry_end(raw, at)?;
                let old_end = ob[i + 1] as usize;
                let was = match tree_order(&raw[at..end], &old[from..old_end]) {
                    // Old entry `i` is gone; compare the new one with the next.
                    std::cmp::Ordering::Greater => {
                        i += 1;
                        continue;
                    }
                    // The same name, another mode or id.
                    std::cmp::Ordering::Equal => {
                        i += 1;
                        i as u32 - 1
                    }
                    // An entry added.
                    std::cmp::Ordering::Less => u32::MAX,
                };
                changed.push((bounds.len() as u32 - 1, was));
                bounds.push(end as u32);
                at = end;
            } else {
                let end = entry_end(raw, at)?;
                changed.push((bounds.len() as u32 - 1, u32::MAX));
                bounds.push(end as u32);
                at = end;
            }
        }
        Some((TreeEntries { raw: shared, bounds }, changed))
    }

    fn bytes(&self, i: usize) -> &[u8] {
        &self.raw[self.bounds[i] as usize..self.bounds[i + 1] as usize]
    }

    /// Mode, name and id of entry `i` (`parse` checked the space, the NUL and the id's length).
    fn entry(&self, i: usize) -> (&[u8], &[u8], [u8; 20]) {
        let e = self.bytes(i);
        let sp = memchr::memchr(b' ', e).unwrap_or(0);
        let nul = e.len() - 21;
        let id: [u8; 20] = e[nul + 1..].try_into().unwrap_or([0; 20]);
        (&e[..sp], &e[sp + 1..nul], id)
    }
}

/// Length of the longest common prefix of `a` and `b`, eight bytes at a time (a `memcmp` call per chunk cost a
/// sixth of the tree walk).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Where the tree entry starting at `at` ends (`<mode> <name>\0<20-byte id>`); `None` if it is malformed.
fn entry_end(raw: &[u8], at: usize) -> Option<usize> {
    let nul = at + memchr::memchr(0, &raw[at..])?;
    memchr::memchr(b' ', &raw[at..nul])?;
    let end = nul + 21;
    (end <= raw.len()).then_some(end)
}

/// Git's order of two whole tree entries: by name, a directory's name read as if it ended in `/`.
fn tree_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    fn key(e: &[u8]) -> (&[u8], bool) {
        let sp = memchr::memchr(b' ', e).unwrap_or(0);
        (&e[sp + 1..e.len() - 21], entry_kind(&e[..sp]) == ObjectType::Tree)
    }
    let ((an, at), (bn, bt)) = (key(a), key(b));
    let n = an.len().min(bn.len());
    let next = |name: &[u8], tree: bool| match name.get(n) {
        Some(&c) => c,
        None if tree => b'/',
        None => 0,
    };
    an[..n].cmp(&bn[..n]).then_with(|| next(an, at).cmp(&next(bn, bt)))
}

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
    let root = workdir_or_path(&repo);
    let git_dir: PathBuf = repo.path().to_path_buf();
    // Before libgit2 reads any object: every pack's index checked against itself and its pack.
    let checking = std::time::Instant::now();
    let (mut indexes, all_readable) = index::check_all(&git_dir)?;
    tracing::debug!(
        elapsed_ms = checking.elapsed().as_millis() as u64,
        "pack indexes checked"
    );
    let tips = match &sel.branch {
        Some(b) => vec![resolve_commit(&repo, b)?],
        None => ref_tips(&repo, &root)?,
    };
    let hidden = sel
        .since_commit
        .as_ref()
        .map(|since| resolve_commit(&repo, since))
        .transpose()?;
    let shallow = shallow_commits(&repo);
    // A grafts file rewrites parents in ways `topo` does not model; libgit2's own walk honours it.
    let grafted = repo.commondir().join("info").join("grafts").exists();

    // Phase 1 (this thread) walks commits and trees and hands new blobs, in batches, to phase 2 (one worker per
    // core, each with its own libgit2 handle: git2 objects are not `Sync`), so reading trees and scanning blobs
    // overlap. Only ids and paths travel; contents are read and dropped by the workers.
    let max = scanner.options().max_file_size;
    let include_binary = scanner.options().include_binary;
    #[derive(Default)]
    struct Acc {
        found: Vec<(Oid, Vec<Finding>)>,
        bytes: u64,
        binary: usize,
        large: usize,
        errors: Vec<String>,
    }
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // A scan of everything reads the packs directly, delta forest by delta forest, while the walk runs; blobs the
    // packs do not hold (loose objects, alternates) are read through libgit2 once the walk is done. A scan that
    // skips what `since_commit` reaches needs few blobs, so it reads just those.
    let direct = !sel.legacy_reads && sel.since_commit.is_none() && all_readable;
    let t0 = std::time::Instant::now();
    if sel.legacy_reads {
        // libgit2 reads every object: the direct reader's check of every entry header comes first.
        for index in std::mem::take(&mut indexes) {
            Pack::open_checked(index)?;
        }
        tracing::debug!(elapsed_ms = t0.elapsed().as_millis() as u64, "packs checked");
    }
    // Opened by whichever thread needs them first: the pack reader, while this one waits for libgit2 to sort the
    // commits.
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
    let (en, acc) = std::thread::scope(|scope| -> Result<(Enumeration, Acc), GitError> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                let git_dir = git_dir.clone();
                scope.spawn(move || {
                    let mut acc = Acc::default();
                    let repo = match Repository::open(&git_dir) {
                        Ok(r) => r,
                        Err(e) => {
                            acc.errors
                                .push(format!("could not open the repository in a worker: {}", e.message()));
                            // Keep draining so phase 1 never blocks on a full channel.
                            for _ in rx.iter() {}
                            return acc;
                        }
                    };
                    for batch in rx.iter() {
                        for (id, path) in batch {
                            let obj = match repo.find_blob(id) {
                                Ok(o) => o,
                                Err(e) => {
                                    acc.errors.push(format!("blob {id}: {}", e.message()));
                                    continue;
                                }
                            };
                            let data = obj.content();
                            if data.len() as u64 > max {
                                acc.large += 1;
                                continue;
                            }
                            if !include_binary && is_binary(data) {
                                acc.binary += 1;
                                continue;
                            }
                            acc.bytes += data.len() as u64;
                            let findings = scanner.scan_blob(data, &path);
                            if !findings.is_empty() {
                                acc.found.push((id, findings));
                            }
                        }
                    }
                    acc
                })
            })
            .collect();
        drop(rx);
        let packed = direct.then(|| {
            scope.spawn(|| match open_packs() {
                Ok(packs) => read_packs(packs, scanner, workers, &gate),
                Err(e) => Err(e.clone()),
            })
        });
        // However this closure ends, the pack reader's waiting threads must start, or joining them would hang.
        let walk_done = OpenOnDrop(&gate);
        let mut en = Enumeration::default();
        let odb = repo
            .odb()
            .map_err(GitError::git(&root, "opening the object database"))?;
        let packs: &[Pack] = if direct {
            open_packs().map_err(|e| GitError::from(e.clone()))?
        } else {
            &[]
        };
        let direct = !packs.is_empty();
        let mut trees = Trees {
            packs: direct
                .then(|| ObjectReader::new(packs, TREE_CACHE_BUDGET))
                .transpose()?,
            odb,
            corrupt: None,
        };
        // Commits oldest first, with their root trees and their first parents' when the order came from `topo` (which
        // read them anyway).
        let own_order = (direct && !grafted)
            .then(|| {
                let tips: Vec<[u8; 20]> = tips.iter().map(|t| Key::from(*t).0).collect();
                let shallow: HashSet<[u8; 20]> = shallow.iter().map(|c| Key::from(*c).0).collect();
                topo::order(&tips, &shallow, |id, buf| trees.read_raw(id, buf))
            })
            .flatten();
        if let Some(e) = trees.corrupt.take() {
            return Err(e.into());
        }
        match &own_order {
            Some(o) => tracing::debug!(
                elapsed_ms = t0.elapsed().as_millis() as u64,
                commits = o.commits.len(),
                "commits ordered"
            ),
            None if direct => {
                tracing::debug!("commit order from libgit2's walk (a commit or graft topo does not model)")
            }
            None => {}
        }
        let oid = |id: &[u8; 20]| Oid::from_bytes(id).expect("20 bytes");
        let commits: Vec<(Oid, Option<Oid>, Option<Oid>)> = match own_order {
            Some(order) => order
                .commits
                .iter()
                .map(|(c, t, p)| (oid(c), Some(oid(t)), p.as_ref().map(oid)))
                .collect(),
            None => libgit2_walk(&repo, &tips, hidden, &root)?
                .map(|c| c.map(|c| (c, None, None)))
                .collect::<Result<_, _>>()
                .map_err(GitError::git(&root, "walking history"))?,
        };
        let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
        // An incremental scan starts from the boundary's tree as already seen: only blobs that differ from it are
        // scanned, and each directory is compared with its version there.
        if let Some(b) = hidden {
            let tree = trees
                .commit_tree(&repo, b)
                .map_err(GitError::git(&root, "reading the --since-commit commit"))?;
            let mut known = Vec::new();
            en.walk_tree(&mut trees, tree, None, BOUNDARY, &root, &mut known)?;
            en.boundary_blobs = known.len();
        }
        let walked = (|| -> Result<(), GitError> {
            for (oid, tree, base_tree) in commits {
                let tree = match tree {
                    Some(t) => t,
                    None => trees
                        .commit_tree(&repo, oid)
                        .map_err(GitError::git(&root, "reading a commit"))?,
                };
                let idx = en.commits.len() as u32;
                en.commits.push(oid);
                en.walk_tree(&mut trees, tree, base_tree, idx, &root, &mut batch)?;
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
        drop(walk_done);
        if let Some(e) = trees.corrupt.take() {
            return Err(e.into());
        }
        tracing::debug!(elapsed_ms = t0.elapsed().as_millis() as u64, "walk done");
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        let mut acc = Acc::default();
        // Without packs to read, the walk sent every blob to the workers itself.
        if let Some(packed) = packed.filter(|_| direct) {
            // A pack the direct reader found corrupt is not handed to libgit2 instead.
            let mut outcomes = match packed.join() {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(GitError::Pack("the pack reader panicked".into())),
            };
            let mut rest: Vec<Job> = Vec::new();
            for (key, seen) in en.blobs.iter().filter(|(_, s)| s.commit != BOUNDARY) {
                let path = &en.paths[seen.path as usize];
                match outcomes.remove(key) {
                    Some(Outcome::Scanned { bytes, candidates }) => {
                        acc.bytes += bytes;
                        let findings = scanner.findings(candidates, path);
                        if !findings.is_empty() {
                            acc.found.push((key.oid(), findings));
                        }
                    }
                    Some(Outcome::Binary) => acc.binary += 1,
                    Some(Outcome::Large) => acc.large += 1,
                    None => rest.push((key.oid(), path.clone())),
                }
            }
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
        for h in handles {
            let a = h.join().unwrap_or_else(|_| Acc {
                errors: vec!["a scan worker panicked".into()],
                ..Acc::default()
            });
            acc.found.extend(a.found);
            acc.bytes += a.bytes;
            acc.binary += a.binary;
            acc.large += a.large;
            acc.errors.extend(a.errors);
        }
        walked?;
        Ok((en, acc))
    })?;
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        bytes = acc.bytes,
        "blobs scanned"
    );
    if let Some(first) = acc.errors.first() {
        return Err(GitError::Git {
            repo: root,
            context: "reading blobs",
            message: first.clone(),
        });
    }
    let mut report = HistoryReport {
        commits: en.commits.len(),
        blobs: en.blobs.len() - en.boundary_blobs,
        ..Default::default()
    };
    if !en.submodules.is_empty() {
        let n = en.submodules.len();
        report.notes.push(format!(
            "{n} submodule path{} skipped: scan each submodule's repository on its own",
            if n == 1 { "" } else { "s" }
        ));
    }
    if !shallow.is_empty() {
        report.notes.push(format!(
            "this is a shallow clone: history before its {} boundary commit(s) is not available, and secrets first \
             seen at the boundary are attributed to the boundary commit (fetch with --unshallow for exact provenance)",
            shallow.len()
        ));
    }
    report.bytes_scanned = acc.bytes;
    report.skipped_binary = acc.binary;
    report.skipped_large = acc.large;

    // Phase 3: provenance, only for blobs with findings, then one finding per secret occurrence.
    report.findings = provenance(&repo, &root, &en, acc.found, hidden)?;
    scanner.apply_baseline(&mut report.findings);
    Ok(report)
}

/// The findings of each blob with the commit that introduced it and its other paths, merged into one per secret
/// occurrence (without the occurrences the `hidden` boundary already held), each marked present at HEAD or not.
fn provenance(
    repo: &Repository,
    root: &Path,
    en: &Enumeration,
    mut found: Vec<(Oid, Vec<Finding>)>,
    hidden: Option<Oid>,
) -> Result<Vec<Finding>, GitError> {
    let head_tree = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
    let boundary_tree = match hidden {
        Some(c) => Some(
            repo.find_commit(c)
                .and_then(|c| c.tree())
                .map_err(GitError::git(root, "reading the --since-commit tree"))?,
        ),
        None => None,
    };
    let mut infos = HashMap::new();
    found.sort_by_key(|(id, _)| (en.blobs[&Key::from(*id)].commit, en.blobs[&Key::from(*id)].path));
    let mut occurrences = Occurrences::default();
    for (id, findings) in found {
        let seen = &en.blobs[&Key::from(id)];
        let info = match infos.get(&seen.commit) {
            Some(i) => Clone::clone(i),
            None => {
                let c = repo
                    .find_commit(en.commits[seen.commit as usize])
                    .map_err(GitError::git(root, "reading a commit"))?;
                let i = commit_info(&c);
                infos.insert(seen.commit, i.clone());
                i
            }
        };
        let others = other_paths(repo, en, id, seen);
        for mut f in findings {
            f.commit = Some(info.clone());
            f.other_paths = others.clone();
            // An incremental scan reports only what its boundary did not hold already.
            occurrences.add(f, |f| {
                boundary_tree.as_ref().is_some_and(|t| {
                    std::iter::once(&f.path)
                        .chain(&f.other_paths)
                        .any(|p| present_at(repo, t, p, f.secret.expose()))
                })
            });
        }
    }
    let mut findings = occurrences.into_findings();
    for f in &mut findings {
        let mut paths: Vec<&String> = std::iter::once(&f.path).chain(&f.other_paths).collect();
        for l in &f.other_locations {
            if !paths.contains(&&l.path) {
                paths.push(&l.path);
            }
        }
        f.in_head = head_tree
            .as_ref()
            .map(|t| paths.iter().any(|p| present_at(repo, t, p, f.secret.expose())));
    }
    Ok(findings)
}

/// Every blob of every pack, scanned with its path unknown (`Scanner::findings` decides once it is). A blob in
/// several packs keeps its first outcome.
fn read_packs(packs: &[Pack], scanner: &Scanner, threads: usize, gate: &Gate) -> Result<OidMap<Outcome>, PackError> {
    let t0 = std::time::Instant::now();
    let mut all = OidMap::default();
    for pack in packs {
        for (id, outcome) in pack.scan_blobs(scanner, threads, gate)? {
            all.entry(Key(id)).or_insert(outcome);
        }
    }
    tracing::debug!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        blobs = all.len(),
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

/// Every other path of a blob: those seen directly, plus those inside directories that are copies or renames
/// of one it was seen in (derived from the tree aliases, since each tree is read only once). A derived path is
/// kept only when the aliased tree really holds the blob at that relative path.
fn other_paths(repo: &Repository, en: &Enumeration, blob: Oid, seen: &BlobSeen) -> Vec<String> {
    let first = &en.paths[seen.path as usize];
    let mut out: Vec<String> = seen.others.iter().map(|p| en.paths[*p as usize].clone()).collect();
    let mut frontier = vec![first.clone()];
    frontier.extend(out.iter().cloned());
    while let Some(path) = frontier.pop() {
        for (from, to, tree) in &en.aliases {
            let (from, to) = (&en.paths[*from as usize], &en.paths[*to as usize]);
            let rest = if from.is_empty() {
                Some(path.as_str())
            } else {
                path.strip_prefix(from.as_str()).and_then(|r| r.strip_prefix('/'))
            };
            let Some(rest) = rest else { continue };
            let derived = if to.is_empty() {
                rest.to_string()
            } else {
                format!("{to}/{rest}")
            };
            if derived == *first || out.contains(&derived) || out.len() >= MAX_OTHER_PATHS {
                continue;
            }
            let holds = Oid::from_bytes(&tree.0)
                .and_then(|t| repo.find_tree(t))
                .and_then(|t| t.get_path(Path::new(rest)))
                .is_ok_and(|e| e.id() == blob);
            if holds {
                out.push(derived.clone());
                frontier.push(derived);
            }
        }
    }
    out.sort();
    out
}

/// True when the file at `path` in `tree` still contains `secret`.
fn present_at(repo: &Repository, tree: &git2::Tree<'_>, path: &str, secret: &[u8]) -> bool {
    tree.get_path(Path::new(path))
        .ok()
        .and_then(|e| repo.find_blob(e.id()).ok())
        .is_some_and(|b| memchr::memmem::find(b.content(), secret).is_some())
}

#[cfg(test)]
mod tests {
    use super::TreeEntries;
    use std::rc::Rc;

    /// A raw tree from (mode, name, id byte) entries; ids made of one repeated byte, NUL and space included,
    /// so entry boundaries cannot be guessed from the bytes alone.
    fn tree(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut raw = Vec::new();
        for (mode, name, id) in entries {
            raw.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            raw.extend_from_slice(&[*id; 20]);
        }
        raw
    }

    type Entry<'a> = (&'a str, &'a str, u8);

    fn names(t: &TreeEntries, changed: &[(u32, u32)]) -> Vec<String> {
        changed
            .iter()
            .map(|&(i, _)| String::from_utf8_lossy(t.entry(i as usize).1).into_owned())
            .collect()
    }

    #[test]
    fn only_the_entries_a_tree_changed_are_reported_and_boundaries_match_a_full_parse() {
        let base = [
            ("100644", "a.txt", b' '),
            ("40000", "dir", 0),
            ("100644", "m.txt", 7),
            ("100755", "run.sh", 0),
            ("100644", "z.txt", b' '),
        ];
        let (old, all) = TreeEntries::parse(Rc::new(tree(&base)), None).unwrap();
        assert_eq!(all.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        let cases: Vec<(Vec<Entry<'_>>, Vec<&str>)> = vec![
            // One id changed in the middle.
            (
                vec![base[0], base[1], ("100644", "m.txt", 8), base[3], base[4]],
                vec!["m.txt"],
            ),
            // An entry added, one removed, first and last changed.
            (
                vec![base[0], base[1], base[2], ("100644", "n.txt", 0), base[3], base[4]],
                vec!["n.txt"],
            ),
            (vec![base[0], base[1], base[3], base[4]], vec![]),
            (
                vec![("100644", "a.txt", 1), base[1], base[2], base[3], base[4]],
                vec!["a.txt"],
            ),
            (
                vec![base[0], base[1], base[2], base[3], ("100644", "z.txt", 0)],
                vec!["z.txt"],
            ),
            // A name that shares its end with the old one (`m.txt` -> `lm.txt`): bytes equal at the end, entries not.
            (
                vec![base[0], base[1], ("100644", "lm.txt", 7), base[3], base[4]],
                vec!["lm.txt"],
            ),
            // Out of git's order (a malformed tree): more entries are reported, never fewer.
            (
                vec![base[0], base[1], ("100644", "xm.txt", 7), base[3], base[4]],
                vec!["xm.txt", "run.sh"],
            ),
            // Changes far apart: only they are reported, not what lies between them.
            (
                vec![
                    ("100644", "a.txt", 2),
                    base[1],
                    base[2],
                    base[3],
                    ("100644", "z.txt", 3),
                ],
                vec!["a.txt", "z.txt"],
            ),
            // A file where a directory of the same name was (git orders the directory as `dir/`).
            (
                vec![base[0], ("100644", "dir", 0), base[2], base[3], base[4]],
                vec!["dir"],
            ),
            (vec![base[2], base[3], base[4], ("100644", "zz", 1)], vec!["zz"]),
            (vec![], vec![]),
        ];
        for (entries, expect) in cases {
            let raw = tree(&entries);
            let (fresh, _) = TreeEntries::parse(Rc::new(raw.clone()), None).unwrap();
            let (incremental, changed) = TreeEntries::parse(Rc::new(raw), Some(&old)).unwrap();
            assert_eq!(incremental.bounds, fresh.bounds, "{entries:?}");
            assert_eq!(names(&incremental, &changed), expect, "{entries:?}");
        }
    }

    /// Random edits of random sorted trees: the entries reported are exactly those of the new tree that the old
    /// one does not hold byte for byte.
    #[test]
    fn reported_entries_are_exactly_the_new_ones_for_random_edits() {
        use crate::testing::Rng;
        type Entry = (String, bool, u8);
        fn pick(rng: &mut Rng) -> Vec<Entry> {
            let mut t = Vec::new();
            for i in 0..40 {
                if rng.below(3) > 0 {
                    t.push((format!("f{}", i * 7 % 40), rng.below(4) == 0, rng.below(3) as u8));
                }
            }
            let key = |e: &Entry| format!("{}{}", e.0, if e.1 { "/" } else { "" });
            t.sort_by_key(key);
            t
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let old = pick(&mut rng);
            // Mostly the old tree with a few entries changed or removed; sometimes another tree altogether.
            let new: Vec<Entry> = if rng.below(4) == 0 {
                pick(&mut rng)
            } else {
                let mut t = Vec::new();
                for e in &old {
                    if rng.below(10) == 0 {
                        continue;
                    }
                    t.push(if rng.below(8) == 0 {
                        (e.0.clone(), e.1, e.2 + 1)
                    } else {
                        e.clone()
                    });
                }
                t
            };
            let raw = |t: &[Entry]| {
                let mut v = Vec::new();
                for (name, dir, id) in t {
                    v.extend_from_slice(format!("{} {name}\0", if *dir { "40000" } else { "100644" }).as_bytes());
                    v.extend_from_slice(&[*id; 20]);
                }
                v
            };
            let (o, _) = TreeEntries::parse(Rc::new(raw(&old)), None).unwrap();
            let (fresh, _) = TreeEntries::parse(Rc::new(raw(&new)), None).unwrap();
            let (n, changed) = TreeEntries::parse(Rc::new(raw(&new)), Some(&o)).unwrap();
            assert_eq!(n.bounds, fresh.bounds);
            let expect: Vec<(u32, u32)> = (0..new.len() as u32)
                .filter(|&k| !old.contains(&new[k as usize]))
                .map(|k| {
                    let e = &new[k as usize];
                    let was = old.iter().position(|o| o.0 == e.0 && o.1 == e.1);
                    (k, was.map_or(u32::MAX, |w| w as u32))
                })
                .collect();
            assert_eq!(changed, expect, "old {old:?}\nnew {new:?}");
        }
    }

    #[test]
    fn common_prefix_length_matches_a_byte_by_byte_count() {
        use super::common_prefix;
        let base: Vec<u8> = (0..70u8).collect();
        for cut in 0..base.len() {
            let mut other = base.clone();
            other[cut] ^= 0x40;
            assert_eq!(common_prefix(&base, &other), cut);
            assert_eq!(common_prefix(&base[..cut], &base), cut, "one is a prefix of the other");
        }
    }

    #[test]
    fn malformed_trees_are_refused() {
        assert!(TreeEntries::parse(Rc::new(b"100644 a.txt\0short".to_vec()), None).is_none());
        assert!(TreeEntries::parse(Rc::new(b"no-space-here\0aaaaaaaaaaaaaaaaaaaa".to_vec()), None).is_none());
    }
}
