//! Inflating pack entries: one stream per thread, reset between objects, each object inflated straight into a
//! buffer of the size its header gives.
//!
//! Through flate2 on its zlib-rs backend (zlib-ng's inflate, ported to Rust): a history scan spends a large share
//! of its time here, and zlib-rs inflates as fast as zlib-ng did through libgit2's build of it, which needed cmake
//! and so was opt-in; now the default build has the fast path, with no C toolchain step and no unsafe code.

use flate2::{Decompress, FlushDecompress, Status};

/// An inflate stream, reused object after object.
pub(crate) struct Inflater {
    z: Decompress,
}

impl Inflater {
    pub(crate) fn new() -> Option<Inflater> {
        Some(Inflater {
            z: Decompress::new(true),
        })
    }

    /// Inflates the zlib stream at the start of `input` into `out`, which must come out exactly `size` bytes long
    /// (a pack header's size). False when the data is corrupt or not that size.
    ///
    /// `size` comes from the pack: at most [`FIRST_ROOM`] is reserved up front, and the rest as the stream fills
    /// it, so memory follows what the data really inflates to, never a corrupt header alone.
    pub(crate) fn inflate(&mut self, input: &[u8], size: usize, out: &mut Vec<u8>) -> bool {
        self.inflate_growing(input, size, out, FIRST_ROOM)
    }

    fn inflate_growing(&mut self, input: &[u8], size: usize, out: &mut Vec<u8>, first_room: usize) -> bool {
        // Room beyond the announced size: inflate's fast loop needs 258 bytes of output space ahead of it, so an
        // exact-size buffer sends the last stretch of every object through its byte-at-a-time path (most of a small
        // delta). A stream that fills the slack is longer than announced and refused below.
        let Some(room) = size.checked_add(SLACK) else {
            return false;
        };
        out.clear();
        self.z.reset(true);
        let mut cap = room.min(first_room);
        loop {
            out.reserve_exact(cap - out.len());
            let read = usize::try_from(self.z.total_in()).unwrap_or(usize::MAX);
            let Some(rest) = input.get(read..) else {
                return false;
            };
            match self.z.decompress_vec(rest, out, FlushDecompress::Finish) {
                Ok(Status::StreamEnd) => return out.len() == size,
                // Out of room with input left: grow towards the announced size, doubling.
                Ok(Status::Ok | Status::BufError) if out.len() == out.capacity() && out.len() < room => {
                    cap = cap.saturating_mul(2).min(room).max(out.len() + 1);
                }
                _ => return false,
            }
        }
    }
}

/// Output reserved before inflating (the rest grows as the stream fills it).
const FIRST_ROOM: usize = 64 << 20;

/// Output room past an object's announced size (see [`Inflater::inflate`]).
const SLACK: usize = 320;

#[cfg(test)]
mod tests {
    use super::Inflater;

    fn deflated(data: &[u8]) -> Vec<u8> {
        // Stored (uncompressed) deflate blocks are valid zlib and need no compressor here.
        let mut out = vec![0x78, 0x01];
        out.push(1);
        let len = data.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(data);
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        out.extend_from_slice(&((b << 16) | a).to_be_bytes());
        out
    }

    #[test]
    fn inflates_exactly_the_announced_size_and_refuses_otherwise() {
        let mut inf = Inflater::new().unwrap();
        let data = b"hello hello hello\n";
        let z = deflated(data);
        let mut out = Vec::new();
        assert!(inf.inflate(&z, data.len(), &mut out));
        assert_eq!(out, data);
        // Reused for the next object.
        assert!(inf.inflate(&z, data.len(), &mut out));
        assert_eq!(out, data);
        assert!(!inf.inflate(&z, data.len() - 1, &mut out), "longer than announced");
        assert!(!inf.inflate(&z, data.len() + 1, &mut out), "shorter than announced");
        assert!(!inf.inflate(&z[..z.len() - 6], data.len(), &mut out), "truncated");
        let mut bad = z.clone();
        bad[10] ^= 0xff;
        assert!(!inf.inflate(&bad, data.len(), &mut out), "checksum mismatch");
    }

    #[test]
    fn memory_follows_the_data_not_the_announced_size() {
        let mut inf = Inflater::new().unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let z = deflated(&data);
        let mut out = Vec::new();
        // Grown from a few bytes of room, several times over.
        assert!(inf.inflate_growing(&z, data.len(), &mut out, 7));
        assert_eq!(out, data);
        // A corrupt header announcing petabytes: refused, having reserved only about what the stream filled.
        let mut out = Vec::new();
        assert!(!inf.inflate_growing(&z, 1 << 50, &mut out, 4096));
        assert!(out.capacity() <= 8192, "{}", out.capacity());
        assert!(!inf.inflate(&z, usize::MAX, &mut out));
    }
}
