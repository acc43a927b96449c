//! Object ids: one type for every id the crate handles (pack indexes, pack entries, commits, trees, blobs), so an
//! id is never a loose `[u8; 20]` or a hex string whose meaning depends on the caller.
//!
//! `git2::Oid` is only used at the libgit2 boundary: it compares through a call into libgit2 (`git_oid_equal`, a
//! visible share of the tree walk), while these compare inline.

use std::collections::HashMap;
use std::fmt;

use git2::Oid;

/// A SHA-1 object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) struct ObjectId([u8; 20]);

impl ObjectId {
    pub(crate) const LEN: usize = 20;

    #[cfg(test)]
    pub(crate) const fn new(bytes: [u8; 20]) -> ObjectId {
        ObjectId(bytes)
    }

    /// The id held in the first 20 bytes of `b`; `None` when `b` is shorter.
    pub(crate) fn from_slice(b: &[u8]) -> Option<ObjectId> {
        b.get(..Self::LEN)?.try_into().ok().map(ObjectId)
    }

    /// Parses 40 hex digits.
    pub(crate) fn from_hex(hex: &[u8]) -> Option<ObjectId> {
        if hex.len() != 2 * Self::LEN {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut id = [0u8; 20];
        for (out, pair) in id.iter_mut().zip(hex.chunks_exact(2)) {
            *out = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(ObjectId(id))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The same id for libgit2.
    pub(crate) fn to_git2(self) -> Oid {
        Oid::from_bytes(&self.0).unwrap_or_else(|_| Oid::zero())
    }
}

impl From<Oid> for ObjectId {
    fn from(id: Oid) -> ObjectId {
        ObjectId::from_slice(id.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Object ids are already uniformly random: their first eight bytes are a perfect hash (SipHash over 20 bytes per
/// lookup was a visible share of the tree walk).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHash(u64);

impl std::hash::Hasher for IdHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        if let Some(b) = bytes.get(..8) {
            self.0 = u64::from_le_bytes(b.try_into().unwrap_or_default());
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

/// A map keyed by object id, hashed by [`IdHash`].
pub(crate) type IdMap<V> = HashMap<ObjectId, V, std::hash::BuildHasherDefault<IdHash>>;

#[cfg(test)]
mod tests {
    use super::ObjectId;

    #[test]
    fn hex_round_trips_and_matches_libgit2() {
        let hex = "0123456789abcdef0123456789ABCDEF01234567";
        let id = ObjectId::from_hex(hex.as_bytes()).unwrap();
        assert_eq!(id.to_string(), hex.to_ascii_lowercase());
        assert_eq!(id.to_git2().to_string(), id.to_string());
        assert_eq!(ObjectId::from(id.to_git2()), id);
        assert!(ObjectId::from_hex(&hex.as_bytes()[1..]).is_none(), "too short");
        assert!(
            ObjectId::from_hex(b"g123456789abcdef0123456789abcdef01234567").is_none(),
            "not hex"
        );
        assert!(ObjectId::from_slice(&[0; 19]).is_none());
    }
}
