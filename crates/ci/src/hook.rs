//! Installing and removing the native git pre-commit hook.
//!
//! The hook is a few lines of POSIX sh (`hooks/pre-commit` in this repository) that runs `leakstop hook run`.
//! Installing never destroys what a repository already has: an existing hook is kept under
//! `pre-commit.leakstop-chained` and run first, and `uninstall` puts it back. Hook managers that own the hook
//! file (the pre-commit framework, husky) are refused with the one line to add to their configuration instead,
//! because overwriting their generated hook would silently break them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The hook script, with `@LEAKSTOP_BIN@` standing for the installing binary's path.
const HOOK_TEMPLATE: &str = include_str!("../../../hooks/pre-commit");
/// Marks a hook file as ours, so reinstall and uninstall never touch anyone else's.
const MARKER: &str = "leakstop-managed-hook";
/// Where an existing hook is kept while leakstop's runs in front of it.
pub const CHAINED_NAME: &str = "pre-commit.leakstop-chained";

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{path} is not inside a git repository: run this in your repository, or pass --repo PATH")]
    NotARepo { path: PathBuf },
    #[error("{path} is a bare repository: nothing is committed there, so it needs no pre-commit hook")]
    Bare { path: PathBuf },
    #[error(
        "{hook} is managed by {manager}; leakstop will not overwrite it. {advice}\n(or run with --force to chain \
         that hook behind leakstop anyway)"
    )]
    Managed {
        hook: PathBuf,
        manager: &'static str,
        advice: &'static str,
    },
    #[error("{chained} already exists (left by an earlier install?); move it away or run with --force to replace it")]
    ChainOccupied { chained: PathBuf },
    #[error("{hook} was not installed by leakstop; leaving it alone")]
    NotOurs { hook: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("reading git configuration of {path}: {source}")]
    Git { path: PathBuf, source: git2::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HookError + '_ {
    move |source| HookError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `install` did, for the message the user sees.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// A fresh hook; `chained` names the earlier hook now run in front of leakstop, if there was one.
    New { hook: PathBuf, chained: Option<PathBuf> },
    /// leakstop's hook was already there and has been refreshed (e.g. the binary moved).
    Updated { hook: PathBuf },
}

/// What `uninstall` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Uninstalled {
    Removed { hook: PathBuf, restored: Option<PathBuf> },
    NotInstalled { hook: PathBuf },
}

/// The directory git runs hooks from for the repository containing `start`: `core.hooksPath` when set
/// (relative to the work tree, as git resolves it), else `<git common dir>/hooks` (shared by worktrees).
pub fn hooks_dir(start: &Path) -> Result<PathBuf, HookError> {
    let repo = git2::Repository::discover(start).map_err(|_| HookError::NotARepo {
        path: start.to_path_buf(),
    })?;
    let Some(workdir) = repo.workdir().map(Path::to_path_buf) else {
        return Err(HookError::Bare {
            path: repo.path().to_path_buf(),
        });
    };
    let config = repo.config().map_err(|source| HookError::Git {
        path: workdir.clone(),
        source,
    })?;
    match config.get_path("core.hooksPath") {
        Ok(p) if p.is_absolute() => Ok(p),
        Ok(p) => Ok(workdir.join(p)),
        Err(_) => Ok(repo.commondir().join("hooks")),
    }
}

/// The hook script for a given leakstop binary.
pub fn hook_script(leakstop_bin: &Path) -> String {
    HOOK_TEMPLATE.replace("@LEAKSTOP_BIN@", &shell_quote(&leakstop_bin.to_string_lossy()))
}

/// Installs the pre-commit hook for the repository containing `start`.
pub fn install(start: &Path, leakstop_bin: &Path, force: bool) -> Result<Installed, HookError> {
    let dir = hooks_dir(start)?;
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let hook = dir.join("pre-commit");
    let chained = dir.join(CHAINED_NAME);
    let script = hook_script(leakstop_bin);

    let existing = match fs::read(&hook) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(HookError::Io { path: hook, source: e }),
    };
    let Some(existing) = existing else {
        write_executable(&hook, &script)?;
        return Ok(Installed::New { hook, chained: None });
    };
    if existing.contains(MARKER) {
        write_executable(&hook, &script)?;
        return Ok(Installed::Updated { hook });
    }
    if !force {
        if let Some((manager, advice)) = hook_manager(&existing) {
            return Err(HookError::Managed { hook, manager, advice });
        }
        if chained.exists() {
            return Err(HookError::ChainOccupied { chained });
        }
    }
    fs::rename(&hook, &chained).map_err(io(&hook))?;
    if let Err(e) = write_executable(&hook, &script) {
        // Put the user's hook back rather than leave the repository with none.
        let _ = fs::rename(&chained, &hook);
        return Err(e);
    }
    Ok(Installed::New {
        hook,
        chained: Some(chained),
    })
}

