//! The open-files limit: how many connections the process can really hold.
//!
//! Every connection is a file descriptor, so `max_connections` per port is only true if the
//! process may open that many. At start the server raises its soft `RLIMIT_NOFILE` as far as
//! it needs (never past the hard limit); if the hard limit is too low it says so at warn and
//! lowers the effective `max_connections` to what fits, as Redis does for `maxclients`.

/// Descriptors set aside for everything but connections: listeners, the pollers and their
/// wakers (two per worker and notifier), log and data files, and a margin.
pub(crate) const RESERVED_FDS: u64 = 256;

/// Descriptors needed for `ports` ports of `per_port` connections each, plus the reserve.
pub(crate) fn needed(ports: usize, per_port: usize) -> u64 {
    let connections = (ports as u64).saturating_mul(per_port as u64);
    connections.saturating_add(RESERVED_FDS)
}

/// Connections per port that a limit of `limit` descriptors leaves room for (at least 1).
pub(crate) fn connections_within(limit: u64, ports: usize) -> usize {
    let per_port = limit.saturating_sub(RESERVED_FDS) / (ports.max(1) as u64);
    usize::try_from(per_port).unwrap_or(usize::MAX).max(1)
}

/// Raises the soft open-files limit for `ports` ports of `max_connections` each and returns
/// the `max_connections` that fits, warning when it is lower than asked for.
pub(crate) fn fit_open_files(ports: usize, max_connections: usize) -> usize {
    let wanted = needed(ports, max_connections);
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit >= wanted => {
            log::debug!("open-files limit {limit} (needed {wanted})");
            max_connections
        }
        Ok(limit) => {
            let fit = connections_within(limit, ports).min(max_connections);
            log::warn!(
                "the open-files hard limit is {limit}, too low for {ports} ports of \
                 max_connections {max_connections} (needs {wanted}): max_connections is \
                 lowered to {fit}; raise the hard limit (ulimit -Hn, or LimitNOFILE= in a \
                 systemd unit) to allow more"
            );
            fit
        }
        Err(err) => {
            log::warn!(
                "cannot read or raise the open-files limit ({err}); max_connections stays \
                 {max_connections}, and connections past the limit will fail to be accepted"
            );
            max_connections
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arithmetic_fits_connections_under_the_limit() {
        assert_eq!(needed(3, 10_000), 30_000 + RESERVED_FDS);
        assert_eq!(needed(usize::MAX, usize::MAX), u64::MAX);
        assert_eq!(connections_within(20_000, 3), (20_000 - 256) / 3);
        assert_eq!(connections_within(needed(4, 10_000), 4), 10_000);
        // A limit below the reserve still leaves one connection per port.
        assert_eq!(connections_within(100, 3), 1);
        assert_eq!(connections_within(1 << 20, 0), (1 << 20) - 256);
    }
}
