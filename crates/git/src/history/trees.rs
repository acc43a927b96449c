//! Raw tree objects: entry boundaries, git's entry order, and which entries a new version of a directory changed.

use std::rc::Rc;

use git2::ObjectType;

use crate::oid::ObjectId;

/// The kind of a tree entry, from its mode (`40000` tree, `160000` gitlink, regular files and symlinks blobs).
pub(super) fn entry_kind(mode: &[u8]) -> ObjectType {
    match mode {
        b"40000" | b"040000" => ObjectType::Tree,
        b"160000" => ObjectType::Commit,
        _ => ObjectType::Blob,
    }
}

/// A raw tree object (`<mode> <name>\0<20-byte id>` repeated) with its entry boundaries.
///
/// Reading trees raw instead of through `git2::Tree` skips libgit2's per-entry parsing, and keeping the previous
/// version of each directory lets a walk skip the entries a commit did not change: a new tree usually differs from
/// the last one at its path in an entry or two, so only those are looked up.
pub(super) struct TreeEntries {
    pub(super) raw: Rc<Vec<u8>>,
    /// Start offset of each entry, then the end of the last.
    bounds: Vec<u32>,
}

impl TreeEntries {
    /// Parses `raw`, comparing it with `prev` (an earlier version of the same directory, already walked): runs of
    /// bytes equal in both hold the same entries, so only entries where the two differ are parsed, and of those
    /// only the ones not in `prev` are reported (added or changed; removed ones are just passed over). Returns the
    /// entries and the indices of those reported (all of them without a `prev`), each with the index of the entry
    /// of the same name in `prev` (`u32::MAX` for an added one); `None` if the tree is malformed. Entries out of
    /// git's order (a malformed tree) may be reported although `prev` holds them, never the other way round.
    ///
    /// A new version usually differs in an entry or two, often far apart (a commit touching `Documentation/` and
    /// `t/`): reporting only those, instead of everything between the first difference and the last, took the
    /// entries the walk looks up on git/git from 31 million to 6 million (3.6 million with the first parent's
    /// version as `prev`).
    pub(super) fn parse(shared: Rc<Vec<u8>>, prev: Option<&TreeEntries>) -> Option<(TreeEntries, Vec<(u32, u32)>)> {
        let raw = &shared[..];
        let empty = TreeEntries {
            raw: Rc::default(),
            bounds: vec![0],
        };
        let prev = prev.unwrap_or(&empty);
        let (old, ob) = (&prev.raw[..], &prev.bounds[..]);
        let n_old = ob.len() - 1;
        let mut bounds: Vec<u32> = Vec::with_capacity(ob.len() + 4);
        bounds.push(0);
        let mut changed = Vec::new();
        // `at` in the new tree and old entry `i` both start an entry.
        let (mut at, mut i) = (0usize, 0usize);
        while at < raw.len() {
            if i < n_old {
                let from = ob[i] as usize;
                // Old entries that end inside a run of equal bytes are entries of the new tree as well.
                let same = common_prefix(&raw[at..], &old[from..]);
                let j = i + ob[i + 1..].partition_point(|&e| e as usize <= from + same);
                if j > i {
                    bounds.extend(ob[i + 1..=j].iter().map(|&e| (e as usize - from + at) as u32));
                    at += ob[j] as usize - from;
                    i = j;
                    continue;
                }
                let end = entry_end(raw, at)?;
                let old_end = ob[i + 1] as usize;
                let was = match tree_order(&raw[at..end], &old[from..old_end]) {
                    // Old entry `i` is gone; compare the new one with the next.
                    std::cmp::Ordering::Greater => {
                        i += 1;
                        continue;
                    }
                    // The same name, another mode or id.
                    std::cmp::Ordering::Equal => {
                        i += 1;
                        i as u32 - 1
                    }
                    // An entry added.
                    std::cmp::Ordering::Less => u32::MAX,
                };
                changed.push((bounds.len() as u32 - 1, was));
                bounds.push(end as u32);
                at = end;
            } else {
                let end = entry_end(raw, at)?;
                changed.push((bounds.len() as u32 - 1, u32::MAX));
                bounds.push(end as u32);
                at = end;
            }
        }
        Some((TreeEntries { raw: shared, bounds }, changed))
    }

    fn bytes(&self, i: usize) -> &[u8] {
        &self.raw[self.bounds[i] as usize..self.bounds[i + 1] as usize]
    }

