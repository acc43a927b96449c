//! The audit log's keyed hash chain. Every line is `{"prev_hash":"hmac-sha256:<P>", ...entry...,
//! "hash":"hmac-sha256:<H>"}` where H is the HMAC-SHA256, under the chain key, of the line's bytes before
//! `,"hash":`, and P is the previous line's H. The first line of a file is a `genesis` record whose P is all zeros.
//!
//! The chain key is derived from the audit HMAC key, which lives in the barrier: whoever can write the file but
//! holds no key cannot make an edited, inserted, removed or reordered line fit the chain, even by recomputing every
//! hash. What a key cannot show is lines cut from the end (the shorter chain is still whole) or a whole log swapped
//! for another one of the same server: the server reports each device's genesis and latest (head) hash through
//! `sys/audit-chain`, and [`verify`] checks those pins when given, so a second party that recorded them catches both.

use std::io::{self, BufRead};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::hash::HmacKey;

pub const HASH_PREFIX: &str = "hmac-sha256:";
/// `prev_hash` of a genesis record.
pub const GENESIS_PREV: &str = "hmac-sha256:0000000000000000000000000000000000000000000000000000000000000000";
const HASH_FIELD: &str = ",\"hash\":\"";
/// What the chain key is derived for (the audit HMAC key is also used to hash values; the two uses stay apart).
const CHAIN_KEY_LABEL: &[u8] = b"leakstop audit chain v1";

/// The key of the hash chain. Zeroized on drop, never printed.
#[derive(Clone)]
pub struct ChainKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(<redacted>)")
    }
}

impl ChainKey {
    /// The chain key of a server: HMAC-SHA256 of a fixed label under the audit HMAC key. Handing it out (to verify
    /// a log) does not hand out the audit HMAC key.
    pub fn derive(audit_key: &HmacKey) -> ChainKey {
        let mut mac = mac(audit_key.as_bytes());
        mac.update(CHAIN_KEY_LABEL);
        ChainKey(Zeroizing::new(mac.finalize().into_bytes().to_vec()))
    }

    /// A key in hex, as `sys/audit-chain` gives it (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<ChainKey, String> {
        let bytes = hex::decode(text.trim()).map_err(|e| format!("not a hex key: {e}"))?;
        if bytes.len() != 32 {
            return Err(format!("the key must be 32 bytes (64 hex digits), got {}", bytes.len()));
        }
        Ok(ChainKey(Zeroizing::new(bytes)))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(&*self.0)
    }

    /// `hmac-sha256:<hex>` of some bytes.
    pub fn digest(&self, bytes: &[u8]) -> String {
        let mut mac = mac(&self.0);
        mac.update(bytes);
        super::hash::prefixed_hex(HASH_PREFIX, &mac.finalize().into_bytes())
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // A key of any length is valid for HMAC, so `new_from_slice` cannot fail here.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// Chain an entry serialized as a JSON object: returns the line (without newline) and its hash.
pub fn chain_line(key: &ChainKey, prev: &str, entry_json: &str) -> (String, String) {
    let inner = entry_json.trim().strip_prefix('{').unwrap_or(entry_json).trim_end();
    let inner = inner.strip_suffix('}').unwrap_or(inner).trim();
    let body = if inner.is_empty() {
        format!("{{\"prev_hash\":\"{prev}\"")
    } else {
        format!("{{\"prev_hash\":\"{prev}\",{inner}")
    };
    let hash = key.digest(body.as_bytes());
    (format!("{body}{HASH_FIELD}{hash}\"}}"), hash)
}

/// The first line of a new audit file and its hash.
pub fn genesis_line(key: &ChainKey, device: &str, time: &str, nonce_hex: &str) -> (String, String) {
    let body = serde_json::json!({ "type": "genesis", "time": time, "device": device, "nonce": nonce_hex });
    chain_line(key, GENESIS_PREV, &body.to_string())
}

/// The hash a line claims for itself, checked or not.
pub fn claimed_hash(line: &[u8]) -> Option<(&str, usize)> {
    let text = std::str::from_utf8(line).ok()?;
    let at = text.rfind(HASH_FIELD)?;
    let claimed = text[at + HASH_FIELD.len()..].strip_suffix("\"}")?;
    Some((claimed, at))
}

/// The hash a line claims for itself, if it has the shape [`chain_line`] writes and the claim is right.
pub fn own_hash(key: &ChainKey, line: &[u8]) -> Result<String, &'static str> {
    let (claimed, at) = claimed_hash(line).ok_or("no `hash` field at the end of the line")?;
    if !claimed.starts_with(HASH_PREFIX) {
        return Err(
            "the line's `hash` is not an HMAC: an unkeyed chain (written by a leakstop before keyed \
                    chains, or forged) cannot be trusted",
        );
    }
    if key.digest(line.get(..at).unwrap_or_default()) != claimed {
        return Err(
            "the line was edited: its content no longer matches its `hash` under the chain key (or the \
                    key is not this log's)",
        );
    }
    Ok(claimed.to_string())
}

