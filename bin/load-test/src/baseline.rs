//! The baseline server: the least a correct RPC server has to do, as a yardstick for the
//! parking server's overhead.
//!
//! One thread per connection, blocking reads through a `BufReader`, requests decoded with the
//! same [`framing::rpc`] codecs the parking server uses, and constant answers: `PING` gets
//! `PONG`, `getAvailability` [`AVAILABILITY`], `reserve` and `cancel` succeed, `getLots` lists
//! [`LOTS`]; `book`, `getBooking` and `checkIn` answer a confirmed booking number 1 of what
//! was asked, `cancelBooking` succeeds, the lists are empty. No state, no locks, no scheduler. Each reply is written with one write; replies to
//! pipelined requests already in the read buffer are coalesced into one write, as the parking
//! server does. Malformed requests get the protocol's error replies, so the load generator's
//! reply checks hold against both servers.

use std::borrow::Cow;
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

use framing::frame::{self, Decoded, FrameError};
use framing::rpc::{
    self, Availability, CancelOutcome, ErrorCode, LotStatus, Reply, Request, ReserveOutcome,
    WireError,
};
use state::{Booking, BookingId, BookingStatus, LotId, Plate, Window};

/// The lots `getLots` reports: the parking server's default lots, with nothing taken.
pub const LOTS: [(&str, u32); 3] = [("A", 100), ("B", 50), ("C", 200)];

/// What `getAvailability` answers for any lot.
pub const AVAILABILITY: u32 = 42;

/// Read buffer per connection: room for many pipelined requests per read.
const READ_BUFFER: usize = 64 * 1024;

/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A bound baseline server; [`serve`](Self::serve) runs it.
#[derive(Debug)]
pub struct BaselineServer {
    listener: TcpListener,
}

impl BaselineServer {
    /// Binds `addr` (port 0 picks a free port).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(BaselineServer {
            listener: TcpListener::bind(addr)?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever, one thread each.
    pub fn serve(self) -> ! {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let spawned =
                        thread::Builder::new()
                            .name("baseline-conn".into())
                            .spawn(move || {
                                if let Err(err) = serve_connection(stream) {
                                    log::debug!("{peer}: {err}");
                                }
                            });
                    if let Err(err) = spawned {
                        log::warn!("cannot start a thread for {peer}: {err}");
                    }
                }
                Err(err) => {
                    log::warn!("accept failed: {err}");
                    thread::sleep(ACCEPT_RETRY);
                }
            }
        }
    }
}

/// Answers one connection's requests until it closes.
fn serve_connection(stream: TcpStream) -> Result<(), FrameError> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream);
    let mut payload = Vec::with_capacity(256);
    let mut out = Vec::with_capacity(READ_BUFFER);
    loop {
        match frame::read_frame(&mut reader, &mut payload) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(FrameError::TooLarge { len }) => {
                let error = WireError::new(
                    ErrorCode::FrameTooLarge,
                    format!(
                        "frame of {len} bytes exceeds the {}-byte limit",
                        frame::MAX_FRAME_LEN
                    ),
                );
                frame::encode_with(&mut out, |out| {
                    rpc::encode_json_reply(out, None, Err(&error))
                })?;
                writer.write_all(&out)?;
                return Ok(());
            }
            Err(err) => return Err(err),
        }
        answer(&payload, &mut out)?;
        // Replies wait while the next request is already here, so a pipelined batch costs one
        // write; the last of the batch is written at once.
        if !matches!(frame::decode(reader.buffer()), Ok(Decoded::Frame { .. })) {
            writer.write_all(&out)?;
            out.clear();
        }
    }
}

/// Appends the framed reply to `payload`, a request frame's payload, to `out`.
pub fn answer(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    frame::encode_with(out, |out| {
        if rpc::is_json(payload) {
            match rpc::decode_json_request(payload) {
                Ok((rpc_id, request)) => {
                    let reply = reply_to(&request);
                    rpc::encode_json_reply(out, Some(rpc_id), reply.as_ref());
                }
                Err(rejected) => {
                    rpc::encode_json_reply(out, rejected.rpc_id, Err(&rejected.error));
                }
            }
        } else {
            match rpc::decode_text_request(payload) {
                Ok(request) => rpc::encode_text_reply(out, reply_to(&request).as_ref()),
                Err(error) => rpc::encode_text_reply(out, Err(&error)),
            }
        }
    })
}

