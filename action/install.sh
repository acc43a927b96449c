#!/usr/bin/env bash
# Puts a leakstop binary on PATH for the following steps: the one already on PATH if there is one, else one
# built from this action's own source (the repository root is the parent of action/) into a cached directory.
set -euo pipefail
if command -v leakstop >/dev/null 2>&1; then
    echo "leakstop: using $(command -v leakstop) ($(leakstop --version))"
    exit 0
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="${LEAKSTOP_INSTALL_ROOT:-$HOME/.leakstop-action}"
if [ ! -x "$dest/bin/leakstop" ]; then
    command -v cargo >/dev/null 2>&1 || {
        echo "::error title=leakstop::no leakstop on PATH and no cargo to build it; add a Rust toolchain step (e.g. dtolnay/rust-toolchain@stable) or install leakstop first"
        exit 2
    }
    cargo install --locked --quiet --root "$dest" --path "$root"
fi
echo "$dest/bin" >> "${GITHUB_PATH:-/dev/null}"
echo "leakstop: built $("$dest/bin/leakstop" --version)"
