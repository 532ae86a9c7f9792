//! [`ParkingClient`]: the RPC port's typed client, and the error and reply types it returns.

use std::borrow::Cow;
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use framing::Secret;
use framing::frame::{self, FrameError};
use framing::rpc::{
    self, Booking, ErrorCode, KeyGrant, LotFilter, LotOffer, LotStatus, Request, ReserveOutcome,
    WaitEntry, WireError,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::access::Access;
use crate::endpoints::Endpoints;
use crate::error::Error;
use crate::net::{self, Conn};

/// Per-call timeout used by [`ParkingClient::connect`], and its connect timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One lot's counts as `getLots` reports them, owning its id.
pub type LotInfo = LotStatus<'static>;

/// Why an RPC call failed; [`Error::Server`] carries the server's error reply.
pub type ClientError = Error<WireError>;

/// A JSON reply as [`ParkingClient::recv`] read it, borrowing from the client's read buffer.
///
/// The caller knows which method the `rpc_id` belongs to and decodes the result accordingly
/// with [`RpcReply::decode`].
#[derive(Debug)]
pub struct RpcReply<'a> {
    rpc_id: Option<u32>,
    result: Result<&'a RawValue, WireError>,
    reason: Option<Cow<'a, str>>,
}

impl<'a> RpcReply<'a> {
    /// Parses a reply payload. A payload that is not JSON but a text `ERR CODE detail` line is
    /// accepted as an error reply without an id, since a server refusing a whole connection
    /// (`BUSY`) may not know which syntax the client speaks.
    fn parse(payload: &'a [u8]) -> Result<Self, ClientError> {
        if let Some(error) = parse_text_error(payload) {
            return Ok(RpcReply {
                rpc_id: None,
                result: Err(error),
                reason: None,
            });
        }
        let envelope = rpc::decode_json_reply(payload).map_err(|err| {
            ClientError::Protocol(format!("malformed reply {}: {err}", preview(payload)))
        })?;
        let result = match envelope.error {
            Some(text) => Err(WireError::parse_json_form(&text).map_err(|err| {
                ClientError::Protocol(format!("error reply with {err}: {text:?}"))
            })?),
            None => Ok(envelope.result.unwrap_or(RawValue::NULL)),
        };
        Ok(RpcReply {
            rpc_id: envelope.rpc_id,
            result,
            reason: envelope.reason,
        })
    }

    /// Why a `reserve` or `cancel` answered `false` (`FULL`, `EXISTS`, `NOT_FOUND`); `None` on
    /// success and from a server that predates reasons.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The echoed request id; `None` when the server could not read one (a malformed request,
    /// an oversized frame, a refused connection).
    pub fn rpc_id(&self) -> Option<u32> {
        self.rpc_id
    }

    /// The raw JSON result, or the error reply.
    pub fn result(&self) -> Result<&'a RawValue, &WireError> {
        self.result.as_ref().copied()
    }

    /// Takes the raw JSON result, or the error reply.
    pub fn into_result(self) -> Result<&'a RawValue, WireError> {
        self.result
    }

    /// Decodes the result as `T`; an error reply becomes [`ClientError::Server`] and a result
    /// of another type [`ClientError::Protocol`].
    pub fn decode<T: Deserialize<'a>>(self) -> Result<T, ClientError> {
        let raw = self.result?;
        serde_json::from_str(raw.get()).map_err(|err| {
            ClientError::Protocol(format!(
                "unexpected result {} ({err})",
                preview(raw.get().as_bytes())
            ))
        })
    }
}

/// A text `ERR CODE detail` reply as a [`WireError`]; `None` if the payload is anything else.
fn parse_text_error(payload: &[u8]) -> Option<WireError> {
    // Looked at before the UTF-8 check, which would otherwise read every JSON reply once more.
    let rest = std::str::from_utf8(payload.strip_prefix(b"ERR ")?).ok()?;
    let (code, detail) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: ErrorCode = code.parse().ok()?;
    Some(WireError::new(code, detail))
}

