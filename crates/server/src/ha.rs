//! The HA loop: one task per node that shares its storage with other nodes behind the storage's leader lock
//! ([`HaLock`]). An unsealed node that is not active tries to take the lock every [`ACQUIRE_EVERY`]; once it holds
//! it, the core loads its state from storage and serves. The active node confirms the lock with the database every
//! [`CHECK_EVERY`] and steps down at once when the check fails or errs, or when storage fenced one of its writes
//! (the core's `fenced` signal): a node that cannot prove it leads stops serving rather than risk two writers.
//! A node that is not initialised takes the lock too, so exactly one node of a new cluster can run `sys/init`.
//!
//! The lock's calls block on the network, so each runs under `spawn_blocking`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use leakstop_storage::{HaLock, LeaderInfo, StorageError};
use leakstop_vault::core::Core;
use leakstop_vault::engine::unix_seconds;

/// How often a standby tries to take the lock: the larger part of the failover time after a crash.
pub const ACQUIRE_EVERY: Duration = Duration::from_millis(200);
/// How often the active node confirms with the database that it still holds the lock.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// The pause after a failed activation (storage unreachable while loading), so a broken node does not spin.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// This node, as the lock and `sys/leader` name it.
#[derive(Debug, Clone)]
pub struct Node {
    /// Random per process start: a restarted node is a new contender.
    pub id: String,
    /// Where other nodes and clients reach this node (`api_addr`).
    pub api_addr: String,
}

async fn blocking<T: Send + 'static>(
    lock: &Arc<dyn HaLock>,
    f: impl FnOnce(&dyn HaLock) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let lock = lock.clone();
    tokio::task::spawn_blocking(move || f(lock.as_ref()))
        .await
        .unwrap_or_else(|e| {
            Err(StorageError::Backend {
                op: "ha lock",
                key: String::new(),
                reason: format!("the lock task failed: {e}"),
            })
        })
}

/// Whether the storage says the cluster is initialised (`None`: storage could not say).
async fn initialized(core: &Arc<Core>) -> Option<bool> {
    let core = core.clone();
    tokio::task::spawn_blocking(move || core.is_initialized().ok())
        .await
        .ok()
        .flatten()
}

/// Leave the active role: drop the loaded state first (no request is served on it any more), then the lock.
async fn step_down(core: &Arc<Core>, lock: &Arc<dyn HaLock>, why: &str) {
    if core.is_active() {
        tracing::warn!(reason = why, "stepping down: this node is now a standby");
    }
    core.step_down();
    if let Err(e) = blocking(lock, |l| l.release()).await {
        tracing::debug!(error = %e, "releasing the HA lock after stepping down failed");
    }
}

/// Run the loop until the task is aborted. Callers release the lock after aborting it (graceful shutdown).
///
/// `first_try` is told once this node has made its first attempt at the lock (won, lost or failed), so the server
/// can wait for it before it listens: the first node of a new cluster then already holds the lock when `sys/init`
/// arrives, instead of refusing an init sent right after start because its loop had not run yet.
pub async fn run(
    core: Arc<Core>,
    lock: Arc<dyn HaLock>,
    node: Node,
    first_try: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut first_try = first_try;
    let mut last_error: Option<String> = None;
    loop {
        let sealed = core.is_sealed();
        let init = initialized(&core).await;
        // Sealed nodes stay out of the race; an uninitialised cluster needs one node to hold the lock for init.
        let wants = !sealed || init == Some(false);
        if lock.holds() {
            if init == Some(false) {
                // Holding the lock for init: this node is where sys/init runs, whoever led before.
                core.set_leader(None);
            }
            if !wants {
                step_down(&core, &lock, "sealed").await;
                continue;
            }
            if !core.is_active() && !sealed && init == Some(true) {
                match core.activate(unix_seconds(SystemTime::now())).await {
                    Ok(()) => {
                        let me = blocking(&lock, |l| l.leader()).await.ok().flatten();
                        core.set_leader(me.or_else(|| Some(own_entry(&node))));
                        tracing::info!(node_id = %node.id, "active: this node holds the HA lock and serves requests");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not load state after taking the HA lock; giving it up");
                        step_down(&core, &lock, "activation failed").await;
                        tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                        continue;
                    }
                }
            }
            let fenced = tokio::select! {
                () = tokio::time::sleep(CHECK_EVERY) => false,
                () = core.fenced().notified() => true,
            };
            let held = if fenced {
                Err("storage refused a write: the lock is held elsewhere".to_string())
            } else {
                match blocking(&lock, |l| l.check()).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("the HA lock is no longer held by this node".to_string()),
                    // Unreachable storage may already have let another node take over: stop serving.
                    Err(e) => Err(format!("the HA lock could not be checked: {e}")),
                }
            };
            if let Err(why) = held {
                step_down(&core, &lock, &why).await;
            }
            continue;
        }
        if core.is_active() {
            // Lost between two checks (a fenced write noticed by the storage itself).
            step_down(&core, &lock, "the HA lock is no longer held").await;
        }
        if wants {
            let n = node.clone();
            match blocking(&lock, move |l| l.try_acquire(&n.id, &n.api_addr)).await {
                Ok(true) => {
                    last_error = None;
                    if let Some(tx) = first_try.take() {
                        let _ = tx.send(());
                    }
                    // Activation (and the first check) happens at the top of the loop, at once.
                    continue;
                }
                Ok(false) => {
                    last_error = None;
                    if let Ok(leader) = blocking(&lock, |l| l.leader()).await {
                        core.set_leader(leader);
                    }
                }
                Err(e) => {
                    // Logged once per distinct error: a database restart must not flood the log every 200 ms.
                    let msg = e.to_string();
                    if last_error.as_deref() != Some(msg.as_str()) {
                        tracing::warn!(error = %msg, "cannot reach the HA lock; retrying");
                        last_error = Some(msg);
                    }
                }
            }
        }
        if let Some(tx) = first_try.take() {
            let _ = tx.send(());
        }
        tokio::time::sleep(ACQUIRE_EVERY).await;
    }
}

