//! ACL policies: Vault's HCL (`path "secret/data/app/*" { capabilities = ["read"] }`) or the same as JSON, deny by
//! default. A request is allowed when the single best-matching path rule of the token's merged policies grants the
//! operation's capability; `deny` on that rule wins over everything.
//!
//! Matching as in Vault: exact paths, a trailing `*` (prefix glob) and `+` (exactly one segment). When several rules
//! match, the most specific wins: the later the first wildcard, the better; then a rule without trailing `*`; then
//! fewer `+`; then the longer pattern; then the lexically larger one.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Operation, VaultError};

/// Capability bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps(u16);

impl Caps {
    pub const CREATE: Caps = Caps(1);
    pub const READ: Caps = Caps(2);
    pub const UPDATE: Caps = Caps(4);
    pub const DELETE: Caps = Caps(8);
    pub const LIST: Caps = Caps(16);
    pub const SUDO: Caps = Caps(32);
    pub const DENY: Caps = Caps(64);
    pub const PATCH: Caps = Caps(128);

    const NAMES: [(&'static str, Caps); 8] = [
        ("create", Caps::CREATE),
        ("read", Caps::READ),
        ("update", Caps::UPDATE),
        ("delete", Caps::DELETE),
        ("list", Caps::LIST),
        ("sudo", Caps::SUDO),
        ("deny", Caps::DENY),
        ("patch", Caps::PATCH),
    ];

    pub fn contains(self, other: Caps) -> bool {
        self.0 & other.0 == other.0
    }

    fn union(self, other: Caps) -> Caps {
        Caps(self.0 | other.0)
    }

    pub fn for_op(op: Operation) -> Caps {
        match op {
            Operation::Read => Caps::READ,
            Operation::Create => Caps::CREATE,
            Operation::Update => Caps::UPDATE,
            Operation::Delete => Caps::DELETE,
            Operation::List => Caps::LIST,
            Operation::Patch => Caps::PATCH,
        }
    }

    pub fn names(self) -> Vec<&'static str> {
        if self.contains(Caps::DENY) {
            return vec!["deny"];
        }
        Caps::NAMES
            .iter()
            .filter(|(_, c)| self.contains(*c))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// One parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// The text as submitted (returned by reads).
    pub raw: String,
    pub paths: Vec<(String, Caps)>,
}

fn bad(name: &str, msg: impl std::fmt::Display) -> VaultError {
    VaultError::BadRequest(format!("failed to parse policy `{name}`: {msg}"))
}

impl Policy {
    /// Parse HCL or JSON policy text.
    pub fn parse(name: &str, text: &str) -> Result<Policy, VaultError> {
        let doc: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| bad(name, format!("invalid JSON: {e}")))?
        } else {
            hcl::from_str(text).map_err(|e| bad(name, format!("invalid HCL: {e}")))?
        };
        let mut paths = Vec::new();
        let blocks: Vec<&Value> = match doc.get("path") {
            Some(Value::Array(list)) => list.iter().collect(),
            Some(v @ Value::Object(_)) => vec![v],
            Some(_) => {
                return Err(bad(
                    name,
                    "`path` must be a block: path \"secret/*\" { capabilities = [...] }",
                ));
            }
            None => vec![],
        };
        for block in blocks {
            let Value::Object(map) = block else {
                return Err(bad(name, "`path` must be a block"));
            };
            for (pattern, body) in map {
                let bodies: Vec<&Value> = match body {
                    Value::Array(a) => a.iter().collect(),
                    v => vec![v],
                };
                let mut caps = Caps::default();
                for body in bodies {
                    caps = caps.union(parse_caps(name, pattern, body)?);
                }
                paths.push((pattern.trim_start_matches('/').to_string(), caps));
            }
        }
        if let Some(Value::Object(map)) = doc.as_object().map(|m| Value::Object(m.clone()))
            && let Some(other) = map.keys().find(|k| *k != "path" && *k != "name")
        {
            return Err(bad(
                name,
                format!("unknown top-level key `{other}` (only `path` blocks are supported)"),
            ));
        }
        Ok(Policy {
            name: name.into(),
            raw: text.into(),
            paths,
        })
    }
}

