//! The one behaviour suite every [`Storage`] backend must pass.
//!
//! Call [`run_all`] on a store with nothing under `conformance/`. It panics with a message naming the broken
//! behaviour, so it can be called from any backend's `#[test]`.

use crate::{Storage, TxnOp};

const ROOT: &str = "conformance/";

/// Run every check in this module.
pub fn run_all(s: &dyn Storage) {
    get_put_overwrite_delete(s);
    list_semantics(s);
    transactions_are_atomic(s);
    transactions_are_never_seen_half_done(s);
    binary_large_and_unicode(s);
    invalid_keys(s);
    concurrent_writers(s);
}

fn k(rest: &str) -> String {
    format!("{ROOT}{rest}")
}

/// Get of a missing key, put, overwrite, delete, delete of a missing key.
pub fn get_put_overwrite_delete(s: &dyn Storage) {
    let key = k("basic/one");
    assert_eq!(s.get(&key).unwrap(), None, "missing key must read as None");
    s.put(&key, b"v1").unwrap();
    assert_eq!(s.get(&key).unwrap().as_deref(), Some(&b"v1"[..]), "read after put");
    s.put(&key, b"version two").unwrap();
    assert_eq!(
        s.get(&key).unwrap().as_deref(),
        Some(&b"version two"[..]),
        "overwrite replaces the value"
    );
    s.put(&key, b"").unwrap();
    assert_eq!(
        s.get(&key).unwrap().as_deref(),
        Some(&b""[..]),
        "empty value is a value, not a delete"
    );
    s.delete(&key).unwrap();
    assert_eq!(s.get(&key).unwrap(), None, "deleted key must read as None");
    s.delete(&key).unwrap();
    s.delete(&k("basic/never-existed")).unwrap();
    // Keys differing only by a trailing slash are different keys.
    s.put(&k("basic/dir"), b"leaf").unwrap();
    assert_eq!(
        s.get(&k("basic/dir/")).unwrap(),
        None,
        "`a` and `a/` are different keys"
    );
    s.delete(&k("basic/dir")).unwrap();
}

/// Vault listing: immediate children, folders once with `/`, sorted, nothing from sibling prefixes.
pub fn list_semantics(s: &dyn Storage) {
    for key in [
        "list/a",
        "list/b/1",
        "list/b/2",
        "list/b/c/deep",
        "list/c",
        "list/ba",
        "lister/x",
        "list-other",
    ] {
        s.put(&k(key), key.as_bytes()).unwrap();
    }
    assert_eq!(
        s.list(&k("list/")).unwrap(),
        ["a", "b/", "ba", "c"],
        "children of list/"
    );
    assert_eq!(
        s.list(&k("list/b/")).unwrap(),
        ["1", "2", "c/"],
        "children of a nested folder"
    );
    assert_eq!(s.list(&k("list/b/c/")).unwrap(), ["deep"], "children two levels down");
    assert_eq!(
        s.list(&k("list/nope/")).unwrap(),
        Vec::<String>::new(),
        "unknown prefix lists nothing"
    );
    // A key and a folder with the same name both appear.
    s.put(&k("list/b"), b"also a leaf").unwrap();
    assert_eq!(
        s.list(&k("list/")).unwrap(),
        ["a", "b", "b/", "ba", "c"],
        "leaf `b` next to folder `b/`"
    );
    // A prefix without a trailing slash matches by string prefix, as in Vault's physical backends.
    assert_eq!(s.list(&k("list/b")).unwrap(), ["/", "a"], "string-prefix listing");
    let top = s.list(ROOT).unwrap();
    assert!(
        top.contains(&"list/".to_string()) && top.contains(&"lister/".to_string()),
        "top level: {top:?}"
    );
    assert!(top.contains(&"list-other".to_string()), "top level: {top:?}");
    // Deleting the last key of a folder removes the folder from listings.
    s.delete(&k("list/b/c/deep")).unwrap();
    assert_eq!(s.list(&k("list/b/")).unwrap(), ["1", "2"], "empty folder disappears");
    // Listing across many leaves and folders (more than any page size a backend may use internally).
    let mut ops = Vec::new();
    for i in 0..1200 {
        ops.push(TxnOp::Put(k(&format!("many/leaf{i:04}")), vec![1]));
        if i % 100 == 0 {
            ops.push(TxnOp::Put(k(&format!("many/leaf{i:04}/child")), vec![2]));
            ops.push(TxnOp::Put(k(&format!("many/leaf{i:04}/sub/deeper")), vec![3]));
        }
    }
    s.transaction(&ops).unwrap();
    let listed = s.list(&k("many/")).unwrap();
    let mut expected: Vec<String> = (0..1200).map(|i| format!("leaf{i:04}")).collect();
    expected.extend((0..1200).step_by(100).map(|i| format!("leaf{i:04}/")));
    expected.sort();
    assert_eq!(listed, expected, "listing 1200 leaves and 12 folders");
    let all = s.list("").unwrap();
    assert!(
        all.contains(&ROOT.to_string()),
        "listing the empty prefix shows top-level folders: {all:?}"
    );
}

