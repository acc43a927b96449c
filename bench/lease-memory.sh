#!/usr/bin/env bash
# The lease manager's memory at 100k and 1M live leases (issue 16): for each N, one process issues N leases through
# the core's API (the toy engine, SQLite storage in a temporary directory), then a fresh process unseals over them,
# as a restarted server does, and reports its RSS before and after the unseal rebuilt the due queue, and its peak.
#
#   bench/lease-memory.sh [N ...]        default: 100000 1000000 (the 1M fill takes minutes)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
cargo test --release --locked -p leakstop-vault --lib --no-run >&2
for n in "${sizes[@]}"; do
    dir=$(mktemp -d)
    for phase in fill load; do
        LEASE_BENCH_DIR=$dir LEASE_BENCH_N=$n LEASE_BENCH_PHASE=$phase \
            cargo test --release --locked -q -p leakstop-vault --lib leases::tests::lease_memory_benchmark \
            -- --ignored --exact --nocapture 2>/dev/null | grep -E '^(fill|load):'
    done
    echo "storage for $n leases: $(du -sh "$dir" | cut -f1)"
    rm -rf "$dir"
done
