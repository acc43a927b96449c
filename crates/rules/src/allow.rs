use std::sync::OnceLock;

use regex::Regex;
use regex::bytes::Regex as BytesRegex;

/// An allowlist regex. The built-in rules' ones compile on first use, as their detection regexes do: a few hundred
/// of them would otherwise be compiled on every start, which is most of what a pre-commit scan costs. Users' ones
/// are compiled when loaded so a mistake is reported at once.
#[derive(Debug, Clone)]
pub struct AllowRegex {
    source: String,
    compiled: OnceLock<Option<BytesRegex>>,
}

impl AllowRegex {
    /// A regex compiled on first use; `rules check` compiles every built-in one, so none is found invalid here.
    pub(crate) fn lazy(source: String) -> AllowRegex {
        AllowRegex {
            source,
            compiled: OnceLock::new(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the regex matches; an invalid one (never in a validated set) matches nothing.
    pub fn is_match(&self, haystack: &[u8]) -> bool {
        self.compiled
            .get_or_init(|| BytesRegex::new(&self.source).ok())
            .as_ref()
            .is_some_and(|r| r.is_match(haystack))
    }
}

impl From<BytesRegex> for AllowRegex {
    fn from(regex: BytesRegex) -> AllowRegex {
        AllowRegex {
            source: regex.as_str().to_string(),
            compiled: OnceLock::from(Some(regex)),
        }
    }
}

/// What an allowlist's `regexes` are matched against (gitleaks' `regexTarget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegexTarget {
    #[default]
    Secret,
    /// The whole rule match.
    Match,
    /// The line the secret is on.
    Line,
}

/// How an allowlist's criteria combine (gitleaks' `condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllowCondition {
    /// Any one criterion allows the finding.
    #[default]
    Or,
    /// Every criterion present must hold.
    And,
}

/// Findings this list lets through. `more` holds further independent lists (gitleaks' `[[allowlists]]`): a finding
/// allowed by any of them is allowed.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    pub regexes: Vec<AllowRegex>,
    /// Lowercase; a secret containing one is allowed.
    pub stopwords: Vec<String>,
    pub paths: Vec<Regex>,
    pub commits: Vec<String>,
    pub regex_target: RegexTarget,
    pub condition: AllowCondition,
    pub more: Vec<Allowlist>,
}

impl Allowlist {
    pub fn is_empty(&self) -> bool {
        self.regexes.is_empty()
            && self.stopwords.is_empty()
            && self.paths.is_empty()
            && self.commits.is_empty()
            && self.more.iter().all(Allowlist::is_empty)
    }

    fn has_content_criteria(&self) -> bool {
        !self.regexes.is_empty() || !self.stopwords.is_empty()
    }

    fn criteria_count(&self) -> usize {
        usize::from(!self.regexes.is_empty() || !self.stopwords.is_empty())
            + usize::from(!self.paths.is_empty())
            + usize::from(!self.commits.is_empty())
    }

    fn secret_hit(&self, secret: &[u8]) -> bool {
        if self.regex_target == RegexTarget::Secret && self.regexes.iter().any(|r| r.is_match(secret)) {
            return true;
        }
        self.stopword_hit(secret)
    }

    fn stopword_hit(&self, secret: &[u8]) -> bool {
        if self.stopwords.is_empty() {
            return false;
        }
        let lower: Vec<u8> = secret.iter().map(u8::to_ascii_lowercase).collect();
        self.stopwords
            .iter()
            .any(|w| !w.is_empty() && lower.windows(w.len()).any(|x| x == w.as_bytes()))
    }

    /// Whether the secret alone allows the finding (regexes targeting the secret, stopwords). For an AND list this
    /// only holds when content is its only criterion.
    pub fn allows_secret(&self, secret: &[u8]) -> bool {
        let own = match self.condition {
            AllowCondition::Or => self.secret_hit(secret),
            AllowCondition::And => {
                self.criteria_count() == 1
                    && self.has_content_criteria()
                    && self.regex_target == RegexTarget::Secret
                    && self.secret_hit(secret)
            }
        };
        own || self.more.iter().any(|m| m.allows_secret(secret))
    }

