//! A loopback stand-in for the GitHub REST API endpoints the token broker uses, speaking GitHub's request and
//! response shapes: app installation lookup and installation token creation (App JWT, RS256, verified against the
//! app's public key), installation token revocation (`DELETE /installation/token`) and
//! `GET /installation/repositories` to see what a token can reach.

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get, post};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

pub const APP_ID: u64 = 314_159;
pub const INSTALLATION_ID: u64 = 27_182_818;
pub const OWNER: &str = "octo-org";
/// Repositories the app is installed on.
pub const REPOS: [(&str, u64); 3] = [("app", 1_296_269), ("infra", 1_296_270), ("docs", 1_296_271)];

/// One installation token handed out.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub repositories: Vec<String>,
    pub permissions: Value,
    pub revoked: bool,
}

struct GhState {
    public_pem: Vec<u8>,
    issued: Mutex<Vec<Issued>>,
}

pub struct GithubStandIn {
    pub url: String,
    /// The GitHub App's private key (PEM), to configure the broker with.
    pub app_private_key: String,
    state: Arc<GhState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GithubStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn gh_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message, "documentation_url": "https://docs.github.com/rest", "status": status.as_u16().to_string() }))).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("token "))
        .map(|s| s.trim().to_string())
}

fn app_jwt_ok(s: &GhState, headers: &HeaderMap) -> bool {
    let Some(jwt) = bearer(headers) else { return false };
    let key = match DecodingKey::from_rsa_pem(&s.public_pem) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("github stand-in: bad app public key: {e}");
            return false;
        }
    };
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp"]);
    match jsonwebtoken::decode::<Value>(&jwt, &key, &v) {
        Ok(d) => d.claims["iss"].to_string().trim_matches('"') == APP_ID.to_string(),
        Err(e) => {
            eprintln!("github stand-in: app JWT refused: {e}");
            false
        }
    }
}

fn repo_json(name: &str, id: u64) -> Value {
    json!({
        "id": id, "node_id": format!("R_{id}"), "name": name, "full_name": format!("{OWNER}/{name}"), "private": true,
        "owner": {"login": OWNER, "id": 424242, "type": "Organization"},
        "html_url": format!("https://github.com/{OWNER}/{name}"),
        "url": format!("https://api.github.com/repos/{OWNER}/{name}"),
    })
}

impl GithubStandIn {
    pub async fn start() -> GithubStandIn {
        let out = Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .output()
            .expect("openssl must be installed");
        assert!(out.status.success());
        let private = out.stdout;
        let mut child = Command::new("openssl")
            .args(["pkey", "-pubout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl pkey");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&private).unwrap();
        let public = child.wait_with_output().unwrap().stdout;
        let state = Arc::new(GhState {
            public_pem: public,
            issued: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/repos/{owner}/{repo}/installation", get(installation))
            .route("/app/installations/{id}/access_tokens", post(create_token))
            .route("/installation/token", delete(revoke_token))
            .route("/installation/repositories", get(list_repos))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GithubStandIn {
            url,
            app_private_key: String::from_utf8(private).unwrap(),
            state,
            task,
        }
    }

    /// Stop answering: the port is closed (an unreachable GitHub API).
    pub async fn stop(&self) {
        self.task.abort();
        while tokio::net::TcpStream::connect(self.url.trim_start_matches("http://"))
            .await
            .is_ok()
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.state.issued.lock().unwrap().clone()
    }

    /// Whether `token` is deleted here (`DELETE /installation/token`) within `within`, polling.
    pub async fn wait_revoked(&self, token: &str, within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.issued().iter().any(|i| i.token == token && i.revoked) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }
}

async fn installation(
    State(s): State<Arc<GhState>>,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    if !app_jwt_ok(&s, &headers) {
        return gh_error(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded");
    }
    if owner != OWNER || !REPOS.iter().any(|(n, _)| *n == repo) {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    Json(json!({
        "id": INSTALLATION_ID,
        "account": {"login": OWNER, "id": 424242, "type": "Organization"},
        "app_id": APP_ID,
        "target_type": "Organization",
        "repository_selection": "all",
        "permissions": {"contents": "write", "metadata": "read", "pull_requests": "write"},
        "events": [],
    }))
    .into_response()
}

async fn create_token(
    State(s): State<Arc<GhState>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    if !app_jwt_ok(&s, &headers) {
        return gh_error(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded");
    }
    if id != INSTALLATION_ID {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let wanted: Vec<String> = body["repositories"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_else(|| REPOS.iter().map(|(n, _)| n.to_string()).collect());
    let mut repos = Vec::new();
    for w in &wanted {
        match REPOS.iter().find(|(n, _)| n == w) {
            Some((n, id)) => repos.push(repo_json(n, *id)),
            None => {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "There is at least one repository that does not exist or is not accessible to the parent installation.",
                );
            }
        }
    }
    let token = format!("ghs_{:036x}", rand::random::<u128>());
    let permissions = body
        .get("permissions")
        .cloned()
        .unwrap_or(json!({"contents": "write", "metadata": "read"}));
    s.issued.lock().unwrap().push(Issued {
        token: token.clone(),
        repositories: wanted,
        permissions: permissions.clone(),
        revoked: false,
    });
    let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let expires = expires.format(&time::format_description::well_known::Rfc3339).unwrap();
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": expires,
            "permissions": permissions,
            "repository_selection": "selected",
            "repositories": repos,
        })),
    )
        .into_response()
}

fn active_token(s: &GhState, headers: &HeaderMap) -> Option<usize> {
    let t = bearer(headers)?;
    s.issued.lock().unwrap().iter().position(|i| i.token == t && !i.revoked)
}

async fn revoke_token(State(s): State<Arc<GhState>>, headers: HeaderMap) -> Response {
    match active_token(&s, &headers) {
        Some(i) => {
            s.issued.lock().unwrap()[i].revoked = true;
            StatusCode::NO_CONTENT.into_response()
        }
        None => gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    }
}

async fn list_repos(State(s): State<Arc<GhState>>, headers: HeaderMap) -> Response {
    let Some(i) = active_token(&s, &headers) else {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    };
    let names = s.issued.lock().unwrap()[i].repositories.clone();
    let repos: Vec<Value> = REPOS
        .iter()
        .filter(|(n, _)| names.iter().any(|w| w == n))
        .map(|(n, id)| repo_json(n, *id))
        .collect();
    Json(json!({ "total_count": repos.len(), "repository_selection": "selected", "repositories": repos }))
        .into_response()
}