    /// Mode, name and id of entry `i` (`parse` checked the space, the NUL and the id's length).
    pub(super) fn entry(&self, i: usize) -> (&[u8], &[u8], ObjectId) {
        let e = self.bytes(i);
        let sp = memchr::memchr(b' ', e).unwrap_or(0);
        let nul = e.len() - 21;
        let id = ObjectId::from_slice(&e[nul + 1..]).unwrap_or_default();
        (&e[..sp], &e[sp + 1..nul], id)
    }
}

/// Length of the longest common prefix of `a` and `b`, eight bytes at a time (a `memcmp` call per chunk cost a
/// sixth of the tree walk).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Where the tree entry starting at `at` ends (`<mode> <name>\0<20-byte id>`); `None` if it is malformed.
fn entry_end(raw: &[u8], at: usize) -> Option<usize> {
    let nul = at + memchr::memchr(0, &raw[at..])?;
    memchr::memchr(b' ', &raw[at..nul])?;
    let end = nul + 21;
    (end <= raw.len()).then_some(end)
}

/// Git's order of two whole tree entries: by name, a directory's name read as if it ended in `/`.
fn tree_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    fn key(e: &[u8]) -> (&[u8], bool) {
        let sp = memchr::memchr(b' ', e).unwrap_or(0);
        (&e[sp + 1..e.len() - 21], entry_kind(&e[..sp]) == ObjectType::Tree)
    }
    let ((an, at), (bn, bt)) = (key(a), key(b));
    let n = an.len().min(bn.len());
    let next = |name: &[u8], tree: bool| match name.get(n) {
        Some(&c) => c,
        None if tree => b'/',
        None => 0,
    };
    an[..n].cmp(&bn[..n]).then_with(|| next(an, at).cmp(&next(bn, bt)))
}

#[cfg(test)]
mod tests {
    use super::TreeEntries;
    use std::rc::Rc;

    /// A raw tree from (mode, name, id byte) entries; ids made of one repeated byte, NUL and space included,
    /// so entry boundaries cannot be guessed from the bytes alone.
    fn tree(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut raw = Vec::new();
        for (mode, name, id) in entries {
            raw.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            raw.extend_from_slice(&[*id; 20]);
        }
        raw
    }

    type Entry<'a> = (&'a str, &'a str, u8);

    fn names(t: &TreeEntries, changed: &[(u32, u32)]) -> Vec<String> {
        changed
            .iter()
            .map(|&(i, _)| String::from_utf8_lossy(t.entry(i as usize).1).into_owned())
            .collect()
    }

