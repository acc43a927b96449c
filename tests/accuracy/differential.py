#!/usr/bin/env python3
"""Differential run: leakstop versus gitleaks, betterleaks and kingfisher on one directory (issue 18).

  differential.py DIR [--out FILE.jsonl] [--raw FILE.json] [--labels LABELS] [--sample N] [--seed S]

Every tool's report is normalised to (path, line, secret-hash); findings are grouped by (path, line). A location is
a disagreement when leakstop and at least one peer differ (leakstop alone, or some peer without leakstop). Prints
counts and writes every disagreement as JSON lines (no secret in clear: the source line is shown with the flagged
value masked). --sample prints N random disagreements with masked context, for hand triage into TRIAGE.md.
"""

import argparse
import collections
import json
import pathlib
import random
import re
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tools  # noqa: E402

NEAR = 1
TOOLS = ["leakstop", "gitleaks", "betterleaks", "kingfisher"]
# Anything token-like on the line is masked, keeping its first 4 characters so the kind stays recognisable.
TOKENISH = re.compile(r"[A-Za-z0-9+/_\-.=:@]{16,}")


def masked_line(root, rel, line):
    try:
        with open(root / rel, "rb") as f:
            for i, raw in enumerate(f, 1):
                if i == line:
                    text = raw.decode("utf-8", "replace").strip()[:200]
                    return TOKENISH.sub(lambda m: m.group(0)[:4] + "…", text)
    except OSError:
        return ""
    return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--out", type=pathlib.Path)
    ap.add_argument("--sample", type=int, default=0)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--raw", type=pathlib.Path,
                    help="normalised findings of all tools: reused when it exists, else written after the runs")
    ap.add_argument("--labels", type=pathlib.Path, help="the corpus labels.jsonl: classify disagreements by label")
    a = ap.parse_args()
    if not a.dir.is_dir():
        print(f"differential: {a.dir} is not a directory", file=sys.stderr)
        return 2
    at = collections.defaultdict(lambda: collections.defaultdict(set))  # (path, line) -> tool -> rules
    if a.raw and a.raw.exists():
        raw = {t: [tools.Finding(*f) for f in fs] for t, fs in json.loads(a.raw.read_text()).items()}
    else:
        bins = tools.peer_bins()
        raw = {}
        for name in TOOLS:
            t0 = time.monotonic()
            raw[name] = tools.run_tool(name, a.dir, bins)
            print(f"{name:12} {len(raw[name]):6} findings  {time.monotonic() - t0:6.1f}s", file=sys.stderr)
        if a.raw:
            a.raw.write_text(json.dumps(raw))
    for name, found in raw.items():
        for f in found:
            at[(f.path, f.line)][name].add(f.rule)
    # Tools anchor multi-line secrets differently (a PEM key's BEGIN line or its first base64 line), so a tool
    # within NEAR line(s) of a location counts as agreeing.
    by_file = collections.defaultdict(list)
    for (path, line), by in at.items():
        by_file[path].append((line, by))
    merged = {}
    for (path, line), by in at.items():
        near = collections.defaultdict(set)
        for other, oby in by_file[path]:
            if abs(other - line) <= NEAR:
                for t, r in oby.items():
                    near[t] |= r
        merged[(path, line)] = near
    rows = []
    counts = collections.Counter()
    for (path, line), by in sorted(merged.items()):
        ls = "leakstop" in by
        peers = sorted(t for t in by if t != "leakstop")
        if ls and len(peers) == 3:
            counts["all four"] += 1
            continue
        kind = "leakstop only" if ls and not peers else ("peers only" if not ls else "leakstop + some peers")
        counts[kind] += 1
        rows.append({"path": path, "line": line, "kind": kind, "tools": {t: sorted(r) for t, r in by.items()},
                     "context": masked_line(a.dir, path, line)})
    per_peer = collections.Counter()
    for r in rows:
        if r["kind"] == "peers only":
            for t in r["tools"]:
                per_peer[t] += 1
    print(f"locations flagged by any tool: {len(at)}")
    for k, v in counts.most_common():
        print(f"  {k:24} {v}")
    print("  peers-only locations per peer: " + ", ".join(f"{t} {n}" for t, n in sorted(per_peer.items())))
    if a.labels:
        label_at = {}
        for x in a.labels.read_text().splitlines():
            lab = json.loads(x)
            for ln in range(lab["line"], lab["end_line"] + 1):
                label_at[(lab["path"], ln)] = lab
        verdicts = collections.Counter()
        for r in rows:
            lab = label_at.get((r["path"], r["line"]))
            secret = bool(lab and lab["is_secret"])
            r["label"] = lab and {"family": lab["family"], "kind": lab["kind"], "is_secret": secret}
            if r["kind"] == "peers only":
                verdicts["leakstop miss" if secret else "peer false positive"] += 1
            elif secret:
                verdicts["peer miss (leakstop right)"] += 1
            else:
                verdicts["leakstop false positive"] += 1
        print("  by label: " + ", ".join(f"{k} {v}" for k, v in verdicts.most_common()))
    if a.out:
        with open(a.out, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    if a.sample:
        rng = random.Random(a.seed)
        for r in rng.sample(rows, min(a.sample, len(rows))):
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
