//! Resource limits: who may connect ([`Admission`]), how many connections the open-files
//! limit allows ([`ConnectionBudget`]), and how many bytes connections may buffer
//! ([`BufferBudget`]).
//!
//! The open-files limit: how many connections the process can really hold.
//!
//! Every connection is a file descriptor, so `max_connections` per port is only true if the
//! process may open that many. At start the server raises its soft `RLIMIT_NOFILE` as far as
//! it needs (never past the hard limit). If the hard limit is too low for every port to be
//! full at once, it says so at warn and caps the connections of all ports together at what
//! fits ([`ConnectionBudget`]), as Redis lowers `maxclients`: each port still takes up to its
//! `max_connections`, so one busy port is not held to a third of the limit.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

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
    #[cfg(test)]
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

/// Who may connect to one port: at most `max_connections` open, at most
/// `max_connections_per_address` from one address (so one client cannot take every slot),
/// within what the server-wide [`ConnectionBudget`] allows. Each admitted connection holds
/// a [`Ticket`] that gives its place back when it is dropped, however the connection ends.
#[derive(Debug)]
pub(crate) struct Admission {
    max_connections: usize,
    /// 0: no limit per address.
    per_address: usize,
    open: AtomicUsize,
    refused: AtomicU64,
    by_address: Mutex<HashMap<IpAddr, usize>>,
    budget: Arc<ConnectionBudget>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The port has `max_connections` open.
    Port(usize),
    /// This address has `max_connections_per_address` open on the port.
    Address(IpAddr, usize),
    /// Every port together holds what the open-files limit allows.
    Server(usize),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Port(max) => write!(f, "server is at its limit of {max} connections"),
            Refusal::Address(ip, max) => {
                write!(
                    f,
                    "{ip} already has the {max} connections one address may open"
                )
            }
            Refusal::Server(max) => {
                write!(
                    f,
                    "server is at its limit of {max} connections on all ports"
                )
            }
        }
    }
}

/// An admitted connection's place; dropping it gives the place back.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    /// The address counted against its limit (none when there is no limit per address).
    address: Option<IpAddr>,
}

impl Admission {
    /// Admission to a port with these limits (`per_address` 0 for none), within `budget`.
    pub(crate) fn new(
        max_connections: usize,
        per_address: usize,
        budget: Arc<ConnectionBudget>,
    ) -> Arc<Self> {
        Arc::new(Admission {
            max_connections,
            per_address,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            by_address: Mutex::new(HashMap::new()),
            budget,
        })
    }

    /// Connections open on the port now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Admits a connection from `peer`, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Ticket, Refusal> {
        let admitted = self.try_admit(peer);
        if admitted.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    fn try_admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Ticket, Refusal> {
        // The port's count first, then the server's, then the address's: each step that
        // refuses gives back what the steps before it took, so a refusal leaves no trace.
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max_connections).then_some(open + 1)
            })
            .map_err(|_| Refusal::Port(self.max_connections))?;
        if !self.budget.try_take() {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Server(self.budget.max()));
        }
        let address = (self.per_address > 0).then(|| peer.ip());
        if let Some(ip) = address {
            let mut by_address = self.by_address.lock();
            let count = by_address.entry(ip).or_insert(0);
            if *count >= self.per_address {
                drop(by_address);
                self.release(None);
                return Err(Refusal::Address(ip, self.per_address));
            }
            *count += 1;
        }
        Ok(Ticket {
            admission: Arc::clone(self),
            address,
        })
    }

    /// Gives back one connection's place, and its address's if it was counted.
    fn release(&self, address: Option<IpAddr>) {
        if let Some(ip) = address {
            let mut by_address = self.by_address.lock();
            if let Some(count) = by_address.get_mut(&ip) {
                *count -= 1;
                // An address with nothing open is forgotten, so the map holds only the
                // addresses connected now, not every address ever seen.
                if *count == 0 {
                    by_address.remove(&ip);
                }
            }
        }
        self.budget.give_back();
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Addresses with a connection counted now (for tests).
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.by_address.lock().len()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.address);
    }
}

/// The bytes all connections of the RPC and sensor ports may buffer together beyond each
/// one's free allowance: unfinished requests and unsent replies (`max_buffered_bytes`).
/// Without it, a few hundred peers each sending the start of a 4 MiB frame hold gigabytes.
#[derive(Debug)]
pub(crate) struct BufferBudget {
    max: usize,
    held: AtomicUsize,
}

impl BufferBudget {
    /// A budget of `max` bytes.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(BufferBudget {
            max,
            held: AtomicUsize::new(0),
        })
    }

    /// The most bytes held together.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// One connection's share of the [`BufferBudget`], given back when it is dropped.
#[derive(Debug)]
pub(crate) struct BufferCharge {
    budget: Arc<BufferBudget>,
    held: usize,
}

