//! Static roles: an existing database user whose password leakstop owns and rotates, with Vault's paths and
//! shapes (`static-roles/:name`, `static-creds/:name`, `rotate-role/:name`).
//!
//! Creating a static role rotates the user's password at once, so the stored password is one only leakstop
//! knows; after that the server's periodic pass ([`crate::Backend::tick`]) rotates it every `rotation_period`
//! (the next rotation time is stored, so a restart keeps the schedule), and `rotate-role` or a leak report of the
//! current password rotates it now. Deleting a static role forgets it and leaves the user as it is.
//!
//! A rotation never leaves the stored password different from the database's without saying so:
//! 1. the new password is written ahead into the role's record as `pending` (durably, outside any request's
//!    commit, with its leak-index entry);
//! 2. the rotation statements set it in the database, in one transaction;
//! 3. the record is committed: `password` becomes the pending one, `pending` is cleared, the next rotation is
//!    scheduled, the old password's index entry goes.
//!
//! If step 2 fails before its commit, the database kept the old password: `pending` is cleared, the old password
//! stays valid and served, and the rotation is retried with backoff (1 s doubling to 5 minutes). If leakstop
//! stops (or the connection drops while committing) between steps 1 and 3, the record still holds both: the next
//! rotation attempt, the periodic pass or a read of the credentials rolls forward by setting the *pending*
//! password again (setting the same password twice is harmless) and then commits it; until that succeeds a read
//! of the credentials fails rather than serve a password that may be wrong. All steps of one role run under that
//! role's lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::postgres::{self, ApplyError};
use super::statements::Vars;
use super::{Connection, DatabaseBackend, checked, config_key, load, statements_field};
use crate::VaultError::{self, BadRequest, Upstream};
use crate::engine::{Store, StoredMatch, unix_seconds};
use crate::fields::Fields;
use crate::{LogicalRequest, LogicalResponse};

/// Vault's shortest `rotation_period`.
const MIN_PERIOD: u64 = 5;
/// Vault's default static rotation.
const DEFAULT_ROTATION: &str = r#"ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}';"#;
const RETRY_FIRST: i64 = 1;
const RETRY_CAP: i64 = 300;

pub(super) const PREFIX: &str = "static-role/";
/// Keyed hash of a static role's password (current or pending) → the role's name, for leak reports.
const INDEX: &str = "static-index/";

pub(super) fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// A stored static role. No `Debug`: it holds the user's password.
#[derive(Clone, Serialize, Deserialize)]
struct StaticRole {
    db_name: String,
    username: String,
    rotation_period: u64,
    rotation_statements: Vec<String>,
    /// The password the database has (empty until the first rotation is committed).
    password: String,
    /// Written ahead of a rotation; set while the database may have it instead of `password`.
    #[serde(default)]
    pending: Option<String>,
    last_rotation: i64,
    next_rotation: i64,
    /// Failed rotations in a row (reset by a successful one).
    #[serde(default)]
    failures: u32,
    #[serde(default)]
    last_error: Option<String>,
}

impl StaticRole {
    fn statements(&self) -> Vec<String> {
        if self.rotation_statements.is_empty() {
            vec![DEFAULT_ROTATION.to_string()]
        } else {
            self.rotation_statements.clone()
        }
    }

    /// Whether the periodic pass has work for this role at `now`: its rotation is due, or a rotation was left
    /// half done (by a stop) and has not failed since.
    fn due(&self, now: i64) -> bool {
        self.next_rotation <= now || (self.pending.is_some() && self.failures == 0)
    }
}

/// Retry delay after the `failures`-th failed rotation in a row.
fn backoff(failures: u32) -> i64 {
    let shift = failures.saturating_sub(1).min(16);
    (RETRY_FIRST << shift).min(RETRY_CAP)
}

fn rfc3339(t: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Per-role locks and the periodic pass's last scan.
#[derive(Default)]
pub(super) struct StaticState {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    last_scan: Mutex<i64>,
}

impl StaticState {
    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        m.lock_owned().await
    }
}

