//! Audit devices (`sys/audit[/:path]`), `sys/audit-hash/:path` and the chain key (`sys/audit-chain`, sudo).

use serde_json::{Value, json};

use super::SysCall;
use crate::audit::DeviceConfig;
use crate::core::Reply;
use crate::fields::Fields;
use crate::pipeline::Effects;
use crate::{Operation, VaultError};

pub(super) async fn handle(c: &SysCall<'_>, rest: &str, fx: &mut Effects) -> Result<Reply, VaultError> {
    use Operation::*;
    let audit = &c.core.audit;
    let bad = |e: crate::audit::AuditError| VaultError::bad(e.to_string());
    match (rest, c.lr.op) {
        ("audit", Read) => {
            let list = audit.list_json();
            let mut body = list.as_object().cloned().unwrap_or_default();
            body.insert("data".into(), list);
            Ok(Reply::raw(Value::Object(body)))
        }
        // Hands out the chain key: root-protected (the pipeline's `needs_sudo` lists it).
        ("audit-chain", Read) => Ok(Reply::data(audit.chain_json().map_err(bad)?)),
        _ => {
            let (section, name) = rest.split_once('/').ok_or(VaultError::UnsupportedPath)?;
            match (section, c.lr.op) {
                ("audit", Create | Update) => {
                    let cfg = DeviceConfig::from_request(name, &c.lr.data).map_err(bad)?;
                    audit.enable_requested(cfg).await.map_err(bad)?;
                    c.core.stage_audit_table(fx)?;
                    Ok(Reply::empty())
                }
                ("audit", Delete) => {
                    audit.disable(name).map_err(bad)?;
                    c.core.stage_audit_table(fx)?;
                    Ok(Reply::empty())
                }
                ("audit-hash", Create | Update) => {
                    let input = Fields::new(&c.lr.data)
                        .string("input")?
                        .ok_or_else(|| VaultError::bad("field `input` is required"))?;
                    let hash = audit.hash(name, &input).map_err(bad)?;
                    Ok(Reply::data(json!({ "hash": hash })))
                }
                _ => Err(VaultError::UnsupportedPath),
            }
        }
    }
}