impl BufferCharge {
    /// A charge of nothing yet against `budget`.
    pub(crate) fn new(budget: Arc<BufferBudget>) -> Self {
        BufferCharge { budget, held: 0 }
    }

    /// Raises the charge to `bytes` if the budget has room for the difference (lowering it
    /// always succeeds); false, and nothing changed, if it has not.
    pub(crate) fn try_raise(&mut self, bytes: usize) -> bool {
        if bytes <= self.held {
            self.force(bytes);
            return true;
        }
        let more = bytes - self.held;
        let raised = self
            .budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more)
                    .filter(|&total| total <= self.budget.max)
            })
            .is_ok();
        if raised {
            self.held = bytes;
        }
        raised
    }

    /// Sets the charge to `bytes`, over the budget if need be (for memory already in use).
    pub(crate) fn force(&mut self, bytes: usize) {
        if bytes > self.held {
            self.budget
                .held
                .fetch_add(bytes - self.held, Ordering::AcqRel);
        } else {
            self.budget
                .held
                .fetch_sub(self.held - bytes, Ordering::AcqRel);
        }
        self.held = bytes;
    }
}

impl Drop for BufferCharge {
    fn drop(&mut self) {
        self.force(0);
    }
}

/// Raises the open-files limit for `ports` ports of `max_connections` each, and returns
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

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40_000)
    }

    #[test]
    fn one_address_gets_at_most_its_share() {
        let admission = Admission::new(10, 2, Arc::new(ConnectionBudget::new(100)));
        let first = admission.admit(peer("10.0.0.1")).unwrap();
        let _second = admission.admit(peer("10.0.0.1")).unwrap();
        let refused = admission.admit(peer("10.0.0.1")).unwrap_err();
        assert_eq!(refused, Refusal::Address(peer("10.0.0.1").ip(), 2));
        assert!(refused.to_string().contains("10.0.0.1"), "{refused}");
        // Another address is not held to the first one's count.
        let _other = admission.admit(peer("10.0.0.2")).unwrap();
        // The refusal took nothing: two from the first address and one other are open.
        assert_eq!(admission.open(), 3);
        drop(first);
        let _again = admission.admit(peer("10.0.0.1")).unwrap();
        assert_eq!(admission.open(), 3);
    }

    #[test]
    fn zero_means_no_limit_per_address() {
        let unlimited = Admission::new(10, 0, Arc::new(ConnectionBudget::new(100)));
        let _held: Vec<_> = (0..10)
            .map(|_| unlimited.admit(peer("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(
            unlimited.admit(peer("10.0.0.1")).unwrap_err(),
            Refusal::Port(10)
        );
        assert_eq!(unlimited.addresses(), 0);
    }

    #[test]
    fn every_refusal_gives_back_what_it_took() {
        let budget = Arc::new(ConnectionBudget::new(3));
        let rpc = Admission::new(2, 1, Arc::clone(&budget));
        let sensor = Admission::new(5, 0, Arc::clone(&budget));
        let a = rpc.admit(peer("10.0.0.1")).unwrap();
        assert!(matches!(
            rpc.admit(peer("10.0.0.1")),
            Err(Refusal::Address(..))
        ));
        let _b = rpc.admit(peer("10.0.0.2")).unwrap();
        assert_eq!(rpc.admit(peer("10.0.0.3")).unwrap_err(), Refusal::Port(2));
        let _c = sensor.admit(peer("10.0.0.3")).unwrap();
        // The server-wide budget of 3 is spent although the sensor port allows 5.
        assert_eq!(
            sensor.admit(peer("10.0.0.4")).unwrap_err(),
            Refusal::Server(3)
        );
        assert_eq!((rpc.open(), sensor.open(), budget.open()), (2, 1, 3));
        drop(a);
        assert_eq!((rpc.open(), budget.open(), rpc.addresses()), (1, 2, 1));
        let _d = sensor.admit(peer("10.0.0.4")).unwrap();
    }

    #[test]
    fn the_buffer_budget_refuses_growth_past_it_and_counts_what_is_in_use() {
        let budget = BufferBudget::new(100);
        let mut big = BufferCharge::new(Arc::clone(&budget));
        let mut small = BufferCharge::new(Arc::clone(&budget));
        assert!(big.try_raise(80));
        assert!(!small.try_raise(30));
        assert_eq!(budget.held(), 80);
        assert!(small.try_raise(20));
        // Memory already in use is counted even past the budget, and refuses more growth.
        small.force(40);
        assert_eq!(budget.held(), 120);
        assert!(!big.try_raise(81));
        assert!(big.try_raise(10));
        drop(small);
        assert_eq!(budget.held(), 10);
        drop(big);
        assert_eq!(budget.held(), 0);
    }
}
