//! Structured checks implemented in code: a candidate must pass its rule's check to be reported. Checksums turn
//! "looks like a token" into "is a token", which is what keeps the checked rules free of false positives.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// A check named by a rule's `check` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`): 30 base62 chars then 6 base62 chars of CRC32(those 30).
    GithubCrc32,
    /// npm access tokens (`npm_`): same scheme as GitHub's.
    NpmCrc32,
    /// leakstop credentials (`lks<k>_`): 36 base62 chars then 6 base62 chars of CRC32(prefix + those 36).
    LeakstopCrc32,
    /// JSON Web Token: header is base64url JSON with `"alg"`, payload is base64url JSON (JWS) or 5 parts (JWE).
    Jwt,
    /// PyPI API token: `pypi-` then a base64url macaroon (binary v2 format) issued for pypi.org.
    PypiMacaroon,
    /// Value decodes as base64 (standard or url-safe) to at least 12 bytes, e.g. secrets that must be keys.
    Base64,
    /// HTTP Basic credentials: base64 of `user:password`, printable.
    BasicAuth,
    /// Grafana service account token (`glsa_`): 32 base62 chars, `_`, then CRC32 in 8 lowercase hex digits of the
    /// token before that `_`.
    GrafanaCrc32,
    /// Grafana Cloud access policy token (`glc_`): base64 of a JSON object naming the key (`"k"`) and its
    /// organisation (`"o"`).
    GrafanaCloud,
    /// Shape of a machine-generated secret, for generic rules: letters and digits mixed, not a UUID, not an
    /// identifier or dotted/kebab-case name (`prod-db-credentials-2`, `config.secret_key`), not a path.
    SecretShape,
}

/// Every check name, for error messages.
pub const CHECK_NAMES: &[&str] = &[
    "github-crc32",
    "npm-crc32",
    "leakstop-crc32",
    "jwt",
    "pypi-macaroon",
    "grafana-crc32",
    "grafana-cloud",
    "base64",
    "basic-auth",
    "secret-shape",
];

impl Check {
    pub fn from_name(name: &str) -> Option<Check> {
        Some(match name {
            "github-crc32" => Check::GithubCrc32,
            "npm-crc32" => Check::NpmCrc32,
            "leakstop-crc32" => Check::LeakstopCrc32,
            "jwt" => Check::Jwt,
            "pypi-macaroon" => Check::PypiMacaroon,
            "grafana-crc32" => Check::GrafanaCrc32,
            "grafana-cloud" => Check::GrafanaCloud,
            "base64" => Check::Base64,
            "basic-auth" => Check::BasicAuth,
            "secret-shape" => Check::SecretShape,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Check::GithubCrc32 => "github-crc32",
            Check::NpmCrc32 => "npm-crc32",
            Check::LeakstopCrc32 => "leakstop-crc32",
            Check::Jwt => "jwt",
            Check::PypiMacaroon => "pypi-macaroon",
            Check::GrafanaCrc32 => "grafana-crc32",
            Check::GrafanaCloud => "grafana-cloud",
            Check::Base64 => "base64",
            Check::BasicAuth => "basic-auth",
            Check::SecretShape => "secret-shape",
        }
    }

    /// Whether `secret` (the rule's secret group) passes this check (fully or in part).
    pub fn verify(self, secret: &[u8]) -> bool {
        self.judge(secret) != Verdict::Fail
    }

    /// Whether the rule's confidence verifies this check's format (checksums, structure): verified checks are
    /// what the derived confidence counts as "high".
    pub fn verifies_format(self) -> bool {
        !matches!(self, Check::Base64 | Check::BasicAuth | Check::SecretShape)
    }

    /// The check's verdict on `secret`; `Partial` is a format that can only be verified in part (a JWT whose
    /// payload is not readable JSON), reported at low confidence.
    pub fn judge(self, secret: &[u8]) -> Verdict {
        let pass = match self {
            Check::Jwt => return jwt_verdict(secret),
            Check::GrafanaCrc32 => grafana_sa_token(secret),
            Check::GrafanaCloud => grafana_cloud_token(secret),
            Check::GithubCrc32 | Check::NpmCrc32 => prefixed_crc_token(secret, 30, false),
            Check::LeakstopCrc32 => leakstop_token_kind(secret).is_some(),
            Check::PypiMacaroon => is_pypi_macaroon(secret),
            Check::Base64 => decode_base64_any(secret).is_some_and(|d| d.len() >= 12),
            Check::BasicAuth => decode_base64_any(secret).is_some_and(|d| {
                d.len() >= 3
                    && d.iter().all(|b| (0x20..0x7f).contains(b))
                    && d.iter()
                        .position(|&b| b == b':')
                        .is_some_and(|i| i > 0 && i + 1 < d.len() && !is_sample_password(&d[i + 1..]))
            }),
            Check::SecretShape => secret_shape(secret),
        };
        if pass { Verdict::Pass } else { Verdict::Fail }
    }
}

/// The password half of documentation Basic credentials (`user:password`, RFC 7617's `Aladdin:open sesame`): a
/// placeholder, or a word that only names the field.
fn is_sample_password(password: &[u8]) -> bool {
    let lower = password.to_ascii_lowercase();
    crate::guard::is_placeholder(password)
        || matches!(
            lower.as_slice(),
            b"password" | b"pass" | b"passwd" | b"pwd" | b"secret" | b"test" | b"guest" | b"open sesame"
        )
}

/// What a check concluded about a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Plausible, but the format could only be verified in part: keep the finding at low confidence.
    Partial,
    Fail,
}

