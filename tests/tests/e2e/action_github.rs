//! The GitHub Action's scan step (`leakstop github-action`) run in an emulated Actions environment: a shallow
//! `actions/checkout`-style clone, real-shaped push and pull_request payloads, and the runner's files.

use std::path::{Path, PathBuf};

use leakstop_tests::cmd::{Run, leakstop};
use leakstop_tests::gitcli::{commit_file, git, init_repo};
use leakstop_tests::{secrets, tempdir};

struct Job {
    _tmp: tempfile::TempDir,
    origin: PathBuf,
    workspace: PathBuf,
    output: PathBuf,
    summary: PathBuf,
    event: PathBuf,
}

/// An "origin" repository with `main` (one clean commit) and the commits a test adds.
fn origin() -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempdir();
    let origin = init_repo(&tmp.path().join("origin"));
    let base = commit_file(&origin, "app/main.py", "print('hello')\n", "Initial commit");
    (tmp, origin, base)
}

/// A depth-1 clone of `sha`, as actions/checkout makes by default.
fn checkout(tmp: tempfile::TempDir, origin: PathBuf, sha: &str) -> Job {
    let workspace = tmp.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    git(&workspace, &["init", "-q"]);
    git(
        &workspace,
        &["remote", "add", "origin", &format!("file://{}", origin.display())],
    );
    git(&workspace, &["fetch", "-q", "--no-tags", "--depth=1", "origin", sha]);
    git(&workspace, &["checkout", "-q", "--detach", sha]);
    assert_eq!(git(&workspace, &["rev-parse", "--is-shallow-repository"]), "true");
    let output = tmp.path().join("github_output");
    let summary = tmp.path().join("step_summary");
    let event = tmp.path().join("event.json");
    Job {
        _tmp: tmp,
        origin,
        workspace,
        output,
        summary,
        event,
    }
}

impl Job {
    fn run(&self, event_name: &str, payload: serde_json::Value, extra_env: &[(&str, &str)]) -> Run {
        std::fs::write(&self.event, serde_json::to_vec_pretty(&payload).unwrap()).unwrap();
        leakstop(["github-action"])
            .dir(&self.workspace)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_EVENT_NAME", event_name)
            .env("GITHUB_EVENT_PATH", &self.event)
            .env("GITHUB_WORKSPACE", &self.workspace)
            .env("GITHUB_OUTPUT", &self.output)
            .env("GITHUB_STEP_SUMMARY", &self.summary)
            .env("INPUT_FAIL_ON", "new")
            .env("INPUT_SARIF_FILE", "leakstop.sarif")
            .envs(extra_env.iter().copied())
            .run()
    }

    fn outputs(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    fn summary(&self) -> String {
        std::fs::read_to_string(&self.summary).unwrap_or_default()
    }

    fn sarif(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.workspace.join("leakstop.sarif")).expect("SARIF report written");
        serde_json::from_str(&text).expect("SARIF is JSON")
    }
}

fn push_payload(before: &str, after: &str, commits: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": format!("https://github.com/acme/app/compare/{}...{}", &before[..12], &after[..12]),
        "commits": commits.iter().map(|id| serde_json::json!({
            "id": id, "tree_id": "0".repeat(40), "distinct": true, "message": "change",
            "timestamp": "2026-11-22T10:00:00Z", "url": format!("https://github.com/acme/app/commit/{id}"),
            "author": {"name": "Ada Tester", "email": "ada@example.test", "username": "ada"},
            "committer": {"name": "Ada Tester", "email": "ada@example.test", "username": "ada"},
            "added": [], "removed": [], "modified": []
        })).collect::<Vec<_>>(),
        "head_commit": null,
        "repository": {"id": 1296269, "name": "app", "full_name": "acme/app", "default_branch": "main"},
        "pusher": {"name": "ada", "email": "ada@example.test"},
        "sender": {"login": "ada", "id": 1, "type": "User"}
    })
}

fn text(out: &Run) -> (String, String) {
    (out.stdout.clone(), out.stderr.clone())
}

