#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: installs what the tests need
# (tests/setup.sh), builds the workspace once, runs the Rust tests, then the Python client suites.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash tests/setup.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# One build shared by everything: the binary the end-to-end tests drive, then the test harnesses.
# Style gates first: cheap, and a failure here names the fix (cargo fmt / the clippy lint).
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-run
export LEAKSTOP_BIN="$root/target/debug/leakstop"
export BAO_BIN="$root/.venv/bin/bao"
export PATH="$root/.venv/bin:$PATH"
export SARIF_SCHEMA="${SARIF_SCHEMA:-$root/.venv/share/sarif-schema-2.1.0.json}"

cargo test --workspace --locked

if [ -d tests/compat ] && ls tests/compat/test_*.py >/dev/null 2>&1; then
    .venv/bin/python -m pytest -q tests/compat tests/accuracy
fi