fn own_entry(node: &Node) -> LeaderInfo {
    LeaderInfo {
        node_id: node.id.clone(),
        api_addr: node.api_addr.clone(),
        since: unix_seconds(SystemTime::now()),
        epoch: 0,
    }
}

/// Give the lock up on graceful shutdown so a standby takes over at its next poll instead of after a timeout.
pub async fn release(core: &Arc<Core>, lock: &Arc<dyn HaLock>) {
    core.step_down();
    match blocking(lock, |l| l.release()).await {
        Ok(()) => tracing::info!("released the HA lock"),
        Err(e) => {
            tracing::warn!(error = %e, "could not release the HA lock; the database frees it when this process's connection closes")
        }
    }
}

#[cfg(test)]
mod tests {
    //! Two cores in one process over one shared in-memory storage, each behind its own handle on a fake lock that
    //! fences writes as the PostgreSQL backend does: the state machine, `sys/leader`, `sys/health` and forwarding
    //! over real loopback listeners.
    use super::*;
    use std::sync::Mutex;

    use leakstop_seal::KeySeal;
    use leakstop_storage::{MemoryStorage, Storage, TxnOp};
    use leakstop_vault::core::{ApiRequest, CoreOptions};
    use leakstop_vault::{Operation, VaultError};
    use serde_json::{Value, json};

    /// The lock row: who holds it.
    #[derive(Default)]
    struct Row(Mutex<Option<LeaderInfo>>);

    struct FakeLock {
        row: Arc<Row>,
        me: Mutex<Option<String>>,
    }

    impl FakeLock {
        fn held_by_me(&self) -> bool {
            let me = self.me.lock().unwrap().clone();
            me.is_some() && self.row.0.lock().unwrap().as_ref().map(|l| Some(l.node_id.clone())) == Some(me)
        }
    }

    impl HaLock for FakeLock {
        fn try_acquire(&self, node_id: &str, api_addr: &str) -> Result<bool, StorageError> {
            let mut row = self.row.0.lock().unwrap();
            if row.as_ref().is_some_and(|l| l.node_id != node_id) {
                return Ok(false);
            }
            let epoch = row.as_ref().map_or(1, |l| l.epoch);
            *row = Some(LeaderInfo {
                node_id: node_id.into(),
                api_addr: api_addr.into(),
                since: 0,
                epoch,
            });
            *self.me.lock().unwrap() = Some(node_id.into());
            Ok(true)
        }
        fn holds(&self) -> bool {
            self.held_by_me()
        }
        fn check(&self) -> Result<bool, StorageError> {
            Ok(self.held_by_me())
        }
        fn release(&self) -> Result<(), StorageError> {
            if self.held_by_me() {
                *self.row.0.lock().unwrap() = None;
            }
            *self.me.lock().unwrap() = None;
            Ok(())
        }
        fn leader(&self) -> Result<Option<LeaderInfo>, StorageError> {
            Ok(self.row.0.lock().unwrap().clone())
        }
    }

