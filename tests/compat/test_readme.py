"""The README's examples run as written, so they cannot rot.

Every ```sh block of README.md is run for real, line by line (continuation lines joined), in a scratch git
repository holding a few secrets, with `leakstop` on PATH (LEAKSTOP_BIN) and `bao` on PATH (BAO_BIN):
- a command must not fail: exit 0, or 1 for a `leakstop scan` that reports the planted secrets (its documented
  "secrets found"); 2 (usage/IO error), 127 (no such command) or anything else fails the test with the output;
- `cargo build --release && ./target/release/leakstop` becomes the already built `leakstop`;
- a block that starts `leakstop server --dev`, or runs `bao`, gets that server on a free loopback port (its
  `VAULT_ADDR` line is pointed there) and runs the rest against it;
- ```toml blocks that are leakstop configs are checked with `leakstop rules check`.

A block or line that cannot run here is listed below with the reason; a block that is neither runnable nor listed
fails the test, so a new README example is either run or explicitly excused.
"""

import os
import re
import subprocess

import pytest

from conftest import ROOT, bao_bin, git_env, github_pat, leakstop_bin, run_leakstop, start_leakstop

README = ROOT / "README.md"

# Blocks (by their first command line) that are not run, and why.
SKIP_BLOCKS = {
    "export LEAKSTOP_TOKEN=$(leakstop login --oidc": "needs a CI job's OIDC token (GitHub/GitLab issue it; "
    "tests/tests/e2e/federation_e2e.rs covers login with a stand-in issuer)",
    "bao secrets enable database": "needs a PostgreSQL server named `db`; tests/tests/e2e/database.rs runs the same "
    "config, rotate-root, role and creds steps against a PostgreSQL the test starts",
}

# Lines (by prefix) that are not run inside an otherwise run block, and why.
SKIP_LINES = {
    "bash tests/run.sh": "is this test suite itself",
    "bao write auth/jwt/config oidc_discovery_url=https://token.actions.githubusercontent.com":
        "OIDC discovery needs the network (GitHub's issuer); tests/tests/e2e/jwt_auth.rs covers discovery locally",
}

LEAKSTOP_CONFIG_MARKERS = ("[[rule]]", "[extend]", "[allowlist]")


def blocks(lang: str):
    text = README.read_text()
    return [m.group(1) for m in re.finditer(r"^```" + lang + r"\n(.*?)^```", text, re.S | re.M)]


def logical_lines(block: str):
    """Commands of a block: continuation lines joined, comments and blank lines dropped."""
    out, cur = [], ""
    for raw in block.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        stripped = cur.strip()
        cur = ""
        if stripped and not stripped.startswith("#"):
            out.append(stripped)
    return out


def skipped_line(line: str):
    return next((why for prefix, why in SKIP_LINES.items() if line.startswith(prefix)), None)


@pytest.fixture
def workdir(tmp_path):
    """A git repository with secrets where the README's examples point: path/to/dir, src, config/app.env."""
    repo = tmp_path / "repo"
    (repo / "path/to/dir").mkdir(parents=True)
    (repo / "src").mkdir()
    (repo / "config").mkdir()
    env = git_env(tmp_path)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    (repo / "src/app.py").write_text("print('hello')\n")
    git(repo, env, "add", "-A")
    git(repo, env, "commit", "-qm", "first")
    git(repo, env, "tag", "v2.0")
    git(repo, env, "update-ref", "refs/remotes/origin/main", "HEAD")
    (repo / "path/to/dir/settings.py").write_text(f'TOKEN = "{github_pat()}"\n')
    (repo / "config/app.env").write_text(f"GITHUB_TOKEN={github_pat()}\n")
    (repo / "src/app.py").write_text(f'print("hello")\nT = "{github_pat()}"\n')
    git(repo, env, "add", "-A")
    git(repo, env, "commit", "-qm", "second")
    (repo / "src/app.py").write_text(f'print("hello!")\nT = "{github_pat()}"\n')
    git(repo, env, "add", "src/app.py")
    # `other-baseline.json` as the README's `--baseline` example expects it to exist.
    run_line("leakstop scan -q --write-baseline other-baseline.json .", repo, shell_env(tmp_path, env))
    return repo, shell_env(tmp_path, env)


def git(repo, env, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, env=env)


