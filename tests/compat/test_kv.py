"""KV v2 through the real hvac client: the same assertions hold on OpenBao and on leakstop."""

import pytest
import requests

from conftest import require_hvac, unique
from conftest import run_bao as bao

hvac = require_hvac()
kv = lambda c: c.secrets.kv.v2  # noqa: E731


def test_write_then_read_returns_data_and_version_metadata(root):
    path = unique("app")
    written = kv(root).create_or_update_secret(path=path, secret={"user": "ada", "password": "pw-1"})
    assert written["data"]["version"] == 1
    assert written["data"]["destroyed"] is False
    assert written["data"]["created_time"]

    got = kv(root).read_secret_version(path=path, raise_on_deleted_version=True)
    assert got["data"]["data"] == {"user": "ada", "password": "pw-1"}
    meta = got["data"]["metadata"]
    assert meta["version"] == 1
    assert meta["deletion_time"] == ""
    assert meta["destroyed"] is False
    assert meta["custom_metadata"] is None


def test_versions_are_kept_and_readable_by_number(root):
    path = unique("ver")
    for i in range(1, 4):
        assert kv(root).create_or_update_secret(path=path, secret={"n": i})["data"]["version"] == i
    assert kv(root).read_secret_version(path=path, raise_on_deleted_version=True)["data"]["data"] == {"n": 3}
    old = kv(root).read_secret_version(path=path, version=1, raise_on_deleted_version=True)
    assert old["data"]["data"] == {"n": 1}
    assert old["data"]["metadata"]["version"] == 1


def test_cas_conflict_is_refused_with_vaults_message(root):
    path = unique("cas")
    kv(root).create_or_update_secret(path=path, secret={"a": "1"}, cas=0)
    with pytest.raises(hvac.exceptions.InvalidRequest) as e:
        kv(root).create_or_update_secret(path=path, secret={"a": "2"}, cas=0)
    assert "check-and-set parameter did not match the current version" in str(e.value)
    assert kv(root).create_or_update_secret(path=path, secret={"a": "2"}, cas=1)["data"]["version"] == 2
    assert kv(root).read_secret_version(path=path, raise_on_deleted_version=True)["data"]["data"] == {"a": "2"}


def test_patch_merges_into_the_latest_version(root):
    path = unique("patch")
    kv(root).create_or_update_secret(path=path, secret={"keep": "x", "change": "old"})
    kv(root).patch(path=path, secret={"change": "new", "add": "y"})
    got = kv(root).read_secret_version(path=path, raise_on_deleted_version=True)["data"]
    assert got["data"] == {"keep": "x", "change": "new", "add": "y"}
    assert got["metadata"]["version"] == 2


