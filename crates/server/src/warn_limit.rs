//! Rate-limited warnings about misbehaving peers.
//!
//! A peer that sends garbage in a loop must not be able to flood the log (or slow the server
//! down by making it write one): at most [`MAX_PER_WINDOW`] peer warnings are logged per
//! [`WINDOW`], and the number suppressed is reported when the next window opens.

use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Length of one rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Peer warnings logged per window.
pub const MAX_PER_WINDOW: u32 = 20;

struct Window {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

static WINDOW_STATE: Mutex<Window> = Mutex::new(Window {
    started: None,
    logged: 0,
    suppressed: 0,
});

/// Logs `message` at warn level unless this window's budget is spent.
pub fn peer_warning(message: fmt::Arguments<'_>) {
    if !log::log_enabled!(log::Level::Warn) {
        return;
    }
    let now = Instant::now();
    let mut window = WINDOW_STATE.lock();
    let expired = window
        .started
        .is_none_or(|started| now.duration_since(started) >= WINDOW);
    if expired {
        if window.suppressed > 0 {
            log::warn!(
                "{} further peer warning(s) suppressed in the last {} s",
                window.suppressed,
                WINDOW.as_secs()
            );
        }
        *window = Window {
            started: Some(now),
            logged: 0,
            suppressed: 0,
        };
    }
    if window.logged < MAX_PER_WINDOW {
        window.logged += 1;
        drop(window);
        log::warn!("{message}");
    } else {
        window.suppressed += 1;
    }
}

/// `peer_warn!("format", args..)`: a rate-limited warning about a peer.
macro_rules! peer_warn {
    ($($arg:tt)+) => {
        $crate::warn_limit::peer_warning(format_args!($($arg)+))
    };
}

pub(crate) use peer_warn;
