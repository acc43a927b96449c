//! Whole-history scans: every blob reachable from the selected refs, each scanned exactly once.
//!
//! Two phases keep memory bounded and the cores busy:
//! 1. one thread walks commits oldest first and their trees (each tree id read once) and records, per new blob
//!    id, the first commit and path it appeared under (ids and small integers only, never contents);
//! 2. worker threads (one libgit2 handle each: git2 objects are not `Sync`) read and scan those blobs; the
//!    keyword prefilter rejects most blobs before any per-line work.
//!
//! Provenance (commit details, other paths, presence at HEAD) is computed afterwards, only for blobs that
//! produced findings.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Sort};
use leakstop_scan::{Finding, Scanner, is_binary};
use rayon::prelude::*;

use crate::error::GitError;
use crate::repo::{commit_info, open, resolve_commit, shallow_commits, workdir_or_path};

/// Which history to scan.
#[derive(Debug, Clone, Default)]
pub struct HistorySelection {
    /// Only what this branch (or any revision) reaches; default: all refs (branches, tags, remotes) and HEAD.
    pub branch: Option<String>,
    /// Skip what this commit reaches (it and its ancestors were scanned before).
    pub since_commit: Option<String>,
}

/// The result of a history scan.
#[derive(Debug, Default)]
pub struct HistoryReport {
    pub findings: Vec<Finding>,
    pub commits: usize,
    /// Unique blobs reachable from the selected commits.
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

struct BlobSeen {
    commit: u32,
    path: u32,
    others: Vec<u32>,
}

#[derive(Default)]
struct Enumeration {
    commits: Vec<Oid>,
    paths: Vec<String>,
    path_ids: HashMap<String, u32>,
    blobs: HashMap<Oid, BlobSeen>,
    order: Vec<Oid>,
    /// Tree id -> the directory path it was first walked under. A tree is read once; when it shows up again
    /// under another directory (a renamed or copied directory), the pair of directories is kept in `aliases`
    /// so the blob paths it holds can be derived afterwards without re-reading it.
    trees: HashMap<Oid, u32>,
    aliases: HashSet<(u32, u32)>,
    submodules: usize,
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

