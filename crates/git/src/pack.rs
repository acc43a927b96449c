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

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use leakstop_scan::{Candidate, KeywordHit, Scanner, is_binary};

use sha1::{Digest as _, Sha1};

use crate::index::PackIndex;
use crate::inflate::Inflater;
use crate::map::Mapped;

const OBJ_BLOB: u8 = 3;
const OBJ_OFS_DELTA: u8 = 6;
const OBJ_REF_DELTA: u8 = 7;
/// Longer delta chains than git writes (`pack.depth` stops at 4095) mean a loop or a corrupt pack.
const MAX_CHAIN: usize = 4096;
/// Stack of a pack reader thread: room for [`Walker::visit`] to recurse down a chain of [`MAX_CHAIN`] deltas.
const READER_STACK: usize = 32 << 20;
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
    id: [u8; 20],
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

/// Deflate turns at most 258 bytes into 2 bits (1032 to 1): an entry announcing more than that of its zlib data,
/// plus room for tiny streams, is corrupt.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Where a delta's base is.
#[derive(Debug, PartialEq, Eq)]
enum Base {
    /// A whole object.
    None,
    /// The entry at this pack offset.
    Offset(u64),
    /// The object with this id.
    Id([u8; 20]),
}

/// An entry's header: type, inflated size, header length and base.
#[derive(Debug)]
struct Header {
    kind: u8,
    size: u64,
    len: usize,
    base: Base,
}

/// Parses the entry header at `off`.
fn parse_header(b: &[u8], off: u64) -> Result<Header, PackError> {
    let trunc = || bad(format!("pack entry at {off} is truncated"));
    let mut i = 0;
    let mut c = *b.get(i).ok_or_else(trunc)?;
    let kind = (c >> 4) & 7;
    let mut size = u64::from(c & 15);
    let mut shift = 4;
    while c & 0x80 != 0 {
        i += 1;
        c = *b.get(i).ok_or_else(trunc)?;
        if shift > 57 {
            return Err(bad(format!("pack entry at {off} has an oversized length")));
        }
        size |= u64::from(c & 0x7f) << shift;
        shift += 7;
    }
    i += 1;
    let base = match kind {
        OBJ_OFS_DELTA => {
            let mut c = *b.get(i).ok_or_else(trunc)?;
            let mut back = u64::from(c & 0x7f);
            while c & 0x80 != 0 {
                i += 1;
                c = *b.get(i).ok_or_else(trunc)?;
                back = back
                    .checked_add(1)
                    .filter(|b| b.leading_zeros() >= 7)
                    .map(|b| (b << 7) | u64::from(c & 0x7f))
                    .ok_or_else(|| bad(format!("pack entry at {off} points before the pack")))?;
            }
            i += 1;
            let base = off
                .checked_sub(back)
                .filter(|_| back > 0)
                .ok_or_else(|| bad(format!("pack entry at {off} points before the pack")))?;
            Base::Offset(base)
        }
        OBJ_REF_DELTA => {
            let id: [u8; 20] = b.get(i..i + 20).ok_or_else(trunc)?.try_into().expect("20 bytes");
            i += 20;
            Base::Id(id)
        }
        1..=4 => Base::None,
        _ => return Err(bad(format!("pack entry at {off} has unknown type {kind}"))),
    };
    Ok(Header {
        kind,
        size,
        len: i,
        base,
    })
}

/// One instruction of a delta, in result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `len` bytes of the base from `from`, placed at `to` in the result.
    Copy { from: usize, to: usize, len: usize },
    /// `len` new bytes at `to`.
    Insert { to: usize, len: usize },
}

fn varint(d: &[u8], i: &mut usize) -> Option<usize> {
    let mut v = 0usize;
    let mut shift = 0;
    loop {
        let c = *d.get(*i)?;
        *i += 1;
        if shift > 56 {
            return None;
        }
        v |= usize::from(c & 0x7f) << shift;
        shift += 7;
        if c & 0x80 == 0 {
            return Some(v);
        }
    }
}

/// Output reserved before applying a delta.
const DELTA_FIRST_ROOM: usize = 64 << 20;

