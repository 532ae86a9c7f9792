//! Where the state gets the time from.

use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

/// A source of time: a monotonic instant for expiry and a wall-clock time for event stamps
/// and booking windows.
pub trait Clock: Send + Sync {
    /// Monotonic now, for reservation expiry.
    fn now(&self) -> Instant;
    /// Wall-clock now, for the timestamps subscribers see and for booking windows.
    fn wall(&self) -> SystemTime;

    /// Waits until `deadline` by this clock, or until `wake` has a message (or is
    /// disconnected), whichever comes first. The real clock sleeps; a manual clock waits for
    /// the test to move it, so the thread that does what is due runs on test time.
    fn wait_until(&self, deadline: Instant, wake: &Receiver<()>) {
        let _ = wake.recv_timeout(deadline.saturating_duration_since(self.now()));
    }
}

/// The real clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, for tests of expiry.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_wall: SystemTime,
    elapsed: Mutex<Duration>,
    /// Threads in [`Clock::wait_until`], told each time the clock moves.
    waiters: Mutex<Vec<Sender<()>>>,
}

impl ManualClock {
    /// A clock stopped at the current time.
    pub fn new() -> Self {
        ManualClock {
            start: Instant::now(),
            start_wall: SystemTime::now(),
            elapsed: Mutex::new(Duration::ZERO),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Moves the clock forward, waking the threads waiting on it.
    pub fn advance(&self, by: Duration) {
        *self.elapsed.lock() += by;
        self.waiters
            .lock()
            .retain(|waiter| !matches!(waiter.try_send(()), Err(TrySendError::Disconnected(_))));
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock()
    }

    fn wall(&self) -> SystemTime {
        self.start_wall + *self.elapsed.lock()
    }

    fn wait_until(&self, deadline: Instant, wake: &Receiver<()>) {
        let (tick, ticked) = crossbeam_channel::bounded(1);
        // Registered before the first look at the time, so a move in between is not missed:
        // it leaves a tick in the channel.
        self.waiters.lock().push(tick);
        while self.now() < deadline {
            crossbeam_channel::select! {
                recv(wake) -> _ => return,
                recv(ticked) -> _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[test]
    fn a_manual_wait_ends_when_the_clock_passes_the_deadline_or_on_a_wake() {
        let clock = std::sync::Arc::new(ManualClock::new());
        let deadline = clock.now() + Duration::from_secs(60);
        let waiting = {
            let clock = std::sync::Arc::clone(&clock);
            thread::spawn(move || {
                let (_wake, woken) = crossbeam_channel::bounded(1);
                clock.wait_until(deadline, &woken);
                clock.now()
            })
        };
        clock.advance(Duration::from_secs(30));
        clock.advance(Duration::from_secs(30));
        assert!(waiting.join().unwrap() >= deadline);

        // A message ends the wait at once, whatever the time.
        let (wake, woken) = crossbeam_channel::bounded(1);
        wake.send(()).unwrap();
        clock.wait_until(clock.now() + Duration::from_secs(3600), &woken);
    }
}
