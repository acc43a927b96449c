//! The pack format: entry headers (type, size, base) and the table of a pack's entries in pack order, with each
//! entry's deltas, read once when a pack is opened.

use std::fs::File;
use std::path::Path;

use super::{NONE, Obj, Pack, PackError, bad};
use crate::index::PackIndex;
use crate::map::Mapped;
use crate::oid::ObjectId;

pub(super) const OBJ_BLOB: u8 = 3;
const OBJ_OFS_DELTA: u8 = 6;
const OBJ_REF_DELTA: u8 = 7;

/// Deflate turns at most 258 bytes into 2 bits (1032 to 1): an entry announcing more than that of its zlib data,
/// plus room for tiny streams, is corrupt.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Where a delta's base is.
#[derive(Debug, PartialEq, Eq)]
enum Base {
    /// A whole object.
    None,
    /// The entry at this pack offset.
    Offset(u64),
    /// The object with this id.
    Id(ObjectId),
}

/// An entry's header: type, inflated size, header length and base.
#[derive(Debug)]
struct Header {
    kind: u8,
    size: u64,
    len: usize,
    base: Base,
}

/// Parses the entry header at `off`.
fn parse_header(b: &[u8], off: u64) -> Result<Header, PackError> {
    let trunc = || bad(format!("pack entry at {off} is truncated"));
    let mut i = 0;
    let mut c = *b.get(i).ok_or_else(trunc)?;
    let kind = (c >> 4) & 7;
    let mut size = u64::from(c & 15);
    let mut shift = 4;
    while c & 0x80 != 0 {
        i += 1;
        c = *b.get(i).ok_or_else(trunc)?;
        if shift > 57 {
            return Err(bad(format!("pack entry at {off} has an oversized length")));
        }
        size |= u64::from(c & 0x7f) << shift;
        shift += 7;
    }
    i += 1;
    let base = match kind {
        OBJ_OFS_DELTA => {
            let mut c = *b.get(i).ok_or_else(trunc)?;
            let mut back = u64::from(c & 0x7f);
            while c & 0x80 != 0 {
                i += 1;
                c = *b.get(i).ok_or_else(trunc)?;
                back = back
                    .checked_add(1)
                    .filter(|b| b.leading_zeros() >= 7)
                    .map(|b| (b << 7) | u64::from(c & 0x7f))
                    .ok_or_else(|| bad(format!("pack entry at {off} points before the pack")))?;
            }
            i += 1;
            let base = off
                .checked_sub(back)
                .filter(|_| back > 0)
                .ok_or_else(|| bad(format!("pack entry at {off} points before the pack")))?;
            Base::Offset(base)
        }
        OBJ_REF_DELTA => {
            let id = b.get(i..).and_then(ObjectId::from_slice).ok_or_else(trunc)?;
            i += 20;
            Base::Id(id)
        }
        1..=4 => Base::None,
        _ => return Err(bad(format!("pack entry at {off} has unknown type {kind}"))),
    };
    Ok(Header {
        kind,
        size,
        len: i,
        base,
    })
}

impl Pack {
    /// Opens the pack `pack_path` (with its `.idx` beside it, checked first) and reads every entry's header.
    pub(crate) fn open(pack_path: &Path) -> Result<Pack, PackError> {
        Pack::open_checked(PackIndex::load(pack_path)?)
    }

    /// Opens the pack of a checked index and reads every entry's header.
    pub(crate) fn open_checked(index: PackIndex) -> Result<Pack, PackError> {
        let path = index.pack;
        Pack::read_headers(&path, index.entries).map_err(|e| e.in_file(&path))
    }

