//! [`Timeline`]: how many bookings cover each instant, as a step function, so that "at most
//! `bookable` at every instant of `[start, end)`" is checked exactly, not sampled.

use std::collections::BTreeMap;

/// The number of intervals covering each second, kept as the seconds where it changes.
///
/// `steps[t] = n` means n intervals cover every instant from `t` to the next key; before the
/// first key, and after a last key of 0, none do. Only breakpoints where the count really
/// changes are kept, so the map holds at most two keys per interval, and nothing once they are
/// all removed.
///
/// Costs are O(log n + k), k the breakpoints inside the window asked about: proportional to
/// how many bookings start or end inside it, not to how many there are in the lot.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    steps: BTreeMap<u64, u32>,
}

impl Timeline {
    /// The count at instant `at`.
    fn at(&self, at: u64) -> u32 {
        self.steps.range(..=at).next_back().map_or(0, |(_, &n)| n)
    }

    /// The most intervals covering any instant of `[start, end)` (`start < end`).
    pub(crate) fn peak(&self, start: u64, end: u64) -> u32 {
        let inside = self.steps.range(start.saturating_add(1)..end);
        inside.fold(self.at(start), |peak, (_, &n)| peak.max(n))
    }

    /// Counts one more interval over `[start, end)`.
    pub(crate) fn add(&mut self, start: u64, end: u64) {
        self.shift(start, end, |n| n.saturating_add(1));
    }

    /// Counts one interval fewer over `[start, end)`; it must have been added.
    pub(crate) fn remove(&mut self, start: u64, end: u64) {
        self.shift(start, end, |n| n.saturating_sub(1));
    }

    fn shift(&mut self, start: u64, end: u64, by: impl Fn(u32) -> u32) {
        if start >= end {
            return;
        }
        // Breakpoints at both ends first, so that the change stays inside the window.
        for at in [end, start] {
            let n = self.at(at);
            self.steps.entry(at).or_insert(n);
        }
        for (_, n) in self.steps.range_mut(start..end) {
            *n = by(*n);
        }
        // Inside the window every step moved alike; only the ends can have become redundant.
        for at in [start, end] {
            self.drop_if_redundant(at);
        }
    }

    /// Removes the breakpoint at `at` if the count does not change there.
    fn drop_if_redundant(&mut self, at: u64) {
        let before = self.steps.range(..at).next_back().map_or(0, |(_, &n)| n);
        if self.steps.get(&at) == Some(&before) {
            self.steps.remove(&at);
        }
    }

    /// Whether no interval is counted.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_are_exact_at_the_edges() {
        let mut line = Timeline::default();
        line.add(10, 20);
        line.add(15, 30);
        line.add(20, 25);
        assert_eq!(line.peak(0, 10), 0);
        assert_eq!(line.peak(0, 11), 1);
        assert_eq!(line.peak(10, 15), 1);
        assert_eq!(line.peak(14, 16), 2);
        // [10,20) and [20,25) touch without overlapping.
        assert_eq!(line.peak(20, 21), 2);
        assert_eq!(line.peak(25, 30), 1);
        assert_eq!(line.peak(30, 100), 0);
        assert_eq!(line.peak(29, 30), 1);
    }

    #[test]
    fn removing_everything_leaves_nothing() {
        let mut line = Timeline::default();
        let windows = [(5, 9), (1, 100), (5, 9), (9, 12), (0, 1)];
        for (start, end) in windows {
            line.add(start, end);
        }
        assert_eq!(line.peak(5, 9), 3);
        for (start, end) in windows.iter().rev() {
            line.remove(*start, *end);
        }
        assert!(line.is_empty(), "{line:?}");
    }

    #[test]
    fn agrees_with_counting_every_second() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(18);
        let mut line = Timeline::default();
        let mut live: Vec<(u64, u64)> = Vec::new();
        for _ in 0..2000 {
            if live.is_empty() || rng.random_bool(0.6) {
                let start = rng.random_range(0..60);
                let end = start + rng.random_range(1..20);
                line.add(start, end);
                live.push((start, end));
            } else {
                let (start, end) = live.swap_remove(rng.random_range(0..live.len()));
                line.remove(start, end);
            }
            let start = rng.random_range(0..80);
            let end = start + rng.random_range(1..30);
            let counted = (start..end)
                .map(|t| live.iter().filter(|(s, e)| *s <= t && t < *e).count() as u32)
                .max()
                .unwrap_or(0);
            assert_eq!(
                line.peak(start, end),
                counted,
                "[{start}, {end}) of {live:?}"
            );
        }
        // Never more than two breakpoints an interval.
        assert!(line.steps.len() <= 2 * live.len());
    }
}
