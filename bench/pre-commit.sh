#!/usr/bin/env bash
# What the pre-commit hook adds to `git commit`, side by side with gitleaks' own staged scan, in one run.
#
#   bench/pre-commit.sh [REPO]      (default: a checkout of git/git in bench/out/git if present, else a small repo)
#
# Stages a few modified files in a throw-away copy of REPO's work tree and times, with hyperfine:
#   - `git commit` with no hook, with leakstop's native hook, and with a hook running `gitleaks git --staged`;
#   - the bare staged scans (`leakstop scan --staged`, `gitleaks git --staged`, `betterleaks git --staged`).
# Each commit is undone (`git reset --soft HEAD~`) between runs so every run commits the same change.
# Prints medians and the time the leakstop hook adds (target: <= 30 ms).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
leakstop=${LEAKSTOP:-$root/target/release/leakstop}
[ -x "$leakstop" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v hyperfine >/dev/null || { echo "install hyperfine (Debian package hyperfine)" >&2; exit 2; }
src=${1:-$root/bench/out/git}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -d "$src/.git" ] || git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    git clone -q --depth 50 "file://$(cd "$src" && pwd)" "$work/repo"
else
    git init -q "$work/repo"
    for i in $(seq 1 200); do printf 'line %s\n' $(seq 1 50) > "$work/repo/f$i.txt"; done
    git -C "$work/repo" add -A && git -C "$work/repo" -c user.name=b -c user.email=b@b commit -qm init
fi
repo=$work/repo
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.test GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.test
# A typical small change: three tracked files get a few new lines.
mapfile -t files < <(git -C "$repo" ls-files | grep -E '\.(c|h|txt|sh|py|md)$' | head -3)
for f in "${files[@]}"; do printf '\nstatic int bench_added_%s = 1;\n' "$RANDOM" >> "$repo/$f"; done
git -C "$repo" add -- "${files[@]}"
hooks=$repo/.git/hooks
mkdir -p "$hooks"

commit_cmd="git -C $repo commit -q -m bench && git -C $repo reset -q --soft HEAD~"
# shellcheck source=bench/peers.sh
. "$root/bench/peers.sh"
gitleaks_bin=$GITLEAKS
betterleaks_bin=$BETTERLEAKS
kingfisher_bin=$KINGFISHER

run_hooked() { # name, hook body
    printf '#!/bin/sh\n%s\n' "$2" > "$hooks/pre-commit"; chmod +x "$hooks/pre-commit"
}

out=$root/bench/out; mkdir -p "$out"
rm -f "$hooks/pre-commit"
hyperfine -N --warmup 3 --runs 30 --export-json "$out/commit-nohook.json" -n "git commit (no hook)" "sh -c '$commit_cmd'" >/dev/null
(cd "$repo" && "$leakstop" hook install >/dev/null 2>&1)
hyperfine -N --warmup 3 --runs 30 --export-json "$out/commit-leakstop.json" -n "git commit (leakstop hook)" "sh -c '$commit_cmd'" >/dev/null
rm -f "$hooks/pre-commit"
args=(-N --warmup 3 --runs 30 --export-json "$out/staged.json" -n "leakstop scan --staged" "$leakstop scan --staged $repo")
if [ -n "$gitleaks_bin" ]; then
    run_hooked gitleaks "$gitleaks_bin git --staged --no-banner $repo"
    hyperfine -N --warmup 2 --runs 15 --export-json "$out/commit-gitleaks.json" -n "git commit (gitleaks hook)" "sh -c '$commit_cmd'" >/dev/null
    rm -f "$hooks/pre-commit"
    args+=(-n "gitleaks git --staged" "$gitleaks_bin git --staged --no-banner $repo")
fi
[ -n "$betterleaks_bin" ] && args+=(-n "betterleaks git --staged" "$betterleaks_bin git --staged --no-banner $repo")
# kingfisher has no staged mode: its closest is scanning the repository without history.
[ -n "$kingfisher_bin" ] && args+=(-n "kingfisher scan --git-history none" "$kingfisher_bin scan --no-validate --git-history none $repo")
hyperfine -i "${args[@]}" >/dev/null

python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def med(name):
    p = os.path.join(out, name)
    return json.load(open(p))["results"] if os.path.exists(p) else []
rows = []
for f in ["commit-nohook.json", "commit-leakstop.json", "commit-gitleaks.json", "staged.json"]:
    for r in med(f):
        rows.append((r["command"], r["median"] * 1000, r["mean"] * 1000, r["stddev"] * 1000 if r["stddev"] else 0))
base = next((m for c, m, *_ in rows if "no hook" in c), None)
print(f"{'command':40} {'median ms':>10} {'mean ms':>9} {'stddev':>7} {'added':>8}")
for c, m, mean, sd in rows:
    added = f"{m - base:+.1f}" if base is not None and c.startswith("git commit") else ""
    print(f"{c:40} {m:10.1f} {mean:9.1f} {sd:7.1f} {added:>8}")
lk = next((m for c, m, *_ in rows if c == "git commit (leakstop hook)"), None)
gl = next((m for c, m, *_ in rows if c == "git commit (gitleaks hook)"), None)
if lk is not None and base is not None:
    print(f"leakstop hook adds {lk - base:.1f} ms to git commit (target <= 30 ms)")
if lk is not None and gl is not None and base is not None and lk - base > 0:
    print(f"gitleaks hook adds {gl - base:.1f} ms: leakstop is {(gl - base) / (lk - base):.1f}x less overhead")
PY
