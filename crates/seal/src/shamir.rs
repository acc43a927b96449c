//! Shamir secret sharing over GF(2^8) (the AES field, reduction polynomial x^8+x^4+x^3+x+1).
//!
//! Each byte of the secret is the constant term of its own random polynomial of degree `threshold - 1`;
//! share `x` holds the polynomial values at `x`. A share is `y bytes || threshold || x` so [`combine`] can tell
//! a user exactly how many shares are still missing and reject shares from different splits.
//! Field arithmetic is branch-free and table-free so timing does not depend on secret bytes.

use rand::RngCore;
use zeroize::Zeroizing;

use crate::{KEY_LEN, SealError};

/// Bytes a share adds to the secret's length (threshold and x coordinate).
pub const SHARE_OVERHEAD: usize = 2;

/// Multiplication in GF(2^8), constant time.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    for _ in 0..8 {
        p ^= a & (b & 1).wrapping_neg();
        let carry = (a >> 7).wrapping_neg();
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    p
}

/// Multiplicative inverse (a^254); `a` must be non-zero.
fn inv(a: u8) -> u8 {
    // Square-and-multiply over the fixed exponent 254 = 0b11111110.
    let mut result = 1u8;
    let mut base = a;
    let mut e = 254u8;
    while e > 0 {
        if e & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    result
}

/// Split `secret` into `shares` shares of which any `threshold` recover it.
pub fn split(secret: &[u8], shares: u8, threshold: u8) -> Result<Vec<Zeroizing<Vec<u8>>>, SealError> {
    if secret.is_empty() {
        return Err(SealError::Shamir("cannot split an empty secret".into()));
    }
    if threshold == 0 || shares == 0 {
        return Err(SealError::Shamir("shares and threshold must be at least 1".into()));
    }
    if threshold > shares {
        return Err(SealError::Shamir(format!(
            "threshold {threshold} is larger than the number of shares {shares}"
        )));
    }
    if threshold == 1 && shares > 1 {
        // Every share would be the secret itself; Vault refuses this too.
        return Err(SealError::Shamir(
            "threshold 1 with more than one share would hand out copies of the key; use threshold >= 2".into(),
        ));
    }
    let t = usize::from(threshold);
    let mut out: Vec<Zeroizing<Vec<u8>>> = (0..shares)
        .map(|_| Zeroizing::new(Vec::with_capacity(secret.len() + SHARE_OVERHEAD)))
        .collect();
    let mut coeffs = Zeroizing::new(vec![0u8; t]);
    for &byte in secret {
        coeffs[0] = byte;
        rand::rngs::OsRng.fill_bytes(&mut coeffs[1..]);
        for (i, share) in out.iter_mut().enumerate() {
            let x = (i + 1) as u8;
            // Horner's rule from the highest coefficient down.
            let mut y = 0u8;
            for &c in coeffs.iter().rev() {
                y = mul(y, x) ^ c;
            }
            share.push(y);
        }
    }
    for (i, share) in out.iter_mut().enumerate() {
        share.push(threshold);
        share.push((i + 1) as u8);
    }
    Ok(out)
}

/// Check one unseal key share (of a [`KEY_LEN`]-byte unseal key split with `threshold`) before it joins the
/// shares already submitted: a share that cannot combine with them is refused alone, so the holders who already
/// entered theirs keep their progress.
pub fn check_unseal_share(share: &[u8], threshold: u8) -> Result<(), SealError> {
    let expected = KEY_LEN + SHARE_OVERHEAD;
    if share.len() != expected {
        return Err(SealError::Shamir(format!(
            "this unseal key share is {} bytes but every share of this server is {expected} bytes ({} hex digits or \
             {} base64 characters): enter it exactly as `operator init` printed it; the shares entered so far are kept",
            share.len(),
            expected * 2,
            expected.div_ceil(3) * 4,
        )));
    }
    let (t, x) = (share[expected - 2], share[expected - 1]);
    if x == 0 || t != threshold {
        return Err(SealError::Shamir(
            "this unseal key share is not one of this server's (it comes from another `operator init`, or is \
             mistyped); the shares entered so far are kept"
                .into(),
        ));
    }
    Ok(())
}

/// Recover the secret from at least `threshold` distinct shares of one split.
pub fn combine(shares: &[Vec<u8>]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let Some(first) = shares.first() else {
        return Err(SealError::Shamir("no shares given".into()));
    };
    if first.len() <= SHARE_OVERHEAD {
        return Err(SealError::Shamir(format!(
            "share 1 is malformed: {} bytes is too short",
            first.len()
        )));
    }
    let len = first.len();
    let threshold = first[len - 2];
    let mut xs = Vec::with_capacity(shares.len());
    for (n, s) in shares.iter().enumerate() {
        if s.len() != len {
            return Err(SealError::Shamir(format!(
                "share {} has {} bytes but share 1 has {len}; shares must come from the same split",
                n + 1,
                s.len()
            )));
        }
        let x = s[len - 1];
        if x == 0 || s[len - 2] == 0 {
            return Err(SealError::Shamir(format!("share {} is malformed", n + 1)));
        }
        if s[len - 2] != threshold {
            return Err(SealError::Shamir(format!(
                "share {} belongs to a split with a different threshold; shares must come from the same split",
                n + 1
            )));
        }
        if xs.contains(&x) {
            return Err(SealError::Shamir(format!("share {} was given twice", n + 1)));
        }
        xs.push(x);
    }
    if xs.len() < usize::from(threshold) {
        return Err(SealError::Shamir(format!(
            "{} of {threshold} required shares given; {} more needed",
            xs.len(),
            usize::from(threshold) - xs.len()
        )));
    }
    // Use exactly `threshold` shares: more add nothing.
    let xs = &xs[..usize::from(threshold)];
    // Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i); in GF(2^8) minus is xor.
    let basis: Vec<u8> = xs
        .iter()
        .enumerate()
        .map(|(i, &xi)| {
            let mut num = 1u8;
            let mut den = 1u8;
            for (j, &xj) in xs.iter().enumerate() {
                if i != j {
                    num = mul(num, xj);
                    den = mul(den, xj ^ xi);
                }
            }
            mul(num, inv(den))
        })
        .collect();
    let mut secret = Zeroizing::new(vec![0u8; len - SHARE_OVERHEAD]);
    for (k, out) in secret.iter_mut().enumerate() {
        let mut acc = 0u8;
        for (i, l) in basis.iter().enumerate() {
            acc ^= mul(shares[i][k], *l);
        }
        *out = acc;
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(shares: &[Zeroizing<Vec<u8>>], pick: &[usize]) -> Vec<Vec<u8>> {
        pick.iter().map(|&i| shares[i].to_vec()).collect()
    }

    #[test]
    fn field_inverse_is_correct_for_all_elements() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "a={a}");
        }
        assert_eq!(mul(0x57, 0x83), 0xc1); // FIPS-197 worked example
    }

    #[test]
    fn every_subset_of_threshold_size_recovers() {
        let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        let shares = split(&secret, 5, 3).unwrap();
        assert_eq!(shares.len(), 5);
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let got = combine(&plain(&shares, &[c, a, b])).unwrap();
                    assert_eq!(&got[..], &secret[..], "subset {a},{b},{c}");
                }
            }
        }
        // More than threshold also works.
        assert_eq!(&combine(&plain(&shares, &[0, 1, 2, 3, 4])).unwrap()[..], &secret[..]);
    }

    #[test]
    fn fewer_than_threshold_is_an_error_naming_how_many_are_missing() {
        let shares = split(b"root key material", 5, 3).unwrap();
        let err = combine(&plain(&shares, &[0, 4])).unwrap_err().to_string();
        assert!(err.contains("2 of 3") && err.contains("1 more"), "{err}");
    }

    #[test]
    fn t_minus_one_shares_with_forged_threshold_do_not_reveal_the_secret() {
        // Someone editing the threshold byte to 2 still gets garbage, not the secret.
        let secret = [7u8; 32];
        let shares = split(&secret, 3, 3).unwrap();
        let mut forged = plain(&shares, &[0, 1]);
        for s in &mut forged {
            let n = s.len();
            s[n - 2] = 2;
        }
        assert_ne!(&combine(&forged).unwrap()[..], &secret[..]);
    }

    #[test]
    fn duplicates_and_malformed_shares_are_rejected() {
        let shares = split(b"abc", 3, 2).unwrap();
        let err = combine(&plain(&shares, &[1, 1])).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        let mut short = plain(&shares, &[0, 1]);
        short[1].pop();
        assert!(combine(&short).unwrap_err().to_string().contains("same split"));
        assert!(combine(&[vec![1]]).unwrap_err().to_string().contains("malformed"));
        assert!(combine(&[]).is_err());
        let mut zero_x = plain(&shares, &[0, 1]);
        let n = zero_x[0].len();
        zero_x[0][n - 1] = 0;
        assert!(combine(&zero_x).unwrap_err().to_string().contains("malformed"));
    }

    #[test]
    fn a_share_of_another_length_or_split_is_refused_before_combining() {
        let key = crate::generate_key();
        let shares = split(&key, 5, 3).unwrap();
        for s in &shares {
            check_unseal_share(s, 3).unwrap();
        }
        let err = check_unseal_share(&shares[0][..20], 3).unwrap_err().to_string();
        assert!(
            err.contains("20 bytes") && err.contains("34 bytes") && err.contains("68 hex"),
            "{err}"
        );
        let mut long = shares[0].to_vec();
        long.push(1);
        assert!(
            check_unseal_share(&long, 3)
                .unwrap_err()
                .to_string()
                .contains("35 bytes")
        );
        let other = split(&key, 5, 2).unwrap();
        let err = check_unseal_share(&other[0], 3).unwrap_err().to_string();
        assert!(err.contains("not one of this server's"), "{err}");
    }

    #[test]
    fn bad_parameters_are_rejected() {
        assert!(split(b"x", 3, 4).is_err());
        assert!(split(b"x", 3, 1).is_err());
        assert!(split(b"", 3, 2).is_err());
        let one = split(b"solo", 1, 1).unwrap();
        assert_eq!(&combine(&plain(&one, &[0])).unwrap()[..], b"solo");
    }
}
