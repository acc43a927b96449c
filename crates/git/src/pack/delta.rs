//! Git deltas: applying one to its base, and deriving the keyword occurrences of the result from the base's.

use leakstop_scan::{KeywordHit, Scanner};

use super::{Pack, PackError, bad};
use crate::inflate::Inflater;

/// One instruction of a delta, in result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `len` bytes of the base from `from`, placed at `to` in the result.
    Copy { from: usize, to: usize, len: usize },
    /// `len` new bytes at `to`.
    Insert { to: usize, len: usize },
}

fn varint(d: &[u8], i: &mut usize) -> Option<usize> {
    let mut v = 0usize;
    let mut shift = 0;
    loop {
        let c = *d.get(*i)?;
        *i += 1;
        if shift > 56 {
            return None;
        }
        v |= usize::from(c & 0x7f) << shift;
        shift += 7;
        if c & 0x80 == 0 {
            return Some(v);
        }
    }
}

/// Output reserved before applying a delta.
const DELTA_FIRST_ROOM: usize = 64 << 20;

/// Applies git delta `delta` to `base` into `out`, recording its instructions in `ops`.
pub(crate) fn apply_delta(base: &[u8], delta: &[u8], out: &mut Vec<u8>, ops: &mut Vec<Op>) -> Result<(), PackError> {
    out.clear();
    ops.clear();
    let mut i = 0;
    let (Some(base_len), Some(len)) = (varint(delta, &mut i), varint(delta, &mut i)) else {
        return Err(bad("delta header is truncated"));
    };
    if base_len != base.len() {
        return Err(bad(format!("delta expects a {base_len}-byte base, got {}", base.len())));
    }
    // Each instruction byte yields at most 64 KiB: a longer announced result is corrupt. What is reserved up front
    // is bounded too; a larger result grows as it is built.
    if len > (delta.len() - i).saturating_mul(0x10000) {
        return Err(bad(format!(
            "delta announces {len} bytes, more than its instructions can build"
        )));
    }
    out.reserve_exact(len.min(DELTA_FIRST_ROOM));
    while i < delta.len() {
        let cmd = delta[i];
        i += 1;
        if cmd & 0x80 != 0 {
            let mut from = 0usize;
            let mut n = 0usize;
            for k in 0..4 {
                if cmd & (1 << k) != 0 {
                    from |= usize::from(*delta.get(i).ok_or_else(|| bad("delta copy is truncated"))?) << (8 * k);
                    i += 1;
                }
            }
            for k in 0..3 {
                if cmd & (0x10 << k) != 0 {
                    n |= usize::from(*delta.get(i).ok_or_else(|| bad("delta copy is truncated"))?) << (8 * k);
                    i += 1;
                }
            }
            if n == 0 {
                n = 0x10000;
            }
            let src = base
                .get(from..from + n)
                .ok_or_else(|| bad("delta copies from beyond its base"))?;
            ops.push(Op::Copy {
                from,
                to: out.len(),
                len: n,
            });
            out.extend_from_slice(src);
        } else if cmd != 0 {
            let n = usize::from(cmd);
            let src = delta.get(i..i + n).ok_or_else(|| bad("delta insert is truncated"))?;
            ops.push(Op::Insert { to: out.len(), len: n });
            out.extend_from_slice(src);
            i += n;
        } else {
            return Err(bad("delta has a reserved instruction"));
        }
        if out.len() > len {
            return Err(bad("delta result is longer than announced"));
        }
    }
    if out.len() != len {
        return Err(bad("delta result is shorter than announced"));
    }
    Ok(())
}

/// The keyword occurrences of a delta's result `data`, from those of its base (`base_hits`, in order of start)
/// and its instructions: an occurrence inside one copied range is the base's, moved; any other covers an inserted
/// byte or both bytes of a seam between instructions, and the scanner finds those from the stretches alone.
pub(crate) fn derive_hits(
    scanner: &Scanner,
    base_hits: &[KeywordHit],
    data: &[u8],
    ops: &[Op],
    out: &mut Vec<KeywordHit>,
) {
    out.clear();
    let mut stretches: Vec<std::ops::Range<usize>> = Vec::new();
    let mut prev_copy = false;
    for op in ops {
        match *op {
            Op::Insert { to, len } => {
                stretches.push(to..to + len);
                prev_copy = false;
            }
            Op::Copy { from, to, len } => {
                if prev_copy {
                    stretches.push(to - 1..to + 1);
                }
                prev_copy = true;
                let end = from + len;
                let first = base_hits.partition_point(|h| h.start < from);
                for h in &base_hits[first..] {
                    if h.start >= end {
                        break;
                    }
                    if h.start + scanner.keyword_len(h.keyword) <= end {
                        out.push(KeywordHit {
                            start: to + (h.start - from),
                            keyword: h.keyword,
                        });
                    }
                }
            }
        }
    }
    // Moved occurrences are in order already (instructions in result order, a base's occurrences in order within
    // each); the searched ones come sorted: merge the two runs.
    let moved = out.len();
    scanner.keyword_hits_touching(data, stretches, out);
    let searched = out.split_off(moved);
    let moved = std::mem::take(out);
    out.reserve(moved.len() + searched.len());
    let (mut a, mut b) = (moved.into_iter().peekable(), searched.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x <= y => a.next(),
            (_, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => break,
        };
        if let Some(h) = next
            && out.last() != Some(&h)
        {
            out.push(h);
        }
    }
}

