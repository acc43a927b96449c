//! The GitHub token broker (the octo-sts idea): a secrets engine holding a GitHub App's id and private key (sealed
//! in the barrier like every secret) and roles that say which repositories and permissions a caller may get.
//! `github/token/:role` mints an installation access token through octocrab, scoped down to the role, records it
//! as a lease owned by the caller's token, and revokes it at GitHub (`DELETE /installation/token`) when the lease
//! is revoked, expires, or its token is revoked.

use std::collections::BTreeMap;
use std::sync::Arc;

use octocrab::Octocrab;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::engines::kv::model::parse_duration;
use crate::leases::Lease;
use crate::{Backend, BackendFuture, BarrierView, LogicalRequest, LogicalResponse, Operation, VaultError};

/// GitHub installation tokens live one hour; a lease never outlives its token.
const GITHUB_TOKEN_LIFETIME: u64 = 3600;

/// GitHub's own message and status, not octocrab's bare variant name.
fn gh_err(e: &octocrab::Error) -> String {
    match e {
        octocrab::Error::GitHub { source, .. } => format!("{} {}", source.status_code, source.message),
        other => other.to_string(),
    }
}

fn bad(msg: impl Into<String>) -> VaultError {
    VaultError::BadRequest(msg.into())
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

pub struct GithubBackend {
    core: std::sync::Weak<crate::core::Core>,
}

impl GithubBackend {
    pub fn new(core: &Arc<crate::core::Core>) -> Arc<GithubBackend> {
        Arc::new(GithubBackend {
            core: Arc::downgrade(core),
        })
    }

    async fn config(&self, store: &BarrierView) -> Result<GithubConfig, VaultError> {
        let b = store.get("config").await?.ok_or_else(|| {
            bad("the github engine is not configured: write github/config with app_id and private_key")
        })?;
        Ok(serde_json::from_slice(&b)?)
    }

    fn app_client(cfg: &GithubConfig) -> Result<Octocrab, VaultError> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(cfg.private_key.as_bytes())
            .map_err(|e| bad(format!("the GitHub App private key is not an RSA PEM key: {e}")))?;
        Octocrab::builder()
            .base_uri(cfg.base_url.as_str())
            .map_err(|e| bad(format!("base_url {}: {e}", cfg.base_url)))?
            .app(octocrab::models::AppId(cfg.app_id), key)
            .build()
            .map_err(|e| VaultError::Internal(format!("GitHub client: {e}")))
    }

    async fn mint(
        &self,
        req: &LogicalRequest,
        store: &BarrierView,
        role_name: &str,
    ) -> Result<LogicalResponse, VaultError> {
        let cfg = self.config(store).await?;
        let role: GithubRole = match store.get(&format!("role/{role_name}")).await? {
            Some(b) => serde_json::from_slice(&b)?,
            None => return Err(bad(format!("role {role_name:?} could not be found"))),
        };
        let gh = Self::app_client(&cfg)?;
        let installation_id = match role.installation_id {
            Some(id) => id,
            None => {
                let first = role
                    .repositories
                    .first()
                    .ok_or_else(|| bad("the role names no repository"))?;
                let inst: Value = gh
                    .get(format!("/repos/{}/{}/installation", role.owner, first), None::<&()>)
                    .await
                    .map_err(|e| {
                        bad(format!(
                            "the GitHub App is not installed on {}/{first}: {}",
                            role.owner,
                            gh_err(&e)
                        ))
                    })?;
                inst["id"]
                    .as_u64()
                    .ok_or_else(|| VaultError::Internal("installation answer has no id".into()))?
            }
        };
        let body = json!({ "repositories": role.repositories, "permissions": role.permissions });
        let tok: Value = gh
            .post(
                format!("/app/installations/{installation_id}/access_tokens"),
                Some(&body),
            )
            .await
            .map_err(|e| {
                VaultError::Internal(format!(
                    "GitHub refused to create the installation token: {}",
                    gh_err(&e)
                ))
            })?;
        let token = tok["token"]
            .as_str()
            .ok_or_else(|| VaultError::Internal("GitHub answered without a token".into()))?;
        let now = req
            .now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let ttl = role.ttl.clamp(1, GITHUB_TOKEN_LIFETIME);
        let lease_id = format!(
            "{}token/{role_name}/{}",
            req.mount_path,
            hex::encode(rand::random::<[u8; 12]>())
        );
        let lease = Lease {
            id: lease_id.clone(),
            mount: req.mount_path.clone(),
            internal: json!({ "token": token, "installation_id": installation_id }),
            expire_time: now + ttl as i64,
            token_hash: req.token_hash.clone(),
        };
        let core = self.core.upgrade().ok_or(VaultError::Sealed)?;
        crate::leases::record(&core, &lease)?;
        let repos: Vec<Value> = tok["repositories"]
            .as_array()
            .map(|a| a.iter().map(|r| r["full_name"].clone()).collect())
            .unwrap_or_default();
        Ok(LogicalResponse {
            data: Some(json!({
                "token": token,
                "expires_at": tok["expires_at"],
                "permissions": tok["permissions"],
                "repositories": repos,
                "installation_id": installation_id,
            })),
            lease_id: Some(lease_id),
            lease_duration: ttl,
            renewable: false,
            ..Default::default()
        })
    }

    async fn write_config(&self, data: &Map<String, Value>, store: &BarrierView) -> Result<(), VaultError> {
        let old: Option<GithubConfig> = store
            .get("config")
            .await?
            .map(|b| serde_json::from_slice(&b))
            .transpose()?;
        let app_id = match data.get("app_id") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => old.as_ref().map(|o| o.app_id),
        }
        .ok_or_else(|| bad("app_id is required (the GitHub App's numeric id)"))?;
        let private_key = data
            .get("private_key")
            .and_then(Value::as_str)
            .map(String::from)
            .or(old.as_ref().map(|o| o.private_key.clone()))
            .ok_or_else(|| bad("private_key is required (the GitHub App's PEM private key)"))?;
        jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes())
            .map_err(|_| bad("private_key is not a PEM RSA private key (GitHub App keys are RSA)"))?;
        let base_url = data
            .get("base_url")
            .and_then(Value::as_str)
            .map(|s| s.trim_end_matches('/').to_string())
            .or(old.map(|o| o.base_url))
            .unwrap_or_else(|| "https://api.github.com".into());
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

    async fn write_role(&self, name: &str, data: &Map<String, Value>, store: &BarrierView) -> Result<(), VaultError> {
        let owner = data
            .get("owner")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("owner is required"))?;
        let repositories: Vec<String> = match data.get("repositories") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(String::from).collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            _ => vec![],
        };
        if repositories.is_empty() {
            return Err(bad(
                "repositories is required: the repositories (names without owner) a token may reach",
            ));
        }
        let permissions: BTreeMap<String, String> = match data.get("permissions") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(l @ ("read" | "write")) => Ok((k.clone(), l.to_string())),
                    _ => Err(bad(format!("permission {k}: the level must be \"read\" or \"write\""))),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad("permissions is required, e.g. {\"contents\": \"read\"}")),
        };
        let ttl = match data.get("ttl") {
            Some(v) => parse_duration(v, "ttl").map_err(|e| bad(e.to_string()))?,
            None => 600,
        };
        if ttl > GITHUB_TOKEN_LIFETIME {
            return Err(bad(
                "ttl cannot exceed 1h: GitHub installation tokens expire after one hour",
            ));
        }
        let installation_id = data.get("installation_id").and_then(Value::as_u64);
        let role = GithubRole {
            owner: owner.into(),
            installation_id,
            repositories,
            permissions,
            ttl,
        };
        store.put(&format!("role/{name}"), &serde_json::to_vec(&role)?).await
    }
}

