//! Where leakstop meets developers and pipelines.
//!
//! - [`hook`]: installing the native git pre-commit hook without clobbering an existing one.
//! - [`event`]: what a GitHub Actions event added (push, pull request), read from its payload.
//! - [`fetch`]: fetching just enough of a shallow CI checkout to scan that range.
//! - [`workflow`]: the runner's workflow commands and environment files, escaped as it parses them.
//! - [`publish`]: findings as annotations, a job summary table and step outputs.
#![forbid(unsafe_code)]

pub mod event;
pub mod fetch;
pub mod hook;
pub mod publish;
pub mod workflow;
