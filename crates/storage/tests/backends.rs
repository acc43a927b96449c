//! Every backend passes the conformance suite; SQLite-specific behaviour (locking, foreign files, crash safety).
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use leakstop_storage::{MemoryStorage, SqliteStorage, Storage, StorageConfig, StorageError, conformance};

#[test]
fn memory_passes_conformance() {
    conformance::run_all(&MemoryStorage::new());
}

#[test]
fn sqlite_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::open(dir.path().join("leakstop.db")).unwrap();
    conformance::run_all(&s);
}

#[cfg(unix)]
#[test]
fn new_database_files_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leakstop.db");
    let s = SqliteStorage::open(&path).unwrap();
    s.put("k", b"v").unwrap();
    for suffix in ["", "-wal"] {
        let p = format!("{}{suffix}", path.display());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{p} has mode {mode:o}");
    }
}

#[test]
fn sqlite_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leakstop.db");
    {
        let s = SqliteStorage::open(&path).unwrap();
        s.put("core/keyring", b"\x00ciphertext\xff").unwrap();
        s.put("logical/abc/secret", b"value").unwrap();
        s.delete("logical/abc/secret").unwrap();
    }
    let s = SqliteStorage::open(&path).unwrap();
    assert_eq!(
        s.get("core/keyring").unwrap().as_deref(),
        Some(&b"\x00ciphertext\xff"[..])
    );
    assert_eq!(s.get("logical/abc/secret").unwrap(), None);
}

#[test]
fn second_server_on_the_same_file_gets_a_clear_lock_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leakstop.db");
    let first = SqliteStorage::open(&path).unwrap();
    let err = SqliteStorage::open(&path).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("in use by another leakstop server") && msg.contains("leakstop.db"),
        "{msg}"
    );
    // Closing the first frees the file.
    drop(first);
    SqliteStorage::open(&path).unwrap();
}

#[test]
fn a_file_that_is_not_a_leakstop_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    let content = "this is a text file, not a database, and it is long enough to have a header........";
    std::fs::write(&text, content).unwrap();
    let err = SqliteStorage::open(&text).unwrap_err();
    assert!(matches!(err, StorageError::NotLeakstop { .. }), "{err:?}");
    assert!(err.to_string().contains("not a leakstop database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        content,
        "a foreign file must not be modified"
    );

    // A SQLite database made by another program is refused too, and left alone.
    let other = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE users (name TEXT);").unwrap();
    }
    let err = SqliteStorage::open(&other).unwrap_err();
    assert!(matches!(err, StorageError::NotLeakstop { .. }), "{err:?}");
    assert!(err.to_string().contains("application_id"), "{err}");
}

#[test]
fn missing_directory_is_a_clear_error() {
    let err = SqliteStorage::open("/nonexistent-dir-for-leakstop/x.db").unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// Child side of the crash test: writes until killed, printing each key once `put` has returned.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var("LEAKSTOP_CRASH_CHILD_DB") else {
        return;
    };
    let s = SqliteStorage::open(path).unwrap();
    let s = &s;
    // Several writers so acknowledged writes come from group-committed batches.
    std::thread::scope(|scope| {
        for w in 0..4 {
            scope.spawn(move || {
                for i in 0.. {
                    let key = format!("crash/w{w}/{i}");
                    s.put(&key, key.as_bytes()).unwrap();
                    println!("ACK {key}");
                }
            });
        }
    });
}

#[test]
fn acknowledged_writes_survive_a_killed_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leakstop.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
        .env("LEAKSTOP_CRASH_CHILD_DB", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_owned());
            if acked.len() >= 400 {
                break;
            }
        }
    }
    // While the child runs, a second server (another process) is refused.
    let err = SqliteStorage::open(&path).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err:?}");
    // SIGKILL: no destructors, no clean close, WAL not checkpointed.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acked.len() >= 400, "child stopped early after {} writes", acked.len());

    let s = SqliteStorage::open(&path).expect("reopen after a crash must work (no stale lock)");
    for key in &acked {
        assert_eq!(
            s.get(key).unwrap().as_deref(),
            Some(key.as_bytes()),
            "acknowledged write {key} lost"
        );
    }
}

#[test]
fn storage_config_from_toml_opens_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfg.db");
    let cfg: StorageConfig =
        toml::from_str(&format!("type = \"sqlite\"\npath = {:?}\n", path.display().to_string())).unwrap();
    assert_eq!(cfg, StorageConfig::Sqlite { path: path.clone() });
    let s = cfg.open().unwrap();
    s.put("a", b"1").unwrap();
    drop(s);
    assert!(path.exists());
    let mem: StorageConfig = toml::from_str("type = \"memory\"").unwrap();
    conformance::get_put_overwrite_delete(&mem.open().unwrap());
    let err = toml::from_str::<StorageConfig>("type = \"consul\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("consul") && err.contains("sqlite"), "{err}");
}

#[test]
fn concurrent_writes_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::open(dir.path().join("gc.db")).unwrap();
    let s = &s;
    std::thread::scope(|scope| {
        for w in 0..16 {
            scope.spawn(move || {
                for i in 0..100 {
                    s.put(&format!("gc/{w}/{i}"), &[0u8; 300]).unwrap();
                }
            });
        }
    });
    let stats = s.commit_stats();
    assert_eq!(stats.requests, 1600, "every acknowledged write is counted once");
    // With 16 writers waiting on fsync, batches must form; one commit per write would mean no group commit.
    assert!(
        stats.commits * 2 <= stats.requests,
        "no group commit happened: {stats:?}"
    );
}

/// The WAL is folded back into the database file while writes keep coming (a background checkpointer plus the
/// occasional checkpoint between commits): disk use stays bounded, and closing leaves no WAL behind.
#[test]
fn the_write_ahead_log_stays_bounded_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let wal = dir.path().join("wal.db-wal");
    let value = vec![7u8; 16 * 1024];
    {
        let s = SqliteStorage::open(&path).unwrap();
        let s = &s;
        // ~128 MiB of values over 8 writers: far more than the WAL may hold.
        std::thread::scope(|scope| {
            for w in 0..8 {
                let value = &value;
                scope.spawn(move || {
                    for i in 0..1024 {
                        s.put(&format!("logical/{w}/{}", i % 64), value).unwrap();
                    }
                });
            }
        });
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(size < 48 << 20, "WAL grew to {size} bytes");
        assert_eq!(s.get("logical/3/5").unwrap().as_deref(), Some(&value[..]));
    }
    let left = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "a WAL of {left} bytes was left after close");
    let s = SqliteStorage::open(&path).unwrap();
    assert_eq!(s.get("logical/7/63").unwrap().as_deref(), Some(&value[..]));
}
