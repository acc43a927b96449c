//! Write/read throughput of SqliteStorage with N concurrent clients.
//! `cargo run -p leakstop-storage --example storage_throughput --release -- [clients] [seconds]`
//! Prints writes/s and reads/s (each write is durable when counted).
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leakstop_storage::{SqliteStorage, Storage};

fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("leakstop-storage-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let s = SqliteStorage::open(dir.join("bench.db")).expect("open");
    // ~ a KV v2 entry after barrier encryption.
    let value = vec![0xabu8; 300];
    for (name, write) in [("writes", true), ("reads", false)] {
        let done = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        std::thread::scope(|scope| {
            for c in 0..clients {
                let (s, done, stop, value) = (&s, &done, &stop, &value);
                scope.spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("logical/bench/c{c}/k{}", i % 1000);
                        if write {
                            s.put(&key, value).expect("put");
                        } else {
                            s.get(&key).expect("get");
                        }
                        i += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            std::thread::sleep(Duration::from_secs(secs));
            stop.store(true, Ordering::Relaxed);
        });
        let n = done.load(Ordering::Relaxed);
        println!(
            "{name}: {clients} clients, {n} ops in {:.2}s = {:.0}/s",
            start.elapsed().as_secs_f64(),
            n as f64 / start.elapsed().as_secs_f64()
        );
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
