//! The audit log's hash chain. Every line is `{"prev_hash":"sha256:<P>", ...entry..., "hash":"sha256:<H>"}` where
//! H is the SHA-256 of the line's bytes before `,"hash":` and P is the previous line's H. The first line of a file
//! is a `genesis` record whose P is all zeros; its H is recorded by the server. So an edited line fails its own
//! hash, a line edited with a recomputed hash (or an inserted, removed or reordered one) breaks the next line's
//! `prev_hash`, and a cut-off head no longer starts with a genesis record: [`verify`] names the first bad line.

use std::io::{self, BufRead};

use sha2::{Digest, Sha256};

pub const HASH_PREFIX: &str = "sha256:";
/// `prev_hash` of a genesis record.
pub const GENESIS_PREV: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
const HASH_FIELD: &str = ",\"hash\":\"";

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    super::hash::prefixed_hex(HASH_PREFIX, &Sha256::digest(bytes))
}

/// Chain an entry serialized as a JSON object: returns the line (without newline) and its hash.
pub fn chain_line(prev: &str, entry_json: &str) -> (String, String) {
    let inner = entry_json.trim().strip_prefix('{').unwrap_or(entry_json).trim_end();
    let inner = inner.strip_suffix('}').unwrap_or(inner).trim();
    let body = if inner.is_empty() {
        format!("{{\"prev_hash\":\"{prev}\"")
    } else {
        format!("{{\"prev_hash\":\"{prev}\",{inner}")
    };
    let hash = digest(body.as_bytes());
    (format!("{body}{HASH_FIELD}{hash}\"}}"), hash)
}

/// The first line of a new audit file and its hash.
pub fn genesis_line(device: &str, time: &str, nonce_hex: &str) -> (String, String) {
    let body = serde_json::json!({ "type": "genesis", "time": time, "device": device, "nonce": nonce_hex });
    chain_line(GENESIS_PREV, &body.to_string())
}

/// The hash a line claims for itself, if it has the shape [`chain_line`] writes and the claim is right.
pub fn own_hash(line: &[u8]) -> Result<String, &'static str> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8")?;
    let at = text.rfind(HASH_FIELD).ok_or("no `hash` field at the end of the line")?;
    let claimed = text[at + HASH_FIELD.len()..]
        .strip_suffix("\"}")
        .ok_or("no `hash` field at the end of the line")?;
    if digest(&text.as_bytes()[..at]) != claimed {
        return Err("the line was edited: its content no longer matches its `hash`");
    }
    Ok(claimed.to_string())
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every line links to the one before it.
    Intact {
        lines: u64,
        genesis_hash: String,
        last_hash: String,
    },
    /// The first line (1-based) where the chain does not hold, and why.
    Broken { line: u64, reason: String },
}