/// Applies git delta `delta` to `base` into `out`, recording its instructions in `ops`.
pub(crate) fn apply_delta(base: &[u8], delta: &[u8], out: &mut Vec<u8>, ops: &mut Vec<Op>) -> Result<(), PackError> {
    out.clear();
    ops.clear();
    let mut i = 0;
    let (Some(base_len), Some(len)) = (varint(delta, &mut i), varint(delta, &mut i)) else {
        return Err(bad("delta header is truncated"));
    };
    if base_len != base.len() {
        return Err(bad(format!("delta expects a {base_len}-byte base, got {}", base.len())));
    }
    // Each instruction byte yields at most 64 KiB: a longer announced result is corrupt. What is reserved up front
    // is bounded too; a larger result grows as it is built.
    if len > (delta.len() - i).saturating_mul(0x10000) {
        return Err(bad(format!(
            "delta announces {len} bytes, more than its instructions can build"
        )));
    }
    out.reserve_exact(len.min(DELTA_FIRST_ROOM));
    while i < delta.len() {
        let cmd = delta[i];
        i += 1;
        if cmd & 0x80 != 0 {
            let mut from = 0usize;
            let mut n = 0usize;
            for k in 0..4 {
                if cmd & (1 << k) != 0 {
                    from |= usize::from(*delta.get(i).ok_or_else(|| bad("delta copy is truncated"))?) << (8 * k);
                    i += 1;
                }
            }
            for k in 0..3 {
                if cmd & (0x10 << k) != 0 {
                    n |= usize::from(*delta.get(i).ok_or_else(|| bad("delta copy is truncated"))?) << (8 * k);
                    i += 1;
                }
            }
            if n == 0 {
                n = 0x10000;
            }
            let src = base
                .get(from..from + n)
                .ok_or_else(|| bad("delta copies from beyond its base"))?;
            ops.push(Op::Copy {
                from,
                to: out.len(),
                len: n,
            });
            out.extend_from_slice(src);
        } else if cmd != 0 {
            let n = usize::from(cmd);
            let src = delta.get(i..i + n).ok_or_else(|| bad("delta insert is truncated"))?;
            ops.push(Op::Insert { to: out.len(), len: n });
            out.extend_from_slice(src);
            i += n;
        } else {
            return Err(bad("delta has a reserved instruction"));
        }
        if out.len() > len {
            return Err(bad("delta result is longer than announced"));
        }
    }
    if out.len() != len {
        return Err(bad("delta result is shorter than announced"));
    }
    Ok(())
}

/// The keyword occurrences of a delta's result `data`, from those of its base (`base_hits`, in order of start)
/// and its instructions: an occurrence inside one copied range is the base's, moved; any other covers an inserted
/// byte or both bytes of a seam between instructions, and the scanner finds those from the stretches alone.
pub(crate) fn derive_hits(
    scanner: &Scanner,
    base_hits: &[KeywordHit],
    data: &[u8],
    ops: &[Op],
    out: &mut Vec<KeywordHit>,
) {
    out.clear();
    let mut stretches: Vec<std::ops::Range<usize>> = Vec::new();
    let mut prev_copy = false;
    for op in ops {
        match *op {
            Op::Insert { to, len } => {
                stretches.push(to..to + len);
                prev_copy = false;
            }
            Op::Copy { from, to, len } => {
                if prev_copy {
                    stretches.push(to - 1..to + 1);
                }
                prev_copy = true;
                let end = from + len;
                let first = base_hits.partition_point(|h| h.start < from);
                for h in &base_hits[first..] {
                    if h.start >= end {
                        break;
                    }
                    if h.start + scanner.keyword_len(h.keyword) <= end {
                        out.push(KeywordHit {
                            start: to + (h.start - from),
                            keyword: h.keyword,
                        });
                    }
                }
            }
        }
    }
    // Moved occurrences are in order already (instructions in result order, a base's occurrences in order within
    // each); the searched ones come sorted: merge the two runs.
    let moved = out.len();
    scanner.keyword_hits_touching(data, stretches, out);
    let searched = out.split_off(moved);
    let moved = std::mem::take(out);
    out.reserve(moved.len() + searched.len());
    let (mut a, mut b) = (moved.into_iter().peekable(), searched.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x <= y => a.next(),
            (_, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => break,
        };
        if let Some(h) = next
            && out.last() != Some(&h)
        {
            out.push(h);
        }
    }
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
    by_id: std::sync::OnceLock<HashMap<[u8; 20], u32, std::hash::BuildHasherDefault<IdHash>>>,
}

impl Pack {
    /// Opens the pack `pack_path` (with its `.idx` beside it, checked first) and reads every entry's header.
    pub(crate) fn open(pack_path: &Path) -> Result<Pack, PackError> {
        Pack::open_checked(PackIndex::load(pack_path)?)
    }

