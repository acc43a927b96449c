//! Inputs inside other files: archives (zip and its kin: jar, war, apk, whl, nupkg; tar), compressed streams (gzip,
//! bzip2, xz, zstd), nested to a depth limit, Jupyter notebooks (cells decoded from their JSON), and `docker save`
//! / OCI image tarballs (layers are nested tars; files a later layer deletes are marked).
//!
//! Nothing is extracted to disk (so entry names cannot escape anywhere): entries are streamed, and only a leaf
//! file's content (bounded by `max_file_size`) is held in memory to be scanned. Every byte a decompressor or a zip
//! entry yields counts against one budget per top-level archive, so a zip bomb stops at the budget, with a warning
//! naming the archive and the limit. A corrupt archive is a warning too; the scan goes on.
//!
//! Findings name the file inside as `outer.tar.gz!/app.jar!/config/application.yml`: a compressed tar is one
//! level, a compressed single file adds its name without the compression suffix.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{Cursor, Read, Seek};

use crate::finding::Finding;
use crate::scanner::Scanner;

/// Default `--max-archive-depth`: archives inside archives are opened this many levels deep.
pub const DEFAULT_MAX_DEPTH: u32 = 4;
/// Default `--max-archive-bytes`: decompressed bytes read out of one top-level archive.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// A zip entry that declares more than this many times its compressed size (and is over [`RATIO_MIN_SIZE`]) is
/// not decompressed: text rarely compresses past 100:1, deflate cannot exceed about 1032:1, bombs sit near that.
const MAX_RATIO: u64 = 500;
const RATIO_MIN_SIZE: u64 = 1024 * 1024;
/// Bytes read to decide what a file is (a tar header's magic sits at offset 257).
const SNIFF: usize = 512;
/// Small JSON files inside a tar kept to recognise an image layout (manifest.json, index.json, OCI manifests).
const KEEP_JSON: u64 = 256 * 1024;
/// The tag a finding gets when its file is deleted by a later layer of a container image.
pub const DELETED_TAG: &str = "deleted-in-later-layer";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveOptions {
    /// Look inside archives and compressed files (`--no-archives` turns this off).
    pub enabled: bool,
    pub max_depth: u32,
    pub max_bytes: u64,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            enabled: true,
            max_depth: DEFAULT_MAX_DEPTH,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Zip,
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// What `head` (a file's first bytes, [`SNIFF`] of them when the file is that long) starts with; by magic bytes
/// only, so a renamed archive is still opened and a `.zip` that is not one is scanned as what it is.
pub fn detect(head: &[u8]) -> Option<Kind> {
    if head.starts_with(b"PK\x03\x04") {
        Some(Kind::Zip)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some(Kind::Gzip)
    } else if head.len() >= 4 && head.starts_with(b"BZh") && (b'1'..=b'9').contains(&head[3]) {
        Some(Kind::Bzip2)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(Kind::Xz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Kind::Zstd)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(Kind::Tar)
    } else {
        None
    }
}

/// Jupyter notebooks are decoded cell by cell instead of scanned as JSON text.
pub fn is_notebook(path: &str) -> bool {
    ends_with_ignore_case(path, ".ipynb")
}

/// `s` ends with the ASCII suffix `ext`, in any case (and is longer than it).
fn ends_with_ignore_case(s: &str, ext: &str) -> bool {
    s.len() > ext.len() && s.as_bytes()[s.len() - ext.len()..].eq_ignore_ascii_case(ext.as_bytes())
}

/// What scanning one top-level archive or notebook produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    /// Files inside that were scanned, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Files inside skipped as binary.
    pub binary: u64,
    /// Limits hit and corrupt parts, one line each, naming the archive.
    pub warnings: Vec<String>,
}

/// Read + Seek, for the zip reader.
trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// The error a budgeted reader returns once the budget is spent.
#[derive(Debug)]
struct OverBudget;
impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("over the decompressed size budget")
    }
}
impl std::error::Error for OverBudget {}

/// Decompressed bytes left for one top-level archive, shared by every reader inside it.
struct Budget {
    left: Cell<u64>,
    spent: Cell<bool>,
}

/// Counts what it yields against the top-level archive's budget.
struct Budgeted<'b, R> {
    inner: R,
    budget: &'b Budget,
}

impl<R: Read> Read for Budgeted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.budget.spent.get() {
            return Err(std::io::Error::other(OverBudget));
        }
        let n = self.inner.read(buf)?;
        let left = self.budget.left.get();
        if n as u64 > left {
            self.budget.spent.set(true);
            self.budget.left.set(0);
            return Err(std::io::Error::other(OverBudget));
        }
        self.budget.left.set(left - n as u64);
        Ok(n)
    }
}

