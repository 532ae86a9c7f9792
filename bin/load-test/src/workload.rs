//! What the connections send: the [`Mode`]s, the stream of operations each connection draws
//! from ([`OpStream`]), turning an operation into a wire [`Request`], and what a correct reply
//! to it looks like.
//!
//! Lot ids and plates are built once, when the [`Workload`] is made, and requests borrow them,
//! so producing a request allocates nothing.

use std::borrow::Cow;
use std::fmt;

use clap::ValueEnum;
use framing::rpc::Request;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Plates of the mixed and text modes are `LTM<n>`; those of the reserve mode `LTR<connection>`.
/// The `LT` prefix makes load-test reservations easy to recognise in a server's state.
const MIXED_PLATE_PREFIX: &str = "LTM";
const RESERVE_PLATE_PREFIX: &str = "LTR";

/// The mixed workload's shares, in percent: getAvailability, then reserve; cancel is the rest.
const MIX_AVAIL_PERCENT: u64 = 70;
const MIX_RESERVE_PERCENT: u64 = 20;

/// Which requests a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `PING` only.
    Ping,
    /// `getAvailability`, round robin over the lots.
    Avail,
    /// `reserve` then `cancel` of the same plate, one plate per connection: at most one
    /// reservation per connection is ever live, so a long run does not fill the lots.
    Reserve,
    /// 70% `getAvailability`, 20% `reserve`, 10% `cancel`, random lots and pool plates.
    Mixed,
    /// Mixed, but through the text aliases (`AVAIL`, `RESERVE`, `CANCEL`).
    Text,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ping => "ping",
            Mode::Avail => "avail",
            Mode::Reserve => "reserve",
            Mode::Mixed => "mixed",
            Mode::Text => "text",
        }
    }

    /// Whether requests go out as text aliases rather than JSON.
    pub fn is_text(self) -> bool {
        self == Mode::Text
    }

    /// Whether the mode addresses lots (and so needs the server's lot ids).
    pub fn needs_lots(self) -> bool {
        self != Mode::Ping
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request, as indexes into the [`Workload`]'s lots and plates: small and `Copy`, so a
/// connection can remember what each in-flight request was without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `PING`.
    Ping,
    /// `getAvailability` of a lot.
    Avail {
        /// Index into the lots.
        lot: usize,
    },
    /// `reserve` a plate in a lot.
    Reserve {
        /// Index into the lots.
        lot: usize,
        /// Index into the plates.
        plate: usize,
    },
    /// `cancel` a plate's reservation in a lot.
    Cancel {
        /// Index into the lots.
        lot: usize,
        /// Index into the plates.
        plate: usize,
    },
}

impl Op {
    /// Whether `result`, the raw JSON `result` of a successful reply, is what this operation
    /// must return: `"PONG"`, a count, or a boolean.
    pub fn accepts_json(&self, result: &str) -> bool {
        match self {
            Op::Ping => result == "\"PONG\"",
            Op::Avail { .. } => is_count(result),
            Op::Reserve { .. } | Op::Cancel { .. } => result == "true" || result == "false",
        }
    }

    /// Whether `reply`, a text alias reply, is a successful answer to this operation
    /// (`ERR ...` and anything unexpected are not).
    pub fn accepts_text(&self, reply: &str) -> bool {
        match self {
            Op::Ping => reply == "PONG",
            Op::Avail { .. } => is_count(reply),
            Op::Reserve { .. } => matches!(reply, "OK" | "FULL" | "EXISTS"),
            Op::Cancel { .. } => matches!(reply, "OK" | "NOT_FOUND"),
        }
    }
}