def shell_env(tmp_path, env):
    """PATH with `leakstop` and `bao` first."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name, target in (("leakstop", leakstop_bin()), ("bao", bao_bin())):
        link = bindir / name
        if not os.path.lexists(link):
            link.symlink_to(target)
    env = dict(env)
    env["PATH"] = f"{bindir}:{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    return env


def run_line(line: str, cwd, env):
    line = line.replace("cargo build --release && ./target/release/leakstop", "leakstop")
    p = subprocess.run(["bash", "-c", "set -o pipefail; " + line], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    found_secrets = p.returncode == 1 and re.search(r"\bleakstop scan\b", line)
    assert p.returncode == 0 or found_secrets, (
        f"README command failed (exit {p.returncode}): {line}\nstdout:\n{p.stdout[-3000:]}\n"
        f"stderr:\n{p.stderr[-3000:]}")
    return p


def classify(block: str):
    lines = logical_lines(block)
    first = lines[0] if lines else ""
    for prefix, why in SKIP_BLOCKS.items():
        if first.startswith(prefix):
            return "skip", why
    if first.startswith("leakstop server --dev") or any(l.startswith("bao ") for l in lines):
        return "server", None
    if all(l.split()[0] in ("leakstop", "git", "cargo", "bash", "bao", "export") for l in lines):
        return "shell", None
    return "unknown", None


SH_BLOCKS = blocks("sh")


def block_id(block: str) -> str:
    lines = logical_lines(block)
    return (lines[0] if lines else "empty")[:50]


def test_every_sh_block_is_run_or_listed_with_a_reason():
    assert SH_BLOCKS, "README.md has no ```sh blocks?"
    unknown = [block_id(b) for b in SH_BLOCKS if classify(b)[0] == "unknown"]
    assert not unknown, f"README blocks neither runnable here nor listed in SKIP_BLOCKS: {unknown}"
    # Entries for blocks and lines that no longer exist would excuse nothing: keep the lists honest.
    all_lines = [l for b in SH_BLOCKS for l in logical_lines(b)]
    for prefix in list(SKIP_BLOCKS) + list(SKIP_LINES):
        assert any(l.startswith(prefix) for l in all_lines), f"stale skip entry: {prefix}"


@pytest.mark.parametrize("block", SH_BLOCKS, ids=block_id)
def test_sh_block_runs(block, workdir):
    repo, env = workdir
    kind, why = classify(block)
    if kind == "skip":
        # Listed with its reason in SKIP_BLOCKS; reported, not silent.
        print(f"not run: {block_id(block)}: {why}")
        return
    lines = logical_lines(block)
    server = None
    if kind == "server":
        assert bao_bin().exists(), f"{bao_bin()} does not exist: bash tests/setup.sh installs OpenBao (or set BAO_BIN)"
        server = start_leakstop(repo.parent)
        env = dict(env, VAULT_ADDR=server.addr, VAULT_TOKEN=server.root_token)
        if lines[0].startswith("leakstop server --dev"):
            lines = lines[1:]
    ran = 0
    try:
        for line in lines:
            why = skipped_line(line)
            if why:
                print(f"not run: {line[:60]}: {why}")
                continue
            if line.startswith("export VAULT_ADDR="):
                continue  # pointed at the server started above
            run_line(line, repo, env)
            ran += 1
    finally:
        if server:
            server.stop()
    assert ran > 0, f"nothing of this block ran: {block_id(block)}"


def test_toml_configs_in_the_readme_are_valid(tmp_path):
    configs = [b for b in blocks("toml") if any(m in b for m in LEAKSTOP_CONFIG_MARKERS)]
    assert configs, "the README's rule file example is gone?"
    for i, cfg in enumerate(configs):
        path = tmp_path / f".leakstop-{i}.toml"
        path.write_text(cfg)
        p = run_leakstop("rules", "check", path)
        assert p.returncode == 0, f"README config #{i} is invalid:\n{cfg}\n{p.stdout}{p.stderr}"


def test_pre_commit_example_names_hooks_that_exist():
    hooks = (ROOT / ".pre-commit-hooks.yaml").read_text()
    yaml = "\n".join(b for b in blocks("yaml") if "pre-commit" in b or "hooks:" in b)
    ids = re.findall(r"-\s*id:\s*([\w-]+)", yaml)
    assert ids, "the README's pre-commit example is gone?"
    for hook_id in ids:
        assert re.search(rf"^- id: {re.escape(hook_id)}$", hooks, re.M), f"README names hook `{hook_id}`"
