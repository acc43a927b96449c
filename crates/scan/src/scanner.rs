//! The detection engine: one case-insensitive keyword pass over the input (`keywords.rs`) decides which rules run;
//! only those rules' regexes run, near the keyword hits when a rule allows it; line/column are computed only for
//! what matched.

use std::io::Read;

use leakstop_rules::{Confidence, Rule, RuleMatch, RuleSet};

use crate::baseline::Baseline;
use crate::error::ScanError;
use crate::finding::{DEFAULT_FINGERPRINT_KEY, Finding, fingerprint};
use crate::keywords::KeywordIndex;
use crate::secret::Secret;
use crate::walk::ScanSummary;

/// Markers that allow a finding when they appear on the secret's line. Besides our own, the ones teams already
/// have in their code from other scanners, so switching does not resurface findings they reviewed.
pub const INLINE_ALLOW_MARKERS: &[&str] = &[
    "leakstop:allow",
    "gitleaks:allow",
    "pragma: allowlist secret",
    "kingfisher:ignore",
    "trufflehog:ignore",
];

/// Default `--max-file-size`: larger files are skipped with a note.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Kept for API stability: findings always carry the redacted form in `Finding::redacted`; whether a report
    /// reveals secrets is `report::ReportOptions::show_secrets`.
    pub redact: bool,
    pub fingerprint_key: Vec<u8>,
    pub max_file_size: u64,
    pub include_binary: bool,
    pub no_ignore: bool,
    /// Worker threads for directory walks; 0 = one per core.
    pub threads: usize,
    /// Known findings to drop (from `--baseline`, `.leakstopignore`, `.gitleaksignore`).
    pub baseline: Option<Baseline>,
    /// Looking inside archives and compressed files found by a directory walk, and the limits on it.
    pub archives: crate::archive::ArchiveOptions,
    /// Report only findings at least this sure (`--min-confidence`, `[scan] min_confidence`); `None`: all.
    pub min_confidence: Option<Confidence>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            redact: true,
            fingerprint_key: DEFAULT_FINGERPRINT_KEY.to_vec(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            include_binary: false,
            no_ignore: false,
            threads: 0,
            baseline: None,
            archives: crate::archive::ArchiveOptions::default(),
            min_confidence: None,
        }
    }
}

pub struct Scanner {
    rules: RuleSet,
    pub(crate) opts: ScanOptions,
    /// All rules' keywords, deduplicated, ASCII case-insensitive. `None` when no rule has keywords.
    prefilter: Option<KeywordIndex>,
    /// The keywords again, those longer than [`PIECE`] bytes cut into pieces of that length, with each piece's
    /// keyword and offset in it: what [`Scanner::keyword_hits_touching`] searches stretches with. Around each
    /// stretch it must test every position from which a keyword reaching into the stretch can be found; with
    /// whole keywords that is set by the longest one (37 bytes, which more than doubled the positions tested on
    /// git/git's deltas), with pieces by [`PIECE`]. Built on first use: only history scans need it.
    pieces: std::sync::OnceLock<(KeywordIndex, Vec<(u32, u32)>)>,
    /// Prefilter pattern id -> indices of the rules that keyword enables.
    pattern_rules: Vec<Vec<usize>>,
    /// Rule index -> index of the rule it `requires` nearby (`None` if no requirement; `Some(None)` if the required
    /// rule is not in the set, so the rule can never be reported).
    requires: Vec<Option<(Option<usize>, u32)>>,
    /// Rules with no keywords run on every input (user rules may omit them in imported configs).
    always: Vec<usize>,
    /// How generic each rule is ([`generality`]): a match is dropped when a less generic rule found the same secret.
    generic: Vec<u8>,
    /// Rules whose matches contain one of their keywords and stay within a line or two: their regex runs only on
    /// the lines around keyword hits instead of the whole input (most of a large file is never regex-searched).
    /// Decided on a rule's first hit (its regex is compiled then anyway), from its own examples.
    windowed: Vec<std::sync::OnceLock<bool>>,
}

