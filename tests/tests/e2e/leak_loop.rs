//! Detect → revoke, end to end: a dev server, a leakstop token and a KV-stored value committed to a git
//! repository, `leakstop scan --git --report-to` finding them, the token dead at its next use, `sys/leaks` naming
//! where each was found, a brokered GitHub token reported from a saved report deleted at the GitHub stand-in, and
//! no secret in clear in the records, the server log or the audit file. Then the report endpoint's contract:
//! the same answer for known and unknown secrets, idempotence, clear 4xx for malformed bodies, and 429 with
//! `Retry-After` for one address while another is still served.

use std::time::Duration;

use leakstop_tests::cmd;
use leakstop_tests::gitcli::{commit_file, init_repo};
use leakstop_tests::github::{APP_ID, GithubStandIn, OWNER};
use leakstop_tests::server::Server;
use serde_json::{Value, json};

fn leakstop(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let run = cmd::leakstop(args)
        .env("HOME", std::env::temp_dir())
        .envs(envs.iter().copied())
        .run();
    (run.code, run.stdout, run.stderr)
}

async fn report_as(http: &reqwest::Client, srv: &Server, body: Value) -> (u16, Option<String>, Value) {
    let resp = http
        .post(format!("{}/v1/sys/leaks/report", srv.addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

async fn records(srv: &Server) -> Vec<Value> {
    let (status, list) = srv.call("LIST", "sys/leaks", None).await;
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{list}");
    let mut out = Vec::new();
    for id in list["data"]["keys"].as_array().unwrap() {
        let r = srv
            .ok("GET", &format!("sys/leaks/{}", id.as_str().unwrap()), None)
            .await;
        out.push(r["data"].clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_credentials_are_revoked_or_flagged_by_scan_report_to() {
    let dir = leakstop_tests::tempdir();
    let srv = Server::dev(dir.path()).await;
    let audit = dir.path().join("audit.log");
    srv.enable_file_audit("file", &audit).await;

    let created = srv
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["default"], "ttl": "1h"})),
        )
        .await;
    let token = created["auth"]["client_token"].as_str().unwrap().to_string();
    let (status, _) = srv.call_as(&token, "GET", "auth/token/lookup-self", None).await;
    assert_eq!(status, 200);
    let stored = leakstop_tests::secrets::github_pat();
    srv.ok(
        "POST",
        "secret/data/app/ci",
        Some(json!({"data": {"github_token": stored}})),
    )
    .await;

    let repo = init_repo(&dir.path().join("repo"));
    let commit = commit_file(
        &repo,
        "deploy/prod.env",
        &format!("LEAKSTOP_TOKEN={token}\nGITHUB_TOKEN={stored}\n"),
        "add deploy settings",
    );

    // Plain HTTP to a non-loopback address is refused before anything is scanned or sent.
    let repo_arg = repo.to_str().unwrap();
    let (code, _, err) = leakstop(
        &[
            "scan",
            "--git",
            repo_arg,
            "--report-to",
            "http://leakstop.example.com:8200",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("plain HTTP") && err.contains("https://"), "{err}");

    let (code, out, err) = leakstop(
        &["scan", "--git", repo_arg, "--format", "json", "--report-to", &srv.addr],
        &[("LEAKSTOP_TOKEN", "root")],
    );
    assert_eq!(code, 1, "findings still exit 1: {err}");
    assert!(
        err.contains("revoked 1 token") && err.contains("flagged 1 stored secret"),
        "the summary says what the service did: {err}"
    );
    for text in [&out, &err] {
        assert!(
            !text.contains(&token) && !text.contains(&stored),
            "a secret was echoed: {text}"
        );
    }

    let (status, _) = srv.call_as(&token, "GET", "auth/token/lookup-self", None).await;
    assert_eq!(status, 403, "the reported token fails its next lookup");

    let recs = records(&srv).await;
    assert_eq!(recs.len(), 2, "{recs:?}");
    let tok = recs.iter().find(|r| r["kind"] == "token").expect("a token record");
    assert_eq!(tok["action"], "revoked");
    assert_eq!(tok["reporter"], "report");
    assert_eq!(tok["source"]["path"], "deploy/prod.env");
    assert_eq!(tok["source"]["commit"], commit.as_str());
    assert_eq!(tok["source"]["line"], 1);
    let kv = recs.iter().find(|r| r["kind"] == "kv").expect("a kv record");
    assert_eq!(
        (kv["action"].as_str(), kv["path"].as_str()),
        (Some("flagged"), Some("secret/data/app/ci"))
    );
    assert_eq!(kv["version"], 1);
    assert_eq!(kv["source"]["line"], 2);
    let meta = srv.ok("GET", "secret/metadata/app/ci", None).await;
    assert_eq!(meta["data"]["leaked"][0]["version"], 1, "{meta}");

    // A brokered GitHub token, reported from a saved JSON report: its lease is revoked and GitHub deletes it.
    let gh = GithubStandIn::start().await;
    srv.ok("POST", "sys/mounts/github", Some(json!({"type": "github"})))
        .await;
    srv.ok(
        "POST",
        "github/config",
        Some(json!({"app_id": APP_ID, "private_key": gh.app_private_key, "base_url": gh.url})),
    )
    .await;
    srv.ok(
        "POST",
        "github/role/deploy",
        Some(json!({"owner": OWNER, "repositories": ["app"], "permissions": {"contents": "read"}, "ttl": "10m"})),
    )
    .await;
    let minted = srv.ok("POST", "github/token/deploy", None).await;
    let ghs = minted["data"]["token"].as_str().unwrap().to_string();
    let saved = dir.path().join("history.json");
    let redacted = json!([{"path": "ci.log", "line": 7, "secret": "ghs_***", "redacted": true}]);
    std::fs::write(&saved, redacted.to_string()).unwrap();
    let (code, _, err) = leakstop(&["report", saved.to_str().unwrap(), "--to", &srv.addr], &[]);
    assert_eq!(code, 2, "a redacted report cannot be sent: {err}");
    assert!(err.contains("--show-secrets"), "{err}");
    let full = json!([{"path": "ci.log", "line": 7, "secret": ghs, "redacted": false}]);
    std::fs::write(&saved, full.to_string()).unwrap();
    let (code, _, err) = leakstop(
        &["report", saved.to_str().unwrap(), "--to", &srv.addr],
        &[("LEAKSTOP_TOKEN", "root")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("revoked 1 leased credential"), "{err}");
    assert!(
        gh.wait_revoked(&ghs, Duration::from_secs(5)).await,
        "the GitHub stand-in deleted the token"
    );
    let recs = records(&srv).await;
    let lease = recs.iter().find(|r| r["kind"] == "lease").expect("a lease record");
    assert_eq!(
        (lease["action"].as_str(), lease["path"].as_str()),
        (Some("revoked"), Some("github/token/deploy"))
    );
    assert_eq!(lease["source"]["path"], "ci.log");

    // Nothing in clear: not in the records, not in the server log, not in the audit file.
    let listed = serde_json::to_string(&recs).unwrap();
    let log = srv.log_text();
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert!(audit_text.contains("sys/leaks/report"), "reports are audited");
    for (what, text) in [
        ("sys/leaks", &listed),
        ("server log", &log),
        ("audit file", &audit_text),
    ] {
        for secret in [&token, &stored, &ghs] {
            assert!(
                !text.contains(secret.as_str()),
                "a reported secret is in clear in the {what}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_answer_alike_are_idempotent_refuse_bad_bodies_and_are_rate_limited_per_address() {
    let dir = leakstop_tests::tempdir();
    let srv = Server::dev(dir.path()).await;
    let http = reqwest::Client::new();

    let created = srv.ok("POST", "auth/token/create", Some(json!({"ttl": "1h"}))).await;
    let token = created["auth"]["client_token"].as_str().unwrap().to_string();
    // Well-formed, valid checksum, never issued: minted by the token code the service uses, on a token nobody
    // stored.
    let other = srv.ok("POST", "auth/token/create", Some(json!({"ttl": "1h"}))).await;
    let unknown = other["auth"]["client_token"].as_str().unwrap().to_string();
    srv.ok("POST", "auth/token/revoke", Some(json!({"token": unknown})))
        .await;

    let (s_unknown, _, b_unknown) = report_as(&http, &srv, json!({"secrets": [unknown]})).await;
    let (s_known, _, b_known) = report_as(&http, &srv, json!({"secrets": [token]})).await;
    let shape = |b: &Value| {
        let d = b["data"].as_object().unwrap();
        let mut keys: Vec<&String> = d.keys().collect();
        keys.sort();
        (
            keys.into_iter().cloned().collect::<Vec<_>>(),
            d["received"].clone(),
            d["receipts"].as_array().unwrap().len(),
            d["receipts"][0].as_str().unwrap().len(),
        )
    };
    assert_eq!(
        (s_unknown, shape(&b_unknown)),
        (s_known, shape(&b_known)),
        "{b_unknown} vs {b_known}"
    );
    assert_eq!(s_known, 200);
    let (status, _) = srv.call_as(&token, "GET", "auth/token/lookup-self", None).await;
    assert_eq!(status, 403);

    // Idempotent: the same answer again, one record.
    let (s_again, _, b_again) = report_as(&http, &srv, json!({"secrets": [token]})).await;
    assert_eq!((s_again, &b_again["data"]), (200, &b_known["data"]));
    assert_eq!(records(&srv).await.len(), 1);

    // Malformed bodies: 400 naming the problem, never quoting the secret.
    for (body, says) in [
        (json!({}), "`secrets` is required"),
        (json!({"secrets": token}), "must be a list"),
        (json!({"secrets": []}), "is empty"),
        (json!({"secrets": [token, 42]}), "secrets[1]"),
        (json!({"secrets": [token], "repo": "x"}), "unknown field `repo`"),
        (
            json!({"secrets": [token], "source": {"line": "three"}}),
            "field `source`",
        ),
    ] {
        let (status, _, b) = report_as(&http, &srv, body.clone()).await;
        let msg = b.to_string();
        assert_eq!(status, 400, "{body}: {msg}");
        assert!(msg.contains(says), "{body}: {msg}");
        assert!(!msg.contains(&token), "{body}: the error quotes the secret");
    }
    let many: Vec<String> = (0..1001).map(|i| format!("candidate-{i}")).collect();
    let (status, _, b) = report_as(&http, &srv, json!({"secrets": many})).await;
    assert_eq!(status, 400, "{b}");
    assert!(b.to_string().contains("at most 1000"), "{b}");
    let resp = http
        .post(format!("{}/v1/sys/leaks/report", srv.addr))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // GitHub's partner endpoint takes its JSON array as sent, and nothing unsigned.
    let resp = http
        .post(format!("{}/v1/sys/leaks/github", srv.addr))
        .json(&json!([{"token": token, "type": "leakstop_token", "url": "https://x", "source": "content"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401, "{}", resp.text().await.unwrap());

    // Reading the records needs a token with access; configuring them needs sudo.
    let (status, _) = srv.call_as("", "LIST", "sys/leaks", None).await;
    assert_eq!(status, 403);
    let (status, _) = srv.call_as(&unknown, "LIST", "sys/leaks", None).await;
    assert_eq!(status, 403);

    // A burst beyond the limit: 429 with Retry-After for this address, while another address is served.
    srv.ok(
        "POST",
        "sys/leaks/config",
        Some(json!({"rate_burst": 20, "rate_per_second": 1})),
    )
    .await;
    let cfg = srv.ok("GET", "sys/leaks/config", None).await;
    assert_eq!(cfg["data"]["rate_burst"], 20);
    let mut limited = None;
    for i in 0..40 {
        let (status, retry, _) = report_as(&http, &srv, json!({"secrets": [format!("burst-{i}")]})).await;
        if status == 429 {
            limited = Some((i, retry));
            break;
        }
        assert_eq!(status, 200);
    }
    let (at, retry) = limited.expect("the burst was limited");
    assert!(at >= 15, "limited after {at} requests, before the burst of 20 was used");
    assert!(
        retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)),
        "Retry-After in seconds"
    );
    let elsewhere = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let (status, _, _) = report_as(&elsewhere, &srv, json!({"secrets": ["from-another-address"]})).await;
    assert_eq!(status, 200, "another client address is still served");
}

/// GitHub's own documented sample (key identifier, P-256 public key, payload and signature, from the partner
/// program's "implement signature verification" section): the HTTP edge must hand the core the body byte for
/// byte, and the check must accept GitHub's DER encoding, or every real GitHub report would be refused.
const GITHUB_SAMPLE_KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";
const GITHUB_SAMPLE_KEY: &str = "-----BEGIN PUBLIC KEY-----\n\
    MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\n\
    kCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n\
    -----END PUBLIC KEY-----\n";
const GITHUB_SAMPLE_PAYLOAD: &str = r#"[{"token":"some_token","type":"some_type","url":"some_url"}]"#;
const GITHUB_SAMPLE_SIGNATURE: &str =
    "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_published_sample_report_verifies_and_a_changed_byte_does_not() {
    // GitHub's key endpoint, serving the published key as `GET /meta/public_keys/secret_scanning` answers it.
    let app = axum::Router::new().route(
        "/meta/public_keys/secret_scanning",
        axum::routing::get(|| async {
            axum::Json(json!({"public_keys": [
                {"key_identifier": GITHUB_SAMPLE_KEY_ID, "key": GITHUB_SAMPLE_KEY, "is_current": true}
            ]}))
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let keys_url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let dir = leakstop_tests::tempdir();
    let srv = Server::dev(dir.path()).await;
    srv.ok("POST", "sys/leaks/config", Some(json!({"github_api_url": keys_url})))
        .await;
    let http = reqwest::Client::new();
    let send = |body: &'static str| {
        http.post(format!("{}/v1/sys/leaks/github", srv.addr))
            .header("Content-Type", "application/json")
            .header("GITHUB-PUBLIC-KEY-IDENTIFIER", GITHUB_SAMPLE_KEY_ID)
            .header("GITHUB-PUBLIC-KEY-SIGNATURE", GITHUB_SAMPLE_SIGNATURE)
            .body(body)
            .send()
    };

    let resp = send(GITHUB_SAMPLE_PAYLOAD).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let feedback: Value = resp.json().await.unwrap();
    assert_eq!(
        feedback,
        json!([{
            // sha256("some_token"), the hash GitHub expects back instead of the token.
            "token_hash": "9a45520a1213f15016d2d768b5fb3d904492a44ee274b44d4de8803e00fb536a",
            "token_type": "some_type",
            "label": "false_positive",
        }]),
        "GitHub's sample token is not one of ours"
    );

    // The same JSON re-serialised with one space: the signature no longer covers it.
    let spaced = r#"[{"token": "some_token","type":"some_type","url":"some_url"}]"#;
    let resp = send(spaced).await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let err = resp.text().await.unwrap();
    assert!(err.contains("does not verify"), "{err}");
    assert!(!err.contains("some_token"), "the refusal quotes the token: {err}");
}
