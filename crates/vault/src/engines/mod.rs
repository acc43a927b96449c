//! Secrets engines and auth methods mounted under the core's router.

pub mod github;
pub mod jwt;
mod jwt_sig;
pub mod kv;

use std::sync::Arc;

use crate::Backend;
use crate::core::{Core, MountEntry};

/// Register every engine and auth method this build knows (kv is built into the core).
pub fn register_all(core: &Arc<Core>) {
    let jwt: crate::core::BackendFactory = Arc::new(|m: &MountEntry, _: &Arc<Core>| {
        Ok(jwt::JwtBackend::new(m.default_lease_ttl, m.max_lease_ttl) as Arc<dyn Backend>)
    });
    core.register_auth("jwt", jwt.clone());
    core.register_auth("oidc", jwt);
    core.register_engine(
        "github",
        Arc::new(|_: &MountEntry, core: &Arc<Core>| Ok(github::GithubBackend::new(core) as Arc<dyn Backend>)),
    );
}
