//! The GitHub token broker (the octo-sts idea): a secrets engine holding a GitHub App's id and private key (sealed
//! in the barrier like every secret) and roles that say which repositories and permissions a caller may get.
//! `github/token/:role` mints an installation access token through octocrab, scoped down to the role, records it
//! as a lease owned by the caller's token, and revokes it at GitHub (`DELETE /installation/token`) when the lease
//! is revoked, expires, or its token is revoked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use octocrab::Octocrab;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::VaultError::{BadRequest, Upstream};
use crate::engine::{NewLease, Store};
use crate::engines::roles::{self, RoleOp};
use crate::fields::Fields;
use crate::leases::Lease;
use crate::{Backend, BackendFuture, LogicalRequest, LogicalResponse, Operation, VaultError};

type Builder = octocrab::OctocrabBuilder<
    octocrab::NoSvc,
    octocrab::DefaultOctocrabBuilderConfig,
    octocrab::NoAuth,
    octocrab::NotLayerReady,
>;

/// GitHub installation tokens live one hour; a lease never outlives its token.
const GITHUB_TOKEN_LIFETIME: u64 = 3600;
const DEFAULT_TTL: u64 = 600;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// The API's `host[:port]`, to name it in errors without the rest of the URL.
fn api_host(base_url: &str) -> String {
    reqwest::Url::parse(base_url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or_else(|| h.to_string(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_else(|| base_url.to_string())
}

/// What went wrong below HTTP (refused, timed out, DNS...), from the innermost I/O error when there is one.
fn transport_category(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::TimedOut => "timed out".into(),
                kind => kind.to_string(),
            };
        }
        cur = err.source();
    }
    e.to_string()
}

