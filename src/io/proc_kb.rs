//! Sizes that Linux reports in `/proc` as lines `Key:   N kB`
//! (`/proc/self/status`, `/proc/self/smaps_rollup`).

/// The value in kB of the line `key:   N kB` of the file at `path`
/// (`None` where the file or the line is missing or malformed).
pub fn read_kb(path: &str, key: &str) -> Option<u64> {
    kb_field(&std::fs::read_to_string(path).ok()?, key)
}

/// The value in kB of the line `key:   N kB` of `text`.
pub fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
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
        assert_eq!(kb_field(text, "VmHWM"), Some(432_188));
        assert_eq!(kb_field(text, "VmRSS"), Some(1000));
        assert_eq!(kb_field(text, "VmHW"), None);
        assert_eq!(
            kb_field("AnonHugePages:    4096 kB\n", "AnonHugePages"),
            Some(4096)
        );
        assert_eq!(kb_field("VmHWM:\tlots\n", "VmHWM"), None);
        assert_eq!(kb_field("", "VmHWM"), None);
        assert_eq!(read_kb("/nonexistent/status", "VmHWM"), None);
    }
}
