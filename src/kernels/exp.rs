//! The exponential in plain float arithmetic, so that loops calling it
//! vectorise (libm's `expf` is one call per entry).
//!
//! For `f32` ([`exp_f32`]), Cody–Waite range reduction and Cephes' degree-6
//! polynomial on the reduced argument:
//!
//! ```text
//! n  = round(x·log₂e)                    (adding and removing 1.5·2²³)
//! r  = (x − n·ln2_hi) − n·ln2_lo          (|r| ≤ ln2/2; n·ln2_hi is exact)
//! p  = 1 + r + r²·(c₂ + r·(c₃ + r·(c₄ + r·(c₅ + r·(c₆ + r·c₇)))))
//! eˣ ≈ p · 2^⌊n/2⌋ · 2^(n−⌊n/2⌋)           (two factors, so n = 128 and
//!                                           n = −126 need no special case)
//! ```
//!
//! Every operation is a separately rounded IEEE multiply or add (no fused
//! multiply-add), so the baseline, AVX2 and AVX-512 builds of a loop give
//! bitwise the same values, and results do not depend on the machine.
//! Accuracy: within 1 ulp of eˣ rounded from `f64::exp`, on about 850 000
//! arguments spread over the whole normal range and every multiple of 2⁻²⁰
//! in [−1, 1] (2 097 153 more; the unit test). Special values: NaN stays NaN,
//! x > ln(f32::MAX) gives +∞, x < ln(f32::MIN_POSITIVE) gives +0 (libm
//! returns a subnormal down to x ≈ −103.97; the kernels using this one only
//! add such values to sums of order one).
//!
//! `f64` keeps libm's `exp` ([`crate::Scalar::fast_exp`]).

/// log₂e.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5·2²³: adding and subtracting it rounds an f32 below 2²² in magnitude
/// to the nearest integer.
const ROUND: f32 = 12_582_912.0;
/// ln 2 split in a part with 9 significant bits (so n·LN2_HI is exact for
/// |n| ≤ 2¹⁵) and the rest.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Above this, eˣ overflows f32.
const MAX_ARG: f32 = 88.722_83;
/// Below this, eˣ is below the smallest normal f32.
const MIN_ARG: f32 = -87.336_55;

/// eˣ for `f32` (module docs): within 1 ulp where tested, vectorisable,
/// the same bits on every target.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let xc = x.clamp(MIN_ARG, MAX_ARG);
    let t = xc * LOG2E + ROUND;
    let nf = t - ROUND;
    let r = (xc - nf * LN2_HI) - nf * LN2_LO;
    let poly = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = poly * (r * r) + r + 1.0;
    // n = nf as an integer, read from t's low mantissa bits (t lies in
    // [2²³, 2²⁴), where its ulp is 1): a float-to-int cast would keep the
    // loop scalar (Rust's saturating cast does not vectorise here).
    let n = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let h = n >> 1;
    let s1 = f32::from_bits(((h + 127) as u32) << 23);
    let s2 = f32::from_bits(((n - h + 127) as u32) << 23);
    let y = p * s1 * s2;
    if x > MAX_ARG {
        f32::INFINITY
    } else if x < MIN_ARG {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in ulps between two finite positive f32s.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn within_one_ulp_over_the_normal_range() {
        let mut x = MIN_ARG;
        while x <= MAX_ARG {
            let want = (x as f64).exp() as f32;
            let got = exp_f32(x);
            let e = ulps(got, want);
            assert!(e <= 1, "exp({x}) = {got}, want {want}: {e} ulp");
            // About 850 000 points, denser near zero.
            x += (x.abs() * 2e-5).max(1e-6);
        }
        // Every f32 in [-1, 1] that is a multiple of 2^-20.
        for i in -(1 << 20)..=(1 << 20) {
            let x = i as f32 / (1 << 20) as f32;
            let want = (x as f64).exp() as f32;
            assert!(ulps(exp_f32(x), want) <= 1, "exp({x})");
        }
    }

    #[test]
    fn special_values() {
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(-88.0), 0.0);
        assert!(exp_f32(MAX_ARG).is_finite());
        assert!(exp_f32(MIN_ARG) > 0.0);
        assert_eq!(exp_f32(1.0), std::f32::consts::E);
    }

    #[test]
    fn monotone_on_a_fine_grid() {
        let mut prev = 0.0f32;
        let mut x = -20.0f32;
        while x < 20.0 {
            let y = exp_f32(x);
            assert!(y >= prev, "exp not monotone at {x}");
            prev = y;
            x += 1e-3;
        }
    }
}
