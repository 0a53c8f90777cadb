//! The process's peak resident memory, for `mofo bench train`.
//!
//! Linux keeps it as `VmHWM` in `/proc/self/status` (the high-water mark of
//! the resident set, in kB): the figure `/usr/bin/time -v` reports as
//! "Maximum resident set size" when the process ends, so a benchmark can
//! print it next to its timings and be compared with another program's
//! `/usr/bin/time` figure. It covers the whole process so far (the model,
//! the optimizer's state, every step's activations and gradients).

/// The peak resident set of this process in kB (`VmHWM`), where the
/// kernel reports it (`None` elsewhere).
pub fn peak_resident_kb() -> Option<u64> {
    crate::io::proc_kb::read_kb("/proc/self/status", "VmHWM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_where_linux_reports_one() {
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(peak_resident_kb().is_some_and(|kb| kb > 0));
        }
    }
}
