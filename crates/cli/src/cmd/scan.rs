//! `leakstop scan`: files, directories and stdin (`-`), git history (`--git`), the staged changes (`--staged`, what
//! the pre-commit hook runs) and a commit range (`--range BASE..HEAD`).
//!
//! Flow: the set-up (config, rules, baseline and ignore files, found from the scanned place up to the repository
//! root) -> the Scanner -> ONE place that picks the input source (`collect`) -> a shared tail (`finish`: notes on
//! skipped files, --write-baseline, report, summary, exit code). A new input is a flag in `ScanArgs` and one arm in
//! `collect`.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use leakstop_scan::report::{self, Format, ReportOptions};
use leakstop_scan::{Baseline, Finding, ScanOptions, ScanSummary, Scanner, Setup, SetupRequest};

#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// Files or directories to scan (`-` reads standard input). Default: the current directory.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short = 'f', default_value = "text", value_parser = ["text", "json", "jsonl", "sarif"])]
    pub format: String,
    /// Write the report to FILE (atomically) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Show secrets in clear in text/json/jsonl reports (SARIF stays redacted: it is meant to be uploaded).
    #[arg(long)]
    pub show_secrets: bool,
    /// Rules/allowlist config (.leakstop.toml or .gitleaks.toml). Default: the nearest one from the scanned path up
    /// to the repository root.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Do not respect .gitignore/.ignore files.
    #[arg(long)]
    pub no_ignore: bool,
    /// Scan binary files too (by default files with a NUL byte in their first 8 KiB are skipped).
    #[arg(long)]
    pub include_binary: bool,
    /// Skip files larger than this (bytes, or with a K/M/G suffix).
    #[arg(long, value_name = "SIZE", default_value = "100M", value_parser = parse_size)]
    pub max_file_size: u64,
    /// Scan archives and compressed files (zip, jar, tar, gz, ...) as they are instead of looking inside them.
    #[arg(long)]
    pub no_archives: bool,
    /// Open archives nested inside archives this many levels deep (a jar in a war in a tar.gz is 3).
    #[arg(long, value_name = "N", default_value_t = leakstop_scan::archive::DEFAULT_MAX_DEPTH)]
    pub max_archive_depth: u32,
    /// Stop reading a top-level archive after this many decompressed bytes (K/M/G suffix), with a warning.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub max_archive_bytes: u64,
    /// Worker threads (0 = one per core).
    #[arg(long, short = 'j', default_value_t = 0)]
    pub threads: usize,
    /// Report only findings not in this baseline (written by --write-baseline; a gitleaks JSON report also works).
    /// Default: the nearest .leakstop-baseline from the scanned path up to the repository root.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write all current findings to FILE as a baseline and exit 0.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
    /// Ignore files of fingerprints (.leakstopignore format; .gitleaksignore lines accepted).
    /// Default: the nearest .leakstopignore and .gitleaksignore from the scanned path up to the repository root.
    #[arg(long, value_name = "FILE")]
    pub ignore_file: Vec<PathBuf>,
    /// Never color the text report (NO_COLOR is respected too).
    #[arg(long)]
    pub no_color: bool,
    /// Do not print the summary line on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Scan git history: every blob reachable from all refs of REPO (default: the current repository), each once.
    #[arg(long, value_name = "REPO", num_args = 0..=1, default_missing_value = ".")]
    pub git: Option<PathBuf>,
    /// With --git: only the history this branch (or revision) reaches.
    #[arg(long, value_name = "BRANCH", requires = "git")]
    pub branch: Option<String>,
    /// With --git: skip this commit and its ancestors (scanned before).
    #[arg(long, value_name = "REV", requires = "git")]
    pub since_commit: Option<String>,
    /// With --git: read every blob through libgit2 instead of reading the packs directly (slower, same results;
    /// a way around a pack layout the direct reader refuses).
    #[arg(long, requires = "git")]
    pub no_pack_reader: bool,
    /// Only lines added by the commits of BASE..HEAD (pushes, pull requests), each with the commit that added it.
    #[arg(long, value_name = "BASE..HEAD", conflicts_with_all = ["staged", "branch", "since_commit"])]
    pub range: Option<String>,
    /// Only lines the index (staged changes) adds versus HEAD: what the pre-commit hook runs.
    #[arg(long, conflicts_with_all = ["git", "branch", "since_commit"])]
    pub staged: bool,
    /// Report only findings of at least this confidence (default: the config's `[scan] min_confidence`, else all).
    #[arg(long, value_name = "LEVEL", value_parser = ["low", "medium", "high"])]
    pub min_confidence: Option<String>,
    /// After the scan, send each finding's secret (with where it was found) to this leakstop service, which
    /// revokes the credentials it issued and flags the values it stores. https://, or http:// to loopback only.
    #[arg(long, value_name = "URL")]
    pub report_to: Option<String>,
}