async fn index_put(store: &dyn Store, password: &str, name: &str) -> Result<(), VaultError> {
    let k = format!("{INDEX}{}", store.keyed_hash(password.as_bytes())?);
    store.put_now(&k, name.as_bytes()).await
}

async fn index_delete(store: &dyn Store, password: &str) -> Result<(), VaultError> {
    let k = format!("{INDEX}{}", store.keyed_hash(password.as_bytes())?);
    store.delete_now(&k).await
}

async fn save(store: &dyn Store, name: &str, role: &StaticRole) -> Result<(), VaultError> {
    store.put_now(&key(name), &serde_json::to_vec(role)?).await
}

impl DatabaseBackend {
    /// The connection a static role uses, checked against its `allowed_roles`.
    async fn static_connection(&self, name: &str, db_name: &str, store: &dyn Store) -> Result<Connection, VaultError> {
        let conn: Connection = load(store, &config_key(db_name)).await?.ok_or_else(|| {
            BadRequest(format!(
                "static role {name:?} uses connection {db_name:?}, which does not exist: write database/config/{db_name}"
            ))
        })?;
        if !conn.allows(name) {
            return Err(BadRequest(format!(
                "static role {name:?} is not allowed by connection {db_name:?}: add it to the connection's allowed_roles"
            )));
        }
        Ok(conn)
    }

    #[tracing::instrument(name = "database.static_role.write", skip_all)]
    pub(super) async fn write_static_role(
        &self,
        name: &str,
        req: &LogicalRequest,
        store: &dyn Store,
    ) -> Result<LogicalResponse, VaultError> {
        let now = req.now_unix();
        let _g = self.statics.lock(name).await;
        let old: Option<StaticRole> = load(store, &key(name)).await?;
        let mut f = Fields::new(&req.data);
        let db_name = f.text("db_name")?;
        let username = f.text("username")?;
        let rotation_period = f.duration("rotation_period")?;
        let rotation_statements = statements_field(&mut f, "rotation_statements")?;
        if let Some(t) = f.text("credential_type")?
            && t != "password"
        {
            return Err(BadRequest(format!(
                "credential_type {t:?} is not supported: PostgreSQL static roles rotate passwords"
            )));
        }
        // Vault's fields this engine has no use for: accepted so clients that send them keep working.
        f.accept(&["credential_config", "rotation_schedule", "rotation_window"]);
        f.finish()?;
        if rotation_period.is_some_and(|p| p < MIN_PERIOD) {
            return Err(BadRequest(format!(
                "rotation_period must be at least {MIN_PERIOD} seconds"
            )));
        }
        if let Some(mut role) = old {
            // An update: the user and its connection are what the role is; they do not change under it.
            if db_name.as_ref().is_some_and(|d| *d != role.db_name) {
                return Err(BadRequest(
                    "db_name of a static role cannot be changed: delete and create it".into(),
                ));
            }
            if username.as_ref().is_some_and(|u| *u != role.username) {
                return Err(BadRequest(
                    "username of a static role cannot be changed: delete and create it".into(),
                ));
            }
            self.static_connection(name, &role.db_name, store).await?;
            if let Some(p) = rotation_period {
                role.rotation_period = p;
                if role.failures == 0 {
                    role.next_rotation = role.last_rotation.saturating_add(secs(p));
                }
            }
            if let Some(s) = rotation_statements {
                role.rotation_statements = s;
            }
            save(store, name, &role).await?;
            return Ok(LogicalResponse::no_content());
        }
        let db_name = db_name.ok_or_else(|| {
            BadRequest("field `db_name` is required: the name of a database/config connection".into())
        })?;
        checked("connection", &db_name)?;
        let username = username
            .ok_or_else(|| BadRequest("field `username` is required: the existing database user to manage".into()))?;
        let rotation_period = rotation_period.ok_or_else(|| {
            BadRequest(format!(
                "field `rotation_period` is required (at least {MIN_PERIOD} seconds, e.g. \"24h\")"
            ))
        })?;
        let conn = self.static_connection(name, &db_name, store).await?;
        if username == conn.username {
            return Err(BadRequest(format!(
                "{username:?} is the user connection {db_name:?} logs in as: rotate it with database/rotate-root/{db_name}"
            )));
        }
        let role = StaticRole {
            db_name,
            username,
            rotation_period,
            rotation_statements: rotation_statements.unwrap_or_default(),
            password: String::new(),
            pending: None,
            last_rotation: now,
            next_rotation: now,
            failures: 0,
            last_error: None,
        };
        match self.rotate_locked(name, role, &conn, store, now).await {
            Ok(_) => Ok(LogicalResponse::no_content()),
            Err((applied, e)) => {
                if !applied {
                    // The user's password never changed: no role is left behind.
                    store.delete_now(&key(name)).await?;
                }
                Err(BadRequest(format!(
                    "static role {name:?}: setting the first password failed{}: {e}",
                    if applied {
                        "; the role is kept and the rotation retried"
                    } else {
                        ", so nothing was stored"
                    }
                )))
            }
        }
    }

