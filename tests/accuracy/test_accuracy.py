"""Accuracy regression gate: leakstop's recall and false positives on the generated corpus (issue 18).

Uses LEAKSTOP_BIN (default target/debug/leakstop, see tests/conftest.py). The corpus is generated fresh with a
fixed seed.
"""

import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_corpus  # noqa: E402
import score  # noqa: E402
import tools  # noqa: E402
from conftest import leakstop_bin  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    leakstop_bin()  # fails early, naming the build command, when the binary is missing
    out = tmp_path_factory.mktemp("corpus")
    labels = make_corpus.build(out / "tree", score.SEED, 8)
    return out, labels


def test_corpus_is_deterministic(tmp_path):
    a = make_corpus.build(tmp_path / "a" / "tree", score.SEED, 2)
    b = make_corpus.build(tmp_path / "b" / "tree", score.SEED, 2)
    assert a == b
    first = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    for rel in first:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_leakstop_recall_and_false_positives_hold(corpus):
    out, labels = corpus
    s = score.score(labels, tools.run_leakstop(out / "tree", leakstop_bin()))
    missed = [f for f, r in s["families"].items() if r["positives"] and r["found"] == 0]
    assert s["recall"] >= score.MIN_RECALL, f"recall {s['recall']:.3f}; families with no hit: {missed}"
    assert s["fp"] <= score.MAX_FP, f"{s['fp']} false positives: {s['fp_by_kind']}"
    assert s["unlabelled_fp"] == 0, "findings on lines that hold no labelled value (filler, lockfile, docs)"


def test_scorer_counts_a_planted_miss_and_false_positive(corpus):
    # The scorer itself: dropping every finding of one family lowers recall; a finding on a negative is an FP.
    out, labels = corpus
    found = tools.run_leakstop(out / "tree", leakstop_bin())
    base = score.score(labels, found)
    without = [f for f in found if not f.path.startswith("jwt/")]
    assert score.score(labels, without)["families"]["jwt"]["found"] == 0
    flagged = {(f.path, f.line) for f in found}
    neg = next(lab for lab in labels if not lab["is_secret"] and lab["family"] == "generic-password"
               and (lab["path"], lab["line"]) not in flagged)
    extra = score.score(labels, found + [tools.Finding(neg["path"], neg["line"], "", "x")])
    assert extra["fp"] == base["fp"] + 1
    assert extra["families"]["generic-password"]["fp"] == base["families"]["generic-password"]["fp"] + 1
    assert extra["recall"] == base["recall"]
