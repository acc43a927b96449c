//! JWT signature verification with ring (RSA PKCS#1 v1.5 and PSS, ECDSA P-256/P-384): keys from a JWKS entry or a
//! PEM public key (SPKI, or PKCS#1 for RSA). Logins are dominated by this check, and ring's is several times
//! faster than a pure-Rust bignum implementation.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use ring::signature::{self, UnparsedPublicKey};
use serde_json::{Map, Value};

/// A public key ready to verify with.
#[derive(Debug, Clone)]
pub enum VerifyKey {
    /// RSA as modulus and exponent (big-endian).
    RsaParts { n: Vec<u8>, e: Vec<u8> },
    /// RSA as a PKCS#1 `RSAPublicKey` DER.
    RsaDer(Vec<u8>),
    /// An EC point (uncompressed `04 || x || y`) and whether it is P-384 (else P-256).
    Ec { point: Vec<u8>, p384: bool },
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// One DER TLV: (tag, contents, rest).
fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, d) = d.split_first()?;
    let (&l0, mut d) = d.split_first()?;
    let len = if l0 < 0x80 {
        l0 as usize
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || d.len() < n {
            return None;
        }
        let len = d[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        d = &d[n..];
        len
    };
    (d.len() >= len).then(|| (tag, &d[..len], &d[len..]))
}

impl VerifyKey {
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyKey, String> {
        let dec = |s: &str| {
            B64URL
                .decode(s.trim_end_matches('='))
                .map_err(|e| format!("bad base64url in JWK: {e}"))
        };
        match &jwk.algorithm {
            AlgorithmParameters::RSA(r) => Ok(VerifyKey::RsaParts {
                n: dec(&r.n)?,
                e: dec(&r.e)?,
            }),
            AlgorithmParameters::EllipticCurve(ec) => {
                let (x, y) = (dec(&ec.x)?, dec(&ec.y)?);
                let p384 = matches!(ec.curve, jsonwebtoken::jwk::EllipticCurve::P384);
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Ok(VerifyKey::Ec { point, p384 })
            }
            _ => Err("only RSA and EC keys are supported".into()),
        }
    }

    /// A PEM public key: `PUBLIC KEY` (SPKI, RSA or EC) or `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(pem: &str) -> Result<VerifyKey, String> {
        let begin = pem.find("-----BEGIN ").ok_or("not PEM: no BEGIN line")?;
        let label_end = pem[begin + 11..].find("-----").ok_or("not PEM: bad BEGIN line")? + begin + 11;
        let label = &pem[begin + 11..label_end];
        let body_start = label_end + 5;
        let end = pem[body_start..].find("-----END").ok_or("not PEM: no END line")? + body_start;
        let b64: String = pem[body_start..end].chars().filter(|c| !c.is_whitespace()).collect();
        let der = B64.decode(b64).map_err(|e| format!("PEM body is not base64: {e}"))?;
        match label {
            "RSA PUBLIC KEY" => Ok(VerifyKey::RsaDer(der)),
            "PUBLIC KEY" => {
                let bad = || "malformed SubjectPublicKeyInfo".to_string();
                let (_, spki, _) = tlv(&der).ok_or_else(bad)?;
                let (_, alg, rest) = tlv(spki).ok_or_else(bad)?;
                let (_, oid, params) = tlv(alg).ok_or_else(bad)?;
                let (tag, bits, _) = tlv(rest).ok_or_else(bad)?;
                if tag != 0x03 || bits.first() != Some(&0) {
                    return Err(bad());
                }
                let key = bits[1..].to_vec();
                if oid == OID_RSA {
                    Ok(VerifyKey::RsaDer(key))
                } else if oid == OID_EC {
                    let curve = tlv(params).map(|(_, c, _)| c).unwrap_or_default();
                    Ok(VerifyKey::Ec {
                        point: key,
                        p384: curve == OID_P384,
                    })
                } else {
                    Err("unsupported public key algorithm (use RSA or EC P-256/P-384)".into())
                }
            }
            other => Err(format!("PEM block {other:?} is not a public key")),
        }
    }

    /// Verify `sig` over `msg` for `alg`; false for a mismatch of key type and algorithm.
    pub fn verify(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
        let rsa: Option<&'static signature::RsaParameters> = match alg {
            Algorithm::RS256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::RS384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::RS512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::PS256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
            Algorithm::PS384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
            Algorithm::PS512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
            _ => None,
        };
        match (self, rsa, alg) {
            (VerifyKey::RsaParts { n, e }, Some(params), _) => signature::RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .is_ok(),
            (VerifyKey::RsaDer(der), Some(params), _) => UnparsedPublicKey::new(params, der).verify(msg, sig).is_ok(),
            (VerifyKey::Ec { point, p384: false }, None, Algorithm::ES256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            (VerifyKey::Ec { point, p384: true }, None, Algorithm::ES384) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            _ => false,
        }
    }

    /// Does this key type go with `alg` at all?
    pub fn fits(&self, alg: Algorithm) -> bool {
        match self {
            VerifyKey::RsaParts { .. } | VerifyKey::RsaDer(_) => {
                matches!(
                    alg,
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                )
            }
            VerifyKey::Ec { p384, .. } => matches!((alg, p384), (Algorithm::ES256, false) | (Algorithm::ES384, true)),
        }
    }
}

/// Check the signature of a compact JWS and return its claims. Each part must be canonical unpadded base64url
/// (RFC 7515): a token is accepted in exactly one spelling.
pub fn verify_jwt(jwt: &str, key: &VerifyKey, alg: Algorithm) -> Result<Map<String, Value>, String> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("the jwt is malformed: expected three dot-separated parts".into());
    };
    if B64URL.decode(h).is_err() {
        return Err("the header is not unpadded base64url".into());
    }
    let sig = B64URL
        .decode(s)
        .map_err(|_| "the signature is not unpadded base64url".to_string())?;
    if !key.verify(alg, &jwt.as_bytes()[..h.len() + 1 + p.len()], &sig) {
        return Err("InvalidSignature".into());
    }
    let payload = B64URL
        .decode(p)
        .map_err(|_| "the payload is not unpadded base64url".to_string())?;
    serde_json::from_slice(&payload).map_err(|e| format!("the payload is not a JSON object: {e}"))
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
        let key = VerifyKey::Ec {
            point: pair.public_key().as_ref().to_vec(),
            p384: false,
        };
        let h = B64URL.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let p = B64URL.encode(br#"{"sub":"ci","exp":4102444800}"#);
        let input = format!("{h}.{p}");
        let sig = B64URL.encode(pair.sign(&rng, input.as_bytes()).unwrap());
        let jwt = format!("{input}.{sig}");
        assert_eq!(verify_jwt(&jwt, &key, Algorithm::ES256).unwrap()["sub"], "ci");
        // An ES256 signature is 64 bytes: padded base64url ends in `==`. Same bytes, another spelling: refused.
        assert!(verify_jwt(&format!("{jwt}=="), &key, Algorithm::ES256).is_err());
        assert!(verify_jwt(&format!("{jwt}="), &key, Algorithm::ES256).is_err());
    }
}