/// Check the chain of an audit log. `expected_genesis`, when given, must equal the hash of line 1 (the value the
/// server recorded when it created the file), so a log rewritten from the top is caught too.
pub fn verify(mut r: impl BufRead, expected_genesis: Option<&str>) -> io::Result<Verdict> {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut prev: Option<String> = None;
    let mut genesis_hash = String::new();
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let broken = |reason: String| Ok(Verdict::Broken { line: line_no, reason });
        let Some(line) = buf.strip_suffix(b"\n") else {
            return broken("incomplete line (no trailing newline): the write was cut off".into());
        };
        let value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return broken(format!("not a JSON object: {e}")),
        };
        let hash = match own_hash(line) {
            Ok(h) => h,
            Err(reason) => return broken(reason.into()),
        };
        let Some(found) = value.get("prev_hash").and_then(|v| v.as_str()) else {
            return broken("no `prev_hash` field".into());
        };
        match &prev {
            None => {
                if value.get("type").and_then(|v| v.as_str()) != Some("genesis") || found != GENESIS_PREV {
                    return broken("the first line is not a genesis record: lines were removed from the start".into());
                }
                genesis_hash = hash.clone();
                if let Some(want) = expected_genesis
                    && want != genesis_hash
                {
                    return broken(format!("genesis hash {genesis_hash} is not the recorded {want}"));
                }
            }
            Some(p) if p != found => {
                return broken(format!(
                    "`prev_hash` is {found} but the previous line's hash is {p}: lines were inserted, removed or \
                     reordered here, or the previous line was rewritten"
                ));
            }
            Some(_) => {}
        }
        prev = Some(hash);
    }
    match prev {
        None => Ok(Verdict::Broken {
            line: 0,
            reason: "the log is empty (no genesis record)".into(),
        }),
        Some(last_hash) => Ok(Verdict::Intact {
            lines: line_no,
            genesis_hash,
            last_hash,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> String {
        let mut out = String::new();
        let (g, mut prev) = genesis_line("file/", "2026-01-01T00:00:00Z", "00ff");
        out.push_str(&g);
        out.push('\n');
        for i in 0..n {
            let (l, h) = chain_line(&prev, &format!("{{\"type\":\"request\",\"n\":{i}}}"));
            prev = h;
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    #[test]
    fn an_untouched_log_verifies() {
        let text = log(5);
        let Verdict::Intact {
            lines, genesis_hash, ..
        } = verify(text.as_bytes(), None).unwrap()
        else {
            panic!()
        };
        assert_eq!(lines, 6);
        assert_eq!(
            verify(text.as_bytes(), Some(&genesis_hash)).unwrap(),
            verify(text.as_bytes(), None).unwrap()
        );
    }

    #[test]
    fn an_edited_line_is_named() {
        let text = log(5).replace("\"n\":2", "\"n\":9");
        // Line 4 holds n=2.
        assert!(matches!(
            verify(text.as_bytes(), None).unwrap(),
            Verdict::Broken { line: 4, .. }
        ));
        // Rewritten with a fresh own hash, the edit shows at the next line.
        let lines: Vec<String> = log(5).lines().map(String::from).collect();
        let prev3 = own_hash(lines[2].as_bytes()).unwrap();
        let (forged, _) = chain_line(&prev3, "{\"type\":\"request\",\"n\":9}");
        let mut forged_log = lines.clone();
        forged_log[3] = forged;
        let text = forged_log.join("\n") + "\n";
        assert!(matches!(
            verify(text.as_bytes(), None).unwrap(),
            Verdict::Broken { line: 5, .. }
        ));
    }

    #[test]
    fn removed_and_truncated_lines_are_caught() {
        let text = log(4);
        let lines: Vec<&str> = text.lines().collect();
        let without_third = [&lines[..2], &lines[3..]].concat().join("\n") + "\n";
        assert!(matches!(
            verify(without_third.as_bytes(), None).unwrap(),
            Verdict::Broken { line: 3, .. }
        ));
        let head_cut = lines[1..].join("\n") + "\n";
        assert!(matches!(
            verify(head_cut.as_bytes(), None).unwrap(),
            Verdict::Broken { line: 1, .. }
        ));
        let partial = &text[..text.len() - 3];
        assert!(matches!(
            verify(partial.as_bytes(), None).unwrap(),
            Verdict::Broken { line: 5, .. }
        ));
        assert!(matches!(
            verify(&b""[..], None).unwrap(),
            Verdict::Broken { line: 0, .. }
        ));
    }

    #[test]
    fn a_wrong_genesis_anchor_is_caught() {
        let v = verify(log(1).as_bytes(), Some("sha256:abc")).unwrap();
        assert!(matches!(v, Verdict::Broken { line: 1, .. }));
    }

    #[test]
    fn chain_line_handles_empty_objects() {
        let (l, h) = chain_line("h", "{}");
        assert_eq!(l, format!("{{\"prev_hash\":\"h\",\"hash\":\"{h}\"}}"));
        assert_eq!(own_hash(l.as_bytes()), Ok(h));
        let (l, _) = chain_line("h", "{\"a\":1}");
        assert!(l.starts_with("{\"prev_hash\":\"h\",\"a\":1,\"hash\":\"sha256:"), "{l}");
        assert!(serde_json::from_str::<serde_json::Value>(&l).is_ok());
    }
}