/// One thread's inflate stream and buffers for reading a pack's entries.
pub(super) struct Scratch {
    inflater: Inflater,
    /// A delta's instructions, inflated.
    delta: Vec<u8>,
    /// The last delta applied, as instructions.
    pub(super) ops: Vec<Op>,
}

impl Scratch {
    pub(super) fn new() -> Result<Scratch, PackError> {
        Ok(Scratch {
            inflater: Inflater::new().ok_or_else(|| bad("zlib could not be initialised"))?,
            delta: Vec::new(),
            ops: Vec::new(),
        })
    }

    /// Inflates entry `i` of `pack` into `into`.
    pub(super) fn inflate(&mut self, pack: &Pack, i: u32, into: &mut Vec<u8>) -> Result<(), PackError> {
        let o = &pack.objs[i as usize];
        let size = usize::try_from(o.size).map_err(|_| bad("pack entry is too large").in_file(&pack.path))?;
        let raw = pack.entry(i);
        let inflated = self.inflater.inflate(raw, size, into);
        pack.map.done_with(raw.len());
        if !inflated {
            return Err(bad(format!(
                "pack entry {} (at {}) does not inflate to its {size} bytes",
                o.id, o.data
            ))
            .in_file(&pack.path));
        }
        Ok(())
    }

    /// Rebuilds delta entry `i` of `pack` from its base's bytes; its instructions are left in `ops`.
    pub(super) fn rebuild(&mut self, pack: &Pack, i: u32, base: &[u8]) -> Result<Vec<u8>, PackError> {
        let mut delta = std::mem::take(&mut self.delta);
        let inflated = self.inflate(pack, i, &mut delta);
        let mut out = Vec::new();
        let applied = inflated.and_then(|()| {
            apply_delta(base, &delta, &mut out, &mut self.ops)
                .map_err(|e| bad(format!("pack entry {}: {e}", pack.objs[i as usize].id)).in_file(&pack.path))
        });
        self.delta = delta;
        applied.map(|()| out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;
    use leakstop_rules::RuleSet;
    use leakstop_scan::ScanOptions;

    /// Encodes `ops` (over `base`, producing `result`) as a git delta.
    fn encode(base: &[u8], result: &[u8], ops: &[Op]) -> Vec<u8> {
        let mut d = Vec::new();
        for mut v in [base.len(), result.len()] {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    d.push(b);
                    break;
                }
                d.push(b | 0x80);
            }
        }
        for op in ops {
            match *op {
                Op::Copy { from, len, .. } => {
                    let mut cmd = 0x80u8;
                    let mut args = Vec::new();
                    for k in 0..4 {
                        let b = (from >> (8 * k)) as u8;
                        if b != 0 {
                            cmd |= 1 << k;
                            args.push(b);
                        }
                    }
                    let n = if len == 0x10000 { 0 } else { len };
                    for k in 0..3 {
                        let b = (n >> (8 * k)) as u8;
                        if b != 0 {
                            cmd |= 0x10 << k;
                            args.push(b);
                        }
                    }
                    d.push(cmd);
                    d.extend(args);
                }
                Op::Insert { to, len } => {
                    d.push(len as u8);
                    d.extend_from_slice(&result[to..to + len]);
                }
            }
        }
        d
    }

