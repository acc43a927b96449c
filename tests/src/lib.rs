//! Test support shared by the end-to-end tests: locating the built binary, running it, temporary directories,
//! a server started by the test, and the loopback stand-ins (OIDC issuer, GitHub REST API).
//!
//! # The end-to-end tests
//! They live in one test binary, `tests/tests/e2e/` (`main.rs` declares one module per area), so the workspace
//! links one harness instead of one per file. They drive the built `leakstop` binary: build it first
//! (`cargo build -p leakstop`, or set `LEAKSTOP_BIN`), then `cargo test -p leakstop-tests`; one area alone:
//! `cargo test -p leakstop-tests -- scan_cli::`.
//!
//! # Adding a test
//! - A test of an existing area goes into its module (`tests/tests/e2e/<area>.rs`); a new area is a new file
//!   there plus one `mod <area>;` line in `main.rs`.
//! - Run the binary with [`cmd::leakstop`] (hermetic environment, optional stdin, [`cmd::Run`] with exit code
//!   and text); work in a [`tempdir`]; a test that needs a service starts its own [`server::Server`]
//!   (`Server::dev` or `Server::configured`), killed when dropped; git repositories come from [`gitcli`] and
//!   realistic secrets from [`secrets`], made fresh per test.
//! - Tests run in parallel threads of one process: never change the process environment or working directory;
//!   pass variables and directories to the command instead.
#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod cmd;
pub mod gitcli;
pub mod github;
pub mod oidc;
pub mod postgres;
pub mod secrets;
pub mod server;

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// Path of the `leakstop` binary built from this workspace.
///
/// `tests/run.sh` builds it before running the tests; a plain `cargo test` does not build binaries of
/// other packages, so a missing binary is reported with the command that fixes it.
pub fn leakstop_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LEAKSTOP_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>/leakstop
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile> directory");
    let bin = profile_dir.join(format!("leakstop{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p leakstop` first (tests/run.sh does)",
        bin.display()
    );
    bin
}

/// The repository root (where `rules/`, `hooks/`, `action/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A running process's peak resident memory (`VmHWM` in `/proc/<pid>/status`), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}
