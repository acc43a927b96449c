//! The order a history scan visits commits in: the order of libgit2's `TOPOLOGICAL | REVERSE` revwalk, computed
//! from commits read through the pack reader.
//!
//! Provenance is "the first commit in this order that holds the blob at that path", so the order must be exactly
//! libgit2's: where two branches add the same blob, another valid topological order would name the other branch's
//! commit. libgit2 inflates and parses every commit to sort them, and the walk then read each commit again for its
//! tree; here each commit is inflated once and parsed only as far as the walk needs (tree and parents). On git/git
//! the two took 1.0 s of the walk thread's 4.3; this takes 0.4.
//!
//! libgit2 1.9 (`revwalk.c`: `prepare_walk`, `limit_list`, `sort_in_topological_order`) computes it in steps:
//! 1. the pushed commits, latest push first, each once;
//! 2. everything they reach, listed by a walk that pops the list's head and inserts its parents by committer time;
//! 3. a topological sort of that list: the tips (listed commits no listed commit names as a parent) onto a stack in
//!    list order, first on top; pop one, emit it, and push each parent once its last child was emitted;
//! 4. that, reversed.
//!
//! Only the tips' relative order in the list of step 2 reaches step 3, and tips are pushed commits (any other
//! commit was listed as some commit's parent), which the list keeps in the order of step 1: insertions never move
//! what is already in it. So step 2 here is a plain reachability walk, and committer times are not needed.
//!
//! Anything it does not model (a commit libgit2 would parse differently or refuse, a grafts file: the caller
//! checks) returns `None`, and the caller uses libgit2's own walk: the same order, or libgit2's own error.

use std::collections::HashSet;

use crate::oid::{IdMap, ObjectId};

type Id = ObjectId;

/// Commits oldest first (libgit2's `TOPOLOGICAL | REVERSE` order), each with its root tree and its first
/// parent's (the walk diffs trees against that version).
pub(crate) struct Order {
    pub(crate) commits: Vec<(Id, Id, Option<Id>)>,
}

struct Node {
    id: Id,
    tree: Id,
    /// `parents[first..first + count]` of the walk.
    first: u32,
    count: u32,
    parsed: bool,
    seen: bool,
}

struct Walk<'a, R> {
    nodes: Vec<Node>,
    by_id: IdMap<u32>,
    parents: Vec<u32>,
    shallow: &'a HashSet<Id>,
    read: R,
    buf: Vec<u8>,
}

/// The history of `tips` (in the order they were pushed to the walk) in libgit2's order, reading each commit's raw
/// bytes with `read` (false when it cannot). Commits in `shallow` have no parents (a shallow clone's boundary).
/// `None` when some commit is missing or not parsed the way libgit2 parses it.
pub(crate) fn order<R>(tips: &[Id], shallow: &HashSet<Id>, read: R) -> Option<Order>
where
    R: FnMut(&Id, &mut Vec<u8>) -> bool,
{
    let mut w = Walk {
        nodes: Vec::new(),
        by_id: IdMap::default(),
        parents: Vec::new(),
        shallow,
        read,
        buf: Vec::new(),
    };
    // 1. Pushes are prepended to libgit2's input list: the latest comes first.
    let mut pushed: Vec<u32> = Vec::new();
    for tip in tips.iter().rev() {
        let n = w.node(tip);
        w.parse(n)?;
        if !w.nodes[n as usize].seen {
            w.nodes[n as usize].seen = true;
            pushed.push(n);
        }
    }
    // 2. Everything they reach.
    let mut reached = pushed.clone();
    let mut todo = pushed.clone();
    while let Some(n) = todo.pop() {
        for k in w.nodes[n as usize].first..w.nodes[n as usize].first + w.nodes[n as usize].count {
            let p = w.parents[k as usize];
            w.parse(p)?;
            if !w.nodes[p as usize].seen {
                w.nodes[p as usize].seen = true;
                reached.push(p);
                todo.push(p);
            }
        }
    }
    // 3. The topological sort: in-degree 1 + children, for reached commits.
    let mut degree = vec![0u32; w.nodes.len()];
    for &n in &reached {
        degree[n as usize] = 1;
    }
    for &n in &reached {
        for &p in w.parents_of(n) {
            degree[p as usize] += 1;
        }
    }
    let mut stack: Vec<u32> = pushed.iter().copied().filter(|&n| degree[n as usize] == 1).collect();
    stack.reverse();
    let mut sorted: Vec<u32> = Vec::with_capacity(reached.len());
    while let Some(n) = stack.pop() {
        for &p in w.parents_of(n) {
            if degree[p as usize] == 0 {
                continue;
            }
            degree[p as usize] -= 1;
            if degree[p as usize] == 1 {
                stack.push(p);
            }
        }
        degree[n as usize] = 0;
        sorted.push(n);
    }
    // 4. Reversed: oldest first.
    Some(Order {
        commits: sorted
            .iter()
            .rev()
            .map(|&n| {
                let node = &w.nodes[n as usize];
                let parent = w.parents_of(n).first().map(|&p| w.nodes[p as usize].tree);
                (node.id, node.tree, parent)
            })
            .collect(),
    })
}