#[test]
fn push_with_a_secret_fails_annotates_summarizes_and_writes_sarif() {
    let (tmp, origin, base) = origin();
    let c2 = commit_file(&origin, "docs/notes.md", "Some notes\n", "Add notes");
    let token = secrets::github_pat();
    let c3 = commit_file(
        &origin,
        "config/prod.env",
        &format!("# prod\nDEBUG=0\nGH_TOKEN={token}\n"),
        "Add prod config",
    );
    let job = checkout(tmp, origin, &c3);

    let out = job.run("push", push_payload(&base, &c3, &[&c2, &c3]), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("::error file=config/prod.env,line=3,col=10,"),
        "no annotation:\n{stdout}"
    );
    assert!(stdout.contains("title=leakstop%3A github"), "{stdout}");
    assert!(
        !stdout.contains(&token) && !stderr.contains(&token),
        "secret in the job log"
    );

    let outputs = job.outputs();
    assert!(outputs.contains("findings=1\n"), "{outputs}");
    assert!(outputs.contains("sarif=leakstop.sarif\n"), "{outputs}");
    let summary = job.summary();
    assert!(summary.contains("| `config/prod.env` | 3 |"), "{summary}");
    assert!(summary.contains(&c3[..12]), "summary names the commit: {summary}");
    assert!(!summary.contains(&token));

    let sarif = job.sarif();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{sarif}");
    let loc = &results[0]["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "config/prod.env");
    assert_eq!(loc["region"]["startLine"], 3);
    assert!(!sarif.to_string().contains(&token));
}

#[test]
fn only_what_the_push_added_is_scanned() {
    let (tmp, origin, _) = origin();
    // A secret that was already on main before this push is not this push's finding.
    let old = commit_file(
        &origin,
        "legacy.env",
        &format!("TOKEN={}\n", secrets::github_pat()),
        "old leak",
    );
    let new = commit_file(&origin, "app/util.py", "def f():\n    return 1\n", "clean change");
    let job = checkout(tmp, origin, &new);
    let out = job.run("push", push_payload(&old, &new, &[&new]), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(job.outputs().contains("findings=0\n"), "{}", job.outputs());
    assert!(job.summary().contains("No secrets found"), "{}", job.summary());
    assert_eq!(job.sarif()["runs"][0]["results"].as_array().unwrap().len(), 0);
}

#[test]
fn pull_request_scans_base_to_head_from_a_shallow_checkout() {
    let (tmp, origin, base) = origin();
    git(&origin, &["checkout", "-q", "-b", "feature"]);
    let (key_id, key_secret) = secrets::aws_key_pair();
    commit_file(&origin, "infra/a.tf", "resource \"x\" \"y\" {}\n", "tf");
    let head = commit_file(
        &origin,
        "infra/creds.tf",
        &format!("provider \"aws\" {{\n  access_key = \"{key_id}\"\n  secret_key = \"{key_secret}\"\n}}\n"),
        "add creds",
    );
    // main moves on after the branch point, as it does.
    git(&origin, &["checkout", "-q", "main"]);
    let main_tip = commit_file(&origin, "CHANGELOG.md", "v2\n", "release");
    let job = checkout(tmp, origin, &head);
    let payload = serde_json::json!({
        "action": "synchronize",
        "number": 42,
        "pull_request": {
            "number": 42, "state": "open", "commits": 2,
            "base": {"ref": "main", "sha": main_tip, "repo": {"full_name": "acme/app"}},
            "head": {"ref": "feature", "sha": head, "repo": {"full_name": "acme/app"}}
        },
        "repository": {"full_name": "acme/app"}
    });
    let out = job.run("pull_request", payload.clone(), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("::error file=infra/creds.tf,line=2,"), "{stdout}");
    assert!(!stdout.contains(&key_secret) && !stdout.contains(&key_id));
    let _ = base;

    // fail-on: none reports without failing the job.
    let out = job.run("pull_request", payload, &[("INPUT_FAIL_ON", "none")]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

#[test]
fn a_missing_event_payload_is_a_usage_error() {
    let (tmp, origin, base) = origin();
    let job = checkout(tmp, origin, &base);
    let out = leakstop(["github-action"])
        .dir(&job.workspace)
        .env("GITHUB_EVENT_NAME", "push")
        .env("GITHUB_EVENT_PATH", job.workspace.join("nope.json"))
        .run();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nope.json"));
    let _: &Path = &job.origin;
}

#[test]
fn the_action_finds_the_repository_baseline_as_scan_does() {
    let (tmp, origin, base) = origin();
    let token = secrets::github_pat();
    let content = format!("GH_TOKEN={token}\n");
    // A baseline accepting this secret, written by `leakstop scan --write-baseline` as a user would.
    let scratch = tempdir();
    std::fs::write(scratch.path().join("prod.env"), &content).unwrap();
    let out = leakstop(["scan", "-q", "--write-baseline", "baseline.json", "."])
        .dir(scratch.path())
        .run();
    assert!(out.success(), "{}", out.stderr);
    let baseline = std::fs::read_to_string(scratch.path().join("baseline.json")).unwrap();
    let c2 = commit_file(&origin, ".leakstop-baseline", &baseline, "Accept a known secret");
    let c3 = commit_file(&origin, "config/prod.env", &content, "Add prod config");
    let job = checkout(tmp, origin, &c3);

    let out = job.run("push", push_payload(&base, &c3, &[&c2, &c3]), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("using baseline .leakstop-baseline: 1 fingerprint(s)"),
        "{stderr}"
    );

    // fail-on: any counts accepted findings too: no baseline then.
    let out = job.run(
        "push",
        push_payload(&base, &c3, &[&c2, &c3]),
        &[("INPUT_FAIL_ON", "any")],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stderr.contains("using baseline"), "{stderr}");
}