fn is_count(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// The lots and plates a run addresses, shared read-only by every connection of a row.
#[derive(Debug, Clone)]
pub struct Workload {
    mode: Mode,
    lots: Vec<String>,
    plates: Vec<String>,
}

impl Workload {
    /// A workload for `connections` connections over `lots` (the server's lot ids), with a pool
    /// of `plate_pool` plates for the mixed and text modes.
    ///
    /// Returns `None` when the mode needs lots and there are none.
    pub fn new(mode: Mode, lots: Vec<String>, plate_pool: u32, connections: u32) -> Option<Self> {
        if mode.needs_lots() && lots.is_empty() {
            return None;
        }
        let plates = match mode {
            Mode::Ping | Mode::Avail => Vec::new(),
            Mode::Reserve => (0..connections)
                .map(|c| format!("{RESERVE_PLATE_PREFIX}{c}"))
                .collect(),
            Mode::Mixed | Mode::Text => (0..plate_pool.max(1))
                .map(|n| format!("{MIXED_PLATE_PREFIX}{n}"))
                .collect(),
        };
        Some(Workload { mode, lots, plates })
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The operations connection number `connection` sends, in order.
    pub fn ops(&self, connection: u32) -> OpStream {
        OpStream {
            mode: self.mode,
            lots: self.lots.len().max(1),
            plates: self.plates.len().max(1),
            connection: connection as usize,
            step: 0,
            rng: SmallRng::seed_from_u64(u64::from(connection)),
        }
    }

    /// How many lot and plate pairs this workload may leave reserved (0 for the modes that
    /// reserve nothing).
    pub fn reservable_pairs(&self) -> usize {
        match self.mode {
            Mode::Ping | Mode::Avail => 0,
            Mode::Reserve | Mode::Mixed | Mode::Text => self.lots.len() * self.plates.len(),
        }
    }

    /// A `cancel` for each of [`Workload::reservable_pairs`].
    pub fn cancels(&self) -> impl Iterator<Item = Request<'_>> {
        let plates = if self.reservable_pairs() == 0 {
            &[][..]
        } else {
            &self.plates[..]
        };
        self.lots.iter().flat_map(move |lot| {
            plates.iter().map(move |plate| Request::Cancel {
                lot: Cow::Borrowed(lot.as_str()),
                plate: Cow::Borrowed(plate.as_str()),
            })
        })
    }

    /// The wire request for `op`, borrowing this workload's strings.
    pub fn request(&self, op: Op) -> Request<'_> {
        let lot = |index: usize| Cow::Borrowed(self.lots.get(index).map_or("", String::as_str));
        let plate = |index: usize| Cow::Borrowed(self.plates.get(index).map_or("", String::as_str));
        match op {
            Op::Ping => Request::Ping,
            Op::Avail { lot: l } => Request::GetAvailability { lot: lot(l) },
            Op::Reserve { lot: l, plate: p } => Request::Reserve {
                lot: lot(l),
                plate: plate(p),
            },
            Op::Cancel { lot: l, plate: p } => Request::Cancel {
                lot: lot(l),
                plate: plate(p),
            },
        }
    }
}

/// The endless sequence of operations one connection sends. Deterministic for a given
/// connection number, so two runs send the same requests.
#[derive(Debug, Clone)]
pub struct OpStream {
    mode: Mode,
    lots: usize,
    plates: usize,
    connection: usize,
    step: u64,
    rng: SmallRng,
}

