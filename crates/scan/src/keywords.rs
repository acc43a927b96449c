//! Every occurrence of every rule keyword, ASCII case-insensitively: the pass that decides which rules run.
//!
//! An Aho-Corasick DFA follows one transition per input byte, each load depending on the previous one. That chain
//! held the keyword pass to ~0.5 GB/s and made it the largest share of a history scan's CPU. Keywords are short
//! literals, so a test on the three bytes starting at each position rejects nearly every position, and those tests
//! are independent of each other (the CPU overlaps them, eight at a time with AVX2): the case-folded trigram is
//! hashed into a 64 Kibit table that stays in L1 (four bytes from inside longer keywords, in a second table). Only
//! positions whose bit is set, and whose bit under a second hash is set too, look up the keywords there and compare
//! them. The result is the same set of (keyword, start) pairs as an overlapping Aho-Corasick search.

/// Bits of each filter's hash: 64 Kibit = 8 KiB per filter.
const HASH_BITS: u32 = 16;
const BUCKETS: usize = 1 << HASH_BITS;
/// Folding every byte with `| 0x20` maps upper- and lowercase ASCII letters together. It also merges a few
/// non-letters (`^` with `~`, `@` with `` ` ``...), which only adds candidates that the exact comparison rejects.
const FOLD8: u64 = 0x2020_2020_2020_2020;
/// Positions tested per 8-byte load (each needs the four bytes from it).
const STRIDE: usize = 5;

/// One hashed filter over the folded n-grams that start keywords, with the keywords per bucket.
#[derive(Debug)]
struct Filter {
    bits: Vec<u64>,
    /// The same grams under a second, unrelated hash. Source text fires `bits` at a few percent of its positions,
    /// nearly all without a keyword; this second test, on a table as small and as hot, turns almost all of those
    /// away before their bucket is looked up in `starts`, which is too large to stay in L1.
    confirm: Vec<u64>,
    /// Keyword ids per hash bucket: `items[starts[h]..starts[h + 1]]`.
    starts: Vec<u32>,
    items: Vec<u32>,
}

impl Filter {
    /// `grams` yields (n-gram, keyword id) pairs.
    fn new(grams: impl Iterator<Item = (u32, u32)>) -> Filter {
        // Sorting the (bucket, id) pairs lays the buckets out in order without a vector per bucket: building
        // stays well under a millisecond, which a pre-commit hook notices.
        let mut confirm = vec![0u64; BUCKETS / 64];
        let mut pairs: Vec<(u32, u32)> = grams
            .map(|(g, id)| {
                let c = hash2(g);
                confirm[c / 64] |= 1 << (c % 64);
                (hash(g) as u32, id)
            })
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut bits = vec![0u64; BUCKETS / 64];
        let mut starts = vec![0u32; BUCKETS + 1];
        for &(h, _) in &pairs {
            bits[h as usize / 64] |= 1 << (h % 64);
            starts[h as usize + 1] += 1;
        }
        for h in 0..BUCKETS {
            starts[h + 1] += starts[h];
        }
        Filter {
            bits,
            confirm,
            starts,
            items: pairs.into_iter().map(|(_, id)| id).collect(),
        }
    }

    #[inline(always)]
    fn test(&self, h: usize) -> u64 {
        (self.bits[h / 64] >> (h % 64)) & 1
    }

    #[inline(always)]
    fn confirms(&self, g: u32) -> bool {
        let c = hash2(g);
        (self.confirm[c / 64] >> (c % 64)) & 1 != 0
    }

    /// The keywords whose gram may hash to `h`: none without a lookup in `starts` when `h`'s bit is clear (the
    /// other filter fired).
    #[inline(always)]
    fn bucket(&self, h: usize) -> &[u32] {
        if self.test(h) == 0 {
            return &[];
        }
        &self.items[self.starts[h] as usize..self.starts[h + 1] as usize]
    }
}

