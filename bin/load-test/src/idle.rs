//! `--idle N`: connections held open and silent for the whole run, to measure what idle
//! connections cost the server (kiosks, gates and sensors that stay connected).
//!
//! They are plain sockets: no thread each, nothing sent. The generator raises its own
//! open-files limit to hold them. After each row the ones the server has closed (its
//! `idle_timeout`, a limit) are counted, so a row never silently ran with fewer.

use std::fmt;
use std::io::{self, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Descriptors the generator keeps for itself beyond the idle and busy connections: output
/// files, the standard streams and a margin.
const SPARE_FDS: u64 = 64;

/// The idle connections of a run.
#[derive(Debug, Default)]
pub struct IdleConnections {
    streams: Vec<TcpStream>,
}

/// Why the idle connections could not all be opened.
#[derive(Debug)]
pub struct IdleError {
    /// How many were asked for.
    pub wanted: usize,
    /// How many were open when it failed.
    pub opened: usize,
    /// What failed.
    pub source: io::Error,
}

impl fmt::Display for IdleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--idle {}: opened {} connections, then: {}",
            self.wanted, self.opened, self.source
        )
    }
}

impl std::error::Error for IdleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl IdleConnections {
    /// Opens `count` connections to `target`, each within `timeout`, raising the process's
    /// open-files limit first if it needs to be (for them and `busy` other connections).
    pub fn open(
        target: &str,
        count: usize,
        busy: usize,
        timeout: Duration,
    ) -> Result<Self, IdleError> {
        let fail = |opened, source| IdleError {
            wanted: count,
            opened,
            source,
        };
        if count == 0 {
            return Ok(IdleConnections::default());
        }
        let needed = (count + busy) as u64 + SPARE_FDS;
        let limit = rlimit::increase_nofile_limit(needed).map_err(|err| fail(0, err))?;
        if limit < needed {
            return Err(fail(
                0,
                io::Error::other(format!(
                    "the open-files limit is {limit}, {needed} are needed (raise it with ulimit -n)"
                )),
            ));
        }
        let addr = target
            .to_socket_addrs()
            .map_err(|err| fail(0, err))?
            .next()
            .ok_or_else(|| fail(0, io::Error::other("the address resolves to nothing")))?;
        let mut streams = Vec::with_capacity(count);
        let started = Instant::now();
        for _ in 0..count {
            let stream = TcpStream::connect_timeout(&addr, timeout)
                .and_then(|stream| stream.set_nonblocking(true).map(|()| stream))
                .map_err(|err| fail(streams.len(), err))?;
            streams.push(stream);
        }
        log::info!(
            "{count} idle connections open to {target} in {} ms",
            started.elapsed().as_millis()
        );
        Ok(IdleConnections { streams })
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// How many the server has closed (or answered: an idle connection should get nothing).
    pub fn closed_by_server(&self) -> usize {
        let mut byte = [0u8; 1];
        self.streams
            .iter()
            .filter(|stream| {
                !matches!((&**stream).read(&mut byte), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
            })
            .count()
    }
}