/// A tar seen while scanning, for the image layout check: its whiteouts (deleted paths; `dir/` for an opaque
/// directory) when it was nested in another tar.
#[derive(Default)]
struct TarSeen {
    whiteouts: Vec<String>,
}

struct Walker<'s> {
    scanner: &'s Scanner,
    top: String,
    budget: &'s Budget,
    out: Outcome,
}

impl Scanner {
    /// Scans the archive `data` (already read; `display` is its path) with everything nested in it.
    pub fn scan_archive_bytes(&self, data: &[u8], display: &str) -> Outcome {
        let budget = Budget::new(self);
        let mut w = Walker::new(self, display, &budget);
        w.node(&mut Cursor::new(data), Some(data), display, display, 0);
        w.finish()
    }

    /// Scans the archive at `path` from the file, for archives over `max_file_size` (not read into memory).
    pub fn scan_archive_file(&self, path: &std::path::Path, display: &str) -> std::io::Result<Outcome> {
        let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut head = Vec::with_capacity(SNIFF);
        (&mut f).take(SNIFF as u64).read_to_end(&mut head)?;
        let Some(kind) = detect(&head) else {
            return Ok(Outcome::default());
        };
        f.rewind()?;
        let budget = Budget::new(self);
        let mut w = Walker::new(self, display, &budget);
        if kind == Kind::Zip {
            w.zip(&mut f, display, 1);
        } else {
            w.container(kind, &mut f, display, display, 0);
        }
        Ok(w.finish())
    }

    /// Scans a notebook's cells (source and text outputs) decoded from their JSON strings, so escaped quotes and
    /// per-line strings do not hide an assignment. Findings are placed back at their line and column in the
    /// notebook file (where an editor, a review comment or a baseline points); a line that cannot be found there
    /// is named by its cell (`nb.ipynb!/cell-3`, `nb.ipynb!/cell-3/output-1`, lines counted within the cell).
    /// `None` when `data` is not a notebook's JSON.
    pub fn scan_notebook(&self, data: &[u8], display: &str) -> Option<Outcome> {
        let mut out = Outcome::default();
        self.notebook_into(data, display, &mut out).then_some(out)
    }

    fn notebook_into(&self, data: &[u8], path: &str, out: &mut Outcome) -> bool {
        let Ok(nb) = serde_json::from_slice::<serde_json::Value>(data) else {
            return false;
        };
        let Some(cells) = nb.get("cells").and_then(|c| c.as_array()) else {
            return false;
        };
        let raw = String::from_utf8_lossy(data);
        let mut places = NotebookPlaces::new(&raw);
        out.files += 1;
        out.bytes += data.len() as u64;
        let mut scan = |text: String, name: String| {
            if text.is_empty() {
                return;
            }
            for mut f in self.scan_blob(text.as_bytes(), &name) {
                places.place(&mut f, &text, path);
                out.findings.push(f);
            }
        };
        for (i, cell) in cells.iter().enumerate() {
            let cell_path = format!("{path}!/cell-{}", i + 1);
            scan(joined(cell.get("source")), cell_path.clone());
            let outputs = cell.get("outputs").and_then(|o| o.as_array());
            for (k, output) in outputs.into_iter().flatten().enumerate() {
                let mut text = joined(output.get("text"));
                // Rich outputs: every textual representation (an image's base64 is not text to scan).
                if let Some(data) = output.get("data").and_then(|d| d.as_object()) {
                    for (mime, value) in data {
                        if mime.starts_with("text/") || mime.ends_with("json") || mime.ends_with("javascript") {
                            if !text.is_empty() && !text.ends_with('\n') {
                                text.push('\n');
                            }
                            match value {
                                serde_json::Value::String(_) | serde_json::Value::Array(_) => {
                                    text.push_str(&joined(Some(value)))
                                }
                                other => text.push_str(&other.to_string()),
                            }
                        }
                    }
                }
                if let Some(tb) = output.get("traceback") {
                    text.push_str(&joined(Some(tb)));
                }
                scan(text, format!("{cell_path}/output-{}", k + 1));
            }
        }
        true
    }
}

/// Finds where a decoded cell line sits in the notebook's JSON text. Jupyter writes each line of a cell as one
/// JSON string, so the line's escaped form appears in the file; an occurrence already given to another cell line
/// is not reused, so a value repeated in two cells lands on both of its lines.
struct NotebookPlaces<'a> {
    raw: &'a str,
    claimed: HashMap<(String, u32), usize>,
    used: std::collections::HashSet<usize>,
}

impl<'a> NotebookPlaces<'a> {
    fn new(raw: &'a str) -> Self {
        NotebookPlaces {
            raw,
            claimed: HashMap::new(),
            used: Default::default(),
        }
    }

