//! The `database` secrets engine for PostgreSQL, with Vault's paths and shapes so hvac's
//! `client.secrets.database` and the `bao`/`vault` CLI work unchanged.
//!
//! - `config/:name`: a connection (`plugin_name=postgresql-database-plugin`, a `connection_url` with
//!   `{{username}}`/`{{password}}` templates, `username`, `password`, `allowed_roles` globs). The connection is
//!   tried before anything is stored unless `verify_connection=false`; the password is never read back.
//! - `roles/:name`: which connection and which statements create (and optionally revoke) a user.
//! - `creds/:name`: a new user, created by the role's statements in one transaction, with a `lksd_` password (a
//!   leakstop credential, so the scanner finds it if it leaks), leased to the caller's token.
//! - `static-roles/:name`, `static-creds/:name`, `rotate-role/:name`: an existing user whose password leakstop
//!   owns and rotates on a schedule (`static_roles.rs` documents how a rotation survives a stop).
//!
//! A lease keeps what revoking needs (the connection's name, the user, the role's revocation statements), so
//! deleting the role does not strand it; a deleted connection is kept aside for the leases that still need it.
//! Revocation without custom statements leaves nothing behind: no new logins, sessions terminated, owned objects
//! reassigned, privileges and the role dropped; a user that is already gone counts as revoked.

mod postgres;
mod statements;
mod static_roles;

use std::sync::Arc;

use globset::Glob;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::VaultError::{BadRequest, Upstream};
use crate::engine::{NewLease, Store};
use crate::engines::roles::valid_name;
use crate::fields::Fields;
use crate::leases::Lease;
use crate::{Backend, BackendFuture, LogicalRequest, LogicalResponse, Operation, VaultError};

use statements::Vars;

const PLUGIN: &str = "postgresql-database-plugin";
/// The lease of a role without `default_ttl`.
const DEFAULT_TTL: u64 = 3600;
/// PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1).
const MAX_USERNAME: usize = 63;
/// Vault's default `max_open_connections`.
const DEFAULT_MAX_OPEN: usize = 4;
/// Vault's default renewal: move the user's `VALID UNTIL`, which PostgreSQL enforces at login.
const DEFAULT_RENEW: &str = r#"ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';"#;
/// Vault's default root rotation.
const DEFAULT_ROOT_ROTATION: &str = r#"ALTER USER "{{username}}" WITH PASSWORD '{{password}}';"#;

/// A stored connection. No `Debug`: it holds the connection's password.
#[derive(Clone, Serialize, Deserialize)]
struct Connection {
    plugin_name: String,
    connection_url: String,
    username: String,
    password: String,
    allowed_roles: Vec<String>,
    verify_connection: bool,
    /// Who receives what a revoked user owned; `None`: the connection's own user.
    #[serde(default)]
    reassign_owned_to: Option<String>,
    #[serde(default)]
    root_rotation_statements: Vec<String>,
    #[serde(default = "default_max_open")]
    max_open_connections: usize,
    /// `scram-sha-256`: passwords reach the server as SCRAM verifiers, never in clear.
    #[serde(default)]
    scram: bool,
    /// PBKDF2 iterations of those verifiers (PostgreSQL's and RFC 7677's 4096 unless configured).
    #[serde(default = "default_scram_iterations")]
    scram_iterations: u32,
}

fn default_max_open() -> usize {
    DEFAULT_MAX_OPEN
}

fn default_scram_iterations() -> u32 {
    postgres::SCRAM_ITERATIONS
}

