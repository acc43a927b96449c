//! Scanning the blobs of a repository's packfiles directly, delta by delta.
//!
//! A pack stores most versions of a file as a delta against another version: a few instructions that copy byte
//! ranges of the base and insert new bytes. Reading each blob through libgit2 rebuilds it from its chain (inflating
//! the bases again whenever they fell out of its cache) and then the whole blob goes through the keyword pass,
//! although nearly all of it was seen in the base. Here every pack is walked as its delta forest instead: each
//! object is inflated once, each delta applied to its base's bytes while they are at hand, and a delta's keyword
//! occurrences are derived, not searched: those inside a copied range are the base's, moved; only the inserted bytes
//! and the seams between instructions are searched, by the positions a keyword touching them can start from
//! (`Scanner::keyword_hits_touching`). The rest of the scan (rule
//! regexes near the occurrences, line numbers) runs on the rebuilt blob as usual, so results are exactly those of a
//! full scan ([`Scanner::keyword_hits`] on the whole blob gives the same occurrences; tests check this).
//!
//! What the forest walk cannot see (loose objects, alternates, deltas against objects outside the pack) is left to
//! the caller, which reads those blobs through libgit2.
//!
//! The history walk reads its commits and trees here too ([`ObjectReader`]), through a cache of rebuilt objects
//! that suits its oldest-first order.

mod delta;
mod format;
mod lookup;
mod outcomes;
mod walk;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha1::{Digest as _, Sha1};

use leakstop_scan::Candidate;

use crate::map::Mapped;
use crate::oid::{IdMap, ObjectId};

pub(crate) use lookup::ObjectReader;
pub(crate) use outcomes::{Outcomes, take_outcome};
pub(crate) use walk::{Gate, OpenOnDrop};

use delta::Scratch;

/// Longer delta chains than git writes (`pack.depth` stops at 4095) mean a loop or a corrupt pack.
const MAX_CHAIN: usize = 4096;
/// No base (a full object), or a base outside this pack.
const NONE: u32 = u32::MAX;

/// What scanning one blob gave, before its path is known.
#[derive(Debug)]
pub(crate) enum Outcome {
    Scanned { bytes: u64, candidates: Vec<Candidate> },
    Binary,
    Large,
}

/// A pack the direct reader cannot use.
#[derive(Debug, Clone)]
pub(crate) struct PackError {
    /// The file at fault, once known.
    pub(crate) file: Option<PathBuf>,
    pub(crate) problem: String,
    pub(crate) kind: PackErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackErrorKind {
    /// Its files contradict themselves: the scan stops, and nothing (libgit2 included) is handed the pack.
    Corrupt,
    /// It cannot be read at all (permissions, I/O).
    Unreadable,
    /// A layout this reader does not read (an old index version): libgit2 reads it instead.
    Unsupported,
}

impl PackError {
    pub(crate) fn unsupported(problem: impl Into<String>) -> PackError {
        PackError {
            file: None,
            problem: problem.into(),
            kind: PackErrorKind::Unsupported,
        }
    }

    pub(crate) fn unreadable(e: std::io::Error) -> PackError {
        PackError {
            file: None,
            problem: format!("cannot be read: {e}"),
            kind: PackErrorKind::Unreadable,
        }
    }

