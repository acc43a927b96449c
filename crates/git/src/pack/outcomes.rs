//! What scanning a pack's blobs gave, kept by entry index rather than by object id.
//!
//! A pack holds every blob it was sent, reachable or not (a clone made from a repository with pull-request refs
//! keeps all of theirs until it is repacked), and the walk only learns which of them it needs once every blob is
//! scanned. Keeping each outcome under its id (an id-keyed map, plus the threads' lists it is merged from) made
//! this the largest allocation of a history scan, and one that grew with the pack. Here each entry has one 8-byte
//! slot in a table sized once from the pack's entry count, which the reader threads fill in place; only blobs
//! with candidate matches (a few in a thousand) keep anything more. Lookups by id go through the pack's own
//! id table, which the history walk builds anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use leakstop_scan::Candidate;

use super::{Outcome, Pack};
use crate::oid::ObjectId;

/// Slot values: not scanned (not a blob, or a delta whose base is in another pack), binary, too large; anything
/// from `SCANNED` up is a scanned blob of `slot - SCANNED` bytes.
const NOT_SCANNED: u64 = 0;
const BINARY: u64 = 1;
const LARGE: u64 = 2;
const SCANNED: u64 = 3;

/// One pack's outcomes, one slot per entry.
pub(crate) struct Outcomes {
    slots: Vec<AtomicU64>,
    /// Candidates of the scanned blobs that have any, by entry.
    candidates: HashMap<u32, Vec<Candidate>>,
}

impl Outcomes {
    /// Room for a pack of `entries` entries, none scanned yet.
    pub(super) fn new(entries: usize) -> Outcomes {
        Outcomes {
            slots: (0..entries).map(|_| AtomicU64::new(NOT_SCANNED)).collect(),
            candidates: HashMap::new(),
        }
    }

    /// Records entry `i`'s outcome; its candidates, when it has any, are handed back for [`Outcomes::add_candidates`]
    /// (threads keep their own list while they share the slots).
    pub(super) fn set(&self, i: u32, outcome: Outcome) -> Option<(u32, Vec<Candidate>)> {
        let (slot, found) = match outcome {
            Outcome::Binary => (BINARY, None),
            Outcome::Large => (LARGE, None),
            Outcome::Scanned { bytes, candidates } => (
                bytes.saturating_add(SCANNED),
                (!candidates.is_empty()).then_some((i, candidates)),
            ),
        };
        self.slots[i as usize].store(slot, Ordering::Relaxed);
        found
    }

    /// Takes in candidates [`Outcomes::set`] handed back.
    pub(super) fn add_candidates(&mut self, found: impl IntoIterator<Item = (u32, Vec<Candidate>)>) {
        self.candidates.extend(found);
    }

    /// Entry `i`'s outcome, once (its candidates move out); `None` when it was not scanned.
    pub(super) fn take(&mut self, i: u32) -> Option<Outcome> {
        let slot = self.slots.get(i as usize)?.swap(NOT_SCANNED, Ordering::Relaxed);
        match slot {
            NOT_SCANNED => None,
            BINARY => Some(Outcome::Binary),
            LARGE => Some(Outcome::Large),
            bytes => Some(Outcome::Scanned {
                bytes: bytes - SCANNED,
                candidates: self.candidates.remove(&i).unwrap_or_default(),
            }),
        }
    }

    /// How many entries were scanned (blobs with an outcome).
    pub(crate) fn scanned(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) != NOT_SCANNED)
            .count()
    }
}

/// The outcome of blob `id` from the first of `packs` that scanned it (`outcomes[k]` belongs to `packs[k]`), taken
/// out; `None` when none did.
pub(crate) fn take_outcome(packs: &[Pack], outcomes: &mut [Outcomes], id: &ObjectId) -> Option<Outcome> {
    packs
        .iter()
        .zip(outcomes.iter_mut())
        .find_map(|(pack, out)| pack.find(id).and_then(|i| out.take(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(o: Option<Outcome>) -> Option<(u64, usize)> {
        match o {
            Some(Outcome::Scanned { bytes, candidates }) => Some((bytes, candidates.len())),
            _ => None,
        }
    }

    #[test]
    fn slots_keep_each_outcome_once() {
        let mut out = Outcomes::new(5);
        assert!(out.set(0, Outcome::Binary).is_none());
        assert!(out.set(1, Outcome::Large).is_none());
        let none = out.set(
            2,
            Outcome::Scanned {
                bytes: 0,
                candidates: Vec::new(),
            },
        );
        assert!(none.is_none(), "no candidates, nothing handed back");
        let big = out.set(
            3,
            Outcome::Scanned {
                bytes: u64::MAX - 10,
                candidates: Vec::new(),
            },
        );
        assert!(big.is_none());
        assert_eq!(out.scanned(), 4);
        assert!(matches!(out.take(0), Some(Outcome::Binary)));
        assert!(matches!(out.take(1), Some(Outcome::Large)));
        assert_eq!(
            scanned(out.take(2)),
            Some((0, 0)),
            "an empty blob is scanned, not missing"
        );
        assert_eq!(scanned(out.take(3)), Some((u64::MAX - 10, 0)));
        assert!(out.take(4).is_none(), "never set");
        assert!(out.take(9).is_none(), "not an entry");
        for i in 0..4 {
            assert!(out.take(i).is_none(), "taken once");
        }
        assert_eq!(out.scanned(), 0);
    }

    #[test]
    fn candidates_come_back_with_their_entry_only() {
        use leakstop_rules::RuleSet;
        use leakstop_scan::{ScanOptions, Scanner};
        let scanner = Scanner::new(RuleSet::builtin(), ScanOptions::default()).unwrap();
        let data = b"aws_access_key_id = AKIAQYLPMN5HHHFPZAM2\n";
        let mut hits = Vec::new();
        scanner.keyword_hits(data, &mut hits);
        let candidates = scanner.candidates(data, &hits, None);
        assert!(!candidates.is_empty(), "the test needs a blob with candidates");
        let n = candidates.len();
        let mut out = Outcomes::new(3);
        let back = out.set(
            1,
            Outcome::Scanned {
                bytes: data.len() as u64,
                candidates,
            },
        );
        assert_eq!(back.as_ref().map(|(i, c)| (*i, c.len())), Some((1, n)));
        out.add_candidates(back);
        assert!(out.take(0).is_none());
        assert_eq!(scanned(out.take(1)), Some((data.len() as u64, n)));
        assert!(out.candidates.is_empty(), "taken with the outcome");
    }

    #[test]
    fn slots_are_eight_bytes_whatever_the_outcome() {
        // The point of the table: its size follows the entry count only.
        assert_eq!(std::mem::size_of::<AtomicU64>(), 8);
        let out = Outcomes::new(1000);
        assert_eq!(out.slots.capacity(), 1000);
        assert!(out.candidates.is_empty());
    }
}