/// What kind of leakstop credential `token` is (`lks<k>_...` with a valid checksum), `None` if it is not one.
pub fn leakstop_token_kind(token: &[u8]) -> Option<&'static str> {
    leakstop_proto::token::parse(token).map(leakstop_proto::token::Kind::describe)
}

/// `<prefix>_` + `random` base62 chars + 6 base62 checksum chars of CRC32(random) (GitHub's and npm's scheme).
fn prefixed_crc_token(token: &[u8], random: usize, include_prefix: bool) -> bool {
    let Some(us) = token.iter().rposition(|&b| b == b'_') else {
        return false;
    };
    let body = &token[us + 1..];
    if body.len() != random + 6 || !body.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let covered = if include_prefix {
        &token[..us + 1 + random]
    } else {
        &body[..random]
    };
    base62_6(crc32(covered)).as_slice() == &body[random..]
}

pub use leakstop_proto::token::{base62_6, crc32};

fn decode_base64_any(s: &[u8]) -> Option<Vec<u8>> {
    let trimmed: &[u8] = {
        let end = s.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
        &s[..end]
    };
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
        .ok()
}

fn is_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

fn secret_shape(s: &[u8]) -> bool {
    let has_digit = s.iter().any(u8::is_ascii_digit);
    let has_alpha = s.iter().any(u8::is_ascii_alphabetic);
    if !has_digit || !has_alpha || is_uuid(s) {
        return false;
    }
    if s.contains(&b'/') && !s.contains(&b'+') && s.split(|&b| b == b'/').filter(|p| !p.is_empty()).count() >= 3 {
        return false; // a path, not base64
    }
    // Names: most separator-delimited segments are plain words (`prod-db-credentials-2`, `app.secret_key_v2`).
    let segments: Vec<&[u8]> = s
        .split(|b| matches!(b, b'-' | b'_' | b'.' | b' '))
        .filter(|p| !p.is_empty())
        .collect();
    if segments.len() >= 2 {
        let wordy: usize = segments
            .iter()
            .filter(|p| {
                // A word in one case, maybe with a trailing number: `credentials`, `INTERNAL`, `SHA256`, `Prod`.
                let letters = p.iter().take_while(|b| b.is_ascii_alphabetic()).count();
                let (word, digits) = p.split_at(letters);
                letters >= 2
                    && p.len() >= 3
                    && digits.iter().all(u8::is_ascii_digit)
                    && (word.iter().all(u8::is_ascii_lowercase)
                        || word.iter().all(u8::is_ascii_uppercase)
                        || (word[0].is_ascii_uppercase() && word[1..].iter().all(u8::is_ascii_lowercase)))
            })
            .map(|p| p.len())
            .sum();
        let total: usize = segments.iter().map(|p| p.len()).sum();
        if wordy * 2 >= total {
            return false;
        }
    }
    true
}