    /// Byte offset in the file of the escaped text of line `n` (1-based) of the cell text `text` named `cell`.
    fn offset(&mut self, cell: &str, text: &str, n: u32) -> Option<usize> {
        if let Some(&at) = self.claimed.get(&(cell.to_string(), n)) {
            return Some(at);
        }
        let line = text.split_inclusive('\n').nth(n.checked_sub(1)? as usize)?;
        let quoted = serde_json::to_string(line.trim_end_matches('\n')).ok()?;
        let escaped = quoted.get(1..quoted.len() - 1).filter(|e| !e.is_empty())?;
        let mut from = 0;
        let at = loop {
            let at = from + self.raw.get(from..)?.find(escaped)?;
            if !self.used.contains(&at) {
                break at;
            }
            from = at + 1;
        };
        self.used.insert(at);
        self.claimed.insert((cell.to_string(), n), at);
        Some(at)
    }

    /// The file's (line, column) of character `column` (1-based) of cell line `n`.
    fn position(&mut self, cell: &str, text: &str, n: u32, column: u32) -> Option<(u32, u32)> {
        let at = self.offset(cell, text, n)?;
        let before = self.raw.get(..at)?;
        let line = before.bytes().filter(|&b| b == b'\n').count() as u32 + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let decoded = text.split_inclusive('\n').nth(n.checked_sub(1)? as usize)?;
        let prefix: String = decoded.chars().take(column.saturating_sub(1) as usize).collect();
        let quoted = serde_json::to_string(&prefix).ok()?;
        let col = before.get(line_start..)?.chars().count() + quoted.chars().count() - 2 + 1;
        Some((line, col as u32))
    }

    /// Moves a finding from its cell to the notebook file, when both its ends are found there.
    fn place(&mut self, f: &mut Finding, text: &str, notebook: &str) {
        let cell = f.path.clone();
        let start = self.position(&cell, text, f.line, f.column);
        let end = self.position(&cell, text, f.end_line, f.end_column);
        if let (Some((line, column)), Some((end_line, end_column))) = (start, end) {
            (f.line, f.column, f.end_line, f.end_column) = (line, column, end_line, end_column);
            f.path = notebook.to_string();
        }
    }
}

/// A notebook string field: a string, or a list of strings that are the lines (each keeping its `\n`).
fn joined(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(parts)) => {
            let mut s = String::new();
            for p in parts.iter().filter_map(|p| p.as_str()) {
                s.push_str(p);
            }
            s
        }
        _ => String::new(),
    }
}

/// `name` without its compression suffix (`a.yml.gz` -> `a.yml`), for the single file inside.
fn decompressed_name(name: &str) -> String {
    let base = name.rsplit("!/").next().unwrap_or(name);
    let base = base.rsplit('/').next().unwrap_or(base);
    for ext in [".gz", ".gzip", ".bz2", ".xz", ".zst", ".zstd"] {
        if ends_with_ignore_case(base, ext) {
            return base[..base.len() - ext.len()].to_string();
        }
    }
    for (ext, to) in [(".tgz", ".tar"), (".tbz2", ".tar"), (".txz", ".tar")] {
        if ends_with_ignore_case(base, ext) {
            return format!("{}{to}", &base[..base.len() - ext.len()]);
        }
    }
    format!("{base}.out")
}

impl Budget {
    fn new(scanner: &Scanner) -> Budget {
        Budget {
            left: Cell::new(scanner.opts.archives.max_bytes),
            spent: Cell::new(false),
        }
    }
}

impl<'s> Walker<'s> {
    fn new(scanner: &'s Scanner, top: &str, budget: &'s Budget) -> Self {
        Walker {
            scanner,
            top: top.to_string(),
            budget,
            out: Outcome::default(),
        }
    }

    fn finish(mut self) -> Outcome {
        if self.budget.spent.get() {
            let limit = self.scanner.opts.archives.max_bytes;
            self.out.warnings.push(format!(
                "{}: stopped after {} decompressed (--max-archive-bytes); the rest of the archive was not scanned; \
                 pass a larger --max-archive-bytes to scan it all",
                self.top,
                crate::archive::human(limit)
            ));
        }
        self.out
    }

    fn warn(&mut self, path: &str, what: impl std::fmt::Display) {
        self.out.warnings.push(format!("{path}: {what}"));
    }

    /// A corrupt or unreadable part: a warning, unless the budget ran out (one warning for that, at the end).
    fn failed(&mut self, path: &str, e: &dyn std::fmt::Display) {
        if self.budget.spent.get() {
            return;
        }
        let what = format!("cannot read the archive: {e} (skipped; the rest was scanned)");
        // A broken stream fails the entry being read and then the archive around it: one warning, the innermost.
        let repeated = self
            .out
            .warnings
            .last()
            .is_some_and(|w| w.starts_with(&format!("{path}!/")) && w.ends_with(&what));
        if !repeated {
            self.warn(path, what);
        }
    }

