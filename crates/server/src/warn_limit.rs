//! Rate-limited warnings about misbehaving peers on the RPC and sensor ports.
//!
//! A peer that sends garbage in a loop must not be able to flood the log (or slow the server
//! down by making it write one). All of this crate's peer warnings share one
//! [`broker::warn_limit::WarnLimiter`], the same policy the pub/sub port uses.

use std::fmt;
use std::sync::LazyLock;
use std::time::Instant;

use broker::warn_limit::WarnLimiter;
use parking_lot::Mutex;

static PEER_WARNINGS: LazyLock<Mutex<WarnLimiter>> =
    LazyLock::new(|| Mutex::new(WarnLimiter::new("peer", Instant::now())));

/// Logs `message` at warn level unless the current window's budget is spent.
pub fn peer_warning(message: fmt::Arguments<'_>) {
    if log::log_enabled!(log::Level::Warn) && PEER_WARNINGS.lock().allow(Instant::now()) {
        log::warn!("{message}");
    }
}

/// `peer_warn!("format", args..)`: a rate-limited warning about a peer.
macro_rules! peer_warn {
    ($($arg:tt)+) => {
        $crate::warn_limit::peer_warning(format_args!($($arg)+))
    };
}

pub(crate) use peer_warn;