impl ScanArgs {
    /// The repository of a git input: --git REPO, else the first path, else the current directory.
    fn repo(&self) -> PathBuf {
        match (&self.git, self.paths.first()) {
            (Some(r), _) if r.as_os_str() != "." || self.paths.is_empty() => r.clone(),
            (_, Some(p)) => p.clone(),
            _ => PathBuf::from("."),
        }
    }

    /// `scan --staged --quiet REPO` with every other flag at its default: what the pre-commit hook runs.
    pub fn staged(repo: &Path) -> ScanArgs {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: ScanArgs,
        }
        let mut d = <Defaults as clap::Parser>::parse_from(["leakstop", "--staged", "--quiet"]);
        d.args.paths = vec![repo.to_path_buf()];
        d.args
    }

    fn is_git_input(&self) -> bool {
        self.git.is_some() || self.staged || self.range.is_some()
    }
}

/// What an input source produced.
struct Collected {
    findings: Vec<Finding>,
    /// File-walk statistics, when the input was files.
    summary: Option<ScanSummary>,
}

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // A URL the secrets may not travel to is refused before anything is scanned.
    let report_to = args.report_to.as_deref().map(super::report::endpoint).transpose()?;
    // The pre-commit hook's path: the index is compared with HEAD on another thread while the rules load here.
    let (scanner_tx, scanner_rx) = std::sync::mpsc::channel::<Arc<Scanner>>();
    let staged = args.staged.then(|| {
        let repo = args.repo();
        std::thread::spawn(move || leakstop_git::scan_staged_when(&repo, || scanner_rx.recv().ok()))
    });
    let setup = Setup::discover(&SetupRequest {
        start: discovery_start(&args),
        config: args.config.clone(),
        baseline: args.baseline.clone(),
        ignore_files: args.ignore_file.clone(),
        // A new baseline records every current finding, including those the old one already knew.
        use_baseline: args.write_baseline.is_none(),
    })?;
    print_setup(&setup, args.quiet);
    let opts = ScanOptions {
        max_file_size: args.max_file_size,
        include_binary: args.include_binary,
        no_ignore: args.no_ignore,
        threads: args.threads,
        archives: leakstop_scan::ArchiveOptions {
            enabled: !args.no_archives,
            max_depth: args.max_archive_depth,
            max_bytes: args.max_archive_bytes,
        },
        min_confidence: args
            .min_confidence
            .as_deref()
            .and_then(leakstop_scan::Confidence::parse),
        ..ScanOptions::default()
    };
    let scanner = Arc::new(setup.scanner(opts)?);
    // Only the staged thread listens; without it nobody does, and that is fine.
    let _ = scanner_tx.send(Arc::clone(&scanner));

    let mut collected = collect(&args, &scanner, staged)?;
    let code = finish(&args, &scanner, &mut collected, started)?;
    if let Some(url) = report_to
        && !collected.findings.is_empty()
        && args.write_baseline.is_none()
    {
        // The scan's exit code (1: findings) stands whatever happens to the report.
        if let Err(e) = super::report::send(&url, super::report::from_findings(&collected.findings), args.quiet) {
            eprintln!("leakstop: error: the findings were not reported: {e:#}");
        }
    }
    Ok(code)
}

