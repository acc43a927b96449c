"""JWT auth through hvac (`auth.jwt.jwt_login`), against leakstop and OpenBao alike.

Keys are made with `openssl` and tokens signed with it (RS256), so the suite needs no JWT library; the servers are
configured with the public key (`jwt_validation_pubkeys`), so no issuer has to run.
"""

import base64
import json
import subprocess
import time
import uuid

import pytest

from conftest import require_hvac, unique

hvac = require_hvac()


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwtkey")
    key = d / "key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
                   check=True, capture_output=True)
    pub = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout"], check=True, capture_output=True).stdout
    return key, pub.decode()


def sign(key, claims: dict) -> str:
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)], input=signing_input, check=True,
                         capture_output=True).stdout
    return f"{header}.{payload}.{b64url(sig)}"


def claims(**over):
    now = int(time.time())
    c = {"iss": "https://token.actions.githubusercontent.com", "sub": "repo:octo-org/app:ref:refs/heads/main",
         "aud": "leakstop", "repository": "octo-org/app", "repository_id": "1296269", "ref": "refs/heads/main",
         "iat": now, "nbf": now - 5, "exp": now + 300, "jti": uuid.uuid4().hex}
    c.update(over)
    return c


@pytest.fixture
def jwt_mount(root, rsa_key):
    mount = unique("jwt")
    root.sys.enable_auth_method("jwt", path=mount)
    root.auth.jwt.configure(jwt_validation_pubkeys=[rsa_key[1]],
                            bound_issuer="https://token.actions.githubusercontent.com", path=mount)
    policy = unique("ci")
    root.sys.create_or_update_acl_policy(name=policy, policy='path "secret/data/ci/*" { capabilities = ["read"] }')
    root.auth.jwt.create_role(
        name="deploy", allowed_redirect_uris=[], role_type="jwt", user_claim="repository", bound_audiences=["leakstop"],
        bound_claims={"repository_id": "1296269"}, token_policies=[policy], token_ttl="10m", path=mount)
    yield mount, policy
    root.sys.disable_auth_method(mount)


def test_jwt_login_returns_a_token_with_the_roles_policies(server, jwt_mount, rsa_key):
    mount, policy = jwt_mount
    c = server.client(token="")
    resp = c.auth.jwt.jwt_login(role="deploy", jwt=sign(rsa_key[0], claims()), path=mount)
    auth = resp["auth"]
    assert policy in auth["policies"] and "default" in auth["policies"]
    assert auth["lease_duration"] == 600
    me = server.client(token=auth["client_token"]).auth.token.lookup_self()["data"]
    assert policy in me["policies"]


@pytest.mark.parametrize("bad", [
    {"aud": "someone-else"},
    {"iss": "https://evil.example"},
    {"repository_id": "42"},
    {"exp": int(time.time()) - 3600},
])
def test_jwt_login_refusals_are_400(server, jwt_mount, rsa_key, bad):
    mount, _ = jwt_mount
    with pytest.raises(hvac.exceptions.InvalidRequest):
        server.client(token="").auth.jwt.jwt_login(role="deploy", jwt=sign(rsa_key[0], claims(**bad)), path=mount)


def test_a_role_without_bound_audiences_refuses_a_token_minted_for_an_audience(server, root, rsa_key):
    mount = unique("jwt")
    root.sys.enable_auth_method("jwt", path=mount)
    try:
        root.auth.jwt.configure(jwt_validation_pubkeys=[rsa_key[1]],
                                bound_issuer="https://token.actions.githubusercontent.com", path=mount)
        root.auth.jwt.create_role(name="any-aud", allowed_redirect_uris=[], role_type="jwt", user_claim="repository",
                                  bound_claims={"repository_id": "1296269"}, token_ttl="10m", path=mount)
        c = server.client(token="")
        # A token minted for another service (an AWS audience, say) must not log in here.
        with pytest.raises(hvac.exceptions.InvalidRequest):
            c.auth.jwt.jwt_login(role="any-aud", jwt=sign(rsa_key[0], claims(aud="sts.amazonaws.com")), path=mount)
        without_aud = claims()
        del without_aud["aud"]
        resp = c.auth.jwt.jwt_login(role="any-aud", jwt=sign(rsa_key[0], without_aud), path=mount)
        assert resp["auth"]["client_token"]
    finally:
        root.sys.disable_auth_method(mount)


def test_a_login_never_mints_a_root_token(server, root, jwt_mount, rsa_key):
    """Vault refuses at login; leakstop refuses already when the role is written. Either way: no root token."""
    mount, _ = jwt_mount
    try:
        root.auth.jwt.create_role(name="escalate", allowed_redirect_uris=[], role_type="jwt", user_claim="repository",
                                  bound_audiences=["leakstop"], token_policies=["root"], path=mount)
    except hvac.exceptions.InvalidRequest as e:
        assert "auth methods cannot create root tokens" in str(e)
        return
    with pytest.raises(hvac.exceptions.InvalidRequest) as e:
        server.client(token="").auth.jwt.jwt_login(role="escalate", jwt=sign(rsa_key[0], claims()), path=mount)
    assert "auth methods cannot create root tokens" in str(e.value)
