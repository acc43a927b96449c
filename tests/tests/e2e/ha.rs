//! Two `leakstop server` processes over one real PostgreSQL with `ha_enabled`: one active, one standby that
//! forwards (or redirects) and reports its role; failover when the active process is SIGKILLed under a write load;
//! recovery from a PostgreSQL restart; and fencing when the leader lock is taken away behind the active node's back.
//!
//! Each test runs a write load (one request at a time, through the node named) and then reads back every write a
//! node acknowledged with a 200: an acknowledged write must never be lost, whatever happened in between.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use leakstop_tests::postgres::Postgres;
use leakstop_tests::server::{Server, config_args, free_port, write_config};
use serde_json::{Value, json};

/// Failover after the active process dies must be quicker than this (kill → first successful write).
const FAILOVER_LIMIT: Duration = Duration::from_secs(3);

/// Start one node (Shamir seal) on a fresh port, sharing `pg`.
async fn start_node(dir: &std::path::Path, pg: &Postgres) -> Server {
    let port = free_port();
    let cfg = write_config(
        dir,
        port,
        &format!(
            "api_addr = \"http://127.0.0.1:{port}\"\naudit_file_dir = \"{}\"\n[storage]\ntype = \"postgresql\"\nconnection_url = \"{}\"\nha_enabled = true\n[seal]\ntype = \"shamir\"\n",
            dir.display(),
            pg.superuser_url()
        ),
    );
    Server::start(dir, &config_args(&cfg), port, "").await
}

async fn wait_for(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out after {within:?} waiting until {what}");
}

async fn leader(s: &Server) -> Value {
    s.call("GET", "sys/leader", None).await.1
}

async fn health(s: &Server) -> u16 {
    s.call("GET", "sys/health", None).await.0
}

