//! False-positive guards shared by every rule: entropy and placeholder detection.

/// Shannon entropy of `bytes` in bits per byte (0 for empty input).
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Words that mark documentation values, templates and fixtures rather than credentials. Matched
/// case-insensitively as substrings of the secret.
const PLACEHOLDER_WORDS: &[&str] = &[
    "changeme",
    "change_me",
    "change-me",
    "example",
    "placeholder",
    "your_",
    "your-",
    "yourapi",
    "yourkey",
    "yoursecret",
    "yourtoken",
    "yourpass",
    "dummy",
    "redacted",
    "xxxx",
    "****",
    "....",
    "notreal",
    "not_real",
    "not-real",
    "fake_",
    "fakekey",
    "faketoken",
    "fakesecret",
    "insert_",
    "insert-",
    "replace_me",
    "replaceme",
    "secret_here",
    "token_here",
    "key_here",
    "password_here",
    "sample_",
    "samplekey",
    "opensesame",
];

/// Whether `secret` looks like a placeholder rather than a real credential: template syntax (`${VAR}`, `{{ x }}`,
/// `<your-key>`, `%(x)s`, `$(cmd)`), a documentation word (`changeme`, `example`, `your_api_key`, `xxxx`, ...), a
/// single repeated character or a short repeated unit, or a run of sequential characters (`0123456789`, `abcdef...`)
/// making up most of it.
pub fn is_placeholder(secret: &[u8]) -> bool {
    if secret.is_empty() {
        return true;
    }
    if has_template_syntax(secret) {
        return true;
    }
    let lower: Vec<u8> = secret.iter().map(u8::to_ascii_lowercase).collect();
    if PLACEHOLDER_WORDS.iter().any(|w| contains(&lower, w.as_bytes())) {
        return true;
    }
    is_repetitive(&lower) || is_mostly_sequential(&lower) || is_repetitive(body_after_prefix(&lower))
}

/// What follows a provider prefix (`pul-`, `rubygems_`, `sk_live_`): the value after the last `_` or `-` among its
/// first 16 bytes, when everything before it is letters, digits and separators. A prefix followed by `000…` is a
/// documentation sample of that format, not a credential.
fn body_after_prefix(s: &[u8]) -> &[u8] {
    let window = &s[..s.len().min(16)];
    match window.iter().rposition(|b| matches!(b, b'_' | b'-')) {
        Some(i)
            if window[..i]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')) =>
        {
            let body = &s[i + 1..];
            // Short tails are common in real values (`key-ab12`); judge only a body that carries the secret.
            if body.len() >= 12 { body } else { &[] }
        }
        _ => &[],
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

fn has_template_syntax(s: &[u8]) -> bool {
    contains(s, b"${")
        || contains(s, b"{{")
        || contains(s, b"$(")
        || contains(s, b"%(")
        || contains(s, b"<%")
        || (s.first() == Some(&b'<') && s.last() == Some(&b'>'))
        || (s.first() == Some(&b'{') && s.last() == Some(&b'}'))
        || (s.first() == Some(&b'[') && s.last() == Some(&b']'))
        || s.starts_with(b"%s")
        || (s.first() == Some(&b'$')
            && s.len() > 1
            && s[1..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || *b == b'_' || b.is_ascii_digit()))
}

/// One character repeated, or a unit of up to 4 characters repeated (`abcabcabc`, `1212121212`).
fn is_repetitive(s: &[u8]) -> bool {
    if s.len() < 4 {
        return false;
    }
    (1..=4).any(|unit| s.len() >= unit * 3 && s.iter().enumerate().all(|(i, b)| *b == s[i % unit]))
}

/// Runs of ascending or descending consecutive characters (`123456`, `abcdef`, `fedcba`) covering over half of a
/// value of at least 8 characters.
fn is_mostly_sequential(s: &[u8]) -> bool {
    if s.len() < 8 {
        return false;
    }
    let mut in_runs = 0usize;
    let mut run = 1usize;
    for w in s.windows(2) {
        let d = i16::from(w[1]) - i16::from(w[0]);
        if (d == 1 || d == -1) && w[0].is_ascii_alphanumeric() && w[1].is_ascii_alphanumeric() {
            run += 1;
        } else {
            if run >= 4 {
                in_runs += run;
            }
            run = 1;
        }
    }
    if run >= 4 {
        in_runs += run;
    }
    in_runs * 2 > s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_and_constant_data() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "changeme",
            "${DB_PASSWORD}",
            "{{ secrets.TOKEN }}",
            "<your-api-key>",
            "your_api_key_goes_here",
            "xxxxxxxxxxxxxxxx",
            "AKIAIOSFODNN7EXAMPLE",
            "dummy-token-value",
            "aaaaaaaaaaaaaaaa",
            "abcabcabcabc",
            "0123456789abcdef",
            "$SECRET_TOKEN",
            "%(password)s",
            "pul-0000000000000000000000000000000000000000",
            "rubygems_000000000000000000000000000000000000000000000000",
            "sk_live_000000000000000000000000",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p} should be a placeholder");
        }
    }

    #[test]
    fn real_looking_values_are_not_placeholders() {
        for s in [
            "hJ8s2kPq9LmZ0vXw4RtY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ9a8b7c6d",
            "s3cr3tP4ssw0rd!Zq",
            "pul-2626dc8e74a0d80e2c490c8eddeccdb60b2f0abd",
            "rubygems_bb672de172a2d38d0dba9089dae755702dbceea97414070c",
            "key-0000",
        ] {
            assert!(!is_placeholder(s.as_bytes()), "{s} should not be a placeholder");
        }
    }
}
