//! `mofo bench optim --methods LIST`: the optimizer family timed on the same
//! tensors, after the AdamW and MoFO-AdamW headline figures, each as its
//! median step time and its ratio to the headline AdamW of the same run.
//!
//! A method is a name of [`OptimizerSpec::method`] (lr 1e-5, α = 0.1, seed
//! 0), so the figures are those of what `mofo train --method NAME` runs.
//!
//! The headline steps reuse one gradient, which suits AdamW (whose cost does
//! not depend on the values) and MoFO (|m| spreads as |g| does). Here the
//! gradient changes every step, cycling through [`GRADIENT_SETS`] seeded
//! draws: with a fixed gradient every mv or gv score tends to
//! |g|/(|g| + ε) ≈ 1, all scores of a block tie up to rounding, and those
//! filters would be timed on that degenerate case (the general step) rather
//! than on a training run's. `adamw` and `mofo` are in the list too, so
//! their figures on this workload sit beside the others'.

use crate::optim::{OptimConfig, OptimizerSpec, StepPhases};
use crate::ParamStore;

use super::CliError;

/// How many seeded gradient draws the timed steps cycle through.
pub const GRADIENT_SETS: usize = 4;

/// Every method `--methods all` times, in this order.
pub const ALL_METHODS: [&str; 13] = [
    "adamw",
    "mofo",
    "adam",
    "nadam",
    "rmsprop",
    "sgd",
    "lion",
    "lion_mofo",
    "grad_bcd",
    "mv_bcd",
    "gv_bcd",
    "random_bcd",
    "hft",
];

/// The median step time of one method.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodTiming {
    /// Its name (`OptimizerSpec::method`).
    pub name: String,
    /// "filter+base", as the optimizer describes itself.
    pub describe: String,
    /// Median wall-clock ns of one step.
    pub ns: f64,
    /// How the fused step located its thresholds in the timed steps,
    /// summed over blocks (`Optimizer::fused_path_counts`): forecast hits,
    /// histogram passes or redone single passes, crowded bands. All zero
    /// for a method without a cut (no filter, or HFT's fixed halves).
    pub thresholds: (u64, u64, u64),
}

/// The method names of a `--methods` value: a comma-separated list of
/// names, or `all` for [`ALL_METHODS`]. Unknown names are refused here,
/// before anything is timed.
pub fn parse_methods(list: &str) -> Result<Vec<String>, CliError> {
    let names: Vec<String> = if list.trim() == "all" {
        ALL_METHODS.iter().map(|s| s.to_string()).collect()
    } else {
        list.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if names.is_empty() {
        return Err("--methods needs at least one method name (or `all`)".into());
    }
    for n in &names {
        OptimizerSpec::method(n, 1e-5, 0.1, 0)?;
    }
    Ok(names)
}

/// Times each method in turn on `params` (`warmup` untimed steps, then the
/// median of `reps`), step j taking `grads[j % grads.len()]`, and drops its
/// state before the next. Each method runs its own configuration with the
/// huge pages and the clipping of `shared`. An empty `grads` is an error.
pub fn time_methods(
    names: &[String],
    params: &mut ParamStore<f32>,
    grads: &[ParamStore<f32>],
    shared: &OptimConfig,
    warmup: usize,
    reps: usize,
    median_ns: impl Fn(
        &mut dyn FnMut() -> Result<StepPhases, CliError>,
        usize,
        usize,
    ) -> Result<(f64, [f64; 2]), CliError>,
) -> Result<Vec<MethodTiming>, CliError> {
    if grads.is_empty() {
        return Err("time_methods: no gradients to step with".into());
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let spec = OptimizerSpec::method(name, 1e-5, 0.1, 0)?;
        let config = OptimConfig {
            huge_pages: shared.huge_pages,
            clip: shared.clip,
            ..spec.config()
        };
        let mut opt = spec.build_with_config(config, params)?;
        let mut j = 0;
        // The counts when the timed steps start (`median_ns` runs at least
        // one untimed step).
        let mut at_warmup = (0, 0, 0);
        let (ns, _) = median_ns(
            &mut || {
                if j == warmup.max(1) {
                    at_warmup = opt.fused_path_counts();
                }
                opt.step(params, &grads[j % grads.len()])?;
                j += 1;
                Ok(StepPhases::default())
            },
            warmup,
            reps,
        )?;
        let now = opt.fused_path_counts();
        out.push(MethodTiming {
            name: name.clone(),
            describe: opt.describe(),
            ns,
            thresholds: (
                now.0 - at_warmup.0,
                now.1 - at_warmup.1,
                now.2 - at_warmup.2,
            ),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::HugePages;

    #[test]
    fn all_names_every_method_but_the_regularised_ones() {
        let names = parse_methods("all").unwrap();
        assert_eq!(names.len(), ALL_METHODS.len());
        let known = OptimizerSpec::method("none", 1e-5, 0.1, 0)
            .unwrap_err()
            .to_string();
        for n in known
            .split("known: ")
            .nth(1)
            .unwrap()
            .trim_end_matches(')')
            .split(", ")
        {
            assert_eq!(names.iter().any(|m| m == n), !n.ends_with("_reg"), "{n}");
        }
    }

    #[test]
    fn lists_are_split_and_checked() {
        assert_eq!(
            parse_methods(" lion, sgd ,").unwrap(),
            vec!["lion".to_string(), "sgd".to_string()]
        );
        let e = parse_methods("lion,adamx").unwrap_err().to_string();
        assert!(e.contains("unknown method `adamx`"), "{e}");
        assert!(parse_methods(" , ").is_err());
    }

    #[test]
    fn every_method_steps_and_is_timed() {
        let mut params = ParamStore::<f32>::new();
        params.insert_vec("w", &[4, 8], vec![0.5; 32]).unwrap();
        let grads: Vec<_> = (0..2)
            .map(|k| {
                let mut g = params.zeros_like();
                for (i, x) in g
                    .get_mut("w")
                    .unwrap()
                    .as_slice_mut()
                    .iter_mut()
                    .enumerate()
                {
                    *x = (i * (k + 1)) as f32 - 15.5;
                }
                g
            })
            .collect();
        let names = parse_methods("all").unwrap();
        let median =
            |f: &mut dyn FnMut() -> Result<StepPhases, CliError>, warm: usize, reps: usize| {
                for _ in 0..warm + reps {
                    f()?;
                }
                Ok((1.0, [0.0; 2]))
            };
        let before = params.get("w").unwrap().as_slice().to_vec();
        let t = time_methods(
            &names,
            &mut params,
            &grads,
            &OptimConfig {
                huge_pages: HugePages::Off,
                ..OptimConfig::default()
            },
            1,
            2,
            median,
        )
        .unwrap();
        assert_eq!(t.len(), names.len());
        assert!(t.iter().all(|m| m.ns == 1.0 && m.describe.contains('+')));
        // The cut's block steps of the 2 timed steps (one block), none for
        // AdamW's.
        let of = |name: &str| t.iter().find(|m| m.name == name).unwrap().thresholds;
        let (h, m, c) = of("mofo");
        assert_eq!(h + m + c, 2, "{:?}", of("mofo"));
        assert_eq!(of("adamw"), (0, 0, 0));
        assert_ne!(params.get("w").unwrap().as_slice(), &before[..]);
        let e = time_methods(
            &names,
            &mut params,
            &[],
            &OptimConfig {
                huge_pages: HugePages::Off,
                ..OptimConfig::default()
            },
            1,
            2,
            median,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no gradients"), "{e}");
    }
}