    /// One file of unknown kind (a top-level file's content, or an archive's entry) at `path`, `depth` archives
    /// deep. `whole` is its content when already in memory. Returns what a tar it turned out to be held.
    fn node(&mut self, r: &mut dyn Read, whole: Option<&[u8]>, name: &str, path: &str, depth: u32) -> Option<TarSeen> {
        let mut head = Vec::with_capacity(SNIFF);
        if let Err(e) = r.take(SNIFF as u64).read_to_end(&mut head) {
            self.failed(path, &e);
            return None;
        }
        let opts = &self.scanner.opts;
        if let Some(kind) = detect(&head).filter(|_| opts.archives.enabled) {
            if depth >= opts.archives.max_depth {
                let max = opts.archives.max_depth;
                self.warn(
                    path,
                    format_args!("not opened: archives nested deeper than --max-archive-depth {max}"),
                );
                return None;
            }
            if kind == Kind::Zip {
                return match whole {
                    Some(data) => {
                        self.zip(&mut Cursor::new(data), path, depth + 1);
                        None
                    }
                    None => {
                        let data = self.read_leaf(&head, r, path)?;
                        self.zip(&mut Cursor::new(&data[..]), path, depth + 1);
                        None
                    }
                };
            }
            let mut chained = Cursor::new(head).chain(r);
            return self.container(kind, &mut chained, name, path, depth);
        }
        match whole {
            Some(d) => self.leaf(d, path),
            None => {
                let data = self.read_leaf(&head, r, path)?;
                self.leaf(&data, path);
            }
        }
        None
    }

    /// The rest of a leaf after `head`, bounded by `max_file_size` (`None`, with a warning, when over it).
    fn read_leaf(&mut self, head: &[u8], r: &mut dyn Read, path: &str) -> Option<Vec<u8>> {
        let max = self.scanner.opts.max_file_size;
        let mut data = head.to_vec();
        if let Err(e) = r.take(max.saturating_add(1) - head.len() as u64).read_to_end(&mut data) {
            self.failed(path, &e);
            return None;
        }
        if data.len() as u64 > max {
            self.warn(path, format_args!("skipped: over --max-file-size {}", human(max)));
            return None;
        }
        Some(data)
    }

    fn leaf(&mut self, data: &[u8], path: &str) {
        if is_notebook(path) {
            let mut nb = Outcome::default();
            if self.scanner.notebook_into(data, path, &mut nb) {
                self.out.files += nb.files;
                self.out.bytes += nb.bytes;
                self.out.findings.append(&mut nb.findings);
                return;
            }
        }
        if !self.scanner.opts.include_binary && crate::walk::is_binary(data) {
            self.out.binary += 1;
            return;
        }
        self.out.files += 1;
        self.out.bytes += data.len() as u64;
        self.out.findings.extend(self.scanner.scan_blob(data, path));
    }

