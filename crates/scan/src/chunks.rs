//! Large inputs scanned in bounded pieces, so the memory a scan needs beyond the input itself does not grow with
//! it: keyword occurrences (one per position in the worst case: a file of one repeated character that a keyword
//! is made of) and rule matches are held for one piece at a time.
//!
//! Pieces end at a line break where one is near, and overlap the next piece by [`OVERLAP`] bytes: a match that
//! starts in a piece's own part is found whole unless it is longer than the overlap (no rule's secret is), and is
//! reported by that piece only. Matches in the overlap still serve the piece's `requires` and generic-vs-specific
//! decisions.

use crate::finding::Finding;
use crate::scanner::Scanner;

/// Bytes a piece reports matches for.
pub(crate) const CHUNK: usize = 1 << 20;
/// Bytes a piece reads past its own part.
pub(crate) const OVERLAP: usize = 64 << 10;
/// How far past a nominal cut a line break is looked for.
const LINE_SEARCH: usize = 16 << 10;

/// Where a piece's part ends: the line break at or after `at` when one is near, else `at`.
fn cut(data: &[u8], at: usize) -> usize {
    if at >= data.len() {
        return data.len();
    }
    let window = &data[at..(at + LINE_SEARCH).min(data.len())];
    memchr::memchr(b'\n', window).map_or(at, |i| at + i + 1)
}

/// Characters in a byte slice (UTF-8 continuation bytes are not characters).
fn chars(b: &[u8]) -> u32 {
    b.iter().filter(|&&x| (x & 0xC0) != 0x80).count() as u32
}

impl Scanner {
    pub(crate) fn scan_in_chunks(&self, data: &[u8], path: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut start = 0usize;
        // Lines before `start`, and characters between the last line break before it and it.
        let (mut lines_before, mut column_before) = (0u32, 0u32);
        // Secrets reported by the previous piece that reach into this one: (rule, absolute byte range).
        let mut reported: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
        let mut hits = Vec::new();
        while start < data.len() {
            let own_end = cut(data, start + CHUNK);
            let end = cut(data, own_end + OVERLAP);
            let piece = &data[start..end];
            hits.clear();
            self.keyword_hits(piece, &mut hits);
            let mut cands = self.candidates(piece, &hits, Some(path));
            let mut next_reported = Vec::new();
            for c in &mut cands {
                let abs = c.m.secret.start + start..c.m.secret.end + start;
                c.report = abs.start < own_end
                    && !reported
                        .iter()
                        .any(|(r, s)| *r == c.rule && s.start < abs.end && abs.start < s.end);
                if c.report && abs.end > own_end {
                    next_reported.push((c.rule, abs));
                }
                if c.line == 1 {
                    c.column += column_before;
                }
                if c.end_line == 1 {
                    c.end_column += column_before;
                }
                c.line += lines_before;
                c.end_line += lines_before;
            }
            reported = next_reported;
            out.extend(self.findings(cands, path));

            let own = &data[start..own_end];
            match memchr::memrchr(b'\n', own) {
                Some(nl) => {
                    lines_before += memchr::memchr_iter(b'\n', own).count() as u32;
                    column_before = chars(&own[nl + 1..]);
                }
                None => column_before += chars(own),
            }
            start = own_end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use leakstop_rules::RuleSet;

    use crate::scanner::{ScanOptions, Scanner};

    use super::{CHUNK, OVERLAP};

    const RULE: &str = r#"
[[rule]]
id = "acme-key"
description = "ACME key"
severity = "high"
keywords = ["acme_"]
regex = '''acme_[0-9a-f]{16}'''
examples = ["acme_0123456789abcdef"]
negative_examples = ["acme_"]
"#;

    fn scanner() -> Scanner {
        Scanner::new(RuleSet::from_toml_str(RULE, "t.toml").unwrap(), ScanOptions::default()).unwrap()
    }

    /// Secrets at every kind of place in a large input (near and across piece boundaries, on a line longer than a
    /// piece) are reported once each, at the line and column a whole-input scan gives.
    #[test]
    fn pieces_report_what_a_whole_scan_reports_at_the_same_places() {
        // A leading 7 keeps key 0 from being all zeros, which the placeholder guard rightly drops.
        let key = |i: usize| format!("acme_7{i:015x}");
        let mut data = String::new();
        let mut expected = Vec::new();
        let mut line = 1u32;
        let mut i = 0;
        // Short lines, with keys placed so that some straddle piece boundaries.
        while data.len() < 3 * CHUNK {
            let filler = "z".repeat(37 + (i * 7919) % 900);
            data.push_str(&filler);
            data.push(' ');
            let col = filler.len() as u32 + 2;
            data.push_str(&key(i));
            data.push('\n');
            expected.push((line, col));
            line += 1;
            i += 1;
        }
        // One line longer than a piece, with keys in it.
        let mut col = 1u32;
        for j in 0..5 {
            let filler = "y".repeat(CHUNK / 2 + 13);
            data.push_str(&filler);
            data.push(' ');
            col += filler.len() as u32 + 1;
            data.push_str(&key(i + j));
            expected.push((line, col));
            col += 21;
        }
        data.push('\n');
        assert!(data.len() > CHUNK + OVERLAP);
        let found = scanner().scan_blob(data.as_bytes(), "big.txt");
        let got: Vec<(u32, u32)> = found.iter().map(|f| (f.line, f.column)).collect();
        assert_eq!(got.len(), expected.len());
        assert_eq!(got, expected);
    }
}
