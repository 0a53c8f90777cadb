//! Which f32 kernel runs the products on this CPU: ours
//! ([`super::gemm_avx512`], with a 12×32 or a 16×16 register tile:
//! [`Tile`]) or `matrixmultiply`'s (a 16×16 tile on packed operands).
//!
//! The three compute every entry bit for bit the same (the tests of
//! [`super::gemm_avx512`]), so the choice moves only the speed, never a
//! result, and a process may choose differently from another without
//! breaking determinism. Which one is faster depends on the core: on the
//! Emerald Rapids Xeon of 2026-12-02/04 (two 512-bit FMA pipes, 48 KiB L1D)
//! our 12×32 tile was 10–30% faster than `matrixmultiply` on the shapes of
//! S and M; on the Zen 4 EPYC of 2026-12-04 (512-bit FMAs on two 256-bit
//! pipes, 32 KiB L1D) `matrixmultiply`'s was 10–35% faster than it, and
//! our 16×16 tile (its panel of B half as large) 8–10% faster than
//! `matrixmultiply` in training (docs/performance.md). On a Zen 5 EPYC
//! (two 512-bit FMA pipes, 48 KiB L1D), once our tiles no longer read A's
//! rows through a chain of address additions (2026-12-06), the 16×16 tile
//! trained M about 14% faster than `matrixmultiply` and the 12×32 one
//! about 8%; before, `matrixmultiply` was the fastest there and this
//! timing picked the 12×32 tile, 10% slower than it. So the choice is
//! measured, once per process, at the first f32 product:
//!
//! ```text
//! t_wide, t_square, t_mm = the fastest of ROUNDS rotated runs of each
//!               kernel, one thread, on a 512×256 · 256×256 product (C hot
//!               in cache: about 40 ms in all on the Zen 4)
//! t_own = min(t_wide, t_square)   (the 12×32 tile in a tie)
//! ours, with that tile  ⇔  t_own ≤ MARGIN · t_mm
//! ```
//!
//! `MARGIN` > 1 leaves ours the choice in a near tie: in training its
//! prefetch hints bring the cold activations and fresh outputs of the
//! layer before, which this hot-cache timing does not see (on the Zen 4,
//! S trained as fast on the 12×32 tile as on `matrixmultiply` while the
//! timing preferred `matrixmultiply` by 10–25%; M trained 15% faster on it).
//! `MOFO_GEMM=own` (the 12×32 tile), `MOFO_GEMM=own16` (the 16×16 tile) or
//! `MOFO_GEMM=matrixmultiply` skips the timing.

use std::time::{Duration, Instant};

use ndarray::Array2;

pub use super::gemm::Tile;

/// Alternated runs of each kernel in the timing.
pub const ROUNDS: usize = 15;

/// Ours is kept unless `matrixmultiply`'s runs more than this factor faster.
pub const MARGIN: f64 = 1.05;

/// How the kernel was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Ours with this tile, by the timing.
    OwnMeasured(Tile),
    /// `matrixmultiply`'s, by the timing.
    MatrixmultiplyMeasured,
    /// Ours with this tile, by `MOFO_GEMM=own` (12×32) or `own16` (16×16).
    OwnForced(Tile),
    /// `matrixmultiply`'s, by `MOFO_GEMM=matrixmultiply`.
    MatrixmultiplyForced,
    /// `matrixmultiply`'s: the CPU has no AVX-512 (or is not x86-64).
    NoAvx512,
}

impl Choice {
    /// The tile of our kernel, when ours runs the f32 products.
    pub fn own(self) -> Option<Tile> {
        match self {
            Choice::OwnMeasured(t) | Choice::OwnForced(t) => Some(t),
            _ => None,
        }
    }

    /// A short description for the benchmarks' reports.
    pub fn describe(self) -> &'static str {
        match self {
            Choice::OwnMeasured(Tile::Wide) => "own 12×32 kernel (timed fastest at start)",
            Choice::OwnMeasured(Tile::Square) => "own 16×16 kernel (timed fastest at start)",
            Choice::MatrixmultiplyMeasured => "matrixmultiply (timed fastest at start)",
            Choice::OwnForced(Tile::Wide) => "own 12×32 kernel (MOFO_GEMM=own)",
            Choice::OwnForced(Tile::Square) => "own 16×16 kernel (MOFO_GEMM=own16)",
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
            Ok("own") => Choice::OwnForced(Tile::Wide),
            Ok("own16") => Choice::OwnForced(Tile::Square),
            _ => {
                let t = time_kernels();
                match decide(t) {
                    Some(tile) => Choice::OwnMeasured(tile),
                    None => Choice::MatrixmultiplyMeasured,
                }
            }
        }
    })
}

/// The times of the three kernels on the same product.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// Ours with the 12×32 tile.
    pub wide: Duration,
    /// Ours with the 16×16 tile.
    pub square: Duration,
    /// `matrixmultiply`'s.
    pub matrixmultiply: Duration,
}

/// Our faster tile (the 12×32 one in a tie) unless `matrixmultiply`'s time
/// is below its time / `MARGIN`.
pub fn decide(t: Timings) -> Option<Tile> {
    let (tile, own) = if t.square < t.wide {
        (Tile::Square, t.square)
    } else {
        (Tile::Wide, t.wide)
    };
    (own.as_secs_f64() <= MARGIN * t.matrixmultiply.as_secs_f64()).then_some(tile)
}

/// The fastest of [`ROUNDS`] runs of each kernel on one thread, the order
/// of the three rotated from round to round.
pub fn time_kernels() -> Timings {
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
    let mut best = [Duration::MAX; 3];
    for round in 0..ROUNDS {
        for at in 0..3 {
            let which = (round + at) % 3;
            let t0 = Instant::now();
            match which {
                0 => super::gemm::sgemm_own(Tile::Wide, 1.0, a.view(), b.view(), 0.0, c.view_mut()),
                1 => {
                    super::gemm::sgemm_own(Tile::Square, 1.0, a.view(), b.view(), 0.0, c.view_mut())
                }
                _ => super::gemm::sgemm_matrixmultiply(1.0, a.view(), b.view(), 0.0, c.view_mut()),
            }
            best[which] = best[which].min(t0.elapsed());
        }
    }
    Timings {
        wide: best[0],
        square: best[1],
        matrixmultiply: best[2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_is_kept_in_a_near_tie_with_its_faster_tile() {
        let t = |wide, square, matrixmultiply| Timings {
            wide: Duration::from_micros(wide),
            square: Duration::from_micros(square),
            matrixmultiply: Duration::from_micros(matrixmultiply),
        };
        assert_eq!(decide(t(100, 120, 100)), Some(Tile::Wide));
        assert_eq!(decide(t(104, 120, 100)), Some(Tile::Wide));
        assert_eq!(decide(t(110, 120, 100)), None);
        assert_eq!(decide(t(80, 120, 100)), Some(Tile::Wide));
        assert_eq!(decide(t(120, 104, 100)), Some(Tile::Square));
        assert_eq!(decide(t(120, 110, 100)), None);
        assert_eq!(decide(t(90, 90, 100)), Some(Tile::Wide));
        assert_eq!(decide(t(91, 90, 100)), Some(Tile::Square));
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
