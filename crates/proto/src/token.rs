//! leakstop credentials are scannable by construction: `lks<kind>_` + 36 random base62 characters + a 6-character
//! base62 CRC32 of everything before it (47 characters). The prefix names the issuer and the kind, the checksum lets
//! a scanner tell a real credential from a look-alike without asking the server. Accessors (`lksa.` + 24 base62)
//! identify a token without granting anything.

use rand::Rng;

/// What a credential is, by the letter after `lks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `lkss_`: a service token.
    Service,
    /// `lksb_`: a batch token.
    Batch,
    /// `lksd_`: a dynamic credential handed out by an engine.
    Dynamic,
    /// `lksu_`: unseal or recovery material.
    Unseal,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::Service => b's',
            Kind::Batch => b'b',
            Kind::Dynamic => b'd',
            Kind::Unseal => b'u',
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::Service => "service token",
            Kind::Batch => "batch token",
            Kind::Dynamic => "dynamic credential",
            Kind::Unseal => "unseal/recovery material",
        }
    }
}

/// Length of every credential.
pub const LEN: usize = 47;
const RANDOM: usize = 36;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_base62(n: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..n).map(|_| BASE62[rng.gen_range(0..62)] as char).collect()
}

/// A fresh credential of `kind`.
pub fn mint(kind: Kind) -> String {
    let mut t = String::with_capacity(LEN);
    t.push_str("lks");
    t.push(kind.letter() as char);
    t.push('_');
    t.push_str(&random_base62(RANDOM));
    let sum = base62_6(crc32(t.as_bytes()));
    t.push_str(std::str::from_utf8(&sum).unwrap_or_default());
    t
}

/// A fresh accessor (`lksa.` + 24 base62).
pub fn accessor() -> String {
    format!("lksa.{}", random_base62(24))
}

/// An unseal key share (or recovery key) as an `lksu_` credential: `lksu_` + the share in lowercase hex + the
/// 6-character base62 CRC32 of everything before it. A share is longer than a token's random part, so this form
/// is longer than [`LEN`]; the checksum covers the share, so a scanner finds a leaked share exactly and
/// `sys/unseal` tells a mistyped share from one of another server.
pub fn share_credential(share: &[u8]) -> String {
    let mut t = String::with_capacity(5 + 2 * share.len() + 6);
    t.push_str("lksu_");
    t.push_str(&hex::encode(share));
    let sum = base62_6(crc32(t.as_bytes()));
    t.push_str(std::str::from_utf8(&sum).unwrap_or_default());
    t
}

/// Shortest share in [`share_credential`] form, in hex digits (a 16-byte secret plus the share's 2-byte header).
const MIN_SHARE_HEX: usize = 34;

/// Why an `lksu_` value is not a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareError {
    /// Not `lksu_` + hex + 6 checksum characters.
    Malformed,
    /// Well formed, but the checksum does not match: a character was changed.
    Checksum,
}

/// The share inside an `lksu_` share credential.
pub fn share_from_credential(credential: &str) -> Result<Vec<u8>, ShareError> {
    let body = credential.strip_prefix("lksu_").ok_or(ShareError::Malformed)?;
    let split = body.len().checked_sub(6).ok_or(ShareError::Malformed)?;
    let (hex_part, sum) = body.split_at(split);
    if hex_part.len() < MIN_SHARE_HEX
        || hex_part.len() % 2 != 0
        || !hex_part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        || !sum.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(ShareError::Malformed);
    }
    let head = &credential[..credential.len() - 6];
    if base62_6(crc32(head.as_bytes())).as_slice() != sum.as_bytes() {
        return Err(ShareError::Checksum);
    }
    hex::decode(hex_part).map_err(|_| ShareError::Malformed)
}

/// The kind of a well-formed credential with a valid checksum; `None` for anything else.
pub fn parse(token: &[u8]) -> Option<Kind> {
    if token.len() > LEN && token.starts_with(b"lksu_") {
        let share = std::str::from_utf8(token).ok()?;
        return share_from_credential(share).ok().map(|_| Kind::Unseal);
    }
    if token.len() != LEN || !token.starts_with(b"lks") || token[4] != b'_' {
        return None;
    }
    let kind = match token[3] {
        b's' => Kind::Service,
        b'b' => Kind::Batch,
        b'd' => Kind::Dynamic,
        b'u' => Kind::Unseal,
        _ => return None,
    };
    if !token[5..].iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    (base62_6(crc32(&token[..LEN - 6])).as_slice() == &token[LEN - 6..]).then_some(kind)
}

/// `value` in base62 (alphabet 0-9A-Za-z), left-padded with '0' to 6 characters.
pub fn base62_6(mut value: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// CRC-32 (IEEE 802.3, the zlib one).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_parse_and_a_changed_character_does_not() {
        for kind in [Kind::Service, Kind::Batch, Kind::Dynamic, Kind::Unseal] {
            let t = mint(kind);
            assert_eq!(t.len(), LEN);
            assert_eq!(parse(t.as_bytes()), Some(kind), "{t}");
            let mut bad = t.clone().into_bytes();
            bad[10] = if bad[10] == b'a' { b'b' } else { b'a' };
            assert_eq!(parse(&bad), None);
        }
        assert_ne!(mint(Kind::Service), mint(Kind::Service));
    }

    #[test]
    fn unseal_shares_round_trip_and_a_mistyped_one_is_named() {
        let share: Vec<u8> = (0..33u8).map(|i| i.wrapping_mul(97)).collect();
        let c = share_credential(&share);
        assert!(c.starts_with("lksu_") && c.len() == 5 + 66 + 6, "{c}");
        assert_eq!(share_from_credential(&c), Ok(share));
        assert_eq!(parse(c.as_bytes()), Some(Kind::Unseal));
        let mut typo = c.clone().into_bytes();
        typo[9] = if typo[9] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert_eq!(share_from_credential(&typo), Err(ShareError::Checksum));
        assert_eq!(parse(typo.as_bytes()), None);
        assert_eq!(share_from_credential("lksu_abc"), Err(ShareError::Malformed));
        assert_eq!(
            share_from_credential(&c.replace("lksu_", "lkss_")),
            Err(ShareError::Malformed)
        );
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn accessors_are_not_tokens() {
        let a = accessor();
        assert!(a.starts_with("lksa.") && a.len() == 29);
        assert_eq!(parse(a.as_bytes()), None);
    }
}