impl<R: FnMut(&Id, &mut Vec<u8>) -> bool> Walk<'_, R> {
    fn parents_of(&self, n: u32) -> &[u32] {
        let node = &self.nodes[n as usize];
        &self.parents[node.first as usize..(node.first + node.count) as usize]
    }

    fn node(&mut self, id: &Id) -> u32 {
        if let Some(&n) = self.by_id.get(id) {
            return n;
        }
        let n = self.nodes.len() as u32;
        self.nodes.push(Node {
            id: *id,
            tree: ObjectId::default(),
            first: 0,
            count: 0,
            parsed: false,
            seen: false,
        });
        self.by_id.insert(*id, n);
        n
    }

    fn parse(&mut self, n: u32) -> Option<()> {
        if self.nodes[n as usize].parsed {
            return Some(());
        }
        let id = self.nodes[n as usize].id;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let parsed = (self.read)(&id, &mut buf).then(|| parse_commit(&buf)).flatten();
        self.buf = buf;
        let (tree, parents) = parsed?;
        let first = self.parents.len() as u32;
        let mut count = 0;
        if !self.shallow.contains(&id) {
            for p in parents {
                let p = self.node(&p);
                self.parents.push(p);
                count += 1;
            }
        }
        let node = &mut self.nodes[n as usize];
        node.tree = tree;
        node.first = first;
        node.count = count;
        node.parsed = true;
        Some(())
    }
}

/// Tree and parents of a raw commit, read as libgit2's quick parse reads them (which also parses the signatures);
/// `None` for anything it would treat differently or refuse.
fn parse_commit(raw: &[u8]) -> Option<(Id, Vec<Id>)> {
    let mut rest = raw;
    let tree = id_line(&mut rest, b"tree ")?;
    let mut parents = Vec::new();
    while rest.starts_with(b"parent ") {
        parents.push(id_line(&mut rest, b"parent ")?);
    }
    if parents.len() > usize::from(u16::MAX) {
        return None;
    }
    while rest.starts_with(b"author ") {
        signature(&mut rest, b"author ")?;
    }
    signature(&mut rest, b"committer ")?;
    Some((tree, parents))
}

/// `<header><40 hex digits>\n`, consumed from `rest`.
fn id_line(rest: &mut &[u8], header: &[u8]) -> Option<Id> {
    let hex = rest.strip_prefix(header)?.get(..41)?;
    if hex[40] != b'\n' {
        return None;
    }
    let id = ObjectId::from_hex(&hex[..40])?;
    *rest = &rest[header.len() + 41..];
    Some(id)
}

