//! `[storage] type = "postgresql"`: parsing, defaults, and turning it into a `tokio_postgres::Config` without ever
//! letting the password reach a message.

use std::path::PathBuf;
use std::time::Duration;

use crate::StorageError;

/// `[storage] type = "postgresql"`:
///
/// ```toml
/// [storage]
/// type = "postgresql"
/// connection_url = "postgresql://leakstop:PASSWORD@db.internal:5432/leakstop"  # or PGHOST, PGUSER, ... env vars
/// table = "leakstop_store"        # the key-value table (created on first start unless skip_create_table)
/// max_connections = 8             # connections (and threads) serving reads and writes
/// ha_enabled = true               # several nodes share the database; one is active (see the module docs)
/// ha_table = "leakstop_ha"
/// ssl_mode = "verify-full"        # disable | prefer | require | verify-ca | verify-full
/// ssl_root_cert = "/etc/leakstop/pg-ca.pem"
/// ```
///
/// The environment variable `LEAKSTOP_PG_CONNECTION_URL` overrides `connection_url` (so the password can stay out
/// of the file). With neither, libpq's `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE` and `PGSSLMODE`
/// are read. Table names are plain identifiers, optionally schema-qualified (`vault.leakstop_store`).
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    #[serde(default)]
    pub connection_url: Option<ConnectionUrl>,
    #[serde(default = "default_table")]
    pub table: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub ha_enabled: bool,
    #[serde(default = "default_ha_table")]
    pub ha_table: String,
    #[serde(default)]
    pub skip_create_table: bool,
    /// Unset: what the URL (or `PGSSLMODE`) says, else `prefer`.
    #[serde(default)]
    pub ssl_mode: Option<SslMode>,
    /// CA certificates (PEM) that the server's certificate must chain to.
    #[serde(default)]
    pub ssl_root_cert: Option<PathBuf>,
}

fn default_table() -> String {
    "leakstop_store".into()
}
fn default_ha_table() -> String {
    "leakstop_ha".into()
}
fn default_max_connections() -> usize {
    8
}

impl PostgresConfig {
    /// The defaults, connecting to `connection_url`.
    pub fn new(connection_url: impl Into<String>) -> PostgresConfig {
        PostgresConfig {
            connection_url: Some(ConnectionUrl(connection_url.into())),
            table: default_table(),
            max_connections: default_max_connections(),
            ha_enabled: false,
            ha_table: default_ha_table(),
            skip_create_table: false,
            ssl_mode: None,
            ssl_root_cert: None,
        }
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("connection_url", &self.connection_url)
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("ha_enabled", &self.ha_enabled)
            .field("ha_table", &self.ha_table)
            .field("skip_create_table", &self.skip_create_table)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .finish()
    }
}

/// libpq's `sslmode` values. `require` encrypts without checking the certificate unless `ssl_root_cert` is set
/// (then it checks the chain, as libpq does); `verify-ca` checks the chain; `verify-full` also the host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" | "allow" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A connection URL (or libpq `key=value` string). It may hold a password: `Debug` shows it redacted.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct ConnectionUrl(pub String);

impl std::fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact(&self.0))
    }
}

/// `s` with any password replaced by `***`: the `user:password@` part of a URL, `password=` parameters of a URL
/// query or of a `key=value` string.
pub fn redact(s: &str) -> String {
    let mut out = s.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@')
            && let Some(colon) = out[rest..rest + at].find(':')
        {
            out.replace_range(rest + colon + 1..rest + at, "***");
        }
    }
    // `password=...` up to the next `&` or whitespace, wherever it appears.
    let mut search = 0;
    while let Some(i) = out[search..].find("password=") {
        let start = search + i + "password=".len();
        let end = out[start..]
            .find(|c: char| c == '&' || c.is_whitespace())
            .map_or(out.len(), |j| start + j);
        out.replace_range(start..end, "***");
        search = start + 3;
    }
    out
}

/// Everything a connection needs, resolved once at open.
#[derive(Clone)]
pub(crate) struct Resolved {
    pub pg: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub ssl_root_cert: Option<PathBuf>,
    /// `user@host:port/database`: what messages name.
    pub target: String,
    pub table: Ident,
    pub migrations_table: Ident,
    pub ha_table: Ident,
    pub ha_epoch_seq: Ident,
}

/// A validated, quoted SQL identifier (optionally `schema.name`) and its plain form for messages.
#[derive(Clone, Debug)]
pub(crate) struct Ident {
    pub plain: String,
    pub quoted: String,
}

impl Ident {
    pub fn parse(what: &str, name: &str) -> Result<Ident, StorageError> {
        let parts: Vec<&str> = name.split('.').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.len() <= 63
                && p.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if parts.len() > 2 || !parts.iter().all(valid) {
            return Err(StorageError::Config(format!(
                "`{what}` = {name:?} is not a table name: use letters, digits and `_` (at most 63), optionally \
                 prefixed by a schema and a dot"
            )));
        }
        Ok(Ident {
            plain: name.to_owned(),
            quoted: parts.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join("."),
        })
    }

    /// The identifier with `suffix` appended to its last part (for companion tables and sequences).
    fn with_suffix(&self, suffix: &str) -> Result<Ident, StorageError> {
        Ident::parse("table", &format!("{}{suffix}", self.plain))
    }
}

