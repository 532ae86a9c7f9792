//! The occupancy model: a seeded random walk per lot, bounded by what the sensor believes the
//! lot holds.

use framing::sensor::CountChange;
use rand::{Rng, RngExt};

/// How updates are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `+k` / `-k`: cars through a gate.
    Delta,
    /// `n`: the lot's whole count.
    Absolute,
}

impl Mode {
    /// The mode's name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Delta => "delta",
            Mode::Absolute => "absolute",
        }
    }
}

/// Most cars one update moves in or out.
pub const MAX_STEP: u32 = 3;

/// One sensor's belief about one lot: a car count that wanders between 0 and `bound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    /// The lot's id.
    pub lot: String,
    /// Cars the sensor believes are there (its share of them, in delta mode).
    pub count: u32,
    /// The most cars the sensor lets in.
    pub bound: u32,
}

impl Walk {
    /// A walk for `lot` starting at `start` (clamped to `bound`).
    pub fn new(lot: impl Into<String>, start: u32, bound: u32) -> Self {
        Walk {
            lot: lot.into(),
            count: start.min(bound),
            bound,
        }
    }

    /// Moves 1 to [`MAX_STEP`] cars in or out (in when empty, out when full, else either) and
    /// returns the change to report in `mode`.
    pub fn step(&mut self, rng: &mut impl Rng, mode: Mode) -> CountChange {
        let cars = rng.random_range(1..=MAX_STEP);
        let arriving = if self.count == 0 {
            true
        } else if self.count >= self.bound {
            false
        } else {
            rng.random_bool(0.5)
        };
        let change = if arriving {
            let cars = cars.min(self.bound - self.count);
            self.count += cars;
            CountChange::Add(cars)
        } else {
            let cars = cars.min(self.count);
            self.count -= cars;
            CountChange::Remove(cars)
        };
        match mode {
            Mode::Delta => change,
            Mode::Absolute => CountChange::Set(self.count),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn walks_stay_within_bounds_and_report_what_they_did() {
        let mut rng = SmallRng::seed_from_u64(42);
        let mut walk = Walk::new("A", 0, 10);
        let mut seen = [false; 11];
        for _ in 0..10_000 {
            let before = walk.count;
            match walk.step(&mut rng, Mode::Delta) {
                CountChange::Add(k) => assert_eq!(walk.count, before + k),
                CountChange::Remove(k) => assert_eq!(walk.count, before - k),
                CountChange::Set(_) => panic!("delta mode reported a set"),
            }
            assert!((1..=MAX_STEP).contains(&walk.count.abs_diff(before)));
            seen[walk.count as usize] = true;
        }
        assert!(
            seen.iter().all(|&hit| hit),
            "the walk should visit 0..=10: {seen:?}"
        );

        let mut walk = Walk::new("B", 500, 4);
        assert_eq!(walk.count, 4);
        for _ in 0..100 {
            let CountChange::Set(n) = walk.step(&mut rng, Mode::Absolute) else {
                panic!("absolute mode reports sets");
            };
            assert_eq!(n, walk.count);
            assert!(n <= 4);
        }
    }
}
