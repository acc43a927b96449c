"""The database secrets engine (PostgreSQL) and the lease endpoints through hvac, against leakstop and OpenBao.

Both servers talk to one real PostgreSQL that this module starts (`initdb` into a temporary directory, `pg_ctl start`
on a loopback port, run as the `postgres` user when the tests run as root) and stops at the end. Each test works in
its own mount with its own administrator role, so tests can share the cluster. A test passing on OpenBao pins
Vault's semantics; the same test passing on leakstop shows hvac works against it unchanged. Tests named
`test_leakstop_only_*` assert what leakstop does beyond Vault (sessions terminated, owned objects reassigned) and run
against leakstop alone.
"""

import concurrent.futures
import pathlib
import shutil
import tempfile
import time

import pytest

from conftest import require_hvac, unique
from pgcluster import Postgres, require_psycopg

@pytest.fixture(scope="module")
def pg():
    # Not under pytest's tmp_path: that tree is private to the test user and the `postgres` user must enter it.
    base = pathlib.Path(tempfile.mkdtemp(prefix="leakstop-compat-pg-"))
    cluster = Postgres(base)
    yield cluster
    cluster.stop()
    shutil.rmtree(base, ignore_errors=True)


CREATE = ('CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' VALID UNTIL \'{{expiration}}\'; '
          'GRANT SELECT ON compat_items TO "{{name}}";')


def database_mount(server, pg):
    """A database mount on `server` with a connection `main` through an administrator role of its own."""
    hvac = require_hvac()
    client = server.client()
    mount = unique("db")
    admin_user, admin_pw = unique("adm").replace("-", "_"), "adm-" + unique("pw")
    with pg.admin() as c:
        c.execute(f'CREATE ROLE "{admin_user}" WITH LOGIN SUPERUSER PASSWORD \'{admin_pw}\'')
        c.execute("CREATE TABLE IF NOT EXISTS compat_items (id int)")
    client.sys.enable_secrets_engine("database", path=mount)
    client.secrets.database.configure(
        name="main", plugin_name="postgresql-database-plugin", allowed_roles=["app*", "ro"], mount_point=mount,
        connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{pg.port}/postgres?sslmode=disable",
        username=admin_user, password=admin_pw,
    )
    ns = type("Db", (), {})()
    ns.hvac, ns.client, ns.mount, ns.admin_user, ns.admin_pw = hvac, client, mount, admin_user, admin_pw
    yield ns
    try:
        client.sys.revoke_prefix(f"{mount}/")
    finally:
        client.sys.disable_secrets_engine(mount)


def role(db, name="app", **over):
    args = dict(name=name, db_name="main", creation_statements=[CREATE], default_ttl=300, max_ttl=600,
                mount_point=db.mount)
    args.update(over)
    db.client.secrets.database.create_role(**args)


