//! Seals protect the service's root key at rest.
//!
//! A [`Seal`] wraps (encrypts) the root key before it is written to storage and unwraps it at start-up.
//! Three kinds exist: [`pkcs11::Pkcs11Seal`] (an AES key inside an HSM, auto-unseal), [`KeySeal`] with a key
//! combined from [`shamir`] shares (manual unseal), and [`KeySeal`] with a random in-memory key (dev mode).
//!
//! Wrapped blobs are opaque: `version byte || 12-byte IV || AES-256-GCM ciphertext+tag`.
//!
//! No unsafe code: the PKCS#11 FFI is `cryptoki`'s.
#![forbid(unsafe_code)]

pub mod pkcs11;
pub mod shamir;

mod keyseal;

pub use keyseal::{KeySeal, generate_key};
pub use pkcs11::{Pin, PinSource, Pkcs11Config, Pkcs11Seal};
pub use zeroize::Zeroizing;

use std::fmt;
use std::sync::Arc;

/// Version byte in front of every wrapped blob, so the format can evolve without guessing.
pub const WRAP_VERSION: u8 = 1;
/// AES-GCM IV length used by every seal.
pub const IV_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Length of every key a seal holds or wraps (AES-256): root keys, unseal keys, sealing keys.
pub const KEY_LEN: usize = 32;

/// Which kind of seal protects the root key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealKind {
    Pkcs11,
    Shamir,
    Dev,
}

impl SealKind {
    /// The name Vault reports in `sys/seal-status` `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            SealKind::Pkcs11 => "pkcs11",
            SealKind::Shamir => "shamir",
            SealKind::Dev => "dev",
        }
    }
}

impl fmt::Display for SealKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[seal]` table of the server config. Dev mode needs none (it uses [`KeySeal::random_dev`]).
///
/// ```toml
/// [seal]
/// type = "pkcs11"            # auto-unseal; the other fields are those of [`Pkcs11Config`]
/// lib = "/usr/lib/softhsm/libsofthsm2.so"
/// token_label = "leakstop"
/// key_label = "leakstop-root"
/// pin_env = "LEAKSTOP_HSM_PIN"
/// ```
/// or `type = "shamir"` (unseal keys from `operator init`, entered with `operator unseal`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SealConfig {
    Pkcs11(Pkcs11Config),
    Shamir,
}

/// Wraps and unwraps the root key. Implementations never log or expose key bytes.
pub trait Seal: Send + Sync {
    fn kind(&self) -> SealKind;
    /// Encrypt `root_key`; the result is safe to store.
    fn wrap_root_key(&self, root_key: &[u8]) -> Result<Vec<u8>, SealError>;
    /// Decrypt a blob produced by `wrap_root_key` of the same seal (same HSM key / same unseal key).
    fn unwrap_root_key(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
}

macro_rules! forward_seal {
    ($($ptr:ident),*) => {$(
        /// Shared handles are seals too.
        impl<T: Seal + ?Sized> Seal for $ptr<T> {
            fn kind(&self) -> SealKind {
                (**self).kind()
            }
            fn wrap_root_key(&self, root_key: &[u8]) -> Result<Vec<u8>, SealError> {
                (**self).wrap_root_key(root_key)
            }
            fn unwrap_root_key(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
                (**self).unwrap_root_key(wrapped)
            }
        }
    )*};
}
forward_seal!(Arc, Box);

/// Errors from every seal. Messages name what failed and what to do; they never contain key material or PINs.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "PKCS#11 library {path} could not be loaded: {reason} (install the HSM vendor's library, e.g. Debian package `softhsm2` for /usr/lib/softhsm/libsofthsm2.so, or fix `lib` in the seal config)"
    )]
    LibraryLoad { path: String, reason: String },
    #[error("no PKCS#11 token with label `{label}`; available token labels: {available}")]
    TokenNotFound { label: String, available: String },
    #[error("no PKCS#11 slot {slot}; available slots with a token: {available}")]
    SlotNotFound { slot: u64, available: String },
    #[error("PKCS#11 seal config names neither `token_label` nor `slot`; set one of them")]
    NoTokenSelected,
    #[error("PIN rejected by token {token} (CKR_PIN_INCORRECT); check the PIN source (`pin_env` / `pin_file`)")]
    PinIncorrect { token: String },
    #[error("PIN for token {token} is locked (CKR_PIN_LOCKED); reset it with the token's security officer PIN")]
    PinLocked { token: String },
    #[error("PIN not available: {0}")]
    PinSource(String),
    #[error(
        "no AES key with label `{label}` on token {token}; create it (set `generate_key = true` on first start) or fix `key_label`"
    )]
    KeyNotFound { label: String, token: String },
    #[error("{count} keys with label `{label}` on token {token}; key labels must be unique, remove the duplicates")]
    KeyAmbiguous { label: String, token: String, count: usize },
    #[error("PKCS#11 {operation} failed: {reason}")]
    Pkcs11 { operation: &'static str, reason: String },
    #[error("the wrapped root key could not be decrypted: wrong key, or the stored blob was tampered with")]
    UnwrapFailed,
    #[error("the wrapped root key blob is malformed: {0}")]
    MalformedBlob(String),
    #[error("the sealing key must be 32 bytes (AES-256), got {0}")]
    BadKeyLength(usize),
    #[error("shamir: {0}")]
    Shamir(String),
    #[error("encryption failed: {0}")]
    Crypto(String),
}

/// Splits a wrapped blob into (iv, ciphertext+tag), checking the version byte and lengths.
pub(crate) fn parse_blob(wrapped: &[u8]) -> Result<(&[u8], &[u8]), SealError> {
    let Some((&version, rest)) = wrapped.split_first() else {
        return Err(SealError::MalformedBlob("empty".into()));
    };
    if version != WRAP_VERSION {
        return Err(SealError::MalformedBlob(format!(
            "unknown version byte {version} (this build understands {WRAP_VERSION})"
        )));
    }
    if rest.len() < IV_LEN + TAG_LEN {
        return Err(SealError::MalformedBlob(format!(
            "{} bytes is too short",
            wrapped.len()
        )));
    }
    Ok(rest.split_at(IV_LEN))
}
