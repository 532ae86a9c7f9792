//! Binding ports and the blocking accept loops that hand connections on.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

use shutdown::ShutdownHandle;
use socket2::{Domain, Socket, Type};

use warn_limit::peer_warn;

/// After an accept error that is not about one peer (out of file descriptors, say), wait this
/// long before trying again rather than spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Why a port could not be opened.
#[derive(Debug)]
pub enum BindError {
    /// The host name did not resolve to an address.
    Resolve {
        /// The configured host.
        host: String,
        /// The resolver's answer (absent when it resolved to nothing).
        source: Option<io::Error>,
    },
    /// The address could not be bound or listened on.
    Bind {
        /// Which port (`rpc`, `sensor`, `pubsub`).
        port_name: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Resolve {
                host,
                source: Some(source),
            } => {
                write!(f, "cannot resolve host {host:?}: {source}")
            }
            BindError::Resolve { host, source: None } => {
                write!(f, "host {host:?} resolves to no address")
            }
            BindError::Bind {
                port_name,
                addr,
                source,
            } => write!(
                f,
                "cannot listen on {addr} for the {port_name} port: {source}"
            ),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BindError::Resolve { source, .. } => source
                .as_ref()
                .map(|err| err as &(dyn std::error::Error + 'static)),
            BindError::Bind { source, .. } => Some(source),
        }
    }
}

/// Opens a listening socket with `SO_REUSEADDR` (so a restarted server can bind at once) and
/// the configured backlog.
pub fn bind(
    port_name: &'static str,
    host: &str,
    port: u16,
    backlog: u32,
) -> Result<TcpListener, BindError> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|source| BindError::Resolve {
            host: host.to_owned(),
            source: Some(source),
        })?
        .next()
        .ok_or_else(|| BindError::Resolve {
            host: host.to_owned(),
            source: None,
        })?;
    let bind_error = |source| BindError::Bind {
        port_name,
        addr,
        source,
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(bind_error)?;
    socket.set_reuse_address(true).map_err(bind_error)?;
    socket.bind(&addr.into()).map_err(bind_error)?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(bind_error)?;
    Ok(socket.into())
}

/// Accepts connections until `shutdown` is raised (and the loop is woken by a connection, see
/// [`wake`]), passing each to `handle`, which must not block.
pub fn spawn_accept_loop(
    port_name: &'static str,
    listener: TcpListener,
    shutdown: ShutdownHandle,
    mut handle: impl FnMut(TcpStream, SocketAddr) + Send + 'static,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("{port_name}-accept"))
        .spawn(move || {
            loop {
                let accepted = listener.accept();
                if shutdown.is_triggered() {
                    break;
                }
                match accepted {
                    Ok((stream, peer)) => handle(stream, peer),
                    Err(err) if is_per_connection(&err) => {
                        log::debug!("{port_name}: accept: {err}");
                    }
                    Err(err) => {
                        peer_warn!("{port_name}: accept failed: {err}; retrying");
                        thread::sleep(ACCEPT_ERROR_BACKOFF);
                    }
                }
            }
            log::debug!("{port_name}: stopped accepting");
        })
}

fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Wakes an accept loop blocked on `addr` by connecting to it; the loop then sees the shutdown
/// flag. A listener bound to the unspecified address is reached over loopback.
pub fn wake(addr: SocketAddr) {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    if let Err(err) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
        log::debug!("waking the accept loop on {addr}: {err}");
    }
}
