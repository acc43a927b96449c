//! The HTTP layer: Vault's URL space (`/v1/<path>`), methods (including `LIST`), token header, JSON envelope and
//! error bodies, so real Vault clients work unchanged. Before a body is read, the token decides how much of it may
//! be read: see [`crate::server`] for where this sits among the listener's limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use leakstop_vault::engine::unix_seconds;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http_body_util::BodyExt;
use leakstop_proto::{Envelope, ErrorBody};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use leakstop_vault::core::{ApiRequest, Core, Reply, uuid};
use leakstop_vault::{Operation, VaultError};

/// Vault's default request size limit (32 MiB).
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 32 << 20;

/// How long a request without a valid token waits for one of the `max_unauthenticated_requests` slots before it
/// is refused with 429.
const UNAUTHENTICATED_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Limits of the HTTP listener: `[http]` in the server config. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Time for a request head (request line and headers) to arrive, and for a TLS handshake; also how long an idle
    /// kept-alive connection stays open waiting for its next request.
    pub header_timeout_ms: u64,
    /// Time for a request body to arrive once its head is in (408 after it).
    pub body_timeout_ms: u64,
    /// Open connections at most; beyond it new connections wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Requests without a valid token that may send a body at once (logins, unseal, init); more wait briefly,
    /// then get 429.
    pub max_unauthenticated_requests: usize,
    /// Largest body of a request without a valid token (413 beyond): enough for a JWT login or an unseal share.
    pub unauthenticated_body_limit: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections: 4096,
            max_unauthenticated_requests: 64,
            unauthenticated_body_limit: 64 << 10,
        }
    }
}

impl HttpLimits {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.max(1))
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms.max(1))
    }
}

struct Http {
    core: Arc<Core>,
    max_request_size: usize,
    limits: HttpLimits,
    unauthenticated: Semaphore,
    /// HA only: relays what a standby cannot serve to the active node.
    forwarder: Option<crate::forward::Forwarder>,
}

pub fn router(core: Arc<Core>, max_request_size: usize, limits: &HttpLimits) -> Router {
    router_forwarding_with(core, max_request_size, limits, None)
}

/// [`router`] whose HA forwarding trusts `forward_ca` (PEM) for the other nodes' TLS certificates.
pub fn router_forwarding_with(
    core: Arc<Core>,
    max_request_size: usize,
    limits: &HttpLimits,
    forward_ca: Option<&[u8]>,
) -> Router {
    let forwarder = core
        .ha_enabled()
        .then(|| crate::forward::Forwarder::new(forward_ca))
        .and_then(|f| {
            f.map_err(|e| tracing::error!(error = %e, "request forwarding is off"))
                .ok()
        });
    let http = Http {
        core,
        forwarder,
        max_request_size,
        limits: limits.clone(),
        unauthenticated: Semaphore::new(limits.max_unauthenticated_requests.max(1)),
    };
    Router::new()
        .route("/v1/{*path}", any(handle))
        .fallback(|| async { error_response(&VaultError::UnsupportedPath) })
        .with_state(Arc::new(http))
}

fn json_response(status: u16, body: &impl Serialize) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match serde_json::to_string(body) {
        Ok(text) => (status, [(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn error_response(e: &VaultError) -> Response {
    let mut r = json_response(e.status(), &ErrorBody { errors: e.messages() });
    if let VaultError::RateLimited { retry_after } = e {
        r.headers_mut().insert(header::RETRY_AFTER, (*retry_after).into());
    }
    r
}

fn operation(method: &Method, query: &HashMap<String, String>) -> Option<Operation> {
    Some(match method.as_str() {
        "GET" if query.get("list").is_some_and(|v| v == "true" || v == "1") => Operation::List,
        "GET" | "HEAD" => Operation::Read,
        "LIST" => Operation::List,
        "POST" | "PUT" => Operation::Update,
        "DELETE" => Operation::Delete,
        "PATCH" => Operation::Patch,
        _ => return None,
    })
}

fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        return Some(t.trim().to_string());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
}

/// A refusal made here, before the core sees the request.
fn refuse(status: StatusCode, msg: String) -> Response {
    json_response(status.as_u16(), &ErrorBody { errors: vec![msg] })
}

/// Whether the request carries a token the token store accepts. Only the cheap early decision of how much body to
/// read: authentication and authorisation proper stay in the core. A live token is served from the store's cache.
/// The content types a browser sends cross-site without a CORS preflight.
fn is_form_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .is_some_and(|t| {
            matches!(
                t.as_str(),
                "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
            )
        })
}

fn has_valid_token(core: &Core, token: Option<&str>) -> bool {
    let Some(t) = token.filter(|t| !t.is_empty()) else {
        return false;
    };
    core.unsealed().is_ok_and(|st| {
        st.tokens
            .lookup(t, unix_seconds(SystemTime::now()))
            .is_ok_and(|e| e.is_some())
    })
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Read a body of at most `limit` bytes within `timeout`.
/// `which_limit` names the limit in the 413.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    which_limit: &str,
    timeout: Duration,
) -> Result<Bytes, Response> {
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes ({which_limit})"),
        )
    };
    // A declared length over the limit is refused before a byte of the body is read.
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, http_body_util::Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("failed to read the request body: {e}"),
        )),
        Err(_) => Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} ms", timeout.as_millis()),
        )),
    }
}

