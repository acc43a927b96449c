//! The secret value of a finding: the redacting [`Secret`] the service shares (it lives in `leakstop_proto`).

pub use leakstop_proto::Secret;
