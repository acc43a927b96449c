//! The HTTP layer: Vault's URL space (`/v1/<path>`), methods (including `LIST`), token header, JSON envelope and
//! error bodies, so real Vault clients work unchanged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value, json};

use crate::core::{ApiRequest, Core, Reply, uuid};
use crate::{Operation, VaultError};

/// Vault's default request size limit (32 MiB).
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 32 << 20;

pub fn router(core: Arc<Core>, max_request_size: usize) -> Router {
    Router::new()
        .route("/v1/{*path}", any(handle))
        .fallback(|| async { error_response(&VaultError::UnsupportedPath) })
        .layer(DefaultBodyLimit::max(max_request_size))
        .with_state(core)
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error_response(e: &VaultError) -> Response {
    json_response(e.status(), &json!({ "errors": e.messages() }))
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

async fn handle(
    State(core): State<Arc<Core>>,
    extensions: axum::http::Extensions,
    method: Method,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(op) = operation(&method, &query) else {
        return error_response(&VaultError::UnsupportedOperation);
    };
    let data = match parse_body(&body) {
        Ok(d) => d,
        Err(e) => return error_response(&e),
    };
    let req = ApiRequest {
        op,
        path,
        data,
        query,
        token: token_from(&headers),
        remote_addr: extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| *a)
            .or_else(|| {
                extensions
                    .get::<ConnectInfo<crate::server::PeerAddr>>()
                    .map(|ConnectInfo(p)| p.0)
            })
            .map(|a| a.ip().to_string()),
    };
    match core.handle(req).await {
        Ok(reply) => reply_response(reply),
        Err(e) => {
            if e.status() >= 500 {
                tracing::warn!(error = %e, "request failed");
            }
            error_response(&e)
        }
    }
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

fn reply_response(r: Reply) -> Response {
    if let Some(raw) = r.raw {
        return json_response(r.status.unwrap_or(200), &raw);
    }
    if r.status == Some(204) || (r.data.is_none() && r.auth.is_none() && r.warnings.is_empty() && r.status.is_none()) {
        return StatusCode::NO_CONTENT.into_response();
    }
    let body = json!({
        "request_id": uuid(),
        "lease_id": r.lease_id,
        "renewable": r.renewable,
        "lease_duration": r.lease_duration,
        "data": r.data,
        "wrap_info": null,
        "warnings": if r.warnings.is_empty() { Value::Null } else { json!(r.warnings) },
        "auth": r.auth,
        "mount_type": r.mount_type,
    });
    json_response(r.status.unwrap_or(200), &body)
}
