//! Progress bars (indicatif) with rate and time left; hidden when asked to be
//! quiet or when standard error is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar over training steps (or any counted work).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` units starting at `done`, labelled `label`; drawn
    /// only if `enabled` and standard error is a terminal.
    pub fn new(label: &str, total: u64, done: u64, enabled: bool) -> Self {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let style = ProgressStyle::with_template(
            "{prefix:>12} [{bar:28}] {pos}/{len} {per_sec:>10} left {eta:>4} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        bar.set_position(done);
        bar.reset_eta();
        Self { bar }
    }

    /// Advances to `pos` with a short message (e.g. the loss).
    pub fn update(&self, pos: u64, msg: String) {
        self.bar.set_position(pos);
        self.bar.set_message(msg);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