/// A confirmed booking number 1 of `plate` in `lot` over `[start, end)`, as a booking reply
/// must at least be: the ids and the window checked.
fn booking(lot: &str, plate: &str, start: u64, end: u64) -> Result<Reply<'static>, WireError> {
    let bad = |detail: String| WireError::new(ErrorCode::BadArgs, detail);
    let lot = LotId::new(lot).map_err(|err| bad(err.to_string()))?;
    let plate = Plate::parse(plate).map_err(|err| bad(err.to_string()))?;
    if end <= start {
        return Err(WireError::new(ErrorCode::BadWindow, "empty window"));
    }
    Ok(Reply::Booking(Booking {
        id: BookingId::new(lot, 1),
        spot: None,
        plate,
        window: Window { start, end },
        status: BookingStatus::Confirmed,
        owner: None,
        overstay: false,
        inside: false,
        offered_until: None,
    }))
}

/// The constant answer to `request`.
fn reply_to(request: &Request<'_>) -> Result<Reply<'static>, WireError> {
    Ok(match request {
        Request::GetLots => Reply::Lots(
            LOTS.iter()
                .map(|&(id, capacity)| LotStatus {
                    id: Cow::Borrowed(id),
                    capacity,
                    occupied: 0,
                    counted: 0,
                    reserved: 0,
                    booked: 0,
                    free: capacity,
                    status: Some(Availability::Open),
                })
                .collect(),
        ),
        Request::GetAvailability { .. } => Reply::Free(AVAILABILITY),
        Request::Reserve { .. } => Reply::Reserve(ReserveOutcome::Reserved),
        Request::Cancel { .. } | Request::CancelBooking { .. } => {
            Reply::Cancel(CancelOutcome::Cancelled)
        }
        Request::Book {
            lot,
            plate,
            start,
            end,
            ..
        } => return booking(lot, plate, *start, *end),
        Request::GetBooking { booking: id } | Request::CheckIn { booking: id } => {
            let lot = id.split_once('.').map_or(id.as_ref(), |(lot, _)| lot);
            return booking(lot, "BASELINE", 0, 1);
        }
        Request::ListBookings { .. } => Reply::Bookings(Vec::new()),
        Request::FindLots { .. } => Reply::Offers(Vec::new()),
        // Nothing is ever full here, so nobody waits.
        Request::JoinWaitlist { .. } => {
            return Err(WireError::new(ErrorCode::NotFull, "book it instead"));
        }
        Request::AcceptOffer { .. } => {
            return Err(WireError::new(ErrorCode::UnknownEntry, "no entries here"));
        }
        Request::LeaveWaitlist { .. } => Reply::Cancel(CancelOutcome::NotFound),
        Request::MyBookings { .. } => Reply::Bookings(Vec::new()),
        Request::MyWaitlist { .. } => Reply::Entries(Vec::new()),
        Request::Ping => Reply::Pong,
        // Any token is good: the baseline measures the network path, not access control.
        Request::Auth { .. } => Reply::Authenticated(rpc::KeyGrant {
            id: Cow::Borrowed("baseline"),
            role: Cow::Borrowed("operator"),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(payload: &str) -> String {
        let mut out = Vec::new();
        answer(payload.as_bytes(), &mut out).unwrap();
        assert_eq!(
            frame::decode(&out).unwrap(),
            Decoded::Frame {
                payload: 4..out.len(),
                consumed: out.len()
            }
        );
        String::from_utf8(out[4..].to_vec()).unwrap()
    }

    #[test]
    fn answers_every_request_with_a_constant() {
        assert_eq!(
            reply(r#"{"rpcId":7,"method":"getAvailability","args":["A"]}"#),
            r#"{"rpcId":7,"result":42,"error":null}"#
        );
        assert_eq!(
            reply(r#"{"rpcId":8,"method":"reserve","args":["A","P1"]}"#),
            r#"{"rpcId":8,"result":true,"error":null}"#
        );
        assert_eq!(
            reply(r#"{"rpcId":9,"method":"PING","args":[]}"#),
            r#"{"rpcId":9,"result":"PONG","error":null}"#
        );
        assert!(reply(r#"{"rpcId":1,"method":"getLots","args":[]}"#).contains(r#""id":"C""#));
        assert_eq!(reply("AVAIL B"), "42");
        assert_eq!(reply("RESERVE B P1"), "OK");
        assert_eq!(reply("CANCEL B P1"), "OK");
        assert_eq!(reply("PING"), "PONG");
        assert!(reply("FLY").starts_with("ERR UNKNOWN_METHOD"));
        assert!(reply(r#"{"rpcId":3}"#).contains(r#""error":"BAD_REQUEST"#));
    }
}