    /// A compressed stream or a tar, read from `r` (positioned at its start). `path` names it; `depth` is that of
    /// the file it is (its entries are one deeper).
    fn container(&mut self, kind: Kind, r: &mut dyn Read, name: &str, path: &str, depth: u32) -> Option<TarSeen> {
        let decoded: Box<dyn Read + '_> = match kind {
            Kind::Tar => return self.tar(r, path, depth + 1),
            Kind::Zip => {
                // Callers open zips themselves (they need to seek); reaching here means a caller bug, not input.
                self.warn(path, "zip archive not opened from a stream");
                return None;
            }
            Kind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Kind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
            Kind::Xz => Box::new(lzma_rust2::XzReader::new(r, true)),
            Kind::Zstd => match ruzstd::decoding::StreamingDecoder::new(r) {
                Ok(d) => Box::new(d),
                Err(e) => {
                    self.failed(path, &e);
                    return None;
                }
            },
        };
        let mut inner = Budgeted {
            inner: decoded,
            budget: self.budget,
        };
        let mut head = Vec::with_capacity(SNIFF);
        if let Err(e) = (&mut inner).take(SNIFF as u64).read_to_end(&mut head) {
            self.failed(path, &e);
            return None;
        }
        // A compressed tar is one level (`x.tar.gz!/entry`); a compressed file adds its own name.
        let is_tar = detect(&head) == Some(Kind::Tar);
        let mut chained = Cursor::new(head).chain(inner);
        if is_tar {
            self.tar(&mut chained, path, depth + 1)
        } else {
            let inner_path = format!("{path}!/{}", decompressed_name(name));
            self.node(&mut chained, None, &inner_path, &inner_path, depth + 1)
        }
    }

    /// A tar's entries, `depth` archives deep. Keeps what an image layout needs: the whiteouts of tars nested in
    /// it (layers), small JSON files (manifests), and which findings came from which entry.
    fn tar(&mut self, r: &mut dyn Read, path: &str, depth: u32) -> Option<TarSeen> {
        let mut archive = tar::Archive::new(r);
        let mut seen = TarSeen::default();
        let mut layers: Vec<Layer> = Vec::new();
        let mut json: HashMap<String, Vec<u8>> = HashMap::new();
        let entries = match archive.entries() {
            Ok(e) => e,
            Err(e) => {
                self.failed(path, &e);
                return Some(seen);
            }
        };
        for entry in entries {
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.failed(path, &e);
                    break;
                }
            };
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = name.trim_start_matches("./").to_string();
            let base = name.rsplit('/').next().unwrap_or(&name);
            if let Some(deleted) = base.strip_prefix(".wh.") {
                let dir = &name[..name.len() - base.len()];
                seen.whiteouts.push(if deleted == ".wh..opq" {
                    dir.to_string()
                } else {
                    format!("{dir}{deleted}")
                });
                continue;
            }
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let size = entry.size();
            let keep_json =
                size <= KEEP_JSON && (name == "manifest.json" || name == "index.json" || name.starts_with("blobs/"));
            let entry_path = format!("{path}!/{name}");
            let first = self.out.findings.len();
            let nested = if keep_json {
                let mut data = Vec::new();
                if let Err(e) = entry.read_to_end(&mut data) {
                    self.failed(&entry_path, &e);
                    break;
                }
                let nested = self.node(&mut Cursor::new(&data[..]), Some(&data), &name, &entry_path, depth);
                if data.first() == Some(&b'{') || data.first() == Some(&b'[') {
                    json.insert(name.clone(), data);
                }
                nested
            } else {
                self.node(&mut entry, None, &name, &entry_path, depth)
            };
            if self.budget.spent.get() {
                break;
            }
            if let Some(t) = nested {
                layers.push(Layer {
                    name,
                    findings: first..self.out.findings.len(),
                    whiteouts: t.whiteouts,
                });
            }
        }
        if let Some(order) = image_layers(&json) {
            self.mark_deleted(&layers, &order, path);
        }
        Some(seen)
    }

    /// Tags findings in a layer whose file a later layer deletes (the file is not in the running image, but
    /// anyone who pulls the image has it).
    fn mark_deleted(&mut self, layers: &[Layer], order: &[String], image: &str) {
        let rank = |name: &str| order.iter().position(|o| o == name);
        for layer in layers {
            let Some(mine) = rank(&layer.name) else { continue };
            let prefix = format!("{image}!/{}!/", layer.name);
            for f in &mut self.out.findings[layer.findings.clone()] {
                let Some(inner) = f.path.strip_prefix(&prefix) else {
                    continue;
                };
                let file = inner.split("!/").next().unwrap_or(inner);
                let deleted = layers.iter().any(|later| {
                    rank(&later.name).is_some_and(|r| r > mine)
                        && later.whiteouts.iter().any(|w| {
                            file == w
                                || (file.starts_with(w.as_str())
                                    && (w.ends_with('/') || file[w.len()..].starts_with('/')))
                        })
                });
                if deleted && !f.tags.iter().any(|t| t == DELETED_TAG) {
                    f.tags.push(DELETED_TAG.to_string());
                }
            }
        }
    }

    /// A zip's entries, `depth` archives deep.
    fn zip(&mut self, r: &mut dyn ReadSeek, path: &str, depth: u32) {
        let mut archive = match zip::ZipArchive::new(r) {
            Ok(a) => a,
            Err(e) => {
                self.failed(path, &e);
                return;
            }
        };
        for i in 0..archive.len() {
            let entry = match archive.by_index(i) {
                Ok(e) => e,
                Err(e) => {
                    // Encrypted or unsupported entries: the others are still readable.
                    self.failed(&format!("{path}!/#{i}"), &e);
                    continue;
                }
            };
            if entry.is_dir() {
                continue;
            }
            let name = entry.name().trim_start_matches('/').to_string();
            let entry_path = format!("{path}!/{name}");
            let (size, packed) = (entry.size(), entry.compressed_size());
            if size > RATIO_MIN_SIZE && size / packed.max(1) > MAX_RATIO {
                self.warn(
                    &entry_path,
                    format_args!(
                        "skipped: expands {} times (from {} to {}), likely a zip bomb",
                        size / packed.max(1),
                        human(packed),
                        human(size)
                    ),
                );
                continue;
            }
            let mut budgeted = Budgeted {
                inner: entry,
                budget: self.budget,
            };
            self.node(&mut budgeted, None, &name, &entry_path, depth);
            if self.budget.spent.get() {
                return;
            }
        }
    }
}

/// A tar nested in a tar: its name there, the findings from it (indices), what it deletes.
struct Layer {
    name: String,
    findings: std::ops::Range<usize>,
    whiteouts: Vec<String>,
}

