//! The open-files limit: how many connections the process can really hold.
//!
//! Every connection is a file descriptor, so `max_connections` per port is only true if the
//! process may open that many. At start the server raises its soft `RLIMIT_NOFILE` as far as
//! it needs (never past the hard limit). If the hard limit is too low for every port to be
//! full at once, it says so at warn and caps the connections of all ports together at what
//! fits ([`ConnectionBudget`]), as Redis lowers `maxclients`: each port still takes up to its
//! `max_connections`, so one busy port is not held to a third of the limit.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors set aside for everything but connections: listeners, the pollers and their
/// wakers (two per worker and notifier), log and data files, and a margin.
pub(crate) const RESERVED_FDS: u64 = 256;

/// Descriptors needed for `ports` ports of `per_port` connections each, plus the reserve.
pub(crate) fn needed(ports: usize, per_port: usize) -> u64 {
    let connections = (ports as u64).saturating_mul(per_port as u64);
    connections.saturating_add(RESERVED_FDS)
}

/// Connections per port that a limit of `limit` descriptors leaves room for (at least 1).
pub(crate) fn connections_within(limit: u64, ports: usize) -> usize {
    let per_port = limit.saturating_sub(RESERVED_FDS) / (ports.max(1) as u64);
    usize::try_from(per_port).unwrap_or(usize::MAX).max(1)
}

/// The connections every port may hold together, as the open-files limit allows.
#[derive(Debug)]
pub(crate) struct ConnectionBudget {
    max: usize,
    open: AtomicUsize,
}

impl ConnectionBudget {
    /// A budget of `max` connections.
    pub(crate) fn new(max: usize) -> Self {
        ConnectionBudget {
            max,
            open: AtomicUsize::new(0),
        }
    }

    /// The most connections of all ports together.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Connections counted against the budget now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Counts one more connection unless the budget is spent.
    pub(crate) fn try_take(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok()
    }

    /// Gives back what [`ConnectionBudget::try_take`] took.
    pub(crate) fn give_back(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Raises the soft open-files limit for `ports` ports of `max_connections` each, and returns
/// how many connections all ports may hold together, warning when that is fewer than every
/// port full.
pub(crate) fn fit_open_files(ports: usize, max_connections: usize) -> usize {
    let wanted = needed(ports, max_connections);
    let all_full = ports.saturating_mul(max_connections);
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit >= wanted => {
            log::debug!("open-files limit {limit} (needed {wanted})");
            all_full
        }
        Ok(limit) => {
            let fit = connections_within(limit, 1);
            log::warn!(
                "the open-files hard limit is {limit}, too low for {ports} ports of \
                 max_connections {max_connections} (needs {wanted}): at most {fit} \
                 connections are taken on all ports together (each port still up to \
                 {max_connections}), and more get BUSY; raise the hard limit (ulimit -Hn, or \
                 LimitNOFILE= in a systemd unit) to allow more"
            );
            fit
        }
        Err(err) => {
            log::warn!(
                "cannot read or raise the open-files limit ({err}); connections past the limit \
                 will fail to be accepted"
            );
            all_full
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arithmetic_fits_connections_under_the_limit() {
        assert_eq!(needed(3, 10_000), 30_000 + RESERVED_FDS);
        assert_eq!(needed(usize::MAX, usize::MAX), u64::MAX);
        assert_eq!(connections_within(20_000, 3), (20_000 - 256) / 3);
        assert_eq!(connections_within(needed(4, 10_000), 4), 10_000);
        // A limit below the reserve still leaves one connection per port.
        assert_eq!(connections_within(100, 3), 1);
        assert_eq!(connections_within(1 << 20, 0), (1 << 20) - 256);
    }

    #[test]
    fn the_budget_is_exact() {
        let budget = ConnectionBudget::new(2);
        assert!(budget.try_take());
        assert!(budget.try_take());
        assert!(!budget.try_take());
        assert_eq!(budget.open(), 2);
        budget.give_back();
        assert!(budget.try_take());
        assert_eq!(budget.max(), 2);
    }
}