/// Where a rule's regex must run for one input.
#[derive(Clone)]
enum Hit {
    No,
    Whole,
    At(Vec<usize>),
}

/// Beyond this many keyword hits in one input, a rule's regex runs once over all of it.
const MAX_WINDOWS: usize = 48;

/// A rule's regex may only run near keyword hits when its matches contain a keyword and stay within a few lines.
/// Both are checked on the rule's own examples (every match of every positive example must contain one of its
/// keywords and stay on one line) and on its pattern (no key blocks, `(?s)`, line breaks it could match). Rules
/// without examples (imported configs) always search the whole input.
fn windowable(rule: &leakstop_rules::Rule) -> bool {
    let src = line_local_removed(&rule.regex_source).to_ascii_lowercase();
    let multiline = ["(?s", "[\\s\\s]", "\\n", "\\r", "begin", "-----"]
        .iter()
        .any(|m| src.contains(m));
    if multiline || rule.keywords.is_empty() || rule.examples.is_empty() {
        return false;
    }
    let keywords: Vec<String> = rule.keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
    rule.examples.iter().all(|ex| {
        let found = rule.find_iter(ex.as_bytes());
        !found.is_empty()
            && found.iter().all(|m| {
                let span = ex.as_bytes()[m.span.clone()].to_ascii_lowercase();
                // A match that takes several lines in the examples (`\s+` between the lines of a key file) may take
                // more than a window's worth of them in the wild.
                !span.contains(&b'\n')
                    && keywords
                        .iter()
                        .any(|k| memchr::memmem::find(&span, k.as_bytes()).is_some())
            })
    })
}

/// `pattern` without the parts that cannot take a match across a line: negated classes (`[^...\r\n]` excludes
/// line breaks rather than matching them) and an optional carriage return before an end of line (`\r?$`). `(?m)`
/// needs no removal: windows start and end at line boundaries, so `^` and `$` mean the same inside them.
fn line_local_removed(pattern: &str) -> String {
    let pattern = pattern.replace("\\r?$", "");
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(c);
            out.extend(chars.next());
        } else if c == '[' && chars.peek() == Some(&'^') {
            // Skip to the closing bracket (a `]` right after `[^` is a literal, as are escaped ones).
            chars.next();
            let mut first = true;
            while let Some(d) = chars.next() {
                match d {
                    '\\' => {
                        chars.next();
                    }
                    ']' if !first => break,
                    _ => {}
                }
                first = false;
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines searched before and after a keyword hit's line (`\s` in a pattern may cross a line break or two).
const WINDOW_BEFORE: usize = 1;
const WINDOW_AFTER: usize = 3;

/// The byte ranges to search around keyword hits: the hit's line with a few lines around it, merged.
fn windows(data: &[u8], hits: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for &p in hits {
        let mut start = memchr::memrchr(b'\n', &data[..p]).map_or(0, |i| i + 1);
        for _ in 0..WINDOW_BEFORE {
            if start == 0 {
                break;
            }
            start = memchr::memrchr(b'\n', &data[..start - 1]).map_or(0, |i| i + 1);
        }
        let mut end = p;
        for _ in 0..=WINDOW_AFTER {
            if end >= data.len() {
                break;
            }
            end = memchr::memchr(b'\n', &data[end..]).map_or(data.len(), |i| end + i + 1);
        }
        match out.last_mut() {
            Some(last) if start <= last.end => {
                last.start = last.start.min(start);
                last.end = last.end.max(end);
            }
            _ => out.push(start..end),
        }
    }
    out
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.rules.rules().len())
            .finish_non_exhaustive()
    }
}

/// A keyword occurrence in a blob: which keyword ([`Scanner::keyword_len`]) starts where. Ordered by start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeywordHit {
    pub start: usize,
    pub keyword: u32,
}

