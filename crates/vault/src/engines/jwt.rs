//! The JWT/OIDC auth method (Vault's `jwt` paths: `config`, `role/:name`, `login`), for CI identity tokens such as
//! GitHub Actions' and GitLab CI's. A login presents a signed JWT and a role; the token is verified against the
//! issuer's keys (OIDC discovery, a JWKS URL, or static PEM keys) and the role's bindings, and the core then mints a
//! short-lived leakstop token with the role's policies, TTLs and the mapped claims as metadata.
//!
//! Every refusal names its reason (400): `alg: none`, an HMAC token where public keys are configured, wrong `iss`,
//! wrong or missing `aud`, expired or not yet valid, unknown `kid` after one rate-limited JWKS refresh, bad
//! signature, claims not matching the role, and a replayed `jti` where the role asks for replay protection.
//! JWKS are cached; an issuer that is down does not break logins with cached keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;

use super::jwt_sig::{VerifyKey, verify_jwt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::RwLock;

use crate::core::LoginSpec;
use crate::engines::kv::model::parse_duration;
use crate::sys::string_list as list;
use crate::{Backend, BackendFuture, BarrierView, LogicalRequest, LogicalResponse, Operation, VaultError};

/// How often cached keys are refreshed even when every `kid` is known.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// At most one refresh for an unknown `kid` per this interval (a flood of bogus kids cannot hammer the issuer).
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(5);

fn bad(msg: impl Into<String>) -> VaultError {
    VaultError::BadRequest(msg.into())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JwtConfig {
    #[serde(default)]
    pub oidc_discovery_url: String,
    #[serde(default)]
    pub jwks_url: String,
    #[serde(default)]
    pub jwt_validation_pubkeys: Vec<String>,
    #[serde(default)]
    pub bound_issuer: String,
    #[serde(default)]
    pub jwt_supported_algs: Vec<String>,
    #[serde(default)]
    pub default_role: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JwtRole {
    #[serde(default = "jwt_role_type")]
    pub role_type: String,
    #[serde(default)]
    pub user_claim: String,
    #[serde(default)]
    pub bound_audiences: Vec<String>,
    #[serde(default)]
    pub bound_subject: String,
    #[serde(default)]
    pub bound_claims: BTreeMap<String, Value>,
    /// `string` (exact) or `glob` (`*` wildcards).
    #[serde(default = "string_type")]
    pub bound_claims_type: String,
    #[serde(default)]
    pub claim_mappings: BTreeMap<String, String>,
    #[serde(default)]
    pub token_ttl: u64,
    #[serde(default)]
    pub token_max_ttl: u64,
    #[serde(default)]
    pub token_policies: Vec<String>,
    #[serde(default)]
    pub token_num_uses: u64,
    #[serde(default)]
    pub token_no_default_policy: bool,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway")]
    pub clock_skew_leeway: u64,
    /// leakstop extension: refuse a second login with the same `jti` (until the token expires).
    #[serde(default)]
    pub replay_protection: bool,
}

fn jwt_role_type() -> String {
    "jwt".into()
}

fn string_type() -> String {
    "string".into()
}

fn default_leeway() -> u64 {
    60
}

struct Jwks {
    url: String,
    set: Option<JwkSet>,
    fetched: Option<Instant>,
    last_unknown_refresh: Option<Instant>,
}

pub struct JwtBackend {
    http: reqwest::Client,
    jwks: RwLock<Jwks>,
    /// `jti` values seen recently (with their expiry), for replay protection without a storage race.
    seen_jti: Mutex<HashMap<String, i64>>,
}

impl JwtBackend {
    pub fn new() -> Arc<JwtBackend> {
        Arc::new(JwtBackend {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            jwks: RwLock::new(Jwks {
                url: String::new(),
                set: None,
                fetched: None,
                last_unknown_refresh: None,
            }),
            seen_jti: Mutex::default(),
        })
    }

    async fn config(&self, store: &BarrierView) -> Result<JwtConfig, VaultError> {
        match store.get("config").await? {
            Some(b) => Ok(serde_json::from_slice(&b)?),
            None => Err(bad(
                "the JWT auth method is not configured: write auth/<mount>/config first",
            )),
        }
    }

    async fn role(&self, store: &BarrierView, name: &str) -> Result<Option<JwtRole>, VaultError> {
        match store.get(&format!("role/{name}")).await? {
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    /// GET `url` and decode it; errors name `what` and the URL.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, VaultError> {
        self.http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| bad(format!("cannot fetch {what} {url}: {e}")))?
            .json()
            .await
            .map_err(|e| bad(format!("{what} at {url} could not be decoded: {e}")))
    }

    async fn resolve_jwks_url(&self, cfg: &JwtConfig) -> Result<String, VaultError> {
        if !cfg.jwks_url.is_empty() {
            return Ok(cfg.jwks_url.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            cfg.oidc_discovery_url.trim_end_matches('/')
        );
        let doc: Value = self.get_json(&url, "the OIDC discovery document").await?;
        doc.get("jwks_uri")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| bad(format!("the OIDC discovery document {url} has no jwks_uri")))
    }

    async fn fetch_jwks(&self, cfg: &JwtConfig) -> Result<(), VaultError> {
        let url = self.resolve_jwks_url(cfg).await?;
        let set: JwkSet = self.get_json(&url, "the JWKS").await?;
        let mut j = self.jwks.write().await;
        j.url = url;
        j.set = Some(set);
        j.fetched = Some(Instant::now());
        Ok(())
    }

    /// The key for `kid`: from the cache, refreshed when stale (failures keep the cached keys) or, once per
    /// interval, when the `kid` is unknown (the issuer rotated its keys).
    async fn key_for(&self, cfg: &JwtConfig, kid: Option<&str>, alg: Algorithm) -> Result<VerifyKey, VaultError> {
        let stale = {
            let j = self.jwks.read().await;
            j.set.is_none() || j.fetched.is_none_or(|t| t.elapsed() > JWKS_MAX_AGE)
        };
        if stale && let Err(e) = self.fetch_jwks(cfg).await {
            if self.jwks.read().await.set.is_none() {
                return Err(e);
            }
            tracing::warn!(error = %e, "JWKS refresh failed; using cached keys");
        }
        if let Some(k) = self.lookup(kid, alg).await? {
            return Ok(k);
        }
        let may_refresh = {
            let mut j = self.jwks.write().await;
            let ok = j
                .last_unknown_refresh
                .is_none_or(|t| t.elapsed() >= UNKNOWN_KID_REFRESH);
            if ok {
                j.last_unknown_refresh = Some(Instant::now());
            }
            ok
        };
        if may_refresh {
            self.fetch_jwks(cfg).await?;
            if let Some(k) = self.lookup(kid, alg).await? {
                return Ok(k);
            }
        }
        Err(bad(format!(
            "unknown signing key id (kid) {:?}: not in the issuer's JWKS, even after a refresh",
            kid.unwrap_or("")
        )))
    }

    async fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<Option<VerifyKey>, VaultError> {
        let j = self.jwks.read().await;
        let Some(set) = &j.set else { return Ok(None) };
        let jwk = match kid {
            Some(k) => set.find(k),
            // No kid: only unambiguous with a single key.
            None if set.keys.len() == 1 => set.keys.first(),
            None => None,
        };
        let Some(jwk) = jwk else { return Ok(None) };
        let key = VerifyKey::from_jwk(jwk).map_err(|e| bad(format!("the issuer's key {kid:?} is unusable: {e}")))?;
        if !key.fits(alg) {
            return Err(bad(format!(
                "the token's alg {alg:?} does not fit the key {kid:?} it names"
            )));
        }
        Ok(Some(key))
    }

    async fn login(&self, req: &LogicalRequest, store: &BarrierView) -> Result<LogicalResponse, VaultError> {
        let cfg = self.config(store).await?;
        let role_name = req
            .data
            .get("role")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .unwrap_or(&cfg.default_role)
            .to_string();
        if role_name.is_empty() {
            return Err(bad("missing role: pass `role` (no default_role is configured)"));
        }
        let role = self
            .role(store, &role_name)
            .await?
            .ok_or_else(|| bad(format!("role {role_name:?} could not be found")))?;
        let jwt = req
            .data
            .get("jwt")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty())
            .ok_or_else(|| bad("missing `jwt`"))?;
        let claims = self.verify(&cfg, &role, jwt, req.now).await?;
        let now = unix(req.now);
        if role.replay_protection {
            let jti = claims
                .get("jti")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("this role requires a `jti` claim (replay protection)"))?;
            let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now + 3600);
            let key = format!(
                "jti/{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(jti.as_bytes()))
            );
            let replayed = {
                let mut seen = self.seen_jti.lock().unwrap_or_else(|e| e.into_inner());
                seen.retain(|_, e| *e + role.clock_skew_leeway as i64 >= now);
                seen.insert(key.clone(), exp).is_some()
            };
            if replayed {
                return Err(bad("token replayed: this `jti` was already used to log in"));
            }
            if store.get(&key).await?.is_some() {
                return Err(bad("token replayed: this `jti` was already used to log in"));
            }
            store.put(&key, exp.to_string().as_bytes()).await?;
        }
        let user_claim = if role.user_claim.is_empty() {
            "sub"
        } else {
            role.user_claim.as_str()
        };
        let user = claim_string(&claims, user_claim)
            .ok_or_else(|| bad(format!("the token has no `{user_claim}` claim (the role's user_claim)")))?;
        let mut metadata = BTreeMap::new();
        metadata.insert("role".to_string(), role_name.clone());
        for (claim, key) in &role.claim_mappings {
            if let Some(v) = claim_string(&claims, claim) {
                metadata.insert(key.clone(), v);
            }
        }
        let spec = LoginSpec {
            policies: role.token_policies.clone(),
            metadata,
            display_name: format!("jwt-{user}"),
            path: req.path.clone(),
            ttl: role.token_ttl,
            max_ttl: role.token_max_ttl,
            num_uses: role.token_num_uses,
            no_default_policy: role.token_no_default_policy,
        };
        Ok(LogicalResponse {
            auth: Some(serde_json::to_value(spec)?),
            ..Default::default()
        })
    }

    /// Verify signature and standard claims, then the role's bindings. Returns the claims.
    async fn verify(
        &self,
        cfg: &JwtConfig,
        role: &JwtRole,
        jwt: &str,
        now: SystemTime,
    ) -> Result<Map<String, Value>, VaultError> {
        let header_b64 = jwt.split('.').next().unwrap_or_default();
        let header: Value = B64URL
            .decode(header_b64.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("the jwt is malformed: its header is not base64url JSON"))?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or_default();
        if alg_name.eq_ignore_ascii_case("none") || alg_name.is_empty() {
            return Err(bad("unsigned tokens (alg: none) are refused"));
        }
        if alg_name.starts_with("HS") {
            return Err(bad(format!(
                "{alg_name} (HMAC) tokens are refused: this auth method verifies with the issuer's public keys"
            )));
        }
        let allowed: Vec<String> = if cfg.jwt_supported_algs.is_empty() {
            vec!["RS256".into(), "ES256".into()]
        } else {
            cfg.jwt_supported_algs.clone()
        };
        if !allowed.iter().any(|a| a == alg_name) {
            return Err(bad(format!(
                "token algorithm {alg_name} is not allowed (allowed: {})",
                allowed.join(", ")
            )));
        }
        let alg: Algorithm = alg_name
            .parse()
            .map_err(|_| bad(format!("unsupported token algorithm {alg_name}")))?;
        let kid = header.get("kid").and_then(Value::as_str);

        let claims: Map<String, Value> = if !cfg.jwt_validation_pubkeys.is_empty() {
            let mut found = None;
            for pem in &cfg.jwt_validation_pubkeys {
                let Ok(key) = VerifyKey::from_pem(pem) else { continue };
                if key.fits(alg)
                    && let Ok(c) = verify_jwt(jwt, &key, alg)
                {
                    found = Some(c);
                    break;
                }
            }
            found.ok_or_else(|| bad("signature verification failed: no configured key verifies the token"))?
        } else {
            let key = self.key_for(cfg, kid, alg).await?;
            verify_jwt(jwt, &key, alg).map_err(|e| bad(format!("signature verification failed: {e}")))?
        };

        if !cfg.bound_issuer.is_empty() {
            let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
            if iss != cfg.bound_issuer {
                return Err(bad(format!(
                    "invalid issuer (iss) {iss:?}: expected {:?}",
                    cfg.bound_issuer
                )));
            }
        }
        let now = unix(now);
        let leeway = role.clock_skew_leeway as i64;
        match claims.get("exp").and_then(Value::as_i64) {
            None => return Err(bad("the token has no expiry (exp claim)")),
            Some(exp) if exp + leeway < now => return Err(bad(format!("the token expired {} s ago", now - exp))),
            _ => {}
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
            && nbf - leeway > now
        {
            return Err(bad(format!(
                "the token is not valid yet (nbf is {} s in the future)",
                nbf - now
            )));
        }
        if let Some(iat) = claims.get("iat").and_then(Value::as_i64)
            && iat - leeway > now
        {
            return Err(bad(
                "the token was issued in the future (iat): check the issuer's clock",
            ));
        }
        if !role.bound_audiences.is_empty() {
            let auds: Vec<&str> = match claims.get("aud") {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => return Err(bad("the token has no audience (aud claim) and the role requires one")),
            };
            if !auds.iter().any(|a| role.bound_audiences.iter().any(|b| b == a)) {
                return Err(bad(format!(
                    "audience (aud) {auds:?} does not match the role's bound_audiences {:?}",
                    role.bound_audiences
                )));
            }
        }
        if !role.bound_subject.is_empty() {
            let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
            if sub != role.bound_subject {
                return Err(bad(format!(
                    "subject (sub) {sub:?} does not match the role's bound_subject"
                )));
            }
        }
        let glob = role.bound_claims_type == "glob";
        for (claim, want) in &role.bound_claims {
            let got = claim_string(&claims, claim)
                .ok_or_else(|| bad(format!("claim {claim:?} is missing (bound_claims)")))?;
            let options: Vec<&str> = match want {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !options
                .iter()
                .any(|o| if glob { glob_match(o, &got) } else { *o == got })
            {
                return Err(bad(format!(
                    "claim {claim:?} value {got:?} does not match the role's bound_claims"
                )));
            }
        }
        Ok(claims)
    }

    async fn write_config(&self, data: &Map<String, Value>, store: &BarrierView) -> Result<(), VaultError> {
        let mut cfg: JwtConfig = store
            .get("config")
            .await?
            .map(|b| serde_json::from_slice(&b))
            .transpose()?
            .unwrap_or_default();
        let s = |k: &str| data.get(k).and_then(Value::as_str).map(String::from);
        if let Some(v) = s("oidc_discovery_url") {
            cfg.oidc_discovery_url = v;
        }
        if let Some(v) = s("jwks_url") {
            cfg.jwks_url = v;
        }
        if let Some(v) = s("bound_issuer") {
            cfg.bound_issuer = v;
        }
        if let Some(v) = s("default_role") {
            cfg.default_role = v;
        }
        if let Some(v) = list(data, "jwt_validation_pubkeys")? {
            cfg.jwt_validation_pubkeys = v;
        }
        if let Some(v) = list(data, "jwt_supported_algs")? {
            for a in &v {
                if a.starts_with("HS") || a.parse::<Algorithm>().is_err() {
                    return Err(bad(format!(
                        "jwt_supported_algs: {a:?} is not a supported public-key algorithm"
                    )));
                }
            }
            cfg.jwt_supported_algs = v;
        }
        let sources = [
            !cfg.oidc_discovery_url.is_empty(),
            !cfg.jwks_url.is_empty(),
            !cfg.jwt_validation_pubkeys.is_empty(),
        ];
        if sources.iter().filter(|b| **b).count() != 1 {
            return Err(bad(
                "set exactly one of oidc_discovery_url, jwks_url and jwt_validation_pubkeys",
            ));
        }
        for pem in &cfg.jwt_validation_pubkeys {
            if VerifyKey::from_pem(pem).is_err() {
                return Err(bad(
                    "jwt_validation_pubkeys: an entry is not a PEM RSA or EC public key",
                ));
            }
        }
        store.put("config", &serde_json::to_vec(&cfg)?).await?;
        let mut j = self.jwks.write().await;
        j.set = None;
        j.fetched = None;
        Ok(())
    }

    async fn write_role(&self, name: &str, data: &Map<String, Value>, store: &BarrierView) -> Result<(), VaultError> {
        let mut role = self.role(store, name).await?.unwrap_or(JwtRole {
            role_type: "jwt".into(),
            bound_claims_type: string_type(),
            clock_skew_leeway: default_leeway(),
            ..Default::default()
        });
        let dur = |k: &str| -> Result<Option<u64>, VaultError> {
            data.get(k)
                .map(|v| parse_duration(v, k).map_err(|e| bad(e.to_string())))
                .transpose()
        };
        if let Some(v) = data.get("role_type").and_then(Value::as_str) {
            if v != "jwt" {
                return Err(bad(format!("role_type {v:?} is not supported; use \"jwt\"")));
            }
            role.role_type = v.into();
        }
        if let Some(v) = data.get("user_claim").and_then(Value::as_str) {
            role.user_claim = v.into();
        }
        if let Some(v) = list(data, "bound_audiences")? {
            role.bound_audiences = v;
        }
        if let Some(v) = data.get("bound_subject").and_then(Value::as_str) {
            role.bound_subject = v.into();
        }
        if let Some(v) = data.get("bound_claims_type").and_then(Value::as_str) {
            if v != "string" && v != "glob" {
                return Err(bad("bound_claims_type must be \"string\" or \"glob\""));
            }
            role.bound_claims_type = v.into();
        }
        if let Some(v) = data.get("bound_claims") {
            let m = v
                .as_object()
                .ok_or_else(|| bad("bound_claims must be an object of claim: value (or list)"))?;
            role.bound_claims = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        if let Some(v) = data.get("claim_mappings") {
            let m = v
                .as_object()
                .ok_or_else(|| bad("claim_mappings must be an object of claim: metadata key"))?;
            role.claim_mappings = m
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|s| (k.clone(), s.to_string()))
                        .ok_or_else(|| bad("claim_mappings values must be strings"))
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = dur("token_ttl")?.or(dur("ttl")?) {
            role.token_ttl = v;
        }
        if let Some(v) = dur("token_max_ttl")?.or(dur("max_ttl")?) {
            role.token_max_ttl = v;
        }
        if let Some(v) = list(data, "token_policies")?.or(list(data, "policies")?) {
            role.token_policies = v;
        }
        if let Some(v) = data.get("token_num_uses").and_then(Value::as_u64) {
            role.token_num_uses = v;
        }
        if let Some(v) = data.get("token_no_default_policy").and_then(Value::as_bool) {
            role.token_no_default_policy = v;
        }
        if let Some(v) = dur("clock_skew_leeway")? {
            role.clock_skew_leeway = v;
        }
        if let Some(v) = data.get("replay_protection").and_then(Value::as_bool) {
            role.replay_protection = v;
        }
        if role.bound_audiences.is_empty() && role.bound_subject.is_empty() && role.bound_claims.is_empty() {
            return Err(bad(
                "a role must bind something: set bound_audiences (and preferably bound_claims on immutable ids such as repository_id)",
            ));
        }
        if role.token_max_ttl > 0 && role.token_ttl > role.token_max_ttl {
            return Err(bad("token_ttl cannot be longer than token_max_ttl"));
        }
        store.put(&format!("role/{name}"), &serde_json::to_vec(&role)?).await
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A claim as a string (numbers and booleans too: GitHub's `repository_id` is a string, GitLab's `project_id` too,
/// but other issuers send numbers). Nested claims with `/` as in Vault (`/nested/claim`).
fn claim_string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    let v = if let Some(path) = name.strip_prefix('/') {
        let mut cur = claims.get(path.split('/').next()?)?;
        for seg in path.split('/').skip(1) {
            cur = cur.get(seg)?;
        }
        cur
    } else {
        claims.get(name)?
    };
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `*` matches any run of characters (including `/`), everything else literally.
fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else { return false };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

impl Backend for JwtBackend {
    // Only the login itself: roles and config are managed with a token, like any other path.
    fn unauthenticated_paths(&self) -> &'static [&'static str] {
        &["login"]
    }

    // Config, roles and replay records go through the view; the login's token is committed by the core with them.
    fn effects_buffered(&self) -> bool {
        true
    }

    fn handle<'a>(&'a self, req: &'a LogicalRequest, store: &'a BarrierView) -> BackendFuture<'a, LogicalResponse> {
        Box::pin(async move {
            use Operation::*;
            let path = req.path.trim_end_matches('/');
            match (path, req.op) {
                ("login", Create | Update) => self.login(req, store).await,
                ("config", Create | Update) => {
                    self.write_config(&req.data, store).await?;
                    Ok(LogicalResponse::no_content())
                }
                ("config", Read) => {
                    let cfg = self.config(store).await?;
                    Ok(LogicalResponse::data(serde_json::to_value(cfg)?))
                }
                ("role", List) => LogicalResponse::keys(store.list("role/").await?),
                (p, op) if p.starts_with("role/") => {
                    let name = &p[5..];
                    if name.is_empty() || name.contains('/') {
                        return Err(bad("invalid role name"));
                    }
                    match op {
                        Create | Update => {
                            self.write_role(name, &req.data, store).await?;
                            Ok(LogicalResponse::no_content())
                        }
                        Read => {
                            let role = self.role(store, name).await?.ok_or(VaultError::NotFound)?;
                            let mut v = serde_json::to_value(&role)?;
                            v["policies"] = json!(role.token_policies);
                            Ok(LogicalResponse::data(v))
                        }
                        Delete => {
                            store.delete(&format!("role/{name}")).await?;
                            Ok(LogicalResponse::no_content())
                        }
                        _ => Err(VaultError::UnsupportedOperation),
                    }
                }
                _ => Err(VaultError::UnsupportedPath),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_matches_like_vault_bound_claims() {
        assert!(glob_match("octo-org/*", "octo-org/app"));
        assert!(glob_match("refs/heads/release-*", "refs/heads/release-1.2"));
        assert!(!glob_match("refs/heads/main", "refs/heads/main2"));
        assert!(glob_match(
            "*@refs/heads/main",
            "octo/app/.github/workflows/d.yml@refs/heads/main"
        ));
        assert!(!glob_match("octo-org/*", "evil-org/app"));
    }
}