def test_http_patch_with_merge_patch_content_type(server, root):
    path = unique("mpatch")
    kv(root).create_or_update_secret(path=path, secret={"a": "1", "b": "2"})
    r = requests.patch(f"{server.addr}/v1/secret/data/{path}", json={"data": {"b": None, "c": "3"}},
                       headers={"X-Vault-Token": server.root_token, "Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["version"] == 2
    got = kv(root).read_secret_version(path=path, raise_on_deleted_version=True)["data"]["data"]
    assert got == {"a": "1", "c": "3"}, "a null in a merge patch removes the key"


def test_missing_secret_is_404_with_empty_errors(server, root):
    path = unique("missing")
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(root).read_secret_version(path=path, raise_on_deleted_version=True)
    r = requests.get(f"{server.addr}/v1/secret/data/{path}", headers={"X-Vault-Token": server.root_token})
    assert r.status_code == 404
    assert r.json() == {"errors": []}


def test_delete_latest_then_undelete(server, root):
    path = unique("del")
    kv(root).create_or_update_secret(path=path, secret={"v": "1"})
    kv(root).create_or_update_secret(path=path, secret={"v": "2"})
    r = kv(root).delete_latest_version_of_secret(path=path)
    assert r.status_code == 204

    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(root).read_secret_version(path=path, raise_on_deleted_version=True)
    # Vault answers a deleted version with 404 but still returns its metadata.
    r = requests.get(f"{server.addr}/v1/secret/data/{path}", headers={"X-Vault-Token": server.root_token})
    assert r.status_code == 404
    body = r.json()["data"]
    assert body["data"] is None
    assert body["metadata"]["version"] == 2
    assert body["metadata"]["deletion_time"] != ""
    # Older versions stay readable.
    assert kv(root).read_secret_version(path=path, version=1, raise_on_deleted_version=True)["data"]["data"] == {
        "v": "1"}

    kv(root).undelete_secret_versions(path=path, versions=[2])
    got = kv(root).read_secret_version(path=path, raise_on_deleted_version=True)["data"]
    assert got["data"] == {"v": "2"}
    assert got["metadata"]["deletion_time"] == ""


def test_delete_specific_versions(root):
    path = unique("delv")
    for i in range(3):
        kv(root).create_or_update_secret(path=path, secret={"i": i})
    kv(root).delete_secret_versions(path=path, versions=[1, 2])
    meta = kv(root).read_secret_metadata(path=path)["data"]
    assert meta["versions"]["1"]["deletion_time"] != ""
    assert meta["versions"]["2"]["deletion_time"] != ""
    assert meta["versions"]["3"]["deletion_time"] == ""
    assert kv(root).read_secret_version(path=path, raise_on_deleted_version=True)["data"]["data"] == {"i": 2}


def test_destroy_removes_the_data_for_good(root):
    path = unique("destroy")
    kv(root).create_or_update_secret(path=path, secret={"v": "1"})
    kv(root).create_or_update_secret(path=path, secret={"v": "2"})
    kv(root).destroy_secret_versions(path=path, versions=[1])
    meta = kv(root).read_secret_metadata(path=path)["data"]
    assert meta["versions"]["1"]["destroyed"] is True
    assert meta["versions"]["2"]["destroyed"] is False
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(root).read_secret_version(path=path, version=1, raise_on_deleted_version=True)
    # Undeleting a destroyed version does not bring it back.
    kv(root).undelete_secret_versions(path=path, versions=[1])
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(root).read_secret_version(path=path, version=1, raise_on_deleted_version=True)


def test_list_shows_keys_and_folders(root):
    base = unique("list")
    for leaf in ("a", "b", "sub/c", "sub/deeper/d"):
        kv(root).create_or_update_secret(path=f"{base}/{leaf}", secret={"x": "1"})
    keys = kv(root).list_secrets(path=base)["data"]["keys"]
    assert sorted(keys) == ["a", "b", "sub/"]
    assert kv(root).list_secrets(path=f"{base}/sub")["data"]["keys"] == ["c", "deeper/"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(root).list_secrets(path=unique("nothing-here"))


def test_metadata_custom_metadata_and_max_versions(root):
    path = unique("meta")
    kv(root).create_or_update_secret(path=path, secret={"n": 1})
    kv(root).update_metadata(path=path, max_versions=2, custom_metadata={"owner": "team-ci", "rotate": "monthly"})
    for n in (2, 3):
        kv(root).create_or_update_secret(path=path, secret={"n": n})
    meta = kv(root).read_secret_metadata(path=path)["data"]
    assert meta["custom_metadata"] == {"owner": "team-ci", "rotate": "monthly"}
    assert meta["max_versions"] == 2
    assert meta["current_version"] == 3
    assert meta["oldest_version"] == 2
    assert sorted(meta["versions"]) == ["2", "3"], "versions beyond max_versions are dropped"
    assert meta["created_time"] and meta["updated_time"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(root).read_secret_version(path=path, version=1, raise_on_deleted_version=True)
    # custom_metadata is also returned with each read.
    got = kv(root).read_secret_version(path=path, raise_on_deleted_version=True)["data"]["metadata"]
    assert got["custom_metadata"] == {"owner": "team-ci", "rotate": "monthly"}


def test_cas_required_in_metadata(root):
    path = unique("casreq")
    kv(root).create_or_update_secret(path=path, secret={"a": "1"})
    kv(root).update_metadata(path=path, cas_required=True)
    with pytest.raises(hvac.exceptions.InvalidRequest) as e:
        kv(root).create_or_update_secret(path=path, secret={"a": "2"})
    assert "check-and-set parameter required for this call" in str(e.value)
    kv(root).create_or_update_secret(path=path, secret={"a": "2"}, cas=1)


def test_delete_metadata_removes_all_versions(root):
    path = unique("purge")
    kv(root).create_or_update_secret(path=path, secret={"a": "1"})
    kv(root).create_or_update_secret(path=path, secret={"a": "2"})
    kv(root).delete_metadata_and_all_versions(path=path)
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(root).read_secret_metadata(path=path)
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(root).read_secret_version(path=path, raise_on_deleted_version=True)
    # Writing again starts over at version 1.
    assert kv(root).create_or_update_secret(path=path, secret={"a": "3"})["data"]["version"] == 1


def test_engine_config_round_trip(server):
    c = server.client()
    mount = unique("kvcfg")
    c.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    try:
        kv(c).configure(max_versions=5, cas_required=False, mount_point=mount)
        cfg = kv(c).read_configuration(mount_point=mount)["data"]
        assert cfg["max_versions"] == 5
        assert cfg["cas_required"] is False
        kv(c).create_or_update_secret(path="x", secret={"k": "v"}, mount_point=mount)
        assert kv(c).read_secret_version(path="x", mount_point=mount, raise_on_deleted_version=True)["data"][
            "data"] == {"k": "v"}
    finally:
        c.sys.disable_secrets_engine(mount)


def test_cli_strings_set_metadata_and_engine_config(server):
    """`bao write k=v` sends every value as a string: numbers, booleans and durations must still take effect."""
    path = unique("clistr")
    w = bao(server, "write", f"secret/metadata/{path}", "max_versions=5", "cas_required=true",
            "delete_version_after=1h")
    assert w.returncode == 0, w.stderr
    meta = server.client().secrets.kv.v2.read_secret_metadata(path=path)["data"]
    assert meta["max_versions"] == 5
    assert meta["cas_required"] is True
    assert meta["delete_version_after"] == "1h0m0s"

    c = server.client()
    mount = unique("kvcli")
    c.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    try:
        w = bao(server, "write", f"{mount}/config", "max_versions=3", "cas_required=true")
        assert w.returncode == 0, w.stderr
        cfg = kv(c).read_configuration(mount_point=mount)["data"]
        assert cfg["max_versions"] == 3
        assert cfg["cas_required"] is True
        with pytest.raises(hvac.exceptions.InvalidRequest) as e:
            kv(c).create_or_update_secret(path="x", secret={"k": "v"}, mount_point=mount)
        assert "check-and-set parameter required" in str(e.value)
    finally:
        c.sys.disable_secrets_engine(mount)


def test_malformed_settings_are_refused_not_ignored(server):
    path = unique("badcfg")
    kv(server.client()).create_or_update_secret(path=path, secret={"a": "1"})
    for body in ({"max_versions": "five"}, {"cas_required": "maybe"}, {"delete_version_after": "soon"}):
        r = requests.post(f"{server.addr}/v1/secret/metadata/{path}", json=body,
                          headers={"X-Vault-Token": server.root_token})
        assert r.status_code == 400, (body, r.text)
    assert kv(server.client()).read_secret_metadata(path=path)["data"]["max_versions"] == 0


# leakstop's own limits: Vault has no cap on versions, and OpenBao's dev (in-memory) storage none on entry size.

def leakstop_post(srv, path, body):
    return requests.post(f"{srv.addr}/v1/{path}", json=body, headers={"X-Vault-Token": srv.root_token})


def test_leakstop_caps_max_versions_and_refuses_unknown_settings(leakstop_server):
    path = unique("cap")
    r = leakstop_post(leakstop_server, f"secret/metadata/{path}", {"max_versions": 4294967295})
    assert r.status_code == 400 and "at most 1000" in r.text, r.text
    r = leakstop_post(leakstop_server, "secret/config", {"max_versions": 100000})
    assert r.status_code == 400 and "at most 1000" in r.text, r.text
    r = leakstop_post(leakstop_server, f"secret/metadata/{path}", {"max_versions": 3, "cas_requried": True})
    assert r.status_code == 400 and "cas_requried" in r.text, r.text
    r = leakstop_post(leakstop_server, "secret/config", {"max_version": 3})
    assert r.status_code == 400 and "max_version" in r.text, r.text


def test_leakstop_refuses_oversized_versions_with_a_clear_message(leakstop_server):
    c = leakstop_server.client()
    mount = unique("kvsize")
    c.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    try:
        big = "x" * (1024 * 1024)
        r = leakstop_post(leakstop_server, f"{mount}/data/big", {"data": {"v": big}})
        assert r.status_code == 400, r.text
        assert "per version" in r.text and "max_version_bytes" in r.text, r.text
        # The mount may allow more, within the server's request size limit.
        assert leakstop_post(leakstop_server, f"{mount}/config", {"max_version_bytes": 2 * 1024 * 1024}).ok
        r = leakstop_post(leakstop_server, f"{mount}/data/big", {"data": {"v": big}})
        assert r.status_code == 200, r.text
        assert kv(c).read_secret_version(path="big", mount_point=mount,
                                         raise_on_deleted_version=True)["data"]["data"]["v"] == big
    finally:
        c.sys.disable_secrets_engine(mount)
