//! ChaCha8 key streams sixteen blocks at a time: the `u64`s that
//! `rand_chacha`'s `ChaCha8Rng` gives from a word position on, bit for bit,
//! for the random filter's draw pass (`optim::optimizer::random_draw`).
//!
//! ChaCha (Bernstein), with a 64-bit block counter in words 12–13 and the
//! stream (0 here) in words 14–15, as `rand_chacha` lays them out. One
//! block is
//!
//! ```text
//! x ← (c₀ c₁ c₂ c₃ | key₀ … key₇ | counter_lo counter_hi | 0 0)
//! 4 double rounds:  QR(0,4,8,12) QR(1,5,9,13) QR(2,6,10,14) QR(3,7,11,15)
//!                   QR(0,5,10,15) QR(1,6,11,12) QR(2,7,8,13) QR(3,4,9,14)
//! QR(a,b,c,d):  a += b; d ^= a; d <<<= 16;  c += d; b ^= c; b <<<= 12;
//!               a += b; d ^= a; d <<<= 8;   c += d; b ^= c; b <<<= 7
//! out_i ← x_i + input_i   (16 words; the stream is the blocks in counter order)
//! ```
//!
//! and the `u64` at (even) word position w is `out[w] | out[w + 1] << 32`.
//! `rand_chacha` computes four blocks at a time with AVX2 (its
//! `refill_wide` took about 60% of the random filter's step, 40.6M
//! parameters, 2 threads); on AVX-512 this computes sixteen, one block per
//! lane of each of sixteen registers (a register per state word), with a
//! single-instruction rotate, then transposes the 16 × 16 words into block
//! order with 64 shuffles (`blocks16_regs!`, which leaves the blocks in
//! registers for a caller that compares them there, as the random
//! filter's draw pass does). Without AVX-512 it defers to `rand_chacha`.
//! [`chacha8_block_reference`] is the plain version the tests compare both
//! against, and `rand_chacha` itself.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::simd::has_avx512;

/// Words of one ChaCha block.
const BLOCK_WORDS: usize = 16;
/// Blocks computed at a time on AVX-512.
const LANES: usize = 16;
/// Words buffered: sixteen blocks.
const BUF_WORDS: usize = BLOCK_WORDS * LANES;

/// "expand 32-byte k".
pub(crate) const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// The key words of `seed` (its bytes read as eight little-endian `u32`).
pub fn key_words(seed: &[u8; 32]) -> [u32; 8] {
    std::array::from_fn(|i| {
        u32::from_le_bytes([
            seed[4 * i],
            seed[4 * i + 1],
            seed[4 * i + 2],
            seed[4 * i + 3],
        ])
    })
}

/// The input words of block `counter` of the stream 0 of `key`.
fn block_input(key: &[u32; 8], counter: u64) -> [u32; 16] {
    let mut x = [0u32; 16];
    x[..4].copy_from_slice(&SIGMA);
    x[4..12].copy_from_slice(key);
    x[12] = counter as u32;
    x[13] = (counter >> 32) as u32;
    x
}

