//! The PostgreSQL storage backend against a real PostgreSQL: the conformance suite, the HA lock with fencing,
//! and recovery from PostgreSQL restarts.

use std::time::{Duration, Instant};

use leakstop_storage::{HaLock, PostgresConfig, PostgresStorage, Storage, StorageConfig, StorageError, conformance};
use leakstop_tests::postgres::{Postgres, SUPERUSER_PASSWORD};

fn config(pg: &Postgres, ha: bool) -> PostgresConfig {
    let mut cfg = PostgresConfig::new(pg.superuser_url());
    cfg.ha_enabled = ha;
    cfg.max_connections = 4;
    cfg
}

/// Run `sql` as the superuser on a connection of its own; the rows' first column as text.
fn admin(pg: &Postgres, sql: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = pg.admin().await;
        let rows = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
                _ => None,
            })
            .collect()
    })
}

#[test]
fn conformance_on_postgresql() {
    let pg = Postgres::start();
    let storage = StorageConfig::Postgresql(config(&pg, false)).open().unwrap();
    // Called inline from async code, as the HTTP handlers do: the backend must not block on the caller's runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { conformance::run_all(&*storage) });
    drop(storage);
    // Reopening finds the schema in place (migrations are recorded, not re-run) and the data still there.
    let again = PostgresStorage::open(&config(&pg, false)).unwrap();
    assert_eq!(again.get("conformance/txn/b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(admin(&pg, "SELECT max(version) FROM leakstop_store_migrations"), ["1"]);
    assert_eq!(
        admin(
            &pg,
            "SELECT collation_name FROM information_schema.columns WHERE table_name = 'leakstop_store' AND column_name = 'key'"
        ),
        ["C"],
        "keys are ordered by their bytes"
    );
}

#[test]
fn skip_create_table_refuses_a_missing_table_and_bad_credentials_name_the_server() {
    let pg = Postgres::start();
    let mut cfg = config(&pg, false);
    cfg.skip_create_table = true;
    let err = PostgresStorage::open(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("leakstop_store") && err.contains("skip_create_table"),
        "{err}"
    );

    let mut cfg = PostgresConfig::new(pg.superuser_url().replace(SUPERUSER_PASSWORD, "wrong-pw-123"));
    cfg.max_connections = 1;
    let err = PostgresStorage::open(&cfg).unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{}", pg.port)), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-pw-123"), "the password leaked into: {err}");
}

