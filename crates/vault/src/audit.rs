//! Audit: every request and response goes through the [`AuditBroker`] to the enabled devices as one JSON line
//! with sensitive values HMACed ([`hash`]), hash-chained ([`chain`]), written by a batching writer ([`device`]).
//! Fail closed within a deadline: a request whose line is not durable in time is refused with 503, never served.

mod broker;
pub mod chain;
pub mod device;
pub mod hash;

pub use broker::{AuditAuth, AuditBroker, AuditEntry, AuditError, DEFAULT_DEADLINE, DeviceConfig, EntryKind, Ticket};
pub use hash::HmacKey;