    fn read_headers(path: &Path, mut entries: Vec<(ObjectId, u64)>) -> Result<Pack, PackError> {
        entries.sort_unstable_by_key(|&(_, off)| off);
        let map = File::open(path)
            .and_then(|f| Mapped::new(&f))
            .map_err(PackError::unreadable)?;
        let bytes = map.bytes();
        // `PackIndex::load` checked the header and that every offset lies between it and the trailer.
        let trailer = (bytes.len() as u64).saturating_sub(20);
        let mut objs: Vec<Obj> = Vec::with_capacity(entries.len());
        let mut ref_bases: Vec<(u32, ObjectId)> = Vec::new();
        for (i, &(id, off)) in entries.iter().enumerate() {
            let end = entries.get(i + 1).map_or(trailer, |e| e.1);
            if off < 12 || end > trailer || end <= off {
                return Err(bad(format!(
                    "the index puts an object at {off}, where no entry can start"
                )));
            }
            let Header {
                kind,
                size,
                len: hlen,
                base,
            } = parse_header(&bytes[off as usize..end as usize], off)?;
            // Reading a header maps the pages around it: release them as the pass goes.
            map.done_with((end - off) as usize);
            let data = off + hlen as u64;
            if size > (end - data).saturating_mul(MAX_DEFLATE_RATIO) + 64 {
                return Err(bad(format!(
                    "pack entry at {off} announces {size} bytes, more than its {} bytes of data can hold",
                    end - data
                )));
            }
            let base = match base {
                Base::None => NONE,
                Base::Offset(base_off) => {
                    let b = entries.partition_point(|e| e.1 < base_off);
                    if entries.get(b).map(|e| e.1) != Some(base_off) {
                        return Err(bad(format!(
                            "pack entry at {off} has a base at {base_off}, which is no entry"
                        )));
                    }
                    b as u32
                }
                Base::Id(base_id) => {
                    ref_bases.push((i as u32, base_id));
                    NONE
                }
            };
            objs.push(Obj {
                id,
                data,
                end,
                kind,
                size,
                base,
                orphan: false,
            });
        }
        drop(entries);
        let by_id = std::sync::OnceLock::new();
        let mut pack = Pack {
            path: path.to_path_buf(),
            map,
            objs,
            kid_start: Vec::new(),
            kids: Vec::new(),
            by_id,
        };
        for (i, base_id) in ref_bases {
            let b = pack.find(&base_id);
            let o = &mut pack.objs[i as usize];
            o.base = b.unwrap_or(NONE);
            o.orphan = b.is_none();
        }
        // Deltas of each entry, grouped (a counting sort on the base index).
        let n = pack.objs.len();
        let mut kid_start = vec![0u32; n + 1];
        for o in &pack.objs {
            if o.base != NONE {
                kid_start[o.base as usize + 1] += 1;
            }
        }
        for i in 0..n {
            kid_start[i + 1] += kid_start[i];
        }
        let mut kids = vec![0u32; kid_start[n] as usize];
        let mut fill = kid_start.clone();
        for (i, o) in pack.objs.iter().enumerate() {
            if o.base != NONE {
                kids[fill[o.base as usize] as usize] = i as u32;
                fill[o.base as usize] += 1;
            }
        }
        pack.kid_start = kid_start;
        pack.kids = kids;
        Ok(pack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_headers_decode_sizes_and_bases() {
        // Blob of 300 bytes: type 3, size 300 = 0b1_0010_1100 -> 0xbc (cont, type 3, low 4 bits 12), 0x12.
        let h = parse_header(&[0xbc, 0x12, 0xff], 100).unwrap();
        assert_eq!((h.kind, h.size, h.len, h.base), (3, 300, 2, Base::None));
        // Offset delta 130 bytes back: 130 = ((0 + 1) << 7) | 2 -> bytes 0x80, 0x02.
        let h = parse_header(&[0x65, 0x80, 0x02], 1000).unwrap();
        assert_eq!((h.kind, h.len, h.base), (6, 3, Base::Offset(870)));
        assert!(parse_header(&[0x65, 0x80, 0x02], 100).is_err(), "base before the pack");
        assert!(parse_header(&[0xbc], 100).is_err(), "truncated");
        assert!(parse_header(&[0x50], 100).is_err(), "type 5 is reserved");
    }
}