/// A rule match in one blob with what deciding on it needs (see [`Scanner::candidates`]); owns its bytes, so it
/// outlives the blob.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub(crate) rule: usize,
    pub(crate) m: RuleMatch,
    secret: Vec<u8>,
    matched: Vec<u8>,
    /// The secret's line, for allowlists that target lines.
    line_text: Vec<u8>,
    /// An inline allow marker on the secret's or the match's line.
    marker: bool,
    pub(crate) line: u32,
    pub(crate) column: u32,
    pub(crate) end_line: u32,
    pub(crate) end_column: u32,
    /// False for a match another piece of the input reports (see `chunks.rs`): it still counts as a `requires`
    /// partner or a specific rule's match, but is not reported here.
    pub(crate) report: bool,
}

impl Scanner {
    pub fn new(rules: RuleSet, opts: ScanOptions) -> Result<Scanner, ScanError> {
        let mut keywords: Vec<String> = Vec::new();
        let mut pattern_rules: Vec<Vec<usize>> = Vec::new();
        let mut index = std::collections::HashMap::<String, usize>::new();
        let mut always = Vec::new();
        for (i, rule) in rules.rules().iter().enumerate() {
            let kws: Vec<String> = rule
                .keywords
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .filter(|k| !k.is_empty())
                .collect();
            if kws.is_empty() {
                always.push(i);
            }
            for k in kws {
                let id = *index.entry(k.clone()).or_insert_with(|| {
                    keywords.push(k);
                    pattern_rules.push(Vec::new());
                    pattern_rules.len() - 1
                });
                if !pattern_rules[id].contains(&i) {
                    pattern_rules[id].push(i);
                }
            }
        }
        let prefilter = if keywords.is_empty() {
            None
        } else {
            Some(KeywordIndex::new(&keywords))
        };
        let requires = rules
            .rules()
            .iter()
            .map(|r| {
                r.requires.as_ref().map(|req| {
                    let target = rules.rules().iter().position(|o| o.id == req.rule);
                    (target, req.within_lines)
                })
            })
            .collect();
        let generic = rules.rules().iter().map(generality).collect();
        let windowed = rules.rules().iter().map(|_| std::sync::OnceLock::new()).collect();
        Ok(Scanner {
            rules,
            opts,
            prefilter,
            pieces: std::sync::OnceLock::new(),
            pattern_rules,
            requires,
            always,
            generic,
            windowed,
        })
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn options(&self) -> &ScanOptions {
        &self.opts
    }

    /// Cheap prefilter: false means no rule can match `data`.
    pub fn might_match(&self, data: &[u8]) -> bool {
        !self.always.is_empty() || self.prefilter.as_ref().is_some_and(|ac| ac.is_match(data))
    }

    /// Reads `r` to its end and scans it as one blob named `name` (e.g. `stdin`), with the limits files get: over
    /// `max_file_size` it is not scanned (nor read further), and binary data only with `include_binary`. The
    /// summary says which.
    pub fn scan_reader(&self, r: impl Read, name: &str) -> Result<ScanSummary, ScanError> {
        let mut data = Vec::new();
        let max = self.opts.max_file_size;
        r.take(max.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|source| ScanError::Input {
                name: name.to_string(),
                source,
            })?;
        let mut summary = ScanSummary::default();
        if data.len() as u64 > max {
            summary.skipped_large.push((name.to_string(), data.len() as u64));
        } else if !self.opts.include_binary && crate::walk::is_binary(&data) {
            summary.skipped_binary = 1;
        } else {
            summary.files_scanned = 1;
            summary.bytes_scanned = data.len() as u64;
            summary.findings = self.scan_blob(&data, name);
        }
        Ok(summary)
    }

    /// Scans one blob. Applies path filters, `requires`, allowlists, inline allow markers and the baseline.
    pub fn scan_blob(&self, data: &[u8], path: &str) -> Vec<Finding> {
        if self.rules.rules().is_empty() || self.rules.global_allow().allows_path(path) {
            return Vec::new();
        }
        let _span = tracing::debug_span!("scan", path).entered();
        if data.len() > crate::chunks::CHUNK + crate::chunks::OVERLAP {
            return self.scan_in_chunks(data, path);
        }
        let mut hits = Vec::new();
        self.keyword_hits(data, &mut hits);
        let cands = self.candidates(data, &hits, Some(path));
        self.findings(cands, path)
    }

    /// Every keyword occurrence in `data`, appended to `out` in order of start. The first step of a scan, exposed
    /// so a caller that knows how `data` was built from another scanned blob (a Git delta) can derive them instead
    /// ([`Scanner::keyword_hits_touching`] finds what the derivation cannot carry over).
    pub fn keyword_hits(&self, data: &[u8], out: &mut Vec<KeywordHit>) {
        let Some(index) = &self.prefilter else { return };
        let first = out.len();
        index.for_each(data, hit_into(out));
        // Occurrences come in order of their filter gram, not of their start.
        out[first..].sort_unstable();
    }

    /// Every keyword occurrence that covers a byte of one of `stretches` (in order), and possibly others, appended
    /// to `out` in order of start. Costs about the stretches' length plus 16 bytes each (long keywords are searched
    /// by pieces), however large `data` is: what a caller needs that knows the occurrences everywhere else (from a
    /// blob `data` was built from).
    pub fn keyword_hits_touching(
        &self,
        data: &[u8],
        stretches: impl IntoIterator<Item = std::ops::Range<usize>>,
        out: &mut Vec<KeywordHit>,
    ) {
        let Some(whole) = &self.prefilter else { return };
        let (index, owner) = self.pieces.get_or_init(|| pieces(whole));
        let first = out.len();
        let (before, after) = index.anchor_reach();
        let mut pending: Option<std::ops::Range<usize>> = None;
        let run = |p: std::ops::Range<usize>, out: &mut Vec<KeywordHit>| {
            index.for_each_anchored(data, p, |piece, at| {
                let (keyword, off) = owner[piece];
                let word = whole.word(keyword as usize);
                // A piece found: its keyword is there if the rest of it is.
                if let Some(start) = at.checked_sub(off as usize)
                    && data
                        .get(start..start + word.len())
                        .is_some_and(|d| d.eq_ignore_ascii_case(word))
                {
                    out.push(KeywordHit { start, keyword });
                }
                true
            })
        };
        for s in stretches {
            let p = s.start.saturating_sub(before)..(s.end + after).min(data.len());
            match &mut pending {
                Some(cur) if p.start <= cur.end => cur.end = cur.end.max(p.end),
                _ => {
                    if let Some(done) = pending.replace(p) {
                        run(done, out);
                    }
                }
            }
        }
        if let Some(done) = pending {
            run(done, out);
        }
        // A long keyword is found once per piece near a stretch.
        let mut found = out.split_off(first);
        found.sort_unstable();
        found.dedup();
        out.append(&mut found);
    }

    /// Length in bytes of keyword `id` (from a [`KeywordHit`]).
    pub fn keyword_len(&self, id: u32) -> usize {
        self.prefilter.as_ref().map_or(0, |ix| ix.len_of(id as usize))
    }

    /// The rule matches in `data` given its keyword occurrences (`hits`, in order of start, as
    /// [`Scanner::keyword_hits`] gives them), with what deciding on them needs copied out, so the decision can come
    /// later when the path is known ([`Scanner::findings`]). With a `path`, rules that cannot apply to it are not run.
    pub fn candidates(&self, data: &[u8], hits: &[KeywordHit], path: Option<&str>) -> Vec<Candidate> {
        let all = self.rules.rules();
        if hits.is_empty() && self.always.is_empty() {
            return Vec::new();
        }
        let hit = self.rules_hit(hits);
        let mut cands: Vec<Candidate> = Vec::new();
        for (i, rule) in all.iter().enumerate() {
            if matches!(hit[i], Hit::No) || path.is_some_and(|p| !rule_applies_to_path(rule, p)) {
                continue;
            }
            let found = match &hit[i] {
                Hit::At(positions) => {
                    let mut found = Vec::new();
                    for w in windows(data, positions) {
                        for mut m in rule.find_iter(&data[w.clone()]) {
                            m.span = m.span.start + w.start..m.span.end + w.start;
                            m.secret = m.secret.start + w.start..m.secret.end + w.start;
                            found.push(m);
                        }
                    }
                    found
                }
                _ => rule.find_iter(data),
            };
            for m in found {
                cands.push(Candidate {
                    rule: i,
                    secret: data[m.secret.clone()].to_vec(),
                    matched: data[m.span.clone()].to_vec(),
                    line_text: line_of(data, m.secret.start).to_vec(),
                    marker: line_has_allow_marker(data, m.secret.start) || line_has_allow_marker(data, m.span.start),
                    m,
                    line: 0,
                    column: 0,
                    end_line: 0,
                    end_column: 0,
                    report: true,
                });
            }
        }
        cands.sort_by_key(|c| (c.m.secret.start, c.rule));
        locate(data, &mut cands);
        cands
    }

    /// Findings from the candidates of one blob seen at `path`: path filters, allowlists, inline allow markers,
    /// `requires`, the generic-vs-specific overlap rule and the baseline.
    pub fn findings(&self, cands: Vec<Candidate>, path: &str) -> Vec<Finding> {
        let all = self.rules.rules();
        if cands.is_empty() || self.rules.global_allow().allows_path(path) {
            return Vec::new();
        }
        let cands: Vec<Candidate> = cands
            .into_iter()
            .filter(|c| {
                let rule = &all[c.rule];
                // Full decisions (AND lists, regexTarget = line/match, path + content) need the context.
                let why = if !rule_applies_to_path(rule, path) {
                    "the rule does not apply to this path"
                } else if self
                    .rules
                    .global_allow()
                    .allows_finding(&c.secret, &c.matched, &c.line_text, path, None)
                {
                    "the global allowlist allows it"
                } else if rule
                    .allow
                    .allows_finding(&c.secret, &c.matched, &c.line_text, path, None)
                {
                    "the rule's allowlist allows it"
                } else {
                    return true;
                };
                rule.dropped(&c.secret, &format!("{path}:{}: {why}", c.line));
                false
            })
            .collect();
        let keep = self.keep_mask(&cands);
        let mut out = Vec::new();
        for (c, keep) in cands.iter().zip(keep) {
            let rule = &all[c.rule];
            if !c.report {
                continue;
            }
            if let Err(why) = keep {
                rule.dropped(&c.secret, &format!("{path}:{}: {why}", c.line));
                continue;
            }
            // After the overlap and `requires` decisions, so hiding a weak finding never changes a stronger one.
            if let Some(min) = self.opts.min_confidence
                && c.m.confidence < min
            {
                rule.dropped(
                    &c.secret,
                    &format!("{path}:{}: confidence {} is below {min}", c.line, c.m.confidence),
                );
                continue;
            }
            let raw = &c.secret[..];
            let secret = Secret::new(raw);
            let redacted = secret.redacted();
            let f = Finding {
                rule_id: rule.id.clone(),
                description: match c.m.kind {
                    Some(kind) => format!("{} ({kind})", rule.description),
                    None => rule.description.clone(),
                },
                severity: rule.severity,
                confidence: c.m.confidence,
                path: path.to_string(),
                line: c.line,
                column: c.column,
                end_line: c.end_line,
                end_column: c.end_column,
                redacted: redacted.clone(),
                fingerprint: fingerprint(&self.opts.fingerprint_key, &rule.id, raw),
                entropy: Some(leakstop_rules::shannon_entropy(raw)),
                secret,
                commit: None,
                other_paths: Vec::new(),
                other_locations: Vec::new(),
                other_locations_omitted: 0,
                in_head: None,
                tags: rule.tags.clone(),
                context: context(&c.line_text, raw, &redacted, c.line, &cands),
            };
            if self.opts.baseline.as_ref().is_some_and(|b| b.suppresses(&f)) {
                rule.dropped(
                    &c.secret,
                    &format!("{path}:{}: in the baseline or an ignore file", c.line),
                );
                continue;
            }
            out.push(f);
        }
        out
    }

    /// The filters that need the commit, for callers that set `Finding::commit` after `scan_blob` (history
    /// scans): commit allowlists (global and per rule) and baseline entries tied to a commit. Harmless to repeat.
    pub fn apply_baseline(&self, findings: &mut Vec<Finding>) {
        findings.retain(|f| {
            if let Some(c) = &f.commit {
                if self.rules.global_allow().allows_commit(&c.id) {
                    return false;
                }
                if self.rules.get(&f.rule_id).is_some_and(|r| r.allow.allows_commit(&c.id)) {
                    return false;
                }
            }
            !self.opts.baseline.as_ref().is_some_and(|b| b.suppresses(f))
        });
    }

    fn rules_hit(&self, hits: &[KeywordHit]) -> Vec<Hit> {
        let n = self.rules.rules().len();
        let mut hit = vec![Hit::No; n];
        for &i in &self.always {
            hit[i] = Hit::Whole;
        }
        for h in hits {
            for &r in &self.pattern_rules[h.keyword as usize] {
                match &mut hit[r] {
                    Hit::Whole => {}
                    slot @ Hit::No => {
                        *slot = if *self.windowed[r].get_or_init(|| windowable(&self.rules.rules()[r])) {
                            Hit::At(vec![h.start])
                        } else {
                            Hit::Whole
                        };
                    }
                    Hit::At(ps) => {
                        // Hits come in order of start: a repeated start is the last one.
                        if ps.last() != Some(&h.start) {
                            if ps.len() >= MAX_WINDOWS {
                                hit[r] = Hit::Whole;
                            } else {
                                ps.push(h.start);
                            }
                        }
                    }
                }
            }
        }
        hit
    }

    /// Which candidates survive inline allow markers, `requires` and the generic-vs-specific overlap rule (and why
    /// the others do not).
    fn keep_mask(&self, cands: &[Candidate]) -> Vec<Result<(), &'static str>> {
        cands
            .iter()
            .map(|c| {
                if c.marker {
                    return Err("an inline allow marker is on its line");
                }
                if let Some((target, within)) = self.requires[c.rule] {
                    let Some(t) = target else {
                        return Err("the rule it requires is not enabled");
                    };
                    let near = cands.iter().any(|o| o.rule == t && o.line.abs_diff(c.line) <= within);
                    if !near {
                        return Err("the rule it requires did not match nearby");
                    }
                }
                // A generic rule that matched the same secret as a more specific one adds nothing but noise.
                if self.generic[c.rule] > 0 {
                    let shadowed = cands.iter().any(|o| {
                        self.generic[o.rule] < self.generic[c.rule]
                            && o.m.secret.start < c.m.secret.end
                            && c.m.secret.start < o.m.secret.end
                    });
                    if shadowed {
                        return Err("a specific rule reports the same secret");
                    }
                }
                Ok(())
            })
            .collect()
    }
}