impl Connection {
    fn target(&self) -> postgres::Target<'_> {
        postgres::Target {
            connection_url: &self.connection_url,
            username: &self.username,
            password: &self.password,
        }
    }

    /// What `{{password}}` becomes in a statement: the password, or its SCRAM-SHA-256 verifier (computed here, so
    /// the clear password is in no statement, server log or `pg_stat_activity`).
    fn password_sql(&self, password: &str) -> Zeroizing<String> {
        Zeroizing::new(if self.scram {
            postgres::scram_verifier(password, self.scram_iterations)
        } else {
            password.to_string()
        })
    }

    fn allows(&self, role: &str) -> bool {
        self.allowed_roles.iter().any(|pattern| {
            pattern == "*"
                || pattern == role
                || Glob::new(pattern)
                    .map(|g| g.compile_matcher().is_match(role))
                    .unwrap_or(false)
        })
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct DbRole {
    db_name: String,
    creation_statements: Vec<String>,
    #[serde(default)]
    revocation_statements: Vec<String>,
    #[serde(default)]
    rollback_statements: Vec<String>,
    #[serde(default)]
    renew_statements: Vec<String>,
    default_ttl: u64,
    max_ttl: u64,
}

/// What a lease keeps to revoke its user.
#[derive(Serialize, Deserialize)]
struct Issued {
    connection: String,
    username: String,
    #[serde(default)]
    revocation_statements: Vec<String>,
    /// The role's renewal statements at issue time (renewal works after the role is deleted).
    #[serde(default)]
    renew_statements: Vec<String>,
}

fn config_key(name: &str) -> String {
    format!("config/{name}")
}

/// Where a deleted connection waits for the leases issued through it.
fn retired_key(name: &str) -> String {
    format!("retired/{name}")
}

fn role_key(name: &str) -> String {
    format!("role/{name}")
}

fn checked(kind: &str, name: &str) -> Result<(), VaultError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(BadRequest(format!(
            "invalid {kind} name {name:?}: use 1 to 128 of A-Z a-z 0-9 _ . @ - (not \".\" or \"..\")"
        )))
    }
}

async fn load<T: serde::de::DeserializeOwned>(store: &dyn Store, key: &str) -> Result<Option<T>, VaultError> {
    store
        .get(key)
        .await?
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .map_err(VaultError::from)
}

fn statements_field(f: &mut Fields<'_>, field: &'static str) -> Result<Option<Vec<String>>, VaultError> {
    f.raw(field).map(|v| statements::parse(v, field)).transpose()
}

/// Vault's default username shape: `v-<display>-<role>-<20 random>-<unix time>`, at most 63 bytes. The engine
/// does not see the token's display name, so `<display>` is `token`.
fn username(role: &str, now: i64) -> String {
    const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    let random: String = (0..20)
        .map(|_| char::from(ALNUM.get(rng.gen_range(0..ALNUM.len())).copied().unwrap_or(b'x')))
        .collect();
    let role: String = role.chars().take(8).collect();
    let mut name = format!("v-token-{role}-{random}-{now}");
    while name.len() > MAX_USERNAME {
        name.pop();
    }
    name
}

/// Vault's `{{expiration}}` format (`2006-01-02 15:04:05-0700`), in UTC.
fn expiration(unix: i64) -> Result<String, VaultError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]+0000");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .ok_or_else(|| VaultError::Internal("the lease expiry is out of range".into()))
}

pub struct DatabaseBackend {
    pools: postgres::Pools,
    statics: static_roles::StaticState,
}

/// A connection by name: the stored one, or the one a deleted connection left for its leases.
async fn connection_for_lease(store: &dyn Store, name: &str) -> Result<Connection, VaultError> {
    match load(store, &config_key(name)).await? {
        Some(c) => Ok(c),
        None => load(store, &retired_key(name)).await?.ok_or_else(|| {
            Upstream(format!(
                "connection {name:?} is gone: write database/config/{name} again so its leases can be revoked"
            ))
        }),
    }
}

impl DatabaseBackend {
    pub fn new() -> Arc<DatabaseBackend> {
        Arc::new(DatabaseBackend {
            pools: postgres::Pools::default(),
            statics: static_roles::StaticState::default(),
        })
    }

    /// A pooled connection to `conn` (stored as `name`); `purpose` says why, for the error.
    async fn client(&self, name: &str, conn: &Connection, purpose: &str) -> Result<postgres::Pooled, VaultError> {
        self.pools
            .get(name, &conn.target(), conn.max_open_connections)
            .await
            .map_err(|e| {
                Upstream(format!(
                    "could not connect to the database at {} {purpose}: {e}",
                    postgres::host_of(&conn.connection_url)
                ))
            })
    }

