//! `ParkingClient` against scripted fake RPC servers.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use client::{Booking, BookingStatus, ClientError, LotFilter, ParkingClient, Reservation};
use common::{Fake, closed_port, read_payload, read_request, write_payload, write_reply};
use framing::rpc::{
    Availability, CancelOutcome, ErrorCode, KeyGrant, LotStatus, Reply, Request, ReserveOutcome,
    WireError,
};

const SHORT: Duration = Duration::from_millis(100);

#[test]
fn typed_calls_round_trip_with_increasing_ids() {
    let fake = Fake::start(|mut stream| {
        let mut last_id = None;
        while let Some((id, request)) = read_request(&mut stream) {
            if let Some(last) = last_id {
                assert_eq!(id, u32::wrapping_add(last, 1));
            }
            last_id = Some(id);
            let reply = match request {
                Request::GetLots => Reply::Lots(vec![LotStatus {
                    id: "A".into(),
                    capacity: 100,
                    occupied: 3,
                    counted: 3,
                    reserved: 2,
                    booked: 0,
                    free: 95,
                    status: Some(Availability::Open),
                }]),
                Request::GetAvailability { lot } => {
                    assert_eq!(lot, "A");
                    Reply::Free(12)
                }
                Request::Reserve { lot, plate } => {
                    assert_eq!((&*lot, &*plate), ("A", "7ABC123"));
                    Reply::Reserve(ReserveOutcome::Reserved)
                }
                Request::Cancel { .. } => Reply::Cancel(CancelOutcome::NotFound),
                Request::Ping => Reply::Pong,
                Request::Auth { token } => {
                    assert_eq!(token.expose(), "t0k");
                    Reply::Authenticated(KeyGrant {
                        id: "kiosk-1".into(),
                        role: "client".into(),
                    })
                }
                other => panic!("unexpected {other:?}"),
            };
            write_reply(&mut stream, Some(id), Ok(&reply));
        }
    });
    let mut client = ParkingClient::connect(fake.addr).unwrap();
    client.ping().unwrap();
    let lots = client.get_lots().unwrap();
    assert_eq!(lots.len(), 1);
    assert_eq!(
        (&*lots[0].id, lots[0].capacity, lots[0].free),
        ("A", 100, 95)
    );
    assert_eq!(client.get_availability("A").unwrap(), 12);
    assert!(client.reserve("A", "7ABC123").unwrap());
    assert!(!client.cancel("A", "7ABC123").unwrap());
    let grant = client.auth("t0k").unwrap();
    assert_eq!((&*grant.id, &*grant.role), ("kiosk-1", "client"));
    drop(client);
    fake.join();
}

