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

/// PostgreSQL's (and RFC 7677's minimum) PBKDF2 iteration count for SCRAM-SHA-256 verifiers.
pub const SCRAM_ITERATIONS: u32 = 4096;
/// The most `scram_iterations` accepts: more makes every login of an issued user slow for nothing.
pub const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:
/// <ServerKey>`), with a fresh 16-byte salt.
///
/// The iteration count is the caller's because the passwords hashed here are the engine's own `lksd_` credentials
/// (214 random bits): key stretching protects guessable passwords and adds nothing to those, while its CPU cost
/// lands on every issuance and every login. Those passwords are ASCII, where SASLprep changes nothing.
pub fn scram_verifier(password: &str, iterations: u32) -> String {
    let salt: [u8; 16] = rand::random();
    scram_verifier_salted(password, &salt, iterations)
}

fn scram_verifier_salted(password: &str, salt: &[u8], iterations: u32) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    debug_assert!(
        password.is_ascii(),
        "SASLprep is skipped: only generated passwords are hashed here"
    );
    let salted = Zeroizing::new(pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(
        password.as_bytes(),
        salt,
        iterations.max(1),
    ));
    let keyed = |label: &[u8]| {
        // A key of any length is valid for HMAC, so `new_from_slice` cannot fail here.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salted.as_slice()).unwrap_or_else(|_| unreachable!());
        mac.update(label);
        mac.finalize().into_bytes()
    };
    let stored_key = Sha256::digest(keyed(b"Client Key"));
    let server_key = keyed(b"Server Key");
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

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

/// How often a transaction that lost a race on a catalog row is run again (see [`transaction_retrying`]).
const CONFLICT_ATTEMPTS: u32 = 10;

/// A failed transaction: what to report, and whether running it again can succeed.
struct Failure {
    transient: bool,
    message: String,
}

impl Failure {
    fn new(e: &tokio_postgres::Error, secrets: &[&str], context: &str) -> Failure {
        Failure {
            transient: is_catalog_race(e),
            message: format!("{context}{}", describe(e, secrets)),
        }
    }
}

/// Two transactions changing one catalog row at once (two `GRANT`s on one table, a `GRANT` and a `DROP OWNED`
/// revoking on it) make PostgreSQL fail the later one with "tuple concurrently updated" (XX000); a deadlock victim
/// (40P01) and a serialization failure (40001) are the same kind of race. The whole transaction was rolled back, so
/// it can run again.
fn is_catalog_race(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    let Some(db) = e.as_db_error() else {
        return false;
    };
    let code = db.code();
    *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || (*code == SqlState::INTERNAL_ERROR && db.message().contains("concurrently updated"))
}

/// The advisory lock a transaction that lost a catalog race takes before running again. Vault queues every
/// creation on a connection behind one lock; leakstop lets transactions run in parallel and queues only those that
/// collided, so jobs touching different objects never wait, and the queue is in PostgreSQL, where it holds across
/// every leakstop node sharing the database. Released at commit or rollback. (The value spells "lksdcrea".)
const RACE_LOCK: i64 = 0x6c6b_7364_6372_6561;

/// Run `stmts` in one transaction: first in parallel with everything else, then, after a lost race, queued on
/// [`RACE_LOCK`]; fails for good on any other error or after [`CONFLICT_ATTEMPTS`] attempts.
async fn transaction_retrying(
    client: &mut Client,
    stmts: &[Zeroizing<String>],
    secrets: &[&str],
) -> Result<(), String> {
    let mut tries = 0;
    loop {
        tries += 1;
        match transaction_once(client, stmts, secrets, tries > 1).await {
            Ok(()) => return Ok(()),
            Err(f) if f.transient && tries < CONFLICT_ATTEMPTS => continue,
            Err(f) => return Err(f.message),
        }
    }
}

async fn transaction_once(
    client: &mut Client,
    stmts: &[Zeroizing<String>],
    secrets: &[&str],
    queued: bool,
) -> Result<(), Failure> {
    let tx = client.transaction().await.map_err(|e| Failure::new(&e, secrets, ""))?;
    if queued {
        tx.execute("SELECT pg_catalog.pg_advisory_xact_lock($1)", &[&RACE_LOCK])
            .await
            .map_err(|e| Failure::new(&e, secrets, "waiting for a concurrent change: "))?;
    }
    for (i, stmt) in stmts.iter().enumerate() {
        let context = if stmts.len() > 1 {
            format!("statement {} failed: ", i + 1)
        } else {
            String::new()
        };
        tx.batch_execute(stmt.as_str())
            .await
            .map_err(|e| Failure::new(&e, secrets, &context))?;
    }
    tx.commit().await.map_err(|e| Failure::new(&e, secrets, ""))
}

/// Run `stmts` (templates filled from `vars`) in one transaction: all of them or none; run again when it lost a
/// race with another transaction on a catalog row.
pub async fn run_in_transaction(client: &mut Client, stmts: &[String], vars: &Vars<'_>) -> Result<(), String> {
    let secrets: Vec<&str> = vars.password.into_iter().collect();
    // Rendered statements hold the password: wiped when dropped.
    let rendered: Vec<Zeroizing<String>> = stmts
        .iter()
        .map(|s| Zeroizing::new(statements::render(s, vars)))
        .collect();
    transaction_retrying(client, &rendered, &secrets).await
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
    let drop = format!("REASSIGN OWNED BY {user} TO {target}; DROP OWNED BY {user}; DROP ROLE IF EXISTS {user}");
    transaction_retrying(client, &[Zeroizing::new(drop)], &[]).await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors computed independently (Python's hashlib.pbkdf2_hmac and hmac) for a fixed salt.
    #[test]
    fn scram_verifiers_match_an_independent_computation() {
        let password = "lksd_0123456789ABCDEFGHIJabcdefghij012345xyz";
        let salt: Vec<u8> = (0..16).collect();
        assert_eq!(
            scram_verifier_salted(password, &salt, 1),
            "SCRAM-SHA-256$1:AAECAwQFBgcICQoLDA0ODw==$Fm/z22Nkf0575gjl2CZAraB6OvIyMsHOARPkkzKjnmk=:\
             FPRJd7aQnhzPriONVTpdQ8SqpIRf7WM0L9UDpvvUIVI="
        );
        assert_eq!(
            scram_verifier_salted(password, &salt, 4096),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$bTLNxgNGHZnx86NDV5M/0l0WgQrLZuyEcpAY/8Ui0eo=:\
             yyPUbkgi2MpMawp8WkDYU9aL9F8DiU7vCjLgOFHEUDM="
        );
        // A fresh salt each time: two verifiers of one password differ.
        assert_ne!(scram_verifier(password, 1), scram_verifier(password, 1));
    }
}
