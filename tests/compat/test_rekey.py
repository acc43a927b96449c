"""Rekeying Shamir unseal shares through hvac, against leakstop and OpenBao: init, unseal, rekey to a new
share count and threshold with the current shares, then only the new shares unseal and the data is still there.
Both servers run from a config file (not dev mode), since a dev server has no shares to rekey.

leakstop also requires a sudo token on `sys/rekey/*` (hvac sends the client's token), so nobody without one can
start, cancel or watch a rekey; OpenBao's unauthenticated endpoints are re-enabled here to compare the flow."""

import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT_TOKEN, bao_bin, free_port, leakstop_bin, require_hvac

del ROOT_TOKEN  # servers here make their own root token at init


def _start(kind, workdir):
    port = free_port()
    if kind == "leakstop":
        cfg = workdir / "server.toml"
        cfg.write_text(
            f'listen_address = "127.0.0.1:{port}"\ntls_disable = true\n'
            f'[storage]\ntype = "sqlite"\npath = "{workdir / "leakstop.db"}"\n[seal]\ntype = "shamir"\n'
        )
        cmd = [str(leakstop_bin()), "server", "--config", str(cfg)]
    else:
        cfg = workdir / "server.hcl"
        (workdir / "raft").mkdir()
        cluster = free_port()
        cfg.write_text(
            f'storage "raft" {{\n  path = "{workdir / "raft"}"\n  node_id = "n1"\n}}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  cluster_address = "127.0.0.1:{cluster}"\n'
            # OpenBao 2.5+ closes its unauthenticated rekey endpoints by default; hvac's rekey calls need them.
            "  tls_disable = true\n  disable_unauthed_rekey_endpoints = false\n}\n"
            f'api_addr = "http://127.0.0.1:{port}"\ncluster_addr = "http://127.0.0.1:{cluster}"\n'
        )
        cmd = [str(bao_bin()), "server", f"-config={cfg}"]
    log = open(workdir / f"{kind}.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    addr = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (workdir / f"{kind}.log").read_text()
        try:
            urllib.request.urlopen(f"{addr}/v1/sys/seal-status", timeout=2)
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            time.sleep(0.1)
    return proc, addr


def _wait_active(addr):
    """Until the server answers as an unsealed active node (OpenBao's raft elects itself a moment after unseal)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{addr}/v1/sys/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.HTTPError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{addr} did not become active")


@pytest.mark.parametrize("kind", ["leakstop", "openbao"])
def test_rekey_replaces_the_shares(kind, tmp_path):
    hvac = require_hvac()
    proc, addr = _start(kind, tmp_path)
    try:
        client = hvac.Client(url=addr, timeout=10)
        init = client.sys.initialize(secret_shares=3, secret_threshold=2)
        old = init["keys"]
        client.token = init["root_token"]
        client.sys.submit_unseal_keys(old[:2])
        assert not client.sys.is_sealed()
        _wait_active(addr)
        client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        deadline = time.monotonic() + 30
        while True:  # OpenBao upgrades a new KV mount for a moment before it takes writes
            try:
                client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "kept"})
                break
            except hvac.exceptions.InvalidRequest:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        started = client.sys.start_rekey(secret_shares=5, secret_threshold=3)
        assert started["started"] is True and started["n"] == 5 and started["t"] == 3
        nonce = started["nonce"]
        assert client.sys.read_rekey_progress()["nonce"] == nonce
        step = client.sys.rekey(old[0], nonce=nonce)
        assert step["progress"] == 1 and step.get("complete") is not True
        done = client.sys.rekey(old[1], nonce=nonce)
        assert done["complete"] is True
        new = done["keys"]
        assert len(new) == 5 and not set(new) & set(old)
        assert client.sys.read_rekey_progress()["started"] is False

        client.sys.seal()
        try:
            client.sys.submit_unseal_keys(old[:2])
        except hvac.exceptions.InvalidRequest:
            pass  # leakstop says the shares did not decrypt the root key; either way they must not unseal
        assert client.sys.is_sealed()
        client.sys.submit_unseal_key(reset=True)
        client.sys.submit_unseal_keys(new[2:5])
        assert not client.sys.is_sealed()
        _wait_active(addr)
        got = client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)
        assert got["data"]["data"]["v"] == "kept"
        if kind == "leakstop":
            # leakstop only: every new share is a scannable `lksu_` credential.
            assert all(k.startswith("lksu_") for k in new)

        if kind == "leakstop":
            # leakstop only: without a token, a rekey cannot be started, read or cancelled.
            anon = hvac.Client(url=addr, timeout=10)
            for call in (lambda: anon.sys.start_rekey(secret_shares=1, secret_threshold=1),
                         anon.sys.read_rekey_progress, anon.sys.cancel_rekey):
                with pytest.raises(hvac.exceptions.Forbidden):
                    call()

        # Cancel drops a started rekey.
        client.sys.start_rekey(secret_shares=2, secret_threshold=2)
        client.sys.cancel_rekey()
        assert client.sys.read_rekey_progress()["started"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=10)
