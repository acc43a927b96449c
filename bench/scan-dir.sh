#!/usr/bin/env bash
# Directory-scan benchmark: leakstop vs gitleaks (`dir`), betterleaks (`fs`) and kingfisher (`scan --no-validate`)
# on the same tree, each with its default rules. Prints per tool: median wall time, throughput, peak RSS, findings,
# and each peer's time as a multiple of leakstop's (">1" = leakstop faster).
#
#   bench/scan-dir.sh [TREE] [RUNS]      TREE default ~/.cargo/registry/src, RUNS default 5
#
# Needs: cargo, python3, /usr/bin/time (Debian package `time`); the peers come from their PyPI wheels (bench/peers.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tree=${1:-$HOME/.cargo/registry/src}
runs=${2:-5}
[ -d "$tree" ] || { echo "bench: $tree is not a directory (pass the tree to scan as first argument)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time missing: apt-get install time" >&2; exit 2; }

echo "bench: building leakstop --release" >&2
(cd "$root" && cargo build --release --bin leakstop --quiet)
leakstop="${CARGO_TARGET_DIR:-$root/target}/release/leakstop"

# shellcheck source=bench/peers.sh
. "$root/bench/peers.sh"
gitleaks_bin=$GITLEAKS

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bytes=$(du -sb --apparent-size "$tree" | cut -f1)
files=$(find "$tree" -type f | wc -l)
echo "bench: tree $tree: $files files, $((bytes / 1048576)) MiB; $runs runs per tool; $(nproc) cores" >&2

# tool name | command (betterleaks' local-path mode is its default `auto` subcommand) (the report goes to $work/<name>.json)
declare -a names cmds
add() { names+=("$1"); cmds+=("$2"); }
add leakstop "'$leakstop' scan '$tree' --format json --output '$work/leakstop.json' --quiet"
[ -n "$gitleaks_bin" ] && add gitleaks "'$gitleaks_bin' dir '$tree' --no-banner --log-level error --exit-code 0 -f json -r '$work/gitleaks.json'"
add betterleaks "'$BETTERLEAKS' fs '$tree' --no-banner --log-level error --exit-code 0 -o '$work/betterleaks.json'"
add kingfisher "'$KINGFISHER' scan '$tree' --no-validate --git-history none -f json -o '$work/kingfisher.json'"

# Warm the page cache once so every tool reads the tree from memory.
find "$tree" -type f -print0 | xargs -0 cat > /dev/null 2>&1 || true

# Rounds interleave the tools, so a change in the shared machine's load falls on every tool alike.
for n in "${names[@]}"; do : > "$work/$n.times"; done
for ((r = 0; r < runs; r++)); do
    for i in "${!names[@]}"; do
        n=${names[$i]}
        rm -f "$work/$n.json"
        if ! /usr/bin/time -f "%e %M" -o "$work/$n.one" bash -c "${cmds[$i]}" >/dev/null 2>"$work/$n.err"; then
            # Exit 1 = findings for some tools; only a missing report is a failure.
            [ -s "$work/$n.json" ] || { echo "bench: $n failed: $(tail -3 "$work/$n.err")" >&2; }
        fi
        tail -1 "$work/$n.one" >> "$work/$n.times"
    done
done

python3 - "$work" "$bytes" "${names[@]}" <<'PY'
import json, statistics, sys, os
work, nbytes, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def count(name):
    p = os.path.join(work, name + ".json")
    try:
        text = open(p).read().strip()
    except OSError:
        return None
    if not text:
        return 0
    try:
        doc = json.loads(text)
    except ValueError:
        return sum(1 for l in text.splitlines() if l.strip())
    if isinstance(doc, list):
        return len(doc)
    for k in ("findings", "matches", "results"):
        if isinstance(doc, dict) and isinstance(doc.get(k), list):
            return len(doc[k])
    return None
rows = {}
for n in names:
    if not os.path.exists(os.path.join(work, n + ".json")):
        print(f"{n}: no report (the tool failed; see above)")
        continue
    ts = [tuple(map(float, l.split())) for l in open(os.path.join(work, n + ".times")) if l.strip()]
    wall = statistics.median(t[0] for t in ts)
    rss = max(t[1] for t in ts) / 1024
    rows[n] = (wall, rss, count(n))
base = rows["leakstop"][0]
print(f"{'tool':<12} {'median s':>9} {'MB/s':>8} {'peak RSS MB':>12} {'findings':>9} {'time vs leakstop':>17}")
for n, (wall, rss, c) in rows.items():
    mbs = nbytes / 1e6 / wall if wall > 0 else float("inf")
    ratio = wall / base if base > 0 else float("inf")
    print(f"{n:<12} {wall:>9.2f} {mbs:>8.1f} {rss:>12.0f} {str(c):>9} {ratio:>16.2f}x")
peers = {n: r for n, r in rows.items() if n != "leakstop"}
if peers:
    fastest = min(peers, key=lambda n: peers[n][0])
    print(f"leakstop is {peers[fastest][0] / base:.2f}x faster than the fastest peer ({fastest})")
PY
