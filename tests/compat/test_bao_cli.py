"""The real `bao` CLI (`bao kv put` / `bao kv get`) against each server, configured only by environment."""

import json

from conftest import run_bao as bao
from conftest import unique


def test_bao_kv_put_then_get(server):
    path = unique("cli")
    put = bao(server, "kv", "put", "-mount=secret", path, "user=ada", "password=s3cr3t-value")
    assert put.returncode == 0, put.stderr
    get = bao(server, "kv", "get", "-mount=secret", "-format=json", path)
    assert get.returncode == 0, get.stderr
    body = json.loads(get.stdout)
    assert body["data"]["data"] == {"user": "ada", "password": "s3cr3t-value"}
    assert body["data"]["metadata"]["version"] == 1
    field = bao(server, "kv", "get", "-mount=secret", "-field=user", path)
    assert field.returncode == 0, field.stderr
    assert field.stdout.strip() == "ada"


def test_bao_kv_get_with_path_style_and_versions(server):
    path = unique("cli2")
    assert bao(server, "kv", "put", f"secret/{path}", "n=1").returncode == 0
    assert bao(server, "kv", "put", f"secret/{path}", "n=2").returncode == 0
    get = bao(server, "kv", "get", "-version=1", "-format=json", f"secret/{path}")
    assert get.returncode == 0, get.stderr
    assert json.loads(get.stdout)["data"]["data"] == {"n": "1"}


def test_bao_kv_get_missing_fails_clearly(server):
    get = bao(server, "kv", "get", "-mount=secret", unique("nope"))
    assert get.returncode != 0
    assert "No value found" in get.stderr or "No value found" in get.stdout


def test_bao_with_a_bad_token_is_denied(server):
    get = bao(server, "kv", "get", "-mount=secret", "anything", token="bogus-token")
    assert get.returncode != 0
    assert "403" in get.stderr or "permission denied" in get.stderr
