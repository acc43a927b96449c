//! The JWT/OIDC auth method (Vault's `jwt` paths: `config`, `role/:name`, `login`), for CI identity tokens such as
//! GitHub Actions' and GitLab CI's. A login presents a signed JWT and a role; the token is verified against the
//! issuer's keys (OIDC discovery, a JWKS URL, or static PEM keys) and the role's bindings, and the core then mints a
//! short-lived leakstop token with the role's policies, TTLs and the mapped claims as metadata.
//!
//! Only `login` is reachable without a token. Its refusals are 400s that name a category (`alg: none`, HMAC
//! tokens, issuer, audience, expiry, unknown `kid`, signature, a claim that does not match, a replayed `jti`) but
//! never the auth method's configuration (bound audiences, issuer, key URLs): the caller is unauthenticated, so
//! the details go to the debug log only.
//!
//! Keys: JWKS are cached and refreshed by one request at a time (concurrent logins wait for it and share its
//! answer), at most once per interval for an unknown `kid`, with exponential backoff while the issuer fails; an
//! issuer that is down does not break logins with cached keys. Bodies are capped and fetches time out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

mod sig;

use crate::VaultError::BadRequest;
use crate::core::MountEntry;
use crate::engine::{LoginSpec, Store, unix_seconds as unix};
use crate::engines::roles::{self, RoleOp};
use crate::fields::Fields;
use crate::token::SYSTEM_MAX_TTL;
use crate::{Backend, BackendFuture, LogicalRequest, LogicalResponse, Operation, VaultError};
use sig::{VerifyKey, verify_jwt};

/// How often cached keys are refreshed even when every `kid` is known.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// At most one refresh for an unknown `kid` per this interval (a flood of bogus kids cannot hammer the issuer).
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(5);
/// After a failed fetch, the next waits this long, doubling per failure up to [`FETCH_BACKOFF_MAX`].
const FETCH_BACKOFF: Duration = Duration::from_secs(2);
const FETCH_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A whole discovery or JWKS fetch (connect, headers, body).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Discovery documents and JWKS are a few KiB; anything this large is not one.
const MAX_FETCH_BODY: usize = 1 << 20;
/// Replay records past their expiry are deleted at most this often.
const JTI_PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// Vault's defaults for the leeways when a role leaves them at 0.
const DEFAULT_CLOCK_SKEW: u64 = 60;
const DEFAULT_EXP_NBF_LEEWAY: u64 = 150;

