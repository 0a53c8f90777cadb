//! The machine's streaming memory bandwidth for the optimizer's access
//! pattern, measured: every entry reads four f32 arrays (p, g, m, v) and
//! writes three (p, m, v) with trivial arithmetic, in parallel chunks on the
//! current rayon pool. Bytes counted: 28 per entry, as for an Adam step, so
//! `adam GB/s ÷ this` is the share of the bandwidth an optimizer step reaches.
//! The arrays are advised for 2 MiB pages, as the optimizer's are
//! (`kernels::huge_pages`), so this is the pattern's best case here.
//!
//! [`measure_read_bandwidth`] measures the other bound a default
//! (checked) step meets: a read-only pass over one array, the pattern of
//! the gradient check that reads every `g` for NaN/±∞ before the update
//! changes anything (4 bytes per entry). With `R` its GB/s and `S` the
//! 4-read/3-write pattern's, a checked Adam step on `n` entries takes
//! about `4n/R + 28n/S` nanoseconds at best on this machine: both passes
//! at their streaming bandwidth, one after the other (medians of a shared
//! machine, so a step may beat them by the noise). [`StreamArrays`] keeps
//! the arrays so that `mofo bench optim` can also time one pass of each
//! pattern next to each step ([`StreamArrays::time_checked_bound`]), the
//! ratio taken within one moment of the machine.

use std::time::Instant;

use rayon::prelude::*;

use crate::kernels::huge_pages::huge_zeroed_vec;

const CHUNK: usize = 1 << 16;

/// One pass of the 4-read / 3-write kernel over `n` entries.
fn pass(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let mi = *m + g;
                let vi = *v + g;
                *m = mi;
                *v = vi;
                *p += mi * 1e-30 + vi * 1e-30;
            }
        });
}

/// The arrays of both patterns, `n` entries each, on 2 MiB pages where the
/// kernel has them (as the optimizer's buffers), each pass timed alone: for
/// the medians below, or passes alternated with optimizer steps.
pub struct StreamArrays {
    p: Vec<f32>,
    g: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl StreamArrays {
    /// Four arrays of `n` entries, each pattern run once untimed.
    pub fn new(n: usize) -> Self {
        let filled = |x: f32| {
            let mut v: Vec<f32> = huge_zeroed_vec(n);
            v.iter_mut().for_each(|e| *e = x);
            v
        };
        let mut s = Self {
            p: filled(1.0),
            g: filled(1e-3),
            m: filled(0.0),
            v: filled(0.0),
        };
        s.time_update_pattern();
        s.time_read_pattern();
        s
    }

    /// Entries per array.
    pub fn len(&self) -> usize {
        self.p.len()
    }

    /// Whether the arrays are empty.
    pub fn is_empty(&self) -> bool {
        self.p.is_empty()
    }

    /// Seconds of one 4-read/3-write pass (28 bytes per entry).
    pub fn time_update_pattern(&mut self) -> f64 {
        let t0 = Instant::now();
        pass(&mut self.p, &self.g, &mut self.m, &mut self.v);
        let t = t0.elapsed().as_secs_f64();
        std::hint::black_box(&self.p);
        t
    }

    /// Seconds of one read-only pass over one array (4 bytes per entry).
    pub fn time_read_pattern(&self) -> f64 {
        let t0 = Instant::now();
        std::hint::black_box(read_pass(std::hint::black_box(&self.g)));
        t0.elapsed().as_secs_f64()
    }

    /// Seconds a checked step would take at the two streams just measured:
    /// one read-only pass, then one 4-read/3-write pass, timed now.
    pub fn time_checked_bound(&mut self) -> f64 {
        self.time_read_pattern() + self.time_update_pattern()
    }
}

/// Median GB/s (28 bytes per entry) over `reps` passes of the 4-read/3-write
/// pattern on `s`'s arrays.
pub fn measure_stream_bandwidth(s: &mut StreamArrays, reps: usize) -> f64 {
    let mut times: Vec<f64> = (0..reps.max(1)).map(|_| s.time_update_pattern()).collect();
    28.0 * s.len() as f64 / super::median(&mut times) / 1e9
}

/// One read-only pass over `x`: a sum of every entry in 16 lanes per
/// chunk (the sums themselves are only there so that the reads happen).
fn read_pass(x: &[f32]) -> f32 {
    x.par_chunks(CHUNK)
        .map(|c| {
            let mut acc = [0f32; 16];
            let groups = c.chunks_exact(16);
            let tail: f32 = groups.remainder().iter().sum();
            for grp in groups {
                for (a, &v) in acc.iter_mut().zip(grp) {
                    *a += v;
                }
            }
            acc.iter().sum::<f32>() + tail
        })
        .sum()
}

/// Median GB/s (4 bytes per entry) of a read-only pass over one of `s`'s
/// arrays, over `reps` passes.
pub fn measure_read_bandwidth(s: &StreamArrays, reps: usize) -> f64 {
    let mut times: Vec<f64> = (0..reps.max(1)).map(|_| s.time_read_pattern()).collect();
    4.0 * s.len() as f64 / super::median(&mut times) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_updates_every_entry() {
        let (mut p, g, mut m, mut v) = (
            vec![1.0f32; 70_000],
            vec![2.0; 70_000],
            vec![0.0; 70_000],
            vec![1.0; 70_000],
        );
        pass(&mut p, &g, &mut m, &mut v);
        assert!(m.iter().all(|&x| x == 2.0) && v.iter().all(|&x| x == 3.0));
        let mut s = StreamArrays::new(10_000);
        assert_eq!(s.len(), 10_000);
        assert!(measure_stream_bandwidth(&mut s, 1) > 0.0);
        assert!(s.time_checked_bound() > 0.0);
    }

    #[test]
    fn the_read_pass_reads_every_entry() {
        let x: Vec<f32> = (0..(3 * CHUNK + 37)).map(|i| (i % 8) as f32).collect();
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        assert_eq!(read_pass(&x) as f64, want);
        assert!(measure_read_bandwidth(&StreamArrays::new(10_000), 1) > 0.0);
    }
}
