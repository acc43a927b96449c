//! A toy secrets engine that exists to show (and test) what adding an engine takes: this folder and one
//! registration line. It stores notes (`note/:name`), issues leased "tickets" (`ticket/:name`) and, when a ticket's
//! lease is revoked, records that in its own store — everything through the engine API, nothing from the core.
//! Tests of the lease manager use it as an issuer: a ticket's `ttl`, `max_ttl` and `renewable` can be asked for,
//! and `fail-revoke` (`{"fail": true}`) makes its revocations fail until switched off, as an unreachable upstream
//! would.

use std::sync::Arc;

use serde_json::json;

use crate::engine::{NewLease, Store};
use crate::fields::Fields;
use crate::leases::Lease;
use crate::{Backend, BackendFuture, LogicalRequest, LogicalResponse, Operation, VaultError};

pub struct ToyBackend;

impl ToyBackend {
    pub fn new() -> Arc<ToyBackend> {
        Arc::new(ToyBackend)
    }
}

impl Backend for ToyBackend {
    fn handle<'a>(&'a self, req: &'a LogicalRequest, store: &'a dyn Store) -> BackendFuture<'a, LogicalResponse> {
        Box::pin(async move {
            use Operation::*;
            match (req.path.split_once('/'), req.op) {
                (Some(("note", name)), Create | Update) => {
                    let mut f = Fields::new(&req.data);
                    let text = f.required_string("text", ": what the note says")?;
                    f.finish()?;
                    store.put(&format!("note/{name}"), text.as_bytes()).await?;
                    Ok(LogicalResponse::no_content())
                }
                (Some(("note", name)), Read) => {
                    let b = store.get(&format!("note/{name}")).await?.ok_or(VaultError::NotFound)?;
                    Ok(LogicalResponse::data(json!({ "text": String::from_utf8_lossy(&b) })))
                }
                (Some(("ticket", name)), Create | Update) => {
                    let mut f = Fields::new(&req.data);
                    let ttl = f.duration("ttl")?.unwrap_or(60);
                    let max_ttl = f.duration("max_ttl")?.unwrap_or(0);
                    let renewable = f.bool("renewable")?.unwrap_or(false);
                    f.finish()?;
                    Ok(LogicalResponse {
                        data: Some(json!({ "ticket": name })),
                        lease: Some(NewLease {
                            ttl,
                            max_ttl,
                            renewable,
                            internal: json!({ "ticket": name }),
                            // The ticket is the credential: a leak report of it revokes the lease.
                            credential: Some(zeroize::Zeroizing::new(name.to_string())),
                        }),
                        ..Default::default()
                    })
                }
                (None, Create | Update) if req.path == "fail-revoke" => {
                    let mut f = Fields::new(&req.data);
                    let fail = f.bool("fail")?.unwrap_or(true);
                    f.finish()?;
                    if fail {
                        store.put("fail-revoke", b"1").await?;
                    } else {
                        store.delete("fail-revoke").await?;
                    }
                    Ok(LogicalResponse::no_content())
                }
                (Some(("revoked", name)), Read) => {
                    let b = store
                        .get(&format!("revoked/{name}"))
                        .await?
                        .ok_or(VaultError::NotFound)?;
                    Ok(LogicalResponse::data(
                        json!({ "lease_id": String::from_utf8_lossy(&b) }),
                    ))
                }
                _ => Err(VaultError::UnsupportedPath),
            }
        })
    }

    fn revoke<'a>(&'a self, lease: &'a Lease, store: &'a dyn Store) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            if store.get("fail-revoke").await?.is_some() {
                return Err(VaultError::Upstream(
                    "the toy ticket office is unreachable (fail-revoke is on)".into(),
                ));
            }
            let name = lease.internal["ticket"].as_str().unwrap_or_default();
            store.put(&format!("revoked/{name}"), lease.id.as_bytes()).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::Value;

    use super::*;
    use crate::core::{ApiRequest, Core, CoreOptions, MountEntry};

    fn api(op: Operation, path: &str, token: &str, data: Value) -> ApiRequest {
        ApiRequest {
            op,
            path: path.into(),
            data: data.as_object().cloned().unwrap_or_default(),
            query: HashMap::new(),
            token: Some(token.into()),
            remote_addr: None,
            request_id: "test".into(),
        }
    }

    #[tokio::test]
    async fn a_new_engine_needs_one_folder_and_one_registration_line() {
        let seal: Arc<dyn leakstop_seal::Seal> = Arc::new(leakstop_seal::KeySeal::random_dev());
        let core = Core::new(
            Arc::new(leakstop_storage::MemoryStorage::new()),
            Some(seal),
            CoreOptions::default(),
        );
        // The one registration line.
        core.register_engine(
            "toy",
            Arc::new(|_: &MountEntry| Ok(ToyBackend::new() as Arc<dyn Backend>)),
        );
        let (_, root) = core.init(1, 1, None).await.unwrap();
        let call = |op, path: &str, token: &str, data| core.handle(api(op, path, token, data));
        call(Operation::Update, "sys/mounts/play", &root, json!({"type": "toy"}))
            .await
            .unwrap();

        call(Operation::Update, "play/note/a", &root, json!({"text": "hello"}))
            .await
            .unwrap();
        let r = call(Operation::Read, "play/note/a", &root, json!({})).await.unwrap();
        assert_eq!(r.data.unwrap()["text"], "hello");
        let e = call(Operation::Update, "play/note/b", &root, json!({"txt": "typo"}))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400, "unknown fields are refused: {e}");

        // A child token takes a ticket: the core names and records the lease with the token, in the same commit.
        let child = call(
            Operation::Update,
            "auth/token/create",
            &root,
            json!({"policies": ["root"]}),
        )
        .await
        .unwrap();
        let child = child.auth.unwrap().client_token.expose_str();
        let r = call(Operation::Update, "play/ticket/t1", &child, json!({}))
            .await
            .unwrap();
        assert!(r.lease_id.starts_with("play/ticket/t1/"), "{}", r.lease_id);
        assert_eq!(r.lease_duration, 60);
        let found = call(
            Operation::Update,
            "sys/leases/lookup",
            &root,
            json!({"lease_id": r.lease_id}),
        )
        .await
        .unwrap();
        assert_eq!(found.data.unwrap()["id"], r.lease_id.as_str());

        // Revoking the token revokes its lease through the engine, which wrote to its own store.
        call(Operation::Update, "auth/token/revoke-self", &child, json!({}))
            .await
            .unwrap();
        let revoked = call(Operation::Read, "play/revoked/t1", &root, json!({}))
            .await
            .unwrap();
        assert_eq!(revoked.data.unwrap()["lease_id"], r.lease_id.as_str());
        let gone = call(
            Operation::Update,
            "sys/leases/lookup",
            &root,
            json!({"lease_id": r.lease_id}),
        )
        .await;
        assert_eq!(gone.unwrap_err().status(), 400, "the lease record is gone");
    }
}
