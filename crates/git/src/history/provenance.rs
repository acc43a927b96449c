//! Stage 4 of a history scan: provenance (commit details, other paths, presence at HEAD), computed only for blobs
//! that produced findings, and one finding per secret occurrence.

use std::collections::HashMap;
use std::path::Path;

use git2::Repository;
use leakstop_scan::Finding;

use super::MAX_OTHER_PATHS;
use super::walk::{BlobSeen, Enumeration};
use crate::error::GitError;
use crate::occurrences::Occurrences;
use crate::oid::ObjectId;
use crate::repo::commit_info;

/// The findings of each blob with the commit that introduced it and its other paths, merged into one per secret
/// occurrence (without the occurrences the `hidden` boundary already held), each marked present at HEAD or not.
pub(super) fn provenance(
    repo: &Repository,
    root: &Path,
    en: &Enumeration,
    mut found: Vec<(ObjectId, Vec<Finding>)>,
    hidden: Option<ObjectId>,
) -> Result<Vec<Finding>, GitError> {
    let head_tree = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
    let boundary_tree = match hidden {
        Some(c) => Some(
            repo.find_commit(c.to_git2())
                .and_then(|c| c.tree())
                .map_err(GitError::git(root, "reading the --since-commit tree"))?,
        ),
        None => None,
    };
    let mut infos = HashMap::new();
    found.sort_by_key(|(id, _)| (en.blobs[id].commit, en.blobs[id].path));
    let mut occurrences = Occurrences::default();
    for (id, findings) in found {
        let seen = &en.blobs[&id];
        let info = match infos.get(&seen.commit) {
            Some(i) => Clone::clone(i),
            None => {
                let c = repo
                    .find_commit(en.commits[seen.commit as usize].to_git2())
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

/// Every other path of a blob: those seen directly, plus those inside directories that are copies or renames
/// of one it was seen in (derived from the tree aliases, since each tree is read only once). A derived path is
/// kept only when the aliased tree really holds the blob at that relative path.
fn other_paths(repo: &Repository, en: &Enumeration, blob: ObjectId, seen: &BlobSeen) -> Vec<String> {
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
            let holds = repo
                .find_tree(tree.to_git2())
                .and_then(|t| t.get_path(Path::new(rest)))
                .is_ok_and(|e| ObjectId::from(e.id()) == blob);
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
