//! Rate-limited warnings about misbehaving peers.
//!
//! A peer that misbehaves on purpose (thousands of over-long lines, a connection flood) must
//! not be able to flood the log as well, or slow the server down by making it write one. Every
//! port logs its peer warnings through [`peer_warn!`], which shares one process-wide
//! [`WarnLimiter`]: at most [`WARNINGS_PER_WINDOW`] warnings a second, then one line counting
//! the rest. Warnings keep the target of the module that logs them, so `RUST_LOG` filters
//! them as usual.
//!
//! # Layout
//! Everything is in this file: the limiter, the shared instance and the macro.

#![forbid(unsafe_code)]

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[doc(hidden)]
pub use log as __log;

/// Warnings allowed per [`WINDOW`]; the rest are counted and reported as one line.
pub const WARNINGS_PER_WINDOW: u32 = 10;

/// The rate limit's window.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Decides whether a warning may be logged now.
#[derive(Debug)]
pub struct WarnLimiter {
    window_start: Instant,
    used: u32,
    suppressed: u64,
}

impl WarnLimiter {
    /// A limiter whose first window starts at `now`.
    pub fn new(now: Instant) -> Self {
        WarnLimiter {
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
                    "{} more peer warning(s) suppressed in the last second",
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

static PEER_WARNINGS: LazyLock<Mutex<WarnLimiter>> =
    LazyLock::new(|| Mutex::new(WarnLimiter::new(Instant::now())));

/// Whether the process-wide limiter lets one more peer warning through now. [`peer_warn!`]
/// calls it; call it directly only to decide whether to build an expensive message.
pub fn allow() -> bool {
    PEER_WARNINGS.lock().allow(Instant::now())
}

/// `peer_warn!("format", args..)`: logs a warning about a peer at warn level, unless warn is
/// filtered out for the calling module or this second's budget of peer warnings is spent.
#[macro_export]
macro_rules! peer_warn {
    ($($arg:tt)+) => {
        if $crate::__log::log_enabled!($crate::__log::Level::Warn) && $crate::allow() {
            $crate::__log::warn!($($arg)+);
        }
    };
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
        assert!(!limiter.allow(start + WINDOW / 2));
        assert!(limiter.allow(start + WINDOW));
        assert_eq!(limiter.suppressed, 0);
        assert_eq!(limiter.used, 1);
    }
}
