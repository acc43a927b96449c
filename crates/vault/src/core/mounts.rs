//! The mount tables: which engine serves which path, staged like any other write and swapped in once committed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use super::*;
use crate::barrier::BarrierView;
use crate::pipeline::Effects;
use crate::{Backend, VaultError};

impl MountEntry {
    /// Where this mount's engine keeps its data in the barrier.
    pub fn storage_prefix(&self, auth: bool) -> String {
        format!("{}/{}/", if auth { "auth" } else { "logical" }, self.uuid)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": self.default_lease_ttl,
                "force_no_cache": false,
                "max_lease_ttl": self.max_lease_ttl,
            },
            "description": self.description,
            "external_entropy_access": false,
            "local": false,
            "options": if self.options.is_empty() { Value::Null } else { json!(self.options) },
            "plugin_version": "",
            "running_plugin_version": "",
            "running_sha256": "",
            "seal_wrap": false,
            "type": self.kind,
            "uuid": self.uuid,
        })
    }
}

impl Unsealed {
    /// The secrets engine mounted exactly at `path` (`github/`).
    pub fn mount_at(&self, path: &str) -> Option<Mount> {
        self.mounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|m| m.entry.path == path)
            .cloned()
    }

    /// A mount's store: its own folder of the barrier (`logical/<uuid>/`, `auth/<uuid>/` for auth methods).
    pub fn view(&self, mount: &Mount, auth: bool) -> BarrierView {
        BarrierView::new(self.barrier.clone(), mount.entry.storage_prefix(auth))
    }

    fn table(&self, auth: bool) -> &RwLock<Vec<Mount>> {
        if auth { &self.auth } else { &self.mounts }
    }

    /// Stage the secrets-engine table (`auth = false`) or the auth-method table as it will be, and swap it in
    /// once committed.
    fn stage_table(self: &Arc<Self>, auth: bool, next: Vec<Mount>, fx: &mut Effects) -> Result<(), VaultError> {
        let entries: Vec<&MountEntry> = next.iter().map(|m| m.entry.as_ref()).collect();
        fx.put_json(if auth { AUTH_PATH } else { MOUNTS_PATH }, &entries)?;
        let st = self.clone();
        fx.after(move || {
            *st.table(auth).write().unwrap_or_else(|e| e.into_inner()) = next;
        });
        Ok(())
    }
}

impl Core {
    pub(super) fn build(self: &Arc<Self>, e: &MountEntry, auth: bool) -> Result<Arc<dyn Backend>, VaultError> {
        let table = if auth { &self.auth_factories } else { &self.factories };
        let f = table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&e.kind)
            .cloned()
            .ok_or_else(|| {
                let kinds: Vec<String> = table
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .cloned()
                    .collect();
                VaultError::BadRequest(format!(
                    "unknown {} type {:?}; available: {}",
                    if auth { "auth method" } else { "secrets engine" },
                    e.kind,
                    kinds.join(", ")
                ))
            })?;
        f(e)
    }

    /// Mount a secrets engine (`auth = false`) or an auth method at `path`, now (outside a request).
    pub fn mount(
        self: &Arc<Self>,
        auth: bool,
        path: &str,
        kind: &str,
        description: &str,
        options: BTreeMap<String, String>,
    ) -> Result<(), VaultError> {
        let st = self.unsealed()?;
        let mut fx = Effects::default();
        self.stage_mount(&st, auth, path, kind, description, options, &mut fx)?;
        fx.apply(&st)
    }

    /// Stage a mount: validated and its engine built now, stored and routable once committed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stage_mount(
        self: &Arc<Self>,
        st: &Arc<Unsealed>,
        auth: bool,
        path: &str,
        kind: &str,
        description: &str,
        options: BTreeMap<String, String>,
        fx: &mut Effects,
    ) -> Result<(), VaultError> {
        let path = format!("{}/", path.trim_matches('/'));
        if path == "/" || path.contains("//") {
            return Err(VaultError::BadRequest(
                "a mount path must be non-empty, e.g. `secret`".into(),
            ));
        }
        if !auth
            && ["sys/", "auth/", "cubbyhole/", "identity/"]
                .iter()
                .any(|r| path.starts_with(r))
        {
            return Err(VaultError::BadRequest(format!(
                "cannot mount at reserved path `{path}`"
            )));
        }
        let entry = MountEntry {
            path: path.clone(),
            kind: kind.into(),
            description: description.into(),
            accessor: format!(
                "{}_{}",
                if auth { format!("auth_{kind}") } else { kind.to_string() },
                short_id()
            ),
            uuid: uuid(),
            options,
            default_lease_ttl: 0,
            max_lease_ttl: 0,
        };
        let backend = self.build(&entry, auth)?;
        let mut next = st.table(auth).read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(other) = next
            .iter()
            .find(|m| m.entry.path.starts_with(&path) || path.starts_with(&m.entry.path))
        {
            return Err(VaultError::BadRequest(format!(
                "path is already in use at {}{}",
                if auth { "auth/" } else { "" },
                other.entry.path
            )));
        }
        next.push(Mount {
            entry: Arc::new(entry),
            backend,
        });
        st.stage_table(auth, next, fx)
    }

    /// Stage an unmount: the table entry and everything the engine stored go in the same commit.
    pub(crate) fn stage_unmount(
        &self,
        st: &Arc<Unsealed>,
        auth: bool,
        path: &str,
        fx: &mut Effects,
    ) -> Result<(), VaultError> {
        let path = format!("{}/", path.trim_matches('/'));
        let mut next = st.table(auth).read().unwrap_or_else(|e| e.into_inner()).clone();
        // Vault answers 204 for a path with nothing mounted.
        let Some(i) = next.iter().position(|m| m.entry.path == path) else {
            return Ok(());
        };
        let m = next.remove(i);
        let prefix = m.entry.storage_prefix(auth);
        for k in st.barrier.list_recursive(&prefix)? {
            fx.delete(k);
        }
        st.stage_table(auth, next, fx)
    }

    /// Stage the audit device table as it is now.
    pub(crate) fn stage_audit_table(&self, fx: &mut Effects) -> Result<(), VaultError> {
        fx.put_json(AUDIT_PATH, &self.audit.configs())
    }

    /// The mount serving `path` (longest prefix), with the path relative to it.
    pub fn route(&self, st: &Unsealed, path: &str) -> Option<(Mount, String)> {
        let (table, rest) = match path.strip_prefix("auth/") {
            Some(r) => (&st.auth, r),
            None => (&st.mounts, path),
        };
        let t = table.read().unwrap_or_else(|e| e.into_inner());
        let with_slash = format!("{rest}/");
        t.iter()
            .filter(|m| rest.starts_with(&m.entry.path) || with_slash == m.entry.path)
            .max_by_key(|m| m.entry.path.len())
            .map(|m| (m.clone(), rest.get(m.entry.path.len()..).unwrap_or("").to_string()))
    }
}