    /// Opens the pack of a checked index and reads every entry's header.
    pub(crate) fn open_checked(index: PackIndex) -> Result<Pack, PackError> {
        let path = index.pack;
        Pack::read_headers(&path, index.entries).map_err(|e| e.in_file(&path))
    }

    fn read_headers(path: &Path, mut entries: Vec<([u8; 20], u64)>) -> Result<Pack, PackError> {
        entries.sort_unstable_by_key(|&(_, off)| off);
        let map = File::open(path)
            .and_then(|f| Mapped::new(&f))
            .map_err(PackError::unreadable)?;
        let bytes = map.bytes();
        // `PackIndex::load` checked the header and that every offset lies between it and the trailer.
        let trailer = (bytes.len() as u64).saturating_sub(20);
        let mut objs: Vec<Obj> = Vec::with_capacity(entries.len());
        let mut ref_bases: Vec<(u32, [u8; 20])> = Vec::new();
        for (i, &(id, off)) in entries.iter().enumerate() {
            let end = entries.get(i + 1).map_or(trailer, |e| e.1);
            if off < 12 || end > trailer || end <= off {
                return Err(bad(format!(
                    "the index puts an object at {off}, where no entry can start"
                )));
            }
            let Header {
                kind,
                size,
                len: hlen,
                base,
            } = parse_header(&bytes[off as usize..end as usize], off)?;
            // Reading a header maps the pages around it: release them as the pass goes.
            map.done_with((end - off) as usize);
            let data = off + hlen as u64;
            if size > (end - data).saturating_mul(MAX_DEFLATE_RATIO) + 64 {
                return Err(bad(format!(
                    "pack entry at {off} announces {size} bytes, more than its {} bytes of data can hold",
                    end - data
                )));
            }
            let base = match base {
                Base::None => NONE,
                Base::Offset(base_off) => {
                    let b = entries.partition_point(|e| e.1 < base_off);
                    if entries.get(b).map(|e| e.1) != Some(base_off) {
                        return Err(bad(format!(
                            "pack entry at {off} has a base at {base_off}, which is no entry"
                        )));
                    }
                    b as u32
                }
                Base::Id(base_id) => {
                    ref_bases.push((i as u32, base_id));
                    NONE
                }
            };
            objs.push(Obj {
                id,
                data,
                end,
                kind,
                size,
                base,
                orphan: false,
            });
        }
        drop(entries);
        let by_id = std::sync::OnceLock::new();
        let mut pack = Pack {
            path: path.to_path_buf(),
            map,
            objs,
            kid_start: Vec::new(),
            kids: Vec::new(),
            by_id,
        };
        for (i, base_id) in ref_bases {
            let b = pack.find(&base_id);
            let o = &mut pack.objs[i as usize];
            o.base = b.unwrap_or(NONE);
            o.orphan = b.is_none();
        }
        // Deltas of each entry, grouped (a counting sort on the base index).
        let n = pack.objs.len();
        let mut kid_start = vec![0u32; n + 1];
        for o in &pack.objs {
            if o.base != NONE {
                kid_start[o.base as usize + 1] += 1;
            }
        }
        for i in 0..n {
            kid_start[i + 1] += kid_start[i];
        }
        let mut kids = vec![0u32; kid_start[n] as usize];
        let mut fill = kid_start.clone();
        for (i, o) in pack.objs.iter().enumerate() {
            if o.base != NONE {
                kids[fill[o.base as usize] as usize] = i as u32;
                fill[o.base as usize] += 1;
            }
        }
        pack.kid_start = kid_start;
        pack.kids = kids;
        Ok(pack)
    }

    /// The compressed bytes of entry `i`.
    fn entry(&self, i: u32) -> &[u8] {
        let o = &self.objs[i as usize];
        &self.map.bytes()[o.data as usize..o.end as usize]
    }

    /// The deltas whose base is entry `i`.
    fn kids(&self, i: u32) -> &[u32] {
        &self.kids[self.kid_start[i as usize] as usize..self.kid_start[i as usize + 1] as usize]
    }

    /// The entry holding object `id`.
    fn find(&self, id: &[u8; 20]) -> Option<u32> {
        let by_id = self.by_id.get_or_init(|| {
            let mut map = HashMap::with_capacity_and_hasher(self.objs.len(), Default::default());
            for (i, o) in self.objs.iter().enumerate() {
                map.insert(o.id, i as u32);
            }
            map
        });
        by_id.get(id).copied()
    }

