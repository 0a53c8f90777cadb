//! Theorem 2 / Example 1 of the paper (SPEC.md section 3) with the crate's
//! MoFO and Adam: L_pre(θ) = ½‖θ‖², θ_pre = 0, L_ft(θ) = Π (a_i·θ_i − b_i)².
//!
//! For random a, b and n = 2..8 with α = 1/n (one coordinate per step):
//! - MoFO's first step moves only the coordinate i* of largest a_i/b_i;
//! - MoFO converges to the hyperplane θ_{i*} = b_{i*}/a_{i*}, never moving
//!   another coordinate, so it ends at distance b_{i*}/a_{i*} from 0, the
//!   nearest minimum;
//! - Adam converges to a minimum strictly farther from 0, with strictly
//!   higher L_pre.

use mofo::experiments::example1::Example1;
use mofo::norm::Partition;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod theory_common;
use theory_common::{Kind, OptRun};

const LR: f64 = 1e-3;
const TOL: f64 = 1e-12;
const MAX_ITERS: usize = 60_000;

/// Runs from θ_pre = 0 until L_ft < TOL; returns the end point and the
/// iterate after the first step.
fn run(p: &Example1, kind: Kind) -> (Vec<f64>, Vec<f64>) {
    let n = p.dim();
    let mut r = OptRun::new(kind, vec![0.0; n], LR, false);
    let mut first = None;
    for _ in 0..MAX_ITERS {
        if p.ft_loss(r.theta()) < TOL {
            break;
        }
        let g = p.ft_grad(r.theta());
        r.step(&g);
        first.get_or_insert_with(|| r.theta().to_vec());
    }
    let end = r.theta().to_vec();
    assert!(p.ft_loss(&end) < TOL, "did not converge: {end:?}");
    (end, first.expect("at least one step"))
}

#[test]
fn theorem2_mofo_finds_the_nearest_minimum_and_adam_does_not() {
    let mut rng = ChaCha8Rng::seed_from_u64(2025);
    let mut ratios = Vec::new();
    for case in 0..21 {
        let n = 2 + case % 7;
        let p = Example1::draw(n, &mut rng).unwrap();
        let (istar, dstar) = p.nearest_minimum();
        let mofo = Kind::Mofo {
            alpha: 1.0 / n as f64,
            partition: Partition::whole(n),
        };
        let (m, m1) = run(&p, mofo);
        // Step 1: only the coordinate of largest a_i/b_i moved.
        for i in 0..n {
            assert_eq!(
                m1[i] != 0.0,
                i == istar,
                "case {case}: first step {m1:?}, i* = {istar}"
            );
        }
        // The end point: on the hyperplane of i*. Other coordinates may get a
        // rare step once θ_{i*} has converged and its momentum crosses zero,
        // but they stay negligible.
        for i in 0..n {
            if i != istar {
                assert!(
                    m[i].abs() <= 1e-4 * dstar,
                    "case {case}: coordinate {i} moved: {m:?}"
                );
            }
        }
        let dm = Example1::distance(&m);
        assert!(
            (dm - dstar).abs() <= 1e-4 * dstar,
            "case {case}: MoFO distance {dm} vs b/a = {dstar}"
        );
        let (a, _) = run(&p, Kind::Adam);
        let da = Example1::distance(&a);
        assert!(
            da > dm * (1.0 + 1e-3),
            "case {case}: Adam {da} vs MoFO {dm}"
        );
        assert!(
            Example1::pre_loss(&a) > Example1::pre_loss(&m),
            "case {case}"
        );
        // Adam moved every coordinate.
        assert!(a.iter().all(|&v| v != 0.0), "case {case}: {a:?}");
        ratios.push(da / dm);
    }
    println!("Adam/MoFO distance ratios: {ratios:.3?}");
}

#[test]
fn theorem2_in_2d_matches_the_paper_picture() {
    // a = b = (1, 1): Adam goes diagonally toward (1, 1) (L_pre → 1), MoFO to
    // (1, 0) (the tie at step 1 goes to the smaller index), L_pre = 0.5.
    let p = Example1::new(vec![1.0, 1.0], vec![1.0, 1.0]).unwrap();
    let mofo = Kind::Mofo {
        alpha: 0.5,
        partition: Partition::whole(2),
    };
    let (m, _) = run(&p, mofo);
    assert_eq!(m[1], 0.0);
    assert!((m[0] - 1.0).abs() < 1e-5, "{m:?}");
    assert!((Example1::pre_loss(&m) - 0.5).abs() < 1e-5);
    let mut r = OptRun::new(Kind::Adam, vec![0.0; 2], 1e-2, false);
    for _ in 0..20_000 {
        let g = p.ft_grad(r.theta());
        r.step(&g);
    }
    let a = r.theta();
    assert_eq!(a[0], a[1], "Adam stays on the diagonal");
    assert!(a[0] > 0.95 && Example1::pre_loss(a) > 0.9, "{a:?}");
}
