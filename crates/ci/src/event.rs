//! What a GitHub Actions event added, read from the event payload (`GITHUB_EVENT_PATH`).
//!
//! Only the fields leakstop needs are parsed, with GitHub's names; everything else in the payload is ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The all-zero id GitHub sends for "no commit" (`before` of a new branch, `after` of a deleted one).
const NULL_SHA: &str = "0000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("GITHUB_EVENT_PATH is not set: run inside a GitHub Actions job, or pass --event-path FILE")]
    NoEventPath,
    #[error("reading the event payload {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the {event} event payload {path} is not what GitHub sends: {source}")]
    Parse {
        event: String,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the {event} event payload {path} has no {field}")]
    Missing {
        event: String,
        path: PathBuf,
        field: &'static str,
    },
}

/// What to scan for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Commits reachable from `head` but not from `base` (push: before..after; pull request: base..head).
    /// `depth_hint` is how many commits the event says it carries, used to deepen a shallow checkout.
    Range {
        base: String,
        head: String,
        depth_hint: usize,
    },
    /// A new branch: the listed pushed commits (oldest first); `head` is the branch tip.
    Commits { commits: Vec<String>, head: String },
    /// Events that add no commits (schedule, workflow_dispatch…): the checked-out tree.
    Tree,
    /// Nothing was added (a branch deletion, a tag pointing at an existing commit).
    Nothing { reason: String },
}

#[derive(Deserialize)]
struct PushPayload {
    before: Option<String>,
    after: Option<String>,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    commits: Vec<PushCommit>,
}

#[derive(Deserialize)]
struct PushCommit {
    id: String,
}

#[derive(Deserialize)]
struct PrPayload {
    pull_request: Option<PullRequest>,
}

#[derive(Deserialize)]
struct PullRequest {
    base: GitRef,
    head: GitRef,
    #[serde(default)]
    commits: Option<usize>,
}

#[derive(Deserialize)]
struct GitRef {
    sha: String,
}

/// Reads the payload at `path` for event `event` (the value of `GITHUB_EVENT_NAME`).
pub fn plan_from_file(event: &str, path: &Path) -> Result<Plan, EventError> {
    let text = std::fs::read(path).map_err(|source| EventError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    plan(event, &text, path)
}

fn plan(event: &str, payload: &[u8], path: &Path) -> Result<Plan, EventError> {
    let parse_err = |source| EventError::Parse {
        event: event.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let missing = |field| EventError::Missing {
        event: event.to_string(),
        path: path.to_path_buf(),
        field,
    };
    match event {
        "push" => {
            let p: PushPayload = serde_json::from_slice(payload).map_err(parse_err)?;
            let after = p.after.ok_or_else(|| missing("after"))?;
            if p.deleted || after == NULL_SHA {
                return Ok(Plan::Nothing {
                    reason: "the push deleted a ref".into(),
                });
            }
            let before = p.before.unwrap_or_else(|| NULL_SHA.to_string());
            if p.created || before == NULL_SHA {
                let commits: Vec<String> = p.commits.into_iter().map(|c| c.id).collect();
                if commits.is_empty() {
                    return Ok(Plan::Nothing {
                        reason: "the new ref points at commits that were already pushed".into(),
                    });
                }
                return Ok(Plan::Commits { commits, head: after });
            }
            Ok(Plan::Range {
                base: before,
                head: after,
                depth_hint: p.commits.len().max(1),
            })
        }
        "pull_request" | "pull_request_target" | "pull_request_review" | "pull_request_review_comment" => {
            let p: PrPayload = serde_json::from_slice(payload).map_err(parse_err)?;
            let pr = p.pull_request.ok_or_else(|| missing("pull_request"))?;
            Ok(Plan::Range {
                base: pr.base.sha,
                head: pr.head.sha,
                depth_hint: pr.commits.unwrap_or(1).max(1),
            })
        }
        _ => Ok(Plan::Tree),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(event: &str, json: serde_json::Value) -> Plan {
        plan(event, json.to_string().as_bytes(), Path::new("event.json")).unwrap()
    }

    #[test]
    fn push_to_an_existing_branch_is_a_range() {
        let plan = p(
            "push",
            serde_json::json!({"ref": "refs/heads/main", "before": "a".repeat(40), "after": "b".repeat(40),
                "created": false, "deleted": false, "forced": true, "commits": [{"id": "b".repeat(40)}]}),
        );
        assert_eq!(
            plan,
            Plan::Range {
                base: "a".repeat(40),
                head: "b".repeat(40),
                depth_hint: 1
            }
        );
    }

    #[test]
    fn new_branch_scans_the_pushed_commits_and_deletion_nothing() {
        let plan = p(
            "push",
            serde_json::json!({"before": NULL_SHA, "after": "c".repeat(40), "created": true,
                "commits": [{"id": "b".repeat(40)}, {"id": "c".repeat(40)}]}),
        );
        assert_eq!(
            plan,
            Plan::Commits {
                commits: vec!["b".repeat(40), "c".repeat(40)],
                head: "c".repeat(40)
            }
        );
        let plan = p(
            "push",
            serde_json::json!({"before": "a".repeat(40), "after": NULL_SHA, "deleted": true}),
        );
        assert!(matches!(plan, Plan::Nothing { .. }));
    }

    #[test]
    fn pull_request_uses_base_and_head_shas() {
        let plan = p(
            "pull_request",
            serde_json::json!({"action": "opened", "number": 7, "pull_request": {
                "base": {"ref": "main", "sha": "1".repeat(40)}, "head": {"ref": "f", "sha": "2".repeat(40)},
                "commits": 3}}),
        );
        assert_eq!(
            plan,
            Plan::Range {
                base: "1".repeat(40),
                head: "2".repeat(40),
                depth_hint: 3
            }
        );
    }

    #[test]
    fn malformed_payload_names_the_file() {
        let err = plan("pull_request", b"{\"pull_request\": 5}", Path::new("/tmp/ev.json")).unwrap_err();
        assert!(err.to_string().contains("/tmp/ev.json"), "{err}");
        assert_eq!(p("schedule", serde_json::json!({})), Plan::Tree);
    }
}
