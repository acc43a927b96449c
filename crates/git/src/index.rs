//! A pack's `.idx` file, checked before anything reads the pack.
//!
//! Repositories reach a scanner as they are (a `.git` from a build artifact or a backup, a disk image), and libgit2
//! trusts an index's offsets: one pointing past the end of its pack crashes it. So before a history scan reads
//! anything, every index is checked against its own checksum and its pack: the layout (fan-out table, ids in
//! order, 64-bit offsets present), every offset inside the pack, the pack's header (version, object count) and
//! its trailing checksum the one the index records. A pack that fails is reported as corrupt, naming the file and
//! what is wrong, and nothing reads it.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use sha1::{Digest as _, Sha1};

use crate::oid::ObjectId;
use crate::pack::{PackError, PackErrorKind, bad};

/// `\377tOc`, then version 2.
const MAGIC_V2: [u8; 8] = [0xff, b't', b'O', b'c', 0, 0, 0, 2];
const FANOUT: usize = 256 * 4;
/// A pack's header (`PACK`, version, object count) and trailing checksum.
const PACK_HEADER: u64 = 12;
const PACK_TRAILER: u64 = 20;

/// A checked pack index.
pub(crate) struct PackIndex {
    pub(crate) pack: PathBuf,
    /// Object id and pack offset of every entry, in id order.
    pub(crate) entries: Vec<(ObjectId, u64)>,
}

impl PackIndex {
    /// Reads and checks the index of the pack `pack` (its `.idx` beside it) and the pack's header and trailer.
    /// An index of the old version 1 is not read here (libgit2 reads it): that is reported as not corrupt.
    pub(crate) fn load(pack: &Path) -> Result<PackIndex, PackError> {
        let idx_path = pack.with_extension("idx");
        let idx = std::fs::read(&idx_path).map_err(|e| PackError::unreadable(e).in_file(&idx_path))?;
        let entries = parse(&idx).map_err(|e| e.in_file(&idx_path))?;
        check_pack(
            pack,
            entries.len() as u64,
            &idx[idx.len() - 40..idx.len() - 20],
            &entries,
        )
        .map_err(|e| e.in_file(pack))?;
        Ok(PackIndex {
            pack: pack.to_path_buf(),
            entries,
        })
    }
}