const NO_ROOT: &str = "auth methods cannot create root tokens";

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
    /// `user_claim` is a JSON pointer (`/nested/claim`) rather than a top-level claim name.
    #[serde(default)]
    pub user_claim_json_pointer: bool,
    #[serde(default)]
    pub bound_audiences: Vec<String>,
    #[serde(default)]
    pub bound_subject: String,
    /// Claim → a string or a list of strings (any one matches).
    #[serde(default)]
    pub bound_claims: BTreeMap<String, Value>,
    /// `string` (exact) or `glob` (`*` wildcards).
    #[serde(default = "string_type")]
    pub bound_claims_type: String,
    #[serde(default)]
    pub claim_mappings: BTreeMap<String, String>,
    /// A claim holding a list of group names, recorded in the token's metadata as `groups` (comma-separated).
    #[serde(default)]
    pub groups_claim: String,
    #[serde(default)]
    pub token_ttl: u64,
    #[serde(default)]
    pub token_max_ttl: u64,
    #[serde(default)]
    pub token_explicit_max_ttl: u64,
    #[serde(default)]
    pub token_period: u64,
    #[serde(default)]
    pub token_policies: Vec<String>,
    #[serde(default)]
    pub token_num_uses: u64,
    #[serde(default)]
    pub token_no_default_policy: bool,
    /// `service` or `default` (both give service tokens; batch tokens do not exist here).
    #[serde(default = "default_token_type")]
    pub token_type: String,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`, as Vault reads it: 0 means the default (60),
    /// -1 none.
    #[serde(default = "default_leeway")]
    pub clock_skew_leeway: i64,
    /// Extra seconds past `exp` (0: the default 150, -1: none).
    #[serde(default)]
    pub expiration_leeway: i64,
    /// Extra seconds before `nbf` (0: the default 150, -1: none).
    #[serde(default)]
    pub not_before_leeway: i64,
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

fn default_token_type() -> String {
    "default".into()
}

fn default_leeway() -> i64 {
    DEFAULT_CLOCK_SKEW as i64
}

/// A leeway as Vault reads it: negative disables it, 0 takes the default.
fn leeway(raw: i64, default: u64) -> i64 {
    match raw {
        r if r < 0 => 0,
        0 => default as i64,
        r => r,
    }
}

impl JwtRole {
    fn exp_leeway(&self) -> i64 {
        leeway(self.clock_skew_leeway, DEFAULT_CLOCK_SKEW)
            .saturating_add(leeway(self.expiration_leeway, DEFAULT_EXP_NBF_LEEWAY))
    }

    fn nbf_leeway(&self) -> i64 {
        leeway(self.clock_skew_leeway, DEFAULT_CLOCK_SKEW)
            .saturating_add(leeway(self.not_before_leeway, DEFAULT_EXP_NBF_LEEWAY))
    }
}

/// Role names end up in storage keys and URLs: a conservative alphabet, no `.`/`..` segments.
/// The issuer's keys, as last fetched, and the state of the fetching.
#[derive(Default)]
struct KeyCache {
    set: Option<Arc<JwkSet>>,
    fetched: Option<Instant>,
    /// Bumped by every completed fetch attempt: a login that waited for another's fetch uses its result.
    generation: u64,
    failures: u32,
    last_failure: Option<Instant>,
    last_unknown_refresh: Option<Instant>,
}

impl KeyCache {
    fn fresh(&self) -> bool {
        self.fetched.is_some_and(|t| t.elapsed() <= JWKS_MAX_AGE)
    }

    fn backing_off(&self) -> bool {
        let wait = FETCH_BACKOFF
            .saturating_mul(1 << self.failures.saturating_sub(1).min(6))
            .min(FETCH_BACKOFF_MAX);
        self.failures > 0 && self.last_failure.is_some_and(|t| t.elapsed() < wait)
    }
}

pub struct JwtBackend {
    http: reqwest::Client,
    /// The mount's TTLs (0: the system's).
    mount_default_ttl: u64,
    mount_max_ttl: u64,
    keys: Mutex<KeyCache>,
    /// One fetch at a time; logins that need keys meanwhile wait for its result.
    refresh: tokio::sync::Mutex<()>,
    /// `jti` → until when it is spent (unix seconds), so two concurrent logins with one token cannot both pass
    /// the storage check.
    seen_jti: Mutex<HashMap<String, i64>>,
    last_jti_purge: Mutex<Option<Instant>>,
}

fn unavailable() -> VaultError {
    VaultError::Upstream("the issuer's signing keys could not be fetched; try again later".into())
}

impl JwtBackend {
    pub fn new(mount: &MountEntry) -> Arc<JwtBackend> {
        Arc::new(Self::with_fetch_timeout(
            mount.default_lease_ttl,
            mount.max_lease_ttl,
            FETCH_TIMEOUT,
        ))
    }

    fn with_fetch_timeout(mount_default_ttl: u64, mount_max_ttl: u64, timeout: Duration) -> JwtBackend {
        JwtBackend {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()
                .unwrap_or_default(),
            mount_default_ttl,
            mount_max_ttl,
            keys: Mutex::default(),
            refresh: tokio::sync::Mutex::new(()),
            seen_jti: Mutex::default(),
            last_jti_purge: Mutex::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn config(&self, store: &dyn Store) -> Result<JwtConfig, VaultError> {
        match store.get("config").await? {
            Some(b) => Ok(serde_json::from_slice(&b)?),
            None => Err(BadRequest(
                "the JWT auth method is not configured: write auth/<mount>/config first".into(),
            )),
        }
    }

    async fn role(&self, store: &dyn Store, name: &str) -> Result<Option<JwtRole>, VaultError> {
        roles::load(store, name).await
    }

    /// GET `url` and decode it, reading at most [`MAX_FETCH_BODY`] bytes. The error is for the server log.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("GET {url}: {e}"))?;
        if resp.content_length().is_some_and(|n| n > MAX_FETCH_BODY as u64) {
            return Err(format!("GET {url}: the body is larger than {MAX_FETCH_BODY} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_FETCH_BODY {
                return Err(format!("GET {url}: the body is larger than {MAX_FETCH_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not the expected JSON: {e}"))
    }

    async fn fetch_jwks(&self, cfg: &JwtConfig) -> Result<JwkSet, String> {
        let url = if cfg.jwks_url.is_empty() {
            let discovery = format!(
                "{}/.well-known/openid-configuration",
                cfg.oidc_discovery_url.trim_end_matches('/')
            );
            let doc: Value = self.get_json(&discovery).await?;
            doc.get("jwks_uri")
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| format!("the OIDC discovery document {discovery} has no jwks_uri"))?
        } else {
            cfg.jwks_url.clone()
        };
        self.get_json(&url).await
    }

    /// The key for `kid`: from the cache while it is fresh; otherwise after a refresh (one at a time, backing off
    /// while the issuer fails, at most once per interval for an unknown `kid`). Stale keys keep working while the
    /// issuer is down or another login is refreshing.
    async fn key_for(&self, cfg: &JwtConfig, kid: Option<&str>, alg: Algorithm) -> Result<VerifyKey, VaultError> {
        let (generation, stale_hit) = {
            let c = self.cache();
            let hit = c.set.as_deref().map(|s| lookup(s, kid, alg)).transpose()?.flatten();
            if let Some(k) = &hit
                && c.fresh()
            {
                return Ok(k.clone());
            }
            (c.generation, hit)
        };
        let _flight = match (stale_hit, self.refresh.try_lock()) {
            (_, Ok(g)) => g,
            // Someone is refreshing: a stale key beats waiting on the issuer.
            (Some(k), Err(_)) => return Ok(k),
            (None, Err(_)) => self.refresh.lock().await,
        };
        let fetch = {
            let mut c = self.cache();
            if c.generation != generation {
                // A fetch completed while this login waited: its answer is the one to use.
                false
            } else if c.backing_off() {
                false
            } else if c.set.is_none() || !c.fresh() {
                true
            } else if c
                .last_unknown_refresh
                .is_none_or(|t| t.elapsed() >= UNKNOWN_KID_REFRESH)
            {
                c.last_unknown_refresh = Some(Instant::now());
                true
            } else {
                false
            }
        };
        if fetch {
            let result = self.fetch_jwks(cfg).await;
            let mut c = self.cache();
            c.generation += 1;
            match result {
                Ok(set) => {
                    c.set = Some(Arc::new(set));
                    c.fetched = Some(Instant::now());
                    c.failures = 0;
                }
                Err(e) => {
                    c.failures = c.failures.saturating_add(1);
                    c.last_failure = Some(Instant::now());
                    tracing::warn!(error = %e, failures = c.failures, "fetching the issuer's JWKS failed");
                }
            }
        }
        let c = self.cache();
        let Some(set) = c.set.as_deref() else {
            return Err(unavailable());
        };
        lookup(set, kid, alg)?.ok_or_else(|| {
            BadRequest(format!(
                "unknown signing key id (kid) {:?}: not among the issuer's published keys",
                kid.unwrap_or("")
            ))
        })
    }

    async fn login(&self, req: &LogicalRequest, store: &dyn Store) -> Result<LogicalResponse, VaultError> {
        let mut f = Fields::new(&req.data);
        let role_name = f.string("role")?.unwrap_or_default();
        let jwt = f.required_string("jwt", ": the signed JWT to log in with")?;
        f.finish()?;
        let cfg = self.config(store).await?;
        let role_name = if role_name.is_empty() {
            cfg.default_role.clone()
        } else {
            role_name
        };
        if role_name.is_empty() {
            return Err(BadRequest(
                "missing role: pass `role` (no default_role is configured)".into(),
            ));
        }
        let not_found = || BadRequest(format!("role {role_name:?} could not be found"));
        if !roles::valid_name(&role_name) {
            return Err(not_found());
        }
        let role = self.role(store, &role_name).await?.ok_or_else(not_found)?;
        if role.token_policies.iter().any(|p| p == "root") {
            // Defense in depth: role writes refuse it, and so does the core.
            return Err(BadRequest(NO_ROOT.into()));
        }
        let claims = self.verify(&cfg, &role, &jwt, req.now).await?;

        let user = if role.user_claim_json_pointer {
            claim_at(&claims, &role.user_claim)
        } else {
            claims.get(if role.user_claim.is_empty() {
                "sub"
            } else {
                &role.user_claim
            })
        }
        .and_then(scalar_string)
        .ok_or_else(|| {
            BadRequest(format!(
                "the token has no usable `{}` claim (the role's user_claim)",
                if role.user_claim.is_empty() {
                    "sub"
                } else {
                    &role.user_claim
                }
            ))
        })?;
        let mut metadata = BTreeMap::new();
        metadata.insert("role".to_string(), role_name.clone());
        for (claim, key) in &role.claim_mappings {
            if let Some(v) = claim_string(&claims, claim) {
                metadata.insert(key.clone(), v);
            }
        }
        if !role.groups_claim.is_empty()
            && let Some(groups) = claim_at_or_name(&claims, &role.groups_claim)
        {
            let names: Vec<String> = match groups {
                Value::Array(a) => a.iter().filter_map(scalar_string).collect(),
                v => scalar_string(v).into_iter().collect(),
            };
            metadata.insert("groups".to_string(), names.join(","));
        }
        let (ttl, max_ttl) = self.token_ttls(&role);

        // Last: a token refused for any other reason must not spend its jti.
        if role.replay_protection {
            let jti = claims
                .get("jti")
                .and_then(Value::as_str)
                .filter(|j| !j.is_empty())
                .ok_or_else(|| BadRequest("this role requires a `jti` claim (replay protection)".into()))?;
            let exp = claims.get("exp").and_then(numeric_date).unwrap_or_default();
            self.spend_jti(store, jti, exp.saturating_add(role.exp_leeway()), unix(req.now))
                .await?;
        }
        let spec = LoginSpec {
            policies: role.token_policies.clone(),
            metadata,
            display_name: format!("jwt-{user}"),
            path: req.path.clone(),
            ttl,
            max_ttl,
            period: role.token_period,
            num_uses: role.token_num_uses,
            no_default_policy: role.token_no_default_policy,
        };
        Ok(LogicalResponse {
            login: Some(spec),
            ..Default::default()
        })
    }

    /// The token's TTL and hard limit: the role's, else the mount's, else the system's; never unbounded.
    fn token_ttls(&self, role: &JwtRole) -> (u64, u64) {
        let max = [role.token_max_ttl, role.token_explicit_max_ttl, self.mount_max_ttl]
            .into_iter()
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(0);
        let default = if self.mount_default_ttl > 0 {
            self.mount_default_ttl
        } else {
            SYSTEM_MAX_TTL
        };
        let ttl = [role.token_period, role.token_ttl]
            .into_iter()
            .find(|t| *t > 0)
            .unwrap_or(default);
        let cap = if max > 0 {
            max.min(SYSTEM_MAX_TTL)
        } else {
            SYSTEM_MAX_TTL
        };
        (ttl.min(cap), max)
    }

    /// Refuse a `jti` already spent (and not yet past `until`), else record it until then; expired records are
    /// purged now and then.
    async fn spend_jti(&self, store: &dyn Store, jti: &str, until: i64, now: i64) -> Result<(), VaultError> {
        let key = format!(
            "jti/{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(jti.as_bytes()))
        );
        let replayed = || BadRequest("token replayed: this `jti` was already used to log in".into());
        {
            let mut seen = self.seen_jti.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|_, t| *t >= now);
            if seen.insert(key.clone(), until).is_some() {
                return Err(replayed());
            }
        }
        if let Some(b) = store.get(&key).await?
            && record_until(&b) >= now
        {
            return Err(replayed());
        }
        store.put(&key, until.to_string().as_bytes()).await?;
        self.purge_jti(store, now).await
    }

    async fn purge_jti(&self, store: &dyn Store, now: i64) -> Result<(), VaultError> {
        {
            let mut last = self.last_jti_purge.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < JTI_PURGE_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        for name in store.list("jti/").await? {
            let key = format!("jti/{name}");
            if let Some(b) = store.get(&key).await?
                && record_until(&b) < now
            {
                store.delete(&key).await?;
            }
        }
        Ok(())
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
            .decode(header_b64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| BadRequest("the jwt is malformed: its header is not base64url JSON".into()))?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or_default();
        if alg_name.eq_ignore_ascii_case("none") || alg_name.is_empty() {
            return Err(BadRequest("unsigned tokens (alg: none) are refused".into()));
        }
        if alg_name.starts_with("HS") {
            return Err(BadRequest(format!(
                "{alg_name} (HMAC) tokens are refused: this auth method verifies with the issuer's public keys"
            )));
        }
        let allowed = |a: &str| {
            if cfg.jwt_supported_algs.is_empty() {
                a == "RS256" || a == "ES256"
            } else {
                cfg.jwt_supported_algs.iter().any(|s| s == a)
            }
        };
        if !allowed(alg_name) {
            return Err(BadRequest(format!(
                "token algorithm {alg_name} is not allowed by this auth method"
            )));
        }
        let alg: Algorithm = alg_name
            .parse()
            .map_err(|_| BadRequest(format!("unsupported token algorithm {alg_name}")))?;
        let kid = header.get("kid").and_then(Value::as_str);

        let sig_failed = |e: &str| {
            tracing::debug!(error = e, "JWT login: signature verification failed");
            BadRequest("signature verification failed".into())
        };
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
            found.ok_or_else(|| sig_failed("no configured key verifies the token"))?
        } else {
            let key = self.key_for(cfg, kid, alg).await?;
            verify_jwt(jwt, &key, alg).map_err(|e| sig_failed(&e))?
        };

        if !cfg.bound_issuer.is_empty() {
            let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
            if iss != cfg.bound_issuer {
                tracing::debug!(iss, expected = %cfg.bound_issuer, "JWT login: issuer mismatch");
                return Err(BadRequest(
                    "invalid issuer (iss claim): this auth method does not trust the token's issuer".into(),
                ));
            }
        }
        let now = unix(now);
        match claims.get("exp").and_then(numeric_date) {
            None => return Err(BadRequest("the token has no expiry (exp claim)".into())),
            Some(exp) if exp.saturating_add(role.exp_leeway()) < now => {
                return Err(BadRequest(format!(
                    "the token expired {} s ago",
                    now.saturating_sub(exp)
                )));
            }
            _ => {}
        }
        if let Some(nbf) = claims.get("nbf").and_then(numeric_date)
            && nbf.saturating_sub(role.nbf_leeway()) > now
        {
            return Err(BadRequest(format!(
                "the token is not valid yet (nbf is {} s in the future)",
                nbf.saturating_sub(now)
            )));
        }
        if let Some(iat) = claims.get("iat").and_then(numeric_date)
            && iat.saturating_sub(leeway(role.clock_skew_leeway, DEFAULT_CLOCK_SKEW)) > now
        {
            return Err(BadRequest(
                "the token was issued in the future (iat): check the issuer's clock".into(),
            ));
        }
        let auds: Vec<&str> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if role.bound_audiences.is_empty() {
            // As Vault: a token minted for some audience is not for a role that names none.
            if !auds.is_empty() {
                return Err(BadRequest(
                    "invalid audience (aud claim): the token names an audience and the role binds none; \
                     set bound_audiences on the role"
                        .into(),
                ));
            }
        } else if auds.is_empty() {
            return Err(BadRequest(
                "the token has no audience (aud claim) and the role requires one".into(),
            ));
        } else if !auds.iter().any(|a| role.bound_audiences.iter().any(|b| b == a)) {
            tracing::debug!(?auds, bound = ?role.bound_audiences, "JWT login: audience mismatch");
            return Err(BadRequest(
                "invalid audience (aud claim): the token was not issued for this role's audience".into(),
            ));
        }
        if !role.bound_subject.is_empty() {
            let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
            if sub != role.bound_subject {
                tracing::debug!(sub, "JWT login: subject mismatch");
                return Err(BadRequest(
                    "subject (sub claim) does not match the role's bound_subject".into(),
                ));
            }
        }
        let glob = role.bound_claims_type == "glob";
        for (claim, want) in &role.bound_claims {
            let got = claim_string(&claims, claim)
                .ok_or_else(|| BadRequest(format!("claim {claim:?} is missing (bound_claims)")))?;
            let options: Vec<&str> = match want {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !options
                .iter()
                .any(|o| if glob { glob_match(o, &got) } else { *o == got })
            {
                tracing::debug!(claim, value = %got, "JWT login: bound claim mismatch");
                return Err(BadRequest(format!(
                    "claim {claim:?} does not match the role's bound_claims"
                )));
            }
        }
        Ok(claims)
    }

    async fn write_config(&self, data: &Map<String, Value>, store: &dyn Store) -> Result<(), VaultError> {
        let mut cfg: JwtConfig = store
            .get("config")
            .await?
            .map(|b| serde_json::from_slice(&b))
            .transpose()?
            .unwrap_or_default();
        let mut f = Fields::new(data);
        if let Some(v) = f.string("oidc_discovery_url")? {
            cfg.oidc_discovery_url = v;
        }
        if let Some(v) = f.string("jwks_url")? {
            cfg.jwks_url = v;
        }
        if let Some(v) = f.string("bound_issuer")? {
            cfg.bound_issuer = v;
        }
        if let Some(v) = f.string("default_role")? {
            cfg.default_role = v;
        }
        if let Some(v) = f.list("jwt_validation_pubkeys")? {
            cfg.jwt_validation_pubkeys = v;
        }
        if let Some(v) = f.list("jwt_supported_algs")? {
            for a in &v {
                if a.starts_with("HS") || a.parse::<Algorithm>().is_err() {
                    return Err(BadRequest(format!(
                        "jwt_supported_algs: {a:?} is not a supported public-key algorithm"
                    )));
                }
            }
            cfg.jwt_supported_algs = v;
        }
        // Sent by clients for Vault's OIDC browser flow and custom CAs, which this auth method does not offer:
        // accepted only while they ask for nothing.
        for field in [
            "oidc_discovery_ca_pem",
            "jwks_ca_pem",
            "oidc_client_id",
            "oidc_client_secret",
            "oidc_response_mode",
            "oidc_response_types",
        ] {
            if f.list(field)?.is_some_and(|v| !v.is_empty()) {
                return Err(unsupported(field, "the OIDC browser flow and custom CA certificates"));
            }
        }
        if f.object("provider_config")?.is_some_and(|m| !m.is_empty()) {
            return Err(unsupported("provider_config", "the OIDC browser flow"));
        }
        if f.bool("namespace_in_state")? == Some(false) {
            return Err(unsupported("namespace_in_state", "the OIDC browser flow"));
        }
        f.finish()?;
        let sources = [
            !cfg.oidc_discovery_url.is_empty(),
            !cfg.jwks_url.is_empty(),
            !cfg.jwt_validation_pubkeys.is_empty(),
        ];
        if sources.iter().filter(|b| **b).count() != 1 {
            return Err(BadRequest(
                "set exactly one of oidc_discovery_url, jwks_url and jwt_validation_pubkeys".into(),
            ));
        }
        for pem in &cfg.jwt_validation_pubkeys {
            if VerifyKey::from_pem(pem).is_err() {
                return Err(BadRequest(
                    "jwt_validation_pubkeys: an entry is not a PEM RSA or EC public key".into(),
                ));
            }
        }
        store.put("config", &serde_json::to_vec(&cfg)?).await?;
        *self.cache() = KeyCache::default();
        Ok(())
    }

    async fn write_role(&self, name: &str, data: &Map<String, Value>, store: &dyn Store) -> Result<(), VaultError> {
        let mut role = self.role(store, name).await?.unwrap_or(JwtRole {
            role_type: jwt_role_type(),
            bound_claims_type: string_type(),
            token_type: default_token_type(),
            clock_skew_leeway: default_leeway(),
            ..Default::default()
        });
        let mut f = Fields::new(data);
        if let Some(n) = f.string("name")?
            && !n.is_empty()
            && n != name
        {
            return Err(BadRequest(format!(
                "field `name` ({n:?}) differs from the role name in the path ({name:?})"
            )));
        }
        if let Some(v) = f.string("role_type")? {
            if v != "jwt" {
                return Err(BadRequest(format!(
                    "role_type {v:?} is not supported; use \"jwt\" (the OIDC browser flow is not offered)"
                )));
            }
            role.role_type = v;
        }
        if let Some(v) = f.string("user_claim")? {
            role.user_claim = v;
        }
        if let Some(v) = f.bool("user_claim_json_pointer")? {
            role.user_claim_json_pointer = v;
        }
        if let Some(v) = f.list("bound_audiences")? {
            role.bound_audiences = v;
        }
        if let Some(v) = f.string("bound_subject")? {
            role.bound_subject = v;
        }
        if let Some(v) = f.string("bound_claims_type")? {
            if v != "string" && v != "glob" {
                return Err(BadRequest("bound_claims_type must be \"string\" or \"glob\"".into()));
            }
            role.bound_claims_type = v;
        }
        if let Some(m) = f.object("bound_claims")? {
            role.bound_claims = m
                .into_iter()
                .map(|(k, v)| bound_claim_values(&k, v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?;
        }
        if let Some(m) = f.string_map("claim_mappings")? {
            role.claim_mappings = m;
        }
        if let Some(v) = f.string("groups_claim")? {
            role.groups_claim = v;
        }
        let (token_ttl, ttl) = (f.duration("token_ttl")?, f.duration("ttl")?);
        if let Some(v) = token_ttl.or(ttl) {
            role.token_ttl = v;
        }
        let (token_max_ttl, max_ttl) = (f.duration("token_max_ttl")?, f.duration("max_ttl")?);
        if let Some(v) = token_max_ttl.or(max_ttl) {
            role.token_max_ttl = v;
        }
        if let Some(v) = f.duration("token_explicit_max_ttl")? {
            role.token_explicit_max_ttl = v;
        }
        let (token_period, period) = (f.duration("token_period")?, f.duration("period")?);
        if let Some(v) = token_period.or(period) {
            role.token_period = v;
        }
        let (token_policies, policies) = (f.list("token_policies")?, f.list("policies")?);
        if let Some(v) = token_policies.or(policies) {
            role.token_policies = v;
        }
        if let Some(v) = f.u64("token_num_uses")? {
            role.token_num_uses = v;
        }
        if let Some(v) = f.bool("token_no_default_policy")? {
            role.token_no_default_policy = v;
        }
        if let Some(v) = f.string("token_type")? {
            match v.as_str() {
                "" | "default" | "service" | "default-service" => role.token_type = v,
                _ => {
                    return Err(BadRequest(format!(
                        "token_type {v:?} is not supported: leakstop issues service tokens only \
                         (use \"service\" or \"default\")"
                    )));
                }
            }
        }
        for (field, slot) in [
            ("clock_skew_leeway", &mut role.clock_skew_leeway),
            ("expiration_leeway", &mut role.expiration_leeway),
            ("not_before_leeway", &mut role.not_before_leeway),
        ] {
            if let Some(v) = f.raw(field) {
                *slot = leeway_field(v, field)?;
            }
        }
        if let Some(v) = f.bool("replay_protection")? {
            role.replay_protection = v;
        }
        // Vault's client fields for the OIDC browser flow and address binding: accepted only while they ask for
        // nothing, never dropped silently.
        for field in ["token_bound_cidrs", "bound_cidrs"] {
            if f.list(field)?.is_some_and(|v| !v.is_empty()) {
                return Err(BadRequest(format!(
                    "{field} is not supported: leakstop cannot tie tokens to client addresses; remove it \
                     (bind the role on claims instead)"
                )));
            }
        }
        for field in ["allowed_redirect_uris", "oidc_scopes"] {
            if f.list(field)?.is_some_and(|v| !v.is_empty()) {
                return Err(unsupported(field, "the OIDC browser flow"));
            }
        }
        if f.bool("verbose_oidc_logging")? == Some(true) {
            return Err(unsupported("verbose_oidc_logging", "the OIDC browser flow"));
        }
        f.finish()?;

        if role.token_policies.iter().any(|p| p == "root") {
            return Err(BadRequest(format!("{NO_ROOT}: remove `root` from token_policies")));
        }
        if role.bound_audiences.is_empty() && role.bound_subject.is_empty() && role.bound_claims.is_empty() {
            return Err(BadRequest(
                "a role must bind something: set bound_audiences (and preferably bound_claims on immutable ids \
                 such as repository_id)"
                    .into(),
            ));
        }
        if role.token_max_ttl > 0 && role.token_ttl > role.token_max_ttl {
            return Err(BadRequest("token_ttl cannot be longer than token_max_ttl".into()));
        }
        store.put(&format!("role/{name}"), &serde_json::to_vec(&role)?).await
    }
}

fn unsupported(field: &str, what: &str) -> VaultError {
    BadRequest(format!(
        "{field} is not supported: leakstop does not offer {what}; remove the field or leave it empty"
    ))
}

/// A leeway field: a duration, or a negative number to disable the leeway (Vault's `-1`).
fn leeway_field(v: &Value, field: &str) -> Result<i64, VaultError> {
    let negative = match v {
        Value::Number(n) => n.as_i64().is_some_and(|n| n < 0),
        Value::String(s) => s.trim().starts_with('-'),
        _ => false,
    };
    if negative {
        return match v {
            Value::Number(_) => Ok(-1),
            Value::String(s) if s.trim().parse::<i64>().is_ok() => Ok(-1),
            _ => Err(BadRequest(format!(
                "field `{field}` must be a duration, or -1 to disable it"
            ))),
        };
    }
    let secs = crate::fields::duration(v, field)?;
    i64::try_from(secs).map_err(|_| BadRequest(format!("field `{field}` is too long")))
}

/// A `bound_claims` entry: a string (number, bool) or a list of them, stored as strings.
fn bound_claim_values(claim: &str, v: Value) -> Result<Value, VaultError> {
    let err = || {
        BadRequest(format!(
            "bound_claims: the value of {claim:?} must be a string or a list of strings"
        ))
    };
    match &v {
        Value::Array(a) => a
            .iter()
            .map(|x| scalar_string(x).map(Value::String).ok_or_else(err))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        x => scalar_string(x).map(Value::String).ok_or_else(err),
    }
}

/// The content of a stored replay record: until when the `jti` is spent.
fn record_until(b: &[u8]) -> i64 {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(i64::MAX)
}

/// A JWT NumericDate (seconds, possibly fractional), saturating instead of wrapping.
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// The key of `set` for `kid` (without a kid: only when the set has a single key), checked against `alg`.
fn lookup(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Result<Option<VerifyKey>, VaultError> {
    let jwk = match kid {
        Some(k) => set.find(k),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    };
    let Some(jwk) = jwk else { return Ok(None) };
    let key = VerifyKey::from_jwk(jwk).map_err(|e| {
        tracing::debug!(error = %e, ?kid, "JWT login: unusable key in the issuer's JWKS");
        BadRequest(format!("the issuer's key {:?} is unusable", kid.unwrap_or("")))
    })?;
    if !key.fits(alg) {
        return Err(BadRequest(format!(
            "the token's alg {alg:?} does not fit the key {:?} it names",
            kid.unwrap_or("")
        )));
    }
    Ok(Some(key))
}

/// A JSON-pointer-like path (`/nested/claim`) into the claims.
fn claim_at<'c>(claims: &'c Map<String, Value>, pointer: &str) -> Option<&'c Value> {
    let path = pointer.strip_prefix('/')?;
    let mut segs = path.split('/');
    let mut cur = claims.get(segs.next()?)?;
    for seg in segs {
        cur = cur.get(seg)?;
    }
    Some(cur)
}

/// A claim by name, or by path when the name starts with `/` (as Vault's bound_claims and claim_mappings).
fn claim_at_or_name<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<&'c Value> {
    if name.starts_with('/') {
        claim_at(claims, name)
    } else {
        claims.get(name)
    }
}

/// Strings, numbers and booleans as a string (GitHub's `repository_id` is a string, other issuers send numbers).
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn claim_string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claim_at_or_name(claims, name).and_then(scalar_string)
}

/// Vault's bound-claim globs: `*` matches any run of characters (including `/`), everything else literally — so
/// globset's other metacharacters (`?`, `[`, `{`) are escaped before the pattern is compiled.
fn glob_match(pattern: &str, s: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == s;
    }
    let escaped: Vec<String> = pattern.split('*').map(globset::escape).collect();
    globset::GlobBuilder::new(&escaped.join("*"))
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher().is_match(s))
        .unwrap_or(false)
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

    fn handle<'a>(&'a self, req: &'a LogicalRequest, store: &'a dyn Store) -> BackendFuture<'a, LogicalResponse> {
        Box::pin(async move {
            use Operation::*;
            if req.path == "login" {
                return match req.op {
                    Create | Update => self.login(req, store).await,
                    _ => Err(VaultError::UnsupportedOperation),
                };
            }
            // Defense in depth: only `login` is open; whatever else arrives without a token is refused here
            // even if the router let it through.
            if !req.authenticated {
                return Err(VaultError::PermissionDenied);
            }
            if let Some(role) = roles::route(&req.path, req.op) {
                return match role? {
                    RoleOp::List => roles::list(store).await,
                    RoleOp::Read(name) => {
                        let role = self.role(store, name).await?.ok_or(VaultError::NotFound)?;
                        let mut v = match serde_json::to_value(&role)? {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        v.insert("policies".into(), json!(role.token_policies));
                        // What Vault reports for the fields this method accepts only empty, so a role read
                        // back can be written back unchanged.
                        v.insert("allowed_redirect_uris".into(), json!([]));
                        v.insert("oidc_scopes".into(), json!([]));
                        v.insert("token_bound_cidrs".into(), json!([]));
                        v.insert("verbose_oidc_logging".into(), json!(false));
                        Ok(LogicalResponse::data(Value::Object(v)))
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
                    let cfg = self.config(store).await?;
                    Ok(LogicalResponse::data(serde_json::to_value(cfg)?))
                }
                _ => Err(VaultError::UnsupportedPath),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakstop_storage::MemoryStorage;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn barrier() -> Arc<crate::barrier::Barrier> {
        let storage: Arc<dyn leakstop_storage::Storage> = Arc::new(MemoryStorage::new());
        Arc::new(crate::barrier::Barrier::initialize(storage, &[7u8; 32], 0).unwrap())
    }

    fn view() -> crate::barrier::BarrierView {
        crate::barrier::BarrierView::new(barrier(), "auth/test/")
    }

    fn request(op: Operation, path: &str, data: Value, token: bool) -> LogicalRequest {
        LogicalRequest {
            op,
            path: path.into(),
            data: data.as_object().cloned().unwrap_or_default(),
            query: HashMap::new(),
            now: SystemTime::now(),
            authenticated: token,
        }
    }

    async fn write_role(b: &JwtBackend, store: &dyn Store, name: &str, data: Value) -> Result<JwtRole, VaultError> {
        b.handle(&request(Operation::Update, &format!("role/{name}"), data, true), store)
            .await?;
        Ok(b.role(store, name).await?.expect("stored"))
    }

    #[test]
    fn only_login_is_declared_open_and_role_names_are_plain() {
        let b = Arc::new(JwtBackend::with_fetch_timeout(0, 0, FETCH_TIMEOUT));
        assert_eq!(b.unauthenticated_paths(), &["login"]);
        for ok in ["deploy", "ci.app-1", "a@b", "login", "x_y"] {
            assert!(roles::valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a\u{0}", "a\nb", "é", &"r".repeat(129)] {
            assert!(!roles::valid_name(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn without_a_token_only_login_is_served() {
        let b = Arc::new(JwtBackend::with_fetch_timeout(0, 0, FETCH_TIMEOUT));
        let store = view();
        let role = json!({"bound_audiences": "a", "token_policies": "admin"});
        for (op, path) in [
            (Operation::Update, "role/login"),
            (Operation::Read, "role/x"),
            (Operation::Delete, "role/x"),
            (Operation::Update, "config"),
            (Operation::List, "role"),
        ] {
            let r = b.handle(&request(op, path, role.clone(), false), &store).await;
            assert!(matches!(r, Err(VaultError::PermissionDenied)), "{op:?} {path}: {r:?}");
        }
        assert!(store.take_pending().is_empty(), "nothing written");
        let r = b
            .handle(&request(Operation::Update, "role/..", role.clone(), true), &store)
            .await;
        assert!(matches!(r, Err(VaultError::BadRequest(m)) if m.contains("invalid role name")));
    }

    #[tokio::test]
    async fn cli_strings_take_effect_and_bad_or_unknown_fields_are_refused() {
        let b = Arc::new(JwtBackend::with_fetch_timeout(0, 0, FETCH_TIMEOUT));
        let store = view();
        let role = write_role(
            &b,
            &store,
            "r",
            json!({
                "replay_protection": "true", "token_num_uses": "1", "token_no_default_policy": "true",
                "bound_claims": "{\"repository_id\":\"1\"}", "claim_mappings": "{\"repository\":\"repo\"}",
                "bound_audiences": "a,b", "token_ttl": "10m", "token_period": "1h", "token_type": "service",
                "expiration_leeway": "-1", "not_before_leeway": "30s", "groups_claim": "groups",
            }),
        )
        .await
        .unwrap();
        assert!(role.replay_protection && role.token_no_default_policy);
        assert_eq!(role.token_num_uses, 1);
        assert_eq!(role.bound_claims["repository_id"], json!("1"));
        assert_eq!(role.claim_mappings["repository"], "repo");
        assert_eq!(role.bound_audiences, ["a", "b"]);
        assert_eq!((role.token_ttl, role.token_period), (600, 3600));
        assert_eq!((role.expiration_leeway, role.not_before_leeway), (-1, 30));
        assert_eq!(
            role.exp_leeway(),
            60,
            "clock skew only: the expiration leeway is disabled"
        );

        for (body, needle) in [
            (
                json!({"bound_audiences": "a", "token_num_uses": "one"}),
                "`token_num_uses`",
            ),
            (
                json!({"bound_audiences": "a", "replay_protection": "yes"}),
                "`replay_protection`",
            ),
            (json!({"bound_audiences": "a", "bound_claims": "[1]"}), "`bound_claims`"),
            (
                json!({"bound_audiences": "a", "bound_claims": {"x": {"y": 1}}}),
                "bound_claims",
            ),
            (
                json!({"bound_audiences": "a", "token_ttl": "9223372036854775807"}),
                "too long",
            ),
            (
                json!({"bound_audiences": "a", "token_max_ttl": 9223372036854775807u64}),
                "`token_max_ttl`",
            ),
            (
                json!({"bound_audiences": "a", "replay_protectoin": true}),
                "`replay_protectoin`",
            ),
            (
                json!({"bound_audiences": "a", "token_bound_cidrs": ["10.0.0.0/8"]}),
                "token_bound_cidrs",
            ),
            (json!({"bound_audiences": "a", "token_type": "batch"}), "batch"),
            (
                json!({"bound_audiences": "a", "allowed_redirect_uris": "https://x"}),
                "allowed_redirect_uris",
            ),
            (
                json!({"bound_audiences": "a", "verbose_oidc_logging": true}),
                "verbose_oidc_logging",
            ),
            (json!({"bound_audiences": "a", "name": "other"}), "`name`"),
            (json!({"bound_audiences": "a", "token_policies": "dev,root"}), NO_ROOT),
            (json!({"bound_audiences": "a", "policies": ["root"]}), NO_ROOT),
        ] {
            let r = write_role(&b, &store, "s", body.clone()).await;
            match r {
                Err(VaultError::BadRequest(m)) => assert!(m.contains(needle), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }

        // What hvac's create_role sends by default is accepted, and a role read back can be written back.
        let hvac = json!({
            "name": "h", "role_type": "jwt", "user_claim": "sub", "bound_audiences": ["a"],
            "allowed_redirect_uris": [], "bound_claims_type": "string", "verbose_oidc_logging": false,
            "token_bound_cidrs": [], "oidc_scopes": [], "clock_skew_leeway": 0,
        });
        write_role(&b, &store, "h", hvac).await.unwrap();
        let read = b
            .handle(&request(Operation::Read, "role/h", json!({}), true), &store)
            .await
            .unwrap();
        write_role(&b, &store, "h", read.data.unwrap()).await.unwrap();
    }

    #[test]
    fn tokens_always_expire() {
        let role = |ttl, max| JwtRole {
            token_ttl: ttl,
            token_max_ttl: max,
            ..Default::default()
        };
        let b = Arc::new(JwtBackend::with_fetch_timeout(0, 0, FETCH_TIMEOUT));
        assert_eq!(b.token_ttls(&role(0, 0)), (SYSTEM_MAX_TTL, 0));
        assert_eq!(b.token_ttls(&role(0, 3600)), (3600, 3600), "no ttl: the max applies");
        assert_eq!(b.token_ttls(&role(600, 3600)), (600, 3600));
        let tuned = Arc::new(JwtBackend::with_fetch_timeout(1200, 7200, FETCH_TIMEOUT));
        assert_eq!(tuned.token_ttls(&role(0, 0)), (1200, 7200), "the mount's TTLs");
        assert_eq!(tuned.token_ttls(&role(0, 86400)), (1200, 7200));
        let explicit = JwtRole {
            token_explicit_max_ttl: 300,
            ..role(600, 3600)
        };
        assert_eq!(b.token_ttls(&explicit), (300, 300));
    }

    #[tokio::test]
    async fn spent_jtis_are_refused_and_expired_records_purged() {
        let b = Arc::new(JwtBackend::with_fetch_timeout(0, 0, FETCH_TIMEOUT));
        let barrier = barrier();
        let store = crate::barrier::BarrierView::new(barrier.clone(), "auth/test/");
        let store_commit = |ops: &[crate::barrier::BufferedOp]| barrier.commit(ops).unwrap();
        let now = unix(SystemTime::now());
        // An old record from an earlier login, long expired.
        store.put("jti/old", (now - 10).to_string().as_bytes()).await.unwrap();
        let ops = store.take_pending();
        store_commit(&ops);
        b.spend_jti(&store, "j1", now + 300, now).await.unwrap();
        assert!(matches!(
            b.spend_jti(&store, "j1", now + 300, now).await,
            Err(VaultError::BadRequest(m)) if m.contains("replayed")
        ));
        let ops = store.take_pending();
        assert!(
            ops.iter()
                .any(|op| matches!(op, crate::barrier::BufferedOp::Delete(k) if k.ends_with("jti/old"))),
            "the expired record is deleted"
        );
        store_commit(&ops);
        assert_eq!(store.list("jti/").await.unwrap().len(), 1);
        // A record whose token has expired no longer blocks (and is not a replay).
        let later = now + 400;
        b.seen_jti.lock().unwrap().clear();
        b.spend_jti(&store, "j1", later + 300, later).await.unwrap();
    }

    fn rs256_cfg(url: String) -> JwtConfig {
        JwtConfig {
            jwks_url: url,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_hanging_issuer_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        // Accept and never answer.
        let _hold = tokio::spawn(async move {
            let mut held = vec![];
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let b = JwtBackend::with_fetch_timeout(0, 0, Duration::from_millis(300));
        let started = Instant::now();
        let r = b.key_for(&rs256_cfg(url), Some("k"), Algorithm::RS256).await;
        assert!(matches!(r, Err(VaultError::Upstream(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_oversized_jwks_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                // A valid JWKS padded past the cap, without a Content-Length (chunked by closing).
                let body = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(MAX_FETCH_BODY + 10));
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            }
        });
        let b = Arc::new(JwtBackend::with_fetch_timeout(0, 0, FETCH_TIMEOUT));
        let e = b.fetch_jwks(&rs256_cfg(url)).await.unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

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
        // Only `*` is special, as in Vault: `?` and brackets match themselves.
        assert!(glob_match("repo?/[x]*", "repo?/[x]/main"));
        assert!(!glob_match("repo?/[x]*", "repoA/x/main"));
    }
}