/// The start of a payload, for error messages.
fn preview(payload: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(&payload[..payload.len().min(MAX)]);
    if payload.len() > MAX {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}

/// How a `reserve` ended, as [`ParkingClient::reserve_with_reason`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A space is now held for the plate.
    Reserved,
    /// Refused: the lot has no free space (`"reason": "FULL"`).
    Full,
    /// Refused: the plate already holds a reservation in this lot (`"reason": "EXISTS"`).
    AlreadyReserved,
    /// Refused by a server that does not say why (one that predates reasons): the lot is full
    /// or the plate already holds a reservation there.
    Refused,
}

impl Reservation {
    /// The reply's `reason` for this outcome ([`ReserveOutcome::reason`]); `None` for a grant
    /// and for a refusal the server did not explain.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Reservation::Full => ReserveOutcome::Full.reason(),
            Reservation::AlreadyReserved => ReserveOutcome::Exists.reason(),
            Reservation::Reserved | Reservation::Refused => None,
        }
    }
}

impl From<ReserveOutcome> for Reservation {
    fn from(outcome: ReserveOutcome) -> Self {
        match outcome {
            ReserveOutcome::Reserved => Reservation::Reserved,
            ReserveOutcome::Full => Reservation::Full,
            ReserveOutcome::Exists => Reservation::AlreadyReserved,
        }
    }
}

/// A blocking client for the RPC port: one TCP connection, one request at a time with the
/// typed methods, or pipelined with [`send`](Self::send)/[`recv`](Self::recv).
///
/// Every request is written with one `write`, and the encode and read buffers are reused, so a
/// call allocates only what its result needs (this client doubles as the load generator).
///
/// After any error other than [`ClientError::Server`] the connection's state is unknown (a
/// late reply may still arrive and would be taken for the next one); drop the client and
/// connect again.
#[derive(Debug)]
pub struct ParkingClient {
    reader: BufReader<Conn>,
    peer: SocketAddr,
    timeout: Duration,
    next_id: u32,
    /// Frames queued and not yet written; cleared, never shrunk.
    out: Vec<u8>,
    /// The last reply's payload; overwritten by each read.
    payload: Vec<u8>,
}

