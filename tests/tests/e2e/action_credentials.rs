//! The credentials action (`action/credentials`) run locally in an emulated GitHub Actions job against a leakstop
//! server and the test OIDC issuer: it logs in with the job's OIDC token, masks every value before exporting it,
//! and exports the secrets to `$GITHUB_ENV` (or step outputs), so later steps need no stored secret.

use std::path::Path;
use std::process::{Command, Output};

use leakstop_tests::oidc::{Issuer, github_claims};
use leakstop_tests::server::Server;
use leakstop_tests::tempdir;
use serde_json::json;

const REPO_ID: u64 = 88_001;

async fn setup(srv: &Server, issuer: &Issuer) {
    srv.enable_jwt_with_policy(
        &issuer.url,
        "ci",
        "path \"secret/data/ci/*\" { capabilities = [\"read\"] }",
    )
    .await;
    srv.ok(
        "POST",
        "auth/jwt/role/ci",
        Some(json!({
            "user_claim": "repository",
            "bound_audiences": ["leakstop"],
            "bound_claims": {"repository_id": REPO_ID.to_string()},
            "token_policies": ["ci"],
            "token_ttl": "10m",
        })),
    )
    .await;
    srv.ok(
        "POST",
        "secret/data/ci/deploy",
        Some(json!({"data": {"password": "hunter2-deploy-Pw9", "user": "deployer"}})),
    )
    .await;
}

fn run_action(srv: &Server, issuer: &Issuer, dir: &Path, secrets: &str, env_file: &Path, export_env: &str) -> Output {
    let root = leakstop_tests::repo_root();
    let bin_dir = leakstop_tests::leakstop_bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("action/credentials/credentials.sh"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_ENV", env_file)
        .env("GITHUB_OUTPUT", dir.join("github_output"))
        .env("INPUT_URL", &srv.addr)
        .env("INPUT_ROLE", "ci")
        .env("INPUT_MOUNT", "jwt")
        .env("INPUT_AUDIENCE", "leakstop")
        .env("INPUT_SECRETS", secrets)
        .env("INPUT_EXPORT_ENV", export_env);
    for (k, v) in issuer.actions_env(github_claims("octo-org/svc", REPO_ID, "refs/heads/main", "x")) {
        cmd.env(k, v);
    }
    cmd.output().expect("run credentials.sh")
}

/// A variable from a `$GITHUB_ENV` file, in either of the runner's formats (`NAME=value` or a heredoc).
fn exported(env: &str, name: &str) -> Option<String> {
    let mut lines = env.lines();
    while let Some(l) = lines.next() {
        if let Some(v) = l.strip_prefix(&format!("{name}=")) {
            return Some(v.to_string());
        }
        if let Some(delim) = l.strip_prefix(&format!("{name}<<")) {
            let body: Vec<&str> = lines.by_ref().take_while(|x| *x != delim).collect();
            return Some(body.join("\n"));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_then_exported_and_the_token_never_printed_in_clear() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let issuer = Issuer::start().await;
    setup(&srv, &issuer).await;

    let env_file = dir.path().join("github_env");
    let secrets =
        "secret/ci/deploy password | DEPLOY_PASSWORD\n# a comment\nsecret/data/ci/deploy user | DEPLOY_USER\n";
    let out = run_action(&srv, &issuer, dir.path(), secrets, &env_file, "true");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "action failed:\n{stdout}\n{stderr}");

    // The leakstop token is masked first thing, and nothing prints it except the mask command.
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("::add-mask::lkss_"),
        "the token is masked before anything else: {stdout}"
    );
    let token = first.trim_start_matches("::add-mask::");
    assert_eq!(stdout.matches(token).count(), 1, "{stdout}");
    assert!(!stderr.contains(token));
    // Each value is masked, appears nowhere else in the log, and lands in $GITHUB_ENV.
    assert!(stdout.contains("::add-mask::hunter2-deploy-Pw9"), "{stdout}");
    assert_eq!(stdout.matches("hunter2-deploy-Pw9").count(), 1, "{stdout}");
    assert!(!stderr.contains("hunter2-deploy-Pw9"));
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert_eq!(
        exported(&env, "DEPLOY_PASSWORD").as_deref(),
        Some("hunter2-deploy-Pw9"),
        "{env}"
    );
    assert_eq!(exported(&env, "DEPLOY_USER").as_deref(), Some("deployer"), "{env}");
    assert!(stdout.contains("fetched 2 secret(s)"), "{stdout}");
    let outputs = std::fs::read_to_string(dir.path().join("github_output")).unwrap();
    assert!(outputs.contains("token-accessor=lksa."), "{outputs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mask_is_printed_even_when_the_export_then_fails() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let issuer = Issuer::start().await;
    setup(&srv, &issuer).await;
    // $GITHUB_ENV is a directory: the export must fail, after the mask was already printed.
    let env_dir = dir.path().join("not-a-file");
    std::fs::create_dir(&env_dir).unwrap();
    let out = run_action(
        &srv,
        &issuer,
        dir.path(),
        "secret/ci/deploy password | P\n",
        &env_dir,
        "true",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("::add-mask::hunter2-deploy-Pw9"),
        "masked before the export was attempted: {stdout}"
    );
    assert!(stdout.contains("::error"), "the failure is annotated: {stdout}");

    // A path the role cannot read fails the step with an annotation naming it, and leaks nothing.
    let env_file = dir.path().join("github_env");
    let out = run_action(
        &srv,
        &issuer,
        dir.path(),
        "secret/prod/db password | P\n",
        &env_file,
        "true",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("::error") && stdout.contains("secret/prod/db"),
        "{stdout}"
    );
}