/// Two nodes: `a` initialised, unsealed and active with `secret/` (KV v2); `b` unsealed and standing by for `a`.
/// Also returns the unseal key. `sys/init` is sent to `b` while `a` holds the lock of the new cluster: `b` passes
/// it on to `a`.
async fn cluster(dir: &std::path::Path, pg: &Postgres) -> (Server, Server, String) {
    let mut a = start_node(dir, pg).await;
    let mut b = start_node(dir, pg).await;
    let init = b
        .ok(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .await;
    let key = init["keys"][0].as_str().expect("an unseal key").to_string();
    let root = init["root_token"].as_str().expect("a root token").to_string();
    a.ok("PUT", "sys/unseal", Some(json!({ "key": key }))).await;
    a.token = root.clone();
    wait_for("a is active", Duration::from_secs(10), async || {
        leader(&a).await["is_self"] == true
    })
    .await;
    a.ok(
        "POST",
        "sys/mounts/secret",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    b.ok("PUT", "sys/unseal", Some(json!({ "key": key }))).await;
    b.token = root;
    wait_for("b knows that a leads", Duration::from_secs(10), async || {
        leader(&b).await["leader_address"] == a.addr.as_str()
    })
    .await;
    (a, b, key)
}

/// One write of the load: which key, when it was sent and answered, and the status (0: no HTTP answer).
#[derive(Debug, Clone)]
struct Write {
    i: usize,
    sent: Instant,
    done: Instant,
    status: u16,
}

/// A write load through `targets` in turn (one request at a time, a short pause between), each writing
/// `secret/data/{prefix}{i}` = `{"i": i}`, until `stop` is set.
fn load(
    targets: Vec<String>,
    token: String,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Write>> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut done = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let addr = &targets[i % targets.len()];
            let sent = Instant::now();
            let status = match http
                .post(format!("{addr}/v1/secret/data/{prefix}{i}"))
                .header("x-vault-token", &token)
                .json(&json!({"data": {"i": i}}))
                .send()
                .await
            {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            done.push(Write {
                i,
                sent,
                done: Instant::now(),
                status,
            });
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done
    })
}

/// Every acknowledged write of `writes` reads back with its value through `s`; returns how many there were.
async fn assert_acknowledged_writes_readable(s: &Server, prefix: &str, writes: &[Write]) -> usize {
    let acked: Vec<usize> = writes.iter().filter(|w| w.status == 200).map(|w| w.i).collect();
    for i in &acked {
        let (status, got) = s.call("GET", &format!("secret/data/{prefix}{i}"), None).await;
        assert_eq!(
            (status, got["data"]["data"]["i"].clone()),
            (200, json!(i)),
            "acknowledged write {prefix}{i} is lost"
        );
    }
    acked.len()
}

/// The first write sent at or after `t` that succeeded.
fn first_success_after(writes: &[Write], t: Instant) -> Option<&Write> {
    writes.iter().find(|w| w.sent >= t && w.status == 200)
}

/// `(node_id, epoch, pid)` of the lock row, if there is one.
async fn lock_row(admin: &tokio_postgres::Client) -> Option<(String, i64, i32)> {
    admin
        .query_opt("SELECT node_id, epoch, pid FROM leakstop_ha WHERE id = 1", &[])
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `remote_address` of each audit line (request and response) about `path`.
fn audited_addresses(log: &std::path::Path, path: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["request"]["path"] == path)
        .map(|v| v["request"]["remote_address"].as_str().unwrap_or("none").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_forward_audit_the_client_redirect_and_fail_over_within_three_seconds_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    let (mut a, b, key) = cluster(dir.path(), &pg).await;
    let root = b.token.clone();

    let lb = leader(&b).await;
    assert_eq!(
        (lb["ha_enabled"].clone(), lb["is_self"].clone()),
        (json!(true), json!(false)),
        "{lb}"
    );
    let la = leader(&a).await;
    assert_eq!(
        (la["is_self"].clone(), la["leader_address"].clone()),
        (json!(true), json!(a.addr)),
        "{la}"
    );
    assert_eq!(health(&b).await, 429, "a standby answers 429");
    assert_eq!(health(&a).await, 200, "the active node answers 200");
    assert_eq!(b.call("GET", "sys/health?standbyok=true", None).await.0, 200);

    // A write through the standby lands on the active node, and a read through the standby is forwarded too.
    let (status, body) = b
        .call("POST", "secret/data/via-b", Some(json!({"data": {"v": "b"}})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, got) = a.call("GET", "secret/data/via-b", None).await;
    assert_eq!(got["data"]["data"]["v"], "b");
    let (_, got) = b.call("GET", "secret/data/via-b", None).await;
    assert_eq!(got["data"]["data"]["v"], "b");
    // With the no-forwarding header: a redirect to the same path and query on the active node.
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/v1/secret/data/via-b?version=1", b.addr))
        .header("x-vault-token", &root)
        .header("x-vault-no-request-forwarding", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 307);
    assert_eq!(
        redirect.headers()["location"].to_str().unwrap(),
        format!("{}/v1/secret/data/via-b?version=1", a.addr)
    );

    // Forwarded requests are audited with the client's address, which only a node of the cluster can vouch for:
    // a client on 127.0.0.2 sends a forged statement through the standby and straight to the active node.
    let audit = dir.path().join("audit.log");
    a.enable_file_audit("file", &audit).await;
    let far = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let forged = format!("10.9.8.7 {} {}", now_unix(), "00".repeat(32));
    // (A standby refuses a request marked as forwarded already, so only the one to the active node says so.)
    for (to, path, marked) in [(&b, "far-via-b", false), (&a, "far-direct", true)] {
        let mut r = far
            .post(format!("{}/v1/secret/data/{path}", to.addr))
            .header("x-vault-token", &root)
            .header("x-leakstop-forwarded-for", &forged)
            .json(&json!({"data": {"v": 1}}));
        if marked {
            r = r.header("x-leakstop-forwarded", "1");
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    assert_eq!(
        audited_addresses(&audit, "secret/data/far-via-b"),
        ["127.0.0.2", "127.0.0.2"],
        "request and response lines of the forwarded write carry the client's address"
    );
    assert_eq!(
        audited_addresses(&audit, "secret/data/far-direct"),
        ["127.0.0.2", "127.0.0.2"],
        "a forged statement is ignored"
    );

    // A write load through b (forwarded to a); SIGKILL a under it and time how long until writes succeed again.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(vec![b.addr.clone()], root.clone(), "k", stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    wait_for("b is active after the kill", Duration::from_secs(10), async || {
        b.call("GET", "sys/leader", None).await.1["is_self"] == true
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await.unwrap();
    let before = writes.iter().filter(|w| w.done < killed_at && w.status == 200).count();
    assert!(
        before >= 5,
        "the load was running before the kill: {before} writes acknowledged"
    );
    let first = first_success_after(&writes, killed_at).expect("no write succeeded after the kill");
    let took = first.done - killed_at;
    eprintln!("failover: kill -> first successful write through the survivor in {took:?}");
    assert!(took < FAILOVER_LIMIT, "failover took {took:?}");
    assert_eq!(leader(&b).await["is_self"], true);
    assert_eq!(health(&b).await, 200);
    let n = assert_acknowledged_writes_readable(&b, "k", &writes).await;
    assert!(n > before, "writes were acknowledged after the failover");

    // The killed node, started again, comes back as a standby of b and forwards to it.
    let mut a2 = start_node(dir.path(), &pg).await;
    a2.ok("PUT", "sys/unseal", Some(json!({ "key": key }))).await;
    a2.token = root;
    wait_for(
        "the restarted node stands by for b",
        Duration::from_secs(10),
        async || leader(&a2).await["leader_address"] == b.addr.as_str(),
    )
    .await;
    assert_eq!(leader(&a2).await["is_self"], false);
    assert_eq!(health(&a2).await, 429);
    let (_, got) = a2.call("GET", "secret/data/via-b", None).await;
    assert_eq!(
        got["data"]["data"]["v"], "b",
        "a read through the new standby is forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_under_write_load_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    let (a, b, _key) = cluster(dir.path(), &pg).await;
    let (_, epoch_before, _) = lock_row(&pg.admin().await).await.expect("a lock row");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(vec![a.addr.clone(), b.addr.clone()], a.token.clone(), "r", stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // `pg_ctl stop -m fast` then start: every session ends, the advisory lock with them.
    tokio::task::block_in_place(|| pg.restart());
    let back = Instant::now();
    // No operator action: the nodes reconnect, one takes the lock again and writes go through.
    wait_for(
        "a node is active again after the restart",
        Duration::from_secs(15),
        async || leader(&a).await["is_self"] == true || leader(&b).await["is_self"] == true,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await.unwrap();
    let first = first_success_after(&writes, back).expect("no write succeeded after PostgreSQL came back");
    eprintln!(
        "PostgreSQL restart: first successful write {:?} after it accepted connections again",
        first.done - back
    );
    // Both nodes serve again: the last writes (one through each node) succeeded.
    let last: Vec<u16> = writes.iter().rev().take(2).map(|w| w.status).collect();
    assert_eq!(last, [200, 200], "the last writes through both nodes");
    let (la, lb) = (leader(&a).await, leader(&b).await);
    assert!(
        la["is_self"] != lb["is_self"] && la["leader_address"] == lb["leader_address"],
        "exactly one active node, both agree which: {la} {lb}"
    );
    let (_, epoch_after, _) = lock_row(&pg.admin().await).await.expect("a lock row");
    assert!(epoch_after > epoch_before, "the lock was taken again after the restart");
    let failed = writes.iter().filter(|w| w.status != 200).count();
    eprintln!(
        "PostgreSQL restart: {failed} of {} writes refused while it was down",
        writes.len()
    );
    let active = if la["is_self"] == true { &a } else { &b };
    assert_acknowledged_writes_readable(active, "r", &writes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_taken_away_behind_the_active_nodes_back_fences_it_and_a_node_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    let (a, b, _key) = cluster(dir.path(), &pg).await;
    let admin = pg.admin().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(vec![a.addr.clone(), b.addr.clone()], a.token.clone(), "f", stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. Its lock session is terminated (as by an operator or a connection-killing proxy): the advisory lock is
    //    free, and a node takes over with a new epoch; writes go on.
    let (holder, epoch1, pid) = lock_row(&admin).await.expect("a lock row");
    let key: i64 = {
        let r = admin
            .query_one(
                "SELECT classid::bigint, objid::bigint FROM pg_locks \
                 WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid = $1",
                &[&pid],
            )
            .await
            .unwrap();
        let (hi, lo): (i64, i64) = (r.get(0), r.get(1));
        ((hi as u64) << 32 | lo as u64) as i64
    };
    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    let cut = Instant::now();
    wait_for("a new epoch", Duration::from_secs(5), async || {
        lock_row(&admin).await.is_some_and(|(_, e, _)| e > epoch1)
    })
    .await;
    let (_, epoch2, _) = lock_row(&admin).await.unwrap();
    wait_for("writes go through again", FAILOVER_LIMIT, async || {
        a.call("POST", "secret/data/probe", Some(json!({"data": {"v": 1}})))
            .await
            .0
            == 200
    })
    .await;
    eprintln!(
        "lock session terminated: a node holds epoch {epoch2} after {:?}",
        cut.elapsed()
    );

    // 2. The lock row is deleted while the advisory lock is held by someone else (the test's session, queued
    //    behind the holder): the active node's writes are fenced at once, it steps down and lets the lock go, and
    //    no node writes anything while the lock is elsewhere: no split brain.
    let (holder2, _, _) = lock_row(&admin).await.unwrap();
    let taker = pg.admin().await;
    let take = tokio::spawn(async move {
        taker.execute("SELECT pg_advisory_lock($1)", &[&key]).await.unwrap();
        taker
    });
    // The taker's request must be queued before the row goes.
    wait_for("the taker waits for the lock", Duration::from_secs(5), async || {
        admin
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;
    admin.execute("DELETE FROM leakstop_ha", &[]).await.unwrap();
    let deleted = Instant::now();
    let taker = tokio::time::timeout(Duration::from_secs(3), take)
        .await
        .expect("the fenced active node did not give the lock up within 3 s")
        .unwrap();
    let fenced_within = deleted.elapsed();
    for s in [&a, &b] {
        let l = leader(s).await;
        assert_eq!(
            l["is_self"], false,
            "no node is active while the lock is elsewhere: {l}"
        );
        assert_eq!(health(s).await, 429);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let held_until = Instant::now();
    drop(taker);
    // 3. The lock is free again: a node becomes active with a newer epoch and writes resume.
    wait_for(
        "a node takes over after the lock came back",
        Duration::from_secs(5),
        async || lock_row(&admin).await.is_some_and(|(_, e, _)| e > epoch2),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await.unwrap();
    eprintln!(
        "row deleted: lock given up after {fenced_within:?}; holders {holder} then {holder2}; {} writes",
        writes.len()
    );

    let during: Vec<&Write> = writes
        .iter()
        .filter(|w| w.sent >= deleted && w.done <= held_until)
        .collect();
    assert!(during.len() >= 5, "the load ran while the lock was away: {during:?}");
    let landed: Vec<&&Write> = during.iter().filter(|w| w.status == 200).collect();
    assert!(
        landed.is_empty(),
        "writes acknowledged while no node held the lock: {landed:?}"
    );
    for w in &during {
        let s = if leader(&a).await["is_self"] == true { &a } else { &b };
        let (status, _) = s.call("GET", &format!("secret/data/f{}", w.i), None).await;
        assert_eq!(status, 404, "a refused write f{} landed anyway", w.i);
    }
    assert!(
        first_success_after(&writes, held_until).is_some(),
        "writes succeeded again once the lock was free"
    );
    let (la, lb) = (leader(&a).await, leader(&b).await);
    assert!(la["is_self"] != lb["is_self"], "exactly one active node: {la} {lb}");
    assert_acknowledged_writes_readable(&a, "f", &writes).await;
}

/// A CA and a certificate for 127.0.0.1 signed by it (`ca.pem`, `cert.pem`, `key.pem` in `dir`), made by openssl.
fn loopback_ca_and_cert(dir: &std::path::Path) {
    let script = "set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj '/CN=ha test CA' \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=127.0.0.1' -keyout key.pem \
  -out node.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=critical,CA:FALSE\\n' > node.ext
openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile node.ext \
  -out cert.pem 2>/dev/null";
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("run openssl through sh");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A node listening with TLS (api_addr `https://127.0.0.1:port`), optionally trusting `ca` for forwarding;
/// killed on drop.
struct TlsNode {
    child: std::process::Child,
    addr: String,
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_tls_node(dir: &std::path::Path, pg: &Postgres, forward_ca: bool, client: &reqwest::Client) -> TlsNode {
    let port = free_port();
    let ha = if forward_ca {
        format!("[ha]\nforward_ca_file = \"{}\"\n", dir.join("ca.pem").display())
    } else {
        String::new()
    };
    let cfg = dir.join(format!("tls-{port}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "listen_address = \"127.0.0.1:{port}\"\napi_addr = \"https://127.0.0.1:{port}\"\ntls_cert_file = \"{}\"\n\
             tls_key_file = \"{}\"\n[storage]\ntype = \"postgresql\"\nconnection_url = \"{}\"\nha_enabled = true\n\
             [seal]\ntype = \"shamir\"\n{ha}",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display(),
            pg.superuser_url()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("tls-{port}.log"))).unwrap();
    let child = leakstop_tests::cmd::leakstop(["server", "--config"])
        .arg(&cfg)
        .command()
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let node = TlsNode {
        child,
        addr: format!("https://127.0.0.1:{port}"),
    };
    let url = format!("{}/v1/sys/seal-status", node.addr);
    wait_for("the TLS node answers", Duration::from_secs(20), async || {
        client.get(&url).send().await.is_ok()
    })
    .await;
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_forwards_to_an_https_api_addr_trusting_the_configured_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    loopback_ca_and_cert(dir.path());
    let pg = Postgres::start();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.pem")).unwrap()).unwrap();
    let http = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let call = async |node: &TlsNode, method: reqwest::Method, path: &str, token: &str, body: Value| {
        let r = http
            .request(method, format!("{}/v1/{path}", node.addr))
            .header("x-vault-token", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let put = reqwest::Method::PUT;
    let a = start_tls_node(dir.path(), &pg, true, &http).await;
    let (_, init) = call(
        &a,
        put.clone(),
        "sys/init",
        "",
        json!({"secret_shares": 1, "secret_threshold": 1}),
    )
    .await;
    let key = init["keys"][0].as_str().expect("an unseal key").to_string();
    let root = init["root_token"].as_str().unwrap().to_string();
    call(&a, put.clone(), "sys/unseal", "", json!({ "key": key })).await;
    wait_for("a is active", Duration::from_secs(10), async || {
        call(&a, reqwest::Method::GET, "sys/leader", "", Value::Null).await.1["is_self"] == true
    })
    .await;
    let (status, _) = call(
        &a,
        reqwest::Method::POST,
        "sys/mounts/secret",
        &root,
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .await;
    assert_eq!(status, 204);

    // Without the CA, a standby cannot verify the active node's certificate: it refuses to forward.
    // With it, the write goes through.
    for (with_ca, want) in [(false, 503), (true, 200)] {
        let s = start_tls_node(dir.path(), &pg, with_ca, &http).await;
        call(&s, put.clone(), "sys/unseal", "", json!({ "key": key })).await;
        wait_for(
            "the standby knows the active node",
            Duration::from_secs(10),
            async || {
                call(&s, reqwest::Method::GET, "sys/leader", "", Value::Null).await.1["leader_address"]
                    == a.addr.as_str()
            },
        )
        .await;
        let (status, body) = call(
            &s,
            reqwest::Method::POST,
            "secret/data/over-tls",
            &root,
            json!({"data": {"ca": with_ca}}),
        )
        .await;
        assert_eq!(status, want, "forward_ca_file set: {with_ca}: {body}");
    }
    let (_, got) = call(&a, reqwest::Method::GET, "secret/data/over-tls", &root, Value::Null).await;
    assert_eq!(got["data"]["data"]["ca"], true);
}
