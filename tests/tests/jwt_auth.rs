//! JWT/OIDC auth end to end: a dev server and a loopback OIDC issuer (real RS256 and ES256 keys) started by the
//! test; logins with GitHub- and GitLab-shaped tokens get tokens with the role's policies, TTLs and mapped claims;
//! every refusal is a 400 that names its reason; key rotation at the issuer and an issuer outage are survived.

mod kvsupport;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use kvsupport::Server;
use leakstop_tests::oidc::{Issuer, github_claims, gitlab_claims, now};
use serde_json::{Value, json};

const REPO_ID: u64 = 1_296_269;

async fn setup(srv: &Server, issuer: &Issuer) {
    srv.enable_jwt_with_policy(
        &issuer.url,
        "ci-read",
        "path \"secret/data/ci/*\" { capabilities = [\"read\"] }",
    )
    .await;
    // GitHub Actions: bind on the immutable repository id and the branch, map claims into token metadata.
    srv.ok(
        "POST",
        "auth/jwt/role/github-deploy",
        Some(json!({
            "role_type": "jwt",
            "user_claim": "repository",
            "bound_audiences": ["leakstop"],
            "bound_claims": {"repository_id": REPO_ID.to_string(), "ref": "refs/heads/main"},
            "claim_mappings": {"repository": "repository", "ref": "ref", "job_workflow_ref": "workflow"},
            "token_policies": ["ci-read"],
            "token_ttl": "10m",
            "token_max_ttl": "1h",
        })),
    )
    .await;
    srv.ok(
        "POST",
        "secret/data/ci/db",
        Some(json!({"data": {"password": "ci-db-pw"}})),
    )
    .await;
    srv.ok(
        "POST",
        "secret/data/prod/db",
        Some(json!({"data": {"password": "prod-db-pw"}})),
    )
    .await;
}

