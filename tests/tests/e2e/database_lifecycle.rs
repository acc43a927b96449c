//! The `database` engine's credentials over time, against a real PostgreSQL: static roles (rotation now, on
//! schedule, on a leak report), dynamic leases expiring on time, revoke-prefix, a leakstop restart with leases
//! pending, and a database that is down when a lease must be revoked.

use std::path::Path;
use std::time::{Duration, Instant};

use leakstop_tests::postgres::{Postgres, SUPERUSER, SUPERUSER_PASSWORD};
use leakstop_tests::server::{Server, config_args, free_port, write_config};
use leakstop_tests::tempdir;
use serde_json::{Value, json};

const CREATE: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#;

async fn role_exists(admin: &tokio_postgres::Client, name: &str) -> bool {
    admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

/// Mount `database/` and configure connection `pg` (allowed roles `app*`), then a dynamic role `app` with `ttl`.
async fn mounted(srv: &Server, pg: &Postgres, ttl: &str) {
    srv.ok("POST", "sys/mounts/database", Some(json!({"type": "database"})))
        .await;
    srv.ok(
        "POST",
        "database/config/pg",
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": pg.url_template(),
            "username": SUPERUSER,
            "password": SUPERUSER_PASSWORD,
            "allowed_roles": "app*",
        })),
    )
    .await;
    srv.ok(
        "POST",
        "database/roles/app",
        Some(json!({"db_name": "pg", "creation_statements": CREATE, "default_ttl": ttl})),
    )
    .await;
}

async fn creds(srv: &Server, role: &str) -> (String, String, String) {
    let c = srv.ok("GET", &format!("database/creds/{role}"), None).await;
    (
        c["lease_id"].as_str().unwrap().to_string(),
        c["data"]["username"].as_str().unwrap().to_string(),
        c["data"]["password"].as_str().unwrap().to_string(),
    )
}

async fn static_creds(srv: &Server, role: &str) -> Value {
    srv.ok("GET", &format!("database/static-creds/{role}"), None).await["data"].clone()
}

fn password_of(v: &Value) -> String {
    v["password"].as_str().unwrap().to_string()
}