    /// Scans every blob of the pack with `threads` threads, all but the first waiting for `gate` to open; returns
    /// each blob's id and outcome. Deltas whose base lies outside the pack are left out.
    pub(crate) fn scan_blobs(
        &self,
        scanner: &Scanner,
        threads: usize,
        gate: &Gate,
    ) -> Result<Vec<([u8; 20], Outcome)>, PackError> {
        // A delta chain keeps its base's type: only forests rooted at blobs hold blobs. Largest forests first, so
        // the threads finish together instead of one of them ending on a big one alone.
        let mut roots: Vec<u32> = (0..self.objs.len() as u32)
            .filter(|&i| self.objs[i as usize].kind == OBJ_BLOB)
            .collect();
        roots.sort_by_cached_key(|&r| std::cmp::Reverse(self.forest_weight(r)));
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.max(1))
                .map(|t| {
                    let (next, roots) = (&next, &roots);
                    std::thread::Builder::new().stack_size(READER_STACK).spawn_scoped(
                        s,
                        move || -> Result<Vec<([u8; 20], Outcome)>, PackError> {
                            if t > 0 {
                                gate.wait();
                            }
                            let mut w = Walker::new(self, scanner)?;
                            let failed = |e: PackError| {
                                // The other threads stop at their next batch.
                                next.store(usize::MAX / 2, Ordering::Relaxed);
                                e
                            };
                            loop {
                                // Small batches: forests differ wildly in size, so threads take the next ones as they
                                // go.
                                let at = next.fetch_add(8, Ordering::Relaxed);
                                if at >= roots.len() {
                                    break;
                                }
                                for &r in &roots[at..(at + 8).min(roots.len())] {
                                    w.root(r).map_err(failed)?;
                                }
                            }
                            Ok(w.out)
                        },
                    )
                })
                .collect();
            let mut all = Vec::new();
            let mut first_error = None;
            for h in handles {
                let done = match h {
                    Ok(h) => h.join().unwrap_or_else(|_| Err(bad("a pack reader thread panicked"))),
                    Err(e) => Err(PackError {
                        file: None,
                        problem: format!("could not start a reader thread: {e}"),
                        kind: PackErrorKind::Unreadable,
                    }),
                };
                match done {
                    Ok(out) => all.extend(out),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) => Err(e.in_file(&self.path)),
                None => Ok(all),
            }
        })
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
            if h.finalize()[..] != id[..] {
                return Err(bad(format!(
                    "the entry at {} is not object {}, which the index says it is",
                    self.objs[i as usize].data,
                    hex(id)
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
                return Err(bad(format!("the delta chain of {} loops", hex(&o.id))).in_file(&self.path));
            }
        }
        Ok(())
    }

    /// About the work of the delta forest rooted at `root`: its size times the number of objects built on it.
    fn forest_weight(&self, root: u32) -> u64 {
        let mut n = 0u64;
        let mut stack = vec![root];
        while let Some(j) = stack.pop() {
            n += 1;
            stack.extend_from_slice(self.kids(j));
        }
        n.saturating_mul(self.objs[root as usize].size)
    }
}

/// One thread's inflate stream and buffers for reading a pack's entries.
struct Scratch {
    inflater: Inflater,
    /// A delta's instructions, inflated.
    delta: Vec<u8>,
    /// The last delta applied, as instructions.
    ops: Vec<Op>,
}

impl Scratch {
    fn new() -> Result<Scratch, PackError> {
        Ok(Scratch {
            inflater: Inflater::new().ok_or_else(|| bad("zlib could not be initialised"))?,
            delta: Vec::new(),
            ops: Vec::new(),
        })
    }

    /// Inflates entry `i` of `pack` into `into`.
    fn inflate(&mut self, pack: &Pack, i: u32, into: &mut Vec<u8>) -> Result<(), PackError> {
        let o = &pack.objs[i as usize];
        let size = usize::try_from(o.size).map_err(|_| bad("pack entry is too large").in_file(&pack.path))?;
        let raw = pack.entry(i);
        let inflated = self.inflater.inflate(raw, size, into);
        pack.map.done_with(raw.len());
        if !inflated {
            return Err(bad(format!(
                "pack entry {} (at {}) does not inflate to its {size} bytes",
                hex(&o.id),
                o.data
            ))
            .in_file(&pack.path));
        }
        Ok(())
    }