fn is_json_object(bytes: &[u8]) -> bool {
    let t = bytes.trim_ascii();
    t.first() == Some(&b'{') && t.last() == Some(&b'}')
}

fn jwt_verdict(token: &[u8]) -> Verdict {
    let parts: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
    if parts.len() != 3 && parts.len() != 5 {
        return Verdict::Fail;
    }
    let Some(header) = decode_base64_any(parts[0]) else {
        return Verdict::Fail;
    };
    if !is_json_object(&header) || !header.windows(5).any(|w| w == b"\"alg\"") {
        return Verdict::Fail;
    }
    if parts.len() == 5 {
        // JWE: the header also names the content encryption.
        return if header.windows(5).any(|w| w == b"\"enc\"") {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
    }
    // JWS: the payload is a JSON claims set; an unsigned `alg: none` token still carries claims worth protecting.
    // A payload that decodes but is not JSON (JWS may sign any bytes) keeps the token, at low confidence.
    match decode_base64_any(parts[1]) {
        Some(p) if is_json_object(&p) => Verdict::Pass,
        Some(p) if !p.is_empty() && !parts[2].is_empty() => Verdict::Partial,
        _ => Verdict::Fail,
    }
}

fn grafana_sa_token(token: &[u8]) -> bool {
    // glsa_<32 base62>_<8 hex>: the checksum covers everything before the last `_`; a secret-only checksum is
    // accepted too, as older generators computed it.
    let Some(us) = token.iter().rposition(|&b| b == b'_') else {
        return false;
    };
    let (head, sum) = (&token[..us], &token[us + 1..]);
    let Some(secret) = head.strip_prefix(b"glsa_") else {
        return false;
    };
    if secret.len() != 32 || !secret.iter().all(u8::is_ascii_alphanumeric) || sum.len() != 8 {
        return false;
    }
    let Ok(sum) = std::str::from_utf8(sum) else {
        return false;
    };
    let Ok(want) = u32::from_str_radix(sum, 16) else {
        return false;
    };
    crc32(head) == want || crc32(secret) == want
}

fn grafana_cloud_token(token: &[u8]) -> bool {
    let Some(body) = token.strip_prefix(b"glc_") else {
        return false;
    };
    let Some(raw) = decode_base64_any(body) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) else {
        return false;
    };
    let field = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    field("o") && field("k")
}

fn is_pypi_macaroon(token: &[u8]) -> bool {
    let Some(body) = token.strip_prefix(b"pypi-") else {
        return false;
    };
    let Some(raw) = decode_base64_any(body) else {
        return false;
    };
    macaroon_v2_for_pypi(&raw)
}