    /// Names `file` as the one at fault, unless a file is named already.
    pub(crate) fn in_file(mut self, file: &Path) -> PackError {
        self.file.get_or_insert_with(|| file.to_path_buf());
        self
    }
}

impl std::fmt::Display for PackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: {}", file.display(), self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

/// A corrupt pack: the problem.
pub(crate) fn bad(problem: impl Into<String>) -> PackError {
    PackError {
        file: None,
        problem: problem.into(),
        kind: PackErrorKind::Corrupt,
    }
}

/// One pack entry, in pack order.
struct Obj {
    id: ObjectId,
    /// Where the zlib data starts, and where the next entry starts.
    data: u64,
    end: u64,
    kind: u8,
    /// Inflated size (of the delta itself, for deltas).
    size: u64,
    /// Index of the base entry (`NONE` for full objects and unresolvable deltas).
    base: u32,
    /// A delta whose base is not in this pack: skipped here, read through libgit2 by the caller.
    orphan: bool,
}

/// A pack opened for direct reads: its entries in pack order with their bases, and each entry's deltas.
pub(crate) struct Pack {
    pub(crate) path: PathBuf,
    map: Mapped,
    objs: Vec<Obj>,
    /// Deltas of entry `i`: `kids[kid_start[i]..kid_start[i + 1]]`.
    kid_start: Vec<u32>,
    kids: Vec<u32>,
    /// Entry index by object id, built on first use: only reads by id (the history walk's) need it, so the blob
    /// scan does not wait for it.
    by_id: std::sync::OnceLock<IdMap<u32>>,
}

impl Pack {
    /// The compressed bytes of entry `i`.
    fn entry(&self, i: u32) -> &[u8] {
        let o = &self.objs[i as usize];
        &self.map.bytes()[o.data as usize..o.end as usize]
    }

    /// The deltas whose base is entry `i`.
    fn kids(&self, i: u32) -> &[u32] {
        &self.kids[self.kid_start[i as usize] as usize..self.kid_start[i as usize + 1] as usize]
    }

    /// Rebuilds every object and checks it against the id the index gives it, as `git verify-pack` does: after
    /// libgit2 failed to read something, finds the damage in this pack that explains it, if there is any.
    pub(crate) fn verify(&self) -> Result<(), PackError> {
        let mut scratch = Scratch::new()?;
        let mut seen = vec![false; self.objs.len()];
        let check = |i: u32, kind: u8, data: &[u8]| -> Result<(), PackError> {
            let name: &[u8] = match kind {
                1 => b"commit",
                2 => b"tree",
                3 => b"blob",
                _ => b"tag",
            };
            let mut h = Sha1::new();
            h.update(name);
            h.update(format!(" {}\0", data.len()).as_bytes());
            h.update(data);
            let id = &self.objs[i as usize].id;
            if h.finalize()[..] != id.as_bytes()[..] {
                return Err(bad(format!(
                    "the entry at {} is not object {}, which the index says it is",
                    self.objs[i as usize].data, id
                ))
                .in_file(&self.path));
            }
            Ok(())
        };
        for r in 0..self.objs.len() as u32 {
            let o = &self.objs[r as usize];
            if o.base != NONE || o.orphan {
                continue;
            }
            let mut data = Vec::new();
            scratch.inflate(self, r, &mut data)?;
            check(r, o.kind, &data)?;
            seen[r as usize] = true;
            let data = Rc::new(data);
            let mut todo: Vec<(u32, Rc<Vec<u8>>)> = self.kids(r).iter().map(|&k| (k, data.clone())).collect();
            while let Some((k, base)) = todo.pop() {
                let rebuilt = Rc::new(scratch.rebuild(self, k, &base)?);
                check(k, o.kind, &rebuilt)?;
                seen[k as usize] = true;
                todo.extend(self.kids(k).iter().map(|&kk| (kk, rebuilt.clone())));
            }
        }
        // What no whole object leads to: deltas on a base outside the pack, or on a loop.
        for (i, o) in self.objs.iter().enumerate() {
            if seen[i] {
                continue;
            }
            let mut at = o;
            for _ in 0..=MAX_CHAIN {
                if at.orphan || at.base == NONE {
                    break;
                }
                at = &self.objs[at.base as usize];
            }
            if !at.orphan {
                return Err(bad(format!("the delta chain of {} loops", o.id)).in_file(&self.path));
            }
        }
        Ok(())
    }
}

/// Packs of the repository at `git_dir` (`objects/pack/*.pack` with an index), largest first.
pub(crate) fn packs(git_dir: &Path) -> Vec<std::path::PathBuf> {
    let dir = git_dir.join("objects").join("pack");
    let mut found: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack") && p.with_extension("idx").is_file())
        .map(|p| (std::fs::metadata(&p).map_or(0, |m| m.len()), p))
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, p)| p).collect()
}
