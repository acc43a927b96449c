"""The file audit device seen by a real client: values are HMACed, and sys/audit-hash finds them in the log.

OpenBao 2.x refuses to enable audit devices through the API (config only), so it gets its device from a config
file; leakstop gets it through `PUT sys/audit/:path` as Vault clients do it.
"""

import json
import pathlib

import pytest

from conftest import ROOT_TOKEN, require_hvac, start_leakstop, start_openbao, unique

hvac = require_hvac()


@pytest.fixture(params=["leakstop", "openbao"])
def audited(request, tmp_path):
    log = tmp_path / "audit.log"
    if request.param == "openbao":
        cfg = tmp_path / "audit.hcl"
        cfg.write_text(f'audit "file" "file" {{\n  options {{\n    file_path = "{log}"\n  }}\n}}\n')
        srv = start_openbao(tmp_path, config=cfg)
    else:
        srv = start_leakstop(tmp_path)
        srv.client().sys.enable_audit_device("file", path="file", options={"file_path": str(log)})
    yield srv, log
    srv.stop()


def lines(log: pathlib.Path) -> list:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_audit_log_holds_hmacs_not_values(audited):
    srv, log = audited
    c = srv.client()
    assert "file/" in c.sys.list_enabled_audit_devices()["data"]
    secret_value = "pw-" + unique("value")
    path = unique("audited")
    c.secrets.kv.v2.create_or_update_secret(path=path, secret={"password": secret_value})
    c.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)

    text = log.read_text()
    assert secret_value not in text, "a secret value reached the audit log in clear"
    assert ROOT_TOKEN not in [e.get("auth", {}).get("client_token") for e in lines(log)]
    entries = [e for e in lines(log) if e.get("request", {}).get("path") == f"secret/data/{path}"]
    assert {e["type"] for e in entries} == {"request", "response"}
    assert all(e["auth"]["client_token"].startswith("hmac-sha256:") for e in entries)

    hashed = c.sys.calculate_hash("file", secret_value)["data"]["hash"]
    assert hashed.startswith("hmac-sha256:") and len(hashed) == len("hmac-sha256:") + 64
    written = next(e for e in entries if e["type"] == "request" and e["request"]["operation"] in ("create", "update"))
    assert written["request"]["data"]["data"]["password"] == hashed
    read = next(e for e in entries if e["type"] == "response" and e["request"]["operation"] == "read")
    assert read["response"]["data"]["data"]["password"] == hashed