fn parse_caps(name: &str, pattern: &str, body: &Value) -> Result<Caps, VaultError> {
    let mut caps = Caps::default();
    if let Some(p) = body.get("policy").and_then(Value::as_str) {
        // The pre-0.9 shorthand.
        caps = match p {
            "deny" => Caps::DENY,
            "read" => Caps::READ.union(Caps::LIST),
            "write" => Caps::READ
                .union(Caps::LIST)
                .union(Caps::CREATE)
                .union(Caps::UPDATE)
                .union(Caps::DELETE),
            "sudo" => Caps(0xff & !Caps::DENY.0),
            other => return Err(bad(name, format!("path {pattern:?}: unknown policy value {other:?}"))),
        };
    }
    match body.get("capabilities") {
        Some(Value::Array(list)) => {
            for c in list {
                let s = c.as_str().unwrap_or_default();
                let cap = Caps::NAMES
                    .iter()
                    .find(|(n, _)| *n == s)
                    .map(|(_, c)| *c)
                    .ok_or_else(|| {
                        bad(
                            name,
                            format!(
                                "path {pattern:?}: unknown capability {c} (use create, read, update, patch, delete, list, sudo, deny)"
                            ),
                        )
                    })?;
                caps = caps.union(cap);
            }
        }
        Some(_) => {
            return Err(bad(
                name,
                format!("path {pattern:?}: `capabilities` must be a list of strings"),
            ));
        }
        None if body.get("policy").is_none() => {
            return Err(bad(name, format!("path {pattern:?} has no `capabilities`")));
        }
        None => {}
    }
    Ok(caps)
}

/// Does `pattern` match `path`?
fn matches(pattern: &str, path: &str) -> bool {
    let (pat, glob) = match pattern.strip_suffix('*') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    if !pat.contains('+') {
        return if glob { path.starts_with(pat) } else { path == pat };
    }
    let mut pi = pat.split('/').peekable();
    let mut si = path.split('/').peekable();
    loop {
        match (pi.next(), si.peek()) {
            (None, None) => return true,
            (None, Some(_)) => return false,
            (Some(p), None) => return glob && p.is_empty() && pi.peek().is_none(),
            (Some(p), Some(s)) => {
                let last = pi.peek().is_none();
                if last && glob {
                    // The final pattern segment is a prefix of the path segment; the rest of the path is free.
                    return if p == "+" { true } else { s.starts_with(p) };
                }
                if p != "+" && p != *s {
                    return false;
                }
                si.next();
            }
        }
    }
}

/// Sort key: larger is more specific (Vault's priority order).
fn specificity(pattern: &str) -> (usize, bool, std::cmp::Reverse<usize>, usize, &str) {
    let first_wild = pattern.find(['+', '*']).unwrap_or(usize::MAX);
    (
        first_wild,
        !pattern.ends_with('*'),
        std::cmp::Reverse(pattern.matches('+').count()),
        pattern.len(),
        pattern,
    )
}

/// The merged rules of a token's policies.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    root: bool,
    rules: BTreeMap<String, Caps>,
}

impl Acl {
    pub fn root() -> Acl {
        Acl {
            root: true,
            rules: BTreeMap::new(),
        }
    }

    pub fn new<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> Acl {
        let mut rules: BTreeMap<String, Caps> = BTreeMap::new();
        for p in policies {
            for (pattern, caps) in &p.paths {
                let e = rules.entry(pattern.clone()).or_default();
                *e = e.union(*caps);
            }
        }
        Acl { root: false, rules }
    }

    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The capabilities the best-matching rule grants on `path` (all of them for root).
    pub fn capabilities(&self, path: &str) -> Caps {
        if self.root {
            return Caps(0xff & !Caps::DENY.0);
        }
        self.rules
            .iter()
            .filter(|(p, _)| matches(p, path))
            .max_by(|a, b| specificity(a.0).cmp(&specificity(b.0)))
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }

