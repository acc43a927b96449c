use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use regex::Regex;
use regex::bytes::{Regex as BytesRegex, RegexBuilder};

use crate::allow::Allowlist;
use crate::checks::{Check, Verdict, leakstop_token_kind};
use crate::guard::{is_placeholder, shannon_entropy};

/// How bad a leak of this kind is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub const NAMES: &'static [&'static str] = &["critical", "high", "medium", "low", "info"];

    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" => Severity::Medium,
            "low" => Severity::Low,
            "info" => Severity::Info,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a rule is that a match is a real credential, not a look-alike. Ordered `Low < Medium < High`, so
/// `--min-confidence medium` keeps `f.confidence >= Medium`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Generic or entropy-only judgement (a secret-named key with a random-looking value).
    Low,
    /// A provider's shape recognised through context (a keyword near the value), with no distinctive prefix.
    #[default]
    Medium,
    /// A distinctive prefix, or a format whose checksum or structure was verified.
    High,
}

impl Confidence {
    pub const NAMES: &'static [&'static str] = &["low", "medium", "high"];

    pub fn parse(s: &str) -> Option<Confidence> {
        Some(match s.to_ascii_lowercase().as_str() {
            "low" => Confidence::Low,
            "medium" => Confidence::Medium,
            "high" => Confidence::High,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Confidence {
    type Err = String;
    fn from_str(s: &str) -> Result<Confidence, String> {
        Confidence::parse(s).ok_or_else(|| format!("unknown confidence `{s}`: use low, medium or high"))
    }
}

/// Only report a rule's match if another rule matched within `within_lines` lines (e.g. an AWS secret key near an
/// access key id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requires {
    pub rule: String,
    pub within_lines: u32,
}

/// One match of a rule: `span` is the whole regex match, `secret` the part that is the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub span: Range<usize>,
    pub secret: Range<usize>,
    /// A finer description of what was found when the rule can tell (e.g. which kind of leakstop credential).
    pub kind: Option<&'static str>,
    /// The rule's confidence, lowered for a match whose format could only be verified in part.
    pub confidence: Confidence,
}

/// Regexes are large to compile and most scans need few of them: size limits keep a hostile user pattern from
/// eating memory, and compilation happens on first use.
const REGEX_SIZE_LIMIT: usize = 16 * 1024 * 1024;
const DFA_SIZE_LIMIT: usize = 8 * 1024 * 1024;

/// Which capture group holds the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretGroup {
    /// Named `secret`, else group 1, else the whole match.
    Auto,
    /// An explicit group number (gitleaks' `secretGroup`).
    Index(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    regex: BytesRegex,
    group: usize,
    lead: Option<LeadingClass>,
}

/// A pattern that starts with a repeated class, as the generic rules do (`[a-z0-9_.-]*token...`: a name of any
/// length around the keyword), leaves the regex crate no literal to skip ahead with: any byte of the class may start
/// a match, so its DFA steps through every byte of the input, several times slower than a prefiltered search. The
/// rest of the pattern (from `token` on) keeps its literals. Where the rest first matches, the class's bytes before
/// it lead back to where the whole pattern first matches (a match needs nothing but class bytes before the rest,
/// and an earlier start would need a longer run of them, which would reach the rest's match too), so the whole
/// pattern only runs from there: the same matches, found at the prefiltered speed.
#[derive(Debug, Clone)]
struct LeadingClass {
    /// The bytes the leading `class*` takes.
    class: [bool; 256],
    rest: BytesRegex,
}

impl LeadingClass {
    /// `Some` for patterns of the form `class* rest` (`min` 0, no upper bound), parsed as `compile` builds them.
    fn of(src: &str) -> Option<LeadingClass> {
        use regex_syntax::hir::{Class, Hir, HirKind};
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(src)
            .ok()?;
        let HirKind::Concat(parts) = hir.kind() else {
            return None;
        };
        let (first, rest) = parts.split_first()?;
        let HirKind::Repetition(rep) = first.kind() else {
            return None;
        };
        let HirKind::Class(Class::Bytes(bytes)) = rep.sub.kind() else {
            return None;
        };
        if rep.min != 0 || rep.max.is_some() || rest.is_empty() {
            return None;
        }
        let mut class = [false; 256];
        for r in bytes.ranges() {
            for b in r.start()..=r.end() {
                class[usize::from(b)] = true;
            }
        }
        let rest = RegexBuilder::new(&Hir::concat(rest.to_vec()).to_string())
            .unicode(false)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .build()
            .ok()?;
        Some(LeadingClass { class, rest })
    }

    /// Where the leftmost match at or after `at` can start, `None` when there is none.
    fn start(&self, hay: &[u8], at: usize) -> Option<usize> {
        let k = self.rest.find_at(hay, at)?.start();
        Some(
            k - hay[at..k]
                .iter()
                .rev()
                .take_while(|&&b| self.class[usize::from(b)])
                .count(),
        )
    }
}

impl Compiled {
    /// Calls `f(span, secret)` for each successive leftmost match in `hay`; `secret` is the secret group's span
    /// (`None` when the group did not take part).
    fn each_match(&self, hay: &[u8], mut f: impl FnMut(Range<usize>, Option<Range<usize>>)) {
        let mut locs = self.regex.capture_locations();
        let mut at = 0;
        while at <= hay.len() {
            let from = match &self.lead {
                Some(lead) => match lead.start(hay, at) {
                    Some(from) => from,
                    None => break,
                },
                None => at,
            };
            let Some(span) = self.regex.captures_read_at(&mut locs, hay, from).map(|m| m.range()) else {
                break;
            };
            let secret = locs.get(self.group).map(|(a, b)| a..b);
            at = if span.is_empty() { span.end + 1 } else { span.end };
            f(span, secret);
        }
    }
}

/// A detection rule. Built by the loaders (`RuleSet::from_toml_str`, `config::load_config`), which validate it.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    /// Written in the rule (`confidence = "high"`) or derived from its shape (`derive_confidence`).
    pub confidence: Confidence,
    /// Prefilter literals, lowercase; the scanner runs the regex only if one occurs (case-insensitively).
    pub keywords: Vec<String>,
    pub tags: Vec<String>,
    /// Minimum Shannon entropy (bits per byte) of the secret.
    pub entropy: Option<f64>,
    pub check: Option<Check>,
    /// The rule only applies to paths matching this.
    pub path: Option<Regex>,
    pub requires: Option<Requires>,
    pub allow: Allowlist,
    pub examples: Vec<String>,
    pub negative_examples: Vec<String>,
    /// The regex source as written (after RE2 translation for imported gitleaks rules).
    pub regex_source: String,
    /// Where the rule was defined (e.g. `rules/github.toml`, `.gitleaks.toml`).
    pub origin: String,
    /// Skip the placeholder guard: users' rules do unless they set `placeholder_guard = true` (their own token
    /// formats may contain `example` or `xxxx`); built-in rules run it.
    pub skip_placeholder_guard: bool,
    /// One of the rules embedded from `rules/*.toml` (not a user's).
    pub builtin: bool,
    /// Only used as another rule's `requires` component, never reported itself (gitleaks' `skipReport`).
    pub skip_report: bool,
    pub(crate) secret_group: SecretGroup,
    pub(crate) compiled: OnceLock<Result<Compiled, String>>,
}

