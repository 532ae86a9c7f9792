//! [`Endpoints`]: the servers a tool may talk to, as `--host a:9000,b:9000` names them.
//! Several nodes over one PostgreSQL serve the same lots, so a tool that loses one goes on
//! with the next.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// The value of a tool's `--host`: one or more hosts, comma-separated, each with or
/// without its own port (`a:9000,b:9000`, `a,b`). Hosts may be names, IPv4 or IPv6 addresses
/// (`[::1]:9000`, or `::1` alone). Validated when parsed, so that a typo is a usage error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    /// Each host (IPv6 in brackets) and the port it was given with; never empty.
    hosts: Vec<(String, Option<u16>)>,
}

impl Hosts {
    /// Parses a comma-separated list (a clap `value_parser`); errors are one line.
    pub fn parse(list: &str) -> Result<Hosts, String> {
        let hosts = list
            .split(',')
            .map(|item| host(item.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Hosts { hosts })
    }

    /// The addresses: each host on its own port, or on `default_port` (the tool's
    /// `--port`) when it was given without one.
    pub fn on(&self, default_port: u16) -> Endpoints {
        let addrs = self
            .hosts
            .iter()
            .map(|(host, port)| format!("{host}:{}", port.unwrap_or(default_port)))
            .collect();
        Endpoints { addrs }
    }

    /// Every host on `port`, whatever port it was given with: a tool that also needs
    /// another of the servers' ports (sensor-sim asks the RPC port for the lots).
    pub fn all_on(&self, port: u16) -> Endpoints {
        let addrs = self
            .hosts
            .iter()
            .map(|(host, _)| format!("{host}:{port}"))
            .collect();
        Endpoints { addrs }
    }
}

/// One or more `host:port` addresses, in order ([`Hosts::on`] makes them). Every client's
/// `connect` takes `&Endpoints` and tries each address in turn, which is how the tools fail
/// over from a node that is down to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Each as `host:port`, IPv6 hosts in brackets; never empty.
    addrs: Vec<String>,
}

impl Endpoints {
    /// Parses a `--host` list, giving `default_port` to the hosts without one.
    pub fn parse(list: &str, default_port: u16) -> Result<Endpoints, String> {
        Ok(Hosts::parse(list)?.on(default_port))
    }

    /// The `n`th address, counting round (so a tool may just count its attempts).
    pub fn get(&self, n: usize) -> &str {
        // Never empty, by construction.
        &self.addrs[n % self.addrs.len()]
    }

    /// The host of the `n`th address (counting round), without its port or an IPv6
    /// address's brackets: the name a TLS certificate is checked against.
    pub fn host(&self, n: usize) -> &str {
        let addr = self.get(n);
        // Every address was formatted as `host:port`.
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// How many addresses there are.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Always false: there is at least one address.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The same addresses, starting from the `n`th (counting round): a tool that lost its
    /// connection tries the next node first.
    pub fn rotated(&self, n: usize) -> Endpoints {
        let mut addrs = self.addrs.clone();
        addrs.rotate_left(n % self.addrs.len());
        Endpoints { addrs }
    }
}

/// Every address each endpoint resolves to, in order: the clients' `connect` tries them in
/// turn, so passing `&Endpoints` is what fails over. Endpoints that do not resolve are
/// skipped while another does.
impl ToSocketAddrs for Endpoints {
    type Iter = std::vec::IntoIter<SocketAddr>;

    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        let mut resolved = Vec::new();
        let mut last_error = None;
        for addr in &self.addrs {
            match addr.to_socket_addrs() {
                Ok(found) => resolved.extend(found),
                Err(err) => last_error = Some(err),
            }
        }
        match last_error {
            Some(err) if resolved.is_empty() => Err(err),
            _ => Ok(resolved.into_iter()),
        }
    }
}

impl fmt::Display for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addrs.join(","))
    }
}

/// One item as its host (IPv6 in brackets) and its port if it has one.
fn host(item: &str) -> Result<(String, Option<u16>), String> {
    let port = |text: &str| {
        text.parse::<u16>()
            .map_err(|_| format!("{item:?}: {text:?} is not a port (0-65535)"))
    };
    if item.is_empty() {
        return Err("an empty address in the host list".to_owned());
    }
    if let Some(rest) = item.strip_prefix('[') {
        // [v6] or [v6]:port
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{item:?}: an IPv6 address needs its closing ]"))?;
        let port = match after {
            "" => None,
            _ => Some(port(after.strip_prefix(':').ok_or_else(|| {
                format!("{item:?}: expected :port after the IPv6 address")
            })?)?),
        };
        return Ok((format!("[{host}]"), port));
    }
    match item.split_once(':') {
        None => Ok((item.to_owned(), None)),
        Some((host, text)) if !text.contains(':') => {
            if host.is_empty() {
                return Err(format!("{item:?}: no host before the port"));
            }
            Ok((host.to_owned(), Some(port(text)?)))
        }
        // A bare IPv6 address: no port can follow it without brackets.
        Some(_) => Ok((format!("[{item}]"), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_take_ports_where_given_and_the_default_elsewhere() {
        let endpoints = Endpoints::parse("a:9100, b,[::1]:7,::1,10.0.0.1", 9000).unwrap();
        assert_eq!(
            endpoints.to_string(),
            "a:9100,b:9000,[::1]:7,[::1]:9000,10.0.0.1:9000"
        );
        assert_eq!(endpoints.len(), 5);
        assert_eq!(endpoints.get(6), "b:9000");
        let hosts = Hosts::parse("a:9100,[::1]").unwrap();
        assert_eq!(hosts.all_on(1).to_string(), "a:1,[::1]:1");
        assert_eq!(hosts.on(2).to_string(), "a:9100,[::1]:2");
        for bad in ["", "a,", "a:x", "a:70000", ":9000", "[::1", "[::1]9000"] {
            assert!(Endpoints::parse(bad, 9000).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn connecting_fails_over_to_the_next_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live = listener.local_addr().unwrap();
        // A port that was free a moment ago: nothing listens there.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let endpoints = Endpoints::parse(&format!("{dead},{live}"), 1).unwrap();
        let client = crate::ParkingClient::connect_with_timeout(
            &endpoints,
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(client.peer_addr(), live);
        assert_eq!(endpoints.rotated(1).get(0), live.to_string());
        let only_dead = Endpoints::parse(&dead.to_string(), 1).unwrap();
        assert!(crate::ParkingClient::connect(&only_dead).is_err());
    }
}
