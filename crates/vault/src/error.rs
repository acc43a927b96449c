//! Errors of the service, each mapped to the status and body a Vault client expects.

use leakstop_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// 403 `permission denied`: unknown, expired or revoked token, or a policy that does not allow the request.
    #[error("permission denied")]
    PermissionDenied,
    /// 404 with an empty error list (Vault's answer for a missing secret).
    #[error("not found")]
    NotFound,
    /// 404 naming the path: nothing is mounted there or the engine has no such endpoint.
    #[error("unsupported path")]
    UnsupportedPath,
    /// 405 for a method the endpoint does not take.
    #[error("unsupported operation")]
    UnsupportedOperation,
    #[error("{0}")]
    BadRequest(String),
    #[error("Vault is sealed")]
    Sealed,
    /// 503: an HA standby reached with a request it cannot serve (the HTTP edge forwards them to the active node).
    #[error("this node is a standby and no active node could serve the request; retry shortly")]
    Standby,
    /// 503: storage refused a write because this node lost the HA lock; nothing of the write was stored.
    #[error("this node stopped being the active node during the request; nothing was written; retry")]
    NotActive,
    #[error("Vault is not initialized")]
    NotInitialized,
    /// 503: the audit log could not record the request in time, so it is not served.
    #[error("audit log unavailable: {0}; the request was not served")]
    AuditUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// 502: a service this one depends on (an OIDC issuer, the GitHub API) failed or could not be reached.
    #[error("{0}")]
    Upstream(String),
    /// 401: a request that authenticates by signature (GitHub's partner endpoint) whose signature is missing or
    /// does not verify.
    #[error("{0}")]
    Unauthorized(String),
    /// 429: too many leak reports from one client address; `Retry-After` says when to come back.
    #[error("too many leak reports from this address: retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// An integrity failure of a stored entry (tampered or corrupted): never served as data.
    #[error("integrity check failed for stored entry `{0}`: the storage was modified or corrupted outside leakstop")]
    Integrity(String),
}

impl VaultError {
    /// A 400 whose message says what is wrong and what to send instead.
    pub fn bad(msg: impl Into<String>) -> VaultError {
        VaultError::BadRequest(msg.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            VaultError::PermissionDenied => 403,
            VaultError::NotFound | VaultError::UnsupportedPath => 404,
            VaultError::UnsupportedOperation => 405,
            VaultError::BadRequest(_) => 400,
            VaultError::Sealed | VaultError::AuditUnavailable(_) | VaultError::Standby | VaultError::NotActive => 503,
            VaultError::NotInitialized => 503,
            VaultError::Internal(_) | VaultError::Integrity(_) => 500,
            VaultError::Upstream(_) => 502,
            VaultError::RateLimited { .. } => 429,
            VaultError::Unauthorized(_) => 401,
        }
    }

    /// The `errors` list of the body.
    pub fn messages(&self) -> Vec<String> {
        match self {
            VaultError::NotFound => vec![],
            VaultError::UnsupportedPath => vec!["1 error occurred:\n\t* unsupported path\n\n".into()],
            VaultError::PermissionDenied => vec!["1 error occurred:\n\t* permission denied\n\n".into()],
            // The detail (storage keys, paths, upstream errors) is for the server log, not for any caller.
            VaultError::Internal(_) => vec!["internal error: the server log has the details".into()],
            VaultError::Integrity(_) => {
                vec!["integrity check failed for a stored entry: the server log names it".into()]
            }
            e => vec![e.to_string()],
        }
    }
}

impl From<StorageError> for VaultError {
    fn from(e: StorageError) -> Self {
        if matches!(e, StorageError::NotLeader) {
            return VaultError::NotActive;
        }
        VaultError::Internal(format!("storage: {e}"))
    }
}

impl From<serde_json::Error> for VaultError {
    fn from(e: serde_json::Error) -> Self {
        VaultError::Internal(format!("stored record could not be decoded: {e}"))
    }
}