impl Rule {
    pub(crate) fn new(id: String, regex_source: String, origin: String) -> Rule {
        Rule {
            id,
            description: String::new(),
            severity: Severity::High,
            confidence: Confidence::Medium,
            keywords: Vec::new(),
            tags: Vec::new(),
            entropy: None,
            check: None,
            path: None,
            requires: None,
            allow: Allowlist::default(),
            examples: Vec::new(),
            negative_examples: Vec::new(),
            regex_source,
            origin,
            skip_placeholder_guard: true,
            builtin: false,
            skip_report: false,
            secret_group: SecretGroup::Auto,
            compiled: OnceLock::new(),
        }
    }

    /// Compiles the regex now (it is otherwise compiled on first use); the error explains what is wrong.
    pub fn compile(&self) -> Result<(), String> {
        self.compiled().map(|_| ())
    }

    fn compiled(&self) -> Result<&Compiled, String> {
        self.compiled
            .get_or_init(|| compile(&self.regex_source, self.secret_group))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Every credential this rule finds in `haystack`: regex, then entropy, check, the rule's allowlist and the
    /// global placeholder guards. `requires` and `path` are the scanner's business (they need context).
    pub fn find_iter(&self, haystack: &[u8]) -> Vec<RuleMatch> {
        let Ok(c) = self.compiled() else {
            // Invalid builtin regexes are caught by the example test; user rules are compiled when loaded.
            return Vec::new();
        };
        let mut out = Vec::new();
        c.each_match(haystack, |span, secret| {
            let secret = secret.unwrap_or_else(|| span.clone());
            self.consider(haystack, span, secret, &mut out);
        });
        out
    }

    fn consider(&self, hay: &[u8], span: Range<usize>, mut secret: Range<usize>, out: &mut Vec<RuleMatch>) {
        // Multi-line secrets (key bodies) end with the line break before their footer; it is not part of them.
        while secret.end > secret.start && hay[secret.end - 1].is_ascii_whitespace() {
            secret.end -= 1;
        }
        if secret.is_empty() {
            return;
        }
        let s = &hay[secret.clone()];
        if let Some(min) = self.entropy {
            let e = shannon_entropy(s);
            if e < min {
                self.dropped(s, &format!("entropy {e:.2} is below the rule's {min}"));
                return;
            }
        }
        let mut confidence = self.confidence;
        if let Some(check) = self.check {
            match check.judge(s) {
                Verdict::Pass => {}
                Verdict::Partial => confidence = Confidence::Low,
                Verdict::Fail => {
                    self.dropped(s, &format!("failed the {} check", check.name()));
                    return;
                }
            }
        }
        if !self.skip_placeholder_guard && is_placeholder(s) {
            self.dropped(s, "looks like a placeholder (placeholder guard)");
            return;
        }
        if self.allow.allows_secret(s) {
            self.dropped(s, "the rule's allowlist allows it");
            return;
        }
        if self.allow.needs_context() {
            let line_start = hay[..secret.start]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let line_end = hay[secret.end..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(hay.len(), |i| secret.end + i);
            let matched = &hay[span.clone()];
            let line = &hay[line_start..line_end];
            if allows_content(&self.allow, s, matched, line) {
                self.dropped(s, "the rule's allowlist allows it");
                return;
            }
        }
        let kind = if self.check == Some(Check::LeakstopCrc32) {
            leakstop_token_kind(s)
        } else {
            None
        };
        out.push(RuleMatch {
            span,
            secret,
            kind,
            confidence,
        });
    }
}

impl Rule {
    /// The confidence of a rule that does not state one: `high` for a verified format (checksum, structure) or a
    /// distinctive literal prefix of 4 or more characters at the start of the secret (`glsa_`, `xoxb-`,
    /// `(?:AKIA|ASIA)`); `low` for the generic rules (id `generic-…`: a secret-named key and a random-looking
    /// value) unless a path restricts them; `medium` otherwise (a provider's shape found next to its keyword, a
    /// password after a command's password flag).
    pub fn derived_confidence(&self) -> Confidence {
        if self.check.is_some_and(Check::verifies_format) {
            return Confidence::High;
        }
        let generic = self.id.starts_with("generic");
        let prefix = secret_literal_prefix(&self.regex_source);
        // `hf_`, `r8_`: three characters ending in `_` are as distinctive as four.
        if !generic && (prefix.0 >= 4 || (prefix.0 == 3 && prefix.1)) {
            return Confidence::High;
        }
        if generic && self.path.is_none() {
            return Confidence::Low;
        }
        Confidence::Medium
    }

    /// Logs (at debug level, `-vv`) a match this rule found and dropped, with the secret redacted.
    pub fn dropped(&self, secret: &[u8], reason: &str) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(rule = self.id.as_str(), secret = %redacted(secret), "match dropped: {reason}");
        }
    }
}