/// A `<header>name <email> <time> <zone>\n` line, consumed from `rest`. Only a plain decimal time after `"> "` is
/// accepted (libgit2 reads others in ways not worth modelling).
fn signature(rest: &mut &[u8], header: &[u8]) -> Option<()> {
    let eol = memchr::memchr(b'\n', rest)?;
    let line = rest[..eol].strip_prefix(header)?;
    let open = memchr::memrchr(b'<', line)?;
    let close = memchr::memrchr(b'>', line)?;
    if close <= open || line.get(close + 1) != Some(&b' ') {
        return None;
    }
    let after = &line[close + 2..];
    let digits = after.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 18 || !matches!(after.get(digits), None | Some(b' ')) {
        return None;
    }
    *rest = &rest[eol + 1..];
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn commits_parse_as_libgit2_reads_them_or_not_at_all() {
        let t = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
        let p = "a".repeat(40);
        let ok = format!(
            "tree {t}\nparent {p}\nparent {}\nauthor A <a@x> 5 +0000\nauthor B <b@x> 6 +0000\n\
             committer C <c@x> 1700000000 -0130\n\nmessage\n",
            "B".repeat(40)
        );
        let (tree, parents) = parse_commit(ok.as_bytes()).unwrap();
        assert_eq!(tree.as_bytes()[..2], [0x4b, 0x82]);
        assert_eq!(parents, vec![ObjectId::new([0xaa; 20]), ObjectId::new([0xbb; 20])]);
        for bad in [
            format!("tree {t}\ncommitter C <c@x> 17x0 +0000\n"),
            format!("tree {t}\ncommitter C c@x 1700 +0000\n"),
            format!("tree {t}\nparent {}\ncommitter C <c@x> 1700 +0000\n", "g".repeat(40)),
            format!("tree {t}\nauthor A <a@x> 1 +0000\n"),
            format!("tree {}\ncommitter C <c@x> 1700 +0000\n", &t[..39]),
        ] {
            assert!(parse_commit(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    /// Random histories (branches, merges of two and three parents, commit times equal, running backwards or
    /// scattered; branches and tags at random commits, some at the same one; a shallow boundary in some): the
    /// order is libgit2's own, and each commit comes with its tree.
    #[test]
    fn the_order_is_libgit2s_for_random_histories() {
        use git2::{Oid, Repository, Signature, Time};
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for case in 0..60 {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init_bare(dir.path()).unwrap();
            let mut commits: Vec<Oid> = Vec::new();
            let mut heads: Vec<Oid> = Vec::new();
            let n = 10 + rng.below(120);
            for k in 0..n {
                let time = match rng.below(4) {
                    0 => 1_000,
                    1 => 1_000 + k as i64,
                    2 => 9_000 - 3 * k as i64,
                    _ => rng.below(5_000) as i64,
                };
                let sig = Signature::new("t", "t@example.com", &Time::new(time, 0)).unwrap();
                let mut tb = repo.treebuilder(None).unwrap();
                let blob = repo.blob(format!("{}", rng.below(8)).as_bytes()).unwrap();
                tb.insert("f", blob, 0o100644).unwrap();
                let tree = repo.find_tree(tb.write().unwrap()).unwrap();
                let mut parents: Vec<Oid> = Vec::new();
                if !heads.is_empty() && rng.below(15) > 0 {
                    let merge = match rng.below(6) {
                        0 => 2,
                        1 => 3,
                        _ => 1,
                    };
                    for _ in 0..merge.min(heads.len()) {
                        let h = heads[rng.below(heads.len())];
                        if !parents.contains(&h) {
                            parents.push(h);
                        }
                    }
                }
                // A branch forks when a parent stays a head of its own.
                if rng.below(4) > 0 {
                    heads.retain(|h| !parents.contains(h));
                }
                let parents: Vec<git2::Commit<'_>> = parents.iter().map(|p| repo.find_commit(*p).unwrap()).collect();
                let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
                let id = repo
                    .commit(None, &sig, &sig, &format!("c{k}"), &tree, &parents)
                    .unwrap();
                heads.push(id);
                commits.push(id);
            }
            for (i, h) in heads.iter().enumerate() {
                repo.reference(&format!("refs/heads/b{i}"), *h, true, "").unwrap();
            }
            for t in 0..rng.below(6) {
                let c = commits[rng.below(commits.len())];
                repo.reference(&format!("refs/tags/t{t}"), c, true, "").unwrap();
            }
            repo.set_head("refs/heads/b0").unwrap();
            if case % 3 == 0 {
                let cut: Vec<String> = (0..1 + rng.below(3))
                    .map(|_| commits[rng.below(commits.len())].to_string() + "\n")
                    .collect();
                std::fs::write(dir.path().join("shallow"), cut.concat()).unwrap();
            }
            drop(repo);
            // Opened again, so libgit2 reads the shallow file.
            let repo = Repository::open(dir.path()).unwrap();
            let tips = crate::history::ref_tips(&repo, dir.path()).unwrap();
            let libgit2: Vec<Oid> = crate::history::libgit2_walk(&repo, &tips, None, dir.path())
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let shallow: HashSet<Id> = crate::repo::shallow_commits(&repo)
                .iter()
                .map(|c| ObjectId::from(*c))
                .collect();
            let tips: Vec<Id> = tips.iter().map(|t| ObjectId::from(*t)).collect();
            let odb = repo.odb().unwrap();
            let ours = order(&tips, &shallow, |id, buf| {
                odb.read(id.to_git2())
                    .map(|o| {
                        buf.clear();
                        buf.extend_from_slice(o.data());
                    })
                    .is_ok()
            })
            .expect("every commit parses");
            let ids: Vec<Oid> = ours.commits.iter().map(|(c, ..)| c.to_git2()).collect();
            assert_eq!(ids, libgit2, "case {case}: {n} commits");
            for (c, t, parent) in &ours.commits {
                let commit = repo.find_commit(c.to_git2()).unwrap();
                assert_eq!(ObjectId::from(commit.tree_id()), *t);
                let first = commit.parents().next().filter(|_| !shallow.contains(c));
                assert_eq!(first.map(|p| p.tree_id()), parent.map(|p| p.to_git2()));
            }
        }
    }

    #[test]
    fn a_missing_commit_gives_no_order() {
        let tip = ObjectId::new([7u8; 20]);
        assert!(order(&[tip], &HashSet::new(), |_, _| false).is_none());
    }
}