/// Length of the pieces long keywords are cut into for [`Scanner::keyword_hits_touching`]: most keywords are no
/// longer, and a piece of 16 bytes still almost never occurs by chance.
const PIECE: usize = 16;

/// The keywords of `whole` with those longer than [`PIECE`] bytes cut into pieces of that length (the last one
/// reaching back from the keyword's end), each with its keyword and offset in it.
fn pieces(whole: &KeywordIndex) -> (KeywordIndex, Vec<(u32, u32)>) {
    let mut words: Vec<String> = Vec::new();
    let mut owner: Vec<(u32, u32)> = Vec::new();
    for id in 0..whole.count() {
        let k = String::from_utf8_lossy(whole.word(id)).into_owned();
        // Pieces at byte offsets: only ASCII keywords are cut (others cannot be cut anywhere).
        if !k.is_ascii() || k.len() <= PIECE {
            words.push(k);
            owner.push((id as u32, 0));
            continue;
        }
        let mut offsets: Vec<usize> = (0..k.len() - PIECE).step_by(PIECE).collect();
        offsets.push(k.len() - PIECE);
        for off in offsets {
            words.push(k[off..off + PIECE].to_string());
            owner.push((id as u32, off as u32));
        }
    }
    (KeywordIndex::new(&words), owner)
}

