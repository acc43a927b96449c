//! leakstop-scan: the detection engine (keyword prefilter, then per-rule matching), file/directory/stdin inputs,
//! filters (inline allow markers, allowlists, baselines and ignore files), findings with stable fingerprints, and
//! the reporters.
//!
//! # Unsafe code
//! Denied in the crate (workspace lint) and allowed in one module: `keywords::simd`, the AVX2 keyword prefilter
//! (x86-64 intrinsics, called only after the CPU was checked for AVX2). Everything else is safe Rust.

pub mod archive;
pub mod baseline;
mod chunks;
pub mod error;
pub mod finding;
mod keywords;
pub mod report;
pub mod scanner;
pub mod secret;
pub mod setup;
pub mod walk;

pub use archive::ArchiveOptions;
pub use baseline::Baseline;
pub use error::ScanError;
pub use finding::{CommitInfo, Finding, Location, fingerprint};
pub use leakstop_rules::Confidence;
pub use scanner::{Candidate, INLINE_ALLOW_MARKERS, KeywordHit, ScanOptions, Scanner};
pub use secret::Secret;
pub use setup::{Setup, SetupRequest};
pub use walk::{ScanSummary, is_binary};