    #[tracing::instrument(name = "database.config", skip_all)]
    async fn write_config(&self, name: &str, data: &Map<String, Value>, store: &dyn Store) -> Result<(), VaultError> {
        let old: Option<Connection> = load(store, &config_key(name)).await?;
        let mut f = Fields::new(data);
        let plugin_name = f
            .text("plugin_name")?
            .or_else(|| old.as_ref().map(|o| o.plugin_name.clone()))
            .ok_or_else(|| VaultError::bad(format!("field `plugin_name` is required: use {PLUGIN}")))?;
        if plugin_name != PLUGIN {
            return Err(VaultError::bad(format!(
                "plugin_name {plugin_name:?} is not supported: this engine speaks PostgreSQL ({PLUGIN})"
            )));
        }
        let connection_url = f
            .text("connection_url")?
            .or_else(|| old.as_ref().map(|o| o.connection_url.clone()))
            .ok_or_else(|| {
                VaultError::bad(
                    "field `connection_url` is required, e.g. postgresql://{{username}}:{{password}}@db:5432/postgres",
                )
            })?;
        let username = f
            .text("username")?
            .or_else(|| old.as_ref().map(|o| o.username.clone()))
            .unwrap_or_default();
        let password = f
            .text("password")?
            .or_else(|| old.as_ref().map(|o| o.password.clone()))
            .unwrap_or_default();
        let password = Zeroizing::new(password);
        let allowed_roles = f
            .list("allowed_roles")?
            .or_else(|| old.as_ref().map(|o| o.allowed_roles.clone()))
            .unwrap_or_default();
        let verify_connection = f.bool("verify_connection")?.unwrap_or(true);
        let reassign_owned_to = match f.string("reassign_owned_to")? {
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s),
            None => old.as_ref().and_then(|o| o.reassign_owned_to.clone()),
        };
        let root_rotation_statements = statements_field(&mut f, "root_rotation_statements")?
            .or_else(|| old.as_ref().map(|o| o.root_rotation_statements.clone()))
            .unwrap_or_default();
        let max_open_connections = match f.u64("max_open_connections")? {
            Some(0) => DEFAULT_MAX_OPEN,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => old.as_ref().map_or(DEFAULT_MAX_OPEN, |o| o.max_open_connections),
        };
        let scram = match f.text("password_authentication")?.as_deref() {
            None => old.as_ref().is_some_and(|o| o.scram),
            Some("password") => false,
            Some("scram-sha-256") => true,
            Some(other) => {
                return Err(VaultError::bad(format!(
                    "password_authentication {other:?} is not supported: use \"password\" or \"scram-sha-256\""
                )));
            }
        };
        let scram_iterations = match f.u64("scram_iterations")? {
            Some(n) if !scram => {
                return Err(VaultError::bad(format!(
                    "scram_iterations={n} applies to SCRAM verifiers only: also set \
                     password_authentication = \"scram-sha-256\""
                )));
            }
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=postgres::MAX_SCRAM_ITERATIONS).contains(n))
                .ok_or_else(|| {
                    VaultError::bad(format!(
                        "scram_iterations={n} is out of range: use 1 to {} (default {})",
                        postgres::MAX_SCRAM_ITERATIONS,
                        postgres::SCRAM_ITERATIONS
                    ))
                })?,
            None => old.as_ref().map_or(postgres::SCRAM_ITERATIONS, |o| o.scram_iterations),
        };
        // Vault's pool tuning: accepted for compatibility, the pool here keeps idle connections until reset.
        f.accept(&["max_idle_connections", "max_connection_lifetime"]);
        f.finish()?;
        if connection_url.contains("{{username}}") && username.is_empty() {
            return Err(VaultError::bad(
                "connection_url uses {{username}}: set `username` to the user leakstop connects as",
            ));
        }
        if connection_url.contains("{{password}}") && password.is_empty() {
            return Err(VaultError::bad(
                "connection_url uses {{password}}: set `password` for the user leakstop connects as",
            ));
        }
        for pattern in allowed_roles.iter().filter(|p| p.as_str() != "*") {
            Glob::new(pattern)
                .map_err(|e| VaultError::bad(format!("allowed_roles: {pattern:?} is not a glob: {e}")))?;
        }
        let conn = Connection {
            plugin_name,
            connection_url,
            username,
            password: password.to_string(),
            allowed_roles,
            verify_connection,
            reassign_owned_to,
            root_rotation_statements,
            max_open_connections,
            scram,
            scram_iterations,
        };
        if verify_connection {
            let client = postgres::connect(&conn.target()).await.map_err(|e| {
                VaultError::bad(format!(
                    "could not verify the connection to {}: {e}; nothing was stored (fix the connection, or write \
                     verify_connection=false to store it untested)",
                    postgres::host_of(&conn.connection_url)
                ))
            })?;
            client.simple_query("SELECT 1").await.map_err(|e| {
                VaultError::bad(format!(
                    "the connection to {} does not answer queries: {}; nothing was stored",
                    postgres::host_of(&conn.connection_url),
                    postgres::describe(&e, &[&conn.password])
                ))
            })?;
        }
        self.pools.reset(name);
        store.put(&config_key(name), &serde_json::to_vec(&conn)?).await
    }

    async fn read_config(&self, name: &str, store: &dyn Store) -> Result<LogicalResponse, VaultError> {
        let c: Connection = load(store, &config_key(name)).await?.ok_or(VaultError::NotFound)?;
        Ok(LogicalResponse::data(json!({
            "plugin_name": c.plugin_name,
            "plugin_version": "",
            "connection_details": {
                "connection_url": c.connection_url,
                "username": c.username,
            },
            "allowed_roles": c.allowed_roles,
            "verify_connection": c.verify_connection,
            "reassign_owned_to": c.reassign_owned_to,
            "root_credentials_rotate_statements": c.root_rotation_statements,
            "max_open_connections": c.max_open_connections,
            "password_authentication": if c.scram { "scram-sha-256" } else { "password" },
            "scram_iterations": c.scram_iterations,
            "password_policy": "",
        })))
    }

    async fn delete_config(&self, name: &str, store: &dyn Store) -> Result<LogicalResponse, VaultError> {
        if let Some(b) = store.get(&config_key(name)).await? {
            // Leases issued through it still need it to be revoked.
            store.put(&retired_key(name), &b).await?;
            store.delete(&config_key(name)).await?;
            self.pools.reset(name);
        }
        Ok(LogicalResponse::no_content())
    }

    async fn write_role(&self, name: &str, data: &Map<String, Value>, store: &dyn Store) -> Result<(), VaultError> {
        let old: Option<DbRole> = load(store, &role_key(name)).await?;
        let mut f = Fields::new(data);
        let db_name = f
            .text("db_name")?
            .or_else(|| old.as_ref().map(|o| o.db_name.clone()))
            .ok_or_else(|| VaultError::bad("field `db_name` is required: the name of a database/config connection"))?;
        let creation_statements = statements_field(&mut f, "creation_statements")?
            .or_else(|| old.as_ref().map(|o| o.creation_statements.clone()))
            .unwrap_or_default();
        let revocation_statements = statements_field(&mut f, "revocation_statements")?
            .or_else(|| old.as_ref().map(|o| o.revocation_statements.clone()))
            .unwrap_or_default();
        let rollback_statements = statements_field(&mut f, "rollback_statements")?
            .or_else(|| old.as_ref().map(|o| o.rollback_statements.clone()))
            .unwrap_or_default();
        let renew_statements = statements_field(&mut f, "renew_statements")?
            .or_else(|| old.as_ref().map(|o| o.renew_statements.clone()))
            .unwrap_or_default();
        let default_ttl = f
            .duration("default_ttl")?
            .or(old.as_ref().map(|o| o.default_ttl))
            .unwrap_or(0);
        let max_ttl = f.duration("max_ttl")?.or(old.as_ref().map(|o| o.max_ttl)).unwrap_or(0);
        f.accept(&["credential_type"]);
        if let Some(t) = f.text("credential_type")?
            && t != "password"
        {
            return Err(VaultError::bad(format!(
                "credential_type {t:?} is not supported: PostgreSQL roles issue passwords"
            )));
        }
        f.finish()?;
        checked("connection", &db_name)?;
        if creation_statements.is_empty() {
            return Err(VaultError::bad(
                "field `creation_statements` is required, e.g. CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD \
                 '{{password}}' VALID UNTIL '{{expiration}}';",
            ));
        }
        if max_ttl > 0 && default_ttl > max_ttl {
            return Err(VaultError::bad("default_ttl cannot be longer than max_ttl"));
        }
        let role = DbRole {
            db_name,
            creation_statements,
            revocation_statements,
            rollback_statements,
            renew_statements,
            default_ttl,
            max_ttl,
        };
        store.put(&role_key(name), &serde_json::to_vec(&role)?).await
    }

    async fn read_role(&self, name: &str, store: &dyn Store) -> Result<LogicalResponse, VaultError> {
        let r: DbRole = load(store, &role_key(name)).await?.ok_or(VaultError::NotFound)?;
        Ok(LogicalResponse::data(json!({
            "db_name": r.db_name,
            "creation_statements": r.creation_statements,
            "revocation_statements": r.revocation_statements,
            "rollback_statements": r.rollback_statements,
            "renew_statements": r.renew_statements,
            "default_ttl": r.default_ttl,
            "max_ttl": r.max_ttl,
            "credential_type": "password",
        })))
    }

    #[tracing::instrument(name = "database.creds", skip_all)]
    async fn creds(
        &self,
        req: &LogicalRequest,
        role_name: &str,
        store: &dyn Store,
    ) -> Result<LogicalResponse, VaultError> {
        Fields::new(&req.data).finish()?;
        let role: DbRole = load(store, &role_key(role_name)).await?.ok_or_else(|| {
            BadRequest(format!(
                "unknown role {role_name:?}: write database/roles/{role_name} first"
            ))
        })?;
        let conn: Connection = load(store, &config_key(&role.db_name)).await?.ok_or_else(|| {
            BadRequest(format!(
                "role {role_name:?} uses connection {:?}, which does not exist: write database/config/{}",
                role.db_name, role.db_name
            ))
        })?;
        if !conn.allows(role_name) {
            return Err(BadRequest(format!(
                "role {role_name:?} is not allowed by connection {:?}: add it to the connection's allowed_roles",
                role.db_name
            )));
        }
        let mut ttl = if role.default_ttl > 0 {
            role.default_ttl
        } else {
            DEFAULT_TTL
        };
        if role.max_ttl > 0 {
            ttl = ttl.min(role.max_ttl);
        }
        let now = req.now_unix();
        let expires = expiration(now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)))?;
        let user = username(role_name, now);
        let password = Zeroizing::new(leakstop_proto::token::mint(leakstop_proto::token::Kind::Dynamic));
        let host = postgres::host_of(&conn.connection_url);
        let mut client = self.client(&role.db_name, &conn, "to create a user").await?;
        let password_sql = conn.password_sql(&password);
        let vars = Vars {
            username: &user,
            password: Some(&password_sql),
            expiration: Some(&expires),
        };
        postgres::run_in_transaction(&mut client, &role.creation_statements, &vars)
            .await
            .map_err(|e| {
                BadRequest(format!(
                    "the creation statements of role {role_name:?} failed at {host} and were rolled back: {e}"
                ))
            })?;
        let issued = Issued {
            connection: role.db_name.clone(),
            username: user.clone(),
            revocation_statements: role.revocation_statements.clone(),
            renew_statements: role.renew_statements.clone(),
        };
        Ok(LogicalResponse {
            data: Some(json!({ "username": user, "password": password.as_str() })),
            lease: Some(NewLease {
                ttl,
                max_ttl: role.max_ttl,
                renewable: true,
                internal: serde_json::to_value(&issued)?,
                credential: Some(password),
            }),
            ..Default::default()
        })
    }

    #[tracing::instrument(name = "database.revoke", skip_all)]
    async fn revoke_issued(&self, issued: &Issued, store: &dyn Store) -> Result<(), VaultError> {
        let conn = connection_for_lease(store, &issued.connection).await?;
        let host = postgres::host_of(&conn.connection_url);
        let mut client = self.client(&issued.connection, &conn, "to revoke a user").await?;
        let result = if issued.revocation_statements.is_empty() {
            postgres::drop_user(&mut client, &issued.username, conn.reassign_owned_to.as_deref()).await
        } else {
            let vars = Vars {
                username: &issued.username,
                password: None,
                expiration: None,
            };
            postgres::run_in_transaction(&mut client, &issued.revocation_statements, &vars).await
        };
        result.map_err(|e| {
            Upstream(format!(
                "revoking database user {} at {host} failed: {e}",
                issued.username
            ))
        })
    }

    /// Move the user's validity to `new_expire`: the statements the role had when the user was issued, or
    /// `ALTER ROLE ... VALID UNTIL`.
    #[tracing::instrument(name = "database.renew", skip_all)]
    async fn renew_issued(&self, issued: &Issued, new_expire: i64, store: &dyn Store) -> Result<(), VaultError> {
        let conn = connection_for_lease(store, &issued.connection).await?;
        let host = postgres::host_of(&conn.connection_url);
        let mut client = self.client(&issued.connection, &conn, "to renew a user").await?;
        let expires = expiration(new_expire)?;
        let default = [DEFAULT_RENEW.to_string()];
        let stmts = if issued.renew_statements.is_empty() {
            &default[..]
        } else {
            &issued.renew_statements[..]
        };
        let vars = Vars {
            username: &issued.username,
            password: None,
            expiration: Some(&expires),
        };
        postgres::run_in_transaction(&mut client, stmts, &vars)
            .await
            .map_err(|e| {
                Upstream(format!(
                    "renewing database user {} at {host} failed (the lease keeps its expiry): {e}",
                    issued.username
                ))
            })
    }

    /// A new root password, set by the connection's rotation statements and stored; the old one stops working.
    #[tracing::instrument(name = "database.rotate_root", skip_all)]
    async fn rotate_root(&self, name: &str, store: &dyn Store) -> Result<(), VaultError> {
        let mut conn: Connection = load(store, &config_key(name)).await?.ok_or_else(|| {
            BadRequest(format!(
                "unknown connection {name:?}: write database/config/{name} first"
            ))
        })?;
        if conn.username.is_empty() || conn.password.is_empty() {
            return Err(BadRequest(format!(
                "connection {name:?} has no `username` and `password` to rotate: its connection_url must use \
                 {{{{username}}}} and {{{{password}}}} with those fields set"
            )));
        }
        let host = postgres::host_of(&conn.connection_url);
        let new = Zeroizing::new(leakstop_proto::token::mint(leakstop_proto::token::Kind::Dynamic));
        let new_sql = conn.password_sql(&new);
        let default = [DEFAULT_ROOT_ROTATION.to_string()];
        let stmts = if conn.root_rotation_statements.is_empty() {
            &default[..]
        } else {
            &conn.root_rotation_statements[..]
        };
        let vars = Vars {
            username: &conn.username,
            password: Some(&new_sql),
            expiration: None,
        };
        {
            let mut client = self.client(name, &conn, "to rotate its root password").await?;
            postgres::run_in_transaction(&mut client, stmts, &vars)
                .await
                .map_err(|e| {
                    Upstream(format!(
                        "rotating the root password of connection {name:?} at {host} failed and was rolled back \
                         (the old password still works): {e}"
                    ))
                })?;
        }
        conn.password = new.to_string();
        // Connections opened with the old password are not reused.
        self.pools.reset(name);
        store.put(&config_key(name), &serde_json::to_vec(&conn)?).await
    }
}

