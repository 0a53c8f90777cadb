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
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kb(&text, "VmHWM")
}

/// The value in kB of the line `key:   N kB` of a `/proc/<pid>/status` text.
fn status_kb(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| {
        l.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line[key.len() + 1..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_line_of_its_key_only() {
        let text = "Name:\tmofo\nVmPeak:\t  900 kB\nVmHWM:\t  432188 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(status_kb(text, "VmHWM"), Some(432_188));
        assert_eq!(status_kb(text, "VmRSS"), Some(1000));
        assert_eq!(status_kb(text, "VmHW"), None);
        assert_eq!(status_kb("VmHWM:\tlots\n", "VmHWM"), None);
        assert_eq!(status_kb("", "VmHWM"), None);
    }

    #[test]
    fn this_process_has_a_peak_where_linux_reports_one() {
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(peak_resident_kb().is_some_and(|kb| kb > 0));
        }
    }
}