/// Keywords of four bytes or more are filtered on four of their (folded) bytes (see [`anchor`]), which almost never
/// occur by chance; shorter ones on their first three, the third a wildcard over every folded byte for two-byte
/// keywords.
/// Both filters are tested at every position without branching; only the rare positions where one fires compare
/// keywords.
#[derive(Debug)]
pub(crate) struct KeywordIndex {
    /// Lowercase keywords; a keyword's id is its index.
    words: Vec<Box<[u8]>>,
    /// Offset of each keyword's filter gram in it (0 for keywords shorter than four bytes).
    anchors: Vec<usize>,
    long: Filter,
    short: Filter,
    /// One-byte keywords (possible in imported configs), checked at every position.
    single: Vec<u32>,
    /// Whether this CPU has AVX2 (checked once; the scalar loop gives the same results).
    avx2: bool,
}

#[inline(always)]
fn hash(gram: u32) -> usize {
    // The xor-shift keeps the hash from being linear: a multiplication alone maps families of grams that differ in
    // one byte (a short keyword's wildcard byte, English words) onto evenly spaced buckets that collide with each
    // other far more often than chance.
    ((gram ^ (gram >> 14)).wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// The confirming hash ([`Filter::confirm`]): another odd multiplier, and the product's high bits taken after
/// folding its middle in, so grams that collide under [`hash`] rarely collide here too.
#[inline(always)]
fn hash2(gram: u32) -> usize {
    let p = u64::from(gram).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    ((p ^ (p >> 29)) >> (64 - HASH_BITS)) as usize
}

/// Where in `word` its filter gram is taken: the four bytes with the most distinct values, so `-----begin` is
/// found through `-beg` rather than through every run of dashes in a document.
fn anchor(word: &[u8]) -> usize {
    (0..=word.len() - 4)
        .max_by_key(|&o| {
            let g = &word[o..o + 4];
            let distinct = (0..4).filter(|&k| !g[..k].contains(&g[k])).count();
            (distinct, std::cmp::Reverse(o))
        })
        .unwrap_or(0)
}

/// The folded n-gram of `word`'s first `n` bytes (little-endian, like the search's loads).
fn gram(word: &[u8], n: usize) -> u32 {
    word.iter()
        .take(n)
        .enumerate()
        .fold(0, |g, (k, &b)| g | u32::from(b | 0x20) << (8 * k))
}

impl KeywordIndex {
    /// Each of `words` is matched ASCII case-insensitively.
    pub(crate) fn new(words: &[String]) -> KeywordIndex {
        let words: Vec<Box<[u8]>> = words
            .iter()
            .map(|w| w.to_ascii_lowercase().into_bytes().into_boxed_slice())
            .collect();
        let anchors: Vec<usize> = words.iter().map(|w| if w.len() >= 4 { anchor(w) } else { 0 }).collect();
        let ids = || words.iter().enumerate().map(|(id, w)| (id as u32, w));
        let long = Filter::new(
            ids()
                .filter(|(_, w)| w.len() >= 4)
                .map(|(id, w)| (gram(&w[anchors[id as usize]..], 4), id)),
        );
        let short = Filter::new(ids().filter(|(_, w)| (2..4).contains(&w.len())).flat_map(|(id, w)| {
            let g = gram(w, 3);
            let wild: Vec<u32> = if w.len() == 3 {
                vec![g]
            } else {
                (0..=255u32).filter(|b| b & 0x20 != 0).map(|b| g | b << 16).collect()
            };
            wild.into_iter().map(move |g| (g, id))
        }));
        let single = ids().filter(|(_, w)| w.len() == 1).map(|(id, _)| id).collect();
        KeywordIndex {
            words,
            anchors,
            long,
            short,
            single,
            avx2: simd::available(),
        }
    }

    /// Calls `f(keyword id, start)` for every occurrence until `f` returns false. Occurrences come in order of
    /// the position of their filter gram: starts are in order only up to a keyword's anchor offset.
    pub(crate) fn for_each(&self, data: &[u8], f: impl FnMut(usize, usize) -> bool) {
        self.for_each_anchored(data, 0..data.len(), f);
    }

    /// Like [`KeywordIndex::for_each`], but only for occurrences whose filter gram starts at a position in
    /// `positions`; the bytes around them are read from `data` as far as it goes. Searching a few stretches of a
    /// large input this way costs no more per stretch than its positions: only the input's own end is checked
    /// position by position.
    pub(crate) fn for_each_anchored(
        &self,
        data: &[u8],
        positions: std::ops::Range<usize>,
        mut f: impl FnMut(usize, usize) -> bool,
    ) {
        let n = data.len();
        let to = positions.end.min(n);
        let mut i = positions.start;
        // One-byte keywords make every position a candidate: then only the position-by-position loop below runs.
        if self.single.is_empty() {
            if self.avx2 {
                match simd::for_each_avx2(self, data, i..to, &mut f) {
                    Some(done) => i = done,
                    None => return,
                }
            }
            while i < to && i + 8 <= n {
                let w = u64::from_le_bytes(data[i..i + 8].try_into().expect("8 bytes")) | FOLD8;
                let mut fired = 0u64;
                for k in 0..STRIDE {
                    let g = (w >> (8 * k)) as u32;
                    fired |= (self.long.test(hash(g)) | self.short.test(hash(g & 0x00FF_FFFF))) << k;
                }
                if i + STRIDE > to {
                    fired &= (1 << (to - i)) - 1;
                }
                while fired != 0 {
                    let k = fired.trailing_zeros() as usize;
                    fired &= fired - 1;
                    let g = (w >> (8 * k)) as u32;
                    if self.confirmed(g) && !self.verify(data, i + k, g, &mut f) {
                        return;
                    }
                }
                i += STRIDE;
            }
        }
        // The remaining positions, each verified: pad past the end with zero bytes (folded like any other, so
        // wildcards cover them).
        while i < to {
            let mut tail = [0u8; 4];
            let avail = (n - i).min(4);
            tail[..avail].copy_from_slice(&data[i..i + avail]);
            if !self.verify(data, i, u32::from_le_bytes(tail) | FOLD8 as u32, &mut f) {
                return;
            }
            i += 1;
        }
    }

    /// How far before and after a byte a keyword's filter gram can start when the keyword covers that byte: the
    /// positions [`KeywordIndex::for_each_anchored`] must test to find every occurrence touching a stretch.
    pub(crate) fn anchor_reach(&self) -> (usize, usize) {
        let before = (self.words.iter().zip(&self.anchors))
            .map(|(w, &a)| w.len() - 1 - a)
            .max()
            .unwrap_or(0);
        let after = self.anchors.iter().copied().max().unwrap_or(0);
        (before, after)
    }

    /// Length of keyword `id`.
    pub(crate) fn len_of(&self, id: usize) -> usize {
        self.words[id].len()
    }

    /// How many keywords there are (ids run from 0).
    pub(crate) fn count(&self) -> usize {
        self.words.len()
    }

    /// Keyword `id`, lowercase.
    pub(crate) fn word(&self, id: usize) -> &[u8] {
        &self.words[id]
    }

    /// Whether any keyword occurs in `data`.
    pub(crate) fn is_match(&self, data: &[u8]) -> bool {
        let mut found = false;
        self.for_each(data, |_, _| {
            found = true;
            false
        });
        found
    }

    /// Whether a position whose four folded bytes are `g`, where a filter fired, passes the confirming test too:
    /// the cheap check, inlined where filters fire, before the call that compares keywords.
    #[inline(always)]
    fn confirmed(&self, g: u32) -> bool {
        self.long.confirms(g) || self.short.confirms(g & 0x00FF_FFFF) || !self.single.is_empty()
    }

    /// Compares the keywords whose filter buckets match the folded four bytes `g` at `at`.
    #[inline]
    pub(crate) fn verify(&self, data: &[u8], at: usize, g: u32, f: &mut impl FnMut(usize, usize) -> bool) -> bool {
        let long = self.long.bucket(hash(g));
        let short = self.short.bucket(hash(g & 0x00FF_FFFF));
        for &id in short.iter().chain(long).chain(&self.single) {
            let w = &self.words[id as usize];
            let Some(start) = at.checked_sub(self.anchors[id as usize]) else {
                continue;
            };
            if data.len() - start >= w.len()
                && data[start..start + w.len()].eq_ignore_ascii_case(w)
                && !f(id as usize, start)
            {
                return false;
            }
        }
        true
    }
}

/// The same filters, eight positions per step: one 16-byte load, a shuffle into eight four-byte grams, the
/// hashes computed side by side and the filter bits fetched with gathers.
#[allow(unsafe_code)]
mod simd {
    use super::KeywordIndex;

    pub(super) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Runs the filters over `positions` while 16 bytes of `data` remain and verifies what fires. Returns the
    /// first position left for the scalar loop, or `None` when `f` asked to stop.
    pub(super) fn for_each_avx2(
        ix: &KeywordIndex,
        data: &[u8],
        positions: std::ops::Range<usize>,
        f: &mut impl FnMut(usize, usize) -> bool,
    ) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        {
            debug_assert!(available());
            // SAFETY: only called when `available()` found AVX2 on this CPU (`KeywordIndex::avx2`).
            unsafe { run(ix, data, positions.start, positions.end, f) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (ix, data, f);
            Some(positions.start)
        }
    }

    /// Tests the positions `from..to` while 16 bytes of `data` remain from each step's first position.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run(
        index: &KeywordIndex,
        data: &[u8],
        from: usize,
        to: usize,
        f: &mut impl FnMut(usize, usize) -> bool,
    ) -> Option<usize> {
        use std::arch::x86_64::*;
        let n = data.len();
        let fold = _mm_set1_epi8(0x20);
        // Lane 0 builds the grams at offsets 0..4, lane 1 those at 4..8, from the same 16 bytes in both lanes.
        let grams_of = _mm256_setr_epi8(
            0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6, 4, 5, 6, 7, 5, 6, 7, 8, 6, 7, 8, 9, 7, 8, 9, 10,
        );
        let low3 = _mm256_set1_epi32(0x00FF_FFFF);
        let mul = _mm256_set1_epi32(0x9E37_79B1_u32 as i32);
        let five_bits = _mm256_set1_epi32(31);
        let long_bits = index.long.bits.as_ptr().cast::<i32>();
        let short_bits = index.short.bits.as_ptr().cast::<i32>();
        let mut i = from;
        while i < to && i + 16 <= n {
            // SAFETY: `i + 16 <= n`, so the unaligned 16-byte load stays inside `data`.
            let bytes = _mm_or_si128(unsafe { _mm_loadu_si128(data.as_ptr().add(i).cast()) }, fold);
            let grams = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(bytes), grams_of);
            // The scalar `hash`: ((g ^ (g >> 14)) * K) >> 16; the bit index splits into a u32 word and a bit.
            let hash = |g: __m256i| {
                _mm256_srli_epi32(
                    _mm256_mullo_epi32(_mm256_xor_si256(g, _mm256_srli_epi32(g, 14)), mul),
                    16,
                )
            };
            let h_long = hash(grams);
            let h_short = hash(_mm256_and_si256(grams, low3));
            // SAFETY: hashes are below 2^16, so word indices are below 2^11: inside each filter's 2^11 u32 words
            // (`BUCKETS / 64` u64 words).
            let (w_long, w_short) = unsafe {
                (
                    _mm256_i32gather_epi32::<4>(long_bits, _mm256_srli_epi32(h_long, 5)),
                    _mm256_i32gather_epi32::<4>(short_bits, _mm256_srli_epi32(h_short, 5)),
                )
            };
            let fired = _mm256_or_si256(
                _mm256_srlv_epi32(w_long, _mm256_and_si256(h_long, five_bits)),
                _mm256_srlv_epi32(w_short, _mm256_and_si256(h_short, five_bits)),
            );
            let mut mask = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(fired, 31))) as u32;
            if i + 8 > to {
                mask &= (1 << (to - i)) - 1;
            }
            while mask != 0 {
                let k = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let at = i + k;
                let g = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) | 0x2020_2020;
                if index.confirmed(g) && !index.verify(data, at, g, f) {
                    return None;
                }
            }
            i += 8;
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious search: every keyword at every position.
    fn naive(words: &[String], data: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for at in 0..data.len() {
            for (id, w) in words.iter().enumerate() {
                let w = w.as_bytes();
                if data.len() - at >= w.len() && data[at..at + w.len()].eq_ignore_ascii_case(w) {
                    out.push((id, at));
                }
            }
        }
        out
    }

    fn all(index: &KeywordIndex, data: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        index.for_each(data, |id, at| {
            out.push((id, at));
            true
        });
        // Positions come in order; keywords at one position in any order.
        out.sort_by_key(|&(id, at)| (at, id));
        out
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn anchored_search_reports_the_occurrences_whose_gram_starts_in_the_positions() {
        let w = words(&[
            "token",
            "tok",
            "ok",
            "ghp_",
            "api_key",
            "-----begin",
            "password",
            "xoxb-",
        ]);
        let index = KeywordIndex::new(&w);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let pieces = [
            "token",
            "TOK",
            "ok",
            "ghp_",
            "API_key",
            "-----BEGIN",
            "passWORD",
            "xoxb-",
            "a",
            " ",
            "-",
            "\n",
        ];
        for round in 0..300 {
            let mut data = Vec::new();
            for _ in 0..40 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.extend_from_slice(pieces[(seed % pieces.len() as u64) as usize].as_bytes());
            }
            let a = (seed as usize >> 8) % data.len();
            let b = a + (seed as usize >> 20) % (data.len() - a + 1);
            let mut got = Vec::new();
            index.for_each_anchored(&data, a..b, |id, at| {
                got.push((id, at));
                true
            });
            got.sort_by_key(|&(id, at)| (at, id));
            let want: Vec<(usize, usize)> = naive(&w, &data)
                .into_iter()
                .filter(|&(id, at)| (a..b).contains(&(at + index.anchors[id])))
                .collect();
            assert_eq!(got, want, "round {round}, positions {a}..{b}");
        }
        let (before, after) = index.anchor_reach();
        assert!(before >= 1 && after >= 1 && before + after + 1 >= "-----begin".len());
    }

    #[test]
    fn finds_overlapping_keywords_in_any_case_at_every_position() {
        let mut w = words(&["token", "tok", "ok", "ghp_", "api_key", "-----begin", "k"]);
        let with_single = KeywordIndex::new(&w);
        w.pop();
        let without = KeywordIndex::new(&w);
        for data in [
            &b"TOKEN tOk ghP_x API_KEY=1 -----BEGIN k"[..],
            b"tokentoken",
            b"k",
            b"ok",
            b"",
            b"xx tok",
            b"xxxxxxtok",
            b"\xff\x00TOKEN\x00\xff",
        ] {
            let name = String::from_utf8_lossy(data);
            assert_eq!(all(&without, data), naive(&w, data), "{name:?}");
            w.push("k".into());
            assert_eq!(all(&with_single, data), naive(&w, data), "one-byte keyword: {name:?}");
            w.pop();
        }
    }

    #[test]
    fn agrees_with_the_naive_search_on_pseudo_random_text() {
        let w = words(&["sk", "pat", "password", "q~", "re_", "xoxb-", "aiza", "eyj", "^~", "@`"]);
        let idx = KeywordIndex::new(&w);
        // The portable loop on its own, whatever this CPU has.
        let scalar = KeywordIndex {
            avx2: false,
            ..KeywordIndex::new(&w)
        };
        // A small alphabet makes keywords (and near misses like `^` vs `~`) frequent.
        let alphabet = b"skpatPASSWORDq~re_xoxb-AIZAeyj^@`~ \n";
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for len in [0usize, 1, 2, 3, 7, 8, 9, 13, 15, 16, 17, 64, 1000, 4099] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let expect = naive(&w, &data);
            assert_eq!(all(&idx, &data), expect, "len {len}");
            assert_eq!(all(&scalar, &data), expect, "scalar loop, len {len}");
        }
    }

    #[test]
    fn stops_when_asked_and_reports_misses() {
        let idx = KeywordIndex::new(&words(&["key"]));
        assert!(idx.is_match(b"a KEY here"));
        assert!(!idx.is_match(b"nothing to see, not a ke-y"));
        let mut seen = 0;
        idx.for_each(b"key key key", |_, _| {
            seen += 1;
            false
        });
        assert_eq!(seen, 1);
    }
}
