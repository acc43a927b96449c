//! Leak reports: possession of a secret is enough to make it worthless. A scanner (or anyone) that found a
//! leakstop token, a brokered credential or a value stored in KV reports it to `sys/leaks/report` without a token;
//! the service revokes what can be revoked (the token and its children with their leases, the lease and the
//! credential at its issuer) and flags what cannot (a KV value: recorded in `sys/leaks` and in the secret's
//! metadata, for its owner to rotate).
//!
//! Why it is built this way:
//! - The answer is the same, status and shape, for a known and an unknown secret: a count and one receipt per
//!   secret. The receipt is a keyed hash of the secret (the key is in the barrier), so the same secret always gets
//!   the same receipt and nothing tells a caller whether the service knew it; it is also the id of the secret's
//!   record, so a caller allowed to read `sys/leaks` can look up what happened.
//! - Nothing unknown is stored: a secret the service does not know leaves no trace but the audit line (HMACed).
//!   Records hold where a secret was found and what was done, never the secret.
//! - A report is idempotent: a secret with a record is not acted on again.
//! - Revocations act once the request's audit line is durable (as every revocation does); the records commit
//!   with the audited response.
//! - Reports are rate limited per client address (a token bucket) before anything else is done.

pub mod partner;

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::VaultError;
use crate::core::Unsealed;

/// Where the settings live in the barrier (`sys/leaks/config`).
pub(crate) const CONFIG_PATH: &str = "sys/leaks/config";
/// Records, by id.
pub(crate) const RECORDS: &str = "sys/leaks/record/";
/// Keyed hash of a leased credential → its lease id.
pub(crate) const LEASE_INDEX: &str = "sys/leaks/lease-index/";
/// Keyed hashes of the unseal key shares handed out at init (`lksu_` form), one key each.
pub(crate) const UNSEAL_SHARE_INDEX: &str = "sys/leaks/unseal-index/";

/// The longest secret a report may carry (bytes).
pub const MAX_SECRET_LEN: usize = 4096;

/// `sys/leaks/config`. No `Debug`: it holds the notification key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LeakConfig {
    /// GitHub's API (the partner endpoint's keys).
    pub github_api_url: String,
    /// Receives a signed JSON event for each record (never the secret).
    pub notify_url: Option<String>,
    /// The HMAC-SHA256 key of the events' `X-Leakstop-Signature` header (write-only: never read back).
    pub notify_secret: Option<String>,
    /// Reports one client address may send at once...
    pub rate_burst: u64,
    /// ...and per second after that.
    pub rate_per_second: u64,
    /// Secrets one report may carry.
    pub max_secrets: u64,
}

