//! Git inputs for the scanner, through libgit2 (git2): whole histories, the staged index and commit ranges.
//!
//! - [`scan_history`]: every blob reachable from the selected refs, each unique blob scanned once, findings
//!   carrying provenance (the commit that introduced the blob, every path it appears under, whether the secret
//!   is still at HEAD).
//! - [`scan_staged`]: only lines added in the index versus HEAD (the pre-commit hook).
//! - [`scan_range`]: only lines added by the commits of `BASE..HEAD` (pushes and pull requests), with the
//!   commit that added each.
//!
//! Shallow clones are handled explicitly: a range that reaches past the shallow boundary is an error that says
//! how to fetch more, never a silent scan of a truncated history.

mod diff;
mod error;
mod history;
mod index;
mod inflate;
mod map;
mod occurrences;
mod pack;
mod repo;
#[cfg(test)]
mod testing;
mod topo;

pub use diff::{RangeReport, scan_range, scan_range_report, scan_staged};
pub use error::GitError;
pub use history::{HistoryReport, HistorySelection, scan_history};
pub use repo::commit_info;
