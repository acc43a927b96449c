//! Workload identity federation end to end: a job in an emulated GitHub Actions environment (the two ID-token env
//! vars served by the test OIDC issuer) runs `leakstop login --oidc`, reads a KV secret with the short-lived token,
//! and obtains a GitHub installation token limited to one repository from the broker; revoking the lease (directly,
//! through its token, or by expiry) reaches the GitHub stand-in.

use std::time::Duration;

use leakstop_tests::cmd;
use leakstop_tests::github::{GithubStandIn, OWNER};
use leakstop_tests::oidc::{Issuer, github_claims};
use leakstop_tests::server::{Server, free_port};
use leakstop_tests::tempdir;
use serde_json::json;

const REPO_ID: u64 = 1_296_269;

const CI_POLICY: &str = r#"
path "secret/data/ci/*" { capabilities = ["read"] }
path "github/token/deploy" { capabilities = ["create", "update", "read"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }
"#;

async fn setup(srv: &Server, issuer: &Issuer, gh: &GithubStandIn, ttl: &str) {
    srv.enable_jwt_with_policy(&issuer.url, "ci", CI_POLICY).await;
    srv.ok(
        "POST",
        "auth/jwt/role/deploy",
        Some(json!({
            "user_claim": "repository",
            "bound_audiences": ["leakstop"],
            "bound_claims": {"repository_id": REPO_ID.to_string()},
            "token_policies": ["ci"],
            "token_ttl": "15m",
        })),
    )
    .await;
    srv.ok(
        "POST",
        "secret/data/ci/db",
        Some(json!({"data": {"password": "e2e-db-password"}})),
    )
    .await;
    srv.ok("POST", "sys/mounts/github", Some(json!({"type": "github"})))
        .await;
    srv.ok(
        "POST",
        "github/config",
        Some(json!({"app_id": leakstop_tests::github::APP_ID, "private_key": gh.app_private_key, "base_url": gh.url})),
    )
    .await;
    srv.ok(
        "POST",
        "github/role/deploy",
        Some(json!({"owner": OWNER, "repositories": ["app"], "permissions": {"contents": "read"}, "ttl": ttl})),
    )
    .await;
}

fn leakstop(args: &[&str], envs: &[(String, String)]) -> (i32, String, String) {
    let out = cmd::leakstop(args).envs(envs.iter().map(|(k, v)| (k, v))).run();
    (out.code, out.stdout.trim().to_string(), out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_job_logs_in_with_oidc_reads_a_secret_and_gets_a_scoped_github_token_revoked_with_its_lease() {
    let dir = tempdir();
    let port = free_port();
    let args: Vec<String> = ["server", "--dev", "--dev-root-token-id", "root", "--dev-listen-address"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("127.0.0.1:{port}")])
        .collect();
    let srv = Server::start_env(dir.path(), &args, &[("LEAKSTOP_EXPIRY_SWEEP_MS", "200")], port, "root").await;
    let issuer = Issuer::start().await;
    let gh = GithubStandIn::start().await;
    setup(&srv, &issuer, &gh, "10m").await;

    // The job: GitHub Actions env vars pointing at the issuer's token endpoint.
    let mut env = issuer.actions_env(github_claims("octo-org/app", REPO_ID, "refs/heads/main", "ignored"));
    env.push(("LEAKSTOP_ADDR".into(), srv.addr.clone()));
    let (code, token, err) = leakstop(&["login", "--oidc", "--role", "deploy", "--audience", "leakstop"], &env);
    assert_eq!(code, 0, "login failed: {err}");
    assert!(
        token.starts_with("lkss_") && !token.contains('\n'),
        "stdout is just the token: {token}"
    );
    env.push(("LEAKSTOP_TOKEN".into(), token.clone()));

    let (code, value, err) = leakstop(&["read", "secret/ci/db", "--field", "password"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(value, "e2e-db-password");
    let (code, _, err) = leakstop(&["read", "secret/prod/db", "--field", "password"], &env);
    assert_ne!(code, 0, "the job's policy does not reach prod");
    assert!(err.contains("403") || err.contains("permission denied"), "{err}");

    let (code, gh_token, err) = leakstop(&["creds", "github/token/deploy", "--field", "token"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(gh_token.starts_with("ghs_"), "{gh_token}");
    let issued = gh.issued();
    let ours = issued
        .iter()
        .find(|i| i.token == gh_token)
        .expect("the stand-in issued it");
    assert_eq!(
        ours.repositories,
        vec!["app".to_string()],
        "limited to the role's one repository"
    );
    assert_eq!(ours.permissions, json!({"contents": "read"}));
    let visible = reqwest::Client::new()
        .get(format!("{}/installation/repositories", gh.url))
        .bearer_auth(&gh_token)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(visible["total_count"], 1, "{visible}");

    // A token minted through the API and its lease revoked explicitly.
    let (status, minted) = srv.call_as(&token, "POST", "github/token/deploy", None).await;
    assert_eq!(status, 200, "{minted}");
    let lease_id = minted["lease_id"].as_str().unwrap().to_string();
    assert!(lease_id.starts_with("github/token/deploy/"), "{lease_id}");
    assert_eq!(minted["lease_duration"], 600);
    let second = minted["data"]["token"].as_str().unwrap().to_string();
    srv.ok("PUT", "sys/leases/revoke", Some(json!({"lease_id": lease_id})))
        .await;
    assert!(
        gh.wait_revoked(&second, Duration::from_secs(5)).await,
        "lease revocation reaches GitHub"
    );
    assert!(
        !gh.issued().iter().find(|i| i.token == gh_token).unwrap().revoked,
        "other leases untouched"
    );

    // The job's token ends (revoke-self at the end of a job): its leases go with it.
    let (status, _) = srv.call_as(&token, "POST", "auth/token/revoke-self", None).await;
    assert_eq!(status, 204);
    assert!(
        gh.wait_revoked(&gh_token, Duration::from_secs(5)).await,
        "revoking the token revokes its GitHub token"
    );

    // Expiry: a short role TTL; the sweep revokes the GitHub token when the lease ends.
    srv.ok(
        "POST",
        "github/role/deploy",
        Some(json!({"owner": OWNER, "repositories": ["app"], "permissions": {"contents": "read"}, "ttl": "1s"})),
    )
    .await;
    let (status, minted) = srv.call("POST", "github/token/deploy", None).await;
    assert_eq!(status, 200, "{minted}");
    let short = minted["data"]["token"].as_str().unwrap().to_string();
    assert!(
        gh.wait_revoked(&short, Duration::from_secs(10)).await,
        "an expired lease is revoked at GitHub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_shaped_github_roles_work_and_an_unreachable_github_is_a_502_naming_it() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let gh = GithubStandIn::start().await;
    srv.ok("POST", "sys/mounts/github", Some(json!({"type": "github"})))
        .await;
    srv.ok(
        "POST",
        "github/config",
        Some(json!({"app_id": leakstop_tests::github::APP_ID.to_string(), "private_key": gh.app_private_key, "base_url": gh.url})),
    )
    .await;
    // The README's `bao write github/role/release owner=... repositories=app permissions='{"contents":"read"}'`.
    srv.ok(
        "POST",
        "github/role/release",
        Some(json!({"owner": OWNER, "repositories": "app", "permissions": "{\"contents\":\"read\"}", "ttl": "10m"})),
    )
    .await;
    for (body, needle) in [
        (json!({"owner": OWNER, "repositories": "app"}), "permissions"),
        (
            json!({"owner": OWNER, "repositories": "app", "permissions": "{\"contents\":\"admin\"}"}),
            "contents",
        ),
        (
            json!({"owner": OWNER, "repositories": "app", "permissions": "contents=read"}),
            "permissions",
        ),
        (
            json!({"owner": OWNER, "repositories": "app", "permissions": {"contents": "read"}, "ttl": "2h"}),
            "ttl",
        ),
        (
            json!({"owner": OWNER, "repositories": "app", "permissions": {"contents": "read"}, "repos": "x"}),
            "repos",
        ),
    ] {
        let (status, resp) = srv.call("POST", "github/role/bad", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {resp}");
        assert!(resp["errors"][0].as_str().unwrap().contains(needle), "{body}: {resp}");
    }
    let (status, minted) = srv.call("POST", "github/token/release", None).await;
    assert_eq!(status, 200, "{minted}");
    let issued = gh.issued();
    assert_eq!(issued.last().unwrap().permissions, json!({"contents": "read"}));

    gh.stop().await;
    let (status, body) = srv.call("POST", "github/token/release", None).await;
    assert_eq!(status, 502, "an unreachable GitHub API is an upstream failure: {body}");
    let msg = body["errors"][0].as_str().unwrap();
    let host = gh.url.trim_start_matches("http://");
    assert!(msg.contains(host), "names the API host: {msg}");
    assert!(msg.contains("connection refused"), "names the failure: {msg}");
    assert!(!msg.contains("not installed"), "{msg}");
}