/// The layers of an image tarball, bottom first, by their entry names: from `docker save`'s manifest.json, or
/// from an OCI layout's index.json and the image manifest it points to. `None` when the tar is not an image.
fn image_layers(json: &HashMap<String, Vec<u8>>) -> Option<Vec<String>> {
    use serde_json::Value;
    let parse = |name: &str| json.get(name).and_then(|d| serde_json::from_slice::<Value>(d).ok());
    if let Some(Value::Array(images)) = parse("manifest.json") {
        let layers: Vec<String> = images
            .iter()
            .filter_map(|i| i.get("Layers")?.as_array())
            .flatten()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect();
        if !layers.is_empty() {
            return Some(layers);
        }
    }
    let blob = |digest: &str| format!("blobs/{}", digest.replacen(':', "/", 1));
    let index = parse("index.json")?;
    let mut layers = Vec::new();
    for m in index.get("manifests")?.as_array()? {
        let Some(manifest) = m.get("digest").and_then(|d| d.as_str()).and_then(|d| parse(&blob(d))) else {
            continue;
        };
        for l in manifest.get("layers").and_then(|l| l.as_array()).into_iter().flatten() {
            if let Some(d) = l.get("digest").and_then(|d| d.as_str()) {
                layers.push(blob(d));
            }
        }
    }
    (!layers.is_empty()).then_some(layers)
}

