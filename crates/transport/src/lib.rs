//! The byte stream under every server connection: plain TCP, or TLS over TCP, behind one type.
//!
//! The server's connections are non-blocking and wait for readiness in `mio` pollers (the RPC
//! and sensor ports' scheduler, the pub/sub port's notifiers). They read and write a
//! [`Stream`], which is a `mio::net::TcpStream` or a `rustls::ServerConnection` over one, and
//! register it with their poll like the socket itself. So every port that runs on those
//! connection types gets TLS from here, and the protocols above never see a record. A
//! stream, TLS session and all, can change owners: an HTTP event stream moves from the
//! scheduler to a broker notifier with its session as it is.
//!
//! What a connection must do differently for TLS, and why:
//! - **Reading until `WouldBlock`.** A TLS read may return fewer bytes than the socket holds
//!   (rustls decrypts a record at a time), so "the read did not fill my buffer" does not mean
//!   the socket is drained; [`Stream::is_tls`] tells a connection not to rely on it.
//! - **Records waiting to go out.** Handshake messages and encrypted replies wait in rustls
//!   when the socket is full; [`Stream::has_pending`] says so and [`Stream::flush_pending`]
//!   writes them, so a connection waits for writability until they are out.
//! - **Plain text on a TLS port** is refused at its first byte (a TLS connection starts with a
//!   handshake record, `0x16`): the read fails with an error [`is_plain_text`] recognises and
//!   the connection is closed, rather than waiting for a handshake that will never come.
//!
//! The plain path is the socket's own `read` and `write` behind one `match`.
//!
//! # Layout
//! - this file: [`Stream`] and its TLS half.
//! - `tls`: [`TlsAcceptor`] (the server's certificate and key) and [`TlsError`].

#![forbid(unsafe_code)]

mod tls;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ServerConnection;

pub use tls::{TlsAcceptor, TlsError};

/// The first byte of every TLS connection: the content type of a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// An accepted connection's byte stream.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::Plain(tcp) => f.debug_tuple("Plain").field(tcp).finish(),
            Stream::Tls(tls) => f.debug_tuple("Tls").field(&tls.tcp).finish(),
        }
    }
}

/// A TLS session over a non-blocking socket.
pub struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    /// The first byte was looked at and is a handshake record.
    checked: bool,
    /// The socket reached end-of-file.
    eof: bool,
}

impl Stream {
    /// `tcp` as it is, or (with `tls`) as the server side of a TLS session that has not
    /// started yet: the handshake happens as the connection reads and writes.
    pub fn accept(tcp: TcpStream, tls: Option<&TlsAcceptor>) -> Result<Stream, TlsError> {
        Ok(match tls {
            None => Stream::Plain(tcp),
            Some(acceptor) => Stream::Tls(Box::new(TlsStream {
                tcp,
                tls: acceptor.session()?,
                checked: false,
                eof: false,
            })),
        })
    }

    /// The socket under the stream, for its options (`TCP_NODELAY`, buffer sizes).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.tcp,
        }
    }

    /// Whether this is a TLS stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Whether TLS records (a handshake message, encrypted output) wait for the socket.
    pub fn has_pending(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls.tls.wants_write(),
        }
    }

    /// Writes waiting TLS records; `Ok(true)` once none is left, `Ok(false)` if the socket
    /// would block first.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) => Ok(true),
            Stream::Tls(tls) => tls.push_records(),
        }
    }

    /// Shuts the socket down; shutting down writing ends an established TLS session with its
    /// `close_notify` first (sent if the socket takes it).
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.shutdown(how),
            Stream::Tls(tls) => {
                // Before the handshake is done there is no session to end (and a plain-text
                // peer must get nothing but the close).
                if how != Shutdown::Read && !tls.tls.is_handshaking() {
                    tls.tls.send_close_notify();
                    let _ = tls.push_records();
                }
                tls.tcp.shutdown(how)
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.flush_pending()? {
            true => Ok(()),
            false => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp_mut().deregister(registry)
    }
}

impl Stream {
    fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &mut tls.tcp,
        }
    }
}

impl TlsStream {
    /// Returns decrypted bytes, reading and processing records from the socket as needed;
    /// `WouldBlock` once neither rustls nor the socket has any.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the socket without a close_notify: a close all the same
                // (what it sent before is authenticated; nothing of it is lost).
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(err) => return Err(err),
            }
            if self.eof {
                return Ok(0);
            }
            if !self.checked {
                self.check_first_byte()?;
            }
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => self.eof = true,
                Ok(_) => {
                    if let Err(err) = self.tls.process_new_packets() {
                        // rustls has queued an alert saying why; try to send it.
                        let _ = self.push_records();
                        return Err(io::Error::new(io::ErrorKind::InvalidData, err));
                    }
                    // Handshake replies go out at once; a full socket keeps them pending.
                    self.push_records()?;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Refuses a peer whose first byte is not a TLS handshake record: plain text.
    fn check_first_byte(&mut self) -> io::Result<()> {
        let mut first = [0; 1];
        match self.tcp.peek(&mut first)? {
            0 => Ok(()),
            _ if first[0] == TLS_HANDSHAKE => {
                self.checked = true;
                Ok(())
            }
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, PlainText)),
        }
    }

    /// Encrypts what it can of `buf` (after sending waiting records, so that a peer that
    /// reads nothing cannot make rustls buffer without end).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.push_records()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = self.tls.writer().write(buf)?;
        if taken == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.push_records()?;
        Ok(taken)
    }

    /// Writes waiting records; `Ok(true)` once none is left.
    fn push_records(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }
}

/// The error a TLS stream's read fails with when the peer speaks plain text.
#[derive(Debug)]
struct PlainText;

impl fmt::Display for PlainText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the peer sent plain text to a TLS port")
    }
}

impl std::error::Error for PlainText {}

/// Whether `err` is a TLS stream refusing a plain-text peer.
pub fn is_plain_text(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<PlainText>())
}
