//! Git inputs for the scanner, through libgit2 (git2): whole histories, the staged index and commit ranges.
//!
//! - [`scan_history`]: every blob reachable from the selected refs, each unique blob scanned once, one finding per
//!   secret occurrence carrying provenance (the first commit whose version holds it, every path it appears under,
//!   the later versions that still hold it, whether it is still at HEAD).
//! - [`scan_staged`]: only lines added in the index versus HEAD (the pre-commit hook).
//! - [`scan_range`]: only lines added by the commits of `BASE..HEAD` (pushes and pull requests), with the
//!   commit that added each.
//!
//! Repositories are read as they are: every pack is checked (`index.rs`) before libgit2 reads an object, and a
//! corrupt one stops the scan with [`GitError::CorruptPack`] naming it.
//!
//! Shallow clones are handled explicitly: a range that reaches past the shallow boundary is an error that says
//! how to fetch more, never a silent scan of a truncated history.
//!
//! # Unsafe code
//! Denied in the crate (workspace lint) and allowed in three places only, each for a system interface that has no
//! safe wrapper here:
//! - `map` (module): `mmap`/`madvise`/`munmap` of a pack file, read-only, so entries are read in place and the
//!   resident pages can be released during a long history walk;
//! - `repo::configure_libgit2` (one function): libgit2's global memory limits, set once before any repository is
//!   opened;
//! - `history::release_freed_memory` (one function): glibc's `malloc_trim`, once per history scan, so the walk's
//!   freed caches leave resident memory before the pack readers' peak.

mod diff;
mod error;
mod history;
mod index;
mod inflate;
mod map;
mod occurrences;
mod oid;
mod pack;
mod repo;
#[cfg(test)]
mod testing;
mod topo;

pub use diff::{RangeReport, scan_range, scan_range_report, scan_staged, scan_staged_when};
pub use error::GitError;
pub use history::{HistoryReport, HistorySelection, scan_history};
pub use repo::commit_info;
