//! The role paths every engine with roles serves the same way (`role` to LIST, `role/:name` to read, write and
//! delete), so the name rules, the listing and the deletion live once.

use serde::de::DeserializeOwned;

use crate::VaultError;
use crate::engine::{LogicalResponse, Operation, Store};

/// What a request under `role` asks for, its name already checked.
pub enum RoleOp<'a> {
    List,
    Read(&'a str),
    Write(&'a str),
    Delete(&'a str),
}

/// `Some` when `path` (mount-relative, trailing slash ignored) is a role path: the operation, or a 400 for a bad
/// name and a 405 for an operation roles do not support. `None` for every other path.
pub fn route(path: &str, op: Operation) -> Option<Result<RoleOp<'_>, VaultError>> {
    let path = path.trim_end_matches('/');
    if path == "role" {
        return Some(match op {
            Operation::List => Ok(RoleOp::List),
            _ => Err(VaultError::UnsupportedOperation),
        });
    }
    let name = path.strip_prefix("role/")?;
    if !valid_name(name) {
        return Some(Err(VaultError::BadRequest(format!(
            "invalid role name {name:?}: use 1 to 128 of A-Z a-z 0-9 _ . @ - (not \".\" or \"..\")"
        ))));
    }
    Some(match op {
        Operation::Read => Ok(RoleOp::Read(name)),
        Operation::Create | Operation::Update => Ok(RoleOp::Write(name)),
        Operation::Delete => Ok(RoleOp::Delete(name)),
        _ => Err(VaultError::UnsupportedOperation),
    })
}

/// Role names are one path segment of plain characters: no `/`, nothing a storage key or a lease id would
/// misread.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

fn key(name: &str) -> String {
    format!("role/{name}")
}

/// The stored role, if any.
pub async fn load<R: DeserializeOwned>(store: &dyn Store, name: &str) -> Result<Option<R>, VaultError> {
    match store.get(&key(name)).await? {
        Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
        None => Ok(None),
    }
}

pub async fn save<R: serde::Serialize>(store: &dyn Store, name: &str, role: &R) -> Result<(), VaultError> {
    store.put(&key(name), &serde_json::to_vec(role)?).await
}

/// The LIST and DELETE answers, which do not depend on what a role holds.
pub async fn list(store: &dyn Store) -> Result<LogicalResponse, VaultError> {
    LogicalResponse::keys(store.list("role/").await?)
}

pub async fn delete(store: &dyn Store, name: &str) -> Result<LogicalResponse, VaultError> {
    store.delete(&key(name)).await?;
    Ok(LogicalResponse::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_paths_check_names_and_operations() {
        assert!(matches!(route("role", Operation::List), Some(Ok(RoleOp::List))));
        assert!(matches!(route("role/", Operation::List), Some(Ok(RoleOp::List))));
        assert!(matches!(
            route("role/ci", Operation::Update),
            Some(Ok(RoleOp::Write("ci")))
        ));
        assert!(matches!(
            route("role/ci", Operation::Delete),
            Some(Ok(RoleOp::Delete("ci")))
        ));
        assert!(matches!(
            route("role/a/b", Operation::Read),
            Some(Err(VaultError::BadRequest(_)))
        ));
        assert!(matches!(
            route("role/..", Operation::Read),
            Some(Err(VaultError::BadRequest(_)))
        ));
        assert!(matches!(
            route("role/ci", Operation::List),
            Some(Err(VaultError::UnsupportedOperation))
        ));
        assert!(route("config", Operation::Read).is_none());
        assert!(route("roles/x", Operation::Read).is_none());
        assert!(!valid_name(&"x".repeat(129)));
    }
}