/// A failed call to the GitHub API as the caller should see it: GitHub's own status and message when it answered
/// (not octocrab's bare variant name), the host and the transport failure when it could not be reached (502 both:
/// the failure is upstream, not in the request).
fn gh_failure(base_url: &str, what: &str, e: &octocrab::Error) -> VaultError {
    let host = api_host(base_url);
    match e {
        octocrab::Error::GitHub { source, .. } => Upstream(format!(
            "the GitHub API at {host} refused to {what}: {} {}",
            source.status_code, source.message
        )),
        other => Upstream(format!(
            "the GitHub API at {host} could not be reached to {what}: {}",
            transport_category(other)
        )),
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct GithubConfig {
    app_id: u64,
    private_key: String,
    base_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GithubRole {
    /// `owner` whose installation is used (an org or user login).
    pub owner: String,
    #[serde(default)]
    pub installation_id: Option<u64>,
    /// Repository names (without owner) the token is limited to.
    pub repositories: Vec<String>,
    /// GitHub permission name → `read` / `write`.
    pub permissions: BTreeMap<String, String>,
    pub ttl: u64,
}

pub struct GithubBackend;

impl GithubBackend {
    pub fn new() -> Arc<GithubBackend> {
        Arc::new(GithubBackend)
    }

    async fn config(&self, store: &dyn Store) -> Result<GithubConfig, VaultError> {
        let b = store.get("config").await?.ok_or_else(|| {
            BadRequest("the github engine is not configured: write github/config with app_id and private_key".into())
        })?;
        Ok(serde_json::from_slice(&b)?)
    }

    /// A client for the API at `base_url` with timeouts (an unresponsive API must not hold the request forever).
    fn client(base_url: &str) -> Result<Builder, VaultError> {
        Ok(Octocrab::builder()
            .base_uri(base_url)
            .map_err(|e| BadRequest(format!("base_url {base_url}: {e}")))?
            .set_connect_timeout(Some(CONNECT_TIMEOUT))
            .set_read_timeout(Some(READ_TIMEOUT)))
    }

    fn app_client(cfg: &GithubConfig) -> Result<Octocrab, VaultError> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(cfg.private_key.as_bytes())
            .map_err(|e| BadRequest(format!("the GitHub App private key is not an RSA PEM key: {e}")))?;
        Self::client(&cfg.base_url)?
            .app(octocrab::models::AppId(cfg.app_id), key)
            .build()
            .map_err(|e| VaultError::Internal(format!("GitHub client: {e}")))
    }

    async fn mint(
        &self,
        req: &LogicalRequest,
        store: &dyn Store,
        role_name: &str,
    ) -> Result<LogicalResponse, VaultError> {
        Fields::new(&req.data).finish()?;
        let cfg = self.config(store).await?;
        let role: GithubRole = roles::load(store, role_name)
            .await?
            .ok_or_else(|| BadRequest(format!("role {role_name:?} could not be found")))?;
        let gh = Self::app_client(&cfg)?;
        let installation_id = match role.installation_id {
            Some(id) => id,
            None => {
                let first = role
                    .repositories
                    .first()
                    .ok_or_else(|| BadRequest("the role names no repository".into()))?;
                let inst: Value = gh
                    .get(format!("/repos/{}/{}/installation", role.owner, first), None::<&()>)
                    .await
                    .map_err(|e| match &e {
                        octocrab::Error::GitHub { source, .. } if source.status_code.as_u16() == 404 => {
                            BadRequest(format!(
                                "the GitHub App is not installed on {}/{first} (GitHub answered 404)",
                                role.owner
                            ))
                        }
                        _ => gh_failure(&cfg.base_url, "look up the App's installation", &e),
                    })?;
                inst.get("id")
                    .unwrap_or(&Value::Null)
                    .as_u64()
                    .ok_or_else(|| Upstream("the GitHub API answered an installation without an id".into()))?
            }
        };
        let body = json!({ "repositories": role.repositories, "permissions": role.permissions });
        let tok: Value = gh
            .post(
                format!("/app/installations/{installation_id}/access_tokens"),
                Some(&body),
            )
            .await
            .map_err(|e| gh_failure(&cfg.base_url, "create the installation token", &e))?;
        let token = tok
            .get("token")
            .unwrap_or(&Value::Null)
            .as_str()
            .ok_or_else(|| Upstream("the GitHub API answered without a token".into()))?;
        let ttl = role.ttl.clamp(1, GITHUB_TOKEN_LIFETIME);
        let repos: Vec<Value> = tok
            .get("repositories")
            .unwrap_or(&Value::Null)
            .as_array()
            .map(|a| a.iter().map(|r| r["full_name"].clone()).collect())
            .unwrap_or_default();
        Ok(LogicalResponse {
            data: Some(json!({
                "token": token,
                "expires_at": tok.get("expires_at").unwrap_or(&Value::Null),
                "permissions": tok.get("permissions").unwrap_or(&Value::Null),
                "repositories": repos,
                "installation_id": installation_id,
            })),
            lease: Some(NewLease {
                ttl,
                max_ttl: 0,
                renewable: false,
                internal: json!({ "token": token, "installation_id": installation_id }),
                credential: Some(zeroize::Zeroizing::new(token.to_string())),
            }),
            ..Default::default()
        })
    }

    async fn write_config(&self, data: &Map<String, Value>, store: &dyn Store) -> Result<(), VaultError> {
        let old: Option<GithubConfig> = store
            .get("config")
            .await?
            .map(|b| serde_json::from_slice(&b))
            .transpose()?;
        let mut f = Fields::new(data);
        let app_id = f
            .u64("app_id")?
            .or(old.as_ref().map(|o| o.app_id))
            .ok_or_else(|| BadRequest("app_id is required (the GitHub App's numeric id)".into()))?;
        let private_key = f
            .string("private_key")?
            .filter(|k| !k.is_empty())
            .or(old.as_ref().map(|o| o.private_key.clone()))
            .ok_or_else(|| BadRequest("private_key is required (the GitHub App's PEM private key)".into()))?;
        let base_url = f
            .string("base_url")?
            .filter(|u| !u.is_empty())
            .map(|s| s.trim_end_matches('/').to_string())
            .or(old.map(|o| o.base_url))
            .unwrap_or_else(|| "https://api.github.com".into());
        f.finish()?;
        jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes())
            .map_err(|_| BadRequest("private_key is not a PEM RSA private key (GitHub App keys are RSA)".into()))?;
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(BadRequest(format!(
                "base_url {base_url:?} must be an http(s) URL such as https://api.github.com"
            )));
        }
        store
            .put(
                "config",
                &serde_json::to_vec(&GithubConfig {
                    app_id,
                    private_key,
                    base_url,
                })?,
            )
            .await
    }

    async fn write_role(&self, name: &str, data: &Map<String, Value>, store: &dyn Store) -> Result<(), VaultError> {
        let mut f = Fields::new(data);
        let owner = f.required_string("owner", ": the org or user whose App installation is used")?;
        let repositories = f.list("repositories")?.unwrap_or_default();
        let permissions = f.string_map("permissions")?.unwrap_or_default();
        let ttl = f.duration("ttl")?.filter(|t| *t > 0).unwrap_or(DEFAULT_TTL);
        let installation_id = f.u64("installation_id")?;
        f.finish()?;
        if repositories.is_empty() {
            return Err(BadRequest(
                "repositories is required: the repositories (names without owner) a token may reach".into(),
            ));
        }
        if permissions.is_empty() {
            return Err(BadRequest(
                "permissions is required: a JSON object of permission to level, e.g. '{\"contents\":\"read\"}'".into(),
            ));
        }
        if let Some((k, _)) = permissions
            .iter()
            .find(|(_, l)| !matches!(l.as_str(), "read" | "write"))
        {
            return Err(BadRequest(format!(
                "permission {k:?}: the level must be \"read\" or \"write\""
            )));
        }
        if ttl > GITHUB_TOKEN_LIFETIME {
            return Err(BadRequest(
                "ttl cannot exceed 1h: GitHub installation tokens expire after one hour".into(),
            ));
        }
        let role = GithubRole {
            owner,
            installation_id,
            repositories,
            permissions,
            ttl,
        };
        roles::save(store, name, &role).await
    }
}

