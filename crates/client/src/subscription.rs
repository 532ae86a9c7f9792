//! [`Subscription`]: a pub/sub connection that has subscribed and now receives events.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use framing::pubsub::{self, Event, PubsubError, ServerLine, Topic};

use crate::access::Access;
use crate::endpoints::Endpoints;
use crate::error::Error;
use crate::net::{self, Conn, LineReader};

/// A pushed event that owns its lot id.
pub type OwnedEvent = Event<'static>;

/// What a subscription receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A lot's current value, sent once per lot right after subscribing.
    Snapshot(OwnedEvent),
    /// A change of a lot's free count.
    Event(OwnedEvent),
}

/// Why subscribing or receiving failed; [`Error::Server`] carries the server's refusal
/// (`ERR UNKNOWN_LOT ..`, `ERR BUSY ..`).
pub type SubscribeError = Error<PubsubError>;

/// A subscribed pub/sub connection. Events arrive in the order the server sent them.
#[derive(Debug)]
pub struct Subscription {
    lines: LineReader,
    peer: SocketAddr,
    id: u64,
    /// Event lines that arrived while `connect` still waited for the acks of later topics;
    /// delivered before anything read afterwards.
    early: VecDeque<Vec<u8>>,
    /// The line of the last event returned, for callers that print it verbatim.
    raw: Vec<u8>,
    /// The read timeout currently set on the socket, to skip redundant system calls.
    read_timeout: Option<Duration>,
}

