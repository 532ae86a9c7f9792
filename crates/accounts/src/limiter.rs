//! How often a login may fail: per username (someone guessing one driver's password) and
//! per peer address (someone guessing many), each in a fixed window; and how many accounts
//! one peer address may make per window (each costs an Argon2 hash, and `max_accounts` is
//! shared by everyone: one address must not take it all).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The window failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed logins to one username per window before more are refused.
pub const FAILURES_PER_USERNAME: u32 = 5;
/// Failed logins from one address per window before more are refused.
pub const FAILURES_PER_ADDRESS: u32 = 20;
/// Registrations (that reached the password hash) from one address per window before more
/// are refused.
pub const REGISTRATIONS_PER_ADDRESS: u32 = 10;
/// Usernames and addresses tracked at most: the table is bounded whatever a peer sends.
/// When it is full, windows that have ended are dropped, then the oldest.
pub const MAX_TRACKED: usize = 10_000;

/// A login refused without looking at the password: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Username(String),
    Address(IpAddr),
    Registrations(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failed logins; shared by every worker.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<Key, Window>>,
}

impl LoginLimiter {
    /// No failures yet.
    pub fn new() -> Self {
        LoginLimiter::default()
    }

    /// Whether a login for `username` from `address` may be tried at `now`: refused while
    /// either has failed its most in the current window.
    pub fn check(&self, username: &str, address: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        let windows = self.windows.lock();
        let keys = [
            (Key::Username(username.to_owned()), FAILURES_PER_USERNAME),
            (Key::Address(address), FAILURES_PER_ADDRESS),
        ];
        for (key, most) in keys {
            if let Some(window) = windows.get(&key) {
                let ends = window.started + FAILURE_WINDOW;
                if now < ends && window.failures >= most {
                    return Err(RetryAfter(ends - now));
                }
            }
        }
        Ok(())
    }

    /// Counts a failed login for `username` from `address`.
    pub fn failed(&self, username: &str, address: IpAddr, now: Instant) {
        let mut windows = self.windows.lock();
        for key in [Key::Username(username.to_owned()), Key::Address(address)] {
            count(&mut windows, key, now);
        }
    }

    /// Takes one registration for `address` at `now`, unless it has made its most in the
    /// current window. Checked and counted in one step, so that concurrent registrations
    /// from one address cannot all slip under the limit.
    pub fn register(&self, address: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        let mut windows = self.windows.lock();
        let key = Key::Registrations(address);
        if let Some(window) = windows.get(&key) {
            let ends = window.started + FAILURE_WINDOW;
            if now < ends && window.failures >= REGISTRATIONS_PER_ADDRESS {
                return Err(RetryAfter(ends - now));
            }
        }
        count(&mut windows, key, now);
        Ok(())
    }

    /// A successful login: the username's failures are forgotten (the address's are not,
    /// so that one good account does not reset a guesser's count).
    pub fn succeeded(&self, username: &str) {
        self.windows
            .lock()
            .remove(&Key::Username(username.to_owned()));
    }
}

/// Counts one more for `key` in its current window (a new one if the last has ended).
fn count(windows: &mut HashMap<Key, Window>, key: Key, now: Instant) {
    if !windows.contains_key(&key) && windows.len() >= MAX_TRACKED {
        make_room(windows, now);
    }
    let window = windows.entry(key).or_insert(Window {
        started: now,
        failures: 0,
    });
    if now >= window.started + FAILURE_WINDOW {
        *window = Window {
            started: now,
            failures: 0,
        };
    }
    window.failures = window.failures.saturating_add(1);
}

/// Drops ended windows; if none had ended, the oldest one.
fn make_room(windows: &mut HashMap<Key, Window>, now: Instant) {
    windows.retain(|_, window| now < window.started + FAILURE_WINDOW);
    if windows.len() >= MAX_TRACKED
        && let Some(oldest) = windows
            .iter()
            .min_by_key(|(_, window)| window.started)
            .map(|(key, _)| key.clone())
    {
        windows.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn an_address_makes_at_most_its_registrations_per_window() {
        let limiter = LoginLimiter::new();
        let start = Instant::now();
        for _ in 0..REGISTRATIONS_PER_ADDRESS {
            assert_eq!(limiter.register(ip(1), start), Ok(()));
        }
        assert_eq!(
            limiter.register(ip(1), start + Duration::from_secs(1)),
            Err(RetryAfter(FAILURE_WINDOW - Duration::from_secs(1)))
        );
        // Another address, and logins from the same one, are not affected.
        assert_eq!(limiter.register(ip(2), start), Ok(()));
        assert_eq!(limiter.check("alice", ip(1), start), Ok(()));
        assert_eq!(limiter.register(ip(1), start + FAILURE_WINDOW), Ok(()));
    }

    #[test]
    fn a_username_is_locked_after_its_failures_until_the_window_ends() {
        let limiter = LoginLimiter::new();
        let start = Instant::now();
        for n in 0..FAILURES_PER_USERNAME {
            assert_eq!(limiter.check("alice", ip(n as u8), start), Ok(()));
            limiter.failed("alice", ip(n as u8), start);
        }
        // From any address.
        assert_eq!(
            limiter.check("alice", ip(99), start + Duration::from_secs(60)),
            Err(RetryAfter(FAILURE_WINDOW - Duration::from_secs(60)))
        );
        assert_eq!(limiter.check("bob", ip(99), start), Ok(()));
        assert_eq!(
            limiter.check("alice", ip(99), start + FAILURE_WINDOW),
            Ok(())
        );
        limiter.succeeded("alice");
        assert_eq!(limiter.check("alice", ip(0), start), Ok(()));
    }

    #[test]
    fn an_address_is_locked_after_its_failures_whatever_the_usernames() {
        let limiter = LoginLimiter::new();
        let now = Instant::now();
        for n in 0..FAILURES_PER_ADDRESS {
            limiter.failed(&format!("user{n}"), ip(1), now);
        }
        assert!(limiter.check("someone", ip(1), now).is_err());
        assert_eq!(limiter.check("someone", ip(2), now), Ok(()));
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = LoginLimiter::new();
        let now = Instant::now();
        for n in 0..(MAX_TRACKED + 100) {
            limiter.failed(&format!("user{n}"), ip(1), now);
        }
        assert!(limiter.windows.lock().len() <= MAX_TRACKED);
    }
}