    /// Rebuilds delta entry `i` of `pack` from its base's bytes; its instructions are left in `ops`.
    fn rebuild(&mut self, pack: &Pack, i: u32, base: &[u8]) -> Result<Vec<u8>, PackError> {
        let mut delta = std::mem::take(&mut self.delta);
        let inflated = self.inflate(pack, i, &mut delta);
        let mut out = Vec::new();
        let applied = inflated.and_then(|()| {
            apply_delta(base, &delta, &mut out, &mut self.ops)
                .map_err(|e| bad(format!("pack entry {}: {e}", hex(&pack.objs[i as usize].id))).in_file(&pack.path))
        });
        self.delta = delta;
        applied.map(|()| out)
    }
}

/// A rebuilt object and when it was last used.
type Cached = (Rc<Vec<u8>>, u64);

/// A signal threads wait for once: extra pack readers start when the history walk (the longer task, on one
/// core) is done, so the walk never has to share a core with more than one of them.
#[derive(Default)]
pub(crate) struct Gate {
    open: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Gate {
    pub(crate) fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.cv.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Opens its gate when dropped, however the scope that holds it ends.
pub(crate) struct OpenOnDrop<'a>(pub(crate) &'a Gate);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Reads objects by id from packs, keeping recently rebuilt objects (deltas included) in a cache bounded in bytes.
///
/// A history walk reads trees oldest first, while packs store the newest version whole and older ones as deltas
/// below it: each read walks a chain of deltas up to something cached. libgit2 caches only the whole objects at
/// the chain tops, so it re-applies the whole chain for every version; caching every rebuilt version makes the
/// next older one a single delta away.
pub(crate) struct ObjectReader<'a> {
    packs: &'a [Pack],
    scratch: Scratch,
    /// (pack, entry) -> (bytes, last use); `order` holds uses oldest first (stale ones skipped on eviction).
    cache: HashMap<(u32, u32), Cached>,
    order: std::collections::VecDeque<((u32, u32), u64)>,
    bytes: usize,
    budget: usize,
    clock: u64,
}

impl<'a> ObjectReader<'a> {
    pub(crate) fn new(packs: &'a [Pack], budget: usize) -> Result<ObjectReader<'a>, PackError> {
        Ok(ObjectReader {
            packs,
            scratch: Scratch::new()?,
            cache: HashMap::new(),
            order: std::collections::VecDeque::new(),
            bytes: 0,
            budget,
            clock: 0,
        })
    }

    /// The bytes of object `id`, or `None` when no pack holds it whole or as a delta within the pack.
    pub(crate) fn read(&mut self, id: &[u8; 20]) -> Result<Option<Rc<Vec<u8>>>, PackError> {
        match self.locate(id) {
            Some((p, i)) => self.read_at(p, i, id),
            None => Ok(None),
        }
    }

    /// Entry `i` of pack `p` (object `id`), rebuilt through the cache; `None` for a delta whose base is elsewhere.
    fn read_at(&mut self, p: u32, i: u32, id: &[u8; 20]) -> Result<Option<Rc<Vec<u8>>>, PackError> {
        let pack = &self.packs[p as usize];
        // Up the chain to a cached or whole object.
        let mut chain = Vec::new();
        let mut at = i;
        let mut data: Rc<Vec<u8>> = loop {
            if let Some(hit) = self.touch((p, at)) {
                break hit;
            }
            let o = &pack.objs[at as usize];
            if o.orphan {
                return Ok(None);
            }
            if o.base == NONE {
                let mut whole = Vec::new();
                self.scratch.inflate(pack, at, &mut whole)?;
                let whole = Rc::new(whole);
                self.insert((p, at), whole.clone());
                break whole;
            }
            chain.push(at);
            // git writes chains at most 4095 deep; a longer one loops (ids can name any entry as a base).
            if chain.len() > MAX_CHAIN {
                return Err(bad(format!("the delta chain of {} does not end", hex(id))).in_file(&pack.path));
            }
            at = o.base;
        };
        // And back down, keeping every version rebuilt on the way.
        for &d in chain.iter().rev() {
            data = Rc::new(self.scratch.rebuild(pack, d, &data)?);
            self.insert((p, d), data.clone());
        }
        Ok(Some(data))
    }

    /// Object `id`'s bytes into `out`, without keeping them in the cache when a pack holds it whole (commits, read
    /// once each); false when no pack holds it.
    pub(crate) fn read_into(&mut self, id: &[u8; 20], out: &mut Vec<u8>) -> Result<bool, PackError> {
        let Some((p, i)) = self.locate(id) else {
            return Ok(false);
        };
        let pack = &self.packs[p as usize];
        let o = &pack.objs[i as usize];
        if o.base == NONE && !o.orphan {
            self.scratch.inflate(pack, i, out)?;
            return Ok(true);
        }
        let Some(data) = self.read_at(p, i, id)? else {
            return Ok(false);
        };
        out.clear();
        out.extend_from_slice(&data);
        Ok(true)
    }

    /// The pack and entry holding object `id`.
    fn locate(&self, id: &[u8; 20]) -> Option<(u32, u32)> {
        self.packs
            .iter()
            .enumerate()
            .find_map(|(p, pack)| pack.find(id).map(|i| (p as u32, i)))
    }

    fn touch(&mut self, key: (u32, u32)) -> Option<Rc<Vec<u8>>> {
        self.clock += 1;
        let clock = self.clock;
        let (data, used) = self.cache.get_mut(&key)?;
        *used = clock;
        let data = data.clone();
        self.order.push_back((key, clock));
        Some(data)
    }

    fn insert(&mut self, key: (u32, u32), data: Rc<Vec<u8>>) {
        self.clock += 1;
        self.bytes += data.len();
        if let Some((old, _)) = self.cache.insert(key, (data, self.clock)) {
            self.bytes -= old.len();
        }
        self.order.push_back((key, self.clock));
        while self.bytes > self.budget {
            let Some((key, used)) = self.order.pop_front() else {
                break;
            };
            if self.cache.get(&key).is_some_and(|(_, u)| *u == used)
                && let Some((old, _)) = self.cache.remove(&key)
            {
                self.bytes -= old.len();
            }
        }
        // Uses of entries touched often pile up in `order`: drop the stale ones now and then.
        if self.order.len() > 4 * self.cache.len() + 1024 {
            let cache = &self.cache;
            self.order
                .retain(|(k, u)| cache.get(k).is_some_and(|(_, used)| used == u));
        }
    }
}

/// One thread's walk over a pack's delta forests.
struct Walker<'a> {
    pack: &'a Pack,
    scanner: &'a Scanner,
    scratch: Scratch,
    out: Vec<([u8; 20], Outcome)>,
}