    /// The shared storage as one node sees it: writes only while its lock is held.
    struct Fenced {
        inner: Arc<MemoryStorage>,
        lock: Arc<FakeLock>,
    }

    impl Fenced {
        fn fence(&self) -> Result<(), StorageError> {
            if self.lock.held_by_me() {
                Ok(())
            } else {
                Err(StorageError::NotLeader)
            }
        }
    }

    impl Storage for Fenced {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
            self.inner.get(key)
        }
        fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
            self.fence()?;
            self.inner.put(key, value)
        }
        fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.fence()?;
            self.inner.delete(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            self.inner.list(prefix)
        }
        fn transaction(&self, ops: &[TxnOp]) -> Result<(), StorageError> {
            self.fence()?;
            self.inner.transaction(ops)
        }
    }

    struct TestNode {
        core: Arc<Core>,
        lock: Arc<FakeLock>,
        addr: String,
        task: tokio::task::JoinHandle<()>,
    }

    /// A node with its own listener (so forwarding is real HTTP) and its HA loop running.
    async fn node(mem: &Arc<MemoryStorage>, row: &Arc<Row>, seal: &Arc<KeySeal>) -> TestNode {
        let lock = Arc::new(FakeLock {
            row: row.clone(),
            me: Mutex::default(),
        });
        let storage = Arc::new(Fenced {
            inner: mem.clone(),
            lock: lock.clone(),
        });
        let options = CoreOptions {
            ha_enabled: true,
            ..Default::default()
        };
        let core = Core::new(storage, Some(seal.clone()), options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let router = crate::http::router(core.clone(), 1 << 20, &crate::http::HttpLimits::default());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let dyn_lock: Arc<dyn HaLock> = lock.clone();
        let node = Node {
            id: leakstop_vault::core::uuid(),
            api_addr: addr.clone(),
        };
        let task = tokio::spawn(run(core.clone(), dyn_lock, node, None));
        TestNode { core, lock, addr, task }
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..100 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting until {what}");
    }

    fn req(op: Operation, path: &str, data: Value) -> ApiRequest {
        ApiRequest {
            op,
            path: path.into(),
            data: data.as_object().cloned().unwrap_or_default(),
            query: Default::default(),
            token: Some("root".into()),
            remote_addr: None,
            request_id: leakstop_vault::core::uuid(),
        }
    }

    /// A cluster: `a` initialised and active with `secret/` (KV v2), `b` unsealed as its standby.
    async fn cluster() -> (TestNode, TestNode, Arc<Row>) {
        let mem = Arc::new(MemoryStorage::new());
        let row = Arc::new(Row::default());
        let seal = Arc::new(KeySeal::random_dev());
        let a = node(&mem, &row, &seal).await;
        // Not initialised: the loop takes the lock so that this node may run init.
        until("a holds the lock for init", || a.lock.held_by_me()).await;
        a.core.init(1, 1, Some("root".into())).await.unwrap();
        let kv = [("version".to_string(), "2".to_string())].into_iter().collect();
        a.core.mount(false, "secret", "kv", "", kv).unwrap();
        let b = node(&mem, &row, &seal).await;
        b.core.auto_unseal().await.unwrap();
        until("b knows a leads", || {
            b.core.ha_view().leader.is_some_and(|l| l.api_addr == a.addr)
        })
        .await;
        assert!(a.core.is_active() && b.core.is_standby());
        (a, b, row)
    }

    #[tokio::test]
    async fn a_standby_takes_over_with_the_data_and_a_fenced_active_node_steps_down_at_once() {
        let (a, b, row) = cluster().await;
        a.core
            .handle(req(Operation::Update, "secret/data/x", json!({"data": {"v": "1"}})))
            .await
            .unwrap();
        // The standby serves nothing itself: it loaded nothing.
        let on_b = b.core.handle(req(Operation::Read, "secret/data/x", json!({}))).await;
        assert!(matches!(on_b, Err(VaultError::Standby)), "{on_b:?}");

        // Another node takes the lock behind a's back (a lost session): a's next write is fenced and a steps down
        // on that signal, before its next check would have noticed.
        let before = std::time::Instant::now();
        *row.0.lock().unwrap() = Some(LeaderInfo {
            node_id: "someone-else".into(),
            api_addr: "http://127.0.0.1:9".into(),
            since: 0,
            epoch: 2,
        });
        let w = a
            .core
            .handle(req(Operation::Update, "secret/data/x", json!({"data": {"v": "2"}})))
            .await;
        assert!(
            matches!(w, Err(VaultError::NotActive)),
            "a fenced write must fail: {w:?}"
        );
        until("a steps down", || a.core.is_standby()).await;
        assert!(before.elapsed() < CHECK_EVERY * 2, "{:?}", before.elapsed());

        // The lock is free again: one of the two standbys becomes active and has every acknowledged write.
        *row.0.lock().unwrap() = None;
        until("a node is active", || a.core.is_active() || b.core.is_active()).await;
        let active = if a.core.is_active() { &a.core } else { &b.core };
        let r = active
            .handle(req(Operation::Read, "secret/data/x", json!({})))
            .await
            .unwrap();
        assert_eq!(r.data.unwrap()["data"]["v"], "1");
        assert!(!(a.core.is_active() && b.core.is_active()));
        a.task.abort();
        b.task.abort();
    }

    #[tokio::test]
    async fn the_standby_forwards_redirects_on_request_and_reports_its_role() {
        let (a, b, _row) = cluster().await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // A write sent to the standby lands on the active node.
        let w = http
            .post(format!("{}/v1/secret/data/fwd?unused=1", b.addr))
            .header("x-vault-token", "root")
            .json(&json!({"data": {"k": "through-b"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(w.status(), 200, "{}", w.text().await.unwrap());
        let r = a
            .core
            .handle(req(Operation::Read, "secret/data/fwd", json!({})))
            .await
            .unwrap();
        assert_eq!(r.data.unwrap()["data"]["k"], "through-b");
        // A read through the standby answers with the active node's envelope.
        let got: Value = http
            .get(format!("{}/v1/secret/data/fwd", b.addr))
            .header("x-vault-token", "root")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["data"]["data"]["k"], "through-b");
        // Asked not to forward, it redirects to the same path on the active node.
        let redirect = http
            .get(format!("{}/v1/secret/data/fwd?version=1", b.addr))
            .header("x-vault-token", "root")
            .header(crate::forward::NO_FORWARDING, "true")
            .send()
            .await
            .unwrap();
        assert_eq!(redirect.status(), 307);
        assert_eq!(
            redirect.headers()["location"].to_str().unwrap(),
            format!("{}/v1/secret/data/fwd?version=1", a.addr)
        );
        // A request already forwarded once is never forwarded again.
        let looped = http
            .get(format!("{}/v1/secret/data/fwd", b.addr))
            .header("x-vault-token", "root")
            .header(crate::forward::FORWARDED, "1")
            .send()
            .await
            .unwrap();
        assert_eq!(looped.status(), 503);

        let get = |addr: &str, path: &str| {
            let url = format!("{addr}/v1/{path}");
            let http = http.clone();
            async move {
                let r = http.get(url).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let (status, leader) = get(&b.addr, "sys/leader").await;
        assert_eq!(status, 200);
        assert_eq!(leader["ha_enabled"], true);
        assert_eq!(leader["is_self"], false);
        assert_eq!(leader["leader_address"], a.addr.as_str());
        assert_eq!(leader["active_time"], "0001-01-01T00:00:00Z");
        let (_, leader) = get(&a.addr, "sys/leader").await;
        assert_eq!(leader["is_self"], true);
        assert_ne!(leader["active_time"], "0001-01-01T00:00:00Z");
        let (status, health) = get(&b.addr, "sys/health").await;
        assert_eq!((status, health["standby"].clone()), (429, json!(true)));
        assert_eq!(get(&b.addr, "sys/health?standbyok=true").await.0, 200);
        assert_eq!(get(&b.addr, "sys/health?standbycode=299").await.0, 299);
        let (status, health) = get(&a.addr, "sys/health").await;
        assert_eq!((status, health["standby"].clone()), (200, json!(false)));

        // Sealing the active node gives the lock up; the standby takes over and serves the data.
        a.core.seal();
        until("b is active", || b.core.is_active()).await;
        assert_eq!(get(&a.addr, "sys/health").await.0, 503);
        let (_, leader) = get(&b.addr, "sys/leader").await;
        assert_eq!(leader["is_self"], true);
        let r = b
            .core
            .handle(req(Operation::Read, "secret/data/fwd", json!({})))
            .await
            .unwrap();
        assert_eq!(r.data.unwrap()["data"]["k"], "through-b");
        a.task.abort();
        b.task.abort();
    }
}