async fn login(srv: &Server, role: &str, jwt: &str) -> (u16, Value) {
    srv.call_as("", "POST", "auth/jwt/login", Some(json!({"role": role, "jwt": jwt})))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_and_gitlab_shaped_tokens_log_in_with_the_roles_policies_ttls_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::dev(dir.path()).await;
    let issuer = Issuer::start().await;
    setup(&srv, &issuer).await;

    let jwt = issuer.mint(
        "rsa-1",
        github_claims("octo-org/app", REPO_ID, "refs/heads/main", "leakstop"),
    );
    let (status, body) = login(&srv, "github-deploy", &jwt).await;
    assert_eq!(status, 200, "{body}");
    let auth = &body["auth"];
    let token = auth["client_token"].as_str().unwrap();
    assert!(token.starts_with("lkss_"), "{token}");
    assert_eq!(auth["policies"], json!(["ci-read", "default"]));
    assert_eq!(auth["lease_duration"], 600, "token_ttl 10m");
    assert_eq!(auth["metadata"]["repository"], "octo-org/app");
    assert_eq!(
        auth["metadata"]["workflow"],
        "octo-org/app/.github/workflows/deploy.yml@refs/heads/main"
    );
    assert_eq!(auth["metadata"]["role"], "github-deploy");
    let (status, read) = srv.call_as(token, "GET", "secret/data/ci/db", None).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["data"]["data"]["password"], "ci-db-pw");
    let (status, _) = srv.call_as(token, "GET", "secret/data/prod/db", None).await;
    assert_eq!(status, 403, "the role's policy does not reach prod");
    let (_, me) = srv.call_as(token, "GET", "auth/token/lookup-self", None).await;
    assert_eq!(me["data"]["display_name"], "jwt-octo-org/app");
    assert_eq!(me["data"]["explicit_max_ttl"], 3600, "token_max_ttl caps the token");
    // Renewal cannot pass token_max_ttl (1h).
    let (status, renewed) = srv
        .call_as(token, "POST", "auth/token/renew-self", Some(json!({"increment": "5h"})))
        .await;
    assert_eq!(status, 200, "{renewed}");
    assert!(renewed["auth"]["lease_duration"].as_u64().unwrap() <= 3600, "{renewed}");

    // An ES256 token from the same issuer works too.
    let jwt = issuer.mint(
        "ec-1",
        github_claims("octo-org/app", REPO_ID, "refs/heads/main", "leakstop"),
    );
    let (status, body) = login(&srv, "github-deploy", &jwt).await;
    assert_eq!(status, 200, "ES256: {body}");

    // GitLab CI: bind on project_id, glob on the ref.
    srv.ok(
        "POST",
        "auth/jwt/role/gitlab-release",
        Some(json!({
            "user_claim": "project_path",
            "bound_audiences": "https://leakstop.example",
            "bound_claims_type": "glob",
            "bound_claims": {"project_id": "4711", "ref": "release-*", "ref_type": "branch"},
            "claim_mappings": {"project_path": "project", "pipeline_id": "pipeline"},
            "token_policies": "ci-read",
            "token_ttl": 300,
            "token_num_uses": 3,
        })),
    )
    .await;
    let jwt = issuer.mint(
        "rsa-1",
        gitlab_claims("group/service", 4711, "release-2.1", "https://leakstop.example"),
    );
    let (status, body) = login(&srv, "gitlab-release", &jwt).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth"]["lease_duration"], 300);
    assert_eq!(body["auth"]["metadata"]["project"], "group/service");
    assert_eq!(body["auth"]["metadata"]["pipeline"], "9001");
    assert_eq!(body["auth"]["num_uses"], 3);
    let jwt = issuer.mint(
        "rsa-1",
        gitlab_claims("group/service", 4711, "main", "https://leakstop.example"),
    );
    let (status, body) = login(&srv, "gitlab-release", &jwt).await;
    assert_eq!(status, 400, "main does not match release-*: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_400_naming_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::dev(dir.path()).await;
    let issuer = Issuer::start().await;
    setup(&srv, &issuer).await;
    let good = || github_claims("octo-org/app", REPO_ID, "refs/heads/main", "leakstop");
    let with = |k: &str, v: Value| {
        let mut c = good();
        c[k] = v;
        c
    };

    let unsigned = {
        let h = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let p = B64URL.encode(serde_json::to_vec(&good()).unwrap());
        format!("{h}.{p}.")
    };
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good(),
        &jsonwebtoken::EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let mut no_aud = good();
    no_aud.as_object_mut().unwrap().remove("aud");
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", unsigned, "alg: none"),
        ("HS256", hs256, "HMAC"),
        (
            "wrong issuer",
            issuer.mint("rsa-1", with("iss", json!("https://evil.example"))),
            "issuer",
        ),
        (
            "wrong audience",
            issuer.mint("rsa-1", with("aud", json!("someone-else"))),
            "audience",
        ),
        ("missing audience", issuer.mint("rsa-1", no_aud), "no audience"),
        (
            "expired",
            issuer.mint("rsa-1", with("exp", json!(now() - 600))),
            "expired",
        ),
        (
            "not yet valid",
            issuer.mint("rsa-1", with("nbf", json!(now() + 600))),
            "not valid yet",
        ),
        (
            "unknown kid",
            issuer.mint_with_foreign_key("rsa-99", good()),
            "unknown signing key",
        ),
        (
            "bad signature",
            issuer.mint_with_foreign_key("rsa-1", good()),
            "signature",
        ),
        (
            "claims",
            issuer.mint("rsa-1", with("repository_id", json!("999"))),
            "repository_id",
        ),
        (
            "ref",
            issuer.mint("rsa-1", with("ref", json!("refs/heads/feature"))),
            "\"ref\"",
        ),
    ];
    for (what, jwt, needle) in cases {
        let (status, body) = login(&srv, "github-deploy", &jwt).await;
        assert_eq!(status, 400, "{what}: {body}");
        let msg = body["errors"][0].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{what}: the error names the reason ({needle}): {msg}"
        );
        assert!(!msg.contains(&jwt), "{what}: the token is not echoed back");
    }

    // An unknown kid costs at most one JWKS refresh per interval, however many logins try it.
    let before = issuer.jwks_fetches();
    for _ in 0..5 {
        let (status, _) = login(&srv, "github-deploy", &issuer.mint_with_foreign_key("rsa-77", good())).await;
        assert_eq!(status, 400);
    }
    assert!(issuer.jwks_fetches() - before <= 1, "JWKS refreshes are rate-limited");

    // Small clock skew is tolerated (default leeway 60 s).
    let (status, body) = login(
        &srv,
        "github-deploy",
        &issuer.mint("rsa-1", with("exp", json!(now() - 20))),
    )
    .await;
    assert_eq!(status, 200, "within leeway: {body}");

    // Replay protection: the same token (same jti) logs in once.
    let mut role: Value = srv.ok("GET", "auth/jwt/role/github-deploy", None).await["data"].clone();
    role["replay_protection"] = json!(true);
    srv.ok("POST", "auth/jwt/role/github-deploy", Some(role)).await;
    let jwt = issuer.mint("rsa-1", good());
    assert_eq!(login(&srv, "github-deploy", &jwt).await.0, 200);
    let (status, body) = login(&srv, "github-deploy", &jwt).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("replayed"), "{body}");

    let (status, body) = login(&srv, "no-such-role", &issuer.mint("rsa-1", good())).await;
    assert_eq!(status, 400);
    assert!(body["errors"][0].as_str().unwrap().contains("no-such-role"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_and_an_issuer_outage_are_survived() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::dev(dir.path()).await;
    let issuer = Issuer::start().await;
    setup(&srv, &issuer).await;
    let claims = || github_claims("octo-org/app", REPO_ID, "refs/heads/main", "leakstop");
    assert_eq!(
        login(&srv, "github-deploy", &issuer.mint("rsa-1", claims())).await.0,
        200
    );

    let new_kid = issuer.rotate_rsa();
    let (status, body) = login(&srv, "github-deploy", &issuer.mint(&new_kid, claims())).await;
    assert_eq!(status, 200, "a token signed by the rotated-in key logs in: {body}");

    // The issuer goes down: keys already fetched keep working.
    issuer.set_down(true);
    let (status, body) = login(&srv, "github-deploy", &issuer.mint(&new_kid, claims())).await;
    assert_eq!(
        status, 200,
        "cached keys keep logins working during an issuer outage: {body}"
    );
    let (status, _) = login(&srv, "github-deploy", &issuer.mint("ec-1", claims())).await;
    assert_eq!(status, 200, "ES256 key also cached");
}
