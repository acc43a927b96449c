//! Stage 2 of a history scan: the commit and tree walk. Commits oldest first; of each tree only the entries that
//! differ from the previous version of its directory; per new blob id, the first commit and path it appeared under
//! (ids and small integers only, never contents).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use git2::{ObjectType, Repository};

use super::trees::{TreeEntries, entry_kind};
use super::{Job, MAX_OTHER_PATHS};
use crate::error::GitError;
use crate::oid::{IdMap, ObjectId};
use crate::pack::{ObjectReader, PackError};

pub(super) struct BlobSeen {
    pub(super) commit: u32,
    pub(super) path: u32,
    /// [`place`] of `path`, to tell cheaply whether a later sighting is under the same path.
    pub(super) place: u64,
    pub(super) others: Vec<u32>,
}

#[derive(Default)]
pub(super) struct Enumeration {
    pub(super) commits: Vec<ObjectId>,
    pub(super) paths: Vec<String>,
    pub(super) path_ids: HashMap<String, u32>,
    pub(super) blobs: IdMap<BlobSeen>,
    /// Tree id -> the directory path it was first walked under, and that path's [`place`]. A tree is read once; when
    /// it shows up again under another directory (a renamed or copied directory), the pair of directories is kept
    /// in `aliases` so the blob paths it holds can be derived afterwards without re-reading it.
    pub(super) trees: IdMap<(u32, u64)>,
    /// (first path, other path, tree id), ordered so that reports are the same from run to run.
    pub(super) aliases: std::collections::BTreeSet<(u32, u32, ObjectId)>,
    pub(super) submodules: HashSet<u32>,
    /// The last few trees walked at each directory path (most recent last), to walk only what the next version
    /// there changed.
    pub(super) last_tree: HashMap<u32, Vec<(ObjectId, TreeEntries)>>,
    pub(super) last_tree_bytes: usize,
    /// Blobs of an incremental scan's boundary (recorded with commit [`BOUNDARY`], never scanned).
    pub(super) boundary_blobs: usize,
}

/// The commit index of what an incremental scan's boundary holds.
pub(super) const BOUNDARY: u32 = u32::MAX;

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
    /// Drops what only the walk itself uses (previous tree versions), once it is done.
    pub(super) fn forget_walk_caches(&mut self) {
        self.last_tree = HashMap::new();
        self.last_tree_bytes = 0;
    }

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
    pub(super) fn walk_tree(
        &mut self,
        trees: &mut Trees<'_>,
        root: ObjectId,
        base_root: Option<ObjectId>,
        commit: u32,
        repo_path: &Path,
        out: &mut Vec<Job>,
    ) -> Result<(), GitError> {
        if self.trees.contains_key(&root) {
            return Ok(());
        }
        let root_id = self.intern("");
        self.trees.insert(root, (root_id, place(u32::MAX, b"")));
        // Each tree with the id of its version in the commit's first parent, when known: the diff base of choice.
        let mut stack: Vec<(ObjectId, u32, Option<ObjectId>)> = vec![(root, root_id, base_root)];
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
                let changed: Vec<(u32, Option<ObjectId>)> = changed
                    .into_iter()
                    .map(|(e, was)| {
                        let was = prev
                            .filter(|_| was != u32::MAX)
                            .map(|p| p.entry(was as usize))
                            .filter(|(mode, _, _)| entry_kind(mode) == ObjectType::Tree)
                            .map(|(_, _, id)| id);
                        (e, was)
                    })
                    .collect();
                (entries, changed)
            };
            for (e, was) in changed {
                let (mode, name, id) = entries.entry(e as usize);
                let key = id;
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
                            out.push((key, path));
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
                            stack.push((key, pid, was));
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
            kept.push((tree_id, entries));
        }
        Ok(())
    }
}

/// Where the walk reads commits and trees: the packs directly when they could be opened (libgit2 for what they do
/// not hold), libgit2 otherwise. A pack found corrupt on the way is kept in `corrupt` and never handed to libgit2.
pub(super) struct Trees<'r> {
    packs: Option<ObjectReader<'r>>,
    odb: git2::Odb<'r>,
    pub(super) corrupt: Option<PackError>,
}

impl<'r> Trees<'r> {
    pub(super) fn new(packs: Option<ObjectReader<'r>>, odb: git2::Odb<'r>) -> Trees<'r> {
        Trees {
            packs,
            odb,
            corrupt: None,
        }
    }

    /// The root tree of commit `id`, from the `tree` line of the raw commit (libgit2's parse if that is malformed).
    pub(super) fn commit_tree(&mut self, repo: &Repository, id: ObjectId) -> Result<ObjectId, git2::Error> {
        let mut raw = Vec::new();
        if self.read_raw(&id, &mut raw)
            && let Some(tree) = raw
                .strip_prefix(b"tree ")
                .and_then(|r| r.get(..40))
                .and_then(ObjectId::from_hex)
        {
            return Ok(tree);
        }
        self.check()?;
        repo.find_commit(id.to_git2()).map(|c| c.tree_id().into())
    }

    /// The raw bytes of object `id` into `out` (not cached: for commits, each read once); false when it cannot be
    /// read.
    pub(super) fn read_raw(&mut self, id: &ObjectId, out: &mut Vec<u8>) -> bool {
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
        let Ok(obj) = self.odb.read(id.to_git2()) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(obj.data());
        true
    }

    /// A tree's bytes, shared with the pack reader's cache (no copy) when the packs hold it.
    fn read(&mut self, id: ObjectId) -> Result<Rc<Vec<u8>>, git2::Error> {
        self.check()?;
        if let Some(reader) = &mut self.packs {
            match reader.read(&id) {
                Ok(Some(b)) => return Ok(b),
                Ok(None) => {}
                Err(e) => {
                    self.corrupt = Some(e);
                    self.check()?;
                }
            }
        }
        self.odb.read(id.to_git2()).map(|o| Rc::new(o.data().to_vec()))
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
pub(super) const TREE_CACHE_BUDGET: usize = 24 << 20;

/// Versions of each directory kept as diff bases: enough that a merge after a topic of a few commits finds its
/// first parent's version (on git/git, diffing against whatever was walked last there made a sixth of all trees
/// differ in over 50 entries).
const RECENT_TREES: usize = 8;

/// Bytes of previous tree versions kept to skip unchanged entries (bounded for repositories with huge trees).
const LAST_TREE_BUDGET: usize = 32 << 20;
