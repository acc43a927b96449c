"""Seal status, health and mounts through hvac."""

import pytest
import requests

from conftest import require_hvac, unique

hvac = require_hvac()


def test_seal_status_of_a_dev_server(root):
    st = root.sys.read_seal_status()
    assert st["sealed"] is False
    assert st["initialized"] is True
    assert st["t"] >= 1 and st["n"] >= st["t"]
    assert isinstance(st["version"], str) and st["version"]
    assert root.sys.is_sealed() is False
    assert root.sys.is_initialized() is True


def test_health_needs_no_token(server):
    r = requests.get(f"{server.addr}/v1/sys/health")
    assert r.status_code == 200
    body = r.json()
    assert body["initialized"] is True and body["sealed"] is False


def test_mounts_list_enable_disable(root):
    mounts = root.sys.list_mounted_secrets_engines()["data"]
    assert mounts["secret/"]["type"] == "kv"
    assert mounts["secret/"]["options"]["version"] == "2"
    path = unique("kvm")
    root.sys.enable_secrets_engine("kv", path=path, options={"version": "2"})
    assert f"{path}/" in root.sys.list_mounted_secrets_engines()["data"]
    root.secrets.kv.v2.create_or_update_secret(path="a", secret={"b": "c"}, mount_point=path)
    root.sys.disable_secrets_engine(path)
    assert f"{path}/" not in root.sys.list_mounted_secrets_engines()["data"]


def test_auth_methods_list(root):
    methods = root.sys.list_auth_methods()["data"]
    assert methods["token/"]["type"] == "token"


def test_enabling_an_auth_method_needs_sudo(server, root):
    """`sys/auth/<path>` is root-protected in Vault: create/update/delete without `sudo` is refused."""
    name = unique("authadm")
    root.sys.create_or_update_acl_policy(
        name=name,
        policy='path "sys/auth/*" { capabilities = ["create", "read", "update", "delete"] }\n'
        'path "sys/auth" { capabilities = ["read"] }',
    )
    tok = root.auth.token.create(policies=[name], ttl="1h")["auth"]["client_token"]
    client = server.client(tok)
    path = unique("jwt")
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.enable_auth_method(method_type="jwt", path=path)
    assert f"{path}/" not in root.sys.list_auth_methods()["data"]
    sudo = unique("authsudo")
    root.sys.create_or_update_acl_policy(
        name=sudo, policy='path "sys/auth/*" { capabilities = ["create", "update", "delete", "sudo"] }'
    )
    tok = root.auth.token.create(policies=[sudo], ttl="1h")["auth"]["client_token"]
    server.client(tok).sys.enable_auth_method(method_type="jwt", path=path)
    assert f"{path}/" in root.sys.list_auth_methods()["data"]
    root.sys.disable_auth_method(path)
