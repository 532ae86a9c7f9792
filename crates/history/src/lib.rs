//! Each lot's free count over the last 24 hours, in memory: one sample per minute and one per
//! change, for the HTTP port's `GET /v1/lots/{id}/history` and the dashboard's sparklines.
//!
//! [`History`] is a `state` listener: the state tells it every change of a lot's free count
//! (after releasing the lot's lock, in order per lot), and it appends a sample. Nothing runs
//! on a timer. Between two changes the free count is constant, so the minute samples of a
//! quiet stretch are known without anyone watching: they are written out when the next change
//! comes, and filled in at query time up to now. Time is the state's clock (its wall time),
//! so tests move it by hand.
//!
//! Memory is bounded per lot whatever the rate of change: at most [`MINUTE_SAMPLES`] minute
//! samples (24 hours) and [`MAX_CHANGE_SAMPLES`] change samples, 8 bytes each. Changes within
//! the same second keep only the last value (samples are in whole seconds). A lot that
//! changes more often than every 20 seconds on average keeps its change samples for less than
//! 24 hours, but its minute samples always cover the whole day.
//!
//! # Layout
//! Everything is in this file.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use state::{Listener, LotChange, LotId, UnknownLot};

/// How far back samples are kept: 24 hours.
pub const RETENTION_SECS: u64 = 24 * 60 * 60;

/// Minute samples kept per lot: one per minute of [`RETENTION_SECS`].
pub const MINUTE_SAMPLES: usize = (RETENTION_SECS / 60) as usize;

/// Change samples kept per lot, oldest dropped first.
pub const MAX_CHANGE_SAMPLES: usize = 4096;

/// A lot's free count at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Unix seconds.
    pub t: u32,
    /// Free spaces.
    pub free: u32,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.free, self.t)
    }
}

/// One lot's samples.
#[derive(Debug)]
struct LotHistory {
    /// On whole minutes, oldest first, up to the last change; later ones are implied by
    /// `last` until the next change writes them out.
    minutes: VecDeque<Sample>,
    /// One per change (the last one per second), oldest first.
    changes: VecDeque<Sample>,
    /// The latest value and since when it holds.
    last: Sample,
}

impl LotHistory {
    fn new(start: Sample) -> Self {
        LotHistory {
            minutes: VecDeque::new(),
            changes: VecDeque::new(),
            last: start,
        }
    }

    fn record(&mut self, at: Sample) {
        // The time only moves forward here, whatever the clock did.
        let at = Sample {
            t: at.t.max(self.last.t),
            free: at.free,
        };
        self.write_minutes_until(at.t);
        match self.changes.back_mut() {
            Some(back) if back.t == at.t => back.free = at.free,
            _ => self.changes.push_back(at),
        }
        if self.changes.len() > MAX_CHANGE_SAMPLES {
            self.changes.pop_front();
        }
        self.last = at;
        self.forget_before(at.t.saturating_sub(RETENTION_SECS as u32));
    }

    /// Writes out the minute samples after the last one, up to and including `t`, with the
    /// value that held then.
    fn write_minutes_until(&mut self, t: u32) {
        let from = self
            .minutes
            .back()
            .map_or_else(|| next_minute(self.last.t), |back| back.t + 60);
        // Never more than a day's worth, however long the lot was quiet.
        let from = from.max(next_minute(t.saturating_sub(RETENTION_SECS as u32)));
        for minute in (from..=t).step_by(60) {
            self.minutes.push_back(Sample {
                t: minute,
                free: self.last.free,
            });
            if self.minutes.len() > MINUTE_SAMPLES {
                self.minutes.pop_front();
            }
        }
    }

    fn forget_before(&mut self, t: u32) {
        while self.minutes.front().is_some_and(|s| s.t < t) {
            self.minutes.pop_front();
        }
        while self.changes.front().is_some_and(|s| s.t < t) {
            self.changes.pop_front();
        }
    }

    /// The samples from `since` to `now`, in time order (a minute sample before a change
    /// in the same second).
    fn between(&self, since: u32, now: u32) -> Vec<Sample> {
        let from_minutes = self.minutes.iter().copied().filter(|s| s.t >= since);
        // The minutes since the last change, which no change has written out yet.
        let first_implied = self
            .minutes
            .back()
            .map_or_else(|| next_minute(self.last.t), |back| back.t + 60)
            .max(next_minute(since));
        let implied = (first_implied..=now).step_by(60).map(|t| Sample {
            t,
            free: self.last.free,
        });
        let mut minutes: Vec<Sample> = from_minutes.chain(implied).collect();
        let changes = self
            .changes
            .iter()
            .copied()
            .filter(|s| s.t >= since && s.t <= now);
        let mut merged = Vec::with_capacity(minutes.len() + self.changes.len());
        let mut minutes_iter = minutes.drain(..).peekable();
        for change in changes {
            while let Some(minute) = minutes_iter.next_if(|minute| minute.t <= change.t) {
                merged.push(minute);
            }
            merged.push(change);
        }
        merged.extend(minutes_iter);
        merged
    }
}

/// The first whole minute at or after `t`.
fn next_minute(t: u32) -> u32 {
    t.div_ceil(60).saturating_mul(60)
}

