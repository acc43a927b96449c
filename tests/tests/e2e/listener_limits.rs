//! The listener under abuse, from a client's side: connections that never finish their headers are cut off while
//! `sys/health` keeps answering, the connection cap holds and frees its slots, and bodies sent without a valid
//! token are refused before the server reads (or keeps) them.

use std::time::{Duration, Instant};

use leakstop_tests::server::Server;
use leakstop_tests::tempdir;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn host(srv: &Server) -> String {
    srv.addr.trim_start_matches("http://").to_string()
}

/// Read a response head from `s`; its status, or `None` when the connection ends first.
async fn status_of(s: &mut (impl AsyncReadExt + Unpin)) -> Option<u16> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Whether the server closed `s` (EOF or reset) before `deadline`.
async fn closed_by(s: &mut TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 before the close is fine.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_headers_are_closed_and_health_still_answers() {
    let dir = tempdir();
    let srv = Server::configured(dir.path(), "", "[http]\nheader_timeout_ms = 1000\n").await;
    let addr = host(&srv);
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // Health is asked over new connections: the helper's pooled keep-alive connection is itself idle past the
    // 1 s header timeout here, and a client reusing it just as the server closes it would fail for that reason.
    let started = Instant::now();
    assert_eq!(health_on_a_new_connection(&addr).await, Some(200));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "health took {:?} with 300 slow connections open",
        started.elapsed()
    );
    // Every one is closed by the server once the header timeout has passed (with a margin for a loaded machine).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    for (i, s) in slow.iter_mut().enumerate() {
        assert!(
            closed_by(s, deadline).await,
            "slow connection {i} still open 6 s after a 1 s header timeout"
        );
    }
    assert_eq!(health_on_a_new_connection(&addr).await, Some(200));
}

/// `sys/health`'s status over a fresh connection (closed after the answer), `None` when none came within 5 s.
async fn health_on_a_new_connection(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /v1/sys/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    tokio::time::timeout(Duration::from_secs(5), status_of(&mut s))
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_requests_wait_and_are_served_once_the_flood_is_gone() {
    let dir = tempdir();
    let srv = Server::configured(
        dir.path(),
        "",
        "[http]\nmax_connections = 16\nheader_timeout_ms = 60000\n",
    )
    .await;
    let addr = host(&srv);
    // Idle connections that take every slot (the test's own kept-alive client holds one too).
    let mut flood = Vec::new();
    for _ in 0..16 {
        flood.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = format!("GET /v1/sys/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut during = TcpStream::connect(&addr).await.unwrap();
    during.write_all(request.as_bytes()).await.unwrap();
    let early = tokio::time::timeout(Duration::from_secs(1), status_of(&mut during)).await;
    assert!(
        early.is_err(),
        "a request past the cap of 16 connections was served at once: the cap is not enforced"
    );

    drop(flood);
    let served = tokio::time::timeout(Duration::from_secs(5), status_of(&mut during)).await;
    assert_eq!(
        served.ok().flatten(),
        Some(200),
        "the waiting request is served once the flood is gone"
    );
    let started = Instant::now();
    let mut after = TcpStream::connect(&addr).await.unwrap();
    after.write_all(request.as_bytes()).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), status_of(&mut after)).await;
    assert_eq!(status.ok().flatten(), Some(200));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

/// POST a JSON body of `len` bytes to `secret/data/flood` over a raw connection, the body streamed while the
/// response is awaited (a server may answer before reading it). Returns the status and how long it took.
async fn post_big(addr: &str, token: Option<&str>, len: usize) -> (Option<u16>, Duration) {
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    let token = token.map(|t| format!("X-Vault-Token: {t}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /v1/secret/data/flood HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n{token}Connection: close\r\n\r\n"
    );
    let started = Instant::now();
    wr.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        let (prefix, suffix) = (b"{\"data\":{\"v\":\"", b"\"}}");
        let chunk = vec![b'x'; 1 << 20];
        let mut left = len - prefix.len() - suffix.len();
        if wr.write_all(prefix).await.is_err() {
            return;
        }
        while left > 0 {
            let n = left.min(chunk.len());
            if wr.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        let _ = wr.write_all(suffix).await;
        // Keep the write half open until the answer is read: dropping it would half-close the connection.
        std::future::pending::<()>().await;
    });
    let status = tokio::time::timeout(Duration::from_secs(30), status_of(&mut rd))
        .await
        .ok()
        .flatten();
    let took = started.elapsed();
    writer.abort();
    (status, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_without_a_valid_token_are_refused_before_they_are_read() {
    let dir = tempdir();
    let srv = Server::dev(dir.path()).await;
    let addr = host(&srv);
    let pid = srv.child.id();

    for token in [None, Some("no-such-token")] {
        let (status, took) = post_big(&addr, token, 8 << 20).await;
        assert_eq!(status, Some(413), "an 8 MiB body with token {token:?}");
        assert!(took < Duration::from_secs(2), "refused in {took:?}");
    }

    // Four bodies just under max_request_size at once: none may be buffered or parsed.
    let before = leakstop_tests::peak_rss_kib(pid);
    let floods: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move { post_big(&addr, None, 30 << 20).await })
        })
        .collect();
    for f in floods {
        assert_eq!(f.await.unwrap().0, Some(413));
    }
    let grown_mib = (leakstop_tests::peak_rss_kib(pid).saturating_sub(before)) / 1024;
    assert!(
        grown_mib < 32,
        "4 tokenless 30 MiB bodies grew the server's peak RSS by {grown_mib} MiB"
    );

    // A valid token may still send a large body (within KV's per-version limit of 1 MiB).
    let big = "v".repeat(1 << 19);
    let (status, body) = srv
        .call("POST", "secret/data/large", Some(json!({"data": {"v": big}})))
        .await;
    assert_eq!(status, 200, "{body}");
    let read = srv.ok("GET", "secret/data/large", None).await;
    assert_eq!(read["data"]["data"]["v"].as_str().map(str::len), Some(1 << 19));
    // And a small tokenless request still reaches the core (which decides, here: no token, no access).
    let (status, _) = srv
        .call_as("", "POST", "secret/data/small", Some(json!({"data": {}})))
        .await;
    assert_eq!(status, 403);
}