/// One request, in a span carrying its id (which the envelope returns and the audit lines record). `skip_all`: the
/// headers hold the token and the body may hold secrets.
#[tracing::instrument(name = "http", skip_all, fields(request_id = tracing::field::Empty))]
#[allow(clippy::too_many_arguments)] // one axum extractor per request part
async fn handle(
    State(http): State<Arc<Http>>,
    extensions: axum::http::Extensions,
    method: Method,
    uri: Uri,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = uuid();
    tracing::Span::current().record("request_id", request_id.as_str());
    let Some(op) = operation(&method, &query) else {
        return error_response(&VaultError::UnsupportedOperation);
    };
    let token = token_from(&headers);
    let core = &http.core;
    // sys/init runs on the node that holds the lock (the only one whose writes storage accepts): a node that knows
    // another node holds it passes the request on.
    let init_elsewhere = core.ha_enabled()
        && op == Operation::Update
        && path.trim_matches('/') == "sys/init"
        && !core.is_active()
        && core.ha_view().leader.is_some();
    if core.ha_enabled() && (init_elsewhere || (!crate::forward::is_local(&path) && core.is_standby())) {
        let client = peer_ip(&extensions).and_then(|ip| core.vouch_for_client(&ip, unix_seconds(SystemTime::now())));
        return forward(&http, method, &uri, &headers, body, token.is_some(), client).await;
    }
    // The token is checked before the body is read: without a valid one, only a small body, and only a few such
    // requests at a time, so nobody without a token can make the server buffer or parse much.
    // A read with no body to speak of needs no early decision (the core checks its token anyway): reads, the bulk
    // of the traffic, pay nothing here.
    let small = http.limits.unauthenticated_body_limit.min(http.max_request_size);
    let read = matches!(method, Method::GET | Method::HEAD);
    let declared_small = declared_length(&headers).is_none_or(|n| n <= small as u64);
    let checked = !(read && declared_small) && has_valid_token(core, token.as_deref());
    if !read && !checked && is_form_content_type(&headers) {
        // A browser posts a form (or a `text/plain` fetch) cross-site without asking the server first; JSON needs a
        // CORS preflight this server never grants. Refusing those types without a token closes logins, unseal and
        // init to cross-site requests from a user's browser.
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "requests without a token must send a JSON body with Content-Type: application/json (curl: add -H 'Content-Type: application/json')".into(),
        );
    }
    let (limit, which_limit, _slot) = if checked {
        (http.max_request_size, "max_request_size", None)
    } else {
        let slot = if read {
            None
        } else {
            match tokio::time::timeout(UNAUTHENTICATED_QUEUE_WAIT, http.unauthenticated.acquire()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    return refuse(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many requests without a token in progress; retry shortly".into(),
                    );
                }
            }
        };
        (small, "the limit for requests without a valid token", slot)
    };
    let body = match read_body(&headers, body, limit, which_limit, http.limits.body_timeout()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let data = if path == leakstop_vault::leaks::partner::PATH {
        // GitHub signs the raw body: the core gets it as sent, with the signature headers.
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        leakstop_vault::leaks::partner::request_data(
            h("github-public-key-signature"),
            h("github-public-key-identifier"),
            &body,
        )
    } else {
        match parse_body(&body) {
            Ok(d) => d,
            Err(e) => return error_response(&e),
        }
    };
    drop(body);
    let req = ApiRequest {
        op,
        path,
        data,
        query,
        token,
        remote_addr: client_addr(core, &headers, &extensions),
        request_id: request_id.clone(),
    };
    match core.handle(req).await {
        Ok(reply) => reply_response(reply, request_id),
        Err(e) => {
            if e.status() >= 500 {
                tracing::warn!(error = %e, "request failed");
            }
            error_response(&e)
        }
    }
}

fn peer_ip(extensions: &axum::http::Extensions) -> Option<String> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
}

/// The address a request is audited with: the connection's, or, for a request a standby of this cluster forwarded,
/// the client's address the standby vouched for (see [`crate::forward::FORWARDED_FOR`]). A statement that does not
/// verify is ignored: a client cannot choose the address it is audited with.
fn client_addr(core: &Core, headers: &HeaderMap, extensions: &axum::http::Extensions) -> Option<String> {
    let peer = peer_ip(extensions);
    if !core.ha_enabled() || !headers.contains_key(crate::forward::FORWARDED) {
        return peer;
    }
    let vouched = headers
        .get(crate::forward::FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| core.vouched_client(v, unix_seconds(SystemTime::now())));
    vouched.or(peer)
}

