//! What a scan runs with — rules (built-in or from a config), baseline and ignore files — found the same way
//! whatever runs it (`leakstop scan`, the pre-commit hook, the GitHub Action): from the scanned path up to the
//! repository root (the directory holding `.git`), or up to the filesystem root outside a repository. The nearest
//! file of each kind wins, so `scan src` and a scan from a subdirectory use the repository's config.

use std::path::{Path, PathBuf};

use leakstop_rules::{RuleSet, config};

use crate::baseline::Baseline;
use crate::error::ScanError;
use crate::scanner::{ScanOptions, Scanner};

/// Config file names, in order of preference within one directory.
pub const CONFIG_NAMES: &[&str] = &[
    ".leakstop.toml",
    "leakstop.toml",
    ".gitleaks.toml",
    ".github/.gitleaks.toml",
    ".config/gitleaks.toml",
];
/// The baseline committed at the conventional place (`leakstop scan --write-baseline .leakstop-baseline`).
pub const BASELINE_NAME: &str = ".leakstop-baseline";
/// Ignore files of fingerprints.
pub const IGNORE_NAMES: &[&str] = &[".leakstopignore", ".gitleaksignore"];

/// What the caller knows: where the scan looks from and what the user named explicitly.
#[derive(Debug, Clone, Default)]
pub struct SetupRequest {
    /// The scanned directory, a scanned file, or the repository of a git input.
    pub start: PathBuf,
    /// `--config`: used instead of a discovered config.
    pub config: Option<PathBuf>,
    /// `--baseline`: used instead of a discovered `.leakstop-baseline`.
    pub baseline: Option<PathBuf>,
    /// `--ignore-file`: used instead of discovered ignore files.
    pub ignore_files: Vec<PathBuf>,
    /// False when no baseline must apply (writing a new one, or failing on every finding); ignore files still do.
    pub use_baseline: bool,
}

/// The rules and known findings a scan runs with, and what the user should be told about them.
#[derive(Debug, Clone)]
pub struct Setup {
    pub rules: RuleSet,
    /// The config the rules come from (`None`: the built-in rules).
    pub config: Option<PathBuf>,
    pub baseline: Option<Baseline>,
    /// The config's `[scan] min_confidence`, applied when the caller sets none.
    pub min_confidence: Option<leakstop_rules::Confidence>,
    /// One line per file used (`using .gitleaks.toml: 181 rules`), for stderr.
    pub used: Vec<String>,
    /// What a file could not express, or a config that turns the built-in rules off; for stderr.
    pub warnings: Vec<String>,
}

impl Setup {
    /// Finds and loads everything `req` asks for.
    pub fn discover(req: &SetupRequest) -> Result<Setup, ScanError> {
        let mut used = Vec::new();
        let mut warnings = Vec::new();
        let found = Found::search(&req.start);

        let config_path = match &req.config {
            Some(p) if !p.exists() => {
                return Err(ScanError::Missing {
                    what: "config file",
                    path: p.clone(),
                    hint: "check --config",
                });
            }
            Some(p) => Some(p.clone()),
            None => found.config,
        };
        let mut min_confidence = None;
        let rules = match &config_path {
            Some(path) => {
                let cfg = config::load_config(path)?;
                min_confidence = cfg.min_confidence;
                warnings.extend(cfg.notes);
                let own = cfg.rules.rules().iter().filter(|r| !r.builtin).count();
                let builtin = cfg.rules.len() - own;
                used.push(format!(
                    "using {}: {} rule(s) ({own} of its own, {builtin} built-in)",
                    shown(path),
                    cfg.rules.len()
                ));
                cfg.rules
            }
            None => RuleSet::builtin(),
        };

        let is_rule = |id: &str| rules.get(id).is_some();
        let mut all = Baseline::new();
        let mut any = false;
        let baseline_path = match (&req.baseline, req.use_baseline) {
            (_, false) => None,
            (Some(p), true) if !p.exists() => {
                return Err(ScanError::Missing {
                    what: "baseline",
                    path: p.clone(),
                    hint: "create it with `leakstop scan --write-baseline FILE`",
                });
            }
            (Some(p), true) => Some(p.clone()),
            (None, true) => found.baseline,
        };
        if let Some(path) = baseline_path {
            let mut b = Baseline::load(&path, &is_rule)?;
            warnings.extend(b.notes.drain(..).map(|n| format!("{}: {n}", shown(&path))));
            used.push(format!("using baseline {}: {} fingerprint(s)", shown(&path), b.len()));
            all.merge(b);
            any = true;
        }
        let ignore_files = if req.ignore_files.is_empty() {
            found.ignore
        } else {
            for f in &req.ignore_files {
                if !f.exists() {
                    return Err(ScanError::Missing {
                        what: "ignore file",
                        path: f.clone(),
                        hint: "check --ignore-file",
                    });
                }
            }
            req.ignore_files.clone()
        };
        for path in ignore_files {
            let mut b = Baseline::load(&path, &is_rule)?;
            warnings.extend(b.notes.drain(..).map(|n| format!("{}: {n}", shown(&path))));
            used.push(format!("using ignore file {}: {} entries", shown(&path), b.len()));
            all.merge(b);
            any = true;
        }
        Ok(Setup {
            rules,
            min_confidence,
            config: config_path,
            baseline: any.then_some(all),
            used,
            warnings,
        })
    }

