//! A broker on a real loopback socket, and a line-oriented test client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use broker::{Broker, BrokerConfig, BrokerStats, EventStream, Held};
use framing::pubsub::{self, ServerLine};
use socket2::{Domain, Protocol, Socket, Type};
use state::{Availability, LotChange, LotId};
use transport::Stream;

/// How long any single wait in a test may take before it fails: only reached when the test
/// is failing, so generous (as `testkit::DEADLINE`); a loaded 2-core machine has taken over
/// 5 s to get a notifier to close a stalled reader.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A broker for lots A, B and C, and a listener whose accepted sockets are attached to it.
pub struct Harness {
    pub broker: Broker,
    listener: TcpListener,
    addr: SocketAddr,
}

impl Harness {
    pub fn start(config: BrokerConfig) -> Self {
        let lots = ["A", "B", "C"].map(|id| LotId::new(id).unwrap()).to_vec();
        let broker = Broker::start(lots, config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        Harness {
            broker,
            listener,
            addr,
        }
    }

    /// Connects a client and attaches the server side of the connection.
    pub fn connect(&self) -> Client {
        Client::new(self.connect_raw(None))
    }

    /// Connects a socket whose receive buffer is set (before connecting) to `receive_buffer`
    /// bytes, and attaches the server side.
    pub fn connect_raw(&self, receive_buffer: Option<usize>) -> TcpStream {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket.connect(&self.addr.into()).unwrap();
        let (server_side, peer) = self.listener.accept().unwrap();
        self.broker.attach(server_side, peer);
        socket.into()
    }

    /// Connects a client and hands the server side over as an event stream following `lots`
    /// (all when empty), with `preamble` to go first.
    pub fn connect_stream(&self, lots: &[&str], preamble: &[u8]) -> Client {
        Client::new(self.connect_stream_raw(lots, preamble, None))
    }

    /// [`Harness::connect_stream`], with the client's receive buffer set to `receive_buffer`.
    pub fn connect_stream_raw(
        &self,
        lots: &[&str],
        preamble: &[u8],
        receive_buffer: Option<usize>,
    ) -> TcpStream {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket.connect(&self.addr.into()).unwrap();
        let (server_side, peer) = self.listener.accept().unwrap();
        let request = EventStream {
            lots: lots.iter().map(|lot| LotId::new(lot).unwrap()).collect(),
            owner: None,
            preamble: preamble.to_vec(),
        };
        server_side.set_nonblocking(true).unwrap();
        let stream = Stream::Plain(mio::net::TcpStream::from_std(server_side));
        self.broker
            .attach_stream(stream, peer, Held::new(()), request);
        socket.into()
    }

    /// Publishes a change of `lot`'s free count.
    pub fn publish(&self, lot: &str, free: u32) {
        self.broker.on_lot_change(&change(lot, free));
    }

    /// Waits until the broker's counters satisfy `condition`.
    pub fn wait_for_stats(&self, what: &str, condition: impl Fn(&BrokerStats) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let stats = self.broker.stats();
            if condition(&stats) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the counters are {stats:?}"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A change number that only grows, as the state's per-lot numbers do.
pub fn next_seq() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub fn change(lot: &str, free: u32) -> LotChange {
    LotChange {
        lot: LotId::new(lot).unwrap(),
        free,
        status: Availability::of(free, 0),
        seq: next_seq(),
        at: SystemTime::now(),
    }
}

/// Polls `condition` until it holds; fails the test after [`DEADLINE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A pub/sub client speaking raw lines.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn new(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        let writer = stream.try_clone().unwrap();
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// The next line, terminator removed; fails on EOF or timeout.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).unwrap();
        assert!(read > 0, "connection closed while a line was expected");
        assert!(line.ends_with('\n'), "unterminated line {line:?}");
        line.pop();
        line
    }

    /// The next event's free count, or `None` once the connection has ended; fails on a
    /// line that is not an event.
    pub fn event_or_end(&mut self) -> Option<u32> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("reading an event: {e}"),
        }
        match pubsub::parse_server_line(line.trim_end().as_bytes()) {
            Ok(ServerLine::Event(event)) => Some(event.free),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Everything up to the end of the connection, and how it ended: `Ok` for EOF, the
    /// error (a reset, say) otherwise.
    pub fn read_to_end(&mut self) -> (Vec<u8>, std::io::Result<()>) {
        let mut bytes = Vec::new();
        let end = self.reader.read_to_end(&mut bytes).map(drop);
        (bytes, end)
    }

    /// Waits until bytes the server sent are waiting in this socket, unread.
    pub fn wait_for_unread_bytes(&self) {
        let mut byte = [0u8; 1];
        let stream = self.reader.get_ref();
        assert!(
            self.reader.buffer().is_empty(),
            "bytes were already read into the buffer"
        );
        assert_eq!(stream.peek(&mut byte).unwrap(), 1);
    }

    /// Sends `SUBSCRIBE <topic>` and returns the id of the `OK` reply.
    pub fn subscribe(&mut self, topic: &str) -> u64 {
        self.send(format!("SUBSCRIBE {topic}\n").as_bytes());
        let line = self.line();
        match pubsub::parse_server_line(line.as_bytes()) {
            Ok(ServerLine::Subscribed(id)) => id,
            other => panic!("expected OK, got {other:?}"),
        }
    }

    /// The next line, which must be an event: its lot and free count.
    pub fn event(&mut self) -> (String, u32) {
        let line = self.line();
        match pubsub::parse_server_line(line.as_bytes()) {
            Ok(ServerLine::Event(event)) => (event.lot_id.into_owned(), event.free),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The next event-stream event: its `event`, `id` and `data` fields (the blank line that
    /// ends it is read too); keep-alive comments before it are skipped.
    pub fn sse_event(&mut self) -> (String, u64, String) {
        let mut line = self.line();
        while line.starts_with(':') || line.is_empty() {
            line = self.line();
        }
        let event = line
            .strip_prefix("event: ")
            .expect("an event: line")
            .to_owned();
        let id = self
            .line()
            .strip_prefix("id: ")
            .expect("an id: line")
            .parse()
            .unwrap();
        let data = self
            .line()
            .strip_prefix("data: ")
            .expect("a data: line")
            .to_owned();
        assert_eq!(self.line(), "", "an event ends with a blank line");
        (event, id, data)
    }

    /// Reads (and discards) until the server closes the connection.
    pub fn expect_closed(&mut self) {
        expect_closed(self.reader.get_mut());
    }
}

/// Reads (and discards) until the peer closes `stream` (EOF or reset); fails after [`DEADLINE`].
pub fn expect_closed(stream: &mut TcpStream) {
    let deadline = Instant::now() + DEADLINE;
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut sink = [0; 4096];
    loop {
        assert!(Instant::now() < deadline, "connection still open");
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("connection still open after {DEADLINE:?}")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
