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