    pub(super) async fn read_static_role(
        &self,
        name: &str,
        now: i64,
        store: &dyn Store,
    ) -> Result<LogicalResponse, VaultError> {
        let r: StaticRole = load(store, &key(name)).await?.ok_or(VaultError::NotFound)?;
        Ok(LogicalResponse::data(json!({
            "db_name": r.db_name,
            "username": r.username,
            "rotation_period": r.rotation_period,
            "rotation_statements": r.rotation_statements,
            "credential_type": "password",
            "credential_config": {},
            "last_vault_rotation": rfc3339(r.last_rotation),
            "ttl": r.next_rotation.saturating_sub(now).max(0),
            "last_rotation_error": r.last_error,
        })))
    }

    pub(super) async fn delete_static_role(
        &self,
        name: &str,
        store: &dyn Store,
    ) -> Result<LogicalResponse, VaultError> {
        let _g = self.statics.lock(name).await;
        if let Some(r) = load::<StaticRole>(store, &key(name)).await? {
            for p in std::iter::once(&r.password)
                .chain(r.pending.iter())
                .filter(|p| !p.is_empty())
            {
                index_delete(store, p).await?;
            }
            store.delete_now(&key(name)).await?;
        }
        Ok(LogicalResponse::no_content())
    }

    #[tracing::instrument(name = "database.static_creds", skip_all)]
    pub(super) async fn static_creds(
        &self,
        name: &str,
        now: i64,
        store: &dyn Store,
    ) -> Result<LogicalResponse, VaultError> {
        let _g = self.statics.lock(name).await;
        let mut role: StaticRole = load(store, &key(name)).await?.ok_or_else(|| {
            BadRequest(format!(
                "unknown static role {name:?}: write database/static-roles/{name} first"
            ))
        })?;
        let conn = self.static_connection(name, &role.db_name, store).await?;
        if role.pending.is_some() {
            // A rotation was left half done: settle it before answering.
            role = self.rotate_locked(name, role, &conn, store, now).await.map_err(|(_, e)| {
                Upstream(format!(
                    "static role {name:?} has a rotation to finish and the database refused it: {e}; retried in the background"
                ))
            })?;
        }
        Ok(LogicalResponse::data(json!({
            "username": role.username,
            "password": role.password,
            "last_vault_rotation": rfc3339(role.last_rotation),
            "rotation_period": role.rotation_period,
            "ttl": role.next_rotation.saturating_sub(now).max(0),
        })))
    }