    fn walk_tree(&mut self, repo: &Repository, root: Oid, commit: u32, repo_path: &Path) -> Result<(), GitError> {
        let mut stack: Vec<(Oid, String)> = vec![(root, String::new())];
        while let Some((tree_id, prefix)) = stack.pop() {
            let prefix_id = self.intern(&prefix);
            if let Some(&first) = self.trees.get(&tree_id) {
                if first != prefix_id {
                    self.aliases.insert((first, prefix_id));
                }
                continue;
            }
            self.trees.insert(tree_id, prefix_id);
            let tree = repo
                .find_tree(tree_id)
                .map_err(GitError::git(repo_path, "reading a tree"))?;
            for entry in tree.iter() {
                let name = String::from_utf8_lossy(entry.name_bytes());
                let path = if prefix.is_empty() {
                    name.into_owned()
                } else {
                    format!("{prefix}/{name}")
                };
                match entry.kind() {
                    Some(ObjectType::Blob) => {
                        let id = entry.id();
                        if let Some(seen) = self.blobs.get(&id) {
                            let known = seen.path;
                            let others_full = seen.others.len() >= MAX_OTHER_PATHS;
                            if !others_full && self.paths[known as usize] != path {
                                let pid = self.intern(&path);
                                let seen = self.blobs.get_mut(&id).expect("present");
                                if !seen.others.contains(&pid) {
                                    seen.others.push(pid);
                                }
                            }
                        } else {
                            let pid = self.intern(&path);
                            self.blobs.insert(
                                id,
                                BlobSeen {
                                    commit,
                                    path: pid,
                                    others: Vec::new(),
                                },
                            );
                            self.order.push(id);
                        }
                    }
                    Some(ObjectType::Tree) => stack.push((entry.id(), path)),
                    // A gitlink: the submodule's history lives in another repository.
                    Some(ObjectType::Commit) => self.submodules += 1,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Scans every unique blob reachable from the selection, attributing findings to the commit that introduced
/// the blob.
pub fn scan_history(repo_path: &Path, scanner: &Scanner, sel: &HistorySelection) -> Result<HistoryReport, GitError> {
    let repo = open(repo_path)?;
    let root = workdir_or_path(&repo);
    let git_dir: PathBuf = repo.path().to_path_buf();
    let walk_err = GitError::git(&root, "walking history");
    let mut walk = repo.revwalk().map_err(walk_err)?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .map_err(GitError::git(&root, "walking history"))?;
    match &sel.branch {
        Some(b) => walk
            .push(resolve_commit(&repo, b)?)
            .map_err(GitError::git(&root, "walking history"))?,
        None => push_all_refs(&repo, &mut walk, &root)?,
    }
    if let Some(since) = &sel.since_commit {
        walk.hide(resolve_commit(&repo, since)?)
            .map_err(GitError::git(&root, "walking history"))?;
    }

    let mut en = Enumeration::default();
    for oid in walk {
        let oid = oid.map_err(GitError::git(&root, "walking history"))?;
        let commit = repo
            .find_commit(oid)
            .map_err(GitError::git(&root, "reading a commit"))?;
        let idx = en.commits.len() as u32;
        en.commits.push(oid);
        en.walk_tree(&repo, commit.tree_id(), idx, &root)?;
    }
    en.trees = HashMap::new();

    let mut report = HistoryReport {
        commits: en.commits.len(),
        blobs: en.order.len(),
        ..Default::default()
    };
    if en.submodules > 0 {
        report.notes.push(format!(
            "{} submodule entr{} skipped: scan each submodule's repository on its own",
            en.submodules,
            if en.submodules == 1 { "y" } else { "ies" }
        ));
    }
    let shallow = shallow_commits(&repo);
    if !shallow.is_empty() {
        report.notes.push(format!(
            "this is a shallow clone: history before its {} boundary commit(s) is not available, and secrets first \
             seen at the boundary are attributed to the boundary commit (fetch with --unshallow for exact provenance)",
            shallow.len()
        ));
    }

    // Phase 2: scan blobs in parallel, each with its own repository handle.
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
    let chunk = 256;
    let acc = en
        .order
        .par_chunks(chunk)
        .map_init(
            || Repository::open(&git_dir).ok(),
            |handle, ids| {
                let mut acc = Acc::default();
                let Some(repo) = handle else {
                    acc.errors
                        .push("could not open the repository in a worker thread".to_string());
                    return acc;
                };
                for id in ids {
                    let obj = match repo.find_blob(*id) {
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
                    if !scanner.might_match(data) {
                        continue;
                    }
                    let seen = &en.blobs[id];
                    let findings = scanner.scan_blob(data, &en.paths[seen.path as usize]);
                    if !findings.is_empty() {
                        acc.found.push((*id, findings));
                    }
                }
                acc
            },
        )
        .reduce(Acc::default, |mut a, b| {
            a.found.extend(b.found);
            a.bytes += b.bytes;
            a.binary += b.binary;
            a.large += b.large;
            a.errors.extend(b.errors);
            a
        });
    if let Some(first) = acc.errors.first() {
        return Err(GitError::Git {
            repo: root,
            context: "reading blobs",
            message: first.clone(),
        });
    }
    report.bytes_scanned = acc.bytes;
    report.skipped_binary = acc.binary;
    report.skipped_large = acc.large;

    // Phase 3: provenance, only for blobs with findings.
    let head_tree = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
    let mut infos = HashMap::new();
    let mut found = acc.found;
    found.sort_by_key(|(id, _)| (en.blobs[id].commit, en.blobs[id].path));
    for (id, findings) in found {
        let seen = &en.blobs[&id];
        let info = match infos.get(&seen.commit) {
            Some(i) => Clone::clone(i),
            None => {
                let c = repo
                    .find_commit(en.commits[seen.commit as usize])
                    .map_err(GitError::git(&root, "reading a commit"))?;
                let i = commit_info(&c);
                infos.insert(seen.commit, i.clone());
                i
            }
        };
        let others = other_paths(&en, seen);
        for mut f in findings {
            f.commit = Some(info.clone());
            f.other_paths = others.clone();
            f.in_head = head_tree.as_ref().map(|t| {
                std::iter::once(&f.path)
                    .chain(others.iter())
                    .any(|p| present_at(&repo, t, p, f.secret.expose()))
            });
            report.findings.push(f);
        }
    }
    scanner.apply_baseline(&mut report.findings);
    Ok(report)
}

fn push_all_refs(repo: &Repository, walk: &mut git2::Revwalk<'_>, root: &Path) -> Result<(), GitError> {
    let refs = repo.references().map_err(GitError::git(root, "listing refs"))?;
    for r in refs.flatten() {
        // Tags may point at blobs or trees; only commits have history.
        if let Ok(c) = r.peel_to_commit() {
            walk.push(c.id()).map_err(GitError::git(root, "walking history"))?;
        }
    }
    if let Ok(head) = repo.head()
        && let Ok(c) = head.peel_to_commit()
    {
        walk.push(c.id()).map_err(GitError::git(root, "walking history"))?;
    }
    Ok(())
}

/// Every other path of a blob: those seen directly, plus those inside directories that are copies or renames
/// of one it was seen in (derived from the tree aliases, since each tree is read only once).
fn other_paths(en: &Enumeration, seen: &BlobSeen) -> Vec<String> {
    let first = &en.paths[seen.path as usize];
    let mut out: Vec<String> = seen.others.iter().map(|p| en.paths[*p as usize].clone()).collect();
    let mut frontier = vec![first.clone()];
    frontier.extend(out.iter().cloned());
    while let Some(path) = frontier.pop() {
        for (from, to) in &en.aliases {
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
            if derived != *first && !out.contains(&derived) && out.len() < MAX_OTHER_PATHS {
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