/// How many literal characters the secret starts with in regex `src` (`(?P<secret>glsa_[0-9A-Za-z]{32}…` → 5):
/// the secret group (else the whole pattern), after anchors and flag groups; an optional last literal (`ab?`)
/// does not count.
/// Also whether its last literal character is `_`.
fn secret_literal_prefix(src: &str) -> (usize, bool) {
    let mut rest = match src.find("(?P<secret>") {
        Some(i) => &src[i + "(?P<secret>".len()..],
        None => src,
    };
    loop {
        let before = rest.len();
        for skip in ["\\b", "^", "(?-i:", "(?i)", "(?-i)"] {
            rest = rest.strip_prefix(skip).unwrap_or(rest);
        }
        if rest.len() == before {
            break;
        }
    }
    let mut n = 0;
    let mut last = ' ';
    // A group of literal alternatives (`(?:AKIA|ASIA)`) counts as its shortest alternative.
    if let Some(body) = rest.strip_prefix("(?:")
        && let Some(end) = body.find(')')
        && !body[end + 1..].starts_with(['?', '*', '{'])
    {
        let alts = &body[..end];
        if !alts.is_empty()
            && alts
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'|' | b'_' | b'-'))
        {
            n = alts.split('|').map(str::len).min().unwrap_or(0);
            last = if alts.split('|').all(|a| a.ends_with('_')) {
                '_'
            } else {
                ' '
            };
            rest = &body[end + 1..];
        }
    }
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '[' {
            // A small class of letters (`dd[po]_`) is one fixed position.
            let class: String = chars.by_ref().take_while(|&x| x != ']').collect();
            if class.is_empty() || class.len() > 3 || !class.chars().all(|x| x.is_ascii_alphanumeric()) {
                break;
            }
            if matches!(chars.peek(), Some('?' | '*' | '{')) {
                break;
            }
            n += 1;
            last = ' ';
            continue;
        }
        let literal = if c == '\\' {
            match chars.next() {
                Some('-' | '.' | '_' | '/' | ':' | '+' | '$' | '@' | '#') => true,
                _ => break,
            }
        } else {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '@' | '=' | '/' | '#' | '%' | ',' | ';')
        };
        if !literal {
            break;
        }
        if matches!(chars.peek(), Some('?' | '*' | '{')) {
            break;
        }
        n += 1;
        last = c;
    }
    (n, last == '_')
}