/// Hashes recorded from the server (`sys/audit-chain`) that the log must agree with.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pins<'a> {
    /// The hash of line 1: catches a log replaced whole.
    pub genesis: Option<&'a str>,
    /// A line's hash that must still be in the log: catches lines cut from the end.
    pub head: Option<&'a str>,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every line links to the one before it, under the key, and the pins hold.
    Intact {
        lines: u64,
        genesis_hash: String,
        last_hash: String,
    },
    /// The first line (1-based) where the chain does not hold, and why.
    Broken { line: u64, reason: String },
    /// The file does not have the shape of an audit log at all (no chained JSON first line).
    NotAuditLog(String),
}

/// Check the chain of an audit log under `key`, and the `pins` given.
pub fn verify(key: &ChainKey, mut r: impl BufRead, pins: Pins<'_>) -> io::Result<Verdict> {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut prev: Option<String> = None;
    let mut genesis_hash = String::new();
    let mut head_seen = pins.head.is_none();
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let broken = |reason: String| Ok(Verdict::Broken { line: line_no, reason });
        let complete = buf.last() == Some(&b'\n');
        let line = if complete {
            buf.strip_suffix(b"\n").unwrap_or(&buf)
        } else {
            &buf[..]
        };
        let value = serde_json::from_slice::<serde_json::Value>(line).ok();
        let found = value.as_ref().and_then(|v| v.get("prev_hash")).and_then(|v| v.as_str());
        if line_no == 1 && (found.is_none() || claimed_hash(line).is_none()) {
            return Ok(not_an_audit_log());
        }
        if !complete {
            return broken("incomplete line (no trailing newline): the write was cut off".into());
        }
        let Some(value) = &value else {
            return broken("not a JSON object".into());
        };
        let Some(found) = found else {
            return broken("no `prev_hash` field".into());
        };
        let hash = match own_hash(key, line) {
            Ok(h) => h,
            Err(reason) => return broken(reason.into()),
        };
        match &prev {
            None => {
                if value.get("type").and_then(|v| v.as_str()) != Some("genesis") || found != GENESIS_PREV {
                    return broken("the first line is not a genesis record: lines were removed from the start".into());
                }
                genesis_hash = hash.clone();
                if let Some(want) = pins.genesis
                    && want != genesis_hash
                {
                    return broken(format!(
                        "genesis hash {genesis_hash} is not the pinned {want}: this is not the log the server \
                         started, or it was replaced"
                    ));
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
        head_seen |= pins.head == Some(hash.as_str());
        prev = Some(hash);
    }
    match prev {
        None => Ok(Verdict::Broken {
            line: 0,
            reason: "the log is empty (no genesis record)".into(),
        }),
        Some(_) if !head_seen => Ok(Verdict::Broken {
            line: line_no,
            reason: format!(
                "the log ends before the line with the pinned head hash {}: lines were removed from its end",
                pins.head.unwrap_or_default()
            ),
        }),
        Some(last_hash) => Ok(Verdict::Intact {
            lines: line_no,
            genesis_hash,
            last_hash,
        }),
    }
}

fn not_an_audit_log() -> Verdict {
    Verdict::NotAuditLog(
        "not an audit log: its first line is not a chained JSON record (`prev_hash` ... `hash`) as the file audit \
         device writes"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChainKey {
        ChainKey::derive(&HmacKey::new(b"audit key".to_vec()))
    }

    fn log(n: usize) -> String {
        let k = key();
        let mut out = String::new();
        let (g, mut prev) = genesis_line(&k, "file/", "2026-01-01T00:00:00Z", "00ff");
        out.push_str(&g);
        out.push('\n');
        for i in 0..n {
            let (l, h) = chain_line(&k, &prev, &format!("{{\"type\":\"request\",\"n\":{i}}}"));
            prev = h;
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    fn check(text: &str, pins: Pins<'_>) -> Verdict {
        verify(&key(), text.as_bytes(), pins).unwrap()
    }

    #[test]
    fn an_untouched_log_verifies_with_its_pins() {
        let text = log(5);
        let Verdict::Intact {
            lines,
            genesis_hash,
            last_hash,
        } = check(&text, Pins::default())
        else {
            panic!()
        };
        assert_eq!(lines, 6);
        let pins = Pins {
            genesis: Some(&genesis_hash),
            head: Some(&last_hash),
        };
        assert_eq!(check(&text, pins), check(&text, Pins::default()));
    }

    #[test]
    fn another_key_or_a_rewrite_without_the_key_fails() {
        let text = log(3);
        let other = ChainKey::derive(&HmacKey::new(b"another server".to_vec()));
        assert!(matches!(
            verify(&other, text.as_bytes(), Pins::default()).unwrap(),
            Verdict::Broken { line: 1, .. }
        ));
        // Whoever lacks the key can only chain with a key of their own.
        let lines: Vec<&str> = text.lines().collect();
        let mut forged = String::new();
        let (g, mut prev) = genesis_line(&other, "file/", "2026-01-01T00:00:00Z", "00ff");
        forged.push_str(&g);
        forged.push('\n');
        for l in &lines[1..] {
            let body = l.split(",\"hash\":").next().unwrap();
            let inner = body.split_once(',').unwrap().1;
            let (l, h) = chain_line(&other, &prev, &format!("{{{inner}}}"));
            prev = h;
            forged.push_str(&l);
            forged.push('\n');
        }
        assert!(matches!(
            check(&forged, Pins::default()),
            Verdict::Broken { line: 1, .. }
        ));
    }

    #[test]
    fn an_edited_line_is_named() {
        let text = log(5).replace("\"n\":2", "\"n\":9");
        // Line 4 holds n=2.
        assert!(matches!(check(&text, Pins::default()), Verdict::Broken { line: 4, .. }));
    }

    #[test]
    fn removed_and_truncated_lines_are_caught() {
        let text = log(4);
        let lines: Vec<&str> = text.lines().collect();
        let without_third = [&lines[..2], &lines[3..]].concat().join("\n") + "\n";
        assert!(matches!(
            check(&without_third, Pins::default()),
            Verdict::Broken { line: 3, .. }
        ));
        let head_cut = lines[1..].join("\n") + "\n";
        assert!(matches!(
            check(&head_cut, Pins::default()),
            Verdict::Broken { line: 1, .. }
        ));
        let partial = &text[..text.len() - 3];
        assert!(matches!(
            check(partial, Pins::default()),
            Verdict::Broken { line: 5, .. }
        ));
        assert!(matches!(check("", Pins::default()), Verdict::Broken { line: 0, .. }));
        // Cut from the end: whole, but the pinned head is gone.
        let head = own_hash(&key(), lines[4].as_bytes()).unwrap();
        let tail_cut = lines[..3].join("\n") + "\n";
        let pins = Pins {
            genesis: None,
            head: Some(&head),
        };
        assert!(matches!(check(&tail_cut, Pins::default()), Verdict::Intact { .. }));
        assert!(matches!(check(&tail_cut, pins), Verdict::Broken { line: 3, .. }));
    }

    #[test]
    fn a_wrong_genesis_pin_is_caught() {
        let pins = Pins {
            genesis: Some("hmac-sha256:abc"),
            head: None,
        };
        assert!(matches!(check(&log(1), pins), Verdict::Broken { line: 1, .. }));
    }

    #[test]
    fn other_files_are_not_audit_logs() {
        for text in ["hello world\n", "{\"a\":1}\n", "[1,2]\n"] {
            assert!(
                matches!(check(text, Pins::default()), Verdict::NotAuditLog(_)),
                "{text}"
            );
        }
    }

    #[test]
    fn chain_line_handles_empty_objects() {
        let k = key();
        let (l, h) = chain_line(&k, "h", "{}");
        assert_eq!(l, format!("{{\"prev_hash\":\"h\",\"hash\":\"{h}\"}}"));
        assert_eq!(own_hash(&k, l.as_bytes()), Ok(h));
        let (l, _) = chain_line(&k, "h", "{\"a\":1}");
        assert!(
            l.starts_with("{\"prev_hash\":\"h\",\"a\":1,\"hash\":\"hmac-sha256:"),
            "{l}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(&l).is_ok());
        let k2 = ChainKey::from_hex(&k.to_hex()).unwrap();
        assert_eq!(k2.digest(b"x"), k.digest(b"x"));
        assert!(ChainKey::from_hex("abcd").is_err());
        assert_eq!(format!("{k:?}"), "ChainKey(<redacted>)");
    }
}
