//! Secrets engines ([`secrets`]) and auth methods ([`auth`]) behind the engine API ([`crate::engine`]).
//!
//! An engine is one folder implementing [`Backend`] and one line in [`register_builtin`]; it never reaches into
//! the core. Shared pieces: [`roles`] (the `role`/`role/:name` paths both jwt and github serve).

pub mod auth;
pub mod roles;
pub mod secrets;
#[cfg(test)]
pub(crate) mod toy;

use std::sync::Arc;

use crate::Backend;
use crate::core::{Core, MountEntry};

/// Register every engine and auth method this build knows, by mount type.
pub fn register_builtin(core: &Core) {
    core.register_engine(
        "kv",
        Arc::new(|m: &MountEntry| Ok(secrets::kv::KvBackend::new(m) as Arc<dyn Backend>)),
    );
    core.register_engine(
        "database",
        Arc::new(|_: &MountEntry| Ok(secrets::database::DatabaseBackend::new() as Arc<dyn Backend>)),
    );
    core.register_engine(
        "github",
        Arc::new(|_: &MountEntry| Ok(secrets::github::GithubBackend::new() as Arc<dyn Backend>)),
    );
    core.register_auth(
        "jwt",
        Arc::new(|m: &MountEntry| Ok(auth::jwt::JwtBackend::new(m) as Arc<dyn Backend>)),
    );
    core.register_auth(
        "oidc",
        Arc::new(|m: &MountEntry| Ok(auth::jwt::JwtBackend::new(m) as Arc<dyn Backend>)),
    );
}
