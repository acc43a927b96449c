"""The real pre-commit framework (PyPI) running leakstop's hooks from this repository with `try-repo`."""

import os
import pathlib
import random
import shutil
import string
import subprocess
import zlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LEAKSTOP_BIN = pathlib.Path(os.environ.get("LEAKSTOP_BIN", ROOT / "target" / "debug" / "leakstop"))
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def github_pat() -> str:
    """A fresh GitHub classic PAT with a valid CRC32 checksum (never a real one)."""
    body = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(30))
    n, digits = zlib.crc32(body.encode()), []
    while n:
        n, r = divmod(n, 62)
        digits.append(BASE62[r])
    return "ghp_" + body + "".join(reversed(digits)).rjust(6, "0")


def env() -> dict:
    e = dict(os.environ)
    e.update(
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Ada Tester",
        GIT_AUTHOR_EMAIL="ada@example.test",
        GIT_COMMITTER_NAME="Ada Tester",
        GIT_COMMITTER_EMAIL="ada@example.test",
        PATH=f"{LEAKSTOP_BIN.parent}{os.pathsep}{e.get('PATH', '')}",
    )
    return e


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], env=env(), check=True, capture_output=True, text=True)


@pytest.fixture
def project(tmp_path):
    assert shutil.which("pre-commit", path=env()["PATH"]), "pre-commit is not installed: pip install pre-commit"
    assert LEAKSTOP_BIN.exists(), f"{LEAKSTOP_BIN} missing: run `cargo build` (tests/run.sh does)"
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# project\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def try_repo(repo, hook_id, tmp_path):
    e = env()
    e["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")
    return subprocess.run(
        ["pre-commit", "try-repo", str(ROOT), hook_id],
        cwd=repo,
        env=e,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_system_hook_blocks_a_secret_and_passes_a_clean_commit(project, tmp_path):
    (project / "app.py").write_text("def main():\n    return 0\n")
    git(project, "add", "app.py")
    clean = try_repo(project, "leakstop-system", tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "Passed" in clean.stdout

    token = github_pat()
    (project / "settings.py").write_text(f"DEBUG = False\nAPI_TOKEN = '{token}'\n")
    git(project, "add", "settings.py")
    blocked = try_repo(project, "leakstop-system", tmp_path)
    out = blocked.stdout + blocked.stderr
    assert blocked.returncode == 1, out
    assert "Failed" in out
    assert "settings.py:2" in out
    assert "leakstop:allow" in out
    assert token not in out, "the secret was printed in clear"