/// All-or-nothing transactions, applied in order.
pub fn transactions_are_atomic(s: &dyn Storage) {
    s.put(&k("txn/old"), b"old").unwrap();
    s.transaction(&[
        TxnOp::Put(k("txn/a"), b"1".to_vec()),
        TxnOp::Put(k("txn/b"), b"2".to_vec()),
        TxnOp::Delete(k("txn/old")),
        TxnOp::Put(k("txn/a"), b"1 again".to_vec()),
    ])
    .unwrap();
    assert_eq!(
        s.get(&k("txn/a")).unwrap().as_deref(),
        Some(&b"1 again"[..]),
        "later op in a txn wins"
    );
    assert_eq!(s.get(&k("txn/b")).unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(s.get(&k("txn/old")).unwrap(), None, "delete inside a txn");
    // A transaction with an invalid op changes nothing.
    let err = s.transaction(&[
        TxnOp::Put(k("txn/c"), b"3".to_vec()),
        TxnOp::Put(String::new(), b"x".to_vec()),
    ]);
    assert!(err.is_err(), "a transaction containing an invalid key must fail");
    assert_eq!(
        s.get(&k("txn/c")).unwrap(),
        None,
        "a failed transaction must not apply any of its ops"
    );
    s.transaction(&[]).unwrap();
}

/// A reader running alongside transactions never sees one half applied.
pub fn transactions_are_never_seen_half_done(s: &dyn Storage) {
    let (a, b) = (k("vis/a"), k("vis/b"));
    let num = |v: Option<Vec<u8>>| -> u32 { v.map_or(0, |v| String::from_utf8(v).unwrap().parse().unwrap()) };
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Set `done` even if this writer panics, so the reader below cannot spin forever.
            struct Done<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let _done = Done(&done);
            for i in 1..=200u32 {
                // `b` first: a store applying ops one by one would briefly show b ahead of a.
                s.transaction(&[
                    TxnOp::Put(b.clone(), i.to_string().into()),
                    TxnOp::Put(a.clone(), i.to_string().into()),
                ])
                .unwrap();
            }
        });
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let seen_b = num(s.get(&b).unwrap());
                let seen_a = num(s.get(&a).unwrap());
                assert!(
                    seen_a >= seen_b,
                    "saw b={seen_b} before a={seen_a}: a transaction was visible half-applied"
                );
            }
        });
    });
    assert_eq!(num(s.get(&a).unwrap()), 200);
}

/// Values are bytes: every byte value, large values, and keys in any script.
pub fn binary_large_and_unicode(s: &dyn Storage) {
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    s.put(&k("bin/all"), &all_bytes).unwrap();
    assert_eq!(
        s.get(&k("bin/all")).unwrap().unwrap(),
        all_bytes,
        "binary value round trip"
    );
    let large: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s.put(&k("bin/large"), &large).unwrap();
    assert!(
        s.get(&k("bin/large")).unwrap().unwrap() == large,
        "4 MiB value round trip"
    );
    s.delete(&k("bin/large")).unwrap();
    for key in ["uni/café", "uni/秘密/鍵", "uni/🔑", "uni/sp ace", "uni/%2F"] {
        s.put(&k(key), key.as_bytes()).unwrap();
        assert_eq!(
            s.get(&k(key)).unwrap().as_deref(),
            Some(key.as_bytes()),
            "unicode key {key}"
        );
    }
    assert_eq!(
        s.list(&k("uni/")).unwrap(),
        ["%2F", "café", "sp ace", "秘密/", "🔑"],
        "unicode listing is sorted"
    );
    // Prefix ending in the highest code point still lists correctly.
    s.put(&k("uni/\u{10FFFF}x"), b"max").unwrap();
    assert_eq!(s.list(&k("uni/\u{10FFFF}")).unwrap(), ["x"]);
}

/// Keys that cannot be stored are refused with an error.
pub fn invalid_keys(s: &dyn Storage) {
    assert!(s.put("", b"x").is_err(), "empty key must be refused");
    assert!(s.get("").is_err(), "empty key must be refused on get");
}

/// 16 writers at once: every acknowledged write is readable afterwards.
pub fn concurrent_writers(s: &dyn Storage) {
    const WRITERS: usize = 16;
    const EACH: usize = 40;
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            scope.spawn(move || {
                for i in 0..EACH {
                    let key = k(&format!("conc/w{w:02}/{i:03}"));
                    s.put(&key, format!("{w}-{i}").as_bytes()).unwrap();
                    // Read-your-writes from the same thread.
                    assert_eq!(s.get(&key).unwrap().as_deref(), Some(format!("{w}-{i}").as_bytes()));
                }
            });
        }
    });
    assert_eq!(s.list(&k("conc/")).unwrap().len(), WRITERS, "one folder per writer");
    for w in 0..WRITERS {
        let listed = s.list(&k(&format!("conc/w{w:02}/"))).unwrap();
        assert_eq!(listed.len(), EACH, "writer {w} lost writes");
    }
}