impl Backend for DatabaseBackend {
    fn handle<'a>(&'a self, req: &'a LogicalRequest, store: &'a dyn Store) -> BackendFuture<'a, LogicalResponse> {
        Box::pin(async move {
            use Operation::*;
            let path = req.path.trim_end_matches('/');
            let (section, name) = path.split_once('/').unwrap_or((path, ""));
            match (section, name, req.op) {
                ("config", "", List | Read) => LogicalResponse::keys(store.list("config/").await?),
                ("reset" | "rotate-root", n, Create | Update) if !n.is_empty() => {
                    checked("connection", n)?;
                    if section == "reset" {
                        if store.get(&config_key(n)).await?.is_none() {
                            return Err(BadRequest(format!(
                                "unknown connection {n:?}: write database/config/{n} first"
                            )));
                        }
                        self.pools.reset(n);
                    } else {
                        self.rotate_root(n, store).await?;
                    }
                    Ok(LogicalResponse::no_content())
                }
                ("roles", "", List | Read) => LogicalResponse::keys(store.list("role/").await?),
                ("static-roles", "", List | Read) => LogicalResponse::keys(store.list(static_roles::PREFIX).await?),
                ("static-roles" | "static-creds" | "rotate-role", n, op) if !n.is_empty() => {
                    checked("static role", n)?;
                    let now = req.now_unix();
                    match (section, op) {
                        ("static-roles", Create | Update) => self.write_static_role(n, req, store).await,
                        ("static-roles", Read) => self.read_static_role(n, now, store).await,
                        ("static-roles", Delete) => self.delete_static_role(n, store).await,
                        ("static-creds", Read) => self.static_creds(n, now, store).await,
                        ("rotate-role", Create | Update) => self.rotate_role(n, now, store).await,
                        _ => Err(VaultError::UnsupportedOperation),
                    }
                }
                ("config" | "roles" | "creds", n, _) if !n.is_empty() => {
                    checked(if section == "config" { "connection" } else { "role" }, n)?;
                    match (section, req.op) {
                        ("config", Create | Update) => {
                            self.write_config(n, &req.data, store).await?;
                            Ok(LogicalResponse::no_content())
                        }
                        ("config", Read) => self.read_config(n, store).await,
                        ("config", Delete) => self.delete_config(n, store).await,
                        ("roles", Create | Update) => {
                            self.write_role(n, &req.data, store).await?;
                            Ok(LogicalResponse::no_content())
                        }
                        ("roles", Read) => self.read_role(n, store).await,
                        ("roles", Delete) => {
                            store.delete(&role_key(n)).await?;
                            Ok(LogicalResponse::no_content())
                        }
                        ("creds", Read | Create | Update) => self.creds(req, n, store).await,
                        _ => Err(VaultError::UnsupportedOperation),
                    }
                }
                _ => Err(VaultError::UnsupportedPath),
            }
        })
    }

    fn exists<'a>(&'a self, path: &'a str, store: &'a dyn Store) -> BackendFuture<'a, bool> {
        Box::pin(async move {
            let path = path.trim_end_matches('/');
            Ok(match path.split_once('/') {
                Some(("config", n)) => store.get(&config_key(n)).await?.is_some(),
                Some(("roles", n)) => store.get(&role_key(n)).await?.is_some(),
                Some(("static-roles", n)) => store.get(&static_roles::key(n)).await?.is_some(),
                _ => true,
            })
        })
    }

    fn revoke<'a>(&'a self, lease: &'a Lease, store: &'a dyn Store) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let issued: Issued = serde_json::from_value(lease.internal.clone())
                .map_err(|e| VaultError::Internal(format!("database lease {}: unreadable record: {e}", lease.id)))?;
            self.revoke_issued(&issued, store).await
        })
    }

    fn renew<'a>(&'a self, lease: &'a Lease, new_expire: i64, store: &'a dyn Store) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let issued: Issued = serde_json::from_value(lease.internal.clone())
                .map_err(|e| VaultError::Internal(format!("database lease {}: unreadable record: {e}", lease.id)))?;
            self.renew_issued(&issued, new_expire, store).await
        })
    }

    fn tick<'a>(&'a self, now: std::time::SystemTime, store: &'a dyn Store) -> BackendFuture<'a, ()> {
        Box::pin(self.tick_static(now, store))
    }

    fn find_leaked<'a>(
        &'a self,
        value: &'a str,
        now: std::time::SystemTime,
        store: &'a dyn Store,
    ) -> BackendFuture<'a, Vec<crate::engine::StoredMatch>> {
        Box::pin(self.static_leaked(value, now, store))
    }

    fn sensitive_fields(&self) -> &'static [&'static str] {
        &["password", "connection_url"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MemStore;

    fn req(op: Operation, path: &str, data: Value) -> LogicalRequest {
        LogicalRequest {
            op,
            path: path.into(),
            data: data.as_object().cloned().unwrap_or_default(),
            query: Default::default(),
            now: std::time::SystemTime::now(),
            authenticated: true,
        }
    }

    #[test]
    fn usernames_have_vaults_shape_and_fit_postgres() {
        let u = username("a-rather-long-role-name", 1_700_000_000);
        assert!(u.starts_with("v-token-a-rather-") && u.ends_with("-1700000000"), "{u}");
        assert!(u.len() <= MAX_USERNAME);
        assert_ne!(username("r", 1), username("r", 1));
        assert_eq!(expiration(0).unwrap(), "1970-01-01 00:00:00+0000");
    }

    #[test]
    fn allowed_roles_are_globs() {
        let mut c = Connection {
            plugin_name: PLUGIN.into(),
            connection_url: String::new(),
            username: String::new(),
            password: String::new(),
            allowed_roles: vec!["ci-*".into(), "exact".into()],
            verify_connection: true,
            reassign_owned_to: None,
            root_rotation_statements: vec![],
            max_open_connections: DEFAULT_MAX_OPEN,
            scram: false,
            scram_iterations: postgres::SCRAM_ITERATIONS,
        };
        assert!(c.allows("ci-deploy") && c.allows("exact") && !c.allows("other"));
        c.allowed_roles = vec![];
        assert!(!c.allows("exact"), "no allowed_roles: no role may use the connection");
        c.allowed_roles = vec!["*".into()];
        assert!(c.allows("anything"));
    }

    #[tokio::test]
    async fn unverified_config_is_stored_and_its_password_never_read_back() {
        let b = DatabaseBackend::new();
        let s = MemStore::default();
        let body = json!({
            "plugin_name": PLUGIN,
            "connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:1/postgres",
            "username": "admin", "password": "hunter2-secret", "allowed_roles": "a,b*",
            "verify_connection": false,
        });
        b.handle(&req(Operation::Create, "config/pg", body), &s).await.unwrap();
        s.commit();
        let read = b
            .handle(&req(Operation::Read, "config/pg", json!({})), &s)
            .await
            .unwrap();
        let text = read.data.unwrap().to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("\"allowed_roles\":[\"a\",\"b*\"]"), "{text}");
        let listed = b.handle(&req(Operation::List, "config", json!({})), &s).await.unwrap();
        assert_eq!(listed.data.unwrap()["keys"], json!(["pg"]));
    }

    #[tokio::test]
    async fn unreachable_host_is_a_400_and_nothing_is_stored() {
        let b = DatabaseBackend::new();
        let s = MemStore::default();
        let body = json!({
            "plugin_name": PLUGIN,
            "connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:1/postgres",
            "username": "admin", "password": "hunter2-secret",
        });
        let e = b
            .handle(&req(Operation::Create, "config/pg", body), &s)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400);
        let msg = e.to_string();
        assert!(
            msg.contains("127.0.0.1:1") && msg.contains("nothing was stored"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        s.commit();
        assert!(s.get("config/pg").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn roles_take_statements_in_every_form_and_need_creation_statements() {
        let b = DatabaseBackend::new();
        let s = MemStore::default();
        let body = json!({"db_name": "pg", "creation_statements": ["CREATE ROLE \"{{name}}\""], "default_ttl": "1h", "max_ttl": "2h"});
        b.handle(&req(Operation::Create, "roles/r", body), &s).await.unwrap();
        s.commit();
        let read = b
            .handle(&req(Operation::Read, "roles/r", json!({})), &s)
            .await
            .unwrap()
            .data
            .unwrap();
        assert_eq!(read["default_ttl"], 3600);
        assert_eq!(read["creation_statements"], json!(["CREATE ROLE \"{{name}}\""]));
        let e = b
            .handle(&req(Operation::Create, "roles/x", json!({"db_name": "pg"})), &s)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400);
        let e = b
            .handle(&req(Operation::Read, "creds/missing", json!({})), &s)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400);
    }
}
