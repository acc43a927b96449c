//! Test support shared by the end-to-end tests: locating the built binary, fixtures, and the loopback
//! stand-ins (OIDC issuer, GitHub REST API) that the tests start themselves.
#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod gitcli;
pub mod github;
pub mod oidc;
pub mod secrets;

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
