#!/usr/bin/env python3
"""Score a scanner on the generated corpus (issue 18).

  score.py [--tool leakstop|gitleaks|betterleaks|kingfisher|all] [--corpus DIR] [--json] [--no-thresholds]

Without --corpus a fresh corpus is generated in a temporary directory (make_corpus.py, fixed seed).
A finding matches a label when it is on a line of the label's span in the same file. A positive label with a finding
is a hit (recall); a finding on a negative label or on an unlabelled line is a false positive.
For leakstop the run fails (exit 1) when recall drops below MIN_RECALL or false positives exceed MAX_FP.
"""

import argparse
import collections
import json
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tools  # noqa: E402

# Thresholds from the measured baseline (README.md here: recall 0.949, 57 false positives, nearly all on
# look-alike values under secret-named keys) with a margin, so a rule regression that loses a family or starts
# flagging a placeholder class fails. Lower MAX_FP as TRIAGE.md's proposed fixes land.
MIN_RECALL = 0.93
MAX_FP = 65
SEED = 18


def make_corpus(dest):
    subprocess.run([sys.executable, str(HERE / "make_corpus.py"), str(dest), "--seed", str(SEED)], check=True)


def load_labels(corpus):
    return [json.loads(x) for x in (corpus / "labels.jsonl").read_text().splitlines() if x.strip()]


def score(labels, findings):
    by_line = collections.defaultdict(list)  # (path, line) -> label index
    for i, lab in enumerate(labels):
        for ln in range(lab["line"], lab["end_line"] + 1):
            by_line[(lab["path"], ln)].append(i)
    hit = set()
    fp = collections.Counter()  # family -> false positives
    fp_kinds = collections.Counter()
    fp_seen = set()
    for f in findings:
        idx = by_line.get((f.path, f.line), [])
        if not idx:
            key = (f.path, f.line)
            if key not in fp_seen:
                fp_seen.add(key)
                fp["(unlabelled)"] += 1
                fp_kinds["unlabelled"] += 1
            continue
        for i in idx:
            if labels[i]["is_secret"]:
                hit.add(i)
            elif i not in fp_seen:
                fp_seen.add(i)
                fp[labels[i]["family"]] += 1
                fp_kinds[labels[i]["kind"]] += 1
    fams = collections.defaultdict(lambda: [0, 0, 0])  # family -> [positives, hits, negatives]
    for i, lab in enumerate(labels):
        row = fams[lab["family"]]
        if lab["is_secret"]:
            row[0] += 1
            row[1] += i in hit
        else:
            row[2] += 1
    pos = sum(r[0] for r in fams.values())
    tp = len(hit)
    nfp = sum(fp.values())
    return {
        "families": {k: {"positives": v[0], "found": v[1], "negatives": v[2], "fp": fp.get(k, 0)}
                     for k, v in sorted(fams.items())},
        "unlabelled_fp": fp.get("(unlabelled)", 0),
        "fp_by_kind": dict(fp_kinds),
        "positives": pos, "tp": tp, "fp": nfp, "negatives": sum(r[2] for r in fams.values()),
        "recall": tp / pos if pos else 0.0,
        "precision": tp / (tp + nfp) if tp + nfp else 1.0,
    }


def print_table(name, s, out=sys.stdout):
    print(f"\n== {name}: recall {s['recall']:.3f} ({s['tp']}/{s['positives']}), precision {s['precision']:.3f}, "
          f"false positives {s['fp']} (of {s['negatives']} labelled negatives; {s['unlabelled_fp']} on unlabelled "
          f"lines)", file=out)
    print(f"{'family':24} {'found':>9} {'fp':>4}", file=out)
    for fam, r in s["families"].items():
        if r["positives"] or r["fp"]:
            print(f"{fam:24} {r['found']:>4}/{r['positives']:<4} {r['fp']:>4}", file=out)
    if s["fp_by_kind"]:
        print("false positives by negative kind: " + ", ".join(f"{k} {v}" for k, v in sorted(s["fp_by_kind"].items())),
              file=out)


def main():
    ap = argparse.ArgumentParser(description="Score scanners on the labelled corpus")
    ap.add_argument("--tool", default="leakstop", choices=["leakstop", "gitleaks", "betterleaks", "kingfisher", "all"])
    ap.add_argument("--corpus", type=pathlib.Path, help="an existing make_corpus.py output (default: generate one)")
    ap.add_argument("--json", action="store_true", help="print the scores as JSON")
    ap.add_argument("--no-thresholds", action="store_true", help="report only, never fail")
    a = ap.parse_args()
    names = ["leakstop", "gitleaks", "betterleaks", "kingfisher"] if a.tool == "all" else [a.tool]
    with tempfile.TemporaryDirectory() as td:
        corpus = a.corpus
        if corpus is None:
            corpus = pathlib.Path(td) / "corpus"
            make_corpus(corpus)
        if not (corpus / "labels.jsonl").exists():
            print(f"score: {corpus}/labels.jsonl missing; generate it with make_corpus.py", file=sys.stderr)
            return 2
        labels = load_labels(corpus)
        bins = None if names == ["leakstop"] else tools.peer_bins()
        results = {n: score(labels, tools.run_tool(n, corpus / "tree", bins)) for n in names}
    if a.json:
        json.dump(results, sys.stdout, indent=1)
    else:
        for n, s in results.items():
            print_table(n, s)
    if "leakstop" in results and not a.no_thresholds:
        s = results["leakstop"]
        bad = []
        if s["recall"] < MIN_RECALL:
            bad.append(f"recall {s['recall']:.3f} < {MIN_RECALL}")
        if s["fp"] > MAX_FP:
            bad.append(f"false positives {s['fp']} > {MAX_FP}")
        if bad:
            print("score: leakstop regressed on the corpus: " + "; ".join(bad), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
