//! [`ShutdownHandle`]: the one stop signal of the whole product.
//!
//! Whoever owns a process creates the handle and passes clones down, as mini-redis's
//! `server::run(listener, shutdown)` takes its shutdown future from `main`: `parking-server`'s
//! `main` hands one to the server and triggers it from the Ctrl-C/SIGTERM handler; the tools
//! (`sensor-sim`, `subscriber`, `load-test`) do the same for their own loops. Loops that poll
//! check [`ShutdownHandle::is_triggered`] (one atomic load); threads that sleep between
//! steps wait on it instead ([`ShutdownHandle::wait_timeout`]), so a stop request ends the
//! wait at once rather than after it.
//!
//! # Layout
//! Everything is in this file: the handle and its tests.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A one-way "stop now" flag that threads can check and wait on. Clones share the flag;
/// triggering it is permanent.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The flag itself, for the cheap check.
    triggered: AtomicBool,
    /// Guards the wait: a waiter checks the flag under this lock, and `trigger` takes it
    /// before notifying, so no waiter can miss the wake-up between its check and its sleep.
    lock: Mutex<()>,
    wake: Condvar,
}

impl ShutdownHandle {
    /// A signal that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the flag and wakes every waiter. Idempotent, and safe from a signal handler
    /// thread such as `ctrlc`'s.
    pub fn trigger(&self) {
        self.inner.triggered.store(true, Ordering::Release);
        let _guard = self.inner.lock.lock();
        self.inner.wake.notify_all();
    }

    /// Whether [`trigger`](Self::trigger) has been called.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    /// Blocks until the signal is triggered.
    pub fn wait(&self) {
        let mut guard = self.inner.lock.lock();
        while !self.is_triggered() {
            self.inner.wake.wait(&mut guard);
        }
    }

    /// Waits until `deadline` or until the signal is triggered, whichever comes first;
    /// returns `true` if it was triggered.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut guard = self.inner.lock.lock();
        while !self.is_triggered() {
            if self.inner.wake.wait_until(&mut guard, deadline).timed_out() {
                break;
            }
        }
        self.is_triggered()
    }

    /// Waits for `timeout` or until the signal is triggered; returns `true` if it was. A
    /// timeout too large for a deadline waits for the signal alone.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_until(deadline),
            None => {
                self.wait();
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::thread;

    #[test]
    fn waiters_wake_on_trigger_and_time_out_otherwise() {
        let stop = ShutdownHandle::new();
        assert!(!stop.is_triggered());
        assert!(!stop.wait_until(Instant::now()));
        assert!(!stop.wait_timeout(Duration::from_millis(1)));
        let waiters: Vec<_> = (0..3)
            .map(|n| {
                let stop = stop.clone();
                // Each would wait an hour (or forever) if the trigger did not wake it.
                thread::spawn(move || match n {
                    0 => stop.wait_timeout(Duration::from_secs(3600)),
                    1 => stop.wait_timeout(Duration::MAX),
                    _ => {
                        stop.wait();
                        true
                    }
                })
            })
            .collect();
        stop.trigger();
        for waiter in waiters {
            assert!(waiter.join().unwrap());
        }
        assert!(stop.is_triggered());
        stop.trigger();
        assert!(stop.wait_timeout(Duration::ZERO));
    }
}
