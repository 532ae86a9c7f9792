//! [`Backoff`]: how long-running clients space out their reconnection attempts, so that they
//! survive a server restart without hammering it. (Their waits are cut short by a
//! `shutdown::ShutdownHandle`.)

use std::time::Duration;

/// Exponential backoff between reconnection attempts: [`Backoff::INITIAL`], doubling after each
/// failure up to [`Backoff::MAX`], back to the start after a success.
///
/// Doubling keeps a dead server from being hammered while still noticing a quick restart
/// within a fraction of a second; the cap keeps the wait after a long outage short.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// First delay of the default backoff.
    pub const INITIAL: Duration = Duration::from_millis(100);
    /// Longest delay of the default backoff.
    pub const MAX: Duration = Duration::from_secs(5);

    /// A backoff from `initial` doubling up to `max` (raised to `initial` if smaller).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The delay to wait before the next attempt; each call doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Starts over from the initial delay; call it once a connection succeeded.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

impl Default for Backoff {
    /// [`Backoff::INITIAL`] doubling to [`Backoff::MAX`].
    fn default() -> Self {
        Backoff::new(Backoff::INITIAL, Backoff::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..8)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Backoff::INITIAL);
        let mut odd = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(odd.next_delay(), Duration::from_secs(2));
        assert_eq!(odd.next_delay(), Duration::from_secs(2));
    }
}