/// The ChaCha quarter round on words a, b, c, d of `x`.
#[inline(always)]
fn quarter(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

/// One ChaCha8 block, plainly (module docs): the reference the fast path
/// is tested against.
pub fn chacha8_block_reference(key: &[u32; 8], counter: u64) -> [u32; 16] {
    let input = block_input(key, counter);
    let mut x = input;
    for _ in 0..4 {
        quarter(&mut x, 0, 4, 8, 12);
        quarter(&mut x, 1, 5, 9, 13);
        quarter(&mut x, 2, 6, 10, 14);
        quarter(&mut x, 3, 7, 11, 15);
        quarter(&mut x, 0, 5, 10, 15);
        quarter(&mut x, 1, 6, 11, 12);
        quarter(&mut x, 2, 7, 8, 13);
        quarter(&mut x, 3, 4, 9, 14);
    }
    std::array::from_fn(|i| x[i].wrapping_add(input[i]))
}

/// The `u64`s of a ChaCha8 stream from an even word position on, as
/// `ChaCha8Rng::from_seed(seed)` after `set_word_pos(word_pos)` gives them
/// by `next_u64`.
pub struct ChaCha8Keys(Source);

/// Where a [`ChaCha8Keys`] takes its words from. (One lives on the stack
/// for a chunk of the draw pass; boxing the larger variant would allocate
/// per chunk for nothing.)
#[allow(clippy::large_enum_variant)]
enum Source {
    /// Sixteen blocks at a time on AVX-512.
    Fast(Fast),
    /// `rand_chacha`, on CPUs without AVX-512.
    Slow(ChaCha8Rng),
}

/// The AVX-512 generator's state: the key, the next block to compute, and
/// sixteen computed blocks with a read position.
struct Fast {
    key: [u32; 8],
    next_block: u64,
    buf: [u32; BUF_WORDS],
    at: usize,
}

impl ChaCha8Keys {
    /// The stream of `seed` (stream number 0) from word `word_pos` on
    /// (even: each `u64` is two words).
    pub fn new(seed: [u8; 32], word_pos: u64) -> Self {
        debug_assert!(word_pos.is_multiple_of(2));
        if !has_avx512() {
            let mut rng = ChaCha8Rng::from_seed(seed);
            rng.set_word_pos(u128::from(word_pos));
            return ChaCha8Keys(Source::Slow(rng));
        }
        let key = key_words(&seed);
        let block = word_pos / BLOCK_WORDS as u64;
        let mut fast = Fast {
            key,
            next_block: block,
            buf: [0; BUF_WORDS],
            at: 0,
        };
        fast.refill();
        fast.at = (word_pos % BLOCK_WORDS as u64) as usize;
        ChaCha8Keys(Source::Fast(fast))
    }

    /// Writes the next `out.len()` values of the stream into `out`.
    pub fn fill(&mut self, out: &mut [u64]) {
        let f = match &mut self.0 {
            Source::Slow(rng) => return rng.fill(out),
            Source::Fast(f) => f,
        };
        let mut out = out;
        while !out.is_empty() {
            if f.at == BUF_WORDS {
                f.refill();
                f.at = 0;
            }
            let n = out.len().min((BUF_WORDS - f.at) / 2);
            let (head, tail) = out.split_at_mut(n);
            for (o, w) in head.iter_mut().zip(f.buf[f.at..].chunks_exact(2)) {
                *o = u64::from(w[0]) | (u64::from(w[1]) << 32);
            }
            f.at += 2 * n;
            out = tail;
        }
    }
}

impl Fast {
    /// Computes the next sixteen blocks into `buf`, in stream order.
    fn refill(&mut self) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: a `Fast` exists only where `has_avx512` found
            // AVX-512 F (`ChaCha8Keys::new`), all that `blocks16` needs.
            unsafe { blocks16(&self.key, self.next_block, &mut self.buf) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        for (l, out) in self.buf.chunks_exact_mut(BLOCK_WORDS).enumerate() {
            out.copy_from_slice(&chacha8_block_reference(
                &self.key,
                self.next_block.wrapping_add(l as u64),
            ));
        }
        self.next_block = self.next_block.wrapping_add(LANES as u64);
    }
}

/// Blocks `counter .. counter + 16` of `key`'s stream into `out` (block
/// `counter + l` at words `16·l ..`), from `blocks16_regs!`.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn blocks16(key: &[u32; 8], counter: u64, out: &mut [u32; BUF_WORDS]) {
    use std::arch::x86_64::*;
    let blocks = blocks16_regs!(key, counter);
    let dst = out.as_mut_ptr();
    for (l, b) in blocks.into_iter().enumerate() {
        // SAFETY: l < 16, so the 16 words at 16·l lie in `out` (256
        // words); the store is unaligned.
        unsafe { _mm512_storeu_si512(dst.add(BLOCK_WORDS * l).cast(), b) };
    }
}