impl<'a> Walker<'a> {
    fn new(pack: &'a Pack, scanner: &'a Scanner) -> Result<Walker<'a>, PackError> {
        Ok(Walker {
            pack,
            scanner,
            scratch: Scratch::new()?,
            out: Vec::new(),
        })
    }

    fn root(&mut self, r: u32) -> Result<(), PackError> {
        let mut data = Vec::new();
        self.scratch.inflate(self.pack, r, &mut data)?;
        self.visit(r, data, None, 0)
    }

    /// Scans entry `i` (rebuilt as `data`; `hits` derived from its base when known), then its deltas. The last
    /// delta takes over this frame, so only entries with several deltas keep their bytes on the stack. `depth` is
    /// the entry's place in its delta chain: a chain longer than git writes is corrupt, and refused before the
    /// recursion outgrows the thread's stack.
    fn visit(
        &mut self,
        mut i: u32,
        mut data: Vec<u8>,
        mut hits: Option<Vec<KeywordHit>>,
        mut depth: usize,
    ) -> Result<(), PackError> {
        loop {
            if depth > MAX_CHAIN {
                let id = hex(&self.pack.objs[i as usize].id);
                return Err(bad(format!("the delta chain of {id} is longer than git writes")).in_file(&self.pack.path));
            }
            hits = self.scan(i, &data, hits);
            let Some((&last, rest)) = self.pack.kids(i).split_last() else {
                return Ok(());
            };
            depth += 1;
            for &child in rest {
                let (rebuilt, child_hits) = self.rebuild(child, &data, hits.as_deref())?;
                self.visit(child, rebuilt, child_hits, depth)?;
            }
            (data, hits) = self.rebuild(last, &data, hits.as_deref())?;
            i = last;
        }
    }

    /// Delta entry `i` rebuilt from its base's bytes, with its keyword occurrences derived from the base's.
    fn rebuild(
        &mut self,
        i: u32,
        base: &[u8],
        base_hits: Option<&[KeywordHit]>,
    ) -> Result<(Vec<u8>, Option<Vec<KeywordHit>>), PackError> {
        let data = self.scratch.rebuild(self.pack, i, base)?;
        let hits = base_hits.map(|h| {
            let mut out = Vec::new();
            derive_hits(self.scanner, h, &data, &self.scratch.ops, &mut out);
            out
        });
        Ok((data, hits))
    }

    /// Scans one blob; returns its keyword occurrences for its deltas (`None` when it was not searched: binary or
    /// too large, so its deltas search themselves in full).
    fn scan(&mut self, i: u32, data: &[u8], hits: Option<Vec<KeywordHit>>) -> Option<Vec<KeywordHit>> {
        let scanner = self.scanner;
        let opts = scanner.options();
        let id = self.pack.objs[i as usize].id;
        if data.len() as u64 > opts.max_file_size {
            self.out.push((id, Outcome::Large));
            return None;
        }
        if !opts.include_binary && is_binary(data) {
            self.out.push((id, Outcome::Binary));
            return None;
        }
        let hits = hits.unwrap_or_else(|| {
            let mut h = Vec::new();
            scanner.keyword_hits(data, &mut h);
            h
        });
        let candidates = scanner.candidates(data, &hits, None);
        self.out.push((
            id,
            Outcome::Scanned {
                bytes: data.len() as u64,
                candidates,
            },
        ));
        Some(hits)
    }
}

