//! The two booking races of docs/protocol.md over real sockets, against the production pool
//! sizes: 32 connections booking the same spot over the same window get exactly one success;
//! 32 connections booking overlapping windows of a lot with `bookable` 10 get exactly 10.
//! Each round starts the 32 requests together at a barrier, and is repeated with new windows.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Barrier;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use client::{ClientError, ParkingClient};
use common::start_with;
use framing::rpc::ErrorCode;
use serde_json::json;

const CONNECTIONS: usize = 32;
const ROUNDS: u64 = 20;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs one round: connection `n` sends `book(n)` once all are ready; returns the successes
/// and the error codes of the refusals.
fn race(
    clients: &mut [ParkingClient],
    book: impl Fn(usize, &mut ParkingClient) -> Result<String, ClientError> + Sync,
) -> (Vec<String>, Vec<ErrorCode>) {
    let barrier = Barrier::new(clients.len());
    let outcomes: Vec<Result<String, ClientError>> = thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(n, client)| {
                let barrier = &barrier;
                let book = &book;
                scope.spawn(move || {
                    barrier.wait();
                    book(n, client)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut booked = Vec::new();
    let mut refused = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(id) => booked.push(id),
            Err(ClientError::Server(error)) => refused.push(error.code),
            Err(other) => panic!("a booking failed on the way: {other}"),
        }
    }
    (booked, refused)
}

fn connect(server: &server::RunningServer) -> Vec<ParkingClient> {
    (0..CONNECTIONS)
        .map(|_| ParkingClient::connect(server.rpc_addr()).unwrap())
        .collect()
}

#[test]
fn thirty_two_connections_racing_for_one_spot_and_window_get_exactly_one() {
    let server = start_with(|config| {
        config.lots = serde_json::from_value(json!([
            {"id": "R", "capacity": 50, "spots": [{"id": "R-1"}]}
        ]))
        .unwrap();
    });
    let mut clients = connect(&server);
    let base = unix_now() + 3600;
    for round in 0..ROUNDS {
        let start = base + round * 1000;
        let (booked, refused) = race(&mut clients, |n, client| {
            client
                .book("R", &format!("SPOT{n}"), start, start + 600, Some("R-1"))
                .map(|booking| booking.id.to_string())
        });
        assert_eq!(booked.len(), 1, "round {round}: {booked:?}");
        assert_eq!(refused, vec![ErrorCode::SpotTaken; CONNECTIONS - 1]);
    }
    let listed = clients[0]
        .list_bookings("R", base, base + ROUNDS * 1000)
        .unwrap();
    assert_eq!(listed.len(), ROUNDS as usize);
}

#[test]
fn thirty_two_connections_racing_for_a_lot_with_bookable_ten_get_exactly_ten() {
    const BOOKABLE: usize = 10;
    let server = start_with(|config| {
        config.lots = serde_json::from_value(json!([
            {"id": "R", "capacity": 40, "bookable": BOOKABLE}
        ]))
        .unwrap();
    });
    let mut clients = connect(&server);
    let base = unix_now() + 3600;
    for round in 0..ROUNDS {
        // Every window contains the instant `meet`, each starting and ending elsewhere: the
        // limit must hold there, whichever ten win.
        let meet = base + round * 10_000 + 5000;
        let (booked, refused) = race(&mut clients, |n, client| {
            let n = n as u64;
            client
                .book(
                    "R",
                    &format!("LOT{n}"),
                    meet - 1 - n * 7,
                    meet + 1 + n * 13,
                    None,
                )
                .map(|booking| booking.id.to_string())
        });
        assert_eq!(booked.len(), BOOKABLE, "round {round}: {booked:?}");
        assert_eq!(refused, vec![ErrorCode::Full; CONNECTIONS - BOOKABLE]);
        let listed = clients[0].list_bookings("R", meet, meet + 1).unwrap();
        assert_eq!(listed.len(), BOOKABLE);
    }
}
