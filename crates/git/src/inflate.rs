//! Inflating pack entries with the zlib libgit2 links (zlib-ng with the `zlib-ng` feature), through its C API:
//! one stream per thread, reset between objects, each object inflated straight into a buffer of the size its
//! header gives.
#![allow(unsafe_code)]

use std::os::raw::{c_int, c_uint, c_void};

use libz_sys as z;

/// An inflate stream, reused object after object.
pub(crate) struct Inflater {
    // Boxed: zlib keeps a pointer back to the stream in its state, so the stream must not move.
    strm: Box<z::z_stream>,
}

unsafe extern "C" fn zalloc(_: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    // SAFETY: plain C allocation, freed by `zfree`.
    unsafe { libc::calloc(items as usize, size as usize) }
}

unsafe extern "C" fn zfree(_: *mut c_void, p: *mut c_void) {
    // SAFETY: `p` came from `zalloc`.
    unsafe { libc::free(p) }
}

impl Inflater {
    pub(crate) fn new() -> Option<Inflater> {
        let mut strm = Box::new(z::z_stream {
            next_in: std::ptr::null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: std::ptr::null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: std::ptr::null_mut(),
            state: std::ptr::null_mut(),
            zalloc,
            zfree,
            opaque: std::ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        });
        // SAFETY: a zeroed stream with allocators, as `inflateInit` expects; the version and size tell zlib which
        // layout this is.
        let rc = unsafe {
            z::inflateInit_(
                &mut *strm,
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        (rc == z::Z_OK).then_some(Inflater { strm })
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
        // Room beyond the announced size: zlib's fast loop needs 258 bytes of output space ahead of it, so an
        // exact-size buffer sends the last stretch of every object through its byte-at-a-time path (most of a small
        // delta). A stream that fills the slack is longer than announced and refused below.
        let Some(room) = size.checked_add(SLACK) else {
            return false;
        };
        out.clear();
        let s = &mut *self.strm;
        // SAFETY: the stream was initialised in `new`.
        if unsafe { z::inflateReset(s) } != z::Z_OK {
            return false;
        }
        // An entry's stream ends well before 4 GiB of input in practice; a longer one fails as truncated.
        s.next_in = input.as_ptr() as *mut u8;
        s.avail_in = c_uint::try_from(input.len()).unwrap_or(c_uint::MAX);
        let mut cap = room.min(first_room);
        let rc = loop {
            out.reserve_exact(cap - out.len());
            let spare = (cap - out.len()).min(c_uint::MAX as usize);
            s.next_out = out.as_mut_ptr().wrapping_add(out.len());
            s.avail_out = spare as c_uint;
            // SAFETY: `next_in` covers the unread rest of `input` and `next_out` `spare` bytes reserved in `out`, both
            // alive for this call; `set_len` only covers what zlib wrote.
            let rc = unsafe {
                let rc = z::inflate(s, z::Z_FINISH);
                out.set_len(out.len() + spare - s.avail_out as usize);
                rc
            };
            // Out of room with input left: grow towards the announced size, doubling.
            if (rc == z::Z_BUF_ERROR || rc == z::Z_OK) && s.avail_out == 0 && out.len() < room {
                cap = cap.saturating_mul(2).min(room).max(out.len() + 1);
                continue;
            }
            break rc;
        };
        s.next_in = std::ptr::null_mut();
        s.next_out = std::ptr::null_mut();
        rc == z::Z_STREAM_END && out.len() == size
    }
}

/// Output reserved before inflating (the rest grows as the stream fills it).
const FIRST_ROOM: usize = 64 << 20;

/// Output room past an object's announced size (see [`Inflater::inflate`]).
const SLACK: usize = 320;

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, ended once.
        unsafe {
            z::inflateEnd(&mut *self.strm);
        }
    }
}

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