impl ParkingClient {
    /// Connects with [`DEFAULT_TIMEOUT`] as connect timeout and per-call timeout.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self, ClientError> {
        Self::connect_with_timeout(addr, DEFAULT_TIMEOUT)
    }

    /// Connects, trying each address `addr` resolves to for at most `timeout`, and then uses
    /// `timeout` for every call.
    pub fn connect_with_timeout(
        addr: impl ToSocketAddrs,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let (stream, peer) = net::connect(addr, timeout)?;
        Ok(Self::over(Conn::Plain(stream), peer, timeout))
    }

    /// Connects to the first of `endpoints` that answers, as `access` says: over TLS if it has TLS, and authenticated
    /// with its token if it has one (a refused token is [`ClientError::Server`] with code
    /// `UNAUTHORIZED`). `timeout` bounds the connection, the handshake and every call.
    pub fn connect_with(
        endpoints: &Endpoints,
        timeout: Duration,
        access: &Access,
    ) -> Result<Self, ClientError> {
        let (stream, peer) = net::connect_with(endpoints, timeout, access)?;
        let mut client = Self::over(stream, peer, timeout);
        if let Some(token) = access.token() {
            client.auth(token)?;
        }
        Ok(client)
    }

    fn over(stream: Conn, peer: SocketAddr, timeout: Duration) -> Self {
        ParkingClient {
            reader: BufReader::new(stream),
            peer,
            timeout: net::effective(timeout),
            next_id: 1,
            out: Vec::with_capacity(256),
            payload: Vec::with_capacity(256),
        }
    }

    /// `auth`: authenticates the connection with a key's token; returns the key's id and
    /// role.
    pub fn auth(&mut self, token: &str) -> Result<KeyGrant<'static>, ClientError> {
        let grant: KeyGrant<'_> = self
            .call(&Request::Auth {
                token: Secret::new(token),
            })?
            .decode()?;
        Ok(KeyGrant {
            id: Cow::Owned(grant.id.into_owned()),
            role: Cow::Owned(grant.role.into_owned()),
        })
    }

    /// Changes the per-call timeout. It bounds each wait on the socket: for the server to take
    /// a request, and for each part of a reply to arrive.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        net::set_timeouts(self.reader.get_ref().tcp(), Some(timeout))?;
        self.timeout = net::effective(timeout);
        Ok(())
    }

    /// The per-call timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// `getLots`: every lot with its counts.
    pub fn get_lots(&mut self) -> Result<Vec<LotInfo>, ClientError> {
        let lots: Vec<LotStatus<'_>> = self.call(&Request::GetLots)?.decode()?;
        Ok(lots
            .into_iter()
            .map(|lot| LotStatus {
                id: Cow::Owned(lot.id.into_owned()),
                ..lot
            })
            .collect())
    }

    /// `getAvailability`: the lot's free spaces.
    pub fn get_availability(&mut self, lot: &str) -> Result<u32, ClientError> {
        self.call(&Request::GetAvailability { lot: lot.into() })?
            .decode()
    }

    /// `reserve`: `true` if a space is now held for `plate`, `false` if the lot is full or the
    /// plate already holds a reservation there ([`reserve_with_reason`](Self::reserve_with_reason)
    /// tells which).
    pub fn reserve(&mut self, lot: &str, plate: &str) -> Result<bool, ClientError> {
        Ok(self.reserve_with_reason(lot, plate)? == Reservation::Reserved)
    }

    /// `reserve`, telling a full lot from a plate that already holds a reservation by the
    /// reply's `reason`.
    pub fn reserve_with_reason(
        &mut self,
        lot: &str,
        plate: &str,
    ) -> Result<Reservation, ClientError> {
        let reply = self.call(&Request::Reserve {
            lot: lot.into(),
            plate: plate.into(),
        })?;
        // Taken before `decode` consumes the reply; a success carries no reason.
        // No reason (a server that predates them) or one this client does not know: Refused.
        let refusal = reply
            .reason()
            .and_then(ReserveOutcome::from_reason)
            .map_or(Reservation::Refused, Reservation::from);
        let reserved: bool = reply.decode()?;
        Ok(if reserved {
            Reservation::Reserved
        } else {
            refusal
        })
    }

    /// `cancel`: `true` if a reservation was removed, `false` if there was none.
    pub fn cancel(&mut self, lot: &str, plate: &str) -> Result<bool, ClientError> {
        self.call(&Request::Cancel {
            lot: lot.into(),
            plate: plate.into(),
        })?
        .decode()
    }

    /// `book`: books a space of `lot` (or its spot `spot`) for `plate` over
    /// `[start, end)` (Unix seconds); the server's refusals (`FULL`, `SPOT_TAKEN`,
    /// `BAD_WINDOW`, `UNKNOWN_SPOT`) come back as [`ClientError::Server`].
    pub fn book(
        &mut self,
        lot: &str,
        plate: &str,
        start: u64,
        end: u64,
        spot: Option<&str>,
    ) -> Result<Booking, ClientError> {
        self.call(&Request::Book {
            lot: lot.into(),
            plate: plate.into(),
            start,
            end,
            spot: spot.map(Into::into),
        })?
        .decode()
    }

    /// `getBooking`: the booking with id `id` (`<lotId>.<n>`).
    pub fn get_booking(&mut self, id: &str) -> Result<Booking, ClientError> {
        self.call(&Request::GetBooking { booking: id.into() })?
            .decode()
    }

    /// `cancelBooking`: `true` if the confirmed booking was cancelled, `false` if there was
    /// nothing to cancel.
    pub fn cancel_booking(&mut self, id: &str) -> Result<bool, ClientError> {
        self.call(&Request::CancelBooking { booking: id.into() })?
            .decode()
    }

    /// `checkIn`: checks the booking in and returns it (`NOT_DUE` before check-in opens,
    /// `BAD_STATE` unless it is confirmed).
    pub fn check_in(&mut self, id: &str) -> Result<Booking, ClientError> {
        self.call(&Request::CheckIn { booking: id.into() })?
            .decode()
    }

    /// `listBookings`: the first page (the server's default size, 100) of `lot`'s bookings
    /// overlapping `[start, end)`, by id; see [`list_bookings_page`](Self::list_bookings_page).
    pub fn list_bookings(
        &mut self,
        lot: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<Booking>, ClientError> {
        self.call(&Request::ListBookings {
            lot: lot.into(),
            start,
            end,
            limit: None,
            after: None,
        })?
        .decode()
    }

    /// `listBookings` one page at a time: up to `limit` bookings (1 to 1,000) after booking
    /// `after` (the last of the previous page; `None` for the first), by id. A page shorter
    /// than `limit` is the last.
    pub fn list_bookings_page(
        &mut self,
        lot: &str,
        start: u64,
        end: u64,
        limit: u32,
        after: Option<&str>,
    ) -> Result<Vec<Booking>, ClientError> {
        self.call(&Request::ListBookings {
            lot: lot.into(),
            start,
            end,
            limit: Some(u64::from(limit)),
            after: after.map(Into::into),
        })?
        .decode()
    }

    /// `findLots`: the lots that can take a booking matching `query`.
    pub fn find_lots(&mut self, query: &LotFilter<'_>) -> Result<Vec<LotOffer>, ClientError> {
        self.call(&Request::FindLots {
            query: query.clone(),
        })?
        .decode()
    }

    /// `joinWaitlist`: waits in line for `lot` (or its spot `spot`) over `[start, end)`,
    /// which it cannot book now; `NOT_FULL` when it can, `ALREADY_WAITING` for a second
    /// overlapping entry of the plate.
    pub fn join_waitlist(
        &mut self,
        lot: &str,
        plate: &str,
        start: u64,
        end: u64,
        spot: Option<&str>,
    ) -> Result<WaitEntry, ClientError> {
        self.call(&Request::JoinWaitlist {
            lot: lot.into(),
            plate: plate.into(),
            start,
            end,
            spot: spot.map(Into::into),
        })?
        .decode()
    }

    /// `acceptOffer`: turns entry `id`'s live offer into a booking (`NO_OFFER` before one
    /// is made; `UNKNOWN_ENTRY` once it has run out and the entry is gone).
    pub fn accept_offer(&mut self, id: &str) -> Result<Booking, ClientError> {
        self.call(&Request::AcceptOffer { entry: id.into() })?
            .decode()
    }

    /// `leaveWaitlist`: `true` if entry `id` was taken off its list.
    pub fn leave_waitlist(&mut self, id: &str) -> Result<bool, ClientError> {
        self.call(&Request::LeaveWaitlist { entry: id.into() })?
            .decode()
    }

    /// `myBookings`: `plate`'s bookings (the caller's own), newest first; offers made to it
    /// are among them as `OFFERED`.
    pub fn my_bookings(&mut self, plate: &str) -> Result<Vec<Booking>, ClientError> {
        self.call(&Request::MyBookings {
            plate: plate.into(),
        })?
        .decode()
    }

    /// `myWaitlist`: `plate`'s waitlist entries (the caller's own), oldest first.
    pub fn my_waitlist(&mut self, plate: &str) -> Result<Vec<WaitEntry>, ClientError> {
        self.call(&Request::MyWaitlist {
            plate: plate.into(),
        })?
        .decode()
    }

    /// `PING`: succeeds when the server answers `"PONG"`.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        let pong: Cow<'_, str> = self.call(&Request::Ping)?.decode()?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(ClientError::Protocol(format!(
                "PING answered {pong:?}, not \"PONG\""
            )))
        }
    }

    /// Sends `request` and reads its reply, checking that the reply carries the request's id.
    ///
    /// An error reply without an id (the server refusing the connection, say) is taken as the
    /// answer, since it is the only request in flight.
    fn call(&mut self, request: &Request<'_>) -> Result<RpcReply<'_>, ClientError> {
        let id = self.send(request)?;
        let reply = self.recv()?;
        match reply.rpc_id {
            Some(got) if got == id => Ok(reply),
            None if reply.result.is_err() => Ok(reply),
            got => Err(ClientError::Protocol(format!(
                "reply has rpcId {} but the request had {id}",
                got.map_or_else(|| "null".to_owned(), |got| got.to_string())
            ))),
        }
    }

    /// Sends `request` as one JSON frame without waiting for the reply, and returns the
    /// `rpcId` it was given. Ids increase by one per request, wrapping at `u32::MAX`.
    pub fn send(&mut self, request: &Request<'_>) -> Result<u32, ClientError> {
        let id = self.queue(request)?;
        self.flush()?;
        Ok(id)
    }

    /// Encodes `request` as a JSON frame behind any already queued, without writing it; the
    /// next [`flush`](Self::flush) (or send) writes them all with one write. Returns its
    /// `rpcId`. Pipelining clients queue a batch and flush once, as `redis-benchmark -P` does.
    pub fn queue(&mut self, request: &Request<'_>) -> Result<u32, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.queue_frame(|out| rpc::encode_json_request(out, id, request))?;
        Ok(id)
    }

    /// Writes every queued request with one write.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        if !self.out.is_empty() {
            let written = self.reader.get_mut().write_all(&self.out);
            self.out.clear();
            written?;
        }
        Ok(())
    }

    /// Whether a whole reply is already buffered, so that the next `recv` needs no read.
    pub fn reply_ready(&self) -> bool {
        matches!(
            frame::decode(self.reader.buffer()),
            Ok(frame::Decoded::Frame { .. })
        )
    }

    /// Reads the next JSON reply. Replies come back in request order; matching `rpcId`s is the
    /// caller's job here.
    pub fn recv(&mut self) -> Result<RpcReply<'_>, ClientError> {
        self.read_payload()?;
        RpcReply::parse(&self.payload)
    }

    /// Sends `request` in its text alias form (`RESERVE A 7ABC123`) as one frame.
    ///
    /// Text aliases split on whitespace, so arguments containing whitespace are refused here
    /// (as `Io` with kind `InvalidInput`) rather than sent as a different request.
    pub fn send_text(&mut self, request: &Request<'_>) -> Result<(), ClientError> {
        self.queue_text(request)?;
        self.flush()
    }

    /// Like [`queue`](Self::queue), for the text alias form (see [`send_text`](Self::send_text)).
    pub fn queue_text(&mut self, request: &Request<'_>) -> Result<(), ClientError> {
        if !request.with_args(|args| args.iter().all(rpc::Arg::fits_text_field)) {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "text alias arguments must be non-empty and contain no whitespace",
            )));
        }
        self.queue_frame(|out| rpc::encode_text_request(out, request))
    }

    /// Reads the next reply as text (for the text aliases: `PONG`, `12`, `OK`, a JSON array,
    /// `ERR CODE detail`), borrowing the client's read buffer so that a reply costs no
    /// allocation. Error replies are returned as text, not as errors.
    pub fn recv_text(&mut self) -> Result<&str, ClientError> {
        self.read_payload()?;
        std::str::from_utf8(&self.payload).map_err(|_| {
            ClientError::Protocol(format!("reply is not UTF-8: {}", preview(&self.payload)))
        })
    }

    /// Sends `command` verbatim as one frame and returns the text reply.
    pub fn call_text(&mut self, command: &str) -> Result<String, ClientError> {
        self.queue_frame(|out| out.extend_from_slice(command.as_bytes()))?;
        self.flush()?;
        self.recv_text().map(str::to_owned)
    }

    /// Queues one frame whose payload `body` encodes.
    fn queue_frame(&mut self, body: impl FnOnce(&mut Vec<u8>)) -> Result<(), ClientError> {
        frame::encode_with(&mut self.out, body).map_err(|err| {
            ClientError::Io(io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))
        })
    }

    fn read_payload(&mut self) -> Result<(), ClientError> {
        // A pipelined reply is usually whole in the read buffer already (see
        // `read_buffered_frame`): the load generator is this client.
        match frame::read_buffered_frame(&mut self.reader, &mut self.payload) {
            Ok(true) => Ok(()),
            Ok(false) | Err(FrameError::Truncated { .. }) => Err(ClientError::Closed),
            Err(FrameError::TooLarge { len }) => {
                let header = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
                // A line port's reply (`ERR ...`, `OK ...`) read as a frame header is text.
                Err(ClientError::Protocol(
                    if header.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                        format!(
                            "got a text line starting {:?} instead of a frame: is this the RPC \
                         port? (the sensor and pub/sub ports speak lines)",
                            String::from_utf8_lossy(&header)
                        )
                    } else {
                        format!(
                            "reply frame of {len} bytes exceeds the {}-byte limit",
                            frame::MAX_FRAME_LEN
                        )
                    },
                ))
            }
            Err(FrameError::Io(err)) => Err(err.into()),
        }
    }
}
