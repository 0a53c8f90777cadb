//! Which f32 kernel runs the products on this CPU: ours
//! ([`super::gemm_avx512`], a 12×32 register tile with `A` read in place)
//! or `matrixmultiply`'s (a 16×16 tile on packed operands).
//!
//! The two compute every entry bit for bit the same (the tests of
//! [`super::gemm_avx512`]), so the choice moves only the speed, never a
//! result, and a process may choose differently from another without
//! breaking determinism. Which one is faster depends on the core: on the
//! Emerald Rapids Xeon of 2026-12-02/04 (two 512-bit FMA pipes, 48 KiB L1D)
//! ours was 10–30% faster on the shapes of S and M; on the Zen 4 EPYC of
//! 2026-12-04 (512-bit FMAs on two 256-bit pipes, 32 KiB L1D)
//! `matrixmultiply`'s was 10–35% faster (docs/performance.md). So the
//! choice is measured, once per process, at the first f32 product:
//!
//! ```text
//! t_own, t_mm = the fastest of ROUNDS alternated runs of each kernel,
//!               one thread, on a 512×256 · 256×256 product (C hot in cache:
//!               about 25 ms in all on the Zen 4)
//! ours  ⇔  t_own ≤ MARGIN · t_mm
//! ```
//!
//! `MARGIN` > 1 leaves ours the choice in a near tie: in training its
//! prefetch hints bring the cold activations and fresh outputs of the
//! layer before, which this hot-cache timing does not see (on the Zen 4,
//! S trained as fast on either kernel while the timing preferred
//! `matrixmultiply` by 10–25%; M trained 15% faster on it).
//! `MOFO_GEMM=own` or `MOFO_GEMM=matrixmultiply` skips the timing.

use std::time::{Duration, Instant};

use ndarray::Array2;

/// Alternated runs of each kernel in the timing.
pub const ROUNDS: usize = 15;

/// Ours is kept unless `matrixmultiply`'s runs more than this factor faster.
pub const MARGIN: f64 = 1.05;

/// How the kernel was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Ours, by the timing.
    OwnMeasured,
    /// `matrixmultiply`'s, by the timing.
    MatrixmultiplyMeasured,
    /// Ours, by `MOFO_GEMM=own`.
    OwnForced,
    /// `matrixmultiply`'s, by `MOFO_GEMM=matrixmultiply`.
    MatrixmultiplyForced,
    /// `matrixmultiply`'s: the CPU has no AVX-512 (or is not x86-64).
    NoAvx512,
}

impl Choice {
    /// Whether our kernel runs the f32 products.
    pub fn own(self) -> bool {
        matches!(self, Choice::OwnMeasured | Choice::OwnForced)
    }

    /// A short description for the benchmarks' reports.
    pub fn describe(self) -> &'static str {
        match self {
            Choice::OwnMeasured => "own 12×32 kernel (timed faster at start)",
            Choice::MatrixmultiplyMeasured => "matrixmultiply (timed faster at start)",
            Choice::OwnForced => "own 12×32 kernel (MOFO_GEMM=own)",
            Choice::MatrixmultiplyForced => "matrixmultiply (MOFO_GEMM=matrixmultiply)",
            Choice::NoAvx512 => "matrixmultiply (no AVX-512)",
        }
    }
}

/// The choice for this process, made at the first call.
pub fn choice() -> Choice {
    static CHOICE: std::sync::OnceLock<Choice> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        if !super::simd::has_avx512() {
            return Choice::NoAvx512;
        }
        match std::env::var("MOFO_GEMM").as_deref() {
            Ok("matrixmultiply") => Choice::MatrixmultiplyForced,
            Ok("own") => Choice::OwnForced,
            _ => {
                let (own, mm) = time_kernels();
                if decide(own, mm) {
                    Choice::OwnMeasured
                } else {
                    Choice::MatrixmultiplyMeasured
                }
            }
        }
    })
}

/// Ours unless `matrixmultiply`'s time is below `own / MARGIN`.
pub fn decide(own: Duration, matrixmultiply: Duration) -> bool {
    own.as_secs_f64() <= MARGIN * matrixmultiply.as_secs_f64()
}

/// The fastest of [`ROUNDS`] alternated runs of each kernel (ours first in
/// even rounds, `matrixmultiply`'s first in odd ones) on one thread.
pub fn time_kernels() -> (Duration, Duration) {
    let (m, k, n) = (512, 256, 256);
    // Values in [-1, 1) from a fixed pattern: the timing needs no RNG.
    let fill = |r: usize, c: usize, salt: usize| {
        Array2::from_shape_fn((r, c), |(i, j)| {
            ((i * 31 + j * 17 + salt) % 97) as f32 / 48.5 - 1.0
        })
    };
    let a = fill(m, k, 1);
    let b = fill(k, n, 2);
    let mut c = Array2::<f32>::zeros((m, n));
    let mut best = [Duration::MAX; 2];
    for round in 0..ROUNDS {
        for which in [round % 2, 1 - round % 2] {
            let t0 = Instant::now();
            if which == 0 {
                super::gemm::sgemm_own(1.0, a.view(), b.view(), 0.0, c.view_mut());
            } else {
                super::gemm::sgemm_matrixmultiply(1.0, a.view(), b.view(), 0.0, c.view_mut());
            }
            best[which] = best[which].min(t0.elapsed());
        }
    }
    (best[0], best[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_is_kept_in_a_near_tie() {
        let ms = Duration::from_micros;
        assert!(decide(ms(100), ms(100)));
        assert!(decide(ms(104), ms(100)));
        assert!(!decide(ms(110), ms(100)));
        assert!(decide(ms(80), ms(100)));
    }

    #[test]
    fn the_choice_is_made_once_and_names_itself() {
        let c = choice();
        assert_eq!(c, choice());
        assert!(!c.describe().is_empty());
        if !super::super::simd::has_avx512() {
            assert_eq!(c, Choice::NoAvx512);
        }
    }
}
