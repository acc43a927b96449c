//! Attacks on a running `leakstop server --dev`, each one a defect a review reproduced against an earlier release:
//! unauthenticated paths decided by URL shape, paths the ACL and the handler read differently, limited-use tokens
//! that are not limited, revoked tokens that come back, and callers learning what they may not know.

use std::time::Duration;

use leakstop_tests::server::Server;
use leakstop_tests::tempdir;
use serde_json::{Value, json};

/// A token with `policy` (HCL) as its only policy besides `default`.
async fn token_with_policy(srv: &Server, name: &str, policy: &str, extra: Value) -> String {
    srv.ok(
        "PUT",
        &format!("sys/policies/acl/{name}"),
        Some(json!({ "policy": policy })),
    )
    .await;
    let mut body = json!({ "policies": [name] });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let v = srv.ok("POST", "auth/token/create", Some(body)).await;
    v["auth"]["client_token"].as_str().expect("client_token").to_string()
}

async fn raw_call(
    srv: &Server,
    token: Option<&str>,
    method: &str,
    url_path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let http = reqwest::Client::new();
    let mut req = http.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}/v1/{url_path}", srv.addr),
    );
    if let Some(t) = token {
        req = req.header("X-Vault-Token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_look_like_logins_are_not_open() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    srv.ok("POST", "sys/auth/jwt", Some(json!({"type": "jwt"}))).await;
    // A role named `login` is just a role: writing, reading or deleting it needs a token like any other path.
    let role = json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["x"], "token_policies": ["admin"]});
    for (method, body) in [("POST", Some(role.clone())), ("GET", None), ("DELETE", None)] {
        let (status, text) = raw_call(&srv, None, method, "auth/jwt/role/login", body).await;
        assert_eq!(status, 403, "{method} auth/jwt/role/login without a token: {text}");
    }
    let (status, _) = srv.call("GET", "auth/jwt/role/login", None).await;
    assert_eq!(status, 404, "no role was created by the unauthenticated calls");
    // A mount whose path contains `/login/` is not open either.
    srv.ok("POST", "sys/mounts/team/login/kv", Some(json!({"type": "kv-v2"})))
        .await;
    srv.ok("POST", "team/login/kv/data/app", Some(json!({"data": {"k": "v"}})))
        .await;
    let (status, text) = raw_call(&srv, None, "GET", "team/login/kv/data/app", None).await;
    assert_eq!(status, 403, "{text}");
    // The real login path stays open (it answers about the JWT, not about the missing token).
    let (status, text) = raw_call(
        &srv,
        None,
        "POST",
        "auth/jwt/login",
        Some(json!({"role": "r", "jwt": "x"})),
    )
    .await;
    assert_ne!(status, 403, "auth/jwt/login needs no token: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_token_learn_nothing_about_mounts() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let (mounted, _) = raw_call(&srv, None, "GET", "secret/data/app", None).await;
    let (unmounted, _) = raw_call(&srv, None, "GET", "nothing-here/data/app", None).await;
    assert_eq!(
        (mounted, unmounted),
        (403, 403),
        "mounted and unmounted paths answer alike"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_canonical_paths_cannot_slip_past_a_deny() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    srv.ok("POST", "secret/data/keep", Some(json!({"data": {"v": "kept"}})))
        .await;
    srv.ok(
        "PUT",
        "sys/policies/acl/admin",
        Some(json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }"})),
    )
    .await;
    let operator = token_with_policy(
        &srv,
        "operator",
        r#"
path "sys/mounts/*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }
path "sys/mounts/secret" { capabilities = ["deny"] }
path "sys/policy/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "sys/policy/admin" { capabilities = ["deny"] }
"#,
        json!({}),
    )
    .await;
    for path in ["sys/mounts//secret", "sys/mounts/./secret", "sys/mounts/x/../secret"] {
        let (status, text) = raw_call(&srv, Some(&operator), "DELETE", path, None).await;
        assert!(status == 400 || status == 403, "DELETE {path}: {status} {text}");
    }
    let (status, text) = raw_call(&srv, Some(&operator), "DELETE", "sys/mounts/secret/", None).await;
    assert_eq!(status, 403, "a trailing slash names the same mount: {text}");
    let kept = srv.ok("GET", "secret/data/keep", None).await;
    assert_eq!(
        kept["data"]["data"]["v"], "kept",
        "the denied mount and its data survive"
    );

    let evil = json!({"policy": "path \"*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"sudo\"] }"});
    for path in ["sys/policy/admin/", "sys/policy/ADMIN", "sys/policy//admin"] {
        let (status, text) = raw_call(&srv, Some(&operator), "PUT", path, Some(evil.clone())).await;
        assert!(status == 400 || status == 403, "PUT {path}: {status} {text}");
    }
    let admin = srv.ok("GET", "sys/policies/acl/admin", None).await;
    assert!(
        admin["data"]["policy"]
            .as_str()
            .unwrap_or_default()
            .contains("secret/*"),
        "the denied policy is unchanged: {admin}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_token_serves_exactly_one_of_many_concurrent_requests() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let audit = dir.path().join("audit.log");
    srv.enable_file_audit("file", &audit).await;
    srv.ok("POST", "secret/data/app", Some(json!({"data": {"v": "1"}})))
        .await;
    // As the bao CLI sends it: every value a string.
    let token = token_with_policy(
        &srv,
        "reader",
        r#"path "secret/data/*" { capabilities = ["read"] }"#,
        json!({"num_uses": "1"}),
    )
    .await;
    let lookup = srv.ok("POST", "auth/token/lookup", Some(json!({"token": token}))).await;
    assert_eq!(lookup["data"]["num_uses"], 1, "num_uses=\"1\" is honoured: {lookup}");
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (addr, token) = (srv.addr.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!("{addr}/v1/secret/data/app"))
                .header("X-Vault-Token", token)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "num_uses=1 allows one request, not {ok}");
    let (status, _) = srv.call_as(&token, "GET", "secret/data/app", None).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_limited_use_token_stays_revoked() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let token = token_with_policy(
        &srv,
        "self",
        r#"path "secret/*" { capabilities = ["read"] }"#,
        json!({"num_uses": 5}),
    )
    .await;
    let (status, text) = srv.call_as(&token, "POST", "auth/token/revoke-self", None).await;
    assert!(status == 204 || status == 200, "{status} {text}");
    for _ in 0..3 {
        let (status, body) = srv.call_as(&token, "GET", "auth/token/lookup-self", None).await;
        assert_eq!(status, 403, "revoked means revoked: {body}");
    }
    let (status, _) = srv
        .call("POST", "auth/token/lookup", Some(json!({"token": token})))
        .await;
    assert_eq!(status, 400, "the token is gone from the store too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_use_tokens_cannot_make_children_and_ttls_cannot_wrap() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let limited = token_with_policy(
        &srv,
        "maker",
        r#"path "auth/token/create" { capabilities = ["create", "update"] }"#,
        json!({"num_uses": 5}),
    )
    .await;
    let (status, body) = srv
        .call_as(
            &limited,
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["maker"]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    for ttl in [
        json!("9223372036854775807s"),
        json!(9_223_372_036_854_775_807u64),
        json!("forever"),
    ] {
        let (status, body) = srv.call("POST", "auth/token/create", Some(json!({"ttl": ttl}))).await;
        assert_eq!(status, 400, "ttl {ttl}: {body}");
    }
    for (field, value) in [
        ("num_uses", json!("many")),
        ("renewable", json!("perhaps")),
        ("num_usess", json!(1)),
    ] {
        let (status, body) = srv
            .call("POST", "auth/token/create", Some(json!({ field: value })))
            .await;
        assert_eq!(status, 400, "{field}={value} is refused, not ignored: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabling_auth_methods_needs_sudo() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let no_sudo = token_with_policy(
        &srv,
        "auth-admin",
        r#"path "sys/auth/*" { capabilities = ["create", "read", "update", "delete"] }
path "sys/auth" { capabilities = ["read"] }"#,
        json!({}),
    )
    .await;
    let (status, body) = srv
        .call_as(&no_sudo, "POST", "sys/auth/jwt", Some(json!({"type": "jwt"})))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = srv.call_as(&no_sudo, "GET", "sys/auth", None).await;
    assert_eq!(status, 200, "listing auth methods needs no sudo");
    let sudo = token_with_policy(
        &srv,
        "auth-root",
        r#"path "sys/auth/*" { capabilities = ["create", "update", "delete", "sudo"] }"#,
        json!({}),
    )
    .await;
    let (status, body) = srv
        .call_as(&sudo, "POST", "sys/auth/jwt", Some(json!({"type": "jwt"})))
        .await;
    assert!(status == 204 || status == 200, "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_no_storage_keys_and_ui_mounts_follow_the_acl() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let (status, text) = raw_call(&srv, Some("root"), "GET", "secret/data/x%00", None).await;
    assert_eq!(status, 400, "{text}");
    assert!(!text.contains("logical/"), "no storage key in the answer: {text}");

    srv.ok("POST", "sys/mounts/hidden", Some(json!({"type": "kv-v2"})))
        .await;
    let token = token_with_policy(
        &srv,
        "app",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
        json!({}),
    )
    .await;
    let (status, body) = srv.call_as(&token, "GET", "sys/internal/ui/mounts", None).await;
    assert_eq!(status, 200, "{body}");
    let secret = body["data"]["secret"].as_object().cloned().unwrap_or_default();
    assert!(secret.contains_key("secret/"), "{body}");
    assert!(
        !secret.contains_key("hidden/"),
        "a mount the token cannot use is not shown: {body}"
    );
    let (status, _) = srv.call_as(&token, "GET", "sys/internal/ui/mounts/hidden", None).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_unroutable_requests_are_audited() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let audit = dir.path().join("audit.log");
    srv.enable_file_audit("file", &audit).await;
    let (status, _) = raw_call(&srv, Some("not-a-token"), "GET", "secret/data/probe-denied", None).await;
    assert_eq!(status, 403);
    let (status, _) = raw_call(&srv, None, "GET", "nowhere/probe-unrouted", None).await;
    assert_eq!(status, 403);
    let (status, _) = raw_call(&srv, Some("root"), "GET", "nowhere/probe-missing", None).await;
    assert_eq!(status, 404);
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.contains("probe-missing") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for probe in ["probe-denied", "probe-unrouted", "probe-missing"] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(probe)).collect();
        assert_eq!(lines.len(), 2, "{probe}: a request and a response line:\n{text}");
        assert!(
            lines[1].contains("\"error\""),
            "{probe}: the response line says why: {}",
            lines[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_form_posts_without_a_token_are_refused() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    srv.ok("POST", "sys/auth/jwt", Some(json!({"type": "jwt"}))).await;
    let http = reqwest::Client::new();
    for ct in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
    ] {
        let r = http
            .post(format!("{}/v1/auth/jwt/login", srv.addr))
            .header("Content-Type", ct)
            .body(r#"{"role":"r","jwt":"x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 415, "{ct}: {}", r.text().await.unwrap_or_default());
    }
    // A JSON body (hvac, the bao CLI) and a body without a type still reach the login.
    let r = http
        .post(format!("{}/v1/auth/jwt/login", srv.addr))
        .json(&json!({"role": "r", "jwt": "x"}))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status().as_u16(), 415);
    // With a token, the content type is the client's business (the token is not something a browser attaches).
    let (status, _) = srv.call("GET", "sys/mounts", None).await;
    assert_eq!(status, 200);
}