/// The static role's password once it differs from `old` (polled every 100 ms for up to `limit`).
async fn changed_password(srv: &Server, role: &str, old: &str, limit: Duration) -> Option<String> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let p = password_of(&static_creds(srv, role).await);
        if p != old {
            return Some(p);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Poll `cond` every 100 ms until it holds or `limit` passes; how long it took, or `None`.
async fn within<F, Fut>(limit: Duration, mut cond: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond().await {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_role_owns_its_password_and_rotates_it_on_demand_on_schedule_and_when_leaked() {
    let pg = Postgres::start();
    let admin = pg.admin().await;
    admin
        .batch_execute("CREATE ROLE app_static WITH LOGIN PASSWORD 'known-to-humans'; CREATE TABLE inventory (id int); GRANT SELECT ON inventory TO app_static")
        .await
        .unwrap();
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    mounted(&srv, &pg, "1h").await;

    // allowed_roles governs static roles too: refused, nothing stored, the user's password untouched.
    let (status, body) = srv
        .call(
            "POST",
            "database/static-roles/other",
            Some(json!({"db_name": "pg", "username": "app_static", "rotation_period": "1h"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("allowed_roles"), "{body}");
    assert_eq!(srv.call("GET", "database/static-roles/other", None).await.0, 404);
    pg.connect("app_static", "known-to-humans")
        .await
        .expect("a refused static role changed the password");

    // Too short a period and a user that does not exist are refused.
    let (status, _) = srv
        .call(
            "POST",
            "database/static-roles/app-short",
            Some(json!({"db_name": "pg", "username": "app_static", "rotation_period": 2})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = srv
        .call(
            "POST",
            "database/static-roles/app-ghost",
            Some(json!({"db_name": "pg", "username": "no_such_user", "rotation_period": "1h"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(srv.call("GET", "database/static-roles/app-ghost", None).await.0, 404);

    // Creation rotates at once: the password humans knew stops working.
    srv.ok(
        "POST",
        "database/static-roles/app-static",
        Some(json!({"db_name": "pg", "username": "app_static", "rotation_period": "1h"})),
    )
    .await;
    assert!(
        pg.connect("app_static", "known-to-humans").await.is_err(),
        "the password from before the static role still logs in"
    );
    let c1 = static_creds(&srv, "app-static").await;
    assert_eq!(c1["username"], "app_static", "{c1}");
    assert_eq!(c1["rotation_period"], 3600, "{c1}");
    let ttl = c1["ttl"].as_i64().unwrap();
    assert!((3590..=3600).contains(&ttl), "{c1}");
    assert!(c1["last_vault_rotation"].as_str().unwrap().contains('T'), "{c1}");
    let p1 = password_of(&c1);
    assert!(p1.starts_with("lksd_") && p1.len() == 47, "{p1}");
    let s = pg
        .connect("app_static", &p1)
        .await
        .expect("the static password logs in");
    assert_eq!(s.query("SELECT id FROM inventory", &[]).await.unwrap().len(), 0);

    let role = srv.ok("GET", "database/static-roles/app-static", None).await;
    assert_eq!(role["data"]["username"], "app_static", "{role}");
    assert_eq!(role["data"]["db_name"], "pg", "{role}");
    assert_eq!(role["data"]["credential_type"], "password", "{role}");
    assert!(!role.to_string().contains(&p1), "the role read shows the password");
    let listed = srv.ok("LIST", "database/static-roles", None).await;
    assert_eq!(listed["data"]["keys"], json!(["app-static"]), "{listed}");

    // rotate-role: a new password now, the old one refused by PostgreSQL.
    srv.ok("POST", "database/rotate-role/app-static", None).await;
    let p2 = password_of(&static_creds(&srv, "app-static").await);
    assert_ne!(p1, p2);
    assert!(
        pg.connect("app_static", &p1).await.is_err(),
        "the rotated-out password logs in"
    );
    pg.connect("app_static", &p2).await.expect("the new password logs in");

    // A leak report of the current password rotates it at once.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/sys/leaks/report", srv.addr))
        .json(&json!({"secrets": [p2]}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let answer: Value = resp.json().await.unwrap();
    let receipt = answer["data"]["receipts"][0].as_str().unwrap().to_string();
    let record = srv.ok("GET", &format!("sys/leaks/{receipt}"), None).await;
    assert_eq!(record["data"]["kind"], "static", "{record}");
    assert_eq!(record["data"]["action"], "rotated", "{record}");
    assert_eq!(record["data"]["path"], "database/static-creds/app-static", "{record}");
    assert!(!record.to_string().contains(&p2), "the leak record holds the password");
    let p3 = password_of(&static_creds(&srv, "app-static").await);
    assert_ne!(p2, p3, "a reported static password was not rotated");
    assert!(
        pg.connect("app_static", &p2).await.is_err(),
        "the leaked password still logs in"
    );
    pg.connect("app_static", &p3)
        .await
        .expect("the password after the leak logs in");

    // Scheduled rotation: with a 5 s period the password changes by itself.
    srv.ok(
        "POST",
        "database/static-roles/app-static",
        Some(json!({"rotation_period": "5s"})),
    )
    .await;
    let t0 = Instant::now();
    let p4 = changed_password(&srv, "app-static", &p3, Duration::from_secs(12))
        .await
        .expect("no scheduled rotation within 12 s of a 5 s period");
    eprintln!("scheduled rotation seen after {:?}", t0.elapsed());
    assert!(pg.connect("app_static", &p3).await.is_err());
    pg.connect("app_static", &p4)
        .await
        .expect("the scheduled password logs in");
    let ttl = static_creds(&srv, "app-static").await["ttl"].as_i64().unwrap();
    assert!((0..=5).contains(&ttl), "{ttl}");

    let log = srv.log_text();
    for p in [&p1, &p2, &p3, &p4] {
        assert!(!log.contains(p.as_str()), "a static password is in the server log");
    }

    // Deleting the static role leaves the user in place.
    srv.ok("DELETE", "database/static-roles/app-static", None).await;
    assert!(
        role_exists(&admin, "app_static").await,
        "deleting a static role dropped the user"
    );
    assert_eq!(srv.call("GET", "database/static-creds/app-static", None).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_revoked_within_a_second_of_its_ttl_and_revoke_prefix_takes_only_its_prefix() {
    let pg = Postgres::start();
    let admin = pg.admin().await;
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    mounted(&srv, &pg, "3s").await;
    let issued = Instant::now();
    let (lease, user, _) = creds(&srv, "app").await;
    assert!(role_exists(&admin, &user).await);
    let looked = srv
        .ok("PUT", "sys/leases/lookup", Some(json!({"lease_id": lease})))
        .await;
    let expire = time::OffsetDateTime::parse(
        looked["data"]["expire_time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let gone = within(Duration::from_secs(10), || async { !role_exists(&admin, &user).await })
        .await
        .map(|_| issued.elapsed());
    let gone = gone.expect("the expired user was not dropped within 10 s");
    let late = time::OffsetDateTime::now_utc() - expire;
    eprintln!("3 s lease: user dropped {gone:?} after issue, {late} after its expire_time");
    assert!(
        late >= time::Duration::ZERO && late <= time::Duration::milliseconds(1500),
        "a lease expiring at {expire} was revoked {late} after it"
    );
    assert!(gone <= Duration::from_millis(4200), "a 3 s lease lived {gone:?}");

    srv.ok(
        "POST",
        "database/roles/app2",
        Some(json!({"db_name": "pg", "creation_statements": CREATE, "default_ttl": "1h"})),
    )
    .await;
    srv.ok("POST", "database/roles/app", Some(json!({"default_ttl": "1h"})))
        .await;
    let mut app_users = Vec::new();
    for _ in 0..3 {
        app_users.push(creds(&srv, "app").await.1);
    }
    let (other_lease, other_user, _) = creds(&srv, "app2").await;
    srv.ok("PUT", "sys/leases/revoke-prefix/database/creds/app", None).await;
    for u in &app_users {
        assert!(!role_exists(&admin, u).await, "{u} survived revoke-prefix");
    }
    assert!(
        role_exists(&admin, &other_user).await,
        "revoke-prefix crossed a path boundary"
    );
    let (status, _) = srv
        .call("PUT", "sys/leases/lookup", Some(json!({"lease_id": other_lease})))
        .await;
    assert_eq!(status, 200);
}

/// A server on durable SQLite storage (Shamir seal) in `dir`, with `top` as extra top-level config keys.
async fn durable(dir: &Path, port: u16, top: &str) -> Server {
    let cfg = write_config(
        dir,
        port,
        &format!(
            "{top}\n[storage]\ntype = \"sqlite\"\npath = \"{}\"\n[seal]\ntype = \"shamir\"\n",
            dir.join("leakstop.db").display()
        ),
    );
    Server::start(dir, &config_args(&cfg), port, "").await
}

async fn unseal(srv: &Server, key: &str) {
    let v = srv.ok("PUT", "sys/unseal", Some(json!({"key": key}))).await;
    assert_eq!(v["sealed"], false, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_that_expire_while_leakstop_is_down_are_revoked_right_after_unseal() {
    let pg = Postgres::start();
    let admin = pg.admin().await;
    admin
        .batch_execute("CREATE ROLE app_static WITH LOGIN PASSWORD 'x'")
        .await
        .unwrap();
    let dir = tempdir();
    let port = free_port();
    let mut srv = durable(dir.path(), port, "").await;
    let init = srv
        .ok(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .await;
    let key = init["keys"][0].as_str().unwrap().to_string();
    unseal(&srv, &key).await;
    srv.token = init["root_token"].as_str().unwrap().to_string();
    let token = srv.token.clone();
    mounted(&srv, &pg, "4s").await;
    srv.ok(
        "POST",
        "database/roles/app-long",
        Some(json!({"db_name": "pg", "creation_statements": CREATE, "default_ttl": "1h"})),
    )
    .await;
    srv.ok(
        "POST",
        "database/static-roles/app-static",
        Some(json!({"db_name": "pg", "username": "app_static", "rotation_period": "1h"})),
    )
    .await;
    let static_before = static_creds(&srv, "app-static").await;
    let (_, short, _) = creds(&srv, "app").await;
    let (long_lease, long, _) = creds(&srv, "app-long").await;
    drop(srv);

    // Down past the short lease's expiry.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        role_exists(&admin, &short).await,
        "nothing revoked it while leakstop was down"
    );
    let mut srv = durable(dir.path(), port, "").await;
    srv.token = token;
    let unsealed_at = Instant::now();
    unseal(&srv, &key).await;
    let took = within(Duration::from_secs(5), || async { !role_exists(&admin, &short).await })
        .await
        .expect("the lease that expired during the downtime was not revoked within 5 s of unseal");
    eprintln!(
        "expired-while-down lease revoked {took:?} after unseal ({:?} incl. unseal)",
        unsealed_at.elapsed()
    );
    assert!(took <= Duration::from_secs(2), "revoked only {took:?} after unseal");
    assert!(
        role_exists(&admin, &long).await,
        "the unexpired lease's user was dropped"
    );
    srv.ok("PUT", "sys/leases/lookup", Some(json!({"lease_id": long_lease})))
        .await;

    // The static role's schedule survived the restart: same password, next rotation where it was.
    let static_after = static_creds(&srv, "app-static").await;
    assert_eq!(static_after["password"], static_before["password"]);
    let ttl = static_after["ttl"].as_i64().unwrap();
    assert!(
        ttl < static_before["ttl"].as_i64().unwrap() && ttl > 3500,
        "{static_after}"
    );
    pg.connect("app_static", &password_of(&static_after))
        .await
        .expect("the static password still logs in after the restart");
}

/// `vault.expire.num_irrevocable_leases` from `sys/metrics` (Vault's JSON shape).
async fn irrevocable_gauge(srv: &Server) -> i64 {
    let m = srv.ok("GET", "sys/metrics", None).await;
    let gauge = m["Gauges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["Name"] == "vault.expire.num_irrevocable_leases")
        .unwrap_or_else(|| panic!("no irrevocable gauge in {m}"))
        .clone();
    gauge["Value"].as_i64().unwrap()
}

async fn irrevocable_count(srv: &Server) -> i64 {
    srv.ok("GET", "sys/leases?type=irrevocable", None).await["data"]["lease_count"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_due_while_the_database_is_down_is_retried_flagged_and_revoked_once_it_is_back() {
    let pg = Postgres::start();
    let admin = pg.admin().await;
    admin
        .batch_execute("CREATE ROLE app_static WITH LOGIN PASSWORD 'x'")
        .await
        .unwrap();
    let dir = tempdir();
    let srv = Server::configured(dir.path(), "lease_irrevocable_after_s = 2", "").await;
    mounted(&srv, &pg, "2s").await;
    srv.ok(
        "POST",
        "database/static-roles/app-static",
        Some(json!({"db_name": "pg", "username": "app_static", "rotation_period": "5s"})),
    )
    .await;
    let static_pw = password_of(&static_creds(&srv, "app-static").await);
    let (lease, user, _) = creds(&srv, "app").await;
    drop(admin);
    pg.stop();

    // The lease outlives its expiry while revocation fails, and is flagged irrevocable after 2 s of failures.
    let flagged = within(Duration::from_secs(12), || async { irrevocable_count(&srv).await == 1 }).await;
    assert!(flagged.is_some(), "the failing lease never showed as irrevocable");
    let listed = srv.ok("GET", "sys/leases?type=irrevocable", None).await;
    assert_eq!(listed["data"]["leases"][0]["lease_id"], lease.as_str(), "{listed}");
    let (status, body) = srv
        .call("PUT", "sys/leases/lookup", Some(json!({"lease_id": lease})))
        .await;
    assert_eq!(
        status, 200,
        "the lease was dropped while its user could not be revoked: {body}"
    );
    assert_eq!(irrevocable_gauge(&srv).await, 1);
    // The gauges describe the deployment: no token, no numbers.
    let (status, body) = srv.call_as("", "GET", "sys/metrics", None).await;
    assert_eq!(status, 403, "sys/metrics answered a caller without a token: {body}");
    assert!(!body.to_string().contains("num_leases"), "{body}");
    let prom = reqwest::Client::new()
        .get(format!("{}/v1/sys/metrics?format=prometheus", srv.addr))
        .header("X-Vault-Token", &srv.token)
        .send()
        .await
        .unwrap();
    assert!(
        prom.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        prom.headers()
    );
    let prom = prom.text().await.unwrap();
    assert!(
        prom.lines().any(|l| l == "vault_expire_num_irrevocable_leases 1"),
        "{prom}"
    );

    // The static role's rotation fails too: its current password is kept and still served.
    let during = within(Duration::from_secs(8), || async {
        let r = srv.ok("GET", "database/static-roles/app-static", None).await;
        r["data"]["last_rotation_error"].is_string()
    })
    .await;
    assert!(
        during.is_some(),
        "no failed static rotation recorded while the database was down"
    );
    assert_eq!(password_of(&static_creds(&srv, "app-static").await), static_pw);

    pg.start_again();
    let admin = pg.admin().await;
    let back = Instant::now();
    let revoked = within(Duration::from_secs(40), || async { !role_exists(&admin, &user).await }).await;
    assert!(
        revoked.is_some(),
        "the lease was not revoked within 40 s of the database coming back"
    );
    eprintln!("revoked {:?} after the database came back", back.elapsed());
    let gone = within(Duration::from_secs(3), || async {
        srv.call("PUT", "sys/leases/lookup", Some(json!({"lease_id": lease})))
            .await
            .0
            == 400
    })
    .await;
    assert!(gone.is_some(), "the revoked lease is still recorded");
    assert_eq!(
        irrevocable_count(&srv).await,
        0,
        "the irrevocable flag outlived the revocation"
    );
    assert_eq!(irrevocable_gauge(&srv).await, 0);

    // The static rotation resumes: a new password that works, the old one refused.
    let now_pw = changed_password(&srv, "app-static", &static_pw, Duration::from_secs(40))
        .await
        .expect("the static rotation did not resume after the database came back");
    pg.connect("app_static", &now_pw)
        .await
        .expect("the rotated static password logs in");
    assert!(pg.connect("app_static", &static_pw).await.is_err());
}

/// hvac's static-role calls, unchanged, against leakstop: what a Python user of Vault's database engine writes.
const HVAC_SCRIPT: &str = r#"
import json, os, sys
import hvac
c = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
db = c.secrets.database
db.create_static_role(name="app-hvac", db_name="pg", username="app_hvac",
    rotation_statements=["ALTER ROLE \"{{name}}\" WITH PASSWORD '{{password}}';"], rotation_period=3600)
role = db.read_static_role(name="app-hvac")["data"]
listed = db.list_static_roles()["data"]["keys"]
first = db.get_static_credentials(name="app-hvac")["data"]
db.rotate_static_role_credentials(name="app-hvac")
second = db.get_static_credentials(name="app-hvac")["data"]
db.delete_static_role(name="app-hvac")
print(json.dumps({"role": role, "listed": listed, "first": first, "second": second}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hvac_static_role_calls_work_unchanged() {
    let pg = Postgres::start();
    let admin = pg.admin().await;
    admin
        .batch_execute("CREATE ROLE app_hvac WITH LOGIN PASSWORD 'before'")
        .await
        .unwrap();
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    mounted(&srv, &pg, "1h").await;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", HVAC_SCRIPT])
        .env("VAULT_ADDR", &srv.addr)
        .env("VAULT_TOKEN", &srv.token)
        .output()
        .unwrap_or_else(|e| {
            panic!("run {python} (set PYTHON to a Python with hvac: pip install -r tests/requirements.txt): {e}")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the hvac script failed (a missing hvac: pip install -r tests/requirements.txt):\n{stderr}\n{}",
        srv.log_text()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["role"]["username"], "app_hvac", "{v}");
    assert_eq!(v["role"]["rotation_period"], 3600, "{v}");
    assert_eq!(v["listed"], json!(["app-hvac"]), "{v}");
    let (p1, p2) = (password_of(&v["first"]), password_of(&v["second"]));
    assert!(p1.starts_with("lksd_") && p1 != p2, "{v}");
    assert!(
        pg.connect("app_hvac", &p1).await.is_err(),
        "the rotated-out password logs in"
    );
    pg.connect("app_hvac", &p2)
        .await
        .expect("the password after hvac's rotation logs in");
    assert_eq!(srv.call("GET", "database/static-roles/app-hvac", None).await.0, 404);
    assert!(role_exists(&admin, "app_hvac").await);
}

/// Rewrite the stored static role `app-crash` as a rotation interrupted after its write-ahead would leave it.
async fn with_pending(s: &leakstop_vault::engine::MemStore, pending: &str) {
    use leakstop_vault::engine::Store;
    let raw = s.get("static-role/app-crash").await.unwrap().unwrap();
    let mut rec: Value = serde_json::from_slice(&raw).unwrap();
    rec["pending"] = json!(pending);
    s.put_now("static-role/app-crash", &serde_json::to_vec(&rec).unwrap())
        .await
        .unwrap();
}

/// The write-ahead protocol of a static rotation, driven on the engine itself: a stop between "pending written"
/// and "database changed", or between "database changed" and "committed", is settled by setting the pending
/// password again; a rotation the database refuses keeps the old password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_rotation_left_half_done_is_settled_and_a_refused_one_keeps_the_old_password() {
    use leakstop_vault::engine::{MemStore, Store};
    use leakstop_vault::engines::secrets::database::DatabaseBackend;
    use leakstop_vault::{Backend, LogicalRequest, Operation};

    let pg = Postgres::start();
    let admin = pg.admin().await;
    admin
        .batch_execute("CREATE ROLE app_crash WITH LOGIN PASSWORD 'x'")
        .await
        .unwrap();
    let b = DatabaseBackend::new();
    let s = MemStore::default();
    let t0 = std::time::SystemTime::now();
    let req = |op, path: &str, data: Value| LogicalRequest {
        op,
        path: path.into(),
        data: data.as_object().cloned().unwrap_or_default(),
        query: Default::default(),
        now: t0,
        authenticated: true,
    };
    let conn = json!({"plugin_name": "postgresql-database-plugin", "connection_url": pg.url_template(),
        "username": SUPERUSER, "password": SUPERUSER_PASSWORD, "allowed_roles": "*",
        "password_authentication": "scram-sha-256"});
    b.handle(&req(Operation::Create, "config/pg", conn), &s).await.unwrap();
    s.commit();
    let create = json!({"db_name": "pg", "username": "app_crash", "rotation_period": "1h"});
    b.handle(&req(Operation::Create, "static-roles/app-crash", create), &s)
        .await
        .unwrap();
    s.commit();
    let creds = || async {
        let r = b
            .handle(&req(Operation::Read, "static-creds/app-crash", json!({})), &s)
            .await;
        r.map(|r| password_of(&r.data.unwrap()))
    };
    let p1 = creds().await.unwrap();
    pg.connect("app_crash", &p1)
        .await
        .expect("the first static password logs in");

    // Stopped after the write-ahead, before the database changed: the read sets the pending password.
    let pending_a = "lksd-test-pending-a-0123456789";
    with_pending(&s, pending_a).await;
    assert_eq!(creds().await.unwrap(), pending_a);
    pg.connect("app_crash", pending_a)
        .await
        .expect("the settled password logs in");
    assert!(pg.connect("app_crash", &p1).await.is_err());

    // Stopped after the database took the new password, before the commit: the stored one no longer works
    // until the periodic pass settles it.
    let pending_b = "lksd-test-pending-b-0123456789";
    admin
        .batch_execute(&format!("ALTER ROLE app_crash WITH PASSWORD '{pending_b}'"))
        .await
        .unwrap();
    with_pending(&s, pending_b).await;
    assert!(pg.connect("app_crash", pending_a).await.is_err());
    b.tick(t0 + std::time::Duration::from_secs(1), &s).await.unwrap();
    let raw = s.get("static-role/app-crash").await.unwrap().unwrap();
    let rec: Value = serde_json::from_slice(&raw).unwrap();
    assert!(rec["pending"].is_null(), "the periodic pass left the rotation pending");
    assert_eq!(creds().await.unwrap(), pending_b);
    pg.connect("app_crash", pending_b)
        .await
        .expect("the settled password logs in");

    // Rotation statements the database refuses: the rotation fails, the old password stays stored and valid.
    let failing = json!({"rotation_statements": [
        "ALTER ROLE \"{{name}}\" WITH PASSWORD '{{password}}'", "SELECT no_such_column FROM pg_roles"]});
    b.handle(&req(Operation::Update, "static-roles/app-crash", failing), &s)
        .await
        .unwrap();
    let e = b
        .handle(&req(Operation::Update, "rotate-role/app-crash", json!({})), &s)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 502, "{e}");
    assert!(e.to_string().contains("still works"), "{e}");
    assert_eq!(creds().await.unwrap(), pending_b);
    pg.connect("app_crash", pending_b)
        .await
        .expect("a refused rotation changed the password");
    let role = b
        .handle(&req(Operation::Read, "static-roles/app-crash", json!({})), &s)
        .await
        .unwrap()
        .data
        .unwrap();
    assert!(
        role["last_rotation_error"].as_str().unwrap().contains("no_such_column"),
        "{role}"
    );
}