#[test]
fn restart_of_postgresql_is_survived_without_intervention() {
    let pg = Postgres::start();
    let s = PostgresStorage::open(&config(&pg, false)).unwrap();
    s.put("before", b"1").unwrap();

    pg.restart();
    // Every pooled connection died with the old server; the first request after it is back still succeeds.
    s.put("after-restart", b"2").unwrap();
    assert_eq!(s.get("before").unwrap().as_deref(), Some(&b"1"[..]));
    for i in 0..20 {
        s.put(&format!("k{i}"), b"x").unwrap();
    }

    pg.stop();
    let err = s.put("during-outage", b"3").unwrap_err();
    assert!(matches!(err, StorageError::Unavailable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{}", pg.port)), "{msg}");
    assert!(!msg.contains(SUPERUSER_PASSWORD), "the password leaked into: {msg}");
    assert!(s.get("before").is_err(), "reads fail during the outage too");

    pg.start_again();
    s.put("after-outage", b"4").unwrap();
    assert_eq!(s.get("after-restart").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(s.get("during-outage").unwrap(), None, "the refused write did not land");
}

fn open_ha(pg: &Postgres) -> (PostgresStorage, leakstop_storage::PgHaLock) {
    PostgresStorage::open_ha(&config(pg, true)).unwrap()
}

#[test]
fn only_one_node_is_active_and_the_standby_cannot_write() {
    let pg = Postgres::start();
    let (a, lock_a) = open_ha(&pg);
    let (b, lock_b) = open_ha(&pg);
    assert!(
        a.put("x", b"1").is_err_and(|e| matches!(e, StorageError::NotLeader)),
        "no write before acquiring"
    );
    assert_eq!(lock_a.leader().unwrap(), None, "nobody is active yet");

    assert!(lock_a.try_acquire("node-a", "https://a:8200").unwrap());
    assert!(
        lock_a.try_acquire("node-a", "https://a:8200").unwrap(),
        "re-acquiring is a no-op"
    );
    assert!(
        !lock_b.try_acquire("node-b", "https://b:8200").unwrap(),
        "the lock is taken"
    );
    assert!(lock_a.holds() && !lock_b.holds());
    a.put("x", b"from a").unwrap();
    let err = b.put("x", b"from b").unwrap_err();
    assert!(matches!(err, StorageError::NotLeader), "{err:?}");
    assert_eq!(b.get("x").unwrap().as_deref(), Some(&b"from a"[..]), "standbys read");

    let leader = lock_b.leader().unwrap().expect("a is active");
    assert_eq!(
        (leader.node_id.as_str(), leader.api_addr.as_str()),
        ("node-a", "https://a:8200")
    );
    assert!(lock_a.check().unwrap());

    // Graceful step-down hands over at once.
    let epoch_a = leader.epoch;
    lock_a.release().unwrap();
    assert!(!lock_a.holds());
    assert!(
        a.put("x", b"late a")
            .is_err_and(|e| matches!(e, StorageError::NotLeader))
    );
    assert!(lock_b.try_acquire("node-b", "https://b:8200").unwrap());
    let leader = lock_a.leader().unwrap().expect("b is active");
    assert_eq!(leader.node_id, "node-b");
    assert!(leader.epoch > epoch_a, "each takeover has a new epoch");
    b.put("x", b"from b").unwrap();
    assert_eq!(a.get("x").unwrap().as_deref(), Some(&b"from b"[..]));
}

#[test]
fn a_killed_lock_session_lets_the_standby_take_over_within_a_second_and_fences_the_old_holder() {
    let pg = Postgres::start();
    let (a, lock_a) = open_ha(&pg);
    let (b, lock_b) = open_ha(&pg);
    assert!(lock_a.try_acquire("node-a", "https://a:8200").unwrap());
    a.put("k", b"a1").unwrap();

    // What a crash of node a's process looks like to PostgreSQL: its lock session ends.
    let killed = admin(
        &pg,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'leakstop-ha-lock'",
    );
    assert_eq!(killed, ["t"]);
    let t0 = Instant::now();
    assert_eq!(
        lock_b.leader().unwrap(),
        None,
        "a dead holder's row is not reported as active"
    );
    loop {
        if lock_b.try_acquire("node-b", "https://b:8200").unwrap() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "the standby could not take over within 1 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    b.put("k", b"b1").unwrap();
    // Node a still thinks it is active until it checks; its writes are fenced regardless.
    let err = a.put("k", b"a2").unwrap_err();
    assert!(matches!(err, StorageError::NotLeader), "{err:?}");
    assert!(!lock_a.holds(), "a fenced write makes the node stand down");
    assert!(!lock_a.check().unwrap());
    assert_eq!(b.get("k").unwrap().as_deref(), Some(&b"b1"[..]));
}

#[test]
fn deleting_the_lock_row_fences_the_holder_and_frees_the_lock() {
    let pg = Postgres::start();
    let (a, lock_a) = open_ha(&pg);
    let (b, lock_b) = open_ha(&pg);
    assert!(lock_a.try_acquire("node-a", "https://a:8200").unwrap());
    a.put("k", b"a1").unwrap();

    admin(&pg, "DELETE FROM leakstop_ha");
    let err = a.put("k", b"a2").unwrap_err();
    assert!(matches!(err, StorageError::NotLeader), "{err:?}");
    assert!(!lock_a.holds());
    assert!(!lock_a.check().unwrap(), "the holder stands down");
    assert!(
        lock_b.try_acquire("node-b", "https://b:8200").unwrap(),
        "and the lock is free for a standby"
    );
    b.put("k", b"b1").unwrap();
    assert_eq!(a.get("k").unwrap().as_deref(), Some(&b"b1"[..]));
}

#[test]
fn after_a_postgresql_restart_the_lock_is_stood_down_and_taken_again() {
    let pg = Postgres::start();
    let (a, lock_a) = open_ha(&pg);
    assert!(lock_a.try_acquire("node-a", "https://a:8200").unwrap());
    let epoch = lock_a.leader().unwrap().unwrap().epoch;
    a.put("k", b"1").unwrap();

    pg.restart();
    assert!(!lock_a.check().unwrap(), "the restart ended the lock session");
    assert!(a.put("k", b"2").is_err_and(|e| matches!(e, StorageError::NotLeader)));
    assert!(
        lock_a.try_acquire("node-a", "https://a:8200").unwrap(),
        "re-acquired on the restarted server"
    );
    assert!(lock_a.leader().unwrap().unwrap().epoch > epoch);
    a.put("k", b"3").unwrap();
    assert_eq!(a.get("k").unwrap().as_deref(), Some(&b"3"[..]));
}
