//! `sys/metrics`: gauges of the lease manager, in Vault's JSON shape (`Gauges`, `Counters`, `Samples`) or, with
//! `format=prometheus`, as Prometheus text. Read under the caller's ACL like any other `sys/` path.
//!
//! - `vault.expire.num_leases`: leases recorded (revoked ones leave; failing ones stay until revoked).
//! - `vault.expire.num_irrevocable_leases`: leases whose revocation has been failing for longer than
//!   `lease_irrevocable_after_s` (still retried): what an operator should alert on.
//!
//! The irrevocable count reads every lease record (as `sys/leases/count` does): fine for a scrape every few
//! seconds over thousands of leases, not a hot path.

use serde_json::{Value, json};

use super::SysCall;
use crate::VaultError;
use crate::core::Reply;
use crate::leases;

pub(super) fn handle(c: &SysCall<'_>) -> Result<Reply, VaultError> {
    let all = leases::all(c.st)?;
    let irrevocable = all.iter().filter(|l| l.is_irrevocable()).count();
    let gauges = [
        ("vault.expire.num_leases", all.len()),
        ("vault.expire.num_irrevocable_leases", irrevocable),
    ];
    let format =
        c.lr.query
            .get("format")
            .cloned()
            .or_else(|| c.lr.data.get("format").and_then(Value::as_str).map(String::from));
    match format.as_deref() {
        None | Some("") | Some("json") => {
            let now = time::OffsetDateTime::from(c.lr.now);
            let stamp = now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let gauges: Vec<Value> = gauges
                .iter()
                .map(|(name, v)| json!({"Name": name, "Value": v, "Labels": {}}))
                .collect();
            Ok(Reply::raw(json!({
                "Timestamp": stamp,
                "Gauges": gauges,
                "Counters": [],
                "Samples": [],
                "Points": [],
            })))
        }
        Some("prometheus") => {
            let mut text = String::new();
            for (name, v) in gauges {
                let name = name.replace('.', "_");
                text.push_str(&format!("# TYPE {name} gauge\n{name} {v}\n"));
            }
            Ok(Reply {
                text: Some(text),
                ..Default::default()
            })
        }
        Some(other) => Err(VaultError::bad(format!(
            "format {other:?} is not supported: use `json` (the default) or `prometheus`"
        ))),
    }
}
