//! A real PostgreSQL for a test: `initdb` into a temporary directory and `pg_ctl start` on a free loopback port,
//! stopped (immediately) when dropped. As root, the cluster belongs to the `postgres` user (PostgreSQL refuses to
//! run as root) and every server command runs through `runuser -u postgres --`.
//!
//! The binaries are found on `PATH` or under `/usr/lib/postgresql/<version>/bin` (where Debian's `postgresql`
//! package puts them, off `PATH`); when neither has them the test fails naming the package.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::server::free_port;

/// The superuser the cluster is created with, and its password (scram-sha-256 over TCP).
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "test-superuser-pw";

pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    as_root: bool,
    /// The server options `start` used, so a stopped server can be started again the same way.
    opts: String,
    pub port: u16,
}

fn find_bin_dir() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return dir;
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) are neither on PATH nor under /usr/lib/postgresql/*/bin: \
             install the Debian package `postgresql` (tests/apt-packages.txt lists it)"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    /// A fresh cluster, started and accepting TCP connections on 127.0.0.1.
    pub fn start() -> Postgres {
        let bin = find_bin_dir();
        let as_root = is_root();
        let dir = crate::tempdir();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).expect("write the superuser password file");
        if as_root {
            let st = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(
                st.success(),
                "chown to the `postgres` user failed: the Debian package `postgresql` creates that user"
            );
        }
        let port = free_port();
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            data.display()
        );
        let pg = Postgres {
            _dir: dir,
            data,
            bin,
            as_root,
            opts,
            port,
        };
        pg.run(
            "initdb",
            &[
                "-D".into(),
                pg.data.display().to_string(),
                "-U".into(),
                SUPERUSER.into(),
                format!("--pwfile={}", pwfile.display()),
                "--auth-host=scram-sha-256".into(),
                "--auth-local=trust".into(),
                "-E".into(),
                "UTF8".into(),
                "--no-sync".into(),
            ],
        );
        pg.start_again();
        pg
    }

    /// Start the (stopped) server on the same port, waiting until it accepts connections.
    pub fn start_again(&self) {
        self.run(
            "pg_ctl",
            &[
                "start".into(),
                "-w".into(),
                "-D".into(),
                self.data.display().to_string(),
                "-l".into(),
                self.data.join("server.log").display().to_string(),
                "-o".into(),
                self.opts.clone(),
            ],
        );
    }

    /// Stop the server (`-m fast`: sessions are terminated, as in an operator's restart).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "stop".into(),
                "-m".into(),
                "fast".into(),
                "-w".into(),
                "-D".into(),
                self.data.display().to_string(),
            ],
        );
    }

    /// Stop and start again: every session ends, every advisory lock is released.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// `postgresql://` URL of the superuser, for clients that take one.
    pub fn superuser_url(&self) -> String {
        format!(
            "postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[String]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir("/")
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
        );
    }

    /// The engine's `connection_url`, with Vault's templates for the user and password.
    pub fn url_template(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// A connection as `user`; its driver runs on the current runtime.
    pub async fn connect(&self, user: &str, password: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .dbname("postgres")
            .user(user)
            .password(password)
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// A connection as the superuser.
    pub async fn admin(&self) -> tokio_postgres::Client {
        self.connect(SUPERUSER, SUPERUSER_PASSWORD)
            .await
            .expect("connect as the superuser")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(&self.data)
            .current_dir("/")
            .output();
    }
}
