//! CUDA C sources of the GPU kernels, compiled with NVRTC at first use.

/// The filtered optimizer step (state update fused with the score key and the
/// first radix histogram, radix select, tie ranking, masked apply; and the
/// single pass: the update fused with the step where a forecast band decides,
/// the candidates of the band ranked by a small radix select).
pub const OPTIM_SOURCE: &str = include_str!("kernels/optim.cu");

/// Names of the `extern "C"` kernels in [`OPTIM_SOURCE`].
pub const OPTIM_KERNELS: &[&str] = &[
    "adam_update",
    "nadam_update",
    "rmsprop_update",
    "sgd_update",
    "lion_update",
    "radix_hist",
    "radix_pick",
    "tie_count",
    "tie_scan",
    "masked_apply",
    "forecast_plan",
    "forecast_check",
    "cand_hist",
    "cand_pick",
    "cand_apply",
    "forecast_restore",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel the GPU optimizer launches is listed (and so loaded):
    /// checked on the source, so that it fails without a GPU.
    #[test]
    fn every_launched_kernel_is_listed() {
        let host = include_str!("gpu/optim.rs");
        let launched: Vec<&str> = host
            .split("gpu.function(\"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        assert!(launched.len() >= OPTIM_KERNELS.len());
        for name in launched {
            assert!(
                OPTIM_KERNELS.contains(&name),
                "`{name}` is not in OPTIM_KERNELS"
            );
        }
    }

    #[test]
    fn every_kernel_is_defined_once() {
        for name in OPTIM_KERNELS {
            let decl = format!("__global__ void {name}(");
            assert_eq!(OPTIM_SOURCE.matches(&decl).count(), 1, "{name}");
        }
        assert_eq!(
            OPTIM_SOURCE.matches("__global__").count(),
            OPTIM_KERNELS.len()
        );
    }
}