pub use leakstop_proto::secret::redacted;

/// Content-only allow decision (no path or commit known): regex targets `match`/`line` handled here.
fn allows_content(list: &Allowlist, secret: &[u8], matched: &[u8], line: &[u8]) -> bool {
    let pathless = list.paths.is_empty() && list.commits.is_empty();
    (pathless && list.allows_finding(secret, matched, line, "", None))
        || list.more.iter().any(|m| allows_content(m, secret, matched, line))
}

pub(crate) fn compile(src: &str, group: SecretGroup) -> Result<Compiled, String> {
    // ASCII classes (`\w`, `\b`, `\d`) as in RE2, which is also smaller and faster; fall back to Unicode for
    // patterns that need it (e.g. `\p{L}`).
    let build = |unicode: bool| {
        RegexBuilder::new(src)
            .unicode(unicode)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .build()
    };
    let (regex, lead) = match build(false) {
        Ok(regex) => (regex, LeadingClass::of(src)),
        Err(_) => (build(true).map_err(|e| e.to_string())?, None),
    };
    let group = match group {
        SecretGroup::Index(i) => {
            if i >= regex.captures_len() {
                return Err(format!(
                    "secret group {i} does not exist (the regex has {} groups)",
                    regex.captures_len() - 1
                ));
            }
            i
        }
        SecretGroup::Auto => match regex.capture_names().position(|n| n == Some("secret")) {
            Some(i) => i,
            None if regex.captures_len() > 1 => 1,
            None => 0,
        },
    };
    Ok(Compiled { regex, group, lead })
}

/// A validated set of rules plus the allowlist that applies to all of them.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) global_allow: Allowlist,
}

impl RuleSet {
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub fn global_allow(&self) -> &Allowlist {
        &self.global_allow
    }

    pub fn global_allow_mut(&mut self) -> &mut Allowlist {
        &mut self.global_allow
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Adds `rule`, replacing a rule with the same id (returns true if one was replaced).
    pub fn upsert(&mut self, rule: Rule) -> bool {
        if let Some(slot) = self.rules.iter_mut().find(|r| r.id == rule.id) {
            *slot = rule;
            true
        } else {
            self.rules.push(rule);
            false
        }
    }

    /// Removes the rule `id` (returns whether it existed).
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        before != self.rules.len()
    }

    /// Every distinct keyword of every rule (lowercase), for building a prefilter.
    pub fn keywords(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self
            .rules
            .iter()
            .flat_map(|r| r.keywords.iter().map(String::as_str))
            .collect();
        k.sort_unstable();
        k.dedup();
        k
    }

