//! The PostgreSQL side: connecting with the stored connection, creating a user in one transaction, and revoking
//! one so that nothing is left behind (sessions, owned objects, the role).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls};
use zeroize::Zeroizing;

use super::statements::{self, Vars, ident};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Stand-ins for the templates while the URL is parsed; the real user and password are set afterwards, so a
/// password never needs URL-encoding and never appears in a parse error.
const USER_MARK: &str = "leakstop-user-template";
const PASS_MARK: &str = "leakstop-password-template";

/// What a connection needs, borrowed from the stored config.
pub struct Target<'a> {
    pub connection_url: &'a str,
    pub username: &'a str,
    pub password: &'a str,
}

/// `e` as a caller may see it: PostgreSQL's own message (its code and text), with every `secret` cut out, since
/// a server may echo part of a failing statement.
pub fn describe(e: &tokio_postgres::Error, secrets: &[&str]) -> String {
    let mut msg = match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut cur = std::error::Error::source(e);
            while let Some(inner) = cur {
                text = format!("{text}: {inner}");
                cur = inner.source();
            }
            text
        }
    };
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        msg = msg.replace(s, "<redacted>");
    }
    msg
}

/// The connection's `host:port`, to name it in errors.
pub fn host_of(url: &str) -> String {
    let Ok(cfg) = render_url(url).parse::<tokio_postgres::Config>() else {
        return "the configured host".into();
    };
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

fn render_url(url: &str) -> String {
    url.replace("{{username}}", USER_MARK)
        .replace("{{password}}", PASS_MARK)
}

/// Open a connection (its driver task runs until the client is dropped).
pub async fn connect(t: &Target<'_>) -> Result<Client, String> {
    let mut cfg: tokio_postgres::Config =
        render_url(t.connection_url)
            .parse()
            .map_err(|e: tokio_postgres::Error| {
                format!(
                    "connection_url is not a PostgreSQL URL or DSN: {}",
                    describe(&e, &[t.password])
                )
            })?;
    if t.connection_url.contains("{{username}}") {
        cfg.user(t.username);
    }
    if t.connection_url.contains("{{password}}") {
        cfg.password(t.password);
    }
    cfg.connect_timeout(CONNECT_TIMEOUT);
    let (client, conn) = cfg.connect(NoTls).await.map_err(|e| describe(&e, &[t.password]))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

/// The open connections of one stored connection: at most `max_open` in use at a time (Vault's
/// `max_open_connections`), idle ones kept for the next request.
struct Pool {
    connection_url: String,
    username: String,
    password: Zeroizing<String>,
    max_open: usize,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Client>>,
}

impl Pool {
    fn serves(&self, t: &Target<'_>, max_open: usize) -> bool {
        self.connection_url == t.connection_url
            && self.username == t.username
            && self.password.as_str() == t.password
            && self.max_open == max_open
    }
}

/// The pools of every stored connection, by name. A pool whose connection changed (its URL, user, password or
/// limit) is replaced on next use, so a rotated root password or a new URL takes effect without a restart.
#[derive(Default)]
pub struct Pools {
    by_name: Mutex<HashMap<String, Arc<Pool>>>,
}

/// A connection taken from a pool; it goes back when dropped, unless the server closed it.
pub struct Pooled {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Pooled {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Only `drop` takes the client out.
        self.client
            .as_ref()
            .unwrap_or_else(|| unreachable!("a pooled client is present until dropped"))
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .unwrap_or_else(|| unreachable!("a pooled client is present until dropped"))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(c);
        }
    }
}

impl Pools {
    /// A connection for `name`, waiting while `max_open` are in use.
    pub async fn get(&self, name: &str, t: &Target<'_>, max_open: usize) -> Result<Pooled, String> {
        let max_open = max_open.max(1);
        let pool = {
            let mut map = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(name) {
                Some(p) if p.serves(t, max_open) => p.clone(),
                _ => {
                    let p = Arc::new(Pool {
                        connection_url: t.connection_url.to_string(),
                        username: t.username.to_string(),
                        password: Zeroizing::new(t.password.to_string()),
                        max_open,
                        permits: Arc::new(Semaphore::new(max_open)),
                        idle: Mutex::new(Vec::new()),
                    });
                    map.insert(name.to_string(), p.clone());
                    p
                }
            }
        };
        let permit = pool
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the connection pool was closed".to_string())?;
        let idle = {
            let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let client = match idle {
            Some(c) => c,
            None => connect(t).await?,
        };
        Ok(Pooled {
            client: Some(client),
            pool,
            _permit: permit,
        })
    }

    /// Close the idle connections of `name` and forget its pool (connections in use close when returned).
    pub fn reset(&self, name: &str) {
        let removed = self.by_name.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        if let Some(p) = removed {
            p.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
            p.permits.close();
        }
    }
}

/// Run `stmts` (templates filled from `vars`) in one transaction: all of them or none.
pub async fn run_in_transaction(client: &mut Client, stmts: &[String], vars: &Vars<'_>) -> Result<(), String> {
    let secrets: Vec<&str> = vars.password.into_iter().collect();
    let tx = client.transaction().await.map_err(|e| describe(&e, &secrets))?;
    for (i, stmt) in stmts.iter().enumerate() {
        tx.batch_execute(&statements::render(stmt, vars))
            .await
            .map_err(|e| format!("statement {} failed: {}", i + 1, describe(&e, &secrets)))?;
    }
    tx.commit().await.map_err(|e| describe(&e, &secrets))
}

/// Remove `username` completely: no new logins, its sessions terminated, what it owns in the connection's
/// database reassigned to `reassign_to` (or the connection's own user), its remaining privileges dropped, the
/// role dropped. A role that does not exist is already revoked.
pub async fn drop_user(client: &mut Client, username: &str, reassign_to: Option<&str>) -> Result<(), String> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", &[&username])
        .await
        .map_err(|e| describe(&e, &[]))?
        .is_some();
    if !exists {
        return Ok(());
    }
    let user = ident(username);
    client
        .batch_execute(&format!("ALTER ROLE {user} NOLOGIN"))
        .await
        .map_err(|e| describe(&e, &[]))?;
    client
        .query(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity \
             WHERE usename = $1 AND pid <> pg_catalog.pg_backend_pid()",
            &[&username],
        )
        .await
        .map_err(|e| format!("terminating the user's sessions failed: {}", describe(&e, &[])))?;
    let target = reassign_to.map_or_else(|| "CURRENT_USER".to_string(), ident);
    let tx = client.transaction().await.map_err(|e| describe(&e, &[]))?;
    tx.batch_execute(&format!(
        "REASSIGN OWNED BY {user} TO {target}; DROP OWNED BY {user}; DROP ROLE IF EXISTS {user}"
    ))
    .await
    .map_err(|e| describe(&e, &[]))?;
    tx.commit().await.map_err(|e| describe(&e, &[]))
}

/// Why setting a password failed, and whether the database may have taken it anyway.
pub enum ApplyError {
    /// Nothing was committed: the database still has the old password.
    NotApplied(String),
    /// The commit itself failed (the connection dropped while committing): the database may have either password.
    Uncertain(String),
}

/// Run `stmts` (which set a password) in one transaction, telling a failure before the commit from one during it.
pub async fn apply_password(client: &mut Client, stmts: &[String], vars: &Vars<'_>) -> Result<(), ApplyError> {
    let secrets: Vec<&str> = vars.password.into_iter().collect();
    let tx = client
        .transaction()
        .await
        .map_err(|e| ApplyError::NotApplied(describe(&e, &secrets)))?;
    for (i, stmt) in stmts.iter().enumerate() {
        tx.batch_execute(&statements::render(stmt, vars))
            .await
            .map_err(|e| ApplyError::NotApplied(format!("statement {} failed: {}", i + 1, describe(&e, &secrets))))?;
    }
    tx.commit()
        .await
        .map_err(|e| ApplyError::Uncertain(describe(&e, &secrets)))
}