    /// The scanner for this set-up; `opts.baseline` is replaced by the discovered one.
    pub fn scanner(self, mut opts: ScanOptions) -> Result<Scanner, ScanError> {
        opts.baseline = self.baseline;
        opts.min_confidence = opts.min_confidence.or(self.min_confidence);
        Scanner::new(self.rules, opts)
    }
}

/// The nearest file of each kind between a start directory and the repository (or filesystem) root.
#[derive(Debug, Default)]
struct Found {
    config: Option<PathBuf>,
    baseline: Option<PathBuf>,
    ignore: Vec<PathBuf>,
}

impl Found {
    fn search(start: &Path) -> Found {
        let mut found = Found::default();
        let near = |p: PathBuf| PathBuf::from(shown(&p));
        let mut ignore_seen = [false; IGNORE_NAMES.len()];
        for dir in search_dirs(start) {
            if found.config.is_none() {
                found.config = CONFIG_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file()).map(near);
            }
            if found.baseline.is_none() {
                found.baseline = Some(dir.join(BASELINE_NAME)).filter(|p| p.is_file()).map(near);
            }
            for (i, name) in IGNORE_NAMES.iter().enumerate() {
                let p = dir.join(name);
                if !ignore_seen[i] && p.is_file() {
                    ignore_seen[i] = true;
                    found.ignore.push(near(p));
                }
            }
        }
        found
    }
}

/// `start` (a file's directory for a file) and its ancestors, up to and including the first that holds `.git`
/// (a directory, or a file in a worktree or submodule); every ancestor when none does.
pub fn search_dirs(start: &Path) -> Vec<PathBuf> {
    let start = if start.as_os_str().is_empty() || start.as_os_str() == "-" {
        Path::new(".")
    } else {
        start
    };
    let abs = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
    let dir = if abs.is_dir() {
        abs
    } else {
        abs.parent().map_or(abs.clone(), Path::to_path_buf)
    };
    let mut out = Vec::new();
    for d in dir.ancestors() {
        out.push(d.to_path_buf());
        if d.join(".git").exists() {
            break;
        }
    }
    out
}

/// A path as the user would type it from the current directory (relative when it is under it).
fn shown(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let rel = std::env::current_dir()
        .ok()
        .and_then(|cwd| abs.strip_prefix(&cwd).ok().map(Path::to_path_buf));
    crate::walk::display_path(rel.as_deref().unwrap_or(&abs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }

    #[test]
    fn search_stops_at_the_repository_root() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("outer/repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("src/deep")).unwrap();
        let dirs = search_dirs(&repo.join("src/deep"));
        let abs = std::path::absolute(&repo).unwrap();
        assert_eq!(dirs.last().unwrap(), &abs, "{dirs:?}");
        assert_eq!(dirs.len(), 3);
        // A file starts from its directory.
        touch(&repo.join("src/deep/a.py"));
        assert_eq!(search_dirs(&repo.join("src/deep/a.py")).len(), 3);
    }

    #[test]
    fn nearest_file_of_each_kind_wins_and_files_above_the_repository_are_not_used() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        touch(&t.path().join(".leakstopignore")); // outside the repository: not used
        touch(&repo.join(".gitleaks.toml"));
        touch(&repo.join("src/.leakstop.toml"));
        touch(&repo.join(".leakstop-baseline"));
        touch(&repo.join(".gitleaksignore"));
        std::fs::create_dir_all(repo.join("src/lib")).unwrap();
        let f = Found::search(&repo.join("src/lib"));
        assert!(f.config.unwrap().ends_with("src/.leakstop.toml"));
        assert!(f.baseline.unwrap().ends_with("repo/.leakstop-baseline"));
        assert_eq!(f.ignore.len(), 1);
        assert!(f.ignore[0].ends_with("repo/.gitleaksignore"));
        let f = Found::search(&repo);
        assert!(f.config.unwrap().ends_with("repo/.gitleaks.toml"));
    }
}