/// A keyword-pass callback that collects every occurrence into `out`.
fn hit_into(out: &mut Vec<KeywordHit>) -> impl FnMut(usize, usize) -> bool + '_ {
    |keyword, start| {
        out.push(KeywordHit {
            start,
            keyword: keyword as u32,
        });
        true
    }
}

/// 0 for a specific rule; 1 for a rule tagged `generic` that still knows its context (a config file's password
/// field, a command's password option); 2 for the `generic-*` catch-alls, which yield to both.
fn generality(rule: &Rule) -> u8 {
    if rule.id.starts_with("generic") {
        2
    } else if rule.tags.iter().any(|t| t == "generic") {
        1
    } else {
        0
    }
}

fn rule_applies_to_path(rule: &Rule, path: &str) -> bool {
    if let Some(re) = &rule.path
        && !re.is_match(path)
    {
        return false;
    }
    !rule.allow.allows_path(path)
}

/// Characters of the line kept on each side of the secret in [`Finding::context`].
const CONTEXT_CHARS: usize = 60;

/// `line` with `secret` replaced by `redacted` and every other candidate's secret by stars, shortened to
/// [`CONTEXT_CHARS`] characters on each side of the secret.
fn context(line: &[u8], secret: &[u8], redacted: &str, line_no: u32, cands: &[Candidate]) -> String {
    // A secret over several lines (a key block) shows its first line's part.
    let first = secret.split(|&b| b == b'\n').next().unwrap_or(secret);
    let Some(at) = memchr::memmem::find(line, first).filter(|_| !first.is_empty()) else {
        return String::new();
    };
    // Only the bytes that can be shown are decoded (a minified line may be megabytes long).
    let reach = CONTEXT_CHARS * 4;
    let mask = |part: &[u8]| {
        let mut text = String::from_utf8_lossy(part).into_owned();
        for c in cands.iter().filter(|c| c.line == line_no || c.end_line == line_no) {
            let other = String::from_utf8_lossy(&c.secret);
            let other = other.split('\n').next().unwrap_or_default();
            if other.len() >= 4 && text.contains(other) {
                text = text.replace(other, "*****");
            }
        }
        text
    };
    let before = mask(&line[at.saturating_sub(reach)..at]);
    let after = mask(&line[at + first.len()..(at + first.len() + reach).min(line.len())]);
    let n = before.chars().count();
    let before: String = if n > CONTEXT_CHARS || at > reach {
        format!(
            "…{}",
            before.chars().skip(n.saturating_sub(CONTEXT_CHARS)).collect::<String>()
        )
    } else {
        before
    };
    let after: String = if after.chars().count() > CONTEXT_CHARS || at + first.len() + reach < line.len() {
        format!("{}…", after.chars().take(CONTEXT_CHARS).collect::<String>())
    } else {
        after
    };
    format!("{}{redacted}{}", before.trim_start(), after.trim_end())
}

