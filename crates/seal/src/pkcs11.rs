//! The PKCS#11 seal: the root key is wrapped by an AES-256 key that never leaves the HSM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rand::RngCore;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::{IV_LEN, Seal, SealError, SealKind, TAG_LEN, WRAP_VERSION, parse_blob};

/// A token PIN. Zeroized on drop, never printed. Comes from an environment variable or a file, never argv.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    pub fn new(pin: Zeroizing<String>) -> Pin {
        Pin(pin)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Where the token PIN comes from (`pin_env` or `pin_file` in `[seal]`). Parsing the config only records the
/// source; [`PinSource::read`] reads it, so a start-up can report a missing PIN as such and then remove the
/// variable from its environment before anything else can see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    Env(String),
    File(PathBuf),
}

impl PinSource {
    pub fn read(&self) -> Result<Pin, SealError> {
        match self {
            PinSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Pin(Zeroizing::new(v))),
                Ok(_) => Err(SealError::PinSource(format!(
                    "environment variable {name} (pin_env in [seal]) is empty: put the token's user PIN in it"
                ))),
                Err(_) => Err(SealError::PinSource(format!(
                    "environment variable {name} (pin_env in [seal]) is not set: export the token's user PIN in it \
                     before starting the server, or name a file with pin_file"
                ))),
            },
            PinSource::File(path) => {
                let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    SealError::PinSource(format!("cannot read {} (pin_file in [seal]): {e}", path.display()))
                })?);
                // One trailing newline (what `echo PIN > file` writes) is not part of the PIN.
                let pin = raw.strip_suffix('\n').unwrap_or(&raw);
                let pin = pin.strip_suffix('\r').unwrap_or(pin);
                if pin.is_empty() {
                    return Err(SealError::PinSource(format!(
                        "{} (pin_file in [seal]) is empty: put the token's user PIN in it",
                        path.display()
                    )));
                }
                Ok(Pin(Zeroizing::new(pin.to_owned())))
            }
        }
    }
}

/// PKCS#11 seal configuration, as found under `[seal.pkcs11]` in the server's TOML config:
///
/// ```toml
/// lib = "/usr/lib/softhsm/libsofthsm2.so"
/// token_label = "leakstop"      # or: slot = 0
/// key_label = "leakstop-root"
/// pin_env = "LEAKSTOP_HSM_PIN"  # or: pin_file = "/etc/leakstop/hsm.pin"
/// generate_key = true           # create the key on first start if missing
/// ```
/// Only the PIN's source is kept: [`PinSource::read`] reads it and [`Pkcs11Seal::open`] takes the result.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Pkcs11ConfigToml")]
pub struct Pkcs11Config {
    pub lib: PathBuf,
    pub token_label: Option<String>,
    pub slot: Option<u64>,
    pub key_label: String,
    pub pin: PinSource,
    pub generate_key: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pkcs11ConfigToml {
    lib: PathBuf,
    token_label: Option<String>,
    slot: Option<u64>,
    key_label: String,
    pin_env: Option<String>,
    pin_file: Option<PathBuf>,
    #[serde(default)]
    generate_key: bool,
}

impl TryFrom<Pkcs11ConfigToml> for Pkcs11Config {
    type Error = SealError;

    fn try_from(t: Pkcs11ConfigToml) -> Result<Self, SealError> {
        let pin = match (t.pin_env, t.pin_file) {
            (Some(name), None) => PinSource::Env(name),
            (None, Some(path)) => PinSource::File(path),
            (Some(_), Some(_)) => {
                return Err(SealError::PinSource("set only one of `pin_env` and `pin_file`".into()));
            }
            (None, None) => {
                return Err(SealError::PinSource(
                    "the pkcs11 seal needs `pin_env` (environment variable name) or `pin_file`; \
                     the PIN is never taken from the command line or the config itself"
                        .into(),
                ));
            }
        };
        if t.token_label.is_none() && t.slot.is_none() {
            return Err(SealError::NoTokenSelected);
        }
        Ok(Pkcs11Config {
            lib: t.lib,
            token_label: t.token_label,
            slot: t.slot,
            key_label: t.key_label,
            pin,
            generate_key: t.generate_key,
        })
    }
}

/// Associated data bound into every blob, so a blob cannot be confused with other data the key encrypts.
const AAD: &[u8] = b"leakstop/root-key/v1";

/// One initialized context per library per process: C_Initialize may run only once, and finalizing while
/// another seal still uses the library would break it. Contexts therefore live until the process exits.
fn context_for(lib: &Path) -> Result<Pkcs11, SealError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(ctx) = map.get(lib) {
        return Ok(ctx.clone());
    }
    let load_err = |reason: String| SealError::LibraryLoad {
        path: lib.display().to_string(),
        reason,
    };
    if !lib.exists() {
        return Err(load_err("file not found".into()));
    }
    let ctx = Pkcs11::new(lib).map_err(|e| load_err(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load_err(format!("C_Initialize failed: {e}"))),
    }
    map.insert(lib.to_path_buf(), ctx.clone());
    Ok(ctx)
}

