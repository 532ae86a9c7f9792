//! Rate-limited warnings: a peer that misbehaves on purpose (thousands of over-long lines,
//! a connection flood) must not be able to flood the log as well.

use std::time::{Duration, Instant};

/// Warnings allowed per [`WINDOW`]; the rest are counted and reported as one line.
const WARNINGS_PER_WINDOW: u32 = 10;

/// The rate limit's window.
const WINDOW: Duration = Duration::from_secs(1);

/// Decides whether a warning may be logged now.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    window_start: Instant,
    used: u32,
    suppressed: u64,
}

impl WarnLimiter {
    pub(crate) fn new(now: Instant) -> Self {
        WarnLimiter {
            window_start: now,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether one more warning fits in the current window. When a new window starts, the
    /// number of warnings left out of the last one is logged first.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            if self.suppressed > 0 {
                log::warn!(
                    "{} more pub/sub warning(s) suppressed in the last second",
                    self.suppressed
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
        let mut limiter = WarnLimiter::new(start);
        let allowed = (0..25).filter(|_| limiter.allow(start)).count();
        assert_eq!(allowed, WARNINGS_PER_WINDOW as usize);
        assert_eq!(limiter.suppressed, 15);
        assert!(limiter.allow(start + WINDOW));
        assert_eq!(limiter.suppressed, 0);
    }
}
