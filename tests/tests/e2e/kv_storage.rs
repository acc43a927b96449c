//! KV v2 on durable storage, end to end: a server with SQLite storage and a Shamir seal, started by the test,
//! keeps secrets across a restart, and its storage files hold neither a secret value nor a token in clear.

use std::path::Path;

use leakstop_tests::server::{Server, config_args, free_port, sqlite_shamir, write_config};
use leakstop_tests::tempdir;
use serde_json::{Value, json};

/// A server on durable SQLite storage in `dir`, sealed with Shamir.
async fn start(dir: &Path, port: u16) -> Server {
    let cfg = write_config(dir, port, &sqlite_shamir(&dir.join("leakstop.db")));
    Server::start(dir, &config_args(&cfg), port, "").await
}

async fn unseal(srv: &Server, key: &str) {
    let (status, body) = srv.call("PUT", "sys/unseal", Some(json!({"key": key}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sealed"], false, "one share of a 1-of-1 split unseals: {body}");
}

/// Every byte the storage backend wrote: the database and SQLite's companion files.
fn storage_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("leakstop.db") {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    assert!(!all.is_empty(), "no storage file was written in {}", dir.display());
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A fresh server on SQLite storage, initialized (one key share), unsealed, with KV v2 at `secret/`; returns it
/// (holding the root token) and its unseal key.
async fn initialized(dir: &Path, port: u16) -> (Server, String) {
    let mut srv = start(dir, port).await;
    let (status, init) = srv
        .call(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .await;
    assert_eq!(status, 200, "{init}");
    let key = init["keys_base64"][0]
        .as_str()
        .or(init["keys"][0].as_str())
        .expect("an unseal key")
        .to_string();
    unseal(&srv, &key).await;
    srv.token = init["root_token"].as_str().expect("a root token").to_string();
    // `secret/` may or may not be mounted outside dev mode; mount it if it is not.
    let mounts = srv.ok("GET", "sys/mounts", None).await;
    let listed = if mounts["data"].is_object() {
        &mounts["data"]
    } else {
        &mounts
    };
    if listed.get("secret/").is_none() {
        srv.ok(
            "POST",
            "sys/mounts/secret",
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
    }
    (srv, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_survive_a_restart_and_never_reach_storage_in_clear() {
    let dir = tempdir();
    let port = free_port();
    let (srv, key) = initialized(dir.path(), port).await;
    let root = srv.token.clone();

    let value = format!("storage-probe-{:032x}", rand::random::<u128>());
    srv.ok("POST", "secret/data/app/db", Some(json!({"data": {"password": value}})))
        .await;
    srv.ok(
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"password": format!("{value}-v2")}})),
    )
    .await;
    let created = srv
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["default"], "ttl": "1h"})),
        )
        .await;
    let token = created["auth"]["client_token"].as_str().unwrap().to_string();
    drop(srv);

    let bytes = storage_bytes(dir.path());
    assert!(
        !contains(&bytes, &value),
        "a secret value is in the storage files in clear"
    );
    assert!(!contains(&bytes, &token), "a token is in the storage files in clear");
    assert!(
        !contains(&bytes, &root),
        "the root token is in the storage files in clear"
    );
    assert!(
        !contains(&bytes, "storage-probe"),
        "part of a secret value is in the storage files in clear"
    );

    let mut srv = start(dir.path(), port).await;
    let (status, _) = srv.call_as(&root, "GET", "secret/data/app/db", None).await;
    assert_eq!(status, 503, "a restarted Shamir-sealed server is sealed until unsealed");
    unseal(&srv, &key).await;
    srv.token = root;
    let got: Value = srv.ok("GET", "secret/data/app/db?version=1", None).await;
    assert_eq!(
        got["data"]["data"]["password"],
        value.as_str(),
        "version 1 survived the restart"
    );
    let got: Value = srv.ok("GET", "secret/data/app/db", None).await;
    assert_eq!(got["data"]["metadata"]["version"], 2);
    let (status, _) = srv.call_as(&token, "GET", "auth/token/lookup-self", None).await;
    assert_eq!(status, 200, "tokens survive the restart too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_to_one_secret_get_distinct_versions() {
    let dir = tempdir();
    let srv = std::sync::Arc::new(Server::dev(dir.path()).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let srv = srv.clone();
        tasks.push(tokio::spawn(async move {
            let w = srv.ok("POST", "secret/data/hot", Some(json!({"data": {"i": i}}))).await;
            w["data"]["version"].as_u64().expect("a version number")
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=20).collect::<Vec<u64>>(), "no write was lost to another");
    let meta = srv.ok("GET", "secret/metadata/hot", None).await;
    assert_eq!(meta["data"]["current_version"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_secret_path_is_refused_without_naming_storage() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    for method in ["GET", "POST"] {
        let (status, body) = srv
            .call(method, "secret/data/x%00", Some(json!({"data": {"a": "b"}})))
            .await;
        assert_eq!(status, 400, "{method}: {body}");
        let text = body.to_string();
        assert!(
            !text.contains("logical/") && !text.contains("meta/"),
            "{method}: the answer names storage: {text}"
        );
    }
}

/// Many versions of a large value: each write costs its own version, so the server's peak memory grows with
/// what is stored, not with the history times the size (the whole history was one record, read and rewritten by
/// every write). SQLite storage, so the stored versions are on disk rather than in the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_versions_keep_the_server_memory_bounded() {
    let dir = tempdir();
    let (srv, _) = initialized(dir.path(), free_port()).await;
    srv.ok("POST", "secret/metadata/big", Some(json!({"max_versions": 100})))
        .await;
    let value = "v".repeat(900 * 1024);
    let mut peak_after_10 = 0;
    for i in 0..30 {
        srv.ok(
            "POST",
            "secret/data/big",
            Some(json!({"data": {"blob": format!("{i:04}{value}")}})),
        )
        .await;
        if i == 9 {
            peak_after_10 = leakstop_tests::peak_rss_kib(srv.child.id());
        }
    }
    let grown_mib = (leakstop_tests::peak_rss_kib(srv.child.id()) - peak_after_10) / 1024;
    // 20 more versions are 18 MiB (kept encrypted in the barrier's read cache); a write that loaded the
    // history would hold several copies of the 27 MiB it reached.
    assert!(
        grown_mib < 50,
        "peak memory grew by {grown_mib} MiB over writes 11 to 30"
    );
    eprintln!("peak memory grew by {grown_mib} MiB over writes 11 to 30");
    let first = srv.ok("GET", "secret/data/big?version=1", None).await;
    assert!(first["data"]["data"]["blob"].as_str().unwrap().starts_with("0000"));
    let meta = srv.ok("GET", "secret/metadata/big", None).await;
    assert_eq!(meta["data"]["versions"].as_object().unwrap().len(), 30);
}