/// Blocks `counter .. counter + 16` of `key`'s stream in registers, as an
/// expression of type `[__m512i; 16]`: block `counter + l` in register
/// `l`, its words in order (so its `u64` lanes are the stream's eight
/// `u64`s of that block). Register i holds word i of the sixteen blocks,
/// one per lane, through the rounds as in [`chacha8_block_reference`];
/// then a 16 × 16 transpose (32-bit, 64-bit and two 128-bit interleaves).
/// A macro, so that the blocks stay in registers for the caller: a
/// function was not inlined, returned them through the stack, and the
/// draw pass's compares waited on those loads; `#[inline(always)]`
/// without the target feature left the intrinsics as calls.
///
/// Expands to unsafe code: use it only inside a function compiled with
/// AVX-512 F (`#[target_feature(enable = "avx512f")]`), on such a CPU.
/// `key: &[u32; 8]`, `counter: u64`.
#[cfg(target_arch = "x86_64")]
macro_rules! blocks16_regs {
    ($key:expr, $counter:expr) => {{
        use std::arch::x86_64::*;
        let key: &[u32; 8] = $key;
        let counter: u64 = $counter;
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let lo = _mm512_set1_epi32(counter as u32 as i32);
        let lo_l = _mm512_add_epi32(lo, lane);
        // A lane whose low word wrapped carries into the high word.
        let carry = _mm512_cmplt_epu32_mask(lo_l, lo);
        let hi = _mm512_set1_epi32((counter >> 32) as u32 as i32);
        let hi_l = _mm512_mask_add_epi32(hi, carry, hi, _mm512_set1_epi32(1));
        let mut input = [_mm512_setzero_si512(); 16];
        for (i, &s) in $crate::kernels::chacha8::SIGMA.iter().enumerate() {
            input[i] = _mm512_set1_epi32(s as i32);
        }
        for (i, &k) in key.iter().enumerate() {
            input[4 + i] = _mm512_set1_epi32(k as i32);
        }
        input[12] = lo_l;
        input[13] = hi_l;
        let mut x = input;
        macro_rules! qr {
            ($a:expr, $b:expr, $c:expr, $d:expr) => {
                x[$a] = _mm512_add_epi32(x[$a], x[$b]);
                x[$d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[$d], x[$a]));
                x[$c] = _mm512_add_epi32(x[$c], x[$d]);
                x[$b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[$b], x[$c]));
                x[$a] = _mm512_add_epi32(x[$a], x[$b]);
                x[$d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[$d], x[$a]));
                x[$c] = _mm512_add_epi32(x[$c], x[$d]);
                x[$b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[$b], x[$c]));
            };
        }
        for _ in 0..4 {
            qr!(0, 4, 8, 12);
            qr!(1, 5, 9, 13);
            qr!(2, 6, 10, 14);
            qr!(3, 7, 11, 15);
            qr!(0, 5, 10, 15);
            qr!(1, 6, 11, 12);
            qr!(2, 7, 8, 13);
            qr!(3, 4, 9, 14);
        }
        let r: [__m512i; 16] = std::array::from_fn(|i| _mm512_add_epi32(x[i], input[i]));
        // r[i] lane l: word i of block l. Interleave words, then pairs: u[4q + c]
        // lane group g (128 bits) holds words 4q..4q+3 of block 4g + c.
        let t: [__m512i; 16] = std::array::from_fn(|j| {
            let (a, b) = (r[j & !1], r[j | 1]);
            if j % 2 == 0 {
                _mm512_unpacklo_epi32(a, b)
            } else {
                _mm512_unpackhi_epi32(a, b)
            }
        });
        let mut u = [_mm512_setzero_si512(); 16];
        for q in 0..4 {
            let (t0, t1, t2, t3) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
            u[4 * q] = _mm512_unpacklo_epi64(t0, t2);
            u[4 * q + 1] = _mm512_unpackhi_epi64(t0, t2);
            u[4 * q + 2] = _mm512_unpacklo_epi64(t1, t3);
            u[4 * q + 3] = _mm512_unpackhi_epi64(t1, t3);
        }
        let mut out = [_mm512_setzero_si512(); 16];
        for c in 0..4 {
            // Groups 0, 1 of words 0–3 and 4–7, then of words 8–11 and 12–15.
            let v0 = _mm512_shuffle_i32x4::<0x44>(u[c], u[4 + c]);
            let v1 = _mm512_shuffle_i32x4::<0xEE>(u[c], u[4 + c]);
            let v2 = _mm512_shuffle_i32x4::<0x44>(u[8 + c], u[12 + c]);
            let v3 = _mm512_shuffle_i32x4::<0xEE>(u[8 + c], u[12 + c]);
            let blocks = [
                _mm512_shuffle_i32x4::<0x88>(v0, v2),
                _mm512_shuffle_i32x4::<0xDD>(v0, v2),
                _mm512_shuffle_i32x4::<0x88>(v1, v3),
                _mm512_shuffle_i32x4::<0xDD>(v1, v3),
            ];
            for (g, b) in blocks.into_iter().enumerate() {
                out[4 * g + c] = b;
            }
        }
        out
    }};
}
#[cfg(target_arch = "x86_64")]
pub(crate) use blocks16_regs;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    fn expected(seed: [u8; 32], word_pos: u64, n: usize) -> Vec<u64> {
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_word_pos(u128::from(word_pos));
        (0..n).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn the_reference_block_is_rand_chachas() {
        let mut src = ChaCha8Rng::seed_from_u64(3);
        for counter in [0u64, 1, 17, (1 << 32) - 1, 1 << 32, u64::MAX] {
            let mut seed = [0u8; 32];
            src.fill_bytes(&mut seed);
            let key = std::array::from_fn(|i| {
                u32::from_le_bytes(seed[4 * i..4 * i + 4].try_into().unwrap())
            });
            let block = chacha8_block_reference(&key, counter);
            let mut rng = ChaCha8Rng::from_seed(seed);
            rng.set_word_pos(u128::from(counter) * 16);
            let want: Vec<u32> = (0..16).map(|_| rng.next_u32()).collect();
            assert_eq!(block.to_vec(), want, "counter {counter}");
        }
    }

    /// The stream from many word positions (block starts, mid-block, near
    /// a carry of the counter's low word), in pieces of uneven lengths
    /// across refills, is `rand_chacha`'s, on the AVX-512 path where the
    /// CPU has it and on `rand_chacha`'s otherwise.
    #[test]
    fn the_keys_are_rand_chachas_from_any_word_position() {
        let mut src = ChaCha8Rng::seed_from_u64(11);
        let carry = ((1u64 << 32) - 5) * 16;
        for word_pos in [
            0u64,
            2,
            14,
            16,
            30,
            254,
            256,
            1000,
            65_538,
            carry,
            carry + 6,
        ] {
            let seed = ChaCha8Rng::seed_from_u64(src.next_u64()).get_seed();
            let want = expected(seed, word_pos, 700);
            let mut keys = ChaCha8Keys::new(seed, word_pos);
            let mut got = vec![0u64; 700];
            let mut at = 0;
            for piece in [1usize, 127, 128, 3, 256, 185] {
                keys.fill(&mut got[at..at + piece]);
                at += piece;
            }
            assert_eq!(got, want, "word position {word_pos}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_blocks_at_once_are_the_reference_blocks() {
        if !has_avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let key = [1u32, 0xdead_beef, 7, 0, u32::MAX, 12, 13, 0x8000_0000];
        for counter in [0u64, 5, (1 << 32) - 7, u64::MAX - 3] {
            let mut out = [0u32; BUF_WORDS];
            // SAFETY: the CPU has AVX-512 F (checked above).
            unsafe { blocks16(&key, counter, &mut out) };
            for l in 0..LANES {
                let want = chacha8_block_reference(&key, counter.wrapping_add(l as u64));
                assert_eq!(
                    &out[16 * l..16 * l + 16],
                    &want[..],
                    "block {l} of {counter}"
                );
            }
        }
    }
}
