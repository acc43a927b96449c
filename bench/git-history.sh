#!/usr/bin/env bash
# Whole-history scan of a git repository: leakstop `scan --git` vs betterleaks `git`, gitleaks `git` and kingfisher
# (`scan --git-history full`), each with its default rules, side by side in one run. Also times
# `git cat-file --batch-all-objects --batch` (reading every object once, one core) as a floor.
#
#   bench/git-history.sh [REPO] [RUNS]     REPO default /work/bench-data/gitgit (a clone of git/git master),
#                                          RUNS default 3 for leakstop, 1 for each peer (they take minutes)
#
# Prints per tool: wall seconds (median), peak RSS, findings, and each peer's time as a multiple of leakstop's.
# Targets (issue 3): leakstop <= 15 s and <= 300 MB on git/git's ~82k commits with 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
repo=${1:-/work/bench-data/gitgit}
runs=${2:-3}
[ -d "$repo" ] || { echo "bench: $repo missing; clone one, e.g. git clone --single-branch -b master <git/git> $repo" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time missing: apt-get install time" >&2; exit 2; }
leakstop=${LEAKSTOP:-$root/target/release/leakstop}
if [ -z "${LEAKSTOP:-}" ]; then
    # The README's build: the pack reader inflates through zlib-rs in every build (no zlib-ng feature needed).
    (cd "$root" && cargo build --release --locked -p leakstop >&2)
fi
# shellcheck source=bench/peers.sh
. "$root/bench/peers.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
commits=$(git -C "$repo" rev-list --all --count)
echo "bench: $repo: $commits commits; $(nproc) cores" >&2

measure() { # name runs command...
    local name=$1 n=$2; shift 2
    : > "$work/$name.times"
    for _ in $(seq 1 "$n"); do
        /usr/bin/time -f "%e %M" -o "$work/$name.one" "$@" >/dev/null 2>"$work/$name.err" || true
        tail -1 "$work/$name.one" >> "$work/$name.times"
    done
    echo "bench: $name done: $(cat "$work/$name.times" | tr '\n' ' ')" >&2
}

# Warm the page cache for everyone.
git -C "$repo" cat-file --batch-all-objects --batch-check >/dev/null
measure git-cat-file 1 sh -c "git -C '$repo' cat-file --batch-all-objects --batch >/dev/null"
measure leakstop "$runs" "$leakstop" scan --git "$repo" --format json --output "$work/leakstop.json" --quiet
# The same scan reading every blob through libgit2 instead of the packs' delta forests (the pre-pack-reader path).
measure leakstop-libgit2 1 "$leakstop" scan --git "$repo" --no-pack-reader --format json --output "$work/leakstop-libgit2.json" --quiet
measure betterleaks 1 "$BETTERLEAKS" git "$repo" --no-banner --log-level error --exit-code 0 -o "$work/betterleaks.json"
measure gitleaks 1 "$GITLEAKS" git "$repo" --no-banner --log-level error --exit-code 0 -f json -r "$work/gitleaks.json"
measure kingfisher 1 "$KINGFISHER" scan "$repo" --no-validate --git-history full -f json -o "$work/kingfisher.json"

python3 - "$work" <<'PY'
import json, os, statistics, sys
work = sys.argv[1]
def findings(name):
    p = os.path.join(work, name + ".json")
    if not os.path.exists(p):
        return "-"
    text = open(p).read().strip()
    if not text:
        return 0
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        return sum(1 for l in text.splitlines() if l.strip())
    if isinstance(v, dict):
        for k in ("findings", "matches", "results"):
            if isinstance(v.get(k), list):
                return len(v[k])
    return len(v) if isinstance(v, list) else "?"
rows = {}
for name in ["git-cat-file", "leakstop", "leakstop-libgit2", "betterleaks", "gitleaks", "kingfisher"]:
    ts = [tuple(map(float, l.split())) for l in open(os.path.join(work, name + ".times")) if l.strip()]
    rows[name] = (statistics.median(t[0] for t in ts), max(t[1] for t in ts) / 1024, len(ts))
base = rows["leakstop"][0]
print(f"\n{'tool':16} {'wall s (median)':>16} {'runs':>5} {'peak RSS MB':>12} {'findings':>9} {'vs leakstop':>12}")
for name, (wall, rss, n) in rows.items():
    ratio = f"{wall / base:.2f}x" if name != "leakstop" else "1.00x"
    print(f"{name:16} {wall:16.2f} {n:5} {rss:12.0f} {str(findings(name)) if name != 'git-cat-file' else '':>9} {ratio:>12}")
same = open(os.path.join(work, "leakstop.json")).read() == open(os.path.join(work, "leakstop-libgit2.json")).read()
print(f"leakstop reports identical with and without the pack reader: {same}")
print("targets: leakstop <= 15 s, <= 300 MB; >= 4.5x betterleaks, >= 8x kingfisher")
PY
