//! The one way the tests run the built `leakstop` binary: a builder over [`std::process::Command`] that starts
//! from a hermetic environment, so a developer's shell (a `VAULT_TOKEN`, a log filter, a git identity) can never
//! change what a test sees.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};

use crate::gitcli::isolate;

/// `leakstop ARGS`, not yet run: add a directory, variables or stdin, then [`Leakstop::run`] or
/// [`Leakstop::output`].
pub fn leakstop<I, S>(args: I) -> Leakstop
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(crate::leakstop_bin());
    cmd.args(args);
    isolate(&mut cmd);
    // The service address and token come from each test, never from the caller's environment.
    for var in [
        "LEAKSTOP_ADDR",
        "LEAKSTOP_TOKEN",
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "LEAKSTOP_LOG",
        "GITHUB_REPOSITORY",
    ] {
        cmd.env_remove(var);
    }
    Leakstop { cmd, stdin: None }
}

/// A `leakstop` command being built; see [`leakstop`].
pub struct Leakstop {
    cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl Leakstop {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Run in `dir` (config, baseline and ignore files are found from there).
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.cmd.envs(vars);
        self
    }

    /// Feed `input` on stdin (stdin is empty otherwise).
    pub fn stdin(mut self, input: impl AsRef<[u8]>) -> Self {
        self.stdin = Some(input.as_ref().to_vec());
        self
    }

    /// The underlying command, for what the builder does not cover (e.g. spawning a long-running server).
    pub fn command(self) -> Command {
        self.cmd
    }

    /// Run to completion and keep the raw output.
    pub fn output(mut self) -> Output {
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("run leakstop");
        if let Some(input) = self.stdin.take() {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            // The binary may stop reading early (a usage error); its exit status says so, not a broken pipe here.
            let _ = pipe.write_all(&input);
        }
        child.wait_with_output().expect("wait for leakstop")
    }

    /// Run to completion; exit code and output as text.
    pub fn run(self) -> Run {
        Run::from(self.output())
    }
}

/// A finished `leakstop` run.
pub struct Run {
    pub status: ExitStatus,
    /// The exit code, -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout then stderr, for assertions about what the user sees anywhere.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            status: out.status,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