fn p11(operation: &'static str) -> impl Fn(cryptoki::error::Error) -> SealError {
    move |e| SealError::Pkcs11 {
        operation,
        reason: e.to_string(),
    }
}

/// A seal backed by an AES-256 key on a PKCS#11 token. The key is generated inside the token as sensitive,
/// non-extractable and persistent; only its handle is known here.
pub struct Pkcs11Seal {
    ctx: Pkcs11,
    slot: Slot,
    pin: Pin,
    // One logged-in session shared by all operations (PKCS#11 sessions must not be used concurrently) and the
    // key handle, which is only valid while the token keeps our login.
    state: Mutex<(Session, ObjectHandle)>,
    token: String,
    key_label: String,
}

impl std::fmt::Debug for Pkcs11Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Seal")
            .field("token", &self.token)
            .field("key_label", &self.key_label)
            .finish()
    }
}

/// Errors after which a fresh session and login may succeed (HSM restarted, session closed, logged out).
fn is_session_lost(e: &cryptoki::error::Error) -> bool {
    matches!(
        e,
        cryptoki::error::Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent,
            _
        )
    )
}

fn login(session: &Session, pin: &Pin, token: &str) -> Result<(), SealError> {
    match session.login(UserType::User, Some(&AuthPin::new(pin.expose().to_owned()))) {
        // Another seal in this process already logged this token in; login state is per token.
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(cryptoki::error::Error::Pkcs11(RvError::PinIncorrect, _)) => Err(SealError::PinIncorrect {
            token: token.to_owned(),
        }),
        Err(cryptoki::error::Error::Pkcs11(RvError::PinLocked, _)) => Err(SealError::PinLocked {
            token: token.to_owned(),
        }),
        Err(e) => Err(p11("login")(e)),
    }
}

impl Pkcs11Seal {
    /// Load the library, find the token, log in with `pin` (read from `cfg.pin`), find (or, with `generate_key`,
    /// create) the wrapping key.
    pub fn open(cfg: &Pkcs11Config, pin: Pin) -> Result<Pkcs11Seal, SealError> {
        let ctx = context_for(&cfg.lib)?;
        let (slot, token) = find_slot(&ctx, cfg)?;
        let session = ctx.open_rw_session(slot).map_err(p11("open session"))?;
        login(&session, &pin, &token)?;
        let key = find_or_create_key(&session, &cfg.key_label, cfg.generate_key, &token)?;
        tracing::info!(token = %token, key_label = %cfg.key_label, "pkcs11 seal ready");
        Ok(Pkcs11Seal {
            ctx,
            slot,
            pin,
            state: Mutex::new((session, key)),
            token,
            key_label: cfg.key_label.clone(),
        })
    }

    /// The label of the token in use.
    pub fn token_label(&self) -> &str {
        &self.token
    }

    /// Run `f` with the session and key; if the token lost our session or login, reconnect once and retry.
    fn with_key<T>(
        &self,
        f: impl Fn(&Session, ObjectHandle) -> Result<T, cryptoki::error::Error>,
    ) -> Result<Result<T, cryptoki::error::Error>, SealError> {
        // The session has no Rust-side state a panic could corrupt.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match f(&state.0, state.1) {
            Err(e) if is_session_lost(&e) => {
                tracing::warn!(token = %self.token, error = %e, "pkcs11 session lost; reconnecting");
                let session = self.ctx.open_rw_session(self.slot).map_err(p11("reopen session"))?;
                login(&session, &self.pin, &self.token)?;
                let key = find_or_create_key(&session, &self.key_label, false, &self.token)?;
                *state = (session, key);
                Ok(f(&state.0, state.1))
            }
            other => Ok(other),
        }
    }
}