def wait_gone(pg, user, within=10.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not pg.role_exists(user):
            return True
        time.sleep(0.1)
    return False


def test_connection_round_trip_never_returns_the_password(db):
    got = db.client.secrets.database.read_connection("main", mount_point=db.mount)["data"]
    assert got["plugin_name"] == "postgresql-database-plugin"
    assert got["connection_details"]["username"] == db.admin_user
    assert "{{password}}" in got["connection_details"]["connection_url"]
    assert db.admin_pw not in str(got), "the connection password must never be read back"
    assert sorted(got["allowed_roles"]) == ["app*", "ro"]
    assert db.client.secrets.database.list_connections(mount_point=db.mount)["data"]["keys"] == ["main"]
    db.client.secrets.database.reset_connection("main", mount_point=db.mount)
    db.client.secrets.database.delete_connection("main", mount_point=db.mount)
    with pytest.raises(db.hvac.exceptions.InvalidPath):
        db.client.secrets.database.read_connection("main", mount_point=db.mount)


def test_a_wrong_password_is_refused_and_nothing_is_stored(db, pg):
    with pytest.raises(db.hvac.exceptions.InvalidRequest) as refused:
        db.client.secrets.database.configure(
            name="bad", plugin_name="postgresql-database-plugin", mount_point=db.mount,
            connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{pg.port}/postgres",
            username=db.admin_user, password="not-the-password",
        )
    assert "not-the-password" not in str(refused.value), "the refusal must not echo the password"
    with pytest.raises(db.hvac.exceptions.InvalidPath):
        db.client.secrets.database.read_connection("bad", mount_point=db.mount)


def test_roles_read_back_as_written(db):
    role(db, "app-reader", revocation_statements=['DROP ROLE IF EXISTS "{{name}}";'])
    got = db.client.secrets.database.read_role("app-reader", mount_point=db.mount)["data"]
    assert got["db_name"] == "main"
    assert got["creation_statements"] == [CREATE]
    assert got["revocation_statements"] == ['DROP ROLE IF EXISTS "{{name}}";']
    assert (got["default_ttl"], got["max_ttl"]) == (300, 600)
    assert db.client.secrets.database.list_roles(mount_point=db.mount)["data"]["keys"] == ["app-reader"]
    db.client.secrets.database.delete_role("app-reader", mount_point=db.mount)
    with pytest.raises(db.hvac.exceptions.InvalidPath):
        db.client.secrets.database.read_role("app-reader", mount_point=db.mount)


def test_a_role_outside_allowed_roles_cannot_issue(db):
    role(db, "other")
    # OpenBao answers 500, leakstop 400: the shared contract is a refusal that says why.
    with pytest.raises(db.hvac.exceptions.VaultError) as refused:
        db.client.secrets.database.generate_credentials("other", mount_point=db.mount)
    assert "allowed" in str(refused.value)


def test_issued_credentials_log_in_with_the_declared_grants(db, pg):
    role(db)
    creds = db.client.secrets.database.generate_credentials("app", mount_point=db.mount)
    assert creds["lease_id"].startswith(f"{db.mount}/creds/app/")
    assert creds["renewable"] is True
    assert creds["lease_duration"] == 300
    user, password = creds["data"]["username"], creds["data"]["password"]
    assert len(user.encode()) <= 63
    with pg.connect(user, password) as c:
        assert c.execute("SELECT count(*) FROM compat_items").fetchone() == (0,)
        with pytest.raises(require_psycopg().errors.InsufficientPrivilege):
            c.execute("INSERT INTO compat_items VALUES (1)")


def test_concurrent_jobs_all_get_working_credentials(db, pg):
    """Many CI jobs asking at once: their GRANTs race on one table's ACL, and none may fail for it."""
    role(db)
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        issued = list(pool.map(lambda _: db.client.secrets.database.generate_credentials("app", mount_point=db.mount),
                               range(36)))
    assert len({i["data"]["username"] for i in issued}) == 36
    with pg.connect(issued[-1]["data"]["username"], issued[-1]["data"]["password"]) as c:
        c.execute("SELECT count(*) FROM compat_items")
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda i: db.client.sys.revoke_lease(i["lease_id"]), issued))
    assert not any(pg.role_exists(i["data"]["username"]) for i in issued)


def test_lookup_renew_and_the_max_ttl_cap(db):
    role(db, default_ttl=60, max_ttl=120)
    lease = db.client.secrets.database.generate_credentials("app", mount_point=db.mount)["lease_id"]
    looked = db.client.sys.read_lease(lease)["data"]
    assert looked["id"] == lease
    assert looked["renewable"] is True
    assert 0 < looked["ttl"] <= 60
    renewed = db.client.sys.renew_lease(lease)  # hvac sends "increment": null
    assert renewed["lease_id"] == lease and 0 < renewed["lease_duration"] <= 120
    capped = db.client.sys.renew_lease(lease, increment=3600)
    assert 0 < capped["lease_duration"] <= 120, "a renewal never outlives the role's max_ttl"


def test_revoke_drops_the_user_and_the_lease(db, pg):
    role(db)
    creds = db.client.secrets.database.generate_credentials("app", mount_point=db.mount)
    user = creds["data"]["username"]
    assert pg.role_exists(user)
    db.client.sys.revoke_lease(creds["lease_id"])
    assert wait_gone(pg, user), f"{user} still exists after its lease was revoked"
    with pytest.raises(db.hvac.exceptions.InvalidRequest):
        db.client.sys.read_lease(creds["lease_id"])


