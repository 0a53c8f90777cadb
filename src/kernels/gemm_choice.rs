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
//! `matrixmultiply` in training (docs/performance-log.md). On a Zen 5 EPYC
//! (two 512-bit FMA pipes, 48 KiB L1D), once our tiles no longer read A's
//! rows through a chain of address additions (2026-12-06), the 16×16 tile
//! trained M about 14% faster than `matrixmultiply` and the 12×32 one
//! about 8%; before, `matrixmultiply` was the fastest there and this
//! timing picked the 12×32 tile, 10% slower than it. Once the 12×32 tile
//! loaded each of A's entries once for its two FMAs (2026-12-07), it
//! trained M about 8% faster than the 16×16 tile there, and the timing
//! picks it. So the choice is measured, once per process, at the first f32
//! product:
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
//!
//! When ours is chosen, its products with a narrow B that read A's rows in
//! place ([`narrow_rows_in_place`]: attention's P·V and dS·K, whose 32
//! columns make one panel of the 12×32 tile or two of the 16×16 one, too
//! few to pay for copying A) get a tile of their own, timed the same way
//! on such a product:
//!
//! ```text
//! t_wide', t_square' = the fastest of ROUNDS alternated runs, one thread, of
//!               a 256×256 · 256×32 product, A's rows read in place
//! narrow tile = the 16×16 tile if t_square' < t_wide', else the 12×32 one
//! ```
//!
//! Both tiles read A's rows in place through a chain of address additions
//! (too few registers to hold the row addresses): sixteen per step of k for
//! the 16×16 tile's sixteen FMAs, which halves its rate on a core with two
//! 512-bit FMA pipes, and twelve for the 12×32 tile's 24 FMAs, which two
//! pipes take as long to run. On
//! the Zen 5 EPYC (2026-12-07) the 12×32 tile made M's attention about 8%
//! faster, forward and backward, in the median of four alternated rounds of
//! the `kernels` benchmark, and M's training step about 2.5% faster
//! (docs/performance-log.md), while the 16×16 tile stayed the faster elsewhere
//! (until the 12×32 tile's single broadcast, above, made it the faster
//! everywhere there). On a core with one 512-bit FMA pipe the chain costs
//! nothing, and the timing may keep the 16×16 tile there.
//!
//! `MOFO_GEMM=own` (the 12×32 tile), `MOFO_GEMM=own16` (the 16×16 tile) or
//! `MOFO_GEMM=matrixmultiply` skips the timing and runs that kernel for
//! every product.

use std::time::{Duration, Instant};

use ndarray::Array2;

pub use super::gemm::Tile;

/// Alternated runs of each kernel in the timing.
pub const ROUNDS: usize = 15;

/// Ours is kept unless `matrixmultiply`'s runs more than this factor faster.
pub const MARGIN: f64 = 1.05;

/// The most columns of B for which a product that reads A's rows in
/// place takes the narrow tile of [`Choice::OwnMeasured`]: as many as both
/// tiles read A in place for (32: one panel of the 12×32 tile, two of the
/// 16×16 one).
pub const NARROW_COLUMNS: usize = super::gemm_avx512::A_IN_PLACE_MAX_COLUMNS;

/// Whether a product with `n` columns of B and A at strides `(rsa, csa)`
/// reads A's rows in place with either tile: A by rows (`csa = 1`, and not
/// also by columns) and at most [`NARROW_COLUMNS`] columns.
pub fn narrow_rows_in_place(n: usize, rsa: isize, csa: isize) -> bool {
    csa == 1 && rsa != 1 && n <= NARROW_COLUMNS
}

