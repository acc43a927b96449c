//! The `database` secrets engine against a real PostgreSQL started by the test: what a user notices when
//! issuing and revoking dynamic credentials.

use leakstop_tests::postgres::{Postgres, SUPERUSER, SUPERUSER_PASSWORD};
use leakstop_tests::server::Server;
use leakstop_tests::tempdir;
use serde_json::{Value, json};

const CREATE: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT ON TABLE inventory TO "{{name}}"; GRANT CREATE ON SCHEMA public TO "{{name}}";"#;

async fn role_exists(admin: &tokio_postgres::Client, name: &str) -> bool {
    admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

/// Connection `pg` of the `database/` mount, configured against `pg`.
async fn configured(srv: &Server, pg: &Postgres) {
    let (status, body) = srv
        .call(
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
    assert!(status == 200 || status == 204, "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_credentials_work_and_revocation_leaves_nothing_behind() {
    let pg = Postgres::start();
    let admin = pg.admin().await;
    admin
        .batch_execute(
            "CREATE TABLE inventory (id int); INSERT INTO inventory VALUES (1), (2); CREATE TABLE payroll (x int)",
        )
        .await
        .unwrap();
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    srv.ok("POST", "sys/mounts/database", Some(json!({"type": "database"})))
        .await;
    configured(&srv, &pg).await;

    let cfg = srv.ok("GET", "database/config/pg", None).await;
    let text = cfg.to_string();
    assert!(
        !text.contains(SUPERUSER_PASSWORD),
        "the config read shows the password: {text}"
    );
    assert_eq!(cfg["data"]["connection_details"]["username"], SUPERUSER, "{cfg}");

    srv.ok(
        "POST",
        "database/roles/app",
        Some(json!({"db_name": "pg", "creation_statements": CREATE, "default_ttl": "1h", "max_ttl": "24h"})),
    )
    .await;
    let role = srv.ok("GET", "database/roles/app", None).await;
    assert_eq!(role["data"]["default_ttl"], 3600, "{role}");

    let creds = srv.ok("GET", "database/creds/app", None).await;
    let lease_id = creds["lease_id"].as_str().unwrap().to_string();
    assert!(lease_id.starts_with("database/creds/app/"), "{creds}");
    assert_eq!(creds["lease_duration"], 3600, "{creds}");
    assert_eq!(creds["renewable"], true, "{creds}");
    let user = creds["data"]["username"].as_str().unwrap().to_string();
    let password = creds["data"]["password"].as_str().unwrap().to_string();
    assert!(user.starts_with("v-token-app-") && user.len() <= 63, "{user}");
    assert!(password.starts_with("lksd_") && password.len() == 47, "{password}");

    // The issued user logs in and has exactly the declared grants.
    let session = pg.connect(&user, &password).await.expect("log in as the issued user");
    let rows = session.query("SELECT id FROM inventory", &[]).await.unwrap();
    assert_eq!(rows.len(), 2);
    let denied = session.query("SELECT x FROM payroll", &[]).await.unwrap_err();
    assert!(
        denied.to_string().contains("permission denied") || format!("{denied:?}").contains("42501"),
        "{denied:?}"
    );
    session.batch_execute("CREATE TABLE made_by_app (y int)").await.unwrap();

    // Revoking ends the session, hands the table to the connection's user and removes the role.
    srv.ok("PUT", "sys/leases/revoke", Some(json!({"lease_id": lease_id})))
        .await;
    assert!(!role_exists(&admin, &user).await, "the revoked role still exists");
    assert!(
        session.query("SELECT 1", &[]).await.is_err(),
        "the open session survived revocation"
    );
    let owner: String = admin
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'made_by_app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, SUPERUSER);
    assert!(
        pg.connect(&user, &password).await.is_err(),
        "the revoked password still logs in"
    );

    // A lease whose role was deleted is still revocable (and a user already gone counts as revoked).
    let creds = srv.ok("GET", "database/creds/app", None).await;
    let user2 = creds["data"]["username"].as_str().unwrap().to_string();
    srv.ok("DELETE", "database/roles/app", None).await;
    srv.ok("PUT", "sys/leases/revoke", Some(json!({"lease_id": creds["lease_id"]})))
        .await;
    assert!(!role_exists(&admin, &user2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_store_nothing_and_failed_creation_leaves_no_role() {
    let pg = Postgres::start();
    let admin = pg.admin().await;
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    srv.ok("POST", "sys/mounts/database", Some(json!({"type": "database"})))
        .await;
    let (status, body) = srv
        .call(
            "POST",
            "database/config/wrong",
            Some(json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": pg.url_template(),
                "username": SUPERUSER,
                "password": "not-the-password",
                "allowed_roles": "*",
            })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let msg = body["errors"][0].as_str().unwrap_or_default();
    assert!(
        msg.contains("password authentication failed") && msg.contains("nothing was stored"),
        "{body}"
    );
    assert!(!body.to_string().contains("not-the-password"), "{body}");
    let (status, _) = srv.call("GET", "database/config/wrong", None).await;
    assert_eq!(status, 404, "a refused config was stored");

    configured(&srv, &pg).await;
    // The second statement fails: the first one's role must be rolled back.
    srv.ok(
        "POST",
        "database/roles/app-broken",
        Some(json!({"db_name": "pg", "creation_statements": [
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}'",
            "GRANT SELECT ON TABLE no_such_table TO \"{{name}}\"",
        ]})),
    )
    .await;
    let (status, body) = srv.call("GET", "database/creds/app-broken", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("rolled back"), "{body}");
    let leftovers: i64 = admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-token-%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "a failed creation left a role behind");

    // A role the connection does not allow is refused.
    srv.ok(
        "POST",
        "database/roles/other",
        Some(json!({"db_name": "pg", "creation_statements": CREATE})),
    )
    .await;
    let (status, body) = srv.call("GET", "database/creds/other", None).await;
    assert_eq!(status, 400, "{body}");
    let listed: Value = srv.ok("LIST", "database/roles", None).await;
    assert_eq!(listed["data"]["keys"], json!(["app-broken", "other"]), "{listed}");
}

async fn valid_until(admin: &tokio_postgres::Client, name: &str) -> i64 {
    admin
        .query_one(
            "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

/// Renewal is driven on the engine itself: the lease manager's `sys/leases/renew` calls exactly this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_moves_valid_until_even_after_the_role_is_deleted() {
    use leakstop_vault::engine::{MemStore, NewLease};
    use leakstop_vault::engines::secrets::database::DatabaseBackend;
    use leakstop_vault::leases::Lease;
    use leakstop_vault::{Backend, LogicalRequest, Operation};

    let pg = Postgres::start();
    let admin = pg.admin().await;
    admin.batch_execute("CREATE TABLE inventory (id int)").await.unwrap();
    let b = DatabaseBackend::new();
    let s = MemStore::default();
    let now = std::time::SystemTime::now();
    let req = |op, path: &str, data: Value| LogicalRequest {
        op,
        path: path.into(),
        data: data.as_object().cloned().unwrap_or_default(),
        query: Default::default(),
        now,
        authenticated: true,
    };
    let conn = json!({"plugin_name": "postgresql-database-plugin", "connection_url": pg.url_template(),
        "username": SUPERUSER, "password": SUPERUSER_PASSWORD, "allowed_roles": "*"});
    b.handle(&req(Operation::Create, "config/pg", conn), &s).await.unwrap();
    b.handle(
        &req(
            Operation::Create,
            "roles/app",
            json!({"db_name": "pg", "creation_statements": CREATE, "default_ttl": 600}),
        ),
        &s,
    )
    .await
    .unwrap();
    b.handle(
        &req(Operation::Create, "roles/custom", json!({"db_name": "pg", "creation_statements": CREATE,
            "renew_statements": "ALTER ROLE \"{{name}}\" VALID UNTIL '{{expiration}}'; COMMENT ON ROLE \"{{name}}\" IS 'renewed to {{expiration}}';"})),
        &s,
    )
    .await
    .unwrap();
    s.commit();
    let issue = |role: &'static str| {
        let b = b.clone();
        let s = &s;
        let r = req(Operation::Read, &format!("creds/{role}"), json!({}));
        async move {
            let resp = b.handle(&r, s).await.unwrap();
            let data = resp.data.unwrap();
            let user = data["username"].as_str().unwrap().to_string();
            let password = data["password"].as_str().unwrap().to_string();
            let NewLease { internal, .. } = resp.lease.unwrap();
            let lease = Lease {
                id: format!("database/creds/{role}/x"),
                mount: "database/".into(),
                internal,
                expire_time: 0,
                renewable: true,
                token_hash: None,
                issue_time: 0,
                ttl: 600,
                max_expire: None,
                last_renewal: None,
                retry: None,
            };
            (user, password, lease)
        }
    };
    let t0 = leakstop_vault::engine::unix_seconds(now);
    let (user, _, lease) = issue("app").await;
    assert!(
        (valid_until(&admin, &user).await - (t0 + 600)).abs() <= 1,
        "creation set VALID UNTIL to the lease's end"
    );

    // The role is deleted: the lease still carries what renewal needs.
    b.handle(&req(Operation::Delete, "roles/app", json!({})), &s)
        .await
        .unwrap();
    s.commit();
    b.renew(&lease, t0 + 7200, &s).await.unwrap();
    assert_eq!(
        valid_until(&admin, &user).await,
        t0 + 7200,
        "renewal did not move VALID UNTIL"
    );

    let (custom, _, lease) = issue("custom").await;
    b.renew(&lease, t0 + 900, &s).await.unwrap();
    assert_eq!(valid_until(&admin, &custom).await, t0 + 900);
    let comment: Option<String> = admin
        .query_one(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&custom],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        comment.unwrap_or_default().starts_with("renewed to "),
        "the role's renew_statements did not run"
    );

    // A user whose VALID UNTIL has passed cannot log in: this is what renewal keeps from happening.
    let (expired, password, lease) = issue("custom").await;
    pg.connect(&expired, &password)
        .await
        .expect("log in before the validity ends");
    b.renew(&lease, t0 - 60, &s).await.unwrap();
    assert!(
        pg.connect(&expired, &password).await.is_err(),
        "a user past its VALID UNTIL still logs in"
    );

    // A failed renewal is an error (the lease keeps its expiry): the database is gone.
    drop(pg);
    assert!(b.renew(&lease, t0 + 60, &s).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_root_scram_pool_limit_and_reset() {
    let pg = Postgres::start();
    let admin = pg.admin().await;
    admin
        .batch_execute(
            "CREATE TABLE inventory (id int); CREATE ROLE rooty WITH LOGIN SUPERUSER PASSWORD 'first-root-pw'",
        )
        .await
        .unwrap();
    // ALTER SYSTEM refuses to run inside the implicit transaction of a multi-statement batch.
    admin
        .batch_execute("ALTER SYSTEM SET log_statement = 'all'")
        .await
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    srv.ok("POST", "sys/mounts/database", Some(json!({"type": "database"})))
        .await;
    srv.ok(
        "POST",
        "database/config/pg",
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": pg.url_template(),
            "username": "rooty", "password": "first-root-pw", "allowed_roles": ["app*"],
            "password_authentication": "scram-sha-256", "max_open_connections": 1,
        })),
    )
    .await;
    let cfg = srv.ok("GET", "database/config/pg", None).await;
    assert_eq!(cfg["data"]["password_authentication"], "scram-sha-256", "{cfg}");
    assert_eq!(cfg["data"]["max_open_connections"], 1, "{cfg}");
    srv.ok(
        "POST",
        "database/roles/app",
        Some(json!({"db_name": "pg", "creation_statements": CREATE})),
    )
    .await;

    // At most one connection open at a time, even with requests in parallel.
    let issued = futures_join(&srv, 4).await;
    let open: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = 'rooty'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 1, "max_open_connections=1 was not honoured");

    // SCRAM: the issued users log in, PostgreSQL only ever saw a verifier.
    for (user, password) in &issued {
        pg.connect(user, password).await.expect("log in as an issued user");
        let stored: String = admin
            .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[user])
            .await
            .unwrap()
            .get(0);
        assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
    }

    // Fewer PBKDF2 iterations for the engine's own random passwords: the verifier says so and the user logs in;
    // a count out of range is refused and leaves the connection as it was.
    srv.ok("POST", "database/config/pg", Some(json!({"scram_iterations": 1})))
        .await;
    let cfg = srv.ok("GET", "database/config/pg", None).await;
    assert_eq!(cfg["data"]["scram_iterations"], 1, "{cfg}");
    let (user, password) = futures_join(&srv, 1).await.remove(0);
    pg.connect(&user, &password)
        .await
        .expect("log in with a 1-iteration verifier");
    let stored: String = admin
        .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&user])
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$1:"), "{stored}");
    let (status, body) = srv
        .call("POST", "database/config/pg", Some(json!({"scram_iterations": 0})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("scram_iterations"), "{body}");
    let cfg = srv.ok("GET", "database/config/pg", None).await;
    assert_eq!(cfg["data"]["scram_iterations"], 1, "{cfg}");

    // rotate-root: the old password is refused, the engine keeps working, the new one is never shown.
    srv.ok("POST", "database/rotate-root/pg", None).await;
    let err = pg.connect("rooty", "first-root-pw").await.unwrap_err();
    assert!(
        format!("{err:?}").contains("28P01"),
        "the old root password still works: {err:?}"
    );
    let (user, password) = futures_join(&srv, 1).await.remove(0);
    pg.connect(&user, &password).await.expect("creds after rotate-root");
    let cfg = srv.ok("GET", "database/config/pg", None).await.to_string();
    assert!(!cfg.contains("lksd_") && !cfg.contains("first-root-pw"), "{cfg}");
    let (status, body) = srv.call("POST", "database/rotate-root/missing", None).await;
    assert_eq!(status, 400, "{body}");

    // reset closes the pool's connections; the next request opens a new one.
    srv.ok("POST", "database/reset/pg", None).await;
    let mut open = 1;
    for _ in 0..50 {
        open = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = 'rooty'", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        if open == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0, "reset left the pool's connection open");
    futures_join(&srv, 1).await;

    let log = std::fs::read_to_string(pg.data_dir().join("server.log")).unwrap();
    assert!(
        log.contains("CREATE ROLE"),
        "statement logging is off: the next check proves nothing"
    );
    for (_, password) in issued {
        assert!(
            !log.contains(&password),
            "a password reached the PostgreSQL log in clear"
        );
    }
}

/// `n` credentials of role `app` requested in parallel: (username, password) each.
async fn futures_join(srv: &Server, n: usize) -> Vec<(String, String)> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let addr = srv.addr.clone();
        let token = srv.token.clone();
        tasks.spawn(async move {
            let resp: Value = reqwest::Client::new()
                .get(format!("{addr}/v1/database/creds/app"))
                .header("X-Vault-Token", token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                resp["data"]["username"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{resp}"))
                    .to_string(),
                resp["data"]["password"].as_str().unwrap().to_string(),
            )
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_password_revokes_its_lease_and_drops_the_user() {
    let pg = Postgres::start();
    let admin = pg.admin().await;
    admin.batch_execute("CREATE TABLE inventory (id int)").await.unwrap();
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    srv.ok("POST", "sys/mounts/database", Some(json!({"type": "database"})))
        .await;
    configured(&srv, &pg).await;
    srv.ok(
        "POST",
        "database/roles/app",
        Some(json!({"db_name": "pg", "creation_statements": CREATE})),
    )
    .await;
    let creds = srv.ok("GET", "database/creds/app", None).await;
    let user = creds["data"]["username"].as_str().unwrap().to_string();
    let password = creds["data"]["password"].as_str().unwrap().to_string();
    assert!(role_exists(&admin, &user).await);

    // Reported without a token, as a scanner would.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/sys/leaks/report", srv.addr))
        .json(&json!({"secrets": [password]}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(!role_exists(&admin, &user).await, "the leaked user still exists");
    assert!(
        pg.connect(&user, &password).await.is_err(),
        "the leaked password still logs in"
    );
    let (status, body) = srv
        .call("PUT", "sys/leases/lookup", Some(json!({"lease_id": creds["lease_id"]})))
        .await;
    assert_eq!(status, 400, "the lease outlived the leak report: {body}");
}