/// Macaroon v2 binary (libmacaroons' format): version byte 2; field 1 (location, a varint length then the bytes)
/// naming pypi.org or test.pypi.org; field 2 (identifier) non-empty and printable; then the header's end byte 0.
/// A random base64 body after the well-known `pypi-AgEIcHlwaS5vcmc` prefix fails the identifier step.
fn macaroon_v2_for_pypi(raw: &[u8]) -> bool {
    fn field(raw: &[u8], at: usize, kind: u8) -> Option<(&[u8], usize)> {
        if *raw.get(at)? != kind {
            return None;
        }
        let (len, used) = varint(raw.get(at + 1..)?)?;
        let start = at + 1 + used;
        let data = raw.get(start..start.checked_add(len)?)?;
        Some((data, start + len))
    }
    fn varint(b: &[u8]) -> Option<(usize, usize)> {
        let mut v: usize = 0;
        for (i, byte) in b.iter().enumerate().take(4) {
            v |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((v, i + 1));
            }
        }
        None
    }
    if raw.first() != Some(&0x02) {
        return false;
    }
    let Some((location, next)) = field(raw, 1, 0x01) else {
        return false;
    };
    if location != b"pypi.org" && location != b"test.pypi.org" {
        return false;
    }
    let Some((id, next)) = field(raw, next, 0x02) else {
        return false;
    };
    !id.is_empty() && id.iter().all(|b| (0x20..0x7f).contains(b)) && raw.get(next) == Some(&0x00)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_github(prefix: &str, random: &str) -> String {
        let sum = base62_6(crc32(random.as_bytes()));
        format!(
            "{prefix}_{random}{}",
            std::str::from_utf8(&sum).expect("base62 is ASCII")
        )
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn github_checksum_accepts_valid_and_rejects_one_char_change() {
        let t = make_github("ghp", "Qm3kT9vXw2ZpL7sR4nB8cY1dF6hJ0a");
        assert!(Check::GithubCrc32.verify(t.as_bytes()), "{t}");
        let mut bad = t.clone().into_bytes();
        bad[10] = if bad[10] == b'a' { b'b' } else { b'a' };
        assert!(!Check::GithubCrc32.verify(&bad));
    }

    #[test]
    fn leakstop_token_kinds() {
        let body = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8";
        for (k, kind) in [
            ('s', "service token"),
            ('b', "batch token"),
            ('d', "dynamic credential"),
        ] {
            let head = format!("lks{k}_{body}");
            let sum = base62_6(crc32(head.as_bytes()));
            let token = format!("{head}{}", std::str::from_utf8(&sum).expect("ASCII"));
            assert_eq!(leakstop_token_kind(token.as_bytes()), Some(kind));
        }
        assert_eq!(leakstop_token_kind(format!("lkss_{body}000000").as_bytes()), None);
    }

    #[test]
    fn secret_shape_rejects_names_and_uuids() {
        for bad in [
            "prod-db-credentials-2",
            "app.secret_key_v2",
            "550e8400-e29b-41d4-a716-446655440000",
            "onlyletters",
        ] {
            assert!(!Check::SecretShape.verify(bad.as_bytes()), "{bad}");
        }
        for good in [
            "hJ8s2kPq9LmZ0vXw4RtY",
            "a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4",
            "Zk3_pQ9-vX2wR7tY4uI1oP6a",
        ] {
            assert!(Check::SecretShape.verify(good.as_bytes()), "{good}");
        }
    }

    #[test]
    fn jwt_check_needs_alg_header() {
        let good =
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiaWF0IjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlLWJ5dGVz";
        assert!(Check::Jwt.verify(good.as_bytes()));
        let no_alg = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ1c2VyLTQyIn0.c2ln";
        assert!(!Check::Jwt.verify(no_alg.as_bytes()));
    }
}

#[cfg(test)]
mod format_checks {
    use super::*;

    /// A Grafana service account token built as Grafana builds one: CRC32 of `glsa_<secret>`, 8 hex digits.
    fn glsa(secret: &str) -> String {
        let head = format!("glsa_{secret}");
        format!("{head}_{:08x}", crc32(head.as_bytes()))
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// A v2 macaroon: location, identifier, end of header, one caveat, end, then a 32-byte signature.
    fn macaroon(location: &[u8], identifier: &[u8]) -> String {
        let mut raw = vec![0x02, 0x01, location.len() as u8];
        raw.extend_from_slice(location);
        raw.extend_from_slice(&[0x02, identifier.len() as u8]);
        raw.extend_from_slice(identifier);
        raw.push(0x00);
        let caveat = br#"{"version": 1, "permissions": "user"}"#;
        raw.extend_from_slice(&[0x02, caveat.len() as u8]);
        raw.extend_from_slice(caveat);
        raw.extend_from_slice(&[0x00, 0x00, 0x06, 32]);
        raw.extend((0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11)));
        format!("pypi-{}", URL_SAFE_NO_PAD.encode(raw))
    }

