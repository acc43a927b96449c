//! GitHub's secret scanning partner endpoint (`POST sys/leaks/github`): GitHub finds leakstop credentials in
//! public repositories and packages and posts them here, signed. The signature (`Github-Public-Key-Signature`,
//! base64 DER ECDSA P-256 over the SHA-256 of the raw body) is checked with the key named by
//! `Github-Public-Key-Identifier`, from `GET {github_api_url}/meta/public_keys/secret_scanning`. Keys are cached;
//! an unknown identifier refetches them once (GitHub rotated), so a forged identifier costs at most one fetch per
//! request. Only keys GitHub marks `is_current` verify: a retired key is not trusted forever.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::VaultError;

/// The request fields the HTTP edge passes for this endpoint (the signature covers the raw body, which the
/// core otherwise never sees).
pub const BODY_FIELD: &str = "raw_body";
pub const SIGNATURE_FIELD: &str = "signature";
pub const KEY_ID_FIELD: &str = "key_identifier";

/// The endpoint's path, whose body the HTTP edge passes raw.
pub const PATH: &str = "sys/leaks/github";

/// What the HTTP edge hands the core for `sys/leaks/github`: the raw body and the two signature headers.
pub fn request_data(signature: Option<&str>, key_id: Option<&str>, body: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        BODY_FIELD.into(),
        Value::String(String::from_utf8_lossy(body).into_owned()),
    );
    if let Some(s) = signature {
        m.insert(SIGNATURE_FIELD.into(), Value::String(s.trim().to_string()));
    }
    if let Some(k) = key_id {
        m.insert(KEY_ID_FIELD.into(), Value::String(k.trim().to_string()));
    }
    m
}

#[derive(Clone, Deserialize)]
struct PublicKey {
    key_identifier: String,
    key: String,
    #[serde(default)]
    is_current: bool,
}

#[derive(Deserialize)]
struct PublicKeys {
    public_keys: Vec<PublicKey>,
}

/// The keys fetched last, and from where.
#[derive(Default)]
pub struct KeyCache(Mutex<Option<(String, Vec<PublicKey>)>>);

impl KeyCache {
    fn find(&self, api: &str, id: &str) -> Option<PublicKey> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .filter(|(url, _)| url == api)
            .and_then(|(_, keys)| keys.iter().find(|k| k.key_identifier == id).cloned())
    }

    async fn fetch(&self, api: &str) -> Result<(), VaultError> {
        let url = format!("{}/meta/public_keys/secret_scanning", api.trim_end_matches('/'));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent("leakstop")
            .build()
            .map_err(|e| VaultError::Internal(format!("HTTP client: {e}")))?;
        let keys: PublicKeys = http
            .get(&url)
            .header("Accept", "application/vnd.github+json")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| VaultError::Upstream(format!("fetching GitHub's secret scanning keys from {url}: {e}")))?
            .json()
            .await
            .map_err(|e| VaultError::Upstream(format!("GitHub's secret scanning keys at {url}: {e}")))?;
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((api.to_string(), keys.public_keys));
        Ok(())
    }

    /// Check the signature of `body`; 401 when it is missing, malformed or wrong.
    pub async fn verify(&self, api: &str, key_id: &str, signature_b64: &str, body: &[u8]) -> Result<(), VaultError> {
        let key = match self.find(api, key_id) {
            Some(k) => k,
            None => {
                self.fetch(api).await?;
                self.find(api, key_id)
                    .ok_or_else(|| unauthorized("an unknown key identifier"))?
            }
        };
        if !key.is_current {
            return Err(unauthorized("a key GitHub no longer marks current"));
        }
        verify_with(&key.key, signature_b64, body)
    }
}

pub(crate) fn unauthorized(why: &str) -> VaultError {
    VaultError::Unauthorized(format!("the GitHub signature does not verify: {why}"))
}

/// ECDSA P-256 / SHA-256 over `body` with the PEM public key `pem` and the base64 DER signature.
pub fn verify_with(pem: &str, signature_b64: &str, body: &[u8]) -> Result<(), VaultError> {
    let key = VerifyingKey::from_public_key_pem(pem).map_err(|_| {
        VaultError::Upstream("GitHub published a secret scanning key that is not a P-256 PEM key".into())
    })?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| unauthorized("the signature is not base64"))?;
    let sig = Signature::from_der(&der).map_err(|_| unauthorized("the signature is not a DER ECDSA signature"))?;
    key.verify(body, &sig).map_err(|_| unauthorized("wrong signature"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    /// A key pair: the signing key and its PEM public key.
    pub(crate) fn key_pair() -> (SigningKey, String) {
        let sk = SigningKey::random(&mut rand::rngs::OsRng);
        let pem = sk.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        (sk, pem)
    }

    pub(crate) fn sign(sk: &SigningKey, body: &[u8]) -> String {
        let sig: Signature = sk.sign(body);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    #[test]
    fn a_signature_verifies_over_exactly_the_body() {
        let (sk, pem) = key_pair();
        let body = br#"[{"token":"x","type":"leakstop_token","url":"https://example.invalid/a"}]"#;
        verify_with(&pem, &sign(&sk, body), body).unwrap();
        let mut changed = body.to_vec();
        changed[3] = b'X';
        assert!(verify_with(&pem, &sign(&sk, body), &changed).is_err());
        let (other, _) = key_pair();
        assert!(
            verify_with(&pem, &sign(&other, body), body).is_err(),
            "another key's signature"
        );
        assert!(verify_with(&pem, "not base64!", body).is_err());
        assert!(verify_with(&pem, "AAAA", body).is_err(), "not DER");
    }
}
