//! Embeds every `rules/*.toml` of the repository into the library, so adding a rule file needs no code change.
//! Each file is also embedded pre-parsed, as JSON: parsing ~700 KB of TOML was about half of a `--staged` scan's
//! start-up, and JSON of the same tables parses several times faster (the TOML text stays for `rules check`,
//! whose errors point at lines).
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = manifest.join("../../rules");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut out = String::from("pub(crate) static BUILTIN_FILES: &[(&str, &str)] = &[\n");
    let mut json = String::from("pub(crate) static BUILTIN_JSON: &[(&str, &str)] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .expect("rule file names are UTF-8");
        let abs = f.canonicalize().expect("rule file path resolves");
        writeln!(
            out,
            "    (\"rules/{name}\", include_str!({:?})),",
            abs.display().to_string()
        )
        .expect("write to String");
        let text = std::fs::read_to_string(f).expect("rule file is readable UTF-8");
        // A built-in rule file that is not TOML fails the build, with the parser's message and line.
        let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("rules/{name}: {e}"));
        let parsed = out_dir.join(format!("{name}.json"));
        std::fs::write(&parsed, serde_json::to_string(&table).expect("TOML tables are JSON")).expect("write JSON");
        writeln!(
            json,
            "    (\"rules/{name}\", include_str!({:?})),",
            parsed.display().to_string()
        )
        .expect("write to String");
    }
    out.push_str("];\n");
    json.push_str("];\n");
    out.push_str(&json);
    std::fs::write(out_dir.join("builtin_rules.rs"), out).expect("write builtin_rules.rs");
}
