//! The occupancy model: a seeded random walk per lot, bounded by what the sensor believes the
//! lot holds, and the small PRNG that drives it.

use framing::sensor::CountChange;

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

/// xorshift64* (Vigna): tiny, fast and good enough to make traffic look random. Not for
/// anything that needs unpredictability. The same seed always gives the same run.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// A generator for `seed`. The seed goes through SplitMix64 first, so nearby seeds (0, 1,
    /// 2, ... for the sensors of one run) give unrelated streams and the state is never zero.
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        XorShift64 {
            state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`; 0 when `n == 0`). The modulo bias is negligible for the
    /// small `n` used here.
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        // The high bits of xorshift64* are its best ones.
        ((self.next_u64() >> 32) % u64::from(n)) as u32
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
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
    pub fn step(&mut self, rng: &mut XorShift64, mode: Mode) -> CountChange {
        let cars = 1 + rng.below(MAX_STEP);
        let arriving = if self.count == 0 {
            true
        } else if self.count >= self.bound {
            false
        } else {
            rng.coin()
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
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let draw = |seed| {
            let mut rng = XorShift64::new(seed);
            (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut rng = XorShift64::new(0);
        assert!((0..1000).all(|_| rng.below(3) < 3));
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn walks_stay_within_bounds_and_report_what_they_did() {
        let mut rng = XorShift64::new(42);
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
