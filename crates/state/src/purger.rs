//! The background thread that removes expired reservations.
//!
//! Reads never count an expired reservation, so correctness does not depend on this thread;
//! it exists so that memory stays proportional to live reservations and so that subscribers
//! hear about an expiry when it happens, not at the next read. It wakes at the earliest expiry
//! (or after `interval`, whichever is sooner), and never sleeps longer than the TTL, so a
//! reservation made while it sleeps cannot expire unnoticed.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::parking::ParkingState;

/// Handle to the purge thread; dropping it stops the thread and waits for it.
#[derive(Debug)]
pub struct Purger {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Purger {
    /// Starts purging `state` at least every `interval`.
    pub fn spawn(state: Arc<ParkingState>, interval: Duration) -> io::Result<Purger> {
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let thread = thread::Builder::new()
            .name("purger".into())
            .spawn(move || run(&state, interval, &stopped))?;
        Ok(Purger {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(state: &ParkingState, interval: Duration, stopped: &Receiver<()>) {
    loop {
        let now = state.clock().now();
        let mut wait = interval.min(state.ttl());
        if let Some(next) = state.next_expiry() {
            wait = wait.min(next.saturating_duration_since(now));
        }
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {
                let purged = state.purge_expired();
                if purged > 0 {
                    log::debug!("purged {purged} expired reservation(s)");
                }
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("purger thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LotChange, LotId, LotSpec, ManualClock, Plate, SystemClock};

    fn one_space(ttl: Duration, clock: Arc<dyn crate::Clock>) -> Arc<ParkingState> {
        let lot = LotSpec {
            id: LotId::new("A").unwrap(),
            capacity: 1,
        };
        Arc::new(ParkingState::new([lot], ttl, clock).unwrap())
    }

    #[test]
    fn expiry_is_purged_on_time() {
        let state = one_space(Duration::from_millis(100), Arc::new(SystemClock));
        let (tx, rx) = crossbeam_channel::unbounded();
        state.add_listener(Arc::new(move |change: &LotChange| {
            let _ = tx.send(change.free);
        }));
        let purger = Purger::spawn(Arc::clone(&state), Duration::from_secs(30)).unwrap();
        state.reserve("A", Plate::parse("P").unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(0));
        // The purger, not a read, publishes the expiry.
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        drop(purger);
        assert_eq!(Arc::strong_count(&state), 1);
    }

    /// Dropping the handle stops the thread and waits for it, here for a purge whose listener
    /// is held up: drop returns only once the purge is over and the thread has let go of its
    /// share of the state.
    #[test]
    fn drop_waits_for_the_thread() {
        let clock = Arc::new(ManualClock::new());
        let ttl = Duration::from_secs(10);
        let state = one_space(ttl, clock.clone());
        let (entered_tx, entered) = crossbeam_channel::unbounded();
        let (release, released) = crossbeam_channel::unbounded::<()>();
        state.add_listener(Arc::new(move |change: &LotChange| {
            if change.free == 1 {
                let _ = entered_tx.send(());
                let _ = released.recv();
            }
        }));
        // Wakes every 10 ms of real time; the manual clock decides what has expired.
        let purger = Purger::spawn(Arc::clone(&state), Duration::from_millis(10)).unwrap();
        state.reserve("A", Plate::parse("P").unwrap()).unwrap();
        clock.advance(ttl);
        entered
            .recv_timeout(Duration::from_secs(5))
            .expect("the purger did not purge");
        let (dropped_tx, dropped) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            drop(purger);
            let _ = dropped_tx.send(());
        });
        // Nothing can end the purge but the release: a drop that did not wait returns now.
        assert!(dropped.recv_timeout(Duration::from_millis(100)).is_err());
        release.send(()).unwrap();
        dropped
            .recv_timeout(Duration::from_secs(5))
            .expect("drop did not return");
        assert_eq!(Arc::strong_count(&state), 1);
    }
}