    #[test]
    fn only_the_entries_a_tree_changed_are_reported_and_boundaries_match_a_full_parse() {
        let base = [
            ("100644", "a.txt", b' '),
            ("40000", "dir", 0),
            ("100644", "m.txt", 7),
            ("100755", "run.sh", 0),
            ("100644", "z.txt", b' '),
        ];
        let (old, all) = TreeEntries::parse(Rc::new(tree(&base)), None).unwrap();
        assert_eq!(all.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        let cases: Vec<(Vec<Entry<'_>>, Vec<&str>)> = vec![
            // One id changed in the middle.
            (
                vec![base[0], base[1], ("100644", "m.txt", 8), base[3], base[4]],
                vec!["m.txt"],
            ),
            // An entry added, one removed, first and last changed.
            (
                vec![base[0], base[1], base[2], ("100644", "n.txt", 0), base[3], base[4]],
                vec!["n.txt"],
            ),
            (vec![base[0], base[1], base[3], base[4]], vec![]),
            (
                vec![("100644", "a.txt", 1), base[1], base[2], base[3], base[4]],
                vec!["a.txt"],
            ),
            (
                vec![base[0], base[1], base[2], base[3], ("100644", "z.txt", 0)],
                vec!["z.txt"],
            ),
            // A name that shares its end with the old one (`m.txt` -> `lm.txt`): bytes equal at the end, entries not.
            (
                vec![base[0], base[1], ("100644", "lm.txt", 7), base[3], base[4]],
                vec!["lm.txt"],
            ),
            // Out of git's order (a malformed tree): more entries are reported, never fewer.
            (
                vec![base[0], base[1], ("100644", "xm.txt", 7), base[3], base[4]],
                vec!["xm.txt", "run.sh"],
            ),
            // Changes far apart: only they are reported, not what lies between them.
            (
                vec![
                    ("100644", "a.txt", 2),
                    base[1],
                    base[2],
                    base[3],
                    ("100644", "z.txt", 3),
                ],
                vec!["a.txt", "z.txt"],
            ),
            // A file where a directory of the same name was (git orders the directory as `dir/`).
            (
                vec![base[0], ("100644", "dir", 0), base[2], base[3], base[4]],
                vec!["dir"],
            ),
            (vec![base[2], base[3], base[4], ("100644", "zz", 1)], vec!["zz"]),
            (vec![], vec![]),
        ];
        for (entries, expect) in cases {
            let raw = tree(&entries);
            let (fresh, _) = TreeEntries::parse(Rc::new(raw.clone()), None).unwrap();
            let (incremental, changed) = TreeEntries::parse(Rc::new(raw), Some(&old)).unwrap();
            assert_eq!(incremental.bounds, fresh.bounds, "{entries:?}");
            assert_eq!(names(&incremental, &changed), expect, "{entries:?}");
        }
    }

    /// Random edits of random sorted trees: the entries reported are exactly those of the new tree that the old
    /// one does not hold byte for byte.
    #[test]
    fn reported_entries_are_exactly_the_new_ones_for_random_edits() {
        use crate::testing::Rng;
        type Entry = (String, bool, u8);
        fn pick(rng: &mut Rng) -> Vec<Entry> {
            let mut t = Vec::new();
            for i in 0..40 {
                if rng.below(3) > 0 {
                    t.push((format!("f{}", i * 7 % 40), rng.below(4) == 0, rng.below(3) as u8));
                }
            }
            let key = |e: &Entry| format!("{}{}", e.0, if e.1 { "/" } else { "" });
            t.sort_by_key(key);
            t
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let old = pick(&mut rng);
            // Mostly the old tree with a few entries changed or removed; sometimes another tree altogether.
            let new: Vec<Entry> = if rng.below(4) == 0 {
                pick(&mut rng)
            } else {
                let mut t = Vec::new();
                for e in &old {
                    if rng.below(10) == 0 {
                        continue;
                    }
                    t.push(if rng.below(8) == 0 {
                        (e.0.clone(), e.1, e.2 + 1)
                    } else {
                        e.clone()
                    });
                }
                t
            };
            let raw = |t: &[Entry]| {
                let mut v = Vec::new();
                for (name, dir, id) in t {
                    v.extend_from_slice(format!("{} {name}\0", if *dir { "40000" } else { "100644" }).as_bytes());
                    v.extend_from_slice(&[*id; 20]);
                }
                v
            };
            let (o, _) = TreeEntries::parse(Rc::new(raw(&old)), None).unwrap();
            let (fresh, _) = TreeEntries::parse(Rc::new(raw(&new)), None).unwrap();
            let (n, changed) = TreeEntries::parse(Rc::new(raw(&new)), Some(&o)).unwrap();
            assert_eq!(n.bounds, fresh.bounds);
            let expect: Vec<(u32, u32)> = (0..new.len() as u32)
                .filter(|&k| !old.contains(&new[k as usize]))
                .map(|k| {
                    let e = &new[k as usize];
                    let was = old.iter().position(|o| o.0 == e.0 && o.1 == e.1);
                    (k, was.map_or(u32::MAX, |w| w as u32))
                })
                .collect();
            assert_eq!(changed, expect, "old {old:?}\nnew {new:?}");
        }
    }

    #[test]
    fn common_prefix_length_matches_a_byte_by_byte_count() {
        use super::common_prefix;
        let base: Vec<u8> = (0..70u8).collect();
        for cut in 0..base.len() {
            let mut other = base.clone();
            other[cut] ^= 0x40;
            assert_eq!(common_prefix(&base, &other), cut);
            assert_eq!(common_prefix(&base[..cut], &base), cut, "one is a prefix of the other");
        }
    }

    #[test]
    fn malformed_trees_are_refused() {
        assert!(TreeEntries::parse(Rc::new(b"100644 a.txt\0short".to_vec()), None).is_none());
        assert!(TreeEntries::parse(Rc::new(b"no-space-here\0aaaaaaaaaaaaaaaaaaaa".to_vec()), None).is_none());
    }
}
