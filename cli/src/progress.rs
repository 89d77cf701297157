//! Progress bars for the long commands (verify, streams, dump), drawn on stderr and only when stderr is a
//! terminal (indicatif draws nothing otherwise), so that they never mix with what a command prints or pipes.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over the log's positions `0..length`, labelled `message`; hidden unless `show`.
pub fn positions(length: u64, message: &'static str, show: bool) -> ProgressBar {
    bar(length, message, show, "{msg} {wide_bar} {human_pos}/{human_len} positions ({eta})")
}

/// A bar over `length` bytes, labelled `message`.
pub fn bytes(length: u64, message: &'static str) -> ProgressBar {
    bar(length, message, true, "{msg} {wide_bar} {bytes}/{total_bytes} ({eta})")
}

/// A spinner with the time spent, for work whose progress can not be seen.
pub fn spinner(message: &'static str) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("the template is valid");
    let spinner = ProgressBar::new_spinner().with_style(style).with_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    spinner
}

fn bar(length: u64, message: &'static str, show: bool, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(template).expect("the templates above are valid");
    ProgressBar::new(length).with_style(style).with_message(message)
}

/// Bytes this process has read with `read`-family calls so far (`rchar` of `/proc/self/io`, Linux); `None`
/// where that is not available.
///
/// `Store::verify` takes no progress callback, but it reads every segment with `pread` from start to end, so
/// the bytes read while it runs say how far through the log it is. (The follower thread's reads of `HEAD`, 64
/// bytes a millisecond, are noise at this scale.)
pub fn bytes_read_by_this_process() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|line| line.strip_prefix("rchar:")).and_then(|count| count.trim().parse().ok())
}