fn find_slot(ctx: &Pkcs11, cfg: &Pkcs11Config) -> Result<(Slot, String), SealError> {
    // Uninitialized tokens (e.g. SoftHSM's spare free slot) cannot hold a key; leave them out of the choice.
    let slots = ctx.get_slots_with_initialized_token().map_err(p11("list slots"))?;
    let mut seen = Vec::new();
    for slot in slots {
        let info = ctx.get_token_info(slot).map_err(p11("read token info"))?;
        let label = info.label().trim_end().to_owned();
        let matches_label = cfg.token_label.as_deref().is_none_or(|l| l == label);
        let matches_slot = cfg.slot.is_none_or(|s| s == slot.id());
        if matches_label && matches_slot {
            return Ok((slot, label));
        }
        seen.push((slot.id(), label));
    }
    let available = if seen.is_empty() {
        "none (initialize one, e.g. `softhsm2-util --init-token --free --label NAME`)".to_owned()
    } else {
        seen.iter()
            .map(|(id, l)| format!("`{l}` (slot {id})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (&cfg.token_label, cfg.slot) {
        (Some(label), _) => Err(SealError::TokenNotFound {
            label: label.clone(),
            available,
        }),
        (None, Some(slot)) => Err(SealError::SlotNotFound { slot, available }),
        (None, None) => Err(SealError::NoTokenSelected),
    }
}

fn find_or_create_key(
    session: &Session,
    key_label: &str,
    generate: bool,
    token: &str,
) -> Result<ObjectHandle, SealError> {
    let label = key_label.as_bytes().to_vec();
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.clone()),
    ];
    let found = session.find_objects(&template).map_err(p11("find key"))?;
    match found.len() {
        1 => {
            warn_if_exportable(session, found[0], key_label, token);
            return Ok(found[0]);
        }
        0 => {}
        count => {
            return Err(SealError::KeyAmbiguous {
                label: key_label.into(),
                token: token.into(),
                count,
            });
        }
    }
    if !generate {
        return Err(SealError::KeyNotFound {
            label: key_label.into(),
            token: token.into(),
        });
    }
    let template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::ValueLen(32.into()),
        Attribute::Label(label),
    ];
    let key = session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(p11("generate AES-256 key"))?;
    tracing::info!(token = %token, key_label = %key_label, "generated a new non-extractable AES-256 key");
    Ok(key)
}

/// A key provisioned outside leakstop may be exportable; that defeats the point of the HSM, so say so loudly.
fn warn_if_exportable(session: &Session, key: ObjectHandle, key_label: &str, token: &str) {
    use cryptoki::object::AttributeType;
    let Ok(attrs) = session.get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable]) else {
        return;
    };
    let exportable = attrs
        .iter()
        .any(|a| matches!(a, Attribute::Sensitive(false) | Attribute::Extractable(true)));
    if exportable {
        tracing::warn!(
            token = %token,
            key_label = %key_label,
            "the seal key can leave the HSM (CKA_SENSITIVE false or CKA_EXTRACTABLE true); \
             create a non-extractable key (generate_key = true with a new key_label) and re-wrap"
        );
    }
}

impl Seal for Pkcs11Seal {
    fn kind(&self) -> SealKind {
        SealKind::Pkcs11
    }

    fn wrap_root_key(&self, root_key: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut iv = [0u8; IV_LEN];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let ct = self
            .with_key(|session, key| {
                let mut iv_param = iv;
                let params = GcmParams::new(&mut iv_param, AAD, (TAG_LEN as u64 * 8).into())?;
                session.encrypt(&Mechanism::AesGcm(params), key, root_key)
            })?
            .map_err(p11("wrap"))?;
        let mut out = Vec::with_capacity(1 + IV_LEN + ct.len());
        out.push(WRAP_VERSION);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap_root_key(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (iv, ct) = parse_blob(wrapped)?;
        let result = self.with_key(|session, key| {
            let mut iv = iv.to_vec();
            let params = GcmParams::new(&mut iv, AAD, (TAG_LEN as u64 * 8).into())?;
            session.decrypt(&Mechanism::AesGcm(params), key, ct)
        })?;
        match result {
            Ok(pt) => Ok(Zeroizing::new(pt)),
            Err(cryptoki::error::Error::Pkcs11(
                RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange | RvError::GeneralError,
                _,
            )) => Err(SealError::UnwrapFailed),
            Err(e) => Err(p11("unwrap")(e)),
        }
    }
}
