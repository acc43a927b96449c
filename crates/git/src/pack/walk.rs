//! Walking a pack's delta forests to scan its blobs: each object inflated once, each delta applied to its base's
//! bytes while they are at hand, several threads taking forests as they go.

use std::sync::atomic::{AtomicUsize, Ordering};

use leakstop_scan::{Candidate, KeywordHit, Scanner, is_binary};

use super::delta::derive_hits;
use super::format::OBJ_BLOB;
use super::{MAX_CHAIN, Outcome, Outcomes, Pack, PackError, PackErrorKind, Scratch, bad};
use crate::oid::{IdMap, ObjectId};

/// Stack of a pack reader thread: room for [`Walker::visit`] to recurse down a chain of [`MAX_CHAIN`] deltas.
const READER_STACK: usize = 32 << 20;

impl Pack {
    /// Scans every blob of the pack with `threads` threads, all but the first waiting for `gate` to open; returns
    /// each blob's outcome by entry. Deltas whose base lies outside the pack are left out.
    pub(crate) fn scan_blobs(&self, scanner: &Scanner, threads: usize, gate: &Gate) -> Result<Outcomes, PackError> {
        // A delta chain keeps its base's type: only forests rooted at blobs hold blobs. Largest forests first, so
        // the threads finish together instead of one of them ending on a big one alone.
        let mut roots: Vec<u32> = (0..self.objs.len() as u32)
            .filter(|&i| self.objs[i as usize].kind == OBJ_BLOB)
            .collect();
        roots.sort_by_cached_key(|&r| std::cmp::Reverse(self.forest_weight(r)));
        let next = AtomicUsize::new(0);
        let mut outcomes = Outcomes::new(self.objs.len());
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.max(1))
                .map(|t| {
                    let (next, roots, outcomes) = (&next, &roots, &outcomes);
                    std::thread::Builder::new().stack_size(READER_STACK).spawn_scoped(
                        s,
                        move || -> Result<Vec<(u32, Vec<Candidate>)>, PackError> {
                            if t > 0 {
                                gate.wait();
                            }
                            let mut w = Walker::new(self, scanner, outcomes, gate)?;
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
                            Ok(w.found)
                        },
                    )
                })
                .collect();
            let mut found = Vec::new();
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
                    Ok(f) => found.push(f),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) => Err(e.in_file(&self.path)),
                None => Ok(found),
            }
        })
        .map(|found| {
            outcomes.add_candidates(found.into_iter().flatten());
            outcomes
        })
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

/// A signal threads wait for once: extra pack readers start when the history walk (the longer task, on one
/// core) is done, so the walk never has to share a core with more than one of them.
///
/// It also carries what the walk found reachable: from then on the readers skip the search of blobs it did not
/// find (a pack that is not repacked holds every blob it was ever sent: on a clone of a mirror with pull-request
/// refs, over a third of them). They still rebuild such blobs when a reachable delta is built on them; the deltas of
/// a blob not searched search themselves in full, as those of a binary blob do.
#[derive(Default)]
pub(crate) struct Gate {
    open: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
    reachable: std::sync::OnceLock<IdMap<()>>,
}

impl Gate {
    /// Records the blobs the walk reached (before [`Gate::open`]); the readers scan only those from then on.
    pub(crate) fn set_reachable(&self, blobs: IdMap<()>) {
        let _ = self.reachable.set(blobs);
    }

    /// False only for a blob the finished walk did not reach.
    fn wanted(&self, id: &ObjectId) -> bool {
        self.reachable.get().is_none_or(|r| r.contains_key(id))
    }

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

/// One thread's walk over a pack's delta forests.
struct Walker<'a> {
    pack: &'a Pack,
    scanner: &'a Scanner,
    scratch: Scratch,
    /// Every thread's outcomes land in the pack's one table; candidates (rare) are kept per thread.
    outcomes: &'a Outcomes,
    found: Vec<(u32, Vec<Candidate>)>,
    gate: &'a Gate,
}

impl<'a> Walker<'a> {
    fn new(
        pack: &'a Pack,
        scanner: &'a Scanner,
        outcomes: &'a Outcomes,
        gate: &'a Gate,
    ) -> Result<Walker<'a>, PackError> {
        Ok(Walker {
            pack,
            scanner,
            scratch: Scratch::new()?,
            outcomes,
            found: Vec::new(),
            gate,
        })
    }

    fn record(&mut self, i: u32, outcome: Outcome) {
        self.found.extend(self.outcomes.set(i, outcome));
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
                let id = self.pack.objs[i as usize].id;
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
        if !self.gate.wanted(&self.pack.objs[i as usize].id) {
            return None;
        }
        if data.len() as u64 > opts.max_file_size {
            self.record(i, Outcome::Large);
            return None;
        }
        if !opts.include_binary && is_binary(data) {
            self.record(i, Outcome::Binary);
            return None;
        }
        let hits = hits.unwrap_or_else(|| {
            let mut h = Vec::new();
            scanner.keyword_hits(data, &mut h);
            h
        });
        let candidates = scanner.candidates(data, &hits, None);
        self.record(
            i,
            Outcome::Scanned {
                bytes: data.len() as u64,
                candidates,
            },
        );
        Some(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::{Gate, IdMap, ObjectId};

    #[test]
    fn every_blob_is_wanted_until_the_walk_says_which() {
        let (a, b) = (ObjectId::new([1; 20]), ObjectId::new([2; 20]));
        let gate = Gate::default();
        assert!(gate.wanted(&a) && gate.wanted(&b), "walk not done: scan everything");
        let mut reached = IdMap::default();
        reached.insert(a, ());
        gate.set_reachable(reached);
        gate.open();
        gate.wait();
        assert!(gate.wanted(&a));
        assert!(!gate.wanted(&b), "not reached by the walk");
    }
}