/// Unix seconds, 0 before the epoch and saturated after 2106.
fn unix_seconds(at: SystemTime) -> u32 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u32::try_from(since.as_secs()).unwrap_or(u32::MAX)
    })
}

/// Every lot's samples.
#[derive(Debug)]
pub struct History {
    lots: HashMap<LotId, Mutex<LotHistory>>,
}

impl History {
    /// A history that starts from each lot's current value (`state.published()`).
    pub fn new(current: &[LotChange]) -> Arc<Self> {
        Arc::new(History {
            lots: current
                .iter()
                .map(|change| {
                    let start = Sample {
                        t: unix_seconds(change.at),
                        free: change.free,
                    };
                    (change.lot.clone(), Mutex::new(LotHistory::new(start)))
                })
                .collect(),
        })
    }

    /// The [`Listener`] to register with `ParkingState::add_listener`.
    pub fn listener(self: &Arc<Self>) -> Listener {
        let history = Arc::clone(self);
        Arc::new(move |change: &LotChange| history.record(change))
    }

    /// Appends a change's sample to its lot's history (a lot it does not know is ignored).
    pub fn record(&self, change: &LotChange) {
        if let Some(lot) = self.lots.get(&change.lot) {
            lot.lock().record(Sample {
                t: unix_seconds(change.at),
                free: change.free,
            });
        }
    }

    /// `lot`'s samples of the last `minutes` minutes before `now` (at most a day's), oldest
    /// first.
    pub fn samples(
        &self,
        lot: &str,
        minutes: u32,
        now: SystemTime,
    ) -> Result<Vec<Sample>, UnknownLot> {
        let history = self
            .lots
            .get(lot)
            .ok_or_else(|| UnknownLot(lot.to_owned()))?;
        let now = unix_seconds(now);
        let window = minutes.saturating_mul(60).min(RETENTION_SECS as u32);
        Ok(history.lock().between(now.saturating_sub(window), now))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use state::Availability;

    use super::*;

    /// 2026-11-23 10:00:00 UTC, on a whole minute.
    const T0: u64 = 1_795_428_000;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + seconds)
    }

    fn change(free: u32, seconds: u64) -> LotChange {
        LotChange {
            lot: LotId::new("A").unwrap(),
            free,
            status: Availability::of(free, 0),
            seq: 0,
            at: at(seconds),
        }
    }

    fn sample(free: u32, seconds: u64) -> Sample {
        Sample {
            t: (T0 + seconds) as u32,
            free,
        }
    }

    #[test]
    fn one_sample_per_minute_and_one_per_change() {
        let history = History::new(&[change(100, 30)]);
        history.record(&change(99, 70));
        history.record(&change(98, 200));
        let got = history.samples("A", 60, at(250)).unwrap();
        assert_eq!(
            got,
            [
                sample(100, 60),
                sample(99, 70),
                sample(99, 120),
                sample(99, 180),
                sample(98, 200),
                sample(98, 240),
            ]
        );
        // The window starts `minutes` before now.
        assert_eq!(
            history.samples("A", 1, at(250)).unwrap(),
            [sample(98, 200), sample(98, 240)]
        );
        assert!(history.samples("Z", 60, at(250)).is_err());
    }

    #[test]
    fn a_quiet_lot_has_its_minutes_filled_in_up_to_now() {
        let history = History::new(&[change(5, 0)]);
        let got = history.samples("A", 60, at(3 * 60 + 10)).unwrap();
        assert_eq!(
            got,
            [sample(5, 0), sample(5, 60), sample(5, 120), sample(5, 180)]
        );
    }

    #[test]
    fn changes_in_one_second_keep_the_last_value() {
        let history = History::new(&[change(10, 1)]);
        history.record(&change(9, 5));
        history.record(&change(8, 5));
        history.record(&change(9, 5));
        assert_eq!(history.samples("A", 60, at(30)).unwrap(), [sample(9, 5)]);
    }

    #[test]
    fn memory_is_bounded_and_a_day_is_kept() {
        let history = History::new(&[change(0, 0)]);
        // Two days of a change every 10 s.
        let mut seconds = 0;
        while seconds < 2 * RETENTION_SECS {
            seconds += 10;
            history.record(&change((seconds % 7) as u32, seconds));
        }
        let lot = history.lots.get("A").unwrap().lock();
        assert!(lot.changes.len() <= MAX_CHANGE_SAMPLES);
        assert_eq!(lot.minutes.len(), MINUTE_SAMPLES);
        drop(lot);
        let day = history.samples("A", 24 * 60, at(seconds)).unwrap();
        let minutes = day.iter().filter(|s| s.t % 60 == (T0 % 60) as u32).count();
        assert!(minutes >= MINUTE_SAMPLES, "{minutes} minute samples");
        assert!(day.windows(2).all(|pair| pair[0].t <= pair[1].t));
        assert!(day[0].t >= (T0 + seconds - RETENTION_SECS) as u32);
    }

    #[test]
    fn a_day_long_silence_writes_at_most_a_day_of_minutes() {
        let history = History::new(&[change(3, 0)]);
        history.record(&change(4, 10 * RETENTION_SECS));
        let lot = history.lots.get("A").unwrap().lock();
        assert!(lot.minutes.len() <= MINUTE_SAMPLES + 1);
    }
}