    /// Runs every rule's examples: each positive example must produce a match of that rule, each negative none.
    /// Returns all failures at once, one error per failing example.
    pub fn check_examples(&self) -> Result<(), crate::RuleError> {
        let mut errors = Vec::new();
        for r in &self.rules {
            if let Err(e) = r.compile() {
                errors.push(crate::RuleError::field(&r.origin, &r.id, "regex", e));
                continue;
            }
            for (i, ex) in r.examples.iter().enumerate() {
                let lower = ex.to_ascii_lowercase();
                if !r.keywords.is_empty() && !r.keywords.iter().any(|k| lower.contains(k.as_str())) {
                    errors.push(crate::RuleError::field(
                        &r.origin,
                        &r.id,
                        &format!("examples[{i}]"),
                        format!(
                            "no keyword of the rule ({}) occurs in {ex:?}, so the scanner's prefilter would never run \
                             the rule on it; add a keyword",
                            r.keywords.join(", ")
                        ),
                    ));
                    continue;
                }
                if r.find_iter(ex.as_bytes()).is_empty() {
                    errors.push(crate::RuleError::field(
                        &r.origin,
                        &r.id,
                        &format!("examples[{i}]"),
                        format!("the rule finds nothing in {ex:?}"),
                    ));
                }
            }
            for (i, ex) in r.negative_examples.iter().enumerate() {
                if !r.find_iter(ex.as_bytes()).is_empty() {
                    errors.push(crate::RuleError::field(
                        &r.origin,
                        &r.id,
                        &format!("negative_examples[{i}]"),
                        format!("the rule matches {ex:?} but must not"),
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(crate::RuleError::Many(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where each match is and where its secret group is.
    type Matches = Vec<(Range<usize>, Option<Range<usize>>)>;

    /// Every match with `lead` as the search uses it, and with the whole pattern alone.
    fn both_ways(c: &Compiled, hay: &[u8]) -> (Matches, Matches) {
        let run = |c: &Compiled| {
            let mut out = Vec::new();
            c.each_match(hay, |span, secret| out.push((span, secret)));
            out
        };
        let plain = Compiled {
            lead: None,
            ..c.clone()
        };
        (run(c), run(&plain))
    }

    #[test]
    fn a_leading_class_changes_no_match() {
        let cases: &[(&str, &[&str])] = &[
            (r"[a-z]*ab", &["xxabab", "ab", "zzz", "a-ab.xab", ""]),
            (r"[a-z]*b+c", &["aabbbc abc bc", "bbbbbbbbbbbbbc"]),
            (
                r"(?i)[a-z0-9_.-]*to(?P<secret>ken)",
                &["my.TOKEN tokentoken x-token", "-.-tok"],
            ),
            (r"[ab]*(?P<secret>b?)", &["aabba", "ccc"]),
            (r"(?m)[a-z]*$", &["abc\ndef\n", "\n\n"]),
        ];
        for (pattern, hays) in cases {
            let c = compile(pattern, SecretGroup::Auto).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert!(c.lead.is_some(), "{pattern} starts with a repeated class");
            for hay in *hays {
                let (fast, plain) = both_ways(&c, hay.as_bytes());
                assert_eq!(fast, plain, "{pattern} on {hay:?}");
            }
        }
        for pattern in [r"[a-z]+ab", r"[a-z]{0,4}ab", r"\bab", r"(?:ab)*c"] {
            let c = compile(pattern, SecretGroup::Auto).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert!(c.lead.is_none(), "{pattern} does not start with `class*`");
        }
    }

    #[test]
    fn builtin_generic_rules_search_from_their_keyword_and_find_what_they_did() {
        let set = RuleSet::builtin();
        let mut led = 0;
        for rule in set.rules() {
            let Ok(c) = rule.compiled() else { continue };
            if c.lead.is_none() {
                continue;
            }
            led += 1;
            let examples = rule.examples.iter().chain(&rule.negative_examples);
            // Every example, also run into a long name, repeated on one line and on many.
            for ex in examples {
                for hay in [
                    ex.clone(),
                    format!("x.y-z_{ex} {ex}"),
                    format!("{ex}\n").repeat(3),
                    format!("a_b{ex}{ex}"),
                ] {
                    let (fast, plain) = both_ways(c, hay.as_bytes());
                    assert_eq!(fast, plain, "{} on {hay:?}", rule.id);
                }
            }
        }
        assert!(led >= 5, "the generic assignment rules take the fast path ({led} do)");
    }
}