impl Subscription {
    /// Connects (each address `addr` resolves to for at most `timeout`), sends one
    /// `SUBSCRIBE` line per topic in a single write, and waits up to `timeout` for each `OK`.
    ///
    /// A refused topic fails the whole call with [`SubscribeError::Server`]. `topics` must
    /// not be empty, and a lot id must be non-empty without whitespace (else `Io` with kind
    /// `InvalidInput`).
    pub fn connect(
        addr: impl ToSocketAddrs,
        topics: &[Topic<'_>],
        timeout: Duration,
    ) -> Result<Self, SubscribeError> {
        check_topics(topics)?;
        let (stream, peer) = net::connect(addr, timeout)?;
        Self::subscribe(Conn::Plain(stream), peer, topics, timeout, &Access::none())
    }

    /// Like [`connect`](Self::connect), to the first of `endpoints` that answers, as `access`
    /// says: over TLS, and with `AUTH <token>` sent ahead of the `SUBSCRIBE` lines (in the same
    /// write) when it has a token. A refused token fails the call with [`SubscribeError::Server`].
    pub fn connect_with(
        endpoints: &Endpoints,
        topics: &[Topic<'_>],
        timeout: Duration,
        access: &Access,
    ) -> Result<Self, SubscribeError> {
        check_topics(topics)?;
        let (stream, peer) = net::connect_with(endpoints, timeout, access)?;
        Self::subscribe(stream, peer, topics, timeout, access)
    }

    fn subscribe(
        stream: Conn,
        peer: SocketAddr,
        topics: &[Topic<'_>],
        timeout: Duration,
        access: &Access,
    ) -> Result<Self, SubscribeError> {
        let mut subscription = Subscription {
            lines: LineReader::new(stream),
            peer,
            id: 0,
            early: VecDeque::new(),
            raw: Vec::with_capacity(128),
            read_timeout: Some(net::effective(timeout)),
        };
        let mut out = Vec::with_capacity(32 * topics.len() + 64);
        if let Some(token) = &access.token {
            pubsub::encode_auth(&mut out, token);
        }
        for topic in topics {
            pubsub::encode_command(&mut out, *topic);
        }
        subscription.lines.stream_mut().write_all(&out)?;
        let mut first_id = None;
        let mut acked = 0;
        let mut authenticated = access.token.is_none();
        while acked < topics.len() || !authenticated {
            let line = subscription.lines.read_line()?;
            match pubsub::parse_server_line(line) {
                Ok(ServerLine::Authenticated(_)) => authenticated = true,
                Ok(ServerLine::Subscribed(id)) => {
                    acked += 1;
                    first_id.get_or_insert(id);
                }
                Ok(ServerLine::Refused(err)) => return Err(SubscribeError::Server(err)),
                Ok(ServerLine::Event(_) | ServerLine::Snapshot(_)) => {
                    subscription.early.push_back(line.to_vec());
                }
                Err(malformed) => return Err(SubscribeError::Protocol(malformed.to_string())),
            }
        }
        subscription.id = first_id.unwrap_or_default();
        Ok(subscription)
    }

    /// The subscription id from the server's `OK <subId>` (the first one, if the server gave
    /// several topics different ids).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Blocks until the next change of a subscribed lot arrives (snapshots are skipped; see
    /// [`next_update`](Self::next_update) for them).
    pub fn next_event(&mut self) -> Result<OwnedEvent, SubscribeError> {
        loop {
            if let Update::Event(event) = self.next_update()? {
                return Ok(event);
            }
        }
    }

    /// Waits at most about `timeout` for the next change (snapshots are skipped); `Ok(None)`
    /// if none came. A line that was only partly received when the time ran out is kept and
    /// completed by the next call.
    pub fn next_event_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<OwnedEvent>, SubscribeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_update_timeout(left)? {
                Some(Update::Event(event)) => return Ok(Some(event)),
                Some(Update::Snapshot(_)) => {}
                None => return Ok(None),
            }
        }
    }

    /// Blocks until the next snapshot or event arrives. Right after subscribing the server
    /// sends one snapshot per subscribed lot, its current value.
    pub fn next_update(&mut self) -> Result<Update, SubscribeError> {
        if let Some(update) = self.take_early()? {
            return Ok(update);
        }
        self.set_read_timeout(None)?;
        self.read_update()
    }

    /// Like [`next_update`](Self::next_update), waiting at most about `timeout`; `Ok(None)`
    /// if nothing came.
    pub fn next_update_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Update>, SubscribeError> {
        if let Some(update) = self.take_early()? {
            return Ok(Some(update));
        }
        self.set_read_timeout(Some(net::effective(timeout)))?;
        match self.read_update() {
            Ok(update) => Ok(Some(update)),
            Err(SubscribeError::Timeout) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The JSON line (terminator removed) of the update last returned, exactly as received.
    pub fn raw_line(&self) -> &[u8] {
        &self.raw
    }

    fn take_early(&mut self) -> Result<Option<Update>, SubscribeError> {
        match self.early.pop_front() {
            Some(line) => {
                self.raw = line;
                match pubsub::parse_server_line(&self.raw) {
                    Ok(ServerLine::Event(event)) => Ok(Some(Update::Event(into_owned(event)))),
                    Ok(ServerLine::Snapshot(event)) => {
                        Ok(Some(Update::Snapshot(into_owned(event))))
                    }
                    _ => Err(SubscribeError::Protocol(
                        "buffered line is not an event".to_owned(),
                    )),
                }
            }
            None => Ok(None),
        }
    }

    fn read_update(&mut self) -> Result<Update, SubscribeError> {
        loop {
            let line = self.lines.read_line()?;
            let update = match pubsub::parse_server_line(line) {
                Ok(ServerLine::Event(event)) => Update::Event(into_owned(event)),
                Ok(ServerLine::Snapshot(event)) => Update::Snapshot(into_owned(event)),
                // A repeated acknowledgement carries nothing for the caller.
                Ok(ServerLine::Subscribed(id)) => {
                    log::debug!("extra OK {id} from {}", self.peer);
                    continue;
                }
                Ok(ServerLine::Authenticated(id)) => {
                    log::debug!("extra OK {id} from {}", self.peer);
                    continue;
                }
                Ok(ServerLine::Refused(err)) => return Err(SubscribeError::Server(err)),
                Err(malformed) => return Err(SubscribeError::Protocol(malformed.to_string())),
            };
            self.raw.clear();
            self.raw.extend_from_slice(line);
            return Ok(update);
        }
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), SubscribeError> {
        if self.read_timeout != timeout {
            self.lines.socket().set_read_timeout(timeout)?;
            self.read_timeout = timeout;
        }
        Ok(())
    }
}

fn check_topics(topics: &[Topic<'_>]) -> Result<(), SubscribeError> {
    let invalid = |detail: String| {
        Err(SubscribeError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            detail,
        )))
    };
    if topics.is_empty() {
        return invalid("no topics to subscribe to".to_owned());
    }
    for topic in topics {
        match topic {
            Topic::Lot(lot) if lot.is_empty() || lot.bytes().any(|b| b.is_ascii_whitespace()) => {
                return invalid(format!(
                    "lot id {lot:?} must be non-empty and contain no whitespace"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn into_owned(event: Event<'_>) -> OwnedEvent {
    Event {
        lot_id: Cow::Owned(event.lot_id.into_owned()),
        free: event.free,
        status: event.status,
        timestamp: event.timestamp,
    }
}