/// Object ids are already uniformly random: their first eight bytes are a perfect hash (SipHash over 20 bytes per
/// lookup was a visible share of the tree walk).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHash(u64);

impl std::hash::Hasher for IdHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        if let Some(b) = bytes.get(..8) {
            self.0 = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

pub(crate) fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;
    use leakstop_rules::RuleSet;
    use leakstop_scan::ScanOptions;

    /// Encodes `ops` (over `base`, producing `result`) as a git delta.
    fn encode(base: &[u8], result: &[u8], ops: &[Op]) -> Vec<u8> {
        let mut d = Vec::new();
        for mut v in [base.len(), result.len()] {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    d.push(b);
                    break;
                }
                d.push(b | 0x80);
            }
        }
        for op in ops {
            match *op {
                Op::Copy { from, len, .. } => {
                    let mut cmd = 0x80u8;
                    let mut args = Vec::new();
                    for k in 0..4 {
                        let b = (from >> (8 * k)) as u8;
                        if b != 0 {
                            cmd |= 1 << k;
                            args.push(b);
                        }
                    }
                    let n = if len == 0x10000 { 0 } else { len };
                    for k in 0..3 {
                        let b = (n >> (8 * k)) as u8;
                        if b != 0 {
                            cmd |= 0x10 << k;
                            args.push(b);
                        }
                    }
                    d.push(cmd);
                    d.extend(args);
                }
                Op::Insert { to, len } => {
                    d.push(len as u8);
                    d.extend_from_slice(&result[to..to + len]);
                }
            }
        }
        d
    }

    /// Text made of words, keywords of the built-in rules among them (in mixed case, split across edits).
    fn text(rng: &mut Rng, words: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "the",
            "password",
            "TOKEN",
            "secret",
            "api_key",
            "ghp_",
            "AKIA",
            "-----BEGIN",
            "xox",
            "sk_live_",
            "\n",
            "key",
            "=",
            "\"",
            "glpat-",
            "AIza",
            "hooks.slack",
            "npm_",
            "pass",
            "to",
            " ",
            "\n\n",
            // Longer than the pieces the stretch search cuts keywords into.
            "-----BEGIN OPENSSH PRIVATE KEY",
            "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY",
            "discord.com/api/webhooks",
            "aws_session_token",
            "X-Amz-Security-Token",
        ];
        let mut out = Vec::new();
        for _ in 0..words {
            out.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
            if rng.below(3) == 0 {
                out.push(b' ');
            }
        }
        out
    }

    /// A random edit of `base` as copy and insert instructions, with the result.
    fn edit(rng: &mut Rng, base: &[u8]) -> (Vec<u8>, Vec<Op>) {
        let mut out = Vec::new();
        let mut ops = Vec::new();
        for _ in 0..1 + rng.below(6) {
            if rng.below(2) == 0 && !base.is_empty() {
                let from = rng.below(base.len());
                let len = 1 + rng.below((base.len() - from).min(200));
                // Often a copy is cut in two that continue each other, the second half copied or inserted (as git
                // writes at its copy size limit or around an unmatched stretch): the cut can fall inside a keyword
                // anywhere, which then spans the seam.
                let cut = if len > 1 && rng.below(2) == 0 {
                    1 + rng.below(len - 1)
                } else {
                    len
                };
                ops.push(Op::Copy {
                    from,
                    to: out.len(),
                    len: cut,
                });
                out.extend_from_slice(&base[from..from + cut]);
                if cut < len {
                    // Inserts hold at most 127 bytes.
                    let rest = (len - cut).min(127);
                    ops.push(if rng.below(2) == 0 {
                        Op::Copy {
                            from: from + cut,
                            to: out.len(),
                            len: rest,
                        }
                    } else {
                        Op::Insert {
                            to: out.len(),
                            len: rest,
                        }
                    });
                    out.extend_from_slice(&base[from + cut..from + cut + rest]);
                }
            } else {
                let words = 1 + rng.below(8);
                let ins = text(rng, words);
                for chunk in ins.chunks(127) {
                    ops.push(Op::Insert {
                        to: out.len(),
                        len: chunk.len(),
                    });
                    out.extend_from_slice(chunk);
                }
            }
        }
        (out, ops)
    }

    #[test]
    fn derived_keyword_hits_are_those_of_a_full_search() {
        let scanner = Scanner::new(RuleSet::builtin(), ScanOptions::default()).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut checked_hits, mut long_searched) = (0, 0);
        for round in 0..400 {
            let base = text(&mut rng, 60);
            let mut base_hits = Vec::new();
            scanner.keyword_hits(&base, &mut base_hits);
            let (want, want_ops) = edit(&mut rng, &base);
            let delta = encode(&base, &want, &want_ops);
            let (mut got, mut ops) = (Vec::new(), Vec::new());
            apply_delta(&base, &delta, &mut got, &mut ops).unwrap();
            assert_eq!(got, want, "round {round}");
            assert_eq!(ops, want_ops, "round {round}");
            let mut full = Vec::new();
            scanner.keyword_hits(&got, &mut full);
            let mut derived = Vec::new();
            derive_hits(&scanner, &base_hits, &got, &ops, &mut derived);
            assert_eq!(derived, full, "round {round}");
            checked_hits += full.len();
            // Long keywords found by the stretch search, not carried over from the base.
            long_searched += full
                .iter()
                .filter(|h| {
                    let len = scanner.keyword_len(h.keyword);
                    len > 16
                        && !ops.iter().any(
                            |op| matches!(*op, Op::Copy { to, len: n, .. } if h.start >= to && h.start + len <= to + n),
                        )
                })
                .count();
        }
        assert!(checked_hits > 1000, "the texts hold keywords: {checked_hits}");
        assert!(long_searched > 50, "long keywords across edits: {long_searched}");
    }

    #[test]
    fn bad_deltas_are_refused() {
        let base = b"0123456789";
        let (mut out, mut ops) = (Vec::new(), Vec::new());
        let ok = encode(base, b"2345", &[Op::Copy { from: 2, to: 0, len: 4 }]);
        apply_delta(base, &ok, &mut out, &mut ops).unwrap();
        assert_eq!(out, b"2345");
        assert!(
            apply_delta(b"short", &ok, &mut out, &mut ops).is_err(),
            "wrong base size"
        );
        let beyond = encode(base, b"89ab", &[Op::Copy { from: 8, to: 0, len: 4 }]);
        assert!(
            apply_delta(base, &beyond, &mut out, &mut ops).is_err(),
            "copy past the base"
        );
        let mut long = ok.clone();
        long.extend_from_slice(&[1, b'x']);
        assert!(
            apply_delta(base, &long, &mut out, &mut ops).is_err(),
            "longer than announced"
        );
        assert!(
            apply_delta(base, &ok[..ok.len() - 1], &mut out, &mut ops).is_err(),
            "truncated"
        );
        assert!(
            apply_delta(base, &[10, 0, 0], &mut out, &mut ops).is_err(),
            "reserved instruction"
        );
    }

    #[test]
    fn entry_headers_decode_sizes_and_bases() {
        // Blob of 300 bytes: type 3, size 300 = 0b1_0010_1100 -> 0xbc (cont, type 3, low 4 bits 12), 0x12.
        let h = parse_header(&[0xbc, 0x12, 0xff], 100).unwrap();
        assert_eq!((h.kind, h.size, h.len, h.base), (3, 300, 2, Base::None));
        // Offset delta 130 bytes back: 130 = ((0 + 1) << 7) | 2 -> bytes 0x80, 0x02.
        let h = parse_header(&[0x65, 0x80, 0x02], 1000).unwrap();
        assert_eq!((h.kind, h.len, h.base), (6, 3, Base::Offset(870)));
        assert!(parse_header(&[0x65, 0x80, 0x02], 100).is_err(), "base before the pack");
        assert!(parse_header(&[0xbc], 100).is_err(), "truncated");
        assert!(parse_header(&[0x50], 100).is_err(), "type 5 is reserved");
    }
}