    /// Whether any rule grants something on `prefix` or below it (what `sys/internal/ui/mounts` shows a token).
    pub fn any_under(&self, prefix: &str) -> bool {
        if self.root {
            return true;
        }
        self.rules.iter().any(|(pattern, caps)| {
            let useful = !caps.contains(Caps::DENY) && *caps != Caps::default();
            let glob_covers = pattern.strip_suffix('*').is_some_and(|stem| prefix.starts_with(stem));
            useful && (pattern.starts_with(prefix) || matches(pattern, prefix) || glob_covers)
        })
    }

    /// Allowed to perform `op` on `path` (with `sudo` when the path needs it)?
    pub fn allows(&self, path: &str, op: Operation, needs_sudo: bool) -> bool {
        if self.root {
            return true;
        }
        let caps = self.capabilities(path);
        if caps.contains(Caps::DENY) {
            return false;
        }
        caps.contains(Caps::for_op(op)) && (!needs_sudo || caps.contains(Caps::SUDO))
    }
}

/// The built-in `default` policy every token gets unless it asks not to: manage itself, nothing else.
pub const DEFAULT_POLICY: &str = r#"# Lets a token look itself up, renew and revoke itself, and check its own capabilities.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}
path "sys/capabilities-self" {
  capabilities = ["update"]
}
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/leases/lookup" {
  capabilities = ["update"]
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
path "secret/data/app/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/data/app/locked" {
  capabilities = ["deny"]
}
path "secret/metadata/+/list" {
  capabilities = ["list"]
}
"#;

    #[test]
    fn hcl_and_json_parse_to_the_same_rules() {
        let h = Policy::parse("app", APP).unwrap();
        let j = Policy::parse(
            "app",
            r#"{"path": {"secret/data/app/*": {"capabilities": ["create", "read", "update"]},
                "secret/data/app/locked": {"capabilities": ["deny"]},
                "secret/metadata/+/list": {"capabilities": ["list"]}}}"#,
        )
        .unwrap();
        let mut a = h.paths.clone();
        let mut b = j.paths.clone();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(a, b);
    }

    #[test]
    fn deny_by_default_glob_segment_and_deny_rules() {
        let acl = Acl::new([&Policy::parse("app", APP).unwrap()]);
        assert!(acl.allows("secret/data/app/db", Operation::Read, false));
        assert!(acl.allows("secret/data/app/deep/er", Operation::Create, false));
        assert!(!acl.allows("secret/data/app/db", Operation::Delete, false));
        assert!(!acl.allows("secret/data/other", Operation::Read, false));
        assert!(
            !acl.allows("secret/data/app/locked", Operation::Read, false),
            "deny on the exact path wins"
        );
        assert!(acl.allows("secret/metadata/team/list", Operation::List, false));
        assert!(
            !acl.allows("secret/metadata/a/b/list", Operation::List, false),
            "+ is one segment"
        );
        assert!(
            !acl.allows("secret/data/app/db", Operation::Read, true),
            "sudo paths need sudo"
        );
        assert!(Acl::root().allows("sys/anything", Operation::Delete, true));
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let p = Policy::parse(
            "p",
            r#"path "secret/*" { capabilities = ["read"] }
               path "secret/data/*" { capabilities = ["list"] }"#,
        )
        .unwrap();
        let acl = Acl::new([&p]);
        assert!(!acl.allows("secret/data/x", Operation::Read, false));
        assert!(acl.allows("secret/other", Operation::Read, false));
    }

    #[test]
    fn errors_name_the_policy_and_the_problem() {
        let e = Policy::parse("bad", r#"path "x" { capabilities = ["fly"] }"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad") && e.contains("fly"), "{e}");
        let e = Policy::parse("bad", "path {").unwrap_err().to_string();
        assert!(e.contains("invalid HCL"), "{e}");
    }
}
