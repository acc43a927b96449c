//! Leases: `sys/leases/lookup` and `sys/leases/revoke` (and the older `sys/revoke`).

use serde_json::json;

use super::SysCall;
use super::seal::rfc3339;
use crate::core::Reply;
use crate::fields::Fields;
use crate::{Operation, VaultError};

pub(super) async fn handle(c: &SysCall<'_>, rest: &str) -> Result<Reply, VaultError> {
    use Operation::*;
    let id = || {
        Fields::new(&c.lr.data)
            .text("lease_id")?
            .ok_or_else(|| VaultError::bad("field `lease_id` is required"))
    };
    match (rest, c.lr.op) {
        ("leases/revoke" | "revoke", Update | Create) => {
            crate::leases::revoke_all(c.core, &[id()?]).await?;
            Ok(Reply::empty())
        }
        ("leases/lookup", Update | Create) => {
            let l = crate::leases::get(c.core, &id()?)?.ok_or_else(|| VaultError::bad("invalid lease"))?;
            Ok(Reply::data(json!({
                "id": l.id,
                "expire_time": rfc3339(l.expire_time),
                "ttl": (l.expire_time - c.lr.now_unix()).max(0),
                "renewable": l.renewable,
            })))
        }
        _ => Err(VaultError::UnsupportedPath),
    }
}