    /// `rotate-role/:name`: a new password now.
    #[tracing::instrument(name = "database.rotate_role", skip_all)]
    pub(super) async fn rotate_role(
        &self,
        name: &str,
        now: i64,
        store: &dyn Store,
    ) -> Result<LogicalResponse, VaultError> {
        let _g = self.statics.lock(name).await;
        let role: StaticRole = load(store, &key(name)).await?.ok_or_else(|| {
            BadRequest(format!(
                "unknown static role {name:?}: write database/static-roles/{name} first"
            ))
        })?;
        let conn = self.static_connection(name, &role.db_name, store).await?;
        self.rotate_locked(name, role, &conn, store, now).await.map_err(|(_, e)| {
            Upstream(format!(
                "rotating static role {name:?} failed (its current password still works; retried in the background): {e}"
            ))
        })?;
        Ok(LogicalResponse::no_content())
    }

    /// One rotation of `role` under its lock (the write-ahead protocol of the module doc). On failure: whether
    /// the database may hold the new password (it stays pending), and why.
    async fn rotate_locked(
        &self,
        name: &str,
        mut role: StaticRole,
        conn: &Connection,
        store: &dyn Store,
        now: i64,
    ) -> Result<StaticRole, (bool, String)> {
        // Nothing reached the database yet when writing ahead fails.
        let internal = |e: VaultError| (false, e.to_string());
        let new = match &role.pending {
            Some(p) => Zeroizing::new(p.clone()),
            None => {
                let p = Zeroizing::new(leakstop_proto::token::mint(leakstop_proto::token::Kind::Dynamic));
                role.pending = Some(p.to_string());
                index_put(store, &p, name).await.map_err(internal)?;
                save(store, name, &role).await.map_err(internal)?;
                p
            }
        };
        let host = postgres::host_of(&conn.connection_url);
        let password_sql = conn.password_sql(&new);
        let vars = Vars {
            username: &role.username,
            password: Some(&password_sql),
            expiration: None,
        };
        let result = match self
            .client(&role.db_name, conn, "to rotate a static role's password")
            .await
        {
            Ok(mut client) => postgres::apply_password(&mut client, &role.statements(), &vars).await,
            Err(e) => Err(ApplyError::NotApplied(e.to_string())),
        };
        match result {
            Ok(()) => {
                let old = std::mem::replace(&mut role.password, new.to_string());
                role.pending = None;
                role.last_rotation = now;
                role.next_rotation = now.saturating_add(secs(role.rotation_period));
                role.failures = 0;
                role.last_error = None;
                save(store, name, &role).await.map_err(|e| (true, e.to_string()))?;
                if !old.is_empty() && old != role.password {
                    index_delete(store, &old).await.map_err(|e| (false, e.to_string()))?;
                }
                tracing::info!(role = name, "static role password rotated");
                Ok(role)
            }
            Err(e) => {
                let (applied, msg) = match e {
                    ApplyError::NotApplied(m) => (false, m),
                    ApplyError::Uncertain(m) => (true, m),
                };
                let msg = format!("at {host}: {msg}");
                if !applied && let Some(p) = role.pending.take() {
                    let _ = index_delete(store, &p).await;
                }
                role.failures = role.failures.saturating_add(1);
                role.next_rotation = now.saturating_add(backoff(role.failures));
                role.last_error = Some(msg.clone());
                tracing::warn!(role = name, failures = role.failures, error = %msg, "static role rotation failed; retried with backoff");
                save(store, name, &role).await.map_err(|e| (applied, e.to_string()))?;
                Err((applied, msg))
            }
        }
    }

