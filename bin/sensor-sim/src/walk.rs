//! The occupancy model: a seeded random walk per lot, bounded by what the sensor believes the
//! lot holds. In gate mode the walk knows which cars are in: a car that arrives is one with a
//! booking in the lot (while some are out) or a drive-up, and one that leaves is one that came
//! in.

use framing::sensor::{CountChange, Passage};
use rand::{Rng, RngExt};

/// How updates are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `+k` / `-k`: cars through a gate.
    Delta,
    /// `n`: the lot's whole count.
    Absolute,
    /// `ENTER <lot> <plate>` / `EXIT <lot> <plate>`: cars through a gate, booked and drive-up.
    Gate,
}

impl Mode {
    /// The mode's name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Delta => "delta",
            Mode::Absolute => "absolute",
            Mode::Gate => "gate",
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
    /// Cars the sensor believes are there (its share of them, in delta and gate mode).
    pub count: u32,
    /// The most cars the sensor lets in.
    pub bound: u32,
    /// Gate mode: plates with a booking in the lot that are out, the next to arrive first.
    pub booked: Vec<String>,
    /// Gate mode: the plates this walk let in and has not let out.
    pub inside: Vec<String>,
    /// Gate mode: drive-up plates are `<prefix><n>`, n counting up.
    pub drive_up_prefix: String,
    drive_ups: u64,
}

impl Walk {
    /// A walk for `lot` starting at `start` (clamped to `bound`).
    pub fn new(lot: impl Into<String>, start: u32, bound: u32) -> Self {
        Walk {
            lot: lot.into(),
            count: start.min(bound),
            bound,
            booked: Vec::new(),
            inside: Vec::new(),
            drive_up_prefix: String::new(),
            drive_ups: 0,
        }
    }

    /// A gate-mode walk for `lot`: empty (it only lets out cars it let in), the plates in
    /// `booked` arriving among drive-ups named `<drive_up_prefix><n>`.
    pub fn gate(
        lot: impl Into<String>,
        bound: u32,
        booked: Vec<String>,
        drive_up_prefix: impl Into<String>,
    ) -> Self {
        Walk {
            booked,
            drive_up_prefix: drive_up_prefix.into(),
            ..Walk::new(lot, 0, bound)
        }
    }

    /// One car through the gate: in when the lot is empty, out when full, else either; an
    /// arriving car is a booked one half the time while any is out. Returns the passage and
    /// the plate.
    pub fn pass(&mut self, rng: &mut impl Rng) -> (Passage, String) {
        let arriving = if self.inside.is_empty() {
            true
        } else if self.inside.len() >= self.bound as usize {
            false
        } else {
            rng.random_bool(0.5)
        };
        if !arriving {
            // A car that leaves is not seen again: a booking is completed by its car's exit.
            let plate = self
                .inside
                .swap_remove(rng.random_range(0..self.inside.len()));
            self.count = self.inside.len() as u32;
            return (Passage::Exit, plate);
        }
        let plate = if !self.booked.is_empty() && rng.random_bool(0.5) {
            self.booked.swap_remove(0)
        } else {
            self.drive_ups += 1;
            format!("{}{}", self.drive_up_prefix, self.drive_ups)
        };
        self.inside.push(plate.clone());
        self.count = self.inside.len() as u32;
        (Passage::Enter, plate)
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
            Mode::Absolute => CountChange::Set(self.count),
            Mode::Delta | Mode::Gate => change,
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

        let mut walk = Walk::gate("G", 3, vec!["BK1".into(), "BK2".into()], "DU");
        let mut entered = std::collections::HashSet::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            match walk.pass(&mut rng) {
                (Passage::Enter, plate) => {
                    assert!(seen.insert(plate.clone()), "{plate} came twice");
                    entered.insert(plate);
                }
                (Passage::Exit, plate) => assert!(entered.remove(&plate), "{plate} left unseen"),
            }
            assert!(walk.inside.len() <= 3);
            assert_eq!(walk.count as usize, entered.len());
        }
        // Each booked car came once; drive-ups came too.
        assert!(walk.booked.is_empty());
        assert!(walk.drive_ups > 10);

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
