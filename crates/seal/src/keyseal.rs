use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::{IV_LEN, KEY_LEN, Seal, SealError, SealKind, WRAP_VERSION, parse_blob};

/// Associated data bound into every KeySeal blob, so a blob cannot be confused with other AES-GCM data.
const AAD: &[u8] = b"leakstop/root-key/v1";

/// A seal with a software AES-256-GCM key: the key combined from Shamir shares, or a random dev-mode key.
pub struct KeySeal {
    cipher: Aes256Gcm,
    kind: SealKind,
}

impl KeySeal {
    /// `kek` must be 32 bytes. The kind defaults to [`SealKind::Shamir`]; see [`KeySeal::with_kind`].
    pub fn new(kek: Zeroizing<Vec<u8>>) -> Result<KeySeal, SealError> {
        KeySeal::with_kind(kek, SealKind::Shamir)
    }

    pub fn with_kind(kek: Zeroizing<Vec<u8>>, kind: SealKind) -> Result<KeySeal, SealError> {
        if kek.len() != KEY_LEN {
            return Err(SealError::BadKeyLength(kek.len()));
        }
        let cipher = Aes256Gcm::new_from_slice(&kek).map_err(|_| SealError::BadKeyLength(kek.len()))?;
        Ok(KeySeal { cipher, kind })
    }

    /// A Shamir seal from unseal key shares (see [`crate::shamir::combine`] for the errors).
    pub fn from_shares(shares: &[Vec<u8>]) -> Result<KeySeal, SealError> {
        KeySeal::with_kind(crate::shamir::combine(shares)?, SealKind::Shamir)
    }

    /// A dev-mode seal with a fresh random key that lives only in memory.
    pub fn random_dev() -> KeySeal {
        let key = generate_key();
        let cipher = Aes256Gcm::new_from_slice(&key).expect("32-byte key");
        KeySeal {
            cipher,
            kind: SealKind::Dev,
        }
    }
}

/// A fresh random 32-byte key (for root keys, unseal keys).
pub fn generate_key() -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

impl std::fmt::Debug for KeySeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySeal")
            .field("kind", &self.kind)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Seal for KeySeal {
    fn kind(&self) -> SealKind {
        self.kind
    }

    fn wrap_root_key(&self, root_key: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut iv = [0u8; IV_LEN];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&iv),
                Payload {
                    msg: root_key,
                    aad: AAD,
                },
            )
            .map_err(|_| SealError::Crypto("AES-GCM encryption of the root key failed".into()))?;
        let mut out = Vec::with_capacity(1 + IV_LEN + ct.len());
        out.push(WRAP_VERSION);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap_root_key(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (iv, ct) = parse_blob(wrapped)?;
        self.cipher
            .decrypt(Nonce::from_slice(iv), Payload { msg: ct, aad: AAD })
            .map(Zeroizing::new)
            .map_err(|_| SealError::UnwrapFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let seal = KeySeal::new(generate_key()).unwrap();
        let root = b"0123456789abcdef0123456789abcdef";
        let blob = seal.wrap_root_key(root).unwrap();
        assert_eq!(&seal.unwrap_root_key(&blob).unwrap()[..], root);
        // Fresh IV per wrap.
        assert_ne!(blob, seal.wrap_root_key(root).unwrap());
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(seal.unwrap_root_key(&bad), Err(SealError::UnwrapFailed)));
        let other = KeySeal::new(generate_key()).unwrap();
        assert!(matches!(other.unwrap_root_key(&blob), Err(SealError::UnwrapFailed)));
        assert!(matches!(
            seal.unwrap_root_key(&blob[..5]),
            Err(SealError::MalformedBlob(_))
        ));
    }

    #[test]
    fn shares_rebuild_the_same_seal() {
        let kek = generate_key();
        let shares = crate::shamir::split(&kek, 5, 3).unwrap();
        let blob = KeySeal::new(kek).unwrap().wrap_root_key(b"root").unwrap();
        let some: Vec<Vec<u8>> = [4, 1, 2].iter().map(|&i| shares[i].to_vec()).collect();
        let seal = KeySeal::from_shares(&some).unwrap();
        assert_eq!(seal.kind(), SealKind::Shamir);
        assert_eq!(&seal.unwrap_root_key(&blob).unwrap()[..], b"root");
        let err = KeySeal::from_shares(&some[..2]).unwrap_err().to_string();
        assert!(err.contains("1 more needed"), "{err}");
    }

    #[test]
    fn wrong_key_length_is_rejected() {
        let err = KeySeal::new(Zeroizing::new(vec![0u8; 16])).unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }

    #[test]
    fn debug_has_no_key() {
        let s = format!("{:?}", KeySeal::random_dev());
        assert!(s.contains("redacted"));
    }
}
