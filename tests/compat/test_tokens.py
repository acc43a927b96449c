"""Tokens and policies through hvac: create with policies, lookup, renew, revoke, and ACL enforcement."""

import pytest
import requests

from conftest import require_hvac, unique

hvac = require_hvac()

APP_POLICY = """
path "secret/data/app/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/app/*" {
  capabilities = ["list", "read"]
}
"""


def test_create_token_with_policies_and_look_it_up(server, root):
    name = unique("pol")
    root.sys.create_or_update_acl_policy(name=name, policy=APP_POLICY)
    created = root.auth.token.create(policies=[name], ttl="1h", renewable=True)
    auth = created["auth"]
    assert auth["client_token"] and auth["accessor"]
    assert name in auth["policies"]
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True

    looked = root.auth.token.lookup(auth["client_token"])["data"]
    assert name in looked["policies"]
    assert looked["accessor"] == auth["accessor"]
    assert 0 < looked["ttl"] <= 3600

    by_accessor = root.auth.token.lookup_accessor(auth["accessor"])["data"]
    assert by_accessor["accessor"] == auth["accessor"]
    assert by_accessor["id"] == "", "a lookup by accessor never reveals the token"

    me = server.client(auth["client_token"]).auth.token.lookup_self()["data"]
    assert me["accessor"] == auth["accessor"]


def test_renew_extends_the_ttl(server, root):
    tok = root.auth.token.create(policies=["default"], ttl="10m", explicit_max_ttl="2h", renewable=True)["auth"]
    renewed = server.client(tok["client_token"]).auth.token.renew_self(increment="1h")["auth"]
    assert renewed["client_token"] == tok["client_token"]
    assert renewed["lease_duration"] == 3600
    renewed = root.auth.token.renew(tok["client_token"], increment="30m")["auth"]
    assert renewed["lease_duration"] == 1800


def test_revoked_and_unknown_tokens_get_403(server, root):
    tok = root.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
    assert server.client(tok).auth.token.lookup_self()["data"]["policies"] == ["default"]
    root.auth.token.revoke(tok)
    with pytest.raises(hvac.exceptions.Forbidden):
        server.client(tok).auth.token.lookup_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        server.client("not-a-real-token").secrets.kv.v2.read_secret_version(path="x", raise_on_deleted_version=True)
    r = requests.get(f"{server.addr}/v1/secret/data/x", headers={"X-Vault-Token": "not-a-real-token"})
    assert r.status_code == 403
    assert r.json()["errors"], "a 403 carries an error message"


def test_revoking_a_parent_revokes_its_children(server, root):
    # The parent needs a policy that lets it create (child) tokens.
    name = unique("mint")
    root.sys.create_or_update_acl_policy(name=name, policy='path "auth/token/create" { capabilities = ["update"] }')
    parent = root.auth.token.create(policies=[name], ttl="1h")["auth"]["client_token"]
    child = server.client(parent).auth.token.create(policies=[name], ttl="30m")["auth"]["client_token"]
    assert server.client(child).auth.token.lookup_self()
    root.auth.token.revoke(parent)
    with pytest.raises(hvac.exceptions.Forbidden):
        server.client(child).auth.token.lookup_self()


def test_revoke_self_and_revoke_accessor(server, root):
    tok = root.auth.token.create(policies=["default"], ttl="1h")["auth"]
    server.client(tok["client_token"]).auth.token.revoke_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        server.client(tok["client_token"]).auth.token.lookup_self()
    tok = root.auth.token.create(policies=["default"], ttl="1h")["auth"]
    root.auth.token.revoke_accessor(tok["accessor"])
    with pytest.raises(hvac.exceptions.Forbidden):
        server.client(tok["client_token"]).auth.token.lookup_self()


def test_policy_limits_a_token_to_its_paths(server, root):
    name = unique("app")
    root.sys.create_or_update_acl_policy(name=name, policy=APP_POLICY)
    assert "secret/data/app/*" in root.sys.read_acl_policy(name)["data"]["policy"]
    assert name in root.sys.list_acl_policies()["data"]["keys"]
    tok = root.auth.token.create(policies=[name], ttl="1h")["auth"]["client_token"]
    app = server.client(tok)
    sub = unique("svc")
    app.secrets.kv.v2.create_or_update_secret(path=f"app/{sub}", secret={"db": "pw"})
    got = app.secrets.kv.v2.read_secret_version(path=f"app/{sub}", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"db": "pw"}
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v2.read_secret_version(path=f"other/{sub}", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v2.create_or_update_secret(path=f"other/{sub}", secret={"x": "y"})
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v2.delete_metadata_and_all_versions(path=f"app/{sub}")
    with pytest.raises(hvac.exceptions.Forbidden):
        app.sys.list_acl_policies()
    # Deleting the policy takes effect at once for the tokens that carry it.
    root.sys.delete_acl_policy(name)
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v2.read_secret_version(path=f"app/{sub}", raise_on_deleted_version=True)


def test_json_policy_is_accepted(server, root):
    name = unique("json")
    root.sys.create_or_update_acl_policy(
        name=name, policy={"path": {"secret/data/json/*": {"capabilities": ["read", "create", "update"]}}})
    tok = root.auth.token.create(policies=[name], ttl="1h")["auth"]["client_token"]
    c = server.client(tok)
    c.secrets.kv.v2.create_or_update_secret(path="json/x", secret={"k": "v"})
    with pytest.raises(hvac.exceptions.Forbidden):
        c.secrets.kv.v2.read_secret_version(path="elsewhere", raise_on_deleted_version=True)


def test_limited_use_tokens_cannot_create_children(server, root):
    """A token with a use limit would otherwise multiply into unlimited ones; Vault refuses, and so must we."""
    name = unique("maker")
    root.sys.create_or_update_acl_policy(
        name=name, policy='path "auth/token/create" { capabilities = ["create", "update"] }'
    )
    limited = root.auth.token.create(policies=[name], num_uses=5, ttl="1h")["auth"]["client_token"]
    with pytest.raises((hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden)):
        server.client(limited).auth.token.create(policies=[name], ttl="1h")


def test_num_uses_sent_as_a_string_limits_the_token(server, root):
    """The bao CLI sends every value as a string: `num_uses=1` must still mean one use."""
    r = requests.post(
        f"{server.addr}/v1/auth/token/create",
        headers={"X-Vault-Token": server.root_token},
        json={"policies": ["default"], "num_uses": "1", "ttl": "1h"},
    )
    assert r.status_code == 200, r.text
    tok = r.json()["auth"]["client_token"]
    client = server.client(tok)
    client.auth.token.lookup_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.token.lookup_self()
