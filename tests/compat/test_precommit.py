"""The real pre-commit framework (PyPI) running leakstop's hooks from this repository with `try-repo`."""

import os
import shutil
import subprocess

import pytest

from conftest import ROOT, git_env, github_pat, leakstop_bin


def env(home) -> dict:
    """git's environment with the built leakstop first on PATH (the hooks run `leakstop`)."""
    return git_env(home, PATH=f"{leakstop_bin().parent}{os.pathsep}{os.environ.get('PATH', '')}")


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], env=env(repo.parent), check=True, capture_output=True,
                          text=True)


@pytest.fixture
def project(tmp_path):
    assert shutil.which("pre-commit", path=env(tmp_path)["PATH"]), "pre-commit missing: pip install pre-commit"
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# project\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def try_repo(repo, hook_id, tmp_path):
    e = env(tmp_path)
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
