//! Secrets engines: they keep data in their mount's store and may issue credentials tracked as leases.

pub mod database;
pub mod github;
pub mod kv;
