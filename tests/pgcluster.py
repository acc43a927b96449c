"""A throwaway PostgreSQL cluster for the Python suites and the benchmarks: `initdb` into a directory, `pg_ctl start`
on a free loopback port with password (scram-sha-256) authentication, stopped with `stop()`. As root the cluster
belongs to the `postgres` user (PostgreSQL refuses to run as root) and its commands run through `runuser`.
"""

import os
import pathlib
import shutil
import subprocess

from conftest import free_port

SUPERUSER_PASSWORD = "compat-superuser-pw"


def require_psycopg():
    try:
        import psycopg
    except ImportError as e:
        raise ImportError("the Python package `psycopg` is not installed: pip install -r tests/requirements.txt") from e
    return psycopg


def pg_bin_dir() -> pathlib.Path:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return pathlib.Path(found).parent
    versions = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    assert versions, ("PostgreSQL server binaries (initdb, pg_ctl) are neither on PATH nor under "
                      "/usr/lib/postgresql/*/bin: install the Debian package `postgresql` (tests/apt-packages.txt)")
    return versions[-1].parent


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1, password (scram-sha-256) authentication over TCP."""

    def __init__(self, base: pathlib.Path):
        self.bin = pg_bin_dir()
        self.as_root = os.geteuid() == 0
        self.base = base
        self.password = SUPERUSER_PASSWORD
        self.data = base / "data"
        self.port = free_port()
        pwfile = base / "pw"
        pwfile.write_text(SUPERUSER_PASSWORD)
        if self.as_root:
            subprocess.run(["chown", "-R", "postgres:", str(base)], check=True)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={base} "
                "-c fsync=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(base / "log"), "-o", opts, "-w", "-t", "60", "start")

    def _run(self, tool, *args):
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.base)
        assert done.returncode == 0, f"{tool} failed ({done.returncode}): {done.stderr}{done.stdout}"

    def stop(self):
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def dsn(self, user="postgres", password=SUPERUSER_PASSWORD) -> str:
        return f"host=127.0.0.1 port={self.port} dbname=postgres user={user} password={password} connect_timeout=5"

    def connect(self, user, password):
        return require_psycopg().connect(self.dsn(user, password), autocommit=True)

    def admin(self):
        return self.connect("postgres", SUPERUSER_PASSWORD)

    def role_exists(self, name) -> bool:
        with self.admin() as c:
            return c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