impl Backend for GithubBackend {
    fn handle<'a>(&'a self, req: &'a LogicalRequest, store: &'a BarrierView) -> BackendFuture<'a, LogicalResponse> {
        Box::pin(async move {
            use Operation::*;
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
                ("role", List) => LogicalResponse::keys(store.list("role/").await?),
                (p, op) if p.starts_with("role/") => {
                    let name = &p[5..];
                    match op {
                        Create | Update => {
                            self.write_role(name, &req.data, store).await?;
                            Ok(LogicalResponse::no_content())
                        }
                        Read => {
                            let b = store.get(&format!("role/{name}")).await?.ok_or(VaultError::NotFound)?;
                            let r: Value = serde_json::from_slice(&b)?;
                            Ok(LogicalResponse::data(r))
                        }
                        Delete => {
                            store.delete(&format!("role/{name}")).await?;
                            Ok(LogicalResponse::no_content())
                        }
                        _ => Err(VaultError::UnsupportedOperation),
                    }
                }
                (p, Read | Create | Update) if p.starts_with("token/") => self.mint(req, store, &p[6..]).await,
                _ => Err(VaultError::UnsupportedPath),
            }
        })
    }

    fn exists<'a>(&'a self, path: &'a str, store: &'a BarrierView) -> BackendFuture<'a, bool> {
        Box::pin(async move {
            if path.starts_with("token/") {
                return Ok(true);
            }
            Ok(store.get(path).await?.is_some())
        })
    }

    fn revoke<'a>(&'a self, lease: &'a Lease) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let token = lease.internal["token"].as_str().unwrap_or_default();
            let core = self.core.upgrade().ok_or(VaultError::Sealed)?;
            let st = core.unsealed()?;
            let mount = st
                .mounts
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|m| m.entry.path == lease.mount)
                .map(|m| m.entry.uuid.clone())
                .ok_or_else(|| VaultError::Internal(format!("mount {} is gone", lease.mount)))?;
            let view = BarrierView::new(st.barrier.clone(), format!("logical/{mount}/"));
            let cfg = self.config(&view).await?;
            let gh = Octocrab::builder()
                .base_uri(cfg.base_url.as_str())
                .map_err(|e| VaultError::Internal(e.to_string()))?
                .personal_token(token.to_string())
                .build()
                .map_err(|e| VaultError::Internal(e.to_string()))?;
            let uri = format!("{}/installation/token", cfg.base_url);
            let resp = gh
                ._delete(uri.as_str(), None::<&()>)
                .await
                .map_err(|e| VaultError::Internal(format!("revoking the GitHub token failed: {}", gh_err(&e))))?;
            let status = resp.status().as_u16();
            // 401: the token already expired or was revoked; either way it is dead.
            if status == 204 || status == 401 {
                Ok(())
            } else {
                Err(VaultError::Internal(format!(
                    "GitHub answered {status} to DELETE /installation/token"
                )))
            }
        })
    }
}
