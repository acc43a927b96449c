"""leakstop's SARIF report validates against the official SARIF 2.1.0 JSON schema and carries what GitHub code
scanning needs (rules with ids and descriptions, results with relative URIs, regions and fingerprints).

The schema is read from $SARIF_SCHEMA, else from ../shared/schemas/sarif-schema-2.1.0.json beside the checkout
(tests/setup.sh provides one); it is never copied into this repository.
"""

import json
import os
import pathlib

import pytest

from conftest import ROOT, github_pat, run_leakstop


def schema_path() -> pathlib.Path:
    candidates = [os.environ.get("SARIF_SCHEMA"), ROOT.parent / "shared" / "schemas" / "sarif-schema-2.1.0.json"]
    for c in candidates:
        if c and pathlib.Path(c).is_file():
            return pathlib.Path(c)
    pytest.fail("SARIF 2.1.0 schema not found: set SARIF_SCHEMA or run tests/setup.sh (it fetches the schema)")


def run_sarif(cwd: pathlib.Path) -> dict:
    out = run_leakstop("scan", "--format", "sarif", ".", cwd=cwd, timeout=120)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def validator():
    try:
        import jsonschema
    except ImportError:
        pytest.fail("the Python package `jsonschema` is not installed: pip install -r tests/requirements.txt")
    schema = json.loads(schema_path().read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_sarif_with_findings_is_valid_and_complete(tmp_path):
    pat = github_pat()
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "sub dir" / "settings.py").write_text(f"DEBUG = True\nGITHUB_TOKEN = '{pat}'\n")
    (tmp_path / "notes.txt").write_text("nothing here\n")
    doc = run_sarif(tmp_path)
    errors = sorted(validator().iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    assert pat not in json.dumps(doc), "SARIF must never carry the secret in clear"

    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert len(run["results"]) == 1
    result = run["results"][0]
    assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    assert rules[result["ruleIndex"]]["shortDescription"]["text"]
    loc = result["locations"][0]["physicalLocation"]
    # Relative, forward slashes, percent-encoded: what GitHub maps onto the repository's files.
    assert loc["artifactLocation"]["uri"] == "sub%20dir/settings.py"
    assert loc["region"]["startLine"] == 2
    assert loc["region"]["startColumn"] == len("GITHUB_TOKEN = '") + 1
    assert loc["region"]["endColumn"] == len("GITHUB_TOKEN = '") + 1 + len(pat)
    assert result["partialFingerprints"]["leakstopFingerprint/v1"].startswith("ls1:")


def test_sarif_without_findings_is_valid(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    doc = run_sarif(tmp_path)
    errors = list(validator().iter_errors(doc))
    assert not errors, [e.message for e in errors]
    assert doc["runs"][0]["results"] == []