/// Checks every pack of the repository at `git_dir` (see [`PackIndex::load`]): the indexes of those the direct
/// reader reads, in the order of `pack::packs`, and whether every pack is one of them. A corrupt or unreadable
/// pack is an error.
pub(crate) fn check_all(git_dir: &Path) -> Result<(Vec<PackIndex>, bool), PackError> {
    let mut indexes = Vec::new();
    let mut all = true;
    for pack in crate::pack::packs(git_dir) {
        match PackIndex::load(&pack) {
            Ok(index) => indexes.push(index),
            Err(e) if e.kind == PackErrorKind::Unsupported => {
                tracing::info!(error = %e, "a pack the direct reader does not read; libgit2 reads it");
                all = false;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((indexes, all))
}

/// The entries of a version-2 index, after checking its checksum and layout.
fn parse(idx: &[u8]) -> Result<Vec<(ObjectId, u64)>, PackError> {
    if idx.len() < 8 + FANOUT + 40 {
        return Err(bad(format!("too short for a pack index ({} bytes)", idx.len())));
    }
    if idx[..8] != MAGIC_V2 {
        // Version 1 has no header: its fan-out table starts the file, then 24 bytes per object.
        let n = be32(idx, FANOUT - 4) as usize;
        if idx[..4] != MAGIC_V2[..4] && idx.len() == FANOUT + n * 24 + 40 {
            return Err(PackError::unsupported("a version 1 pack index"));
        }
        return Err(bad("not a version 2 pack index (wrong header)"));
    }
    let (body, sum) = idx.split_at(idx.len() - 20);
    if Sha1::digest(body)[..] != *sum {
        return Err(bad("checksum mismatch (the index was changed or damaged)"));
    }
    let fanout = |b: usize| be32(idx, 8 + b * 4) as usize;
    for b in 1..256 {
        if fanout(b) < fanout(b - 1) {
            return Err(bad(format!("fan-out table out of order (at byte {b:#04x})")));
        }
    }
    let n = fanout(255);
    let ids = 8 + FANOUT;
    let offsets = ids + n * 24;
    let large = offsets + n * 4;
    if idx.len() < large + 40 || !(idx.len() - large - 40).is_multiple_of(8) {
        return Err(bad(format!("wrong length for {n} objects")));
    }
    let n_large = (idx.len() - large - 40) / 8;
    let mut entries = Vec::with_capacity(n);
    let mut prev: Option<ObjectId> = None;
    for i in 0..n {
        let id = ObjectId::from_slice(&idx[ids + i * 20..]).expect("20 bytes");
        if prev.is_some_and(|p| p >= id) {
            return Err(bad(format!("object ids out of order (entry {i})")));
        }
        // The fan-out table counts the ids up to each first byte.
        let b = usize::from(id.as_bytes()[0]);
        if i >= fanout(b) || (b > 0 && i < fanout(b - 1)) {
            return Err(bad(format!("fan-out table disagrees with the ids (entry {i})")));
        }
        prev = Some(id);
        let o = be32(idx, offsets + i * 4);
        let off = if o & 0x8000_0000 == 0 {
            u64::from(o)
        } else {
            let k = (o & 0x7fff_ffff) as usize;
            if k >= n_large {
                return Err(bad(format!("entry {i} names a 64-bit offset the index does not hold")));
            }
            u64::from_be_bytes(idx[large + k * 8..large + k * 8 + 8].try_into().expect("8 bytes"))
        };
        entries.push((id, off));
    }
    Ok(entries)
}

/// Checks the pack against its index: header, object count, trailing checksum, and every offset inside it.
fn check_pack(pack: &Path, count: u64, checksum: &[u8], entries: &[(ObjectId, u64)]) -> Result<(), PackError> {
    let file = File::open(pack).map_err(PackError::unreadable)?;
    let len = file.metadata().map_err(PackError::unreadable)?.len();
    if len < PACK_HEADER + PACK_TRAILER {
        return Err(bad(format!("too short for a pack ({len} bytes)")));
    }
    let mut header = [0u8; PACK_HEADER as usize];
    let mut trailer = [0u8; PACK_TRAILER as usize];
    file.read_exact_at(&mut header, 0)
        .and_then(|()| file.read_exact_at(&mut trailer, len - PACK_TRAILER))
        .map_err(PackError::unreadable)?;
    if &header[..4] != b"PACK" || !matches!(header[4..8], [0, 0, 0, 2] | [0, 0, 0, 3]) {
        return Err(bad("not a version 2 or 3 pack (wrong header)"));
    }
    if u64::from(be32(&header, 8)) != count {
        return Err(bad(format!(
            "the header counts {} objects, the index lists {count}",
            be32(&header, 8)
        )));
    }
    if trailer[..] != *checksum {
        return Err(bad(
            "trailing checksum differs from the one the index records (one of the two was changed)",
        ));
    }
    let end = len - PACK_TRAILER;
    if let Some((id, off)) = entries.iter().find(|(_, off)| *off < PACK_HEADER || *off >= end) {
        return Err(bad(format!(
            "no entry can start at offset {off}, where the index puts object {} (entries lie between {PACK_HEADER} and \
             {end})",
            id
        )));
    }
    Ok(())
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-2 index of `objs` (id, offset), with a valid checksum and `pack_sum` as the pack's.
    pub(crate) fn index(objs: &[(ObjectId, u64)], pack_sum: &[u8; 20]) -> Vec<u8> {
        let mut objs = objs.to_vec();
        objs.sort();
        let mut v = MAGIC_V2.to_vec();
        for b in 0..256usize {
            let n = objs.iter().filter(|(id, _)| usize::from(id.as_bytes()[0]) <= b).count() as u32;
            v.extend_from_slice(&n.to_be_bytes());
        }
        for (id, _) in &objs {
            v.extend_from_slice(id.as_bytes());
        }
        v.extend(std::iter::repeat_n(0, objs.len() * 4));
        let mut large = Vec::new();
        for (_, off) in &objs {
            if *off < 0x8000_0000 {
                v.extend_from_slice(&(*off as u32).to_be_bytes());
            } else {
                v.extend_from_slice(&(0x8000_0000 | (large.len() / 8) as u32).to_be_bytes());
                large.extend_from_slice(&off.to_be_bytes());
            }
        }
        v.extend(large);
        v.extend_from_slice(pack_sum);
        let sum = Sha1::digest(&v);
        v.extend_from_slice(&sum);
        v
    }

    /// An id starting with byte `first`, ending with `last`.
    fn id(first: u8, last: u8) -> ObjectId {
        let mut id = [first; 20];
        id[19] = last;
        ObjectId::new(id)
    }

    #[test]
    fn indexes_are_checked_against_their_checksum_layout_and_pack() {
        let dir = tempfile::tempdir().unwrap();
        let pack = dir.path().join("pack-x.pack");
        let mut bytes = b"PACK\0\0\0\x02\0\0\0\x02".to_vec();
        bytes.extend_from_slice(&[0x30, 0x78, 0x9c, 0x03, 0, 0, 0, 0, 1, 0x30]);
        let sum = [7u8; 20];
        bytes.extend_from_slice(&sum);
        std::fs::write(&pack, &bytes).unwrap();
        let write_idx = |objs: &[(ObjectId, u64)], sum: &[u8; 20]| {
            std::fs::write(pack.with_extension("idx"), index(objs, sum)).unwrap();
        };
        let problem = || match PackIndex::load(&pack) {
            Ok(_) => String::from("ok"),
            Err(e) => e.to_string(),
        };

        write_idx(&[(id(1, 1), 12), (id(1, 2), 20)], &sum);
        assert_eq!(problem(), "ok");
        assert_eq!(
            PackIndex::load(&pack).unwrap().entries,
            [(id(1, 1), 12), (id(1, 2), 20)]
        );
        // An offset past the end of the pack, small or 64-bit.
        for off in [bytes.len() as u64 - 20, 1 << 40] {
            write_idx(&[(id(1, 1), 12), (id(1, 2), off)], &sum);
            assert!(
                problem().contains("pack-x.pack") && problem().contains(&format!("offset {off}")),
                "{}",
                problem()
            );
        }
        write_idx(&[(id(1, 1), 12), (id(1, 2), 20)], &[8; 20]);
        assert!(problem().contains("checksum differs"), "{}", problem());
        write_idx(&[(id(1, 1), 12)], &sum);
        assert!(problem().contains("counts 2 objects"), "{}", problem());

        // Any changed byte of the index breaks its checksum.
        let good = index(&[(id(1, 1), 12), (id(1, 2), 20)], &sum);
        for at in [0, 9, 8 + FANOUT + 19, good.len() - 30, good.len() - 1] {
            let mut idx = good.clone();
            idx[at] ^= 0x10;
            std::fs::write(pack.with_extension("idx"), &idx).unwrap();
            assert!(problem().contains("pack-x.idx"), "byte {at}: {}", problem());
        }
        // Layout problems behind a valid checksum.
        let resign = |mut idx: Vec<u8>| {
            let n = idx.len() - 20;
            let sum = Sha1::digest(&idx[..n]);
            idx[n..].copy_from_slice(&sum);
            std::fs::write(pack.with_extension("idx"), &idx).unwrap();
        };
        let mut swapped = good.clone();
        swapped[8 + FANOUT..8 + FANOUT + 40].rotate_left(20);
        resign(swapped);
        assert!(problem().contains("out of order"), "{}", problem());
        let mut wide = good.clone();
        wide[8 + FANOUT + 48 + 4..8 + FANOUT + 48 + 8].copy_from_slice(&0x8000_0003u32.to_be_bytes());
        resign(wide);
        assert!(problem().contains("64-bit offset"), "{}", problem());
        let mut fan = good.clone();
        fan[8 + 4 * 0x80..8 + 4 * 0x81].copy_from_slice(&0u32.to_be_bytes());
        resign(fan);
        assert!(problem().contains("fan-out"), "{}", problem());
    }
}
