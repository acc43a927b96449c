"""Dynamic PostgreSQL credentials: issued/s and revoked/s, leakstop vs OpenBao, against one PostgreSQL.

Driven by bench/db-creds.sh (which sets the binaries); see there for the options. Both servers run in dev mode
(in-memory storage, no audit device: the same footing), one at a time, alternating for RUNS rounds. Each round:
issue N credentials from C client threads (one keep-alive connection each), then revoke every lease through
`sys/leases/revoke` from C threads, then check in PostgreSQL that every issued user exists before and is gone after
(a server that reports success without dropping the users would not count).
"""

import http.client
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from pgcluster import Postgres  # noqa: E402
from conftest import free_port  # noqa: E402

N = int(os.environ.get("N", "400"))
C = int(os.environ.get("C", "8"))
RUNS = int(os.environ.get("RUNS", "3"))
LEAKSTOP = os.environ["LEAKSTOP"]
BAO = os.environ["BAO_BIN"]
TOKEN = "bench-root"
POOL = 8
# `leakstop-scram1`: leakstop hashing its own random passwords into 1-iteration SCRAM verifiers (scram_iterations),
# which OpenBao cannot do; PostgreSQL's own hashing (4096 iterations) is most of an issuance's cost.
KINDS = ("openbao", "leakstop", "leakstop-scram1")
# `password` sends the password for PostgreSQL to hash; `scram-sha-256` hashes it in the vault (both servers do).
PASSWORD_AUTH = os.environ.get("PASSWORD_AUTH", "password")
CREATE = ('CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' VALID UNTIL \'{{expiration}}\'; '
          'GRANT SELECT ON bench_items TO "{{name}}";')


class Api:
    """One keep-alive HTTP connection to a server."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, "/v1/" + path, body=data,
                          headers={"X-Vault-Token": TOKEN, "Content-Type": "application/json"})
        r = self.conn.getresponse()
        raw = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None


def start(kind, port, workdir):
    if kind.startswith("leakstop"):
        cmd = [LEAKSTOP, "server", "--dev", "--dev-root-token-id", TOKEN, "--dev-listen-address", f"127.0.0.1:{port}"]
    else:
        cmd = [BAO, "server", "-dev", f"-dev-root-token-id={TOKEN}", f"-dev-listen-address=127.0.0.1:{port}"]
    log = open(workdir / f"{kind}.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v1/sys/health")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"bench: {kind} did not become healthy; see {workdir / (kind + '.log')}")


def peak_rss_mb(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def parallel(port, items, fn):
    """Run fn(api, item) for every item from C threads; returns (seconds, per-call latencies, results)."""
    lock, out, lat, errors = threading.Lock(), [], [], []
    queue = list(items)

    def worker():
        api = Api(port)
        while True:
            with lock:
                if not queue:
                    return
                item = queue.pop()
            t = time.perf_counter()
            try:
                r = fn(api, item)
            except Exception as e:  # noqa: BLE001 - reported below, never silently dropped
                with lock:
                    errors.append(str(e))
                continue
            d = time.perf_counter() - t
            with lock:
                out.append(r)
                lat.append(d)

    threads = [threading.Thread(target=worker) for _ in range(C)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    if errors:
        sys.exit(f"bench: {len(errors)} failed calls, first: {errors[0]}")
    return took, lat, out


def one_round(kind, pg, workdir):
    port = free_port()
    proc = start(kind, port, workdir)
    try:
        api = Api(port)
        api.call("POST", "sys/mounts/database", {"type": "database"})
        api.call("POST", "database/config/pg", {
            "plugin_name": "postgresql-database-plugin", "allowed_roles": "app",
            "connection_url": f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{pg.port}/postgres"
                              "?sslmode=disable",
            "username": "postgres", "password": pg.password, "max_open_connections": POOL,
            **({"password_authentication": "scram-sha-256", "scram_iterations": 1} if kind == "leakstop-scram1"
               else {"password_authentication": PASSWORD_AUTH}),
        })
        api.call("POST", "database/roles/app", {"db_name": "pg", "creation_statements": [CREATE],
                                                "default_ttl": "1h", "max_ttl": "2h"})
        took_i, lat_i, issued = parallel(port, range(N), lambda a, _: a.call("GET", "database/creds/app"))
        users = [i["data"]["username"] for i in issued]
        with pg.admin() as c:
            present = c.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (users,)).fetchone()[0]
        assert present == N, f"{kind}: {present} of {N} issued users exist in PostgreSQL"
        leases = [i["lease_id"] for i in issued]
        took_r, lat_r, _ = parallel(port, leases, lambda a, lid: a.call("PUT", "sys/leases/revoke",
                                                                        {"lease_id": lid}))
        with pg.admin() as c:
            left = c.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (users,)).fetchone()[0]
        assert left == 0, f"{kind}: {left} of {N} revoked users still exist in PostgreSQL"
        rss = peak_rss_mb(proc.pid)
        return {"issue": N / took_i, "issue_p50": pct(lat_i, 0.5), "issue_p99": pct(lat_i, 0.99),
                "revoke": N / took_r, "revoke_p50": pct(lat_r, 0.5), "revoke_p99": pct(lat_r, 0.99), "rss": rss}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    work = pathlib.Path(tempfile.mkdtemp(prefix="leakstop-bench-db-"))
    # Its own directory: as root, the cluster's directory is handed to the `postgres` user.
    pgdir = pathlib.Path(tempfile.mkdtemp(prefix="leakstop-bench-pg-"))
    pg = Postgres(pgdir)
    try:
        with pg.admin() as c:
            c.execute("CREATE TABLE bench_items (id int)")
        results = {kind: [] for kind in KINDS}
        for r in range(RUNS):
            for kind in KINDS if r % 2 == 0 else reversed(KINDS):
                res = one_round(kind, pg, work)
                results[kind].append(res)
                print(f"round {r + 1} {kind}: {res['issue']:.0f} issued/s, {res['revoke']:.0f} revoked/s",
                      file=sys.stderr)
    finally:
        pg.stop()
        shutil.rmtree(pgdir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    def med(kind, key):
        return statistics.median(x[key] for x in results[kind])

    print(f"\nDynamic PostgreSQL credentials: N={N} per round, {C} client threads, pool {POOL}, "
          f"password_authentication={PASSWORD_AUTH}, {RUNS} rounds "
          f"(medians); {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'server':<26} {'issued/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'revoked/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'peak RSS':>9}")
    for kind, label in (("openbao", "OpenBao 2.7.2 (dev)"), ("leakstop", "leakstop (dev)"),
                        ("leakstop-scram1", "leakstop, scram 1 iter")):
        print(f"{label:<26} {med(kind, 'issue'):>9.0f} {med(kind, 'issue_p50'):>8.1f} {med(kind, 'issue_p99'):>8.1f} "
              f"{med(kind, 'revoke'):>10.0f} {med(kind, 'revoke_p50'):>8.1f} {med(kind, 'revoke_p99'):>8.1f} "
              f"{med(kind, 'rss'):>7.0f}MB")
    for kind in ("leakstop", "leakstop-scram1"):
        print(f"ratio {kind}/OpenBao: issued {med(kind, 'issue') / med('openbao', 'issue'):.2f}x, "
              f"revoked {med(kind, 'revoke') / med('openbao', 'revoke'):.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