/// Removes leakstop's hook and restores the hook it chained, if any.
pub fn uninstall(start: &Path) -> Result<Uninstalled, HookError> {
    let dir = hooks_dir(start)?;
    let hook = dir.join("pre-commit");
    let chained = dir.join(CHAINED_NAME);
    let existing = match fs::read(&hook) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Uninstalled::NotInstalled { hook }),
        Err(e) => return Err(HookError::Io { path: hook, source: e }),
    };
    if !existing.contains(MARKER) {
        return Err(HookError::NotOurs { hook });
    }
    if chained.exists() {
        // rename over our hook: atomic, so there is never a moment without the user's hook.
        fs::rename(&chained, &hook).map_err(io(&chained))?;
        Ok(Uninstalled::Removed {
            hook: hook.clone(),
            restored: Some(hook),
        })
    } else {
        fs::remove_file(&hook).map_err(io(&hook))?;
        Ok(Uninstalled::Removed { hook, restored: None })
    }
}

/// Recognizes hook files generated by hook managers, with what to do instead.
fn hook_manager(script: &str) -> Option<(&'static str, &'static str)> {
    if script.contains("File generated by pre-commit") || script.contains("pre-commit.com") {
        return Some((
            "the pre-commit framework",
            "Add leakstop to .pre-commit-config.yaml instead (hook id `leakstop` or `leakstop-system`, see the README).",
        ));
    }
    if script.contains("husky") {
        return Some((
            "husky",
            "Add the line `leakstop hook run` to .husky/pre-commit instead.",
        ));
    }
    if script.contains("lefthook") {
        return Some((
            "lefthook",
            "Add a `leakstop hook run` command under pre-commit in lefthook.yml instead.",
        ));
    }
    None
}

/// Writes through a temporary file and a rename, so a failed write never leaves a half-written hook.
fn write_executable(path: &Path, content: &str) -> Result<(), HookError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".pre-commit.leakstop-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        set_executable(&tmp)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Single-quotes a string for POSIX sh.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init(dir.path()).unwrap();
        dir
    }

    #[test]
    fn installs_then_uninstalls_cleanly() {
        let dir = repo();
        let bin = Path::new("/opt/leak stop/bin/leakstop");
        let out = install(dir.path(), bin, false).unwrap();
        let hook = dir.path().join(".git/hooks/pre-commit");
        assert_eq!(
            out,
            Installed::New {
                hook: hook.clone(),
                chained: None
            }
        );
        let text = fs::read_to_string(&hook).unwrap();
        assert!(text.contains("leakstop='/opt/leak stop/bin/leakstop'"), "{text}");
        assert!(!text.contains("@LEAKSTOP_BIN@"));
        assert_eq!(
            install(dir.path(), bin, false).unwrap(),
            Installed::Updated { hook: hook.clone() }
        );
        assert_eq!(
            uninstall(dir.path()).unwrap(),
            Uninstalled::Removed {
                hook: hook.clone(),
                restored: None
            }
        );
        assert!(!hook.exists());
        assert_eq!(uninstall(dir.path()).unwrap(), Uninstalled::NotInstalled { hook });
    }

    #[test]
    fn chains_an_existing_hook_and_restores_it() {
        let dir = repo();
        let hook = dir.path().join(".git/hooks/pre-commit");
        fs::create_dir_all(hook.parent().unwrap()).unwrap();
        fs::write(&hook, "#!/bin/sh\necho mine\n").unwrap();
        let out = install(dir.path(), Path::new("/usr/bin/leakstop"), false).unwrap();
        let chained = dir.path().join(".git/hooks").join(CHAINED_NAME);
        assert_eq!(
            out,
            Installed::New {
                hook: hook.clone(),
                chained: Some(chained.clone())
            }
        );
        assert_eq!(fs::read_to_string(&chained).unwrap(), "#!/bin/sh\necho mine\n");
        uninstall(dir.path()).unwrap();
        assert_eq!(fs::read_to_string(&hook).unwrap(), "#!/bin/sh\necho mine\n");
        assert!(!chained.exists());
    }

    #[test]
    fn respects_core_hooks_path() {
        let dir = repo();
        let repo = git2::Repository::open(dir.path()).unwrap();
        repo.config().unwrap().set_str("core.hooksPath", ".githooks").unwrap();
        install(dir.path(), Path::new("/usr/bin/leakstop"), false).unwrap();
        assert!(dir.path().join(".githooks/pre-commit").exists());
        assert!(!dir.path().join(".git/hooks/pre-commit").exists());
    }

    #[test]
    fn refuses_hook_managers_and_foreign_uninstall() {
        let dir = repo();
        let hook = dir.path().join(".git/hooks/pre-commit");
        fs::create_dir_all(hook.parent().unwrap()).unwrap();
        fs::write(
            &hook,
            "#!/usr/bin/env bash\n# File generated by pre-commit: https://pre-commit.com\n",
        )
        .unwrap();
        let err = install(dir.path(), Path::new("/usr/bin/leakstop"), false).unwrap_err();
        assert!(err.to_string().contains(".pre-commit-config.yaml"), "{err}");
        assert!(matches!(uninstall(dir.path()), Err(HookError::NotOurs { .. })));
        // --force chains it instead.
        assert!(matches!(
            install(dir.path(), Path::new("/usr/bin/leakstop"), true),
            Ok(Installed::New { .. })
        ));
    }

    #[test]
    fn outside_a_repository_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = install(dir.path(), Path::new("/usr/bin/leakstop"), false).unwrap_err();
        assert!(err.to_string().contains("not inside a git repository"), "{err}");
    }
}