impl Backend for GithubBackend {
    fn handle<'a>(&'a self, req: &'a LogicalRequest, store: &'a dyn Store) -> BackendFuture<'a, LogicalResponse> {
        Box::pin(async move {
            use Operation::*;
            if let Some(role) = roles::route(&req.path, req.op) {
                return match role? {
                    RoleOp::List => roles::list(store).await,
                    RoleOp::Read(name) => {
                        let role: Value = roles::load(store, name).await?.ok_or(VaultError::NotFound)?;
                        Ok(LogicalResponse::data(role))
                    }
                    RoleOp::Write(name) => {
                        self.write_role(name, &req.data, store).await?;
                        Ok(LogicalResponse::no_content())
                    }
                    RoleOp::Delete(name) => roles::delete(store, name).await,
                };
            }
            let path = req.path.trim_end_matches('/');
            match (path, req.op) {
                ("config", Create | Update) => {
                    self.write_config(&req.data, store).await?;
                    Ok(LogicalResponse::no_content())
                }
                ("config", Read) => {
                    let c = self.config(store).await?;
                    Ok(LogicalResponse::data(
                        json!({ "app_id": c.app_id, "base_url": c.base_url }),
                    ))
                }
                (p, Read | Create | Update) if p.starts_with("token/") => self.mint(req, store, &p[6..]).await,
                _ => Err(VaultError::UnsupportedPath),
            }
        })
    }

    fn exists<'a>(&'a self, path: &'a str, store: &'a dyn Store) -> BackendFuture<'a, bool> {
        Box::pin(async move {
            if path.starts_with("token/") {
                return Ok(true);
            }
            Ok(store.get(path).await?.is_some())
        })
    }

    fn revoke<'a>(&'a self, lease: &'a Lease, store: &'a dyn Store) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let token = lease
                .internal
                .get("token")
                .unwrap_or(&Value::Null)
                .as_str()
                .unwrap_or_default();
            let cfg = self.config(store).await?;
            let gh = Self::client(&cfg.base_url)?
                .personal_token(token.to_string())
                .build()
                .map_err(|e| VaultError::Internal(format!("GitHub client: {e}")))?;
            let uri = format!("{}/installation/token", cfg.base_url);
            let resp = gh
                ._delete(uri.as_str(), None::<&()>)
                .await
                .map_err(|e| gh_failure(&cfg.base_url, "revoke the installation token", &e))?;
            let status = resp.status().as_u16();
            // 401: the token already expired or was revoked; either way it is dead.
            if status == 204 || status == 401 {
                Ok(())
            } else {
                Err(Upstream(format!(
                    "the GitHub API at {} answered {status} to DELETE /installation/token",
                    api_host(&cfg.base_url)
                )))
            }
        })
    }
}
