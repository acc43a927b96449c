"""Seal status, health and mounts through hvac."""

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