    /// Whether the path alone allows every finding in it.
    pub fn allows_path(&self, path: &str) -> bool {
        let hit = self.paths.iter().any(|r| r.is_match(path));
        let own = match self.condition {
            AllowCondition::Or => hit,
            AllowCondition::And => hit && self.criteria_count() == 1,
        };
        own || self.more.iter().any(|m| m.allows_path(path))
    }

    /// Whether the commit alone allows every finding in it.
    pub fn allows_commit(&self, commit: &str) -> bool {
        let hit = self.commits.iter().any(|c| commit_matches(c, commit));
        let own = match self.condition {
            AllowCondition::Or => hit,
            AllowCondition::And => hit && self.criteria_count() == 1,
        };
        own || self.more.iter().any(|m| m.allows_commit(commit))
    }

    /// The complete decision when everything about a finding is known: the secret, the whole match, its line, its
    /// path and (for history scans) its commit. Handles AND lists and `regexTarget = match|line`.
    pub fn allows_finding(&self, secret: &[u8], matched: &[u8], line: &[u8], path: &str, commit: Option<&str>) -> bool {
        let regex_subject = match self.regex_target {
            RegexTarget::Secret => secret,
            RegexTarget::Match => matched,
            RegexTarget::Line => line,
        };
        let content = if self.regexes.is_empty() && self.stopwords.is_empty() {
            None
        } else {
            Some(self.regexes.iter().any(|r| r.is_match(regex_subject)) || self.stopword_hit(secret))
        };
        let path_hit = (!self.paths.is_empty()).then(|| self.paths.iter().any(|r| r.is_match(path)));
        let commit_hit = (!self.commits.is_empty())
            .then(|| commit.is_some_and(|c| self.commits.iter().any(|x| commit_matches(x, c))));
        let parts = [content, path_hit, commit_hit];
        let own = match self.condition {
            AllowCondition::Or => parts.contains(&Some(true)),
            AllowCondition::And => parts.iter().any(Option::is_some) && parts.iter().all(|p| *p != Some(false)),
        };
        own || self
            .more
            .iter()
            .any(|m| m.allows_finding(secret, matched, line, path, commit))
    }

    /// Whether the list needs the match or line (not just the secret) to decide; `Rule::find_iter` then applies it.
    pub(crate) fn needs_context(&self) -> bool {
        (self.regex_target != RegexTarget::Secret && !self.regexes.is_empty())
            || self.more.iter().any(Allowlist::needs_context)
    }
}

/// Commit ids may be given abbreviated (at least 7 hex digits), as in `git log --oneline`.
fn commit_matches(allowed: &str, commit: &str) -> bool {
    let allowed = allowed.trim();
    allowed.len() >= 7 && commit.len() >= allowed.len() && commit[..allowed.len()].eq_ignore_ascii_case(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn and_condition_needs_every_criterion() {
        let list = Allowlist {
            regexes: vec![BytesRegex::new("^test").expect("valid").into()],
            paths: vec![Regex::new(r"fixtures/").expect("valid")],
            condition: AllowCondition::And,
            ..Allowlist::default()
        };
        assert!(
            !list.allows_path("fixtures/a.txt"),
            "a path alone must not allow an AND list"
        );
        assert!(!list.allows_secret(b"test123"));
        assert!(list.allows_finding(b"test123", b"", b"", "fixtures/a.txt", None));
        assert!(!list.allows_finding(b"prod123", b"", b"", "fixtures/a.txt", None));
    }

    #[test]
    fn lazy_regexes_allow_as_compiled_ones_do() {
        let list = Allowlist {
            regexes: vec![AllowRegex::lazy("(?i)^example".into())],
            ..Allowlist::default()
        };
        assert!(list.allows_secret(b"EXAMPLEkey123"));
        assert!(!list.allows_secret(b"realkey123"));
        let broken = Allowlist {
            regexes: vec![AllowRegex::lazy("(unclosed".into())],
            ..Allowlist::default()
        };
        assert!(!broken.allows_secret(b"(unclosed"), "an invalid regex allows nothing");
    }

    #[test]
    fn abbreviated_commits_match() {
        let list = Allowlist {
            commits: vec!["a1b2c3d".into()],
            ..Allowlist::default()
        };
        assert!(list.allows_commit("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"));
        assert!(!list.allows_commit("b1b2c3d4e5f60718293a4b5c6d7e8f9012345678"));
    }
}