    /// Text made of words, keywords of the built-in rules among them (in mixed case, split across edits).
    fn text(rng: &mut Rng, words: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "the",
            "password",
            "TOKEN",
            "secret",
            "api_key",
            "ghp_",
            "AKIA",
            "-----BEGIN",
            "xox",
            "sk_live_",
            "\n",
            "key",
            "=",
            "\"",
            "glpat-",
            "AIza",
            "hooks.slack",
            "npm_",
            "pass",
            "to",
            " ",
            "\n\n",
            // Longer than the pieces the stretch search cuts keywords into.
            "-----BEGIN OPENSSH PRIVATE KEY",
            "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY",
            "discord.com/api/webhooks",
            "aws_session_token",
            "X-Amz-Security-Token",
        ];
        let mut out = Vec::new();
        for _ in 0..words {
            out.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
            if rng.below(3) == 0 {
                out.push(b' ');
            }
        }
        out
    }

    /// A random edit of `base` as copy and insert instructions, with the result.
    fn edit(rng: &mut Rng, base: &[u8]) -> (Vec<u8>, Vec<Op>) {
        let mut out = Vec::new();
        let mut ops = Vec::new();
        for _ in 0..1 + rng.below(6) {
            if rng.below(2) == 0 && !base.is_empty() {
                let from = rng.below(base.len());
                let len = 1 + rng.below((base.len() - from).min(200));
                // Often a copy is cut in two that continue each other, the second half copied or inserted (as git
                // writes at its copy size limit or around an unmatched stretch): the cut can fall inside a keyword
                // anywhere, which then spans the seam.
                let cut = if len > 1 && rng.below(2) == 0 {
                    1 + rng.below(len - 1)
                } else {
                    len
                };
                ops.push(Op::Copy {
                    from,
                    to: out.len(),
                    len: cut,
                });
                out.extend_from_slice(&base[from..from + cut]);
                if cut < len {
                    // Inserts hold at most 127 bytes.
                    let rest = (len - cut).min(127);
                    ops.push(if rng.below(2) == 0 {
                        Op::Copy {
                            from: from + cut,
                            to: out.len(),
                            len: rest,
                        }
                    } else {
                        Op::Insert {
                            to: out.len(),
                            len: rest,
                        }
                    });
                    out.extend_from_slice(&base[from + cut..from + cut + rest]);
                }
            } else {
                let words = 1 + rng.below(8);
                let ins = text(rng, words);
                for chunk in ins.chunks(127) {
                    ops.push(Op::Insert {
                        to: out.len(),
                        len: chunk.len(),
                    });
                    out.extend_from_slice(chunk);
                }
            }
        }
        (out, ops)
    }

    #[test]
    fn derived_keyword_hits_are_those_of_a_full_search() {
        let scanner = Scanner::new(RuleSet::builtin(), ScanOptions::default()).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut checked_hits, mut long_searched) = (0, 0);
        for round in 0..400 {
            let base = text(&mut rng, 60);
            let mut base_hits = Vec::new();
            scanner.keyword_hits(&base, &mut base_hits);
            let (want, want_ops) = edit(&mut rng, &base);
            let delta = encode(&base, &want, &want_ops);
            let (mut got, mut ops) = (Vec::new(), Vec::new());
            apply_delta(&base, &delta, &mut got, &mut ops).unwrap();
            assert_eq!(got, want, "round {round}");
            assert_eq!(ops, want_ops, "round {round}");
            let mut full = Vec::new();
            scanner.keyword_hits(&got, &mut full);
            let mut derived = Vec::new();
            derive_hits(&scanner, &base_hits, &got, &ops, &mut derived);
            assert_eq!(derived, full, "round {round}");
            checked_hits += full.len();
            // Long keywords found by the stretch search, not carried over from the base.
            long_searched += full
                .iter()
                .filter(|h| {
                    let len = scanner.keyword_len(h.keyword);
                    len > 16
                        && !ops.iter().any(
                            |op| matches!(*op, Op::Copy { to, len: n, .. } if h.start >= to && h.start + len <= to + n),
                        )
                })
                .count();
        }
        assert!(checked_hits > 1000, "the texts hold keywords: {checked_hits}");
        assert!(long_searched > 50, "long keywords across edits: {long_searched}");
    }

    #[test]
    fn bad_deltas_are_refused() {
        let base = b"0123456789";
        let (mut out, mut ops) = (Vec::new(), Vec::new());
        let ok = encode(base, b"2345", &[Op::Copy { from: 2, to: 0, len: 4 }]);
        apply_delta(base, &ok, &mut out, &mut ops).unwrap();
        assert_eq!(out, b"2345");
        assert!(
            apply_delta(b"short", &ok, &mut out, &mut ops).is_err(),
            "wrong base size"
        );
        let beyond = encode(base, b"89ab", &[Op::Copy { from: 8, to: 0, len: 4 }]);
        assert!(
            apply_delta(base, &beyond, &mut out, &mut ops).is_err(),
            "copy past the base"
        );
        let mut long = ok.clone();
        long.extend_from_slice(&[1, b'x']);
        assert!(
            apply_delta(base, &long, &mut out, &mut ops).is_err(),
            "longer than announced"
        );
        assert!(
            apply_delta(base, &ok[..ok.len() - 1], &mut out, &mut ops).is_err(),
            "truncated"
        );
        assert!(
            apply_delta(base, &[10, 0, 0], &mut out, &mut ops).is_err(),
            "reserved instruction"
        );
    }
}