#[test]
fn mismatched_rpc_id_is_a_protocol_error() {
    let fake = Fake::start(|mut stream| {
        let (id, _) = read_request(&mut stream).unwrap();
        write_reply(&mut stream, Some(id.wrapping_add(7)), Ok(&Reply::Pong));
    });
    let mut client = ParkingClient::connect(fake.addr).unwrap();
    match client.ping() {
        Err(ClientError::Protocol(detail)) => assert!(detail.contains("rpcId"), "{detail}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    fake.join();
}

#[test]
fn silent_server_times_out() {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let fake = Fake::start(move |mut stream| {
        read_request(&mut stream).unwrap();
        // Hold the connection open, unanswered, until the client has given up.
        let _ = done_rx.recv();
    });
    let mut client = ParkingClient::connect_with_timeout(fake.addr, SHORT).unwrap();
    assert!(matches!(client.ping(), Err(ClientError::Timeout)));
    done_tx.send(()).unwrap();
    fake.join();
}

#[test]
fn server_closing_is_reported_as_closed() {
    let fake = Fake::start(|mut stream| {
        read_request(&mut stream).unwrap();
    });
    let mut client = ParkingClient::connect(fake.addr).unwrap();
    assert!(matches!(client.get_lots(), Err(ClientError::Closed)));
    fake.join();
}

#[test]
fn error_replies_carry_code_and_detail() {
    let fake = Fake::start(|mut stream| {
        let (id, _) = read_request(&mut stream).unwrap();
        let error = WireError::new(ErrorCode::UnknownLot, "no lot \"Z\"");
        write_reply(&mut stream, Some(id), Err(&error));
        // A connection-level refusal has no id; it still answers the one request in flight.
        read_request(&mut stream).unwrap();
        write_reply(
            &mut stream,
            None,
            Err(&WireError::new(ErrorCode::Busy, "full")),
        );
        // So does the text form of one.
        read_request(&mut stream).unwrap();
        write_payload(&mut stream, b"ERR BUSY too many connections");
    });
    let mut client = ParkingClient::connect(fake.addr).unwrap();
    match client.get_availability("Z") {
        Err(ClientError::Server(error)) => {
            assert_eq!(error.code, ErrorCode::UnknownLot);
            assert_eq!(error.detail, "no lot \"Z\"");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    for _ in 0..2 {
        match client.ping() {
            Err(ClientError::Server(error)) => assert_eq!(error.code, ErrorCode::Busy),
            other => panic!("expected BUSY, got {other:?}"),
        }
    }
    fake.join();
}

#[test]
fn reserve_with_reason_tells_full_from_already_reserved() {
    let fake = Fake::start(|mut stream| {
        for outcome in [
            ReserveOutcome::Reserved,
            ReserveOutcome::Full,
            ReserveOutcome::Exists,
        ] {
            let (id, _) = read_request(&mut stream).unwrap();
            write_reply(&mut stream, Some(id), Ok(&Reply::Reserve(outcome)));
        }
        // A server that predates reasons says only `false`.
        let (id, _) = read_request(&mut stream).unwrap();
        let old = format!(r#"{{"rpcId":{id},"result":false,"error":null}}"#);
        write_payload(&mut stream, old.as_bytes());
    });
    let mut client = ParkingClient::connect(fake.addr).unwrap();
    let answers: Vec<Reservation> = (0..4)
        .map(|_| client.reserve_with_reason("A", "P1").unwrap())
        .collect();
    assert_eq!(
        answers,
        [
            Reservation::Reserved,
            Reservation::Full,
            Reservation::AlreadyReserved,
            Reservation::Refused
        ]
    );
    fake.join();
}

#[test]
fn wrong_result_type_and_garbage_are_protocol_errors() {
    let fake = Fake::start(|mut stream| {
        let (id, _) = read_request(&mut stream).unwrap();
        write_reply(&mut stream, Some(id), Ok(&Reply::Pong));
        read_request(&mut stream).unwrap();
        write_payload(&mut stream, b"not json");
    });
    let mut client = ParkingClient::connect(fake.addr).unwrap();
    assert!(matches!(
        client.reserve("A", "P1"),
        Err(ClientError::Protocol(_))
    ));
    assert!(matches!(client.ping(), Err(ClientError::Protocol(_))));
    fake.join();
}

#[test]
fn closed_port_is_a_connect_error_naming_the_address() {
    let addr = closed_port();
    match ParkingClient::connect_with_timeout(addr, Duration::from_secs(2)) {
        Err(ClientError::Connect { addr: tried, .. }) => assert_eq!(tried, addr.to_string()),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let fake = Fake::start(|mut stream| {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(read_request(&mut stream).unwrap().0);
        }
        for (n, id) in ids.into_iter().enumerate() {
            write_reply(&mut stream, Some(id), Ok(&Reply::Free(n as u32)));
        }
    });
    let mut client = ParkingClient::connect(fake.addr).unwrap();
    let request = Request::GetAvailability { lot: "A".into() };
    let sent: Vec<u32> = (0..3).map(|_| client.send(&request).unwrap()).collect();
    assert_eq!(sent[1], sent[0] + 1);
    for (n, id) in sent.into_iter().enumerate() {
        let reply = client.recv().unwrap();
        assert_eq!(reply.rpc_id(), Some(id));
        assert_eq!(reply.decode::<u32>().unwrap(), n as u32);
    }
    fake.join();
}

#[test]
fn text_aliases_are_sent_and_read_verbatim() {
    let fake = Fake::start(|mut stream| {
        assert_eq!(read_payload(&mut stream), b"PING");
        write_payload(&mut stream, b"PONG");
        assert_eq!(read_payload(&mut stream), b"RESERVE A 7ABC123");
        write_payload(&mut stream, b"EXISTS");
    });
    let mut client = ParkingClient::connect(fake.addr).unwrap();
    assert_eq!(client.call_text("PING").unwrap(), "PONG");
    client
        .send_text(&Request::Reserve {
            lot: "A".into(),
            plate: "7ABC123".into(),
        })
        .unwrap();
    assert_eq!(client.recv_text().unwrap(), "EXISTS");
    // An argument with a space would become a different command; it is refused locally.
    let bad = Request::GetAvailability { lot: "A B".into() };
    assert!(matches!(client.send_text(&bad), Err(ClientError::Io(_))));
    fake.join();
}

/// A booking as the server sends it.
fn booking(id: &str, status: &str) -> Booking {
    let lot = id.split('.').next().unwrap();
    serde_json::from_str(&format!(
        r#"{{"id":"{id}","lot":"{lot}","spot":null,"plate":"P1","start":100,"end":200,"status":"{status}","owner":null}}"#
    ))
    .unwrap()
}

#[test]
fn booking_calls_send_their_arguments_by_kind_and_decode_bookings() {
    let fake = Fake::start(|mut stream| {
        while let Some((id, request)) = read_request(&mut stream) {
            let reply = match request {
                Request::Book {
                    lot,
                    plate,
                    start,
                    end,
                    spot,
                } => {
                    assert_eq!((&*lot, &*plate, start, end), ("A", "P1", 100, 200));
                    assert_eq!(spot.as_deref(), Some("A-EV1"));
                    Reply::Booking(booking("A.1", "CONFIRMED"))
                }
                Request::GetBooking { booking: wanted } => {
                    assert_eq!(wanted, "A.1");
                    Reply::Booking(booking("A.1", "CONFIRMED"))
                }
                Request::CheckIn { .. } => Reply::Booking(booking("A.1", "CHECKED_IN")),
                Request::CancelBooking { .. } => Reply::Cancel(CancelOutcome::NotFound),
                Request::ListBookings {
                    lot,
                    start,
                    end,
                    limit,
                    after,
                } => {
                    assert_eq!((&*lot, start, end), ("A", 0, 1000));
                    match (limit, after.as_deref()) {
                        (None, None) => Reply::Bookings(vec![booking("A.1", "CHECKED_IN")]),
                        (Some(2), Some("A.1")) => Reply::Bookings(Vec::new()),
                        other => panic!("unexpected page {other:?}"),
                    }
                }
                Request::FindLots { query } => {
                    assert_eq!(query.feature.as_deref(), Some("ev"));
                    Reply::Offers(Vec::new())
                }
                other => panic!("unexpected {other:?}"),
            };
            write_reply(&mut stream, Some(id), Ok(&reply));
        }
    });
    let mut client = ParkingClient::connect(fake.addr).unwrap();
    let made = client.book("A", "P1", 100, 200, Some("A-EV1")).unwrap();
    assert_eq!(made.id.to_string(), "A.1");
    assert_eq!(made.status, BookingStatus::Confirmed);
    assert_eq!(client.get_booking("A.1").unwrap(), made);
    assert_eq!(
        client.check_in("A.1").unwrap().status,
        BookingStatus::CheckedIn
    );
    assert!(!client.cancel_booking("A.1").unwrap());
    assert_eq!(client.list_bookings("A", 0, 1000).unwrap().len(), 1);
    assert!(
        client
            .list_bookings_page("A", 0, 1000, 2, Some("A.1"))
            .unwrap()
            .is_empty()
    );
    let query = LotFilter {
        zone: None,
        feature: Some("ev".into()),
        start: 100,
        end: 200,
    };
    assert!(client.find_lots(&query).unwrap().is_empty());
    drop(client);
    fake.join();
}