impl Default for LeakConfig {
    fn default() -> Self {
        LeakConfig {
            github_api_url: "https://api.github.com".into(),
            notify_url: None,
            notify_secret: None,
            rate_burst: 100,
            rate_per_second: 10,
            max_secrets: 1000,
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Addresses tracked before idle ones (whose bucket has refilled) are forgotten.
const TRACKED_ADDRESSES: usize = 10_000;

/// The leak service's in-memory state: the per-address rate limiter and the settings.
#[derive(Default)]
pub struct LeakState {
    buckets: Mutex<HashMap<String, Bucket>>,
    config: RwLock<Option<LeakConfig>>,
    /// GitHub's secret scanning keys.
    pub(crate) github_keys: partner::KeyCache,
}

impl LeakState {
    /// The settings (stored ones, else the defaults).
    pub fn config(&self, st: &Unsealed) -> Result<LeakConfig, VaultError> {
        if let Some(c) = self.config.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(c.clone());
        }
        let c: LeakConfig = st.barrier.get_json(CONFIG_PATH)?.unwrap_or_default();
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Replace the cached settings (once a new config is committed).
    pub fn set_config(&self, c: LeakConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Some(c);
    }

    /// Take one report from `addr`'s bucket, or say how many seconds until one is available.
    pub fn admit(&self, addr: &str, cfg: &LeakConfig, now: Instant) -> Result<(), VaultError> {
        let burst = cfg.rate_burst.max(1) as f64;
        let rate = cfg.rate_per_second.max(1) as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= TRACKED_ADDRESSES && !buckets.contains_key(addr) {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(addr.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64;
        Err(VaultError::RateLimited { retry_after: wait })
    }
}

/// Attempts to deliver one event, and the wait before the second (doubling after).
const NOTIFY_ATTEMPTS: u32 = 4;
const NOTIFY_FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// `sha256=<hex>` of `body` under `key`: what the receiver recomputes to trust an event.
pub fn notify_signature(key: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Send each record to `cfg.notify_url` in the background, signed, retried with backoff; a receiver that stays
/// down loses the event (the record stays in `sys/leaks`). Records never hold the secret, so neither do events.
pub fn notify(cfg: &LeakConfig, records: Vec<leakstop_proto::leaks::LeakRecord>) {
    let Some(url) = cfg.notify_url.clone() else { return };
    let key = cfg.notify_secret.clone().unwrap_or_default();
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let Ok(http) = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
        else {
            return;
        };
        for rec in records {
            let body = serde_json::json!({"event": "leak", "record": rec}).to_string();
            let signature = notify_signature(&key, body.as_bytes());
            let mut wait = NOTIFY_FIRST_WAIT;
            for attempt in 1..=NOTIFY_ATTEMPTS {
                let sent = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-leakstop-signature", &signature)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) => tracing::warn!(status = r.status().as_u16(), attempt, "leak notification refused"),
                    Err(e) => tracing::warn!(error = %e, attempt, "leak notification not delivered"),
                }
                if attempt < NOTIFY_ATTEMPTS {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    });
}

/// The id of a secret's record (and the receipt a report answers for it): a keyed hash, so the same secret always
/// maps to the same record and the id reveals nothing about the secret.
pub fn record_id(st: &Unsealed, secret: &str) -> Result<String, VaultError> {
    let mut input = b"leak-record\0".to_vec();
    input.extend_from_slice(secret.as_bytes());
    let h = st.barrier.keyed_hash(&input);
    input.iter_mut().for_each(|b| *b = 0);
    Ok(h?.get(..32).unwrap_or_default().to_string())
}

/// The index entry of a leased credential (staged with the lease).
pub fn lease_index_key(st: &Unsealed, credential: &str) -> Result<String, VaultError> {
    Ok(format!(
        "{LEASE_INDEX}{}",
        st.barrier.keyed_hash(credential.as_bytes())?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ApiRequest, Core, CoreOptions, MountEntry};
    use crate::{Backend, Operation};
    use serde_json::{Value, json};
    use std::sync::Arc;
    use std::time::Duration;

    fn api(op: Operation, path: &str, token: Option<&str>, data: Value) -> ApiRequest {
        ApiRequest {
            op,
            path: path.into(),
            data: data.as_object().cloned().unwrap_or_default(),
            query: Default::default(),
            token: token.map(String::from),
            remote_addr: Some("192.0.2.1".into()),
            request_id: "test".into(),
        }
    }

    #[tokio::test]
    async fn unseal_shares_are_lksu_credentials_and_a_reported_one_is_flagged() {
        let core = Core::new(
            Arc::new(leakstop_storage::MemoryStorage::new()),
            None,
            CoreOptions::default(),
        );
        let call = |op, path: &str, token: Option<&str>, data| core.handle(api(op, path, token, data));
        let init = call(
            Operation::Update,
            "sys/init",
            None,
            json!({"secret_shares": 3, "secret_threshold": 2}),
        )
        .await
        .unwrap()
        .raw
        .unwrap();
        let shares: Vec<String> = serde_json::from_value(init["keys"].clone()).unwrap();
        assert_eq!(init["keys_base64"], init["keys"]);
        for s in &shares {
            assert_eq!(
                leakstop_proto::token::parse(s.as_bytes()),
                Some(leakstop_proto::token::Kind::Unseal),
                "{s}"
            );
        }
        // A share with one character changed is named as mistyped, not as the wrong key.
        let mut typo = shares[0].clone().into_bytes();
        typo[12] = if typo[12] == b'0' { b'1' } else { b'0' };
        let e = call(
            Operation::Update,
            "sys/unseal",
            None,
            json!({"key": String::from_utf8(typo).unwrap()}),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        for s in &shares[..2] {
            call(Operation::Update, "sys/unseal", None, json!({"key": s}))
                .await
                .unwrap();
        }
        assert!(!core.is_sealed());
        let root = init["root_token"].as_str().unwrap().to_string();

        // A share of this server is flagged as unseal material; another server's share is unknown. Same answer.
        let other = leakstop_proto::token::share_credential(&[7u8; 33]);
        let report = |secrets: Value| call(Operation::Update, "sys/leaks/report", None, json!({"secrets": secrets}));
        let a = report(json!([shares[2]])).await.unwrap();
        let b = report(json!([other])).await.unwrap();
        assert_eq!((a.status, a.data.is_some()), (b.status, b.data.is_some()));
        let list = call(Operation::List, "sys/leaks", Some(&root), json!({}))
            .await
            .unwrap();
        let ids: Vec<String> = serde_json::from_value(list.data.unwrap()["keys"].clone()).unwrap();
        assert_eq!(ids.len(), 1, "{ids:?}");
        let rec = call(
            Operation::Read,
            &format!("sys/leaks/{}", ids[0]),
            Some(&root),
            json!({}),
        )
        .await
        .unwrap()
        .data
        .unwrap();
        assert_eq!(
            (rec["kind"].as_str(), rec["action"].as_str()),
            (Some("unseal"), Some("flagged"))
        );
        assert!(!rec.to_string().contains(&shares[2]));
    }

    #[tokio::test]
    async fn a_rekey_replaces_every_share_and_only_the_new_ones_unseal_and_are_flagged() {
        let core = Core::new(
            Arc::new(leakstop_storage::MemoryStorage::new()),
            None,
            CoreOptions::default(),
        );
        let call = |op, path: &str, data| core.handle(api(op, path, None, data));
        let init = call(
            Operation::Update,
            "sys/init",
            json!({"secret_shares": 3, "secret_threshold": 2}),
        )
        .await
        .unwrap()
        .raw
        .unwrap();
        let old: Vec<String> = serde_json::from_value(init["keys"].clone()).unwrap();
        let root = init["root_token"].as_str().unwrap().to_string();
        for k in &old[..2] {
            call(Operation::Update, "sys/unseal", json!({"key": k})).await.unwrap();
        }
        core.handle(api(
            Operation::Update,
            "sys/mounts/secret",
            Some(&root),
            json!({"type": "kv", "options": {"version": "2"}}),
        ))
        .await
        .unwrap();
        core.handle(api(
            Operation::Update,
            "secret/data/app",
            Some(&root),
            json!({"data": {"v": "kept"}}),
        ))
        .await
        .unwrap();

        // Without a token (or without sudo) nobody may start, watch or cancel a rekey.
        let sudo = |op, path: &str, data| core.handle(api(op, path, Some(&root), data));
        let limited = sudo(Operation::Update, "auth/token/create", json!({"policies": ["default"]}))
            .await
            .unwrap()
            .auth
            .unwrap()
            .client_token
            .expose_str();
        for token in [None, Some(limited.as_str())] {
            for (op, path) in [
                (Operation::Update, "sys/rekey/init"),
                (Operation::Read, "sys/rekey/init"),
                (Operation::Delete, "sys/rekey/init"),
                (Operation::Update, "sys/rekey/update"),
            ] {
                let body = json!({"secret_shares": 1, "secret_threshold": 1, "key": old[0], "nonce": "x"});
                let e = core.handle(api(op, path, token, body)).await.unwrap_err();
                assert_eq!(e.status(), 403, "{path} with {token:?}: {e}");
            }
        }

        // No rekey yet, then one; a second start and a wrong nonce are refused with what to do.
        let e = sudo(
            Operation::Update,
            "sys/rekey/update",
            json!({"key": old[0], "nonce": "x"}),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("sys/rekey/init"), "{e}");
        let started = sudo(
            Operation::Update,
            "sys/rekey/init",
            json!({"secret_shares": 5, "secret_threshold": 3}),
        )
        .await
        .unwrap()
        .raw
        .unwrap();
        assert_eq!(
            (
                started["t"].as_u64(),
                started["n"].as_u64(),
                started["required"].as_u64()
            ),
            (Some(3), Some(5), Some(2))
        );
        let nonce = started["nonce"].as_str().unwrap().to_string();
        let again = sudo(
            Operation::Update,
            "sys/rekey/init",
            json!({"secret_shares": 2, "secret_threshold": 2}),
        )
        .await
        .unwrap_err();
        assert!(again.to_string().contains("already in progress"), "{again}");
        let e = sudo(
            Operation::Update,
            "sys/rekey/update",
            json!({"key": old[0], "nonce": "wrong"}),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("nonce"), "{e}");
        let step = sudo(
            Operation::Update,
            "sys/rekey/update",
            json!({"key": old[0], "nonce": nonce}),
        )
        .await
        .unwrap()
        .raw
        .unwrap();
        assert_eq!(step["progress"], 1);
        let done = sudo(
            Operation::Update,
            "sys/rekey/update",
            json!({"key": old[2], "nonce": nonce}),
        )
        .await
        .unwrap()
        .raw
        .unwrap();
        assert_eq!(done["complete"], true, "{done}");
        let new: Vec<String> = serde_json::from_value(done["keys"].clone()).unwrap();
        assert_eq!(new.len(), 5);
        assert!(new.iter().all(|k| k.starts_with("lksu_") && !old.contains(k)));
        assert_eq!(
            sudo(Operation::Read, "sys/rekey/init", json!({}))
                .await
                .unwrap()
                .raw
                .unwrap()["started"],
            false
        );

        // Sealed again: the old shares no longer open it, three new ones do, and the data is intact.
        core.seal();
        for k in &old[..2] {
            let _ = call(Operation::Update, "sys/unseal", json!({"key": k})).await;
        }
        assert!(core.is_sealed(), "the old shares must not unseal");
        call(Operation::Update, "sys/unseal", json!({"reset": true}))
            .await
            .unwrap();
        for k in &new[1..4] {
            call(Operation::Update, "sys/unseal", json!({"key": k})).await.unwrap();
        }
        assert!(!core.is_sealed());
        let got = core
            .handle(api(Operation::Read, "secret/data/app", Some(&root), json!({})))
            .await
            .unwrap();
        assert_eq!(got.data.unwrap()["data"]["v"], "kept");

        // A reported old share is no longer this server's; a new one is flagged.
        let report = |k: &String| call(Operation::Update, "sys/leaks/report", json!({"secrets": [k]}));
        report(&old[0]).await.unwrap();
        report(&new[0]).await.unwrap();
        let list = core
            .handle(api(Operation::List, "sys/leaks", Some(&root), json!({})))
            .await
            .unwrap();
        assert_eq!(list.data.unwrap()["keys"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_report_revokes_tokens_and_leases_flags_kv_values_and_answers_alike() {
        let seal: Arc<dyn leakstop_seal::Seal> = Arc::new(leakstop_seal::KeySeal::random_dev());
        let core = Core::new(
            Arc::new(leakstop_storage::MemoryStorage::new()),
            Some(seal),
            CoreOptions::default(),
        );
        core.register_engine(
            "toy",
            Arc::new(|_: &MountEntry| Ok(crate::engines::toy::ToyBackend::new() as Arc<dyn Backend>)),
        );
        let (_, root) = core.init(1, 1, None).await.unwrap();
        let root = Some(root.as_str());
        let call = |op, path: &str, token: Option<&str>, data| core.handle(api(op, path, token, data));
        call(Operation::Update, "sys/mounts/play", root, json!({"type": "toy"}))
            .await
            .unwrap();
        call(
            Operation::Update,
            "sys/mounts/secret",
            root,
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await
        .unwrap();
        let mk = |parent: Option<String>| async move {
            let r = call(
                Operation::Update,
                "auth/token/create",
                parent.as_deref().or(root),
                json!({}),
            )
            .await
            .unwrap();
            r.auth.unwrap().client_token.expose_str()
        };
        let leaked = mk(None).await;
        let child = mk(Some(leaked.clone())).await;
        let ticket = call(Operation::Update, "play/ticket/t-one", Some(&child), json!({}))
            .await
            .unwrap();
        call(
            Operation::Update,
            "secret/data/app",
            root,
            json!({"data": {"pw": "stored-value-123"}}),
        )
        .await
        .unwrap();

        let report = |secrets: Value| call(Operation::Update, "sys/leaks/report", None, json!({"secrets": secrets}));
        let unknown = report(json!(["lkss_unknownunknownunknownunknownunknown0000000"]))
            .await
            .unwrap();
        let known = report(json!([{"secret": leaked, "source": {"path": "deploy.env", "line": 3}}]))
            .await
            .unwrap();
        assert_eq!(unknown.status, known.status);
        let keys = |r: &crate::core::Reply| {
            let d = r.data.as_ref().unwrap().as_object().unwrap();
            (d.keys().cloned().collect::<Vec<_>>(), d["received"].clone())
        };
        assert_eq!(
            keys(&unknown),
            keys(&known),
            "the same answer for a known and an unknown secret"
        );

        // The token, its child and the child's lease are gone.
        for t in [&leaked, &child] {
            let e = call(Operation::Read, "auth/token/lookup-self", Some(t), json!({}))
                .await
                .unwrap_err();
            assert_eq!(e.status(), 403);
        }
        let revoked = call(Operation::Read, "play/revoked/t-one", root, json!({}))
            .await
            .unwrap();
        assert_eq!(revoked.data.unwrap()["lease_id"], ticket.lease_id.as_str());

        // A ticket of a live token, reported by its value: the lease alone goes.
        let owner = mk(None).await;
        let t2 = call(Operation::Update, "play/ticket/t-two", Some(&owner), json!({}))
            .await
            .unwrap();
        report(json!(["t-two", "stored-value-123"])).await.unwrap();
        assert!(
            call(Operation::Read, "play/revoked/t-two", root, json!({}))
                .await
                .is_ok(),
            "{}",
            t2.lease_id
        );
        call(Operation::Read, "auth/token/lookup-self", Some(&owner), json!({}))
            .await
            .unwrap();

        // Records: one per secret, never the secret, and a KV flag in the metadata.
        let list = call(Operation::List, "sys/leaks", root, json!({})).await.unwrap();
        let ids: Vec<String> = serde_json::from_value(list.data.unwrap()["keys"].clone()).unwrap();
        assert_eq!(ids.len(), 3, "{ids:?}");
        let mut kinds = Vec::new();
        for id in &ids {
            let r = call(Operation::Read, &format!("sys/leaks/{id}"), root, json!({}))
                .await
                .unwrap();
            let r = r.data.unwrap();
            let text = r.to_string();
            assert!(!text.contains(&leaked) && !text.contains("stored-value-123"), "{text}");
            kinds.push(format!(
                "{}/{}/{}",
                r["kind"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            ));
            if r["kind"] == "token" {
                assert_eq!(r["source"]["path"], "deploy.env");
            }
        }
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "kv/flagged/secret/data/app",
                "lease/revoked/play/ticket/t-two",
                "token/revoked/auth/token/create"
            ]
        );
        let meta = call(Operation::Read, "secret/metadata/app", root, json!({}))
            .await
            .unwrap();
        assert_eq!(meta.data.unwrap()["leaked"][0]["version"], 1);

        // Again: the same answer, no new record.
        let again = report(json!([{"secret": leaked, "source": {"path": "deploy.env", "line": 3}}]))
            .await
            .unwrap();
        assert_eq!(again.data, known.data);
        let list = call(Operation::List, "sys/leaks", root, json!({})).await.unwrap();
        assert_eq!(list.data.unwrap()["keys"].as_array().unwrap().len(), 3);

        // Reading the records needs a token.
        let e = call(Operation::List, "sys/leaks", None, json!({})).await.unwrap_err();
        assert_eq!(e.status(), 403);
    }

    /// GitHub's key endpoint, serving whatever `keys` holds and counting fetches.
    async fn github_keys(keys: Arc<std::sync::Mutex<Value>>, fetches: Arc<std::sync::atomic::AtomicUsize>) -> String {
        let app = axum::Router::new().route(
            "/meta/public_keys/secret_scanning",
            axum::routing::get(move || {
                let (keys, fetches) = (keys.clone(), fetches.clone());
                async move {
                    fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    axum::Json(keys.lock().unwrap().clone())
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        url
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_github_partner_endpoint_revokes_only_what_a_current_github_key_signed() {
        use partner::tests::{key_pair, sign};
        let seal: Arc<dyn leakstop_seal::Seal> = Arc::new(leakstop_seal::KeySeal::random_dev());
        let core = Core::new(
            Arc::new(leakstop_storage::MemoryStorage::new()),
            Some(seal),
            CoreOptions::default(),
        );
        let (_, root) = core.init(1, 1, None).await.unwrap();
        let (sk, pem) = key_pair();
        let (old_sk, old_pem) = key_pair();
        let keys = Arc::new(std::sync::Mutex::new(json!({"public_keys": [
            {"key_identifier": "k1", "key": pem, "is_current": true},
            {"key_identifier": "k0", "key": old_pem, "is_current": false},
        ]})));
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let url = github_keys(keys.clone(), fetches.clone()).await;
        core.handle(api(
            Operation::Update,
            "sys/leaks/config",
            Some(&root),
            json!({"github_api_url": url}),
        ))
        .await
        .unwrap();
        let created = core
            .handle(api(Operation::Update, "auth/token/create", Some(&root), json!({})))
            .await
            .unwrap();
        let token = created.auth.unwrap().client_token.expose_str();
        let body = json!([
            {"token": token, "type": "leakstop_token", "url": "https://github.com/o/r/blob/abc/a.env", "source": "content"},
            {"token": "lkss_notoursnotoursnotoursnotoursnotours0000000", "type": "leakstop_token", "url": "https://x", "source": "content"},
        ])
        .to_string();
        let send = |sig: Option<String>, kid: Option<&str>| {
            let data = partner::request_data(sig.as_deref(), kid, body.as_bytes());
            core.handle(ApiRequest {
                data,
                ..api(Operation::Update, partner::PATH, None, json!({}))
            })
        };
        let alive = || core.handle(api(Operation::Read, "auth/token/lookup-self", Some(&token), json!({})));

        // Missing, forged, unknown-key and retired-key signatures: 401, nothing revoked.
        assert_eq!(send(None, Some("k1")).await.unwrap_err().status(), 401);
        assert_eq!(
            send(Some(sign(&sk, body.as_bytes())), None).await.unwrap_err().status(),
            401
        );
        let (forger, _) = key_pair();
        assert_eq!(
            send(Some(sign(&forger, body.as_bytes())), Some("k1"))
                .await
                .unwrap_err()
                .status(),
            401
        );
        assert_eq!(
            fetches.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the keys were fetched once"
        );
        assert_eq!(
            send(Some(sign(&old_sk, body.as_bytes())), Some("k0"))
                .await
                .unwrap_err()
                .status(),
            401
        );
        assert_eq!(
            send(Some(sign(&sk, body.as_bytes())), Some("k9"))
                .await
                .unwrap_err()
                .status(),
            401
        );
        assert_eq!(
            fetches.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "an unknown id refetches once"
        );
        alive().await.expect("nothing was revoked");

        // GitHub rotates: the new key is found by one refetch, and the report is acted on.
        let (new_sk, new_pem) = key_pair();
        keys.lock().unwrap()["public_keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key_identifier": "k2", "key": new_pem, "is_current": true}));
        let r = send(Some(sign(&new_sk, body.as_bytes())), Some("k2")).await.unwrap();
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 3);
        let feedback = r.raw.unwrap();
        assert_eq!(feedback[0]["label"], "true_positive", "{feedback}");
        assert_eq!(feedback[1]["label"], "false_positive", "{feedback}");
        assert!(
            !feedback.to_string().contains(&token),
            "the feedback holds a hash, not the token"
        );
        assert_eq!(
            alive().await.unwrap_err().status(),
            403,
            "the token GitHub found is revoked"
        );
        // Sent again (GitHub retries): still a true positive, revoked before.
        let again = send(Some(sign(&sk, body.as_bytes())), Some("k1")).await.unwrap();
        assert_eq!(again.raw.unwrap()[0]["label"], "true_positive");
        let list = core
            .handle(api(Operation::List, "sys/leaks", Some(&root), json!({})))
            .await
            .unwrap();
        let id = list.data.unwrap()["keys"][0].as_str().unwrap().to_string();
        let rec = core
            .handle(api(Operation::Read, &format!("sys/leaks/{id}"), Some(&root), json!({})))
            .await
            .unwrap();
        let rec = rec.data.unwrap();
        assert_eq!(
            (rec["reporter"].as_str(), rec["kind"].as_str()),
            (Some("github"), Some("token"))
        );
        assert_eq!(rec["source"]["url"], "https://github.com/o/r/blob/abc/a.env");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_record_is_announced_signed_without_the_secret_and_retried() {
        type Seen = Arc<std::sync::Mutex<Vec<(String, String)>>>;
        let seen: Seen = Arc::default();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s2, c2) = (seen.clone(), calls.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (seen, calls) = (s2.clone(), c2.clone());
                async move {
                    // The first delivery fails: the event must come again.
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let sig = headers["x-leakstop-signature"].to_str().unwrap().to_string();
                    seen.lock().unwrap().push((sig, body));
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

        let seal: Arc<dyn leakstop_seal::Seal> = Arc::new(leakstop_seal::KeySeal::random_dev());
        let core = Core::new(
            Arc::new(leakstop_storage::MemoryStorage::new()),
            Some(seal),
            CoreOptions::default(),
        );
        let (_, root) = core.init(1, 1, None).await.unwrap();
        let cfg = json!({"notify_url": url, "notify_secret": "hook-key"});
        core.handle(api(Operation::Update, "sys/leaks/config", Some(&root), cfg))
            .await
            .unwrap();
        let shown = core
            .handle(api(Operation::Read, "sys/leaks/config", Some(&root), json!({})))
            .await
            .unwrap();
        let shown = shown.data.unwrap();
        assert_eq!(shown["notify_secret_set"], true);
        assert!(
            !shown.to_string().contains("hook-key"),
            "the key is never read back: {shown}"
        );
        let created = core
            .handle(api(Operation::Update, "auth/token/create", Some(&root), json!({})))
            .await
            .unwrap();
        let token = created.auth.unwrap().client_token.expose_str();
        core.handle(api(
            Operation::Update,
            "sys/leaks/report",
            None,
            json!({"secrets": [token, "unknown-secret-value"]}),
        ))
        .await
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "one event for the one record, after a retry: {seen:?}");
        let (sig, body) = &seen[0];
        assert_eq!(sig, &notify_signature("hook-key", body.as_bytes()));
        assert!(
            !body.contains(&token) && !body.contains("unknown-secret-value"),
            "{body}"
        );
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            (event["event"].as_str(), event["record"]["kind"].as_str()),
            (Some("leak"), Some("token"))
        );
    }

    #[test]
    fn a_burst_then_the_steady_rate_then_429_with_a_wait() {
        let s = LeakState::default();
        let cfg = LeakConfig {
            rate_burst: 5,
            rate_per_second: 2,
            ..Default::default()
        };
        let t0 = Instant::now();
        for _ in 0..5 {
            s.admit("10.0.0.1", &cfg, t0).unwrap();
        }
        match s.admit("10.0.0.1", &cfg, t0) {
            Err(VaultError::RateLimited { retry_after }) => assert_eq!(retry_after, 1),
            other => panic!("expected 429, got {other:?}"),
        }
        s.admit("10.0.0.2", &cfg, t0)
            .expect("another address has its own bucket");
        let later = t0 + Duration::from_millis(1000);
        s.admit("10.0.0.1", &cfg, later).unwrap();
        s.admit("10.0.0.1", &cfg, later).unwrap();
        assert!(s.admit("10.0.0.1", &cfg, later).is_err(), "two per second, no more");
    }
}
