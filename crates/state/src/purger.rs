//! The background thread that does what is due on time: removes expired reservations, and
//! moves bookings on (a booking starts holding its space, a no-show releases it, a stay is
//! completed or flagged as overstaying).
//!
//! Reads never count an expired reservation or a released booking, so correctness does not
//! depend on this thread; it exists so that memory stays proportional to live reservations
//! and bookings, and so that subscribers hear about a change when it happens, not at the next
//! read. It sleeps until the earliest due time (or `interval`, whichever is sooner) on the
//! state's [`crate::Clock`], so a test's manual clock drives it. It never sleeps longer than
//! the reservation TTL, so a reservation made while it sleeps cannot expire unnoticed; a
//! booking that makes something due sooner than it planned to wake wakes it.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::parking::{ParkingState, unix_ms};

/// Handle to the due-time thread; dropping it stops the thread and waits for it.
#[derive(Debug)]
pub struct Purger {
    state: Arc<ParkingState>,
    stop: Arc<AtomicBool>,
    wake: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Purger {
    /// Starts doing what is due in `state`, looking at least every `interval`. One per state:
    /// a second one takes over the wake-ups of the first.
    pub fn spawn(state: Arc<ParkingState>, interval: Duration) -> io::Result<Purger> {
        // One pending wake-up is enough: the thread looks at everything when it wakes.
        let (wake, woken) = crossbeam_channel::bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        state.attach_waker(wake.clone());
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("purger".into())
                .spawn(move || run(&state, interval, &woken, &stop))?
        };
        Ok(Purger {
            state,
            stop,
            wake,
            thread: Some(thread),
        })
    }
}

fn run(state: &ParkingState, interval: Duration, woken: &Receiver<()>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        // Until the plan is made, any booking wakes us: one made while we look at the lots
        // could otherwise fall due before the time we settle on.
        state.plan_wake(u64::MAX);
        let clock = state.clock();
        let now = clock.now();
        let wall_ms = unix_ms(clock.wall());
        let mut wait = interval.min(state.ttl());
        if let Some(next) = state.next_expiry() {
            wait = wait.min(next.saturating_duration_since(now));
        }
        if let Some(due) = state.next_booking_due() {
            let until = due.saturating_mul(1000).saturating_sub(wall_ms);
            wait = wait.min(Duration::from_millis(until));
        }
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        state.plan_wake(wall_ms.saturating_add(wait_ms));
        clock.wait_until(now + wait, woken);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let purged = state.purge_expired();
        if purged > 0 {
            log::debug!("purged {purged} expired reservation(s)");
        }
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        self.state.detach_waker();
        self.stop.store(true, Ordering::SeqCst);
        // A full channel already holds a wake-up.
        let _ = self.wake.try_send(());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("purger thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::{
        BookingRequest, BookingRules, Clock, LotChange, LotId, LotSpec, ManualClock, Plate,
        SystemClock, Window,
    };

    fn one_space(ttl: Duration, clock: Arc<dyn Clock>) -> Arc<ParkingState> {
        let lot = LotSpec::new(LotId::new("A").unwrap(), 1);
        Arc::new(
            ParkingState::new([lot], ttl, clock)
                .unwrap()
                .with_bookings(BookingRules::default(), [])
                .unwrap(),
        )
    }

    fn frees(state: &ParkingState) -> crossbeam_channel::Receiver<u32> {
        let (tx, rx) = crossbeam_channel::unbounded();
        state.add_listener(Arc::new(move |change: &LotChange| {
            let _ = tx.send(change.free);
        }));
        rx
    }

    #[test]
    fn expiry_is_purged_on_time_and_drop_stops_the_thread() {
        let state = one_space(Duration::from_millis(100), Arc::new(SystemClock));
        let rx = frees(&state);
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

    #[test]
    fn a_booking_holds_and_is_released_on_the_manual_clock_without_a_read() {
        let clock = Arc::new(ManualClock::new());
        let state = one_space(Duration::from_secs(300), clock.clone());
        let rx = frees(&state);
        let _purger = Purger::spawn(Arc::clone(&state), Duration::from_secs(3600)).unwrap();
        let now = clock.wall().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let window = Window {
            start: now + 100,
            end: now + 4000,
        };
        state
            .book(BookingRequest {
                lot: "A",
                spot: None,
                plate: Plate::parse("P").unwrap(),
                window,
            })
            .unwrap();
        // Made after the thread planned to sleep for the TTL (300 s): the booking, due
        // sooner, wakes it.
        clock.advance(Duration::from_secs(101));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(0));
        // Not checked in 900 s after its start: released.
        clock.advance(Duration::from_secs(900));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
    }
}
