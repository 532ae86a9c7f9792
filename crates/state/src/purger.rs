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
    use std::time::Instant;

    use super::*;
    use crate::{LotId, LotSpec, Plate, SystemClock};

    #[test]
    fn expiry_is_purged_on_time_and_drop_stops_the_thread() {
        let state = Arc::new(
            ParkingState::new(
                [LotSpec::new(LotId::new("A").unwrap(), 1)],
                Duration::from_millis(100),
                Arc::new(SystemClock),
            )
            .unwrap(),
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        state.add_listener(Arc::new(move |change: &crate::LotChange| {
            let _ = tx.send(change.free);
        }));
        let purger = Purger::spawn(Arc::clone(&state), Duration::from_secs(30)).unwrap();
        state.reserve("A", Plate::parse("P").unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(0));
        // The purger, not a read, publishes the expiry.
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        let started = Instant::now();
        drop(purger);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
