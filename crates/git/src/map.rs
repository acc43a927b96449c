//! A pack file mapped read-only into memory, so an entry is read where it lies instead of copied out by a `pread`
//! call per object (a visible share of a history scan's CPU, most of it in the kernel).
//!
//! Touched pages of a file mapping count in the process's resident memory, and a history scan touches all of a
//! pack: [`Mapped::done_with`] tallies each read and, every [`RELEASE_EVERY`] bytes of tally, drops the mapping's
//! page table entries (`MADV_DONTNEED`). The pages stay in the page cache; the next read of one maps it again (a
//! minor fault), so resident memory stays bounded whatever the pack's size.
//!
//! A read is tallied as its bytes plus [`FAULT_AROUND`], not plus a page: a fault on a file mapping also maps
//! the neighbouring pages already in the page cache (the kernel's fault-around, 64 KiB by default), and the
//! readers do not go in pack order (the blob scan takes delta forests largest first, the history walk reads trees
//! and commits by id), so a read of a small delta typically maps a whole window. Tallied as a page, 16 MiB of
//! tally let over 100 MiB of a large pack stay resident; tallied this way the mapping's share of RSS stays near
//! [`RELEASE_EVERY`], by design rather than by the pack's size.
//! Packs are never rewritten in place (git writes new ones and deletes old ones), so the mapping cannot change
//! under a reader.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tally between two releases of the mapping's resident pages: about the most of the pack left mapped.
const RELEASE_EVERY: u64 = 32 << 20;
/// What one read may map beyond its own bytes (the kernel's default `fault_around_bytes`).
const FAULT_AROUND: u64 = 64 << 10;

pub(crate) struct Mapped {
    ptr: *const u8,
    len: usize,
    read: AtomicU64,
}

// SAFETY: the mapping is read-only and lives until `Drop`; shared reads from several threads are fine.
unsafe impl Send for Mapped {}
// SAFETY: as above; `MADV_DONTNEED` on a read-only file mapping only drops page table entries, the next read
// maps the same bytes again.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps all of `file`.
    pub(crate) fn new(file: &File) -> std::io::Result<Mapped> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("the file is too large to map"))?;
        if len == 0 {
            return Ok(Mapped {
                ptr: std::ptr::NonNull::<u8>::dangling().as_ptr(),
                len: 0,
                read: AtomicU64::new(0),
            });
        }
        // SAFETY: a fresh read-only private mapping of an open file; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: advice over the mapping just made.
        unsafe {
            libc::madvise(ptr, len, libc::MADV_NORMAL);
        }
        Ok(Mapped {
            ptr: ptr as *const u8,
            len,
            read: AtomicU64::new(0),
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes (or is dangling with `len` 0) until `self` is dropped.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Counts a read of `n` bytes (as `n` plus [`FAULT_AROUND`]); every [`RELEASE_EVERY`] bytes counted, the
    /// resident pages are released.
    pub(crate) fn done_with(&self, n: usize) {
        let n = n as u64 + FAULT_AROUND;
        let before = self.read.fetch_add(n, Ordering::Relaxed);
        if before / RELEASE_EVERY != (before + n) / RELEASE_EVERY && self.len > 0 {
            // SAFETY: advice over exactly our own mapping; for a read-only file mapping it cannot lose data.
            unsafe {
                libc::madvise(self.ptr as *mut libc::c_void, self.len, libc::MADV_DONTNEED);
            }
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping the mapping made in `new`, once; no slice of it outlives `self`.
            unsafe {
                libc::munmap(self.ptr as *mut libc::c_void, self.len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Mapped, RELEASE_EVERY};
    use std::io::Write;

    #[test]
    fn bytes_read_after_a_release_are_the_file_s() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let map = Mapped::new(&f).unwrap();
        assert_eq!(map.bytes(), &data[..]);
        // Enough reads to release the resident pages a few times over.
        for _ in 0..3 * RELEASE_EVERY / (1 << 20) {
            map.done_with(1 << 20);
        }
        assert_eq!(map.bytes(), &data[..]);
        let empty = Mapped::new(&tempfile::tempfile().unwrap()).unwrap();
        assert!(empty.bytes().is_empty());
        empty.done_with(RELEASE_EVERY as usize);
    }
}
