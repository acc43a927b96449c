//! One finding per secret occurrence in a history scan.
//!
//! Blobs are scanned once each, so a secret left in a file that is edited later shows up in every version's blob.
//! A secret occurrence is (rule, path, secret): the first finding of it, in the walk's commit order, is reported,
//! and the later ones (other versions, other lines) become its `other_locations`. A blob's findings cover every
//! path the blob was seen under, so a secret that moves with a renamed file stays one occurrence. This works on the
//! findings alone (no blob is read again), in time linear in their number.

use std::collections::HashMap;

use leakstop_scan::{Finding, Location};

/// Later locations listed per finding; the rest are counted.
const MAX_OTHER_LOCATIONS: usize = 64;
/// Other paths listed per finding (as many as a blob keeps).
const MAX_OTHER_PATHS: usize = 16;

/// Where an occurrence's findings go.
#[derive(Clone, Copy)]
enum Slot {
    /// Into the reported finding at this index.
    Kept(usize),
    /// Nowhere: the boundary of an incremental scan already held it.
    Known,
}

/// Findings merged by occurrence, fed in commit order.
#[derive(Default)]
pub(crate) struct Occurrences {
    out: Vec<Finding>,
    /// (fingerprint: rule and secret, path) -> where findings of that occurrence go.
    slots: HashMap<(String, String), Slot>,
}

impl Occurrences {
    /// Adds a finding (its `commit` and `other_paths` set), found in a version no earlier in the walk than those
    /// added before. `known` tells whether an incremental scan's boundary already held it; it is asked only for the
    /// first finding of an occurrence.
    pub(crate) fn add(&mut self, f: Finding, known: impl FnOnce(&Finding) -> bool) {
        let slot = std::iter::once(&f.path)
            .chain(&f.other_paths)
            .find_map(|p| self.slots.get(&(f.fingerprint.clone(), p.clone())).copied());
        let slot = match slot {
            Some(Slot::Kept(i)) => {
                let first = &mut self.out[i];
                for p in std::iter::once(&f.path).chain(&f.other_paths) {
                    if *p != first.path && !first.other_paths.contains(p) && first.other_paths.len() < MAX_OTHER_PATHS {
                        first.other_paths.push(p.clone());
                    }
                }
                if first.other_locations.len() < MAX_OTHER_LOCATIONS {
                    first.other_locations.push(Location {
                        path: f.path.clone(),
                        line: f.line,
                        column: f.column,
                        commit: f.commit.as_ref().map(|c| c.id.clone()),
                    });
                } else {
                    first.other_locations_omitted += 1;
                }
                Slot::Kept(i)
            }
            Some(Slot::Known) => Slot::Known,
            None if known(&f) => Slot::Known,
            None => Slot::Kept(self.out.len()),
        };
        for p in std::iter::once(&f.path).chain(&f.other_paths) {
            self.slots.entry((f.fingerprint.clone(), p.clone())).or_insert(slot);
        }
        if matches!(slot, Slot::Kept(i) if i == self.out.len()) {
            self.out.push(f);
        }
    }

    /// The reported findings, in the order their occurrences were first seen; other paths sorted.
    pub(crate) fn into_findings(self) -> Vec<Finding> {
        let mut out = self.out;
        for f in &mut out {
            f.other_paths.sort();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Occurrences;
    use leakstop_rules::RuleSet;
    use leakstop_scan::{CommitInfo, Finding, ScanOptions, Scanner};

    fn found(scanner: &Scanner, text: &str, path: &str, commit: &str, others: &[&str]) -> Vec<Finding> {
        let mut fs = scanner.scan_blob(text.as_bytes(), path);
        for f in &mut fs {
            f.commit = Some(CommitInfo {
                id: commit.into(),
                author_name: String::new(),
                author_email: String::new(),
                date: String::new(),
                summary: String::new(),
            });
            f.other_paths = others.iter().map(|p| p.to_string()).collect();
        }
        fs
    }

    #[test]
    fn an_occurrence_is_reported_once_at_its_first_version() {
        let scanner = Scanner::new(RuleSet::builtin(), ScanOptions::default()).unwrap();
        let key = "AKIAQ3ZR7MXK2WV4TLPN";
        let other = "AKIAH5JD2BYC6NRF3QGE";
        let versions = [
            (format!("KEY={key}\n"), "app.env", "c1", vec![]),
            // Edited (the secret moves a line down), and that version later renamed.
            (format!("# note\nKEY={key}\n"), "app.env", "c2", vec!["conf/app.env"]),
            // Edited again under its new path: still the same occurrence.
            (format!("# note\nKEY={key}\nK2={other}\n"), "conf/app.env", "c3", vec![]),
            // The same secret in an unrelated file is another occurrence.
            (format!("X=1\nKEY={key}\n"), "other.env", "c4", vec![]),
        ];
        let merged = |known: &dyn Fn(&Finding) -> bool| {
            let mut occ = Occurrences::default();
            for (text, path, commit, others) in &versions {
                for f in found(&scanner, text, path, commit, others) {
                    occ.add(f, known);
                }
            }
            occ.into_findings()
        };
        let out = merged(&|_| false);
        let summary: Vec<(&str, &str, u32, usize)> = out
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.commit.as_ref().unwrap().id.as_str(),
                    f.line,
                    f.other_locations.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("app.env", "c1", 1, 2),
                ("conf/app.env", "c3", 3, 0),
                ("other.env", "c4", 2, 0)
            ]
        );
        let later: Vec<(&str, u32, Option<&str>)> = out[0]
            .other_locations
            .iter()
            .map(|l| (l.path.as_str(), l.line, l.commit.as_deref()))
            .collect();
        assert_eq!(later, [("app.env", 2, Some("c2")), ("conf/app.env", 2, Some("c3"))]);
        assert_eq!(out[0].other_paths, ["conf/app.env"]);

        // An occurrence the boundary already held is dropped with all its later versions.
        let paths: Vec<String> = merged(&|f| f.path == "app.env").into_iter().map(|f| f.path).collect();
        assert_eq!(paths, ["conf/app.env", "other.env"]);
    }
}