def test_list_and_revoke_prefix_end_every_lease_of_a_role(db, pg):
    role(db)
    issued = [db.client.secrets.database.generate_credentials("app", mount_point=db.mount) for _ in range(3)]
    listed = db.client.sys.list_leases(f"{db.mount}/creds/app/")["data"]["keys"]
    assert sorted(listed) == sorted(i["lease_id"].rsplit("/", 1)[1] for i in issued)
    db.client.sys.revoke_prefix(f"{db.mount}/creds/app")
    for i in issued:
        assert wait_gone(pg, i["data"]["username"])


def test_rotate_root_changes_the_administrator_password(db, pg):
    db.client.secrets.database.rotate_root_credentials("main", mount_point=db.mount)
    with pytest.raises(require_psycopg().OperationalError):
        pg.connect(db.admin_user, db.admin_pw).close()
    role(db)
    creds = db.client.secrets.database.generate_credentials("app", mount_point=db.mount)
    pg.connect(creds["data"]["username"], creds["data"]["password"]).close()
    got = db.client.secrets.database.read_connection("main", mount_point=db.mount)["data"]
    assert "password" not in got["connection_details"]


def test_static_role_rotates_an_existing_user(db, pg):
    name = unique("svc").replace("-", "_")
    with pg.admin() as c:
        c.execute(f'CREATE ROLE "{name}" WITH LOGIN PASSWORD \'before-rotation\'')
    try:
        db.client.secrets.database.create_static_role(
            name="ro", db_name="main", username=name, rotation_period=3600, mount_point=db.mount,
            rotation_statements=['ALTER ROLE "{{name}}" WITH PASSWORD \'{{password}}\';'],
        )
        got = db.client.secrets.database.read_static_role("ro", mount_point=db.mount)["data"]
        assert (got["username"], got["db_name"], got["rotation_period"]) == (name, "main", 3600)
        assert db.client.secrets.database.list_static_roles(mount_point=db.mount)["data"]["keys"] == ["ro"]
        first = db.client.secrets.database.get_static_credentials("ro", mount_point=db.mount)["data"]
        assert first["username"] == name and 0 < first["ttl"] <= 3600
        assert first["last_vault_rotation"]
        with pytest.raises(require_psycopg().OperationalError):
            pg.connect(name, "before-rotation").close()
        pg.connect(name, first["password"]).close()
        db.client.secrets.database.rotate_static_role_credentials("ro", mount_point=db.mount)
        second = db.client.secrets.database.get_static_credentials("ro", mount_point=db.mount)["data"]
        assert second["password"] != first["password"]
        pg.connect(name, second["password"]).close()
        with pytest.raises(require_psycopg().OperationalError):
            pg.connect(name, first["password"]).close()
        db.client.secrets.database.delete_static_role("ro", mount_point=db.mount)
        assert pg.role_exists(name), "deleting a static role must not drop the database user"
    finally:
        with pg.admin() as c:
            c.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def db(server, pg):
    yield from database_mount(server, pg)


@pytest.fixture
def leakstop_db(leakstop_server, pg):
    """`db` on leakstop alone, for behaviour Vault does not have."""
    yield from database_mount(leakstop_server, pg)


def test_leakstop_only_revocation_ends_sessions_and_reassigns_owned_objects(leakstop_db, pg):
    db = leakstop_db
    role(db, creation_statements=['CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' '
                                  'VALID UNTIL \'{{expiration}}\'; GRANT CREATE ON SCHEMA public TO "{{name}}";'])
    creds = db.client.secrets.database.generate_credentials("app", mount_point=db.mount)
    user, password = creds["data"]["username"], creds["data"]["password"]
    table = unique("owned").replace("-", "_")
    session = pg.connect(user, password)
    session.execute(f'CREATE TABLE "{table}" (id int)')
    db.client.sys.revoke_lease(creds["lease_id"])
    assert wait_gone(pg, user), "Vault's default revocation fails on owned objects; leakstop's must not"
    with pytest.raises(require_psycopg().OperationalError):
        session.execute("SELECT 1")
    session.close()
    with pg.admin() as c:
        owner = c.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s", (table,)).fetchone()
        assert owner is not None and owner[0] != user, "the revoked user's table is kept, owned by another role"
        c.execute(f'DROP TABLE "{table}"')
