//! Stage 3 of a history scan: the blobs' outcomes. Blobs the pack reader scanned get their path from the walk;
//! the rest are read through libgit2 by worker threads (one repository handle each: git2 objects are not `Sync`).

use std::path::Path;
use std::thread::{Scope, ScopedJoinHandle};

use git2::Repository;
use leakstop_scan::{Finding, Scanner, is_binary};

use super::Job;
use super::walk::{BOUNDARY, Enumeration};
use crate::oid::ObjectId;
use crate::pack::{Outcome, Outcomes, Pack, take_outcome};

/// What scanning blobs gave: findings per blob, and the counts the report shows.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) found: Vec<(ObjectId, Vec<Finding>)>,
    pub(super) bytes: u64,
    pub(super) binary: usize,
    pub(super) large: usize,
    pub(super) errors: Vec<String>,
}

impl Tally {
    /// Takes in the pack reader's outcomes for the blobs the walk found (their paths known now); returns the blobs
    /// no pack scanned, for the workers.
    pub(super) fn add_outcomes(
        &mut self,
        packs: &[Pack],
        mut outcomes: Vec<Outcomes>,
        en: &Enumeration,
        scanner: &Scanner,
    ) -> Vec<Job> {
        let mut rest = Vec::new();
        for (&id, seen) in en.blobs.iter().filter(|(_, s)| s.commit != BOUNDARY) {
            let path = &en.paths[seen.path as usize];
            match take_outcome(packs, &mut outcomes, &id) {
                Some(Outcome::Scanned { bytes, candidates }) => {
                    self.bytes += bytes;
                    let findings = scanner.findings(candidates, path);
                    if !findings.is_empty() {
                        self.found.push((id, findings));
                    }
                }
                Some(Outcome::Binary) => self.binary += 1,
                Some(Outcome::Large) => self.large += 1,
                None => rest.push((id, path.clone())),
            }
        }
        rest
    }

    /// Waits for the workers and adds up what they found.
    pub(super) fn join(&mut self, handles: Vec<ScopedJoinHandle<'_, Tally>>) {
        for h in handles {
            let t = h.join().unwrap_or_else(|_| Tally {
                errors: vec!["a scan worker panicked".into()],
                ..Tally::default()
            });
            self.found.extend(t.found);
            self.bytes += t.bytes;
            self.binary += t.binary;
            self.large += t.large;
            self.errors.extend(t.errors);
        }
    }
}

/// `n` threads scanning the blobs sent on `rx` through their own libgit2 handle, until the channel closes.
pub(super) fn spawn_workers<'scope>(
    scope: &'scope Scope<'scope, '_>,
    git_dir: &'scope Path,
    scanner: &'scope Scanner,
    n: usize,
    rx: crossbeam_channel::Receiver<Vec<Job>>,
) -> Vec<ScopedJoinHandle<'scope, Tally>> {
    (0..n)
        .map(|_| {
            let rx = rx.clone();
            scope.spawn(move || scan_sent(git_dir, scanner, &rx))
        })
        .collect()
}

fn scan_sent(git_dir: &Path, scanner: &Scanner, rx: &crossbeam_channel::Receiver<Vec<Job>>) -> Tally {
    let max = scanner.options().max_file_size;
    let include_binary = scanner.options().include_binary;
    let mut tally = Tally::default();
    let repo = match Repository::open(git_dir) {
        Ok(r) => r,
        Err(e) => {
            tally
                .errors
                .push(format!("could not open the repository in a worker: {}", e.message()));
            // Keep draining so the walk never blocks on a full channel.
            for _ in rx.iter() {}
            return tally;
        }
    };
    for batch in rx.iter() {
        for (id, path) in batch {
            let obj = match repo.find_blob(id.to_git2()) {
                Ok(o) => o,
                Err(e) => {
                    tally.errors.push(format!("blob {id}: {}", e.message()));
                    continue;
                }
            };
            let data = obj.content();
            if data.len() as u64 > max {
                tally.large += 1;
                continue;
            }
            if !include_binary && is_binary(data) {
                tally.binary += 1;
                continue;
            }
            tally.bytes += data.len() as u64;
            let findings = scanner.scan_blob(data, &path);
            if !findings.is_empty() {
                tally.found.push((id, findings));
            }
        }
    }
    tally
}
