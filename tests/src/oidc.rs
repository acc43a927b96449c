//! A loopback OIDC issuer for tests: discovery document, JWKS (RSA and EC P-256 keys made with `openssl`), key
//! rotation, minting tokens with any claims, an outage switch, a slow mode, an oversized-JWKS mode, a count of
//! every discovery and JWKS request, and GitHub Actions' ID-token request endpoint
//! (`ACTIONS_ID_TOKEN_REQUEST_URL` + bearer `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answering `{"value": <jwt>}`).

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

struct Key {
    kid: String,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: Jwk,
}

struct IssuerState {
    url: String,
    keys: RwLock<Vec<Key>>,
    jwks_fetches: AtomicUsize,
    /// Discovery and JWKS requests, answered or not.
    requests: AtomicUsize,
    down: AtomicBool,
    delay_ms: AtomicUsize,
    oversized: AtomicBool,
    /// Claims of tokens handed out through the Actions endpoint (audience added per request).
    actions_claims: RwLock<Value>,
    actions_bearer: String,
}

/// A running issuer; stops when dropped.
pub struct Issuer {
    pub url: String,
    state: Arc<IssuerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn openssl_key(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .output()
        .expect("openssl must be installed (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl genpkey: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn make_key(kid: &str, alg: Algorithm) -> Key {
    let (pem, enc) = match alg {
        Algorithm::ES256 => {
            let pem = openssl_key(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
            let enc = EncodingKey::from_ec_pem(&pem).expect("EC key");
            (pem, enc)
        }
        _ => {
            let pem = openssl_key(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
            let enc = EncodingKey::from_rsa_pem(&pem).expect("RSA key");
            (pem, enc)
        }
    };
    drop(pem);
    let mut jwk = Jwk::from_encoding_key(&enc, alg).expect("JWK from key");
    jwk.common.key_id = Some(kid.to_string());
    Key {
        kid: kid.into(),
        alg,
        enc,
        jwk,
    }
}

impl Issuer {
    /// Start with one RSA key (`rsa-1`, RS256) and one EC key (`ec-1`, ES256).
    pub async fn start() -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind issuer");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(IssuerState {
            url: url.clone(),
            keys: RwLock::new(vec![
                make_key("rsa-1", Algorithm::RS256),
                make_key("ec-1", Algorithm::ES256),
            ]),
            jwks_fetches: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            delay_ms: AtomicUsize::new(0),
            oversized: AtomicBool::new(false),
            actions_claims: RwLock::new(json!({})),
            actions_bearer: format!("actions-request-{:x}", rand::random::<u64>()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks", get(jwks))
            .route("/actions/token", get(actions_token))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Issuer { url, state, task }
    }

    /// Sign `claims` with key `kid` (its algorithm). `iss` is added when absent.
    pub fn mint(&self, kid: &str, mut claims: Value) -> String {
        if claims.get("iss").is_none() {
            claims["iss"] = json!(self.url);
        }
        let keys = self.state.keys.read().unwrap();
        let k = keys
            .iter()
            .find(|k| k.kid == kid)
            .unwrap_or_else(|| panic!("no key {kid}"));
        let mut h = Header::new(k.alg);
        h.kid = Some(k.kid.clone());
        jsonwebtoken::encode(&h, &claims, &k.enc).expect("sign")
    }

    /// Sign with a key the issuer never published (for the bad-signature and unknown-kid cases).
    pub fn mint_with_foreign_key(&self, kid: &str, mut claims: Value) -> String {
        if claims.get("iss").is_none() {
            claims["iss"] = json!(self.url);
        }
        let k = make_key(kid, Algorithm::RS256);
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.to_string());
        jsonwebtoken::encode(&h, &claims, &k.enc).expect("sign")
    }

    /// Replace the RSA key with a new one (`rsa-2`, ...); returns the new kid. Tokens signed by the old key stop
    /// verifying once the verifier refreshes.
    pub fn rotate_rsa(&self) -> String {
        let mut keys = self.state.keys.write().unwrap();
        let n = keys.iter().filter(|k| k.kid.starts_with("rsa-")).count() + 1;
        let kid = format!("rsa-{n}");
        keys.retain(|k| !k.kid.starts_with("rsa-"));
        keys.push(make_key(&kid, Algorithm::RS256));
        kid
    }

    /// Make the discovery and JWKS endpoints answer 503 (an issuer outage).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Discovery and JWKS requests received so far, including those answered 503.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Answer discovery and JWKS requests only after `ms` milliseconds (a slow issuer).
    pub fn set_delay_ms(&self, ms: usize) {
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Serve the JWKS padded with 2 MiB of junk (still valid JSON with the real keys).
    pub fn set_oversized(&self, on: bool) {
        self.state.oversized.store(on, Ordering::SeqCst);
    }

    /// The URL of the JWKS (as the discovery document names it).
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks", self.url)
    }

    /// The env vars GitHub Actions sets for a job with `id-token: write`, served by this issuer; tokens it hands
    /// out carry `claims` plus the requested audience and fresh iat/exp.
    pub fn actions_env(&self, claims: Value) -> Vec<(String, String)> {
        *self.state.actions_claims.write().unwrap() = claims;
        vec![
            (
                "ACTIONS_ID_TOKEN_REQUEST_URL".into(),
                format!("{}/actions/token?api-version=2.0", self.url),
            ),
            (
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
                self.state.actions_bearer.clone(),
            ),
        ]
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims shaped like a GitHub Actions ID token for `repo` (owner/name) on `git_ref`.
pub fn github_claims(repo: &str, repo_id: u64, git_ref: &str, aud: &str) -> Value {
    let owner = repo.split('/').next().unwrap_or_default();
    let t = now();
    json!({
        "jti": format!("{:032x}", rand::random::<u128>()),
        "sub": format!("repo:{repo}:ref:{git_ref}"),
        "aud": aud,
        "ref": git_ref,
        "sha": "d3c0ffee00000000000000000000000000000000",
        "repository": repo,
        "repository_owner": owner,
        "repository_owner_id": "424242",
        "repository_id": repo_id.to_string(),
        "repository_visibility": "private",
        "run_id": "7001",
        "run_number": "12",
        "run_attempt": "1",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "deploy",
        "event_name": "push",
        "ref_type": "branch",
        "job_workflow_ref": format!("{repo}/.github/workflows/deploy.yml@{git_ref}"),
        "environment": "production",
        "runner_environment": "github-hosted",
        "iat": t,
        "nbf": t - 5,
        "exp": t + 300,
    })
}

/// Claims shaped like a GitLab CI `id_tokens` token.
pub fn gitlab_claims(project_path: &str, project_id: u64, git_ref: &str, aud: &str) -> Value {
    let t = now();
    json!({
        "jti": format!("{:032x}", rand::random::<u128>()),
        "sub": format!("project_path:{project_path}:ref_type:branch:ref:{git_ref}"),
        "aud": aud,
        "namespace_id": "1001",
        "namespace_path": project_path.split('/').next().unwrap_or_default(),
        "project_id": project_id.to_string(),
        "project_path": project_path,
        "user_id": "42",
        "user_login": "dev",
        "pipeline_id": "9001",
        "pipeline_source": "push",
        "job_id": "777",
        "ref": git_ref,
        "ref_type": "branch",
        "ref_protected": "true",
        "iat": t,
        "nbf": t - 5,
        "exp": t + 300,
    })
}

async fn arrive(s: &IssuerState) {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let ms = s.delay_ms.load(Ordering::SeqCst);
    if ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(ms as u64)).await;
    }
}

async fn discovery(State(s): State<Arc<IssuerState>>) -> impl IntoResponse {
    arrive(&s).await;
    if s.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "down"})));
    }
    (
        StatusCode::OK,
        Json(json!({
            "issuer": s.url,
            "jwks_uri": format!("{}/.well-known/jwks", s.url),
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository", "repository_id"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": ["openid"],
        })),
    )
}

