//! JWT signature verification through `jsonwebtoken`: keys from a JWKS entry or a PEM public key (SPKI, or PKCS#1
//! for RSA), for RSA (PKCS#1 v1.5 and PSS) and ECDSA P-256/P-384. The claims are checked by the caller, against
//! the role and the request's clock, so only the signature and the header's `alg` are checked here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde_json::{Map, Value};

/// Which algorithms a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    /// An EC key whose curve is known (from a JWK, or a PEM that loaded as EC).
    P256,
    P384,
    /// An EC key from PEM: the curve is checked by the verification itself.
    Ec,
}

/// A public key ready to verify with.
#[derive(Clone)]
pub struct VerifyKey {
    key: DecodingKey,
    family: Family,
}

// Public keys only, but DecodingKey has no Debug: show which family, not the key material.
impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyKey, String> {
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => Family::P256,
                EllipticCurve::P384 => Family::P384,
                _ => return Err("only the P-256 and P-384 curves are supported".into()),
            },
            _ => return Err("only RSA and EC keys are supported".into()),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable JWK: {e}"))?;
        Ok(VerifyKey { key, family })
    }

    /// A PEM public key: `PUBLIC KEY` (SPKI, RSA or EC) or `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(pem: &str) -> Result<VerifyKey, String> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
            return Ok(VerifyKey {
                key,
                family: Family::Rsa,
            });
        }
        DecodingKey::from_ec_pem(pem.as_bytes())
            .map(|key| VerifyKey {
                key,
                family: Family::Ec,
            })
            .map_err(|e| format!("not an RSA or EC public key in PEM: {e}"))
    }

    /// Does this key type go with `alg` at all?
    pub fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self.family {
            Family::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Family::P256 => alg == ES256,
            Family::P384 => alg == ES384,
            Family::Ec => matches!(alg, ES256 | ES384),
        }
    }
}

/// Check the signature of a compact JWS whose header says `alg` and return its claims. Each part must be canonical
/// unpadded base64url (RFC 7515): a token is accepted in exactly one spelling.
///
/// jsonwebtoken parses the header and the keys; the signature itself is checked with `ring` (already linked for
/// TLS), whose RSA is several times faster than the pure-Rust provider jsonwebtoken would pick here — logins per
/// second are bound by it (bench/jwt-login.sh).
pub fn verify_jwt(jwt: &str, key: &VerifyKey, alg: Algorithm) -> Result<Map<String, Value>, String> {
    if !key.fits(alg) {
        return Err("the key does not fit the token's algorithm".into());
    }
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| format!("malformed token header: {e}"))?;
    if header.alg != alg {
        return Err("the token's header names another algorithm".into());
    }
    let (message, sig_b64) = jwt.rsplit_once('.').ok_or("not a compact JWS")?;
    let (_, payload_b64) = message.split_once('.').ok_or("not a compact JWS")?;
    let sig = B64URL
        .decode(sig_b64)
        .map_err(|_| "the signature is not canonical unpadded base64url")?;
    if !signature_ok(&key.key, alg, message.as_bytes(), &sig) {
        return Err("the signature does not verify with the configured key".into());
    }
    let payload = B64URL
        .decode(payload_b64)
        .map_err(|_| "the payload is not canonical unpadded base64url")?;
    serde_json::from_slice(&payload).map_err(|e| format!("the payload is not a JSON object: {e}"))
}

fn signature_ok(key: &DecodingKey, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
    use ring::signature as rs;
    let rsa: &'static rs::RsaParameters = match alg {
        Algorithm::RS256 => &rs::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &rs::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &rs::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &rs::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &rs::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &rs::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => return ec_ok(&rs::ECDSA_P256_SHA256_FIXED, key, message, sig),
        Algorithm::ES384 => return ec_ok(&rs::ECDSA_P384_SHA384_FIXED, key, message, sig),
        _ => return false,
    };
    match key.kind() {
        DecodingKeyKind::SecretOrDer(der) => rs::UnparsedPublicKey::new(rsa, der).verify(message, sig).is_ok(),
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            rs::RsaPublicKeyComponents { n, e }.verify(rsa, message, sig).is_ok()
        }
    }
}

// EC keys (from a JWK or a PEM) hold the uncompressed point, which is what ring takes.
fn ec_ok(
    alg: &'static ring::signature::EcdsaVerificationAlgorithm,
    key: &DecodingKey,
    message: &[u8],
    sig: &[u8],
) -> bool {
    ring::signature::UnparsedPublicKey::new(alg, key.as_bytes())
        .verify(message, sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    #[test]
    fn only_the_canonical_unpadded_spelling_verifies() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let (x, y) = pair.public_key().as_ref()[1..].split_at(32);
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": B64URL.encode(x), "y": B64URL.encode(y),
        }))
        .unwrap();
        let key = VerifyKey::from_jwk(&jwk).unwrap();
        assert!(key.fits(Algorithm::ES256) && !key.fits(Algorithm::ES384) && !key.fits(Algorithm::RS256));
        let h = B64URL.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let p = B64URL.encode(br#"{"sub":"ci","exp":4102444800}"#);
        let input = format!("{h}.{p}");
        let sig = B64URL.encode(pair.sign(&rng, input.as_bytes()).unwrap());
        let jwt = format!("{input}.{sig}");
        assert_eq!(verify_jwt(&jwt, &key, Algorithm::ES256).unwrap()["sub"], "ci");
        // An ES256 signature is 64 bytes: padded base64url ends in `==`. Same bytes, another spelling: refused.
        assert!(verify_jwt(&format!("{jwt}=="), &key, Algorithm::ES256).is_err());
        assert!(verify_jwt(&format!("{jwt}="), &key, Algorithm::ES256).is_err());
        // A token whose header names another algorithm than the one checked is refused.
        let other = format!("{}.{p}.{sig}", B64URL.encode(br#"{"alg":"ES384","typ":"JWT"}"#));
        assert!(verify_jwt(&other, &key, Algorithm::ES256).is_err());
    }

    #[test]
    fn pem_keys_of_either_kind_load_and_garbage_does_not() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        // SubjectPublicKeyInfo for a P-256 point: the fixed prefix of id-ecPublicKey + prime256v1, then the point.
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(pair.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        let key = VerifyKey::from_pem(&pem).unwrap();
        assert!(key.fits(Algorithm::ES256));
        assert!(VerifyKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
        assert!(VerifyKey::from_pem("not a key").is_err());
    }
}