/// Bytes for people: `256 MiB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v.fract() == 0.0 {
        format!("{} {}", v as u64, UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::ScanOptions;

    const RULES: &str = r#"
[[rule]]
id = "acme-key"
description = "Acme API key"
severity = "high"
keywords = ["acme_"]
regex = '''\b(?P<secret>acme_[0-9a-zA-Z]{24})\b'''
examples = ["k = acme_Zq81LmXv0PaT4rWc9sYbN2Ke"]
negative_examples = ["k = acme_short"]
"#;
    const KEY: &str = "acme_Zq81LmXv0PaT4rWc9sYbN2Ke";
    const KEY2: &str = "acme_Hh52TrBn7QxWv3LpZk9Ys1Da";

    fn scanner(archives: ArchiveOptions) -> Scanner {
        let rules = leakstop_rules::RuleSet::from_toml_str(RULES, "test.toml").expect("rules");
        Scanner::new(
            rules,
            ScanOptions {
                archives,
                ..ScanOptions::default()
            },
        )
        .expect("scanner")
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            w.start_file(*name, opts).expect("zip entry");
            w.write_all(data).expect("zip write");
        }
        w.finish().expect("zip finish").into_inner()
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).expect("tar entry");
        }
        b.into_inner().expect("tar finish")
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("gz");
        e.finish().expect("gz finish")
    }

    fn paths(out: &Outcome) -> Vec<(String, u32)> {
        out.findings.iter().map(|f| (f.path.clone(), f.line)).collect()
    }

    #[test]
    fn a_jar_in_a_war_in_a_tar_gz_is_found_with_its_inner_path_and_line() {
        let yml = format!("server:\n  port: 8080\n  key: {KEY}\n");
        let jar = zip_of(&[("config/application.yml", yml.as_bytes())]);
        let war = zip_of(&[("WEB-INF/lib/app.jar", &jar), ("index.html", b"<html></html>")]);
        let tgz = gz(&tar_of(&[("app.war", &war)]));
        let out = scanner(ArchiveOptions::default()).scan_archive_bytes(&tgz, "outer.tar.gz");
        assert_eq!(
            paths(&out),
            vec![(
                "outer.tar.gz!/app.war!/WEB-INF/lib/app.jar!/config/application.yml".to_string(),
                3
            )]
        );
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        assert_eq!(out.files, 2, "the yml and the html");
    }

    #[test]
    fn every_compression_format_is_opened_by_its_magic_bytes() {
        let text = format!("first\nsecond {KEY}\n");
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(text.as_bytes()).expect("bz2");
        let bz = bz.finish().expect("bz2 finish");
        let mut xz = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::default()).expect("xz");
        xz.write_all(text.as_bytes()).expect("xz write");
        let xz = xz.finish().expect("xz finish");
        let zst = ruzstd::encoding::compress_to_vec(text.as_bytes(), ruzstd::encoding::CompressionLevel::Fastest);
        let s = scanner(ArchiveOptions::default());
        for (name, data, inner) in [
            ("a.env.gz", gz(text.as_bytes()), "a.env"),
            ("a.env.bz2", bz, "a.env"),
            ("a.env.xz", xz, "a.env"),
            ("a.env.zst", zst, "a.env"),
            // The suffix does not decide: a gzip named .txt is still opened.
            ("renamed.txt", gz(text.as_bytes()), "renamed.txt.out"),
        ] {
            assert!(detect(&data).is_some(), "{name}");
            let out = s.scan_archive_bytes(&data, name);
            assert_eq!(paths(&out), vec![(format!("{name}!/{inner}"), 2)], "{name}");
        }
        // And a text file named .zip is not an archive.
        assert_eq!(detect(format!("k = {KEY}\n").as_bytes()), None);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_a_warning_and_shallower_files_are_still_found() {
        let inner = zip_of(&[("deep.txt", format!("{KEY2}\n").as_bytes())]);
        let mid = zip_of(&[("inner.zip", &inner), ("mid.txt", format!("{KEY}\n").as_bytes())]);
        let outer = zip_of(&[("mid.zip", &mid)]);
        let s = scanner(ArchiveOptions {
            max_depth: 2,
            ..ArchiveOptions::default()
        });
        let out = s.scan_archive_bytes(&outer, "outer.zip");
        assert_eq!(paths(&out), vec![("outer.zip!/mid.zip!/mid.txt".to_string(), 1)]);
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(
            out.warnings[0].contains("outer.zip!/mid.zip!/inner.zip"),
            "{}",
            out.warnings[0]
        );
        assert!(out.warnings[0].contains("--max-archive-depth 2"), "{}", out.warnings[0]);
        let all = scanner(ArchiveOptions::default()).scan_archive_bytes(&outer, "outer.zip");
        assert_eq!(all.findings.len(), 2);
    }

    #[test]
    fn a_zip_bomb_entry_is_skipped_and_the_budget_stops_a_large_stream() {
        // 8 MiB of zeros deflate about 1000:1.
        let zeros = vec![0u8; 8 << 20];
        let bomb = zip_of(&[("zeros.bin", &zeros), ("ok.txt", format!("{KEY}\n").as_bytes())]);
        let out = scanner(ArchiveOptions::default()).scan_archive_bytes(&bomb, "bomb.zip");
        assert_eq!(paths(&out), vec![("bomb.zip!/ok.txt".to_string(), 1)]);
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("bomb.zip!/zeros.bin") && w.contains("zip bomb"))
        );

        // Text that compresses well but not suspiciously, over a 1 MiB budget: a warning naming the archive and
        // the limit, and what came before the limit is still reported.
        let mut text = format!("{KEY}\n");
        let mut i = 0u64;
        while text.len() < 3 << 20 {
            text.push_str(&format!("line {i} value {}\n", i.wrapping_mul(2654435761) % 1000003));
            i += 1;
        }
        let tgz = gz(&tar_of(&[
            ("a.txt", format!("{KEY2}\n").as_bytes()),
            ("big.log", text.as_bytes()),
        ]));
        let s = scanner(ArchiveOptions {
            max_bytes: 1 << 20,
            ..ArchiveOptions::default()
        });
        let out = s.scan_archive_bytes(&tgz, "logs.tgz");
        assert_eq!(paths(&out), vec![("logs.tgz!/a.txt".to_string(), 1)]);
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(out.warnings[0].starts_with("logs.tgz: ") && out.warnings[0].contains("--max-archive-bytes"));
        assert!(out.warnings[0].contains("1 MiB"), "{}", out.warnings[0]);
    }

    #[test]
    fn a_corrupt_archive_is_a_warning_and_its_readable_part_is_scanned() {
        // Incompressible content after a.txt, so cutting the stream in half leaves a.txt whole.
        let mut noise = Vec::with_capacity(70_000);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        while noise.len() < 70_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(b'a' + (x % 26) as u8);
        }
        let tgz = gz(&tar_of(&[("a.txt", format!("{KEY}\n").as_bytes()), ("b.txt", &noise)]));
        let cut = &tgz[..tgz.len() / 2];
        let out = scanner(ArchiveOptions::default()).scan_archive_bytes(cut, "cut.tar.gz");
        assert_eq!(paths(&out), vec![("cut.tar.gz!/a.txt".to_string(), 1)]);
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(
            out.warnings[0].contains("cannot read the archive"),
            "{}",
            out.warnings[0]
        );

        let mut junk = b"PK\x03\x04".to_vec();
        junk.extend_from_slice(&[7u8; 100]);
        let out = scanner(ArchiveOptions::default()).scan_archive_bytes(&junk, "junk.zip");
        assert!(out.findings.is_empty());
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    }

    #[test]
    fn notebook_cells_are_scanned_as_their_lines_not_as_json() {
        let nb = serde_json::json!({
            "nbformat": 4, "nbformat_minor": 5, "metadata": {},
            "cells": [
                { "cell_type": "markdown", "source": ["# Setup\n"], "metadata": {} },
                { "cell_type": "code", "source": ["import acme\n", format!("client = acme.Client(\"{KEY}\")\n"), "client.ping()"],
                  "metadata": {}, "execution_count": 1,
                  "outputs": [{ "output_type": "execute_result", "execution_count": 1, "metadata": {},
                                "data": { "text/plain": ["ok\n", format!("token={KEY2}")], "image/png": "iVBORw0KGgo=" } }] }
            ]
        });
        let data = serde_json::to_vec_pretty(&nb).expect("json");
        let out = scanner(ArchiveOptions::default())
            .scan_notebook(&data, "nb.ipynb")
            .expect("a notebook");
        // Both are reported at their line and column in the notebook file, where an editor shows them.
        let text = String::from_utf8(data.clone()).expect("utf-8");
        let at = |needle: &str| {
            let (n, line) = (text.lines().enumerate())
                .find(|(_, l)| l.contains(needle))
                .expect("the value is in the file");
            (n as u32 + 1, line.find(needle).expect("on its line") as u32 + 1)
        };
        assert_eq!(
            paths(&out),
            vec![
                ("nb.ipynb".to_string(), at(KEY).0),
                ("nb.ipynb".to_string(), at(KEY2).0)
            ]
        );
        assert_eq!(out.findings[0].column, at(KEY).1);
        assert_eq!(out.findings[1].column, at(KEY2).1);
        assert!(
            scanner(ArchiveOptions::default())
                .scan_notebook(b"{\"a\": 1}", "x.ipynb")
                .is_none()
        );
    }

    fn docker_save() -> Vec<u8> {
        let base = tar_of(&[
            ("app/.env", format!("API={KEY}\n").as_bytes()),
            ("app/keep.txt", format!("\n{KEY2}\n").as_bytes()),
        ]);
        let upper = tar_of(&[("app/.wh..env", b""), ("app/new.txt", b"nothing\n")]);
        let manifest = br#"[{"Config":"cfg.json","RepoTags":["x:1"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#;
        tar_of(&[
            ("l1/layer.tar", &base),
            ("l2/layer.tar", &upper),
            ("cfg.json", b"{}"),
            ("manifest.json", manifest),
        ])
    }

    #[test]
    fn a_docker_save_tarball_reports_each_layer_and_marks_files_a_later_layer_deletes() {
        let out = scanner(ArchiveOptions::default()).scan_archive_bytes(&docker_save(), "img.tar");
        let got: Vec<(String, bool)> = out
            .findings
            .iter()
            .map(|f| (f.path.clone(), f.tags.iter().any(|t| t == DELETED_TAG)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("img.tar!/l1/layer.tar!/app/.env".to_string(), true),
                ("img.tar!/l1/layer.tar!/app/keep.txt".to_string(), false),
            ]
        );
    }

    #[test]
    fn an_oci_layout_with_gzipped_layers_and_an_opaque_directory_is_understood() {
        let base = gz(&tar_of(&[("etc/app/secret.conf", format!("{KEY}\n").as_bytes())]));
        let upper = gz(&tar_of(&[("etc/app/.wh..wh..opq", b"")]));
        let manifest = br#"{"schemaVersion":2,"layers":[{"digest":"sha256:aaaa"},{"digest":"sha256:bbbb"}]}"#;
        let index = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:mmmm"}]}"#;
        let image = tar_of(&[
            ("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}"),
            ("index.json", index),
            ("blobs/sha256/mmmm", manifest),
            ("blobs/sha256/aaaa", &base),
            ("blobs/sha256/bbbb", &upper),
        ]);
        let out = scanner(ArchiveOptions::default()).scan_archive_bytes(&image, "oci.tar");
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].path, "oci.tar!/blobs/sha256/aaaa!/etc/app/secret.conf");
        assert!(out.findings[0].tags.iter().any(|t| t == DELETED_TAG));
    }

    #[test]
    fn a_directory_walk_opens_archives_unless_told_not_to() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("bundle.zip"),
            zip_of(&[("a.txt", format!("{KEY}\n").as_bytes())]),
        )
        .expect("write");
        std::fs::write(dir.path().join("plain.txt"), format!("x\n{KEY2}\n")).expect("write");
        let summary = scanner(ArchiveOptions::default())
            .scan_paths(&[dir.path().to_path_buf()])
            .expect("scan");
        let names: Vec<String> = summary
            .findings
            .iter()
            .map(|f| {
                f.path
                    .replacen(&format!("{}/", crate::walk::display_path(dir.path())), "", 1)
            })
            .collect();
        assert_eq!(names, vec!["bundle.zip!/a.txt", "plain.txt"]);
        let off = scanner(ArchiveOptions {
            enabled: false,
            ..ArchiveOptions::default()
        })
        .scan_paths(&[dir.path().to_path_buf()])
        .expect("scan");
        assert_eq!(off.findings.len(), 1);
        assert_eq!(off.skipped_binary, 1);
    }
}