async fn jwks(State(s): State<Arc<IssuerState>>) -> impl IntoResponse {
    arrive(&s).await;
    if s.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "down"})));
    }
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let set = JwkSet {
        keys: s.keys.read().unwrap().iter().map(|k| k.jwk.clone()).collect(),
    };
    let mut body = serde_json::to_value(set).unwrap();
    if s.oversized.load(Ordering::SeqCst) {
        body["padding"] = json!("x".repeat(2 << 20));
    }
    (StatusCode::OK, Json(body))
}

async fn actions_token(
    State(s): State<Arc<IssuerState>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("Bearer {}", s.actions_bearer) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"})));
    }
    let mut claims = s.actions_claims.read().unwrap().clone();
    let t = now();
    claims["aud"] = json!(
        q.get("audience")
            .cloned()
            .unwrap_or_else(|| "https://github.com/octo-org".into())
    );
    claims["iss"] = json!(s.url);
    claims["iat"] = json!(t);
    claims["nbf"] = json!(t - 5);
    claims["exp"] = json!(t + 300);
    claims["jti"] = json!(format!("{:032x}", rand::random::<u128>()));
    let keys = s.keys.read().unwrap();
    let k = keys.iter().find(|k| k.alg == Algorithm::RS256).expect("an RSA key");
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(k.kid.clone());
    let jwt = jsonwebtoken::encode(&h, &claims, &k.enc).expect("sign");
    (StatusCode::OK, Json(json!({ "count": 1, "value": jwt })))
}
