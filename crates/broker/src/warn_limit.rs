//! Rate-limited warnings: a peer that misbehaves on purpose (thousands of over-long lines,
//! a connection flood) must not be able to flood the log as well. Public so that the server's
//! RPC and sensor ports limit their warnings the same way.

use std::time::{Duration, Instant};

/// Warnings allowed per [`WINDOW`]; the rest are counted and reported as one line.
const WARNINGS_PER_WINDOW: u32 = 10;

/// The rate limit's window.
const WINDOW: Duration = Duration::from_secs(1);

/// Decides whether a warning may be logged now.
#[derive(Debug)]
pub struct WarnLimiter {
    /// Names the warnings in the "suppressed" line, e.g. `pub/sub`.
    label: &'static str,
    window_start: Instant,
    used: u32,
    suppressed: u64,
}

impl WarnLimiter {
    /// A limiter whose first window starts at `now`; `label` names its warnings.
    pub fn new(label: &'static str, now: Instant) -> Self {
        WarnLimiter {
            label,
            window_start: now,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether one more warning fits in the current window. When a new window starts, the
    /// number of warnings left out of the last one is logged first.
    pub fn allow(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            if self.suppressed > 0 {
                log::warn!(
                    "{} more {} warning(s) suppressed in the last second",
                    self.suppressed,
                    self.label
                );
            }
            self.window_start = now;
            self.used = 0;
            self.suppressed = 0;
        }
        if self.used < WARNINGS_PER_WINDOW {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_per_window() {
        let start = Instant::now();
        let mut limiter = WarnLimiter::new("test", start);
        let allowed = (0..25).filter(|_| limiter.allow(start)).count();
        assert_eq!(allowed, WARNINGS_PER_WINDOW as usize);
        assert_eq!(limiter.suppressed, 15);
        assert!(limiter.allow(start + WINDOW));
        assert_eq!(limiter.suppressed, 0);
    }
}