/// Tells which files the scan uses (unless `quiet`) and what they could not express (always).
pub fn print_setup(setup: &Setup, quiet: bool) {
    if !quiet {
        for line in &setup.used {
            eprintln!("leakstop: {line}");
        }
    }
    for w in &setup.warnings {
        eprintln!("leakstop: note: {w}");
    }
}

/// Writes a report of `findings` to `path` atomically (secrets redacted).
pub fn write_report_file(path: &Path, findings: &[Finding], format: Format) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    report::write(findings, format, &mut buf, &ReportOptions::default())?;
    leakstop_scan::baseline::write_atomic(path, &buf)?;
    Ok(())
}

/// The `--staged` scan running beside the rules' loading.
type StagedScan = std::thread::JoinHandle<Result<Option<Vec<Finding>>, leakstop_git::GitError>>;

/// The one place that chooses the input source.
/// `staged`: the thread [`run`] started for `--staged`, which scans with `scanner` once it has it.
fn collect(args: &ScanArgs, scanner: &Scanner, staged: Option<StagedScan>) -> anyhow::Result<Collected> {
    if args.is_git_input() {
        let repo = args.repo();
        let findings = if let Some(thread) = staged {
            let scanned = thread
                .join()
                .map_err(|_| anyhow::anyhow!("the staged scan stopped unexpectedly (a bug: please report it)"))??;
            scanned.ok_or_else(|| anyhow::anyhow!("the staged scan never received its scanner"))?
        } else if args.staged {
            leakstop_git::scan_staged(&repo, scanner)?
        } else if let Some(range) = &args.range {
            let report = leakstop_git::scan_range_report(&repo, range, scanner)?;
            if !args.quiet {
                eprintln!(
                    "leakstop: {range}: {} commit(s), {} changed file(s), {} scanned ({} binary or over \
                     --max-file-size skipped)",
                    report.commits,
                    report.files,
                    human_size(report.bytes_scanned),
                    report.skipped
                );
            }
            report.findings
        } else {
            let sel = leakstop_git::HistorySelection {
                branch: args.branch.clone(),
                since_commit: args.since_commit.clone(),
                legacy_reads: args.no_pack_reader,
            };
            let report = leakstop_git::scan_history(&repo, scanner, &sel)?;
            for note in &report.notes {
                eprintln!("leakstop: note: {note}");
            }
            if !args.quiet {
                let since = match &args.since_commit {
                    Some(rev) => format!(" since {rev}"),
                    None => String::new(),
                };
                eprintln!(
                    "leakstop: {} commit(s){since}, {} unique blob(s), {} scanned ({} binary, {} over --max-file-size \
                     skipped)",
                    report.commits,
                    report.blobs,
                    human_size(report.bytes_scanned),
                    report.skipped_binary,
                    report.skipped_large
                );
            }
            report.findings
        };
        return Ok(Collected {
            findings,
            summary: None,
        });
    }
    if args.paths.iter().any(|p| p.as_os_str() == "-") {
        anyhow::ensure!(
            args.paths.len() == 1,
            "`-` (standard input) cannot be combined with other paths"
        );
        let mut summary = scanner.scan_reader(std::io::stdin().lock(), "stdin")?;
        let findings = std::mem::take(&mut summary.findings);
        return Ok(Collected {
            findings,
            summary: Some(summary),
        });
    }
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let mut summary = scanner.scan_paths(&paths)?;
    let findings = std::mem::take(&mut summary.findings);
    Ok(Collected {
        findings,
        summary: Some(summary),
    })
}