/// A request that reached a standby goes to the active node. The standby cannot check tokens (it has loaded
/// nothing), so a request with no token at all gets the small limit, any other the full one; the active node
/// applies its own limits again.
async fn forward(
    http: &Http,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    has_token: bool,
    client: Option<String>,
) -> Response {
    let Some(forwarder) = &http.forwarder else {
        return error_response(&VaultError::Standby);
    };
    let small = http.limits.unauthenticated_body_limit.min(http.max_request_size);
    let (limit, which) = if has_token {
        (http.max_request_size, "max_request_size")
    } else {
        (small, "the limit for requests without a valid token")
    };
    let body = match read_body(headers, body, limit, which, http.limits.body_timeout()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let leader = http.core.ha_view().leader.map(|l| l.api_addr);
    forwarder
        .forward(leader.as_deref(), method, uri, headers, body, client)
        .await
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, VaultError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(VaultError::BadRequest("the request body must be a JSON object".into())),
        Err(e) => Err(VaultError::BadRequest(format!("failed to parse JSON input: {e}"))),
    }
}

fn reply_response(r: Reply, request_id: String) -> Response {
    if let Some(text) = r.text {
        let status = StatusCode::from_u16(r.status.unwrap_or(200)).unwrap_or(StatusCode::OK);
        return (status, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response();
    }
    if let Some(raw) = r.raw {
        return json_response(r.status.unwrap_or(200), &raw);
    }
    // A lease renewal carries nothing but its lease fields: it still has a body.
    let nothing = r.data.is_none() && r.auth.is_none() && r.warnings.is_empty() && r.lease_id.is_empty();
    if r.status == Some(204) || (nothing && r.status.is_none()) {
        return StatusCode::NO_CONTENT.into_response();
    }
    let body = Envelope {
        request_id,
        lease_id: r.lease_id,
        renewable: r.renewable,
        lease_duration: r.lease_duration,
        data: r.data,
        wrap_info: None,
        warnings: (!r.warnings.is_empty()).then_some(r.warnings),
        auth: r.auth,
        mount_type: r.mount_type,
    };
    json_response(r.status.unwrap_or(200), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    /// An unsealed in-memory core with `secret/` (KV v2) and the root token `root`.
    async fn core() -> Arc<Core> {
        let storage = leakstop_storage::StorageConfig::Memory.open().unwrap();
        let seal = Arc::new(leakstop_seal::KeySeal::random_dev());
        let core = Core::new(storage, Some(seal), leakstop_vault::CoreOptions::default());
        core.init(1, 1, Some("root".into())).await.unwrap();
        let kv = [("version".to_string(), "2".to_string())].into_iter().collect();
        core.mount(false, "secret", "kv", "", kv).unwrap();
        core
    }

    /// A body of `len` bytes sent in 8 KiB chunks with no `Content-Length`, as a chunked upload arrives.
    fn streamed(len: usize) -> Body {
        let prefix = b"{\"data\":{\"v\":\"".to_vec();
        let chunks = std::iter::once(prefix.clone())
            .chain(std::iter::repeat_n(
                vec![b'x'; 8 << 10],
                (len - prefix.len() - 4) / (8 << 10),
            ))
            .chain(std::iter::once(b"\"}}".to_vec()))
            .map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    async fn send(router: &Router, token: Option<&str>, body: Body) -> (u16, Value) {
        let mut req = Request::post("/v1/secret/data/big").header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("x-vault-token", t);
        }
        let resp = router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn a_streamed_body_without_a_valid_token_stops_at_the_small_limit() {
        let core = core().await;
        let router = router(core, DEFAULT_MAX_REQUEST_SIZE, &HttpLimits::default());
        for token in [None, Some("not-a-token")] {
            let (status, body) = send(&router, token, streamed(1 << 20)).await;
            assert_eq!(status, 413, "{body}");
            assert!(body.to_string().contains("without a valid token"), "{body}");
        }
        let (status, body) = send(&router, Some("root"), streamed(1 << 20)).await;
        assert_eq!(status, 200, "a valid token may send a large body: {body}");
        // Each answer names its request, so a client's report can be found in the server's log and audit lines.
        let (_, again) = send(&router, Some("root"), streamed(1 << 10)).await;
        let ids = [&body["request_id"], &again["request_id"]].map(|v| v.as_str().unwrap_or_default().to_string());
        assert!(ids[0].len() == 36 && ids[1].len() == 36 && ids[0] != ids[1], "{ids:?}");
    }
}