/// How the kernel was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Ours, by the timing: `tile` for every product but those that read
    /// A's rows in place with a narrow B ([`narrow_rows_in_place`]), which
    /// take `narrow`.
    OwnMeasured {
        /// The tile of most products.
        tile: Tile,
        /// The tile of the narrow products reading A's rows in place.
        narrow: Tile,
    },
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
    /// The tile of our kernel for most products, when ours runs the f32
    /// products.
    pub fn own(self) -> Option<Tile> {
        match self {
            Choice::OwnMeasured { tile, .. } | Choice::OwnForced(tile) => Some(tile),
            _ => None,
        }
    }

    /// The tile of our kernel for a product with `n` columns of B and A at
    /// strides `(rsa, csa)`, when ours runs the f32 products.
    pub fn own_for(self, n: usize, rsa: isize, csa: isize) -> Option<Tile> {
        match self {
            Choice::OwnMeasured { narrow, .. } if narrow_rows_in_place(n, rsa, csa) => Some(narrow),
            other => other.own(),
        }
    }

    /// A short description for the benchmarks' reports.
    pub fn describe(self) -> &'static str {
        match self {
            Choice::OwnMeasured {
                tile: Tile::Wide,
                narrow: Tile::Wide,
            } => "own 12×32 kernel (timed fastest at start)",
            Choice::OwnMeasured {
                tile: Tile::Square,
                narrow: Tile::Square,
            } => "own 16×16 kernel (timed fastest at start)",
            Choice::OwnMeasured {
                tile: Tile::Square,
                narrow: Tile::Wide,
            } => "own 16×16 kernel, 12×32 for narrow products reading A's rows in place (timed fastest at start)",
            Choice::OwnMeasured {
                tile: Tile::Wide,
                narrow: Tile::Square,
            } => "own 12×32 kernel, 16×16 for narrow products reading A's rows in place (timed fastest at start)",
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
                    Some(tile) => Choice::OwnMeasured {
                        tile,
                        narrow: decide_narrow(time_narrow()),
                    },
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

/// The tile for the narrow products reading A's rows in place: the 16×16
/// one only when it was strictly faster on such a product.
pub fn decide_narrow(t: NarrowTimings) -> Tile {
    if t.square < t.wide {
        Tile::Square
    } else {
        Tile::Wide
    }
}

/// The times of our two tiles on a narrow product reading A's rows in
/// place.
#[derive(Clone, Copy, Debug)]
pub struct NarrowTimings {
    /// The 12×32 tile (one panel of B, A in place).
    pub wide: Duration,
    /// The 16×16 tile (two panels of B, A in place).
    pub square: Duration,
}

/// An r×c matrix of values in [-1, 1) from a fixed pattern: the timings
/// need no RNG.
fn pattern(r: usize, c: usize, salt: usize) -> Array2<f32> {
    Array2::from_shape_fn((r, c), |(i, j)| {
        ((i * 31 + j * 17 + salt) % 97) as f32 / 48.5 - 1.0
    })
}

/// The fastest of [`ROUNDS`] alternated runs of each tile, one thread, on
/// a 256×256 · 256×[`NARROW_COLUMNS`] product with A's rows read in place.
pub fn time_narrow() -> NarrowTimings {
    let (m, k, n) = (256, 256, NARROW_COLUMNS);
    let a = pattern(m, k, 3);
    let b = pattern(k, n, 4);
    debug_assert!(narrow_rows_in_place(n, a.strides()[0], a.strides()[1]));
    let mut c = Array2::<f32>::zeros((m, n));
    let best = fastest_rotated::<2>(|which| {
        super::gemm::sgemm_own(Tile::ALL[which], 1.0, a.view(), b.view(), 0.0, c.view_mut())
    });
    NarrowTimings {
        wide: best[0],
        square: best[1],
    }
}

/// The fastest of [`ROUNDS`] runs of each kernel on one thread, the order
/// of the three rotated from round to round.
pub fn time_kernels() -> Timings {
    let (m, k, n) = (512, 256, 256);
    let a = pattern(m, k, 1);
    let b = pattern(k, n, 2);
    let mut c = Array2::<f32>::zeros((m, n));
    let best = fastest_rotated::<3>(|which| match which {
        0 | 1 => {
            super::gemm::sgemm_own(Tile::ALL[which], 1.0, a.view(), b.view(), 0.0, c.view_mut())
        }
        _ => super::gemm::sgemm_matrixmultiply(1.0, a.view(), b.view(), 0.0, c.view_mut()),
    });
    Timings {
        wide: best[0],
        square: best[1],
        matrixmultiply: best[2],
    }
}

/// The fastest of [`ROUNDS`] runs of each of `N` kernels (`run(i)` runs
/// kernel `i`), the order of the `N` rotated from round to round.
fn fastest_rotated<const N: usize>(mut run: impl FnMut(usize)) -> [Duration; N] {
    let mut best = [Duration::MAX; N];
    for round in 0..ROUNDS {
        for at in 0..N {
            let which = (round + at) % N;
            let t0 = Instant::now();
            run(which);
            best[which] = best[which].min(t0.elapsed());
        }
    }
    best
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
    fn the_narrow_tile_is_the_square_one_only_when_strictly_faster() {
        let t = |wide, square| NarrowTimings {
            wide: Duration::from_micros(wide),
            square: Duration::from_micros(square),
        };
        assert_eq!(decide_narrow(t(100, 99)), Tile::Square);
        assert_eq!(decide_narrow(t(100, 100)), Tile::Wide);
        assert_eq!(decide_narrow(t(60, 100)), Tile::Wide);
    }

    #[test]
    fn only_narrow_products_reading_a_by_rows_take_the_narrow_tile() {
        let c = Choice::OwnMeasured {
            tile: Tile::Square,
            narrow: Tile::Wide,
        };
        // Attention's P·V: A (a block of P) by rows, 32 columns of V.
        assert_eq!(c.own_for(32, 256, 1), Some(Tile::Wide));
        assert_eq!(c.own_for(1, 64, 1), Some(Tile::Wide));
        // Wider B, A by columns (transposed), or a one-row A (both strides 1).
        assert_eq!(c.own_for(33, 256, 1), Some(Tile::Square));
        assert_eq!(c.own_for(32, 1, 256), Some(Tile::Square));
        assert_eq!(c.own_for(32, 1, 1), Some(Tile::Square));
        assert_eq!(c.own(), Some(Tile::Square));
        // A forced tile runs every product.
        assert_eq!(
            Choice::OwnForced(Tile::Square).own_for(32, 256, 1),
            Some(Tile::Square)
        );
        assert_eq!(Choice::MatrixmultiplyMeasured.own_for(32, 256, 1), None);
        assert_eq!(Choice::NoAvx512.own_for(32, 256, 1), None);
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