    /// The periodic pass: every static role whose rotation is due (or was left half done) is rotated. Scans at
    /// most once per second of `now`.
    pub(super) async fn tick_static(&self, now: SystemTime, store: &dyn Store) -> Result<(), VaultError> {
        let now = unix_seconds(now);
        {
            let mut last = self.statics.last_scan.lock().unwrap_or_else(|e| e.into_inner());
            if *last == now {
                return Ok(());
            }
            *last = now;
        }
        for name in store.list(PREFIX).await? {
            let Some(r) = load::<StaticRole>(store, &key(&name)).await? else {
                continue;
            };
            if !r.due(now) {
                continue;
            }
            let _g = self.statics.lock(&name).await;
            // Again under the lock: a request may have rotated it meanwhile.
            let Some(r) = load::<StaticRole>(store, &key(&name)).await? else {
                continue;
            };
            if !r.due(now) {
                continue;
            }
            let conn: Connection = match load(store, &config_key(&r.db_name)).await? {
                Some(c) => c,
                None => {
                    // Recorded like any failed rotation, so it is retried with backoff rather than every pass.
                    let mut r = r;
                    r.failures = r.failures.saturating_add(1);
                    r.next_rotation = now.saturating_add(backoff(r.failures));
                    let msg = format!(
                        "connection {:?} does not exist: write database/config/{}",
                        r.db_name, r.db_name
                    );
                    tracing::warn!(role = %name, error = %msg, "static role not rotated");
                    r.last_error = Some(msg);
                    save(store, &name, &r).await?;
                    continue;
                }
            };
            // Failures are recorded on the role and retried with backoff.
            let _ = self.rotate_locked(&name, r, &conn, store, now).await;
        }
        Ok(())
    }

    /// A leak report of a static role's password (current or pending): rotate it now, or as soon as the
    /// database lets us.
    pub(super) async fn static_leaked(
        &self,
        value: &str,
        now: SystemTime,
        store: &dyn Store,
    ) -> Result<Vec<StoredMatch>, VaultError> {
        if leakstop_proto::token::parse(value.as_bytes()) != Some(leakstop_proto::token::Kind::Dynamic) {
            return Ok(Vec::new());
        }
        let index = format!("{INDEX}{}", store.keyed_hash(value.as_bytes())?);
        let Some(name) = store.get(&index).await? else {
            return Ok(Vec::new());
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        let now = unix_seconds(now);
        let _g = self.statics.lock(&name).await;
        let Some(mut role) = load::<StaticRole>(store, &key(&name)).await? else {
            return Ok(Vec::new());
        };
        if role.password != value && role.pending.as_deref() != Some(value) {
            return Ok(Vec::new());
        }
        role.next_rotation = now;
        role.failures = 0;
        save(store, &name, &role).await?;
        match self.static_connection(&name, &role.db_name, store).await {
            Ok(conn) => {
                let mut result = self.rotate_locked(&name, role, &conn, store, now).await;
                // The leaked password was the pending one: settling it set it, so once more for a fresh one.
                if let Ok(r) = &result
                    && r.password == value
                {
                    result = self.rotate_locked(&name, r.clone(), &conn, store, now).await;
                }
                if let Err((_, e)) = result {
                    tracing::warn!(role = %name, error = %e, "rotating a leaked static password failed; retried in the background");
                }
            }
            Err(e) => tracing::warn!(role = %name, error = %e, "a leaked static password cannot be rotated now"),
        }
        Ok(vec![StoredMatch {
            path: format!("static-creds/{name}"),
            version: 0,
            rotated: true,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(next_rotation: i64, pending: Option<&str>, failures: u32) -> StaticRole {
        StaticRole {
            db_name: "pg".into(),
            username: "u".into(),
            rotation_period: 60,
            rotation_statements: vec![],
            password: "old".into(),
            pending: pending.map(String::from),
            last_rotation: 0,
            next_rotation,
            failures,
            last_error: None,
        }
    }

    #[test]
    fn a_rotation_is_due_on_schedule_or_when_left_half_done_but_failures_back_off() {
        assert!(!role(100, None, 0).due(99));
        assert!(role(100, None, 0).due(100));
        assert!(
            role(100, Some("p"), 0).due(10),
            "a write-ahead left by a stop is settled at once"
        );
        assert!(
            !role(100, Some("p"), 1).due(10),
            "an uncertain failure waits for its retry time"
        );
        let d: Vec<i64> = (1..=11).map(backoff).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(role(0, None, 0).statements(), vec![DEFAULT_ROTATION.to_string()]);
    }
}
