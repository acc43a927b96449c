//! The order a history scan visits commits in: the order of libgit2's `TOPOLOGICAL | REVERSE` revwalk, computed
//! from commits read through the pack reader.
//!
//! Provenance is "the first commit in this order that holds the blob at that path", so the order must be exactly
//! libgit2's: where two branches add the same blob, another valid topological order would name the other branch's
//! commit. libgit2 inflates and parses every commit to sort them, and the walk then read each commit again for its
//! tree; here each commit is inflated once and parsed only as far as the walk needs (tree, parents, committer
//! time), which was a sixth of the walk's time on git/git.
//!
//! What it replicates, from libgit2 1.9's `revwalk.c` (`prepare_walk`, `limit_list`, `add_parents_to_list`,
//! `sort_in_topological_order`) and `commit_list.c`:
//! 1. pushed commits, latest push first, each once;
//! 2. a list walk from them: pop the head, add its unseen parents by committer time (after every entry not older),
//!    and emit it;
//! 3. a topological sort of that list: tips (commits no listed commit names as a parent) onto a stack in list
//!    order, first on top; pop one, emit it, and push each parent whose last child that was;
//! 4. that, reversed.
//!
//! Anything it does not model (a commit it cannot parse the way libgit2 does, a grafts file) returns `None`, and
//! the caller uses libgit2's own walk: the same order, or libgit2's own error.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::pack::IdHash;

type Id = [u8; 20];

/// Commits oldest first (libgit2's `TOPOLOGICAL | REVERSE` order), each with its root tree.
pub(crate) struct Order {
    pub(crate) commits: Vec<(Id, Id)>,
}

struct Node {
    id: Id,
    tree: Id,
    time: i64,
    /// `parents[first..first + count]` of the walk.
    first: u32,
    count: u32,
    parsed: bool,
    seen: bool,
}

struct Walk<'a, R> {
    nodes: Vec<Node>,
    by_id: HashMap<Id, u32, std::hash::BuildHasherDefault<IdHash>>,
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
        by_id: HashMap::default(),
        parents: Vec::new(),
        shallow,
        read,
        buf: Vec::new(),
    };
    // 1. Pushes are prepended to libgit2's input list: the latest comes first.
    let mut list: VecDeque<u32> = VecDeque::new();
    for tip in tips.iter().rev() {
        let n = w.node(tip);
        w.parse(n)?;
        if !w.nodes[n as usize].seen {
            w.nodes[n as usize].seen = true;
            list.push_back(n);
        }
    }
    // 2. The list walk.
    let mut listed: Vec<u32> = Vec::new();
    while let Some(n) = list.pop_front() {
        let (first, count) = (w.nodes[n as usize].first, w.nodes[n as usize].count);
        for k in first..first + count {
            let p = w.parents[k as usize];
            w.parse(p)?;
            let node = &mut w.nodes[p as usize];
            if !node.seen {
                node.seen = true;
                let time = node.time;
                // Before the first entry strictly older (`git_commit_list_insert_by_date`).
                let at = list
                    .iter()
                    .position(|&q| w.nodes[q as usize].time < time)
                    .unwrap_or(list.len());
                list.insert(at, p);
            }
        }
        listed.push(n);
    }
    // 3. The topological sort: in-degree 1 + children among the listed commits, 0 for the rest.
    let mut degree = vec![0u32; w.nodes.len()];
    for &n in &listed {
        degree[n as usize] = 1;
    }
    for &n in &listed {
        let node = &w.nodes[n as usize];
        for &p in &w.parents[node.first as usize..(node.first + node.count) as usize] {
            if degree[p as usize] != 0 {
                degree[p as usize] += 1;
            }
        }
    }
    let mut stack: Vec<u32> = listed.iter().copied().filter(|&n| degree[n as usize] == 1).collect();
    stack.reverse();
    let mut sorted: Vec<u32> = Vec::with_capacity(listed.len());
    while let Some(n) = stack.pop() {
        let node = &w.nodes[n as usize];
        for &p in &w.parents[node.first as usize..(node.first + node.count) as usize] {
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
            .map(|&n| (w.nodes[n as usize].id, w.nodes[n as usize].tree))
            .collect(),
    })
}

impl<R: FnMut(&Id, &mut Vec<u8>) -> bool> Walk<'_, R> {
    fn node(&mut self, id: &Id) -> u32 {
        if let Some(&n) = self.by_id.get(id) {
            return n;
        }
        let n = self.nodes.len() as u32;
        self.nodes.push(Node {
            id: *id,
            tree: [0; 20],
            time: 0,
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
        let (tree, parents, time) = parsed?;
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
        node.time = time;
        node.first = first;
        node.count = count;
        node.parsed = true;
        Some(())
    }
}

/// Tree, parents and committer time of a raw commit, read as libgit2's quick parse reads them; `None` for anything
/// it would treat differently (or refuse).
fn parse_commit(raw: &[u8]) -> Option<(Id, Vec<Id>, i64)> {
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
    let time = signature(&mut rest, b"committer ")?;
    Some((tree, parents, time))
}

/// `<header><40 hex digits>\n`, consumed from `rest`.
fn id_line(rest: &mut &[u8], header: &[u8]) -> Option<Id> {
    let hex = rest.strip_prefix(header)?.get(..41)?;
    if hex[40] != b'\n' {
        return None;
    }
    let mut id = [0u8; 20];
    for (i, pair) in hex[..40].chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        id[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    *rest = &rest[header.len() + 41..];
    Some(id)
}

/// A `<header>name <email> <time> <zone>\n` line, consumed from `rest`; its time. Only a plain decimal time after
/// `"> "` is accepted (libgit2 reads others in ways not worth modelling).
fn signature(rest: &mut &[u8], header: &[u8]) -> Option<i64> {
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
    let time = std::str::from_utf8(&after[..digits]).ok()?.parse().ok()?;
    *rest = &rest[eol + 1..];
    Some(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_parse_as_libgit2_reads_them_or_not_at_all() {
        let t = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
        let p = "a".repeat(40);
        let ok = format!(
            "tree {t}\nparent {p}\nparent {}\nauthor A <a@x> 5 +0000\nauthor B <b@x> 6 +0000\n\
             committer C <c@x> 1700000000 -0130\n\nmessage\n",
            "B".repeat(40)
        );
        let (tree, parents, time) = parse_commit(ok.as_bytes()).unwrap();
        assert_eq!(tree[..2], [0x4b, 0x82]);
        assert_eq!(parents, vec![[0xaa; 20], [0xbb; 20]]);
        assert_eq!(time, 1_700_000_000);
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
}
