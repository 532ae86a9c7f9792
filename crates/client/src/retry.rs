//! Helpers for long-running clients that must survive a server restart: [`Backoff`] spaces out
//! reconnection attempts, and [`StopSignal`] lets Ctrl-C (or a deadline) cut any wait short.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

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

/// A one-way "stop now" flag that threads can also wait on. Clones share the flag.
///
/// Waiting on it instead of sleeping is what lets Ctrl-C end a run at once, even in the middle
/// of a backoff delay or of the pause between two paced updates.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl StopSignal {
    /// A signal that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag and wakes every waiter. Triggering twice is harmless.
    pub fn trigger(&self) {
        let (flag, wake) = &*self.inner;
        *flag.lock() = true;
        wake.notify_all();
    }

    /// Whether [`trigger`](Self::trigger) has been called.
    pub fn is_triggered(&self) -> bool {
        *self.inner.0.lock()
    }

    /// Waits until `deadline` or until the signal is triggered, whichever comes first;
    /// returns `true` if it was triggered.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let (flag, wake) = &*self.inner;
        let mut stopped = flag.lock();
        while !*stopped {
            if wake.wait_until(&mut stopped, deadline).timed_out() {
                break;
            }
        }
        *stopped
    }

    /// Waits for `timeout` or until the signal is triggered; returns `true` if it was.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_until(deadline),
            None => {
                let (flag, wake) = &*self.inner;
                let mut stopped = flag.lock();
                while !*stopped {
                    wake.wait(&mut stopped);
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

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

    #[test]
    fn stop_signal_wakes_waiters_and_expires() {
        let stop = StopSignal::new();
        assert!(!stop.wait_until(Instant::now()));
        assert!(!stop.wait_timeout(Duration::from_millis(1)));
        let waiter = {
            let stop = stop.clone();
            // Would wait an hour if the trigger did not wake it.
            thread::spawn(move || stop.wait_timeout(Duration::from_secs(3600)))
        };
        stop.trigger();
        assert!(waiter.join().unwrap());
        assert!(stop.is_triggered());
        assert!(stop.wait_timeout(Duration::MAX));
    }
}