impl OpStream {
    /// Whether the last operation was a reserve-mode `reserve` whose `cancel` is still to come:
    /// a row that ends then sends the `cancel` anyway (unrecorded), so the mode leaves no
    /// reservation behind.
    pub fn owes_cancel(&self) -> bool {
        self.mode == Mode::Reserve && self.step & 1 == 1
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let step = self.step;
        self.step = self.step.wrapping_add(1);
        match self.mode {
            Mode::Ping => Op::Ping,
            Mode::Avail => Op::Avail {
                // Connections start on different lots so that they do not move in lockstep.
                lot: (self.connection.wrapping_add(step as usize)) % self.lots,
            },
            Mode::Reserve => {
                // Each reserve/cancel pair goes to the next lot.
                let lot = (self.connection.wrapping_add((step / 2) as usize)) % self.lots;
                let plate = self.connection % self.plates;
                if step & 1 == 0 {
                    Op::Reserve { lot, plate }
                } else {
                    Op::Cancel { lot, plate }
                }
            }
            Mode::Mixed | Mode::Text => {
                let lot = self.rng.random_range(0..self.lots);
                let draw = self.rng.random_range(0..100);
                if draw < MIX_AVAIL_PERCENT {
                    Op::Avail { lot }
                } else if draw < MIX_AVAIL_PERCENT + MIX_RESERVE_PERCENT {
                    Op::Reserve {
                        lot,
                        plate: self.rng.random_range(0..self.plates),
                    }
                } else {
                    Op::Cancel {
                        lot,
                        plate: self.rng.random_range(0..self.plates),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lots() -> Vec<String> {
        vec!["A".into(), "B".into(), "C".into()]
    }

    #[test]
    fn mixed_mode_follows_the_70_20_10_mix_over_all_lots() {
        let workload = Workload::new(Mode::Mixed, lots(), 100, 4).unwrap();
        let mut ops = workload.ops(3);
        let draws = 100_000;
        let (mut avail, mut reserve, mut cancel) = (0, 0, 0);
        let mut per_lot = [0; 3];
        let mut plates = std::collections::HashSet::new();
        for _ in 0..draws {
            let lot = match ops.next_op() {
                Op::Avail { lot } => {
                    avail += 1;
                    lot
                }
                Op::Reserve { lot, plate } => {
                    reserve += 1;
                    plates.insert(plate);
                    lot
                }
                Op::Cancel { lot, plate } => {
                    cancel += 1;
                    plates.insert(plate);
                    lot
                }
                Op::Ping => panic!("mixed mode sent a ping"),
            };
            per_lot[lot] += 1;
        }
        let share = |n: i32| f64::from(n) / f64::from(draws);
        assert!((share(avail) - 0.70).abs() < 0.01, "avail {avail}");
        assert!((share(reserve) - 0.20).abs() < 0.01, "reserve {reserve}");
        assert!((share(cancel) - 0.10).abs() < 0.01, "cancel {cancel}");
        for count in per_lot {
            assert!((share(count) - 1.0 / 3.0).abs() < 0.01, "{per_lot:?}");
        }
        assert_eq!(plates.len(), 100, "every pool plate is used");
    }

    #[test]
    fn streams_are_deterministic_per_connection() {
        let workload = Workload::new(Mode::Text, lots(), 10, 2).unwrap();
        let first: Vec<Op> = {
            let mut ops = workload.ops(1);
            (0..50).map(|_| ops.next_op()).collect()
        };
        let mut again = workload.ops(1);
        assert!(first.iter().all(|op| *op == again.next_op()));
        let mut other = workload.ops(0);
        assert!(first.iter().any(|op| *op != other.next_op()));
    }

    #[test]
    fn reserve_mode_cancels_what_it_reserved() {
        let workload = Workload::new(Mode::Reserve, lots(), 1000, 3).unwrap();
        let mut ops = workload.ops(2);
        for _ in 0..10 {
            assert!(!ops.owes_cancel());
            let Op::Reserve { lot, plate } = ops.next_op() else {
                panic!("expected a reserve");
            };
            assert!(ops.owes_cancel());
            assert_eq!(ops.next_op(), Op::Cancel { lot, plate });
            assert_eq!(
                workload.request(Op::Reserve { lot, plate }),
                Request::Reserve {
                    lot: workload.lots[lot].as_str().into(),
                    plate: "LTR2".into()
                }
            );
        }
    }

    #[test]
    fn avail_round_robin_and_ping() {
        let workload = Workload::new(Mode::Avail, lots(), 1, 1).unwrap();
        let mut ops = workload.ops(1);
        let seen: Vec<Op> = (0..4).map(|_| ops.next_op()).collect();
        assert_eq!(
            seen,
            [1, 2, 0, 1].map(|lot| Op::Avail { lot }),
            "starts at the connection's own lot"
        );
        let ping = Workload::new(Mode::Ping, Vec::new(), 1, 1).unwrap();
        assert_eq!(ping.ops(0).next_op(), Op::Ping);
        assert_eq!(ping.request(Op::Ping), Request::Ping);
        assert!(Workload::new(Mode::Avail, Vec::new(), 1, 1).is_none());
    }

    #[test]
    fn reply_checks() {
        assert!(Op::Ping.accepts_json("\"PONG\""));
        assert!(!Op::Ping.accepts_json("\"PANG\""));
        assert!(Op::Avail { lot: 0 }.accepts_json("95"));
        assert!(!Op::Avail { lot: 0 }.accepts_json("-1"));
        assert!(!Op::Avail { lot: 0 }.accepts_json("null"));
        assert!(Op::Reserve { lot: 0, plate: 0 }.accepts_json("false"));
        assert!(Op::Cancel { lot: 0, plate: 0 }.accepts_text("NOT_FOUND"));
        assert!(!Op::Cancel { lot: 0, plate: 0 }.accepts_text("FULL"));
        assert!(Op::Reserve { lot: 0, plate: 0 }.accepts_text("EXISTS"));
        assert!(!Op::Avail { lot: 0 }.accepts_text("ERR UNKNOWN_LOT no lot"));
        assert!(!Op::Avail { lot: 0 }.accepts_text(""));
    }
}
