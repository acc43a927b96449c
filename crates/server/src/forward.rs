//! Request forwarding from an HA standby to the active node, over the active node's `api_addr`: the method, path,
//! query, headers (the token among them) and body go as they came, and the answer streams back as it comes. A
//! client may therefore talk to any node. With `X-Vault-No-Request-Forwarding` the standby answers 307 to the
//! active node instead, as Vault does. A forwarded request carries [`FORWARDED`]; a node that receives one while
//! not active refuses it rather than forwarding again, so a leadership change cannot make requests loop.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// Marks a request one node forwarded to another.
pub const FORWARDED: &str = "x-leakstop-forwarded";
/// Vault's header asking a standby for a redirect instead of forwarding.
pub const NO_FORWARDING: &str = "x-vault-no-request-forwarding";
/// The client's address as the forwarding standby saw it, vouched for with a MAC keyed by the cluster's root key
/// (`Core::vouch_for_client`): the active node audits a forwarded request with this address when the MAC checks
/// out, and with the connection's (the standby's) otherwise. Never copied from a client's request.
pub const FORWARDED_FOR: &str = "x-leakstop-forwarded-for";

/// Connection-level headers (RFC 9110 §7.6.1) and those the client library sets itself: never copied across.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Paths every node answers itself, whatever its role: a standby's own health, seal state and leader view, and
/// the steps by which it becomes unsealed.
pub fn is_local(path: &str) -> bool {
    matches!(
        path.trim_matches('/'),
        "sys/health" | "sys/seal-status" | "sys/leader" | "sys/init" | "sys/unseal"
    )
}

pub struct Forwarder {
    client: reqwest::Client,
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    let body = serde_json::json!({ "errors": [msg] }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl Forwarder {
    /// `ca_pem`: the CA certificate(s) (PEM) that sign the nodes' TLS certificates, for an `https://` `api_addr`
    /// (`[ha] forward_ca_file`). With it, only those are trusted for node-to-node traffic; without it, the public web
    /// roots built into the binary.
    pub fn new(ca_pem: Option<&[u8]>) -> Result<Forwarder, String> {
        let mut builder = reqwest::Client::builder()
            // The active node's redirects are for the client, not for us.
            .redirect(reqwest::redirect::Policy::none())
            // Node-to-node traffic never goes through a proxy from the environment.
            .no_proxy()
            .connect_timeout(Duration::from_secs(2));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the forwarding CA is not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("the forwarding CA file holds no PEM certificate".into());
            }
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the forwarding client: {e}"))?;
        Ok(Forwarder { client })
    }

    /// Answer a request that reached a standby. `leader` is the active node's `api_addr`, if one is known; `body`
    /// was read within the edge's limits; `client` is this node's [`FORWARDED_FOR`] statement for the client's
    /// address, if it can make one.
    pub async fn forward(
        &self,
        leader: Option<&str>,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        client: Option<String>,
    ) -> Response {
        if headers.contains_key(FORWARDED) {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request was forwarded to a node that is no longer active (the active node just changed); retry",
            );
        }
        let Some(leader) = leader.filter(|l| !l.is_empty()) else {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node is a standby and no active node is known (an election is under way or the storage is \
                 unreachable); retry shortly",
            );
        };
        let target = format!(
            "{}{}",
            leader.trim_end_matches('/'),
            uri.path_and_query().map_or("/", |p| p.as_str())
        );
        if headers.contains_key(NO_FORWARDING) {
            return match header::HeaderValue::from_str(&target) {
                Ok(location) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response(),
                Err(_) => refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the active node's api_addr is not a valid URL",
                ),
            };
        }
        let mut out = self.client.request(method, &target).body(body);
        for (name, value) in headers {
            if !hop_by_hop(name) && name.as_str() != FORWARDED_FOR {
                out = out.header(name, value);
            }
        }
        if let Some(statement) = client {
            out = out.header(FORWARDED_FOR, statement);
        }
        let resp = match out.header(FORWARDED, "1").send().await {
            Ok(r) => r,
            Err(e) => {
                // The error names the URL (the active node's api_addr, public through sys/leader) and the cause.
                tracing::warn!(error = %e, "forwarding to the active node failed");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the active node could not be reached to forward this request; retry shortly",
                );
            }
        };
        let mut answer = Response::builder().status(resp.status().as_u16());
        for (name, value) in resp.headers() {
            if !hop_by_hop(name) {
                answer = answer.header(name.as_str(), value.as_bytes());
            }
        }
        // Streamed: a large list or a slow engine answer is relayed as it arrives, not buffered here.
        let chunks = futures_util::stream::unfold(Some(resp), |resp| async move {
            let mut resp = resp?;
            match resp.chunk().await {
                Ok(Some(c)) => Some((Ok::<_, reqwest::Error>(c), Some(resp))),
                Ok(None) => None,
                // The error ends the body (the client sees a cut response), and the stream with it.
                Err(e) => Some((Err(e), None)),
            }
        });
        answer
            .body(Body::from_stream(chunks))
            .unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "the active node sent an invalid response"))
    }
}