    #[test]
    fn grafana_service_account_checksum_is_verified() {
        let t = glsa("Vd3kR8qLm2ZpT7sW4nB9cY1xF6hJ0aQe");
        assert!(Check::GrafanaCrc32.verify(t.as_bytes()), "{t}");
        // One hex digit of the checksum changed, or one character of the secret: both rejected.
        let mut bad = t.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
        assert!(!Check::GrafanaCrc32.verify(&bad));
        let mut bad = t.into_bytes();
        bad[7] = if bad[7] == b'a' { b'b' } else { b'a' };
        assert!(!Check::GrafanaCrc32.verify(&bad));
    }

    #[test]
    fn grafana_cloud_token_must_decode_to_a_json_key_object() {
        let good = format!(
            "glc_{}",
            b64(br#"{"o":"402211","n":"ci","k":"p4Lr8sQ2vX9mZ1tY6wB3nC7e","m":{"r":"eu"}}"#)
        );
        assert!(Check::GrafanaCloud.verify(good.as_bytes()), "{good}");
        let no_key = format!("glc_{}", b64(br#"{"o":"402211","n":"ci"}"#));
        assert!(!Check::GrafanaCloud.verify(no_key.as_bytes()));
        let random = format!(
            "glc_{}",
            b64(&(0..60u8).map(|i| i.wrapping_mul(97) ^ 0x5a).collect::<Vec<_>>())
        );
        assert!(!Check::GrafanaCloud.verify(random.as_bytes()));
    }

    #[test]
    fn pypi_macaroon_needs_location_and_identifier() {
        let good = macaroon(b"pypi.org", b"4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f");
        assert!(good.starts_with("pypi-AgEIcHlwaS5vcmc"), "{good}");
        assert!(Check::PypiMacaroon.verify(good.as_bytes()));
        assert!(Check::PypiMacaroon.verify(macaroon(b"test.pypi.org", b"id-1").as_bytes()));
        assert!(!Check::PypiMacaroon.verify(macaroon(b"pypi.example", b"id-1").as_bytes()));
        assert!(!Check::PypiMacaroon.verify(macaroon(b"pypi.org", b"").as_bytes()));
        // The well-known prefix followed by random base64: what a made-up token looks like.
        let made_up = format!("pypi-AgEIcHlwaS5vcmc{}", "Qm9vZ3VzVG9rZW5Cb2R5".repeat(6));
        assert!(!Check::PypiMacaroon.verify(made_up.as_bytes()));
    }

    #[test]
    fn jwt_with_an_opaque_payload_is_partial_and_without_alg_fails() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"svc-7"}"#);
        let opaque = URL_SAFE_NO_PAD.encode([0x9c, 0x01, 0xfe, 0x33, 0x70]);
        assert_eq!(
            Check::Jwt.judge(format!("{header}.{claims}.c2ln").as_bytes()),
            Verdict::Pass
        );
        assert_eq!(
            Check::Jwt.judge(format!("{header}.{opaque}.c2ln").as_bytes()),
            Verdict::Partial
        );
        assert!(Check::Jwt.verify(format!("{header}.{opaque}.c2ln").as_bytes()));
        let no_alg = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT"}"#);
        assert_eq!(
            Check::Jwt.judge(format!("{no_alg}.{claims}.c2ln").as_bytes()),
            Verdict::Fail
        );
    }
}
