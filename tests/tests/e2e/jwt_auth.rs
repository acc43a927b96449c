//! JWT/OIDC auth end to end: a dev server and a loopback OIDC issuer (real RS256 and ES256 keys) started by the
//! test; logins with GitHub- and GitLab-shaped tokens get tokens with the role's policies, TTLs and mapped claims;
//! every refusal is a 400 that names its reason; key rotation at the issuer and an issuer outage are survived.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use leakstop_tests::oidc::{Issuer, github_claims, gitlab_claims, now};
use leakstop_tests::server::Server;
use leakstop_tests::tempdir;
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
    let dir = tempdir();
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
    let dir = tempdir();
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
            // RS256 with a 2048-bit key: a 256-byte signature, whose padded base64url ends in `==`.
            "padded signature",
            format!("{}==", issuer.mint("rsa-1", good())),
            "signature",
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
    let dir = tempdir();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_login_is_open_and_role_names_are_checked() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let issuer = Issuer::start().await;
    setup(&srv, &issuer).await;
    let admin_role = json!({"bound_audiences": "x", "token_policies": ["ci-read"]});

    // A role named `login` is not a login path: no token, no role.
    let (status, body) = srv
        .call_as("", "POST", "auth/jwt/role/login", Some(admin_role.clone()))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, roles) = srv.call("LIST", "auth/jwt/role", None).await;
    assert_eq!(status, 200, "{roles}");
    assert_eq!(
        roles["data"]["keys"],
        json!(["github-deploy"]),
        "no role `login` was created"
    );
    for method in ["GET", "DELETE"] {
        let (status, body) = srv.call_as("", method, "auth/jwt/role/github-deploy", None).await;
        assert_eq!(status, 403, "{method}: {body}");
    }
    srv.ok("GET", "auth/jwt/role/github-deploy", None).await;
    let (status, _) = srv
        .call_as(
            "",
            "POST",
            "auth/jwt/config",
            Some(json!({"jwks_url": "http://127.0.0.1:9/"})),
        )
        .await;
    assert_eq!(status, 403);

    // A mount whose path contains `login/` is open at its own `login` only.
    srv.ok("POST", "sys/auth/ci/login", Some(json!({"type": "jwt"}))).await;
    for (method, path) in [
        ("POST", "auth/ci/login/role/x"),
        ("POST", "auth/ci/login/config"),
        ("GET", "auth/ci/login/config"),
        ("LIST", "auth/ci/login/role"),
    ] {
        let (status, body) = srv.call_as("", method, path, Some(admin_role.clone())).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    let (status, body) = srv
        .call_as(
            "",
            "POST",
            "auth/ci/login/login",
            Some(json!({"role": "x", "jwt": "e30.e30.e30"})),
        )
        .await;
    assert_eq!(
        status, 400,
        "the mount's own login is reachable (and refuses: nothing configured): {body}"
    );
    assert!(body["errors"][0].as_str().unwrap().contains("not configured"), "{body}");

    let (status, body) = srv
        .call("POST", "auth/jwt/role/bad!name", Some(admin_role.clone()))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("invalid role name"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_never_mint_root_and_every_field_takes_effect_or_is_refused() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let issuer = Issuer::start().await;
    setup(&srv, &issuer).await;

    for field in ["token_policies", "policies"] {
        let (status, body) = srv
            .call(
                "POST",
                "auth/jwt/role/escalate",
                Some(json!({"bound_audiences": "leakstop", field: "ci-read,root"})),
            )
            .await;
        assert_eq!(status, 400, "{field}: {body}");
        assert!(
            body["errors"][0]
                .as_str()
                .unwrap()
                .contains("auth methods cannot create root tokens"),
            "{body}"
        );
    }

    // What `bao write auth/jwt/role/r k=v ...` sends: every value a string.
    srv.ok(
        "POST",
        "auth/jwt/role/cli",
        Some(json!({
            "user_claim": "repository",
            "bound_audiences": "leakstop",
            "bound_claims": format!("{{\"repository_id\":\"{REPO_ID}\"}}"),
            "claim_mappings": "{\"repository\":\"repo\"}",
            "token_policies": "ci-read",
            "replay_protection": "true",
            "token_num_uses": "1",
            "token_no_default_policy": "true",
            "token_ttl": "5m",
        })),
    )
    .await;
    let jwt = issuer.mint(
        "rsa-1",
        github_claims("octo-org/app", REPO_ID, "refs/heads/main", "leakstop"),
    );
    let (status, body) = login(&srv, "cli", &jwt).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth"]["num_uses"], 1, "{body}");
    assert_eq!(body["auth"]["policies"], json!(["ci-read"]), "no default policy");
    assert_eq!(body["auth"]["metadata"]["repo"], "octo-org/app");
    let (status, body) = login(&srv, "cli", &jwt).await;
    assert_eq!(status, 400, "replay protection is on: {body}");
    let other = issuer.mint(
        "rsa-1",
        github_claims("octo-org/app", 999, "refs/heads/main", "leakstop"),
    );
    assert_eq!(login(&srv, "cli", &other).await.0, 400, "bound_claims applies");

    for (body, needle) in [
        (
            json!({"bound_audiences": "a", "token_num_uses": "once"}),
            "token_num_uses",
        ),
        (
            json!({"bound_audiences": "a", "replay_protection": "yes"}),
            "replay_protection",
        ),
        (
            json!({"bound_audiences": "a", "replay_protecton": true}),
            "replay_protecton",
        ),
        (
            json!({"bound_audiences": "a", "token_ttl": "9223372036854775807"}),
            "token_ttl",
        ),
        (
            json!({"bound_audiences": "a", "token_bound_cidrs": "10.0.0.0/8"}),
            "token_bound_cidrs",
        ),
    ] {
        let (status, resp) = srv.call("POST", "auth/jwt/role/bad", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {resp}");
        assert!(resp["errors"][0].as_str().unwrap().contains(needle), "{body}: {resp}");
    }
    let (status, resp) = srv
        .call("POST", "auth/jwt/config", Some(json!({"bound_isuser": "x"})))
        .await;
    assert_eq!(status, 400, "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_without_token_ttl_and_audiences_are_required() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let issuer = Issuer::start().await;
    setup(&srv, &issuer).await;
    let claims = |aud: &str| github_claims("octo-org/app", REPO_ID, "refs/heads/main", aud);
    let bound = json!({"repository_id": REPO_ID.to_string()});

    srv.ok(
        "POST",
        "auth/jwt/role/no-ttl",
        Some(json!({"bound_audiences": "leakstop", "token_policies": "ci-read"})),
    )
    .await;
    let (status, body) = login(&srv, "no-ttl", &issuer.mint("rsa-1", claims("leakstop"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["auth"]["lease_duration"],
        768 * 3600,
        "the system default TTL: {body}"
    );
    let token = body["auth"]["client_token"].as_str().unwrap();
    let (_, me) = srv.call_as(token, "GET", "auth/token/lookup-self", None).await;
    assert!(!me["data"]["expire_time"].is_null(), "{me}");

    srv.ok(
        "POST",
        "auth/jwt/role/max-only",
        Some(json!({"bound_audiences": "leakstop", "token_max_ttl": "1h"})),
    )
    .await;
    let (status, body) = login(&srv, "max-only", &issuer.mint("rsa-1", claims("leakstop"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth"]["lease_duration"], 3600, "{body}");

    // No bound_audiences: a token minted for any audience is refused, one without aud accepted.
    srv.ok(
        "POST",
        "auth/jwt/role/no-aud",
        Some(json!({"bound_claims": bound, "token_policies": "ci-read"})),
    )
    .await;
    let (status, body) = login(&srv, "no-aud", &issuer.mint("rsa-1", claims("sts.amazonaws.com"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("audience"), "{body}");
    let mut no_aud = claims("x");
    no_aud.as_object_mut().unwrap().remove("aud");
    let (status, body) = login(&srv, "no-aud", &issuer.mint("rsa-1", no_aud)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reveal_no_configuration_and_failed_logins_do_not_spend_the_jti() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let issuer = Issuer::start().await;
    setup(&srv, &issuer).await;
    let secret_aud = "aud-internal-7f3c2b";
    srv.ok(
        "POST",
        "auth/jwt/role/quiet",
        Some(json!({
            "user_claim": "no-such-claim",
            "bound_audiences": secret_aud,
            "bound_claims": {"repository_id": REPO_ID.to_string()},
            "replay_protection": true,
        })),
    )
    .await;
    let claims = |aud: &str| github_claims("octo-org/app", REPO_ID, "refs/heads/main", aud);
    let mut wrong_iss = claims(secret_aud);
    wrong_iss["iss"] = json!("https://evil.example");
    let assert_quiet = |what: &str, body: &Value| {
        let text = body.to_string();
        for secret in [secret_aud, issuer.url.as_str(), issuer.jwks_url().as_str(), "127.0.0.1"] {
            assert!(!text.contains(secret), "{what}: the error reveals {secret}: {text}");
        }
    };
    let (status, body) = login(&srv, "quiet", &issuer.mint("rsa-1", claims("someone-else"))).await;
    assert_eq!(status, 400);
    assert_quiet("wrong audience", &body);
    let (status, body) = login(&srv, "quiet", &issuer.mint("rsa-1", wrong_iss)).await;
    assert_eq!(status, 400);
    assert_quiet("wrong issuer", &body);

    // The role's user_claim is wrong: refused, and the jti is not spent by the refusal.
    let jwt = issuer.mint("rsa-1", claims(secret_aud));
    let (status, body) = login(&srv, "quiet", &jwt).await;
    assert_eq!(status, 400, "{body}");
    srv.ok("POST", "auth/jwt/role/quiet", Some(json!({"user_claim": "repository"})))
        .await;
    let (status, body) = login(&srv, "quiet", &jwt).await;
    assert_eq!(status, 200, "the jti was not spent by the failed login: {body}");
    assert_eq!(login(&srv, "quiet", &jwt).await.0, 400, "now it is");

    // An issuer that cannot be reached: a 502 naming neither its URL nor its JWKS URL.
    srv.ok(
        "POST",
        "auth/jwt/config",
        Some(json!({"oidc_discovery_url": issuer.url, "bound_issuer": issuer.url})),
    )
    .await;
    issuer.set_down(true);
    let (status, body) = login(&srv, "quiet", &issuer.mint("rsa-1", claims(secret_aud))).await;
    assert_eq!(status, 502, "{body}");
    assert_quiet("issuer down", &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_fetches_are_single_flight_back_off_and_are_capped() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let issuer = Issuer::start().await;
    setup(&srv, &issuer).await;
    let claims = || github_claims("octo-org/app", REPO_ID, "refs/heads/main", "leakstop");
    let storm = |jwt: String, n: usize| {
        let srv = &srv;
        async move { concurrent_logins(srv, "github-deploy", &jwt, n).await }
    };

    // A cold cache and a slow issuer: 200 concurrent logins, one discovery and one JWKS request.
    issuer.set_delay_ms(300);
    let statuses = storm(issuer.mint("rsa-1", claims()), 200).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(issuer.requests(), 2, "one discovery and one JWKS fetch for 200 logins");

    // 200 concurrent logins with a kid the issuer does not have: at most one refresh.
    let before = issuer.requests();
    let statuses = storm(issuer.mint_with_foreign_key("rsa-404", claims()), 200).await;
    assert!(statuses.iter().all(|s| *s == 400), "{statuses:?}");
    assert!(
        issuer.requests() - before <= 2,
        "{} requests",
        issuer.requests() - before
    );

    // The issuer fails: no fetch storm, the failures back off.
    issuer.set_delay_ms(0);
    srv.ok(
        "POST",
        "auth/jwt/config",
        Some(json!({"oidc_discovery_url": issuer.url, "bound_issuer": issuer.url})),
    )
    .await;
    issuer.set_down(true);
    let before = issuer.requests();
    let statuses = storm(issuer.mint("rsa-1", claims()), 200).await;
    assert!(statuses.iter().all(|s| *s == 502), "{statuses:?}");
    for _ in 0..20 {
        assert_eq!(
            login(&srv, "github-deploy", &issuer.mint("rsa-1", claims())).await.0,
            502
        );
    }
    // One attempt, plus at most two more if the storm outlasted the first backoff periods (2 s, then 4 s).
    assert!(
        issuer.requests() - before <= 3,
        "{} requests while the issuer is down",
        issuer.requests() - before
    );

    // An oversized JWKS is refused, not buffered.
    srv.ok(
        "POST",
        "auth/jwt/config",
        Some(json!({"oidc_discovery_url": issuer.url, "bound_issuer": issuer.url})),
    )
    .await;
    issuer.set_down(false);
    issuer.set_oversized(true);
    let (status, body) = login(&srv, "github-deploy", &issuer.mint("rsa-1", claims())).await;
    assert_eq!(status, 502, "{body}");
}

/// `n` logins at once (separate tasks and connections); their statuses.
async fn concurrent_logins(srv: &Server, role: &str, jwt: &str, n: usize) -> Vec<u16> {
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let req = http
            .post(format!("{}/v1/auth/jwt/login", srv.addr))
            .json(&json!({"role": role, "jwt": jwt}));
        tasks.spawn(async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) });
    }
    tasks.join_all().await
}