/// The line (without its newline) containing byte `pos`.
fn line_of(data: &[u8], pos: usize) -> &[u8] {
    let pos = pos.min(data.len());
    let start = memchr::memrchr(b'\n', &data[..pos]).map_or(0, |i| i + 1);
    let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
    &data[start..end]
}

/// Whether the line containing byte `pos` carries an inline allow marker.
fn line_has_allow_marker(data: &[u8], pos: usize) -> bool {
    let line = line_of(data, pos);
    INLINE_ALLOW_MARKERS
        .iter()
        .any(|m| memchr::memmem::find(line, m.as_bytes()).is_some())
}

/// Fills line/column (1-based; columns in characters) for candidates sorted by secret start, counting newlines
/// incrementally so the cost is one pass up to the last finding.
fn locate(data: &[u8], cands: &mut [Candidate]) {
    let mut cur_pos = 0usize;
    let mut cur_line = 1u32;
    let mut line_start = 0usize;
    let mut position = |pos: usize| -> (u32, u32) {
        let pos = pos.min(data.len());
        if pos < cur_pos {
            // End positions can precede a later start: recount from the beginning of the data (rare).
            let line = 1 + memchr::memchr_iter(b'\n', &data[..pos]).count() as u32;
            let ls = memchr::memrchr(b'\n', &data[..pos]).map_or(0, |i| i + 1);
            return (line, char_count(&data[ls..pos]) + 1);
        }
        for nl in memchr::memchr_iter(b'\n', &data[cur_pos..pos]) {
            cur_line += 1;
            line_start = cur_pos + nl + 1;
        }
        cur_pos = pos;
        (cur_line, char_count(&data[line_start..pos]) + 1)
    };
    for c in cands.iter_mut() {
        (c.line, c.column) = position(c.m.secret.start);
    }
    for c in cands.iter_mut() {
        let last = if c.m.secret.end > c.m.secret.start {
            c.m.secret.end - 1
        } else {
            c.m.secret.start
        };
        let (l, col) = {
            let line = 1 + memchr::memchr_iter(b'\n', &data[c.m.secret.start..last]).count() as u32;
            let end_line = c.line + line - 1;
            let ls = memchr::memrchr(b'\n', &data[..last]).map_or(0, |i| i + 1);
            (end_line, char_count(&data[ls..last]) + 1)
        };
        c.end_line = l;
        c.end_column = col;
    }
}

