//! Placeholder; filled in by the crate owner.

pub mod audit;
pub mod engines;