/// Everything after the input: baseline, --write-baseline, report, summary, exit code.
fn finish(args: &ScanArgs, scanner: &Scanner, c: &mut Collected, started: Instant) -> anyhow::Result<ExitCode> {
    if let Some(s) = &c.summary {
        for (path, size) in &s.skipped_large {
            // Standard input is read only up to the limit: its size is not known.
            let size = if *size > args.max_file_size && path == "stdin" {
                "the input".to_string()
            } else {
                human_size(*size)
            };
            eprintln!(
                "leakstop: note: skipped {path}: {size} is over --max-file-size {}; pass a larger --max-file-size to scan it",
                human_size(args.max_file_size)
            );
        }
        for w in &s.warnings {
            eprintln!("leakstop: warning: {w}");
        }
        for (path, reason) in &s.errors {
            eprintln!("leakstop: warning: could not read {path}: {reason} (skipped; the rest was scanned)");
        }
    }
    if let Some(file) = &args.write_baseline {
        Baseline::write(&c.findings, file)?;
        if !args.quiet {
            eprintln!(
                "leakstop: wrote {} finding(s) to baseline {}; scan with --baseline {} to see only new ones",
                c.findings.len(),
                file.display(),
                file.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    scanner.apply_baseline(&mut c.findings);

    let format: Format = args.format.parse().map_err(anyhow::Error::msg)?;
    let color = format == Format::Text
        && args.output.is_none()
        && !args.no_color
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal();
    let ropts = ReportOptions {
        show_secrets: args.show_secrets,
        color,
    };
    match &args.output {
        Some(path) => {
            let mut buf = Vec::new();
            report::write(&c.findings, format, &mut buf, &ropts)?;
            leakstop_scan::baseline::write_atomic(path, &buf)?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let res = report::write(&c.findings, format, &mut out, &ropts).and_then(|()| out.flush());
            match res {
                // A closed pipe (`| head`) is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing the report to standard output")?,
            }
        }
    }
    if !args.quiet {
        let n = c.findings.len();
        let what = if n == 1 { "finding" } else { "findings" };
        match &c.summary {
            Some(s) => eprintln!(
                "leakstop: {n} {what} in {} file(s), {} scanned in {:.2}s{}",
                s.files_scanned,
                human_size(s.bytes_scanned),
                started.elapsed().as_secs_f64(),
                skipped_summary(s)
            ),
            None => eprintln!("leakstop: {n} {what} in {:.2}s", started.elapsed().as_secs_f64()),
        }
    }
    Ok(if c.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Every file a walk did not scan, by reason, with the flag that scans it: `; skipped 2 ignored (...), ...`.
fn skipped_summary(s: &ScanSummary) -> String {
    let mut parts = Vec::new();
    if s.skipped_ignored > 0 || s.skipped_ignored_dirs > 0 {
        let what = match (s.skipped_ignored, s.skipped_ignored_dirs) {
            (f, 0) => format!("{f}"),
            (0, d) => format!("{d} director(ies)"),
            (f, d) => format!("{f} file(s) and {d} director(ies)"),
        };
        parts.push(format!("{what} ignored by .gitignore/.ignore (--no-ignore scans them)"));
    }
    if s.skipped_binary > 0 {
        parts.push(format!("{} binary (--include-binary)", s.skipped_binary));
    }
    if !s.skipped_large.is_empty() {
        parts.push(format!("{} over --max-file-size", s.skipped_large.len()));
    }
    if s.skipped_allowlisted > 0 {
        parts.push(format!("{} excluded by allowlist paths", s.skipped_allowlisted));
    }
    if !s.errors.is_empty() {
        parts.push(format!("{} unreadable", s.errors.len()));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; skipped {}", parts.join(", "))
    }
}

/// Where discovery of config, baseline and ignore files starts: the repository of a git input, else the first
/// scanned path, else the current directory.
fn discovery_start(args: &ScanArgs) -> PathBuf {
    if args.is_git_input() {
        return args.repo();
    }
    match args.paths.first() {
        Some(p) if p.as_os_str() != "-" => p.clone(),
        _ => PathBuf::from("."),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'B' => 1,
                _ => return Err(format!("`{s}`: unknown size suffix `{c}` (use K, M or G)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 1048576, 512K, 100M, 1G)"))?;
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

fn human_size(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}