/// Connection settings for every pooled connection: notice a dead server within seconds rather than hours.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl PostgresConfig {
    pub(crate) fn resolve(&self) -> Result<Resolved, StorageError> {
        if self.max_connections == 0 {
            return Err(StorageError::Config("`max_connections` must be at least 1".into()));
        }
        let table = Ident::parse("table", &self.table)?;
        let ha_table = Ident::parse("ha_table", &self.ha_table)?;
        let url = std::env::var("LEAKSTOP_PG_CONNECTION_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| self.connection_url.as_ref().map(|u| u.0.clone()));
        let mut url_ssl_mode = None;
        let mut pg = match url {
            Some(url) => {
                // tokio-postgres knows only disable/prefer/require; take libpq's verify modes out first.
                let (url, mode) = take_sslmode(&url);
                url_ssl_mode = mode;
                url.parse::<tokio_postgres::Config>().map_err(|e| {
                    StorageError::Config(format!("`connection_url` {} cannot be parsed: {e}", redact(&url)))
                })?
            }
            None => from_env(&mut url_ssl_mode)?,
        };
        if pg.get_hosts().is_empty() {
            pg.host("localhost");
        }
        if pg.get_user().is_none() {
            return Err(StorageError::Config(
                "no PostgreSQL user: set one in `connection_url` (postgresql://USER:PASSWORD@HOST/DB) or PGUSER".into(),
            ));
        }
        if pg.get_dbname().is_none() {
            let user = pg.get_user().unwrap_or_default().to_owned();
            pg.dbname(user);
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        pg.application_name("leakstop");
        pg.keepalives(true).keepalives_idle(Duration::from_secs(5));
        pg.keepalives_interval(Duration::from_secs(2)).keepalives_retries(3);
        let ssl_mode = self.ssl_mode.or(url_ssl_mode).unwrap_or(SslMode::Prefer);
        pg.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if self.ssl_root_cert.is_none() && matches!(ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull) {
            return Err(StorageError::Config(format!(
                "`ssl_mode` = {ssl_mode:?} needs `ssl_root_cert`, the CA certificate file the server's certificate \
                 must chain to"
            )));
        }
        let target = target_of(&pg);
        Ok(Resolved {
            target,
            ssl_mode,
            ssl_root_cert: self.ssl_root_cert.clone(),
            migrations_table: table.with_suffix("_migrations")?,
            ha_epoch_seq: ha_table.with_suffix("_epoch")?,
            table,
            ha_table,
            pg,
        })
    }
}

/// Remove `sslmode=...` from a URL query or `key=value` string, returning what it said.
fn take_sslmode(url: &str) -> (String, Option<SslMode>) {
    let Some(i) = url.find("sslmode=") else {
        return (url.to_owned(), None);
    };
    let start = i + "sslmode=".len();
    let end = url[start..]
        .find(|c: char| c == '&' || c.is_whitespace())
        .map_or(url.len(), |j| start + j);
    let mode = SslMode::parse(&url[start..end]);
    let mut out = url.to_owned();
    out.replace_range(start..end, "disable");
    // Leave tokio-postgres a harmless value; the mode is applied from what was taken.
    (out, mode)
}

fn from_env(ssl_mode: &mut Option<SslMode>) -> Result<tokio_postgres::Config, StorageError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut pg = tokio_postgres::Config::new();
    if let Some(host) = var("PGHOST") {
        for h in host.split(',') {
            pg.host(h);
        }
    }
    if let Some(port) = var("PGPORT") {
        let port = port
            .parse::<u16>()
            .map_err(|_| StorageError::Config(format!("PGPORT={port:?} is not a port number")))?;
        pg.port(port);
    }
    if let Some(user) = var("PGUSER").or_else(|| var("USER")) {
        pg.user(user);
    }
    if let Some(pw) = var("PGPASSWORD") {
        pg.password(pw);
    }
    if let Some(db) = var("PGDATABASE") {
        pg.dbname(db);
    }
    if let Some(mode) = var("PGSSLMODE") {
        *ssl_mode = Some(
            SslMode::parse(&mode)
                .ok_or_else(|| StorageError::Config(format!("PGSSLMODE={mode:?} is not an sslmode")))?,
        );
    }
    Ok(pg)
}

fn target_of(pg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = pg
                .get_ports()
                .get(i)
                .or(pg.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                #[allow(unreachable_patterns)]
                other => format!("{other:?}:{port}"),
            }
        })
        .collect();
    format!(
        "{}@{}/{}",
        pg.get_user().unwrap_or(""),
        hosts.join(","),
        pg.get_dbname().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(
            redact("postgresql://u:s3cret@h:5432/db?sslmode=disable"),
            "postgresql://u:***@h:5432/db?sslmode=disable"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("host=h user=u password=s3cret dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(
            redact("postgres://h/db?user=u&password=s3cret&x=1"),
            "postgres://h/db?user=u&password=***&x=1"
        );
        let cfg = PostgresConfig::new("postgresql://u:s3cret@h/db");
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn bad_url_error_has_no_password() {
        let cfg = PostgresConfig::new("postgresql://u:s3cret@h:notaport/db");
        let err = cfg.resolve().err().expect("a bad port is refused").to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("connection_url"), "{err}");
    }

    #[test]
    fn table_names_are_checked() {
        let mut cfg = PostgresConfig::new("postgresql://u@h/db");
        cfg.table = "x; drop table y".into();
        assert!(cfg.resolve().is_err());
        cfg.table = "vault.kv_store".into();
        let r = cfg.resolve().unwrap();
        assert_eq!(r.table.quoted, "\"vault\".\"kv_store\"");
        assert_eq!(r.migrations_table.quoted, "\"vault\".\"kv_store_migrations\"");
        assert_eq!(r.target, "u@h:5432/db");
    }

    #[test]
    fn verify_modes_come_out_of_the_url() {
        let mut cfg = PostgresConfig::new("postgresql://u@h/db?sslmode=verify-full");
        assert!(cfg.resolve().is_err(), "verify-full without a CA file is refused");
        cfg.ssl_root_cert = Some("/ca.pem".into());
        assert_eq!(cfg.resolve().unwrap().ssl_mode, SslMode::VerifyFull);
    }
}
