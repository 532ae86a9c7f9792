//! After the last row: cancel what the run may have left reserved, so that a load test does
//! not hold a site's spaces for `reservation_ttl` (the mixed and text modes reserve pool
//! plates at random; the reserve mode can stop between a reserve and its cancel).

use client::{ClientError, ParkingClient};

use crate::runner::RunConfig;
use crate::workload::Workload;

/// Most cancels a cleanup sends (lots x plates); past this it is skipped, and says so.
pub const MAX_CANCELS: usize = 200_000;

/// Cancels sent per batch on the one connection.
const BATCH: usize = 256;

/// What a cleanup did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// The mode reserves nothing.
    NotNeeded,
    /// `cancelled` of the `sent` cancels found a reservation.
    Done {
        /// Cancels sent.
        sent: usize,
        /// Reservations removed.
        cancelled: usize,
    },
    /// Too many lot and plate pairs to try (`pairs`).
    Skipped {
        /// Lots x plates.
        pairs: usize,
    },
}

/// Sends a `cancel` for every lot and plate `workload` may have reserved, pipelined on one
/// connection to `config`'s servers (the first node that answers: they all share the
/// reservations), as its key (whose reservations they are).
pub fn cancel_leftovers(config: &RunConfig, workload: &Workload) -> Result<Cleanup, ClientError> {
    let pairs = workload.reservable_pairs();
    if pairs == 0 {
        return Ok(Cleanup::NotNeeded);
    }
    if pairs > MAX_CANCELS {
        return Ok(Cleanup::Skipped { pairs });
    }
    let mut client = ParkingClient::connect_with(&config.target, config.timeout, &config.access)?;
    let cancels: Vec<_> = workload.cancels().collect();
    let mut cancelled = 0;
    for batch in cancels.chunks(BATCH) {
        for request in batch {
            client.queue(request)?;
        }
        client.flush()?;
        for _ in batch {
            if client.recv()?.decode::<bool>()? {
                cancelled += 1;
            }
        }
    }
    Ok(Cleanup::Done {
        sent: cancels.len(),
        cancelled,
    })
}