/// Characters in a UTF-8 (or mostly UTF-8) byte slice: bytes that are not continuation bytes.
fn char_count(b: &[u8]) -> u32 {
    b.iter().filter(|&&x| (x & 0xC0) != 0x80).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_count_counts_characters_not_bytes() {
        assert_eq!(char_count("héllo".as_bytes()), 5);
        assert_eq!(char_count(b""), 0);
    }

    #[test]
    fn allow_marker_only_applies_to_its_own_line() {
        let data = b"a = 1\nkey = x # gitleaks:allow\nkey = y\n";
        assert!(line_has_allow_marker(data, 8));
        assert!(!line_has_allow_marker(data, 33));
        assert!(!line_has_allow_marker(data, 2));
    }
}

#[cfg(test)]
mod window_tests {
    use super::{line_local_removed, windows};

    #[test]
    fn line_local_parts_of_patterns_are_recognised() {
        assert_eq!(line_local_removed(r"a[^;\r\n]{1,9}b\r?$"), "a{1,9}b");
        assert_eq!(line_local_removed(r"x[^]\n]y\[^z"), r"xy\[^z");
        assert_eq!(line_local_removed(r"-----BEGIN[\s\S]*?\n"), r"-----BEGIN[\s\S]*?\n");
    }

    #[test]
    fn windows_cover_a_line_before_and_three_after_and_merge() {
        let data = b"l1\nl2\nl3 key\nl4\nl5\nl6\nl7\nl8\nl9 key\nl10\n";
        let hit1 = 6; // in l3
        let w = windows(data, &[hit1]);
        assert_eq!(w.len(), 1);
        assert_eq!(&data[w[0].clone()], b"l2\nl3 key\nl4\nl5\nl6\n");
        let hit2 = 28; // in l9
        assert_eq!(windows(data, &[hit1, hit2]), vec![3..22, 25..39], "apart: two windows");
        let hit3 = 16; // in l5
        assert_eq!(windows(data, &[hit1, hit3]), vec![3..28], "overlapping windows merge");
        assert_eq!(windows(b"key", &[0]), vec![0..3], "no newline at all");
    }
}
