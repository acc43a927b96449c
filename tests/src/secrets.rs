//! Realistic secrets made fresh for each test, so no live-looking credential is committed to this repository
//! and a test can never pass because of one memorized value.

use base64::Engine as _;
use rand::Rng as _;
use rand::distributions::Alphanumeric;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// CRC-32 (IEEE), as GitHub's and leakstop's token checksums use.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `n` as base62 (0-9A-Za-z), left-padded with '0' to `width`.
pub fn base62(mut n: u64, width: usize) -> String {
    let mut out = Vec::new();
    while n > 0 {
        out.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// A GitHub classic personal access token with a valid checksum: `ghp_` + 30 random + 6 base62 CRC32.
pub fn github_pat() -> String {
    let body = random_alnum(30);
    format!("ghp_{body}{}", base62(u64::from(crc32(body.as_bytes())), 6))
}

/// An AWS access key id (`AKIA` + 16 of A-Z2-7) and a 40-character secret access key.
pub fn aws_key_pair() -> (String, String) {
    const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::thread_rng();
    let id: String = (0..16).map(|_| B32[rng.gen_range(0..32)] as char).collect();
    let secret = base64::engine::general_purpose::STANDARD.encode(rng.r#gen::<[u8; 30]>());
    (format!("AKIA{id}"), secret)
}

/// A PEM private key block with a random body of realistic length.
pub fn rsa_private_key_pem() -> String {
    let mut bytes = vec![0u8; 1190];
    rand::thread_rng().fill(&mut bytes[..]);
    // DER of an RSA key starts with SEQUENCE and the version INTEGER 0.
    bytes[..4].copy_from_slice(&[0x30, 0x82, 0x04, 0xa2]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
        body.join("\n")
    )
}
