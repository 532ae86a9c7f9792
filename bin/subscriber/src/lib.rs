//! `subscriber`: prints the parking server's pushed availability events.
//!
//! It subscribes on the pub/sub port through a [`client::Subscription`] and prints one line per
//! event, readable (`2026-11-23T10:00:00.123Z  A  free=12`) or as the raw JSON line. When the
//! connection drops it says so on stderr, reconnects with [`client::Backoff`] and subscribes
//! again; events published while it was away are not replayed (the server keeps no history).
//!
//! # Layout
//! - this file: the command line ([`Cli`]) and the subscribe-print-reconnect loop ([`run`]);
//!   event times are printed by [`client::cli::format_event_time`].

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::time::Duration;

use clap::Parser;
use client::cli::{AccessArgs, format_event_time, parse_lot, parse_seconds};
use client::{Backoff, Failure, Hosts, OwnedEvent, SubscribeError, Subscription, Update};
use framing::pubsub::{PubsubErrorCode, Topic};
use shutdown::ShutdownHandle;

/// How often a waiting subscriber looks at the stop signal (Ctrl-C): the longest it may take
/// to notice it while no events arrive.
const STOP_POLL: Duration = Duration::from_millis(200);

const LONG_ABOUT: &str = "\
Subscribes to availability events on the parking server's pub/sub port and prints one line \
per event:

  2026-11-23T10:00:00.123Z  A  free=12

or, with --json, each event's JSON line exactly as the server sent it. Right after \
subscribing the server sends each lot's current value, printed marked `(current)` (a \
SNAPSHOT line in JSON). If the connection drops, it reconnects with exponential backoff \
(100 ms doubling to 5 s) and subscribes again, saying so on stderr. Ctrl-C exits cleanly.

Examples:
  subscriber --all
  subscriber --lot A --lot B --json
  subscriber --port 9002 --count 1   # wait for the next event, print it, exit";

const AFTER_HELP: &str = "\
Exit codes:
  0  --count events printed (snapshots are not counted), interrupted with Ctrl-C, or the
     reader of the output went away (a closed pipe, as with `| head`)
  1  the output could not be written (any other write error)
  2  usage error, or the server could not be reached at start
  3  the server refused the subscription (unknown lot, busy)";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "subscriber",
    version,
    about = "Print the parking server's availability events as they happen",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Server host name or IP address; several nodes comma-separated (`a:9002,b:9002`, a
    /// host without a port takes --port): a lost connection resumes on the next one.
    #[arg(long, default_value = "127.0.0.1", value_parser = Hosts::parse)]
    pub host: Hosts,
    /// The server's pub/sub port.
    #[arg(long, default_value_t = 9002)]
    pub port: u16,
    /// Lots to follow (repeat the flag or list several) [default: every lot].
    #[arg(long = "lot", value_name = "LOT", num_args = 1.., value_parser = parse_lot)]
    pub lots: Vec<String>,
    /// Follow every lot, including lots added later (the default).
    #[arg(long, conflicts_with = "lots")]
    pub all: bool,
    /// Print each event's JSON line as received.
    #[arg(long)]
    pub json: bool,
    /// Exit after printing this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Seconds to wait for a connection and for the server to confirm the subscription.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// TLS and the key's token.
    #[command(flatten)]
    pub access: AccessArgs,
}

impl Cli {
    /// The topics to subscribe to: the given lots, or every lot.
    pub fn topics(&self) -> Vec<Topic<'_>> {
        if self.lots.is_empty() {
            vec![Topic::All]
        } else {
            self.lots.iter().map(|lot| Topic::Lot(lot)).collect()
        }
    }
}

/// What went wrong, without the address (the caller's message names it already).
fn cause(err: SubscribeError) -> String {
    match err {
        SubscribeError::Connect { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// The readable form of an event: `2026-11-23T10:00:00.123Z  A  free=12`.
pub fn format_event(event: &OwnedEvent) -> String {
    format!(
        "{}  {}  free={}",
        format_event_time(event.timestamp),
        event.lot_id,
        event.free
    )
}

/// The readable form of an update: an event as [`format_event`] writes it, a snapshot (the
/// lot's value when the subscription began) marked as such.
pub fn format_update(update: &Update) -> String {
    match update {
        Update::Event(event) => format_event(event),
        Update::Snapshot(event) => format!("{}  (current)", format_event(event)),
    }
}

/// Subscribes and prints events to `out` until `--count` events were printed or `stop` is
/// triggered, reconnecting whenever the connection drops.
///
/// Fails if the first connection cannot be made (the address is probably wrong, so retrying
/// would only hide it), if the server refuses the subscription, or if `out` fails; a reader
/// that went away (a closed pipe) counts as a clean end.
pub fn run(cli: &Cli, stop: &ShutdownHandle, out: &mut dyn Write) -> Result<(), Failure> {
    let topics = cli.topics();
    let described = if cli.lots.is_empty() {
        "every lot".to_owned()
    } else {
        format!("lot(s) {}", cli.lots.join(", "))
    };
    let endpoints = cli.host.on(cli.port);
    let target = endpoints.to_string();
    let mut backoff = Backoff::default();
    let mut printed = 0u64;
    let mut subscribed_before = false;
    let access = cli.access.access(2)?;
    // Which node to try first: after a lost connection, the next one (the lost one is
    // likely down, and its subscribers all move at once).
    let mut first = 0;
    while !stop.is_triggered() {
        let mut subscription = match Subscription::connect_with(
            &endpoints.rotated(first),
            &topics,
            cli.timeout,
            &access,
        ) {
            Ok(subscription) => subscription,
            Err(SubscribeError::Server(refusal))
                if refusal.code == PubsubErrorCode::Busy && subscribed_before =>
            {
                let delay = backoff.next_delay();
                log::warn!(
                    "{target} is busy ({}); reconnecting in {} ms",
                    refusal.detail,
                    delay.as_millis()
                );
                stop.wait_timeout(delay);
                continue;
            }
            Err(SubscribeError::Server(refusal)) => {
                return Err(Failure::new(
                    3,
                    format!("{target} refused the subscription: {refusal}"),
                ));
            }
            Err(err) if !subscribed_before => {
                return Err(Failure::new(
                    2,
                    format!(
                        "cannot subscribe on the pub/sub port at {target}: {}",
                        cause(err)
                    ),
                ));
            }
            Err(err) => {
                let delay = backoff.next_delay();
                log::warn!(
                    "{}; reconnecting to {target} in {} ms",
                    cause(err),
                    delay.as_millis()
                );
                stop.wait_timeout(delay);
                continue;
            }
        };
        backoff.reset();
        let id = subscription.id();
        let peer = subscription.peer_addr();
        if subscribed_before {
            log::warn!("reconnected: re-subscribed to {described} on {peer} (subscription {id})");
        } else {
            log::info!("subscribed to {described} on {peer} (subscription {id})");
        }
        subscribed_before = true;
        while !stop.is_triggered() {
            match subscription.next_update_timeout(STOP_POLL) {
                Ok(Some(update)) => {
                    let written = if cli.json {
                        out.write_all(subscription.raw_line())
                            .and_then(|()| out.write_all(b"\n"))
                    } else {
                        writeln!(out, "{}", format_update(&update))
                    };
                    match written.and_then(|()| out.flush()) {
                        Ok(()) => {}
                        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                        Err(err) => {
                            return Err(Failure::new(1, format!("cannot write the output: {err}")));
                        }
                    }
                    // --count counts changes; the snapshots after subscribing come on top.
                    if let Update::Snapshot(_) = update {
                        continue;
                    }
                    printed += 1;
                    if cli.count.is_some_and(|count| printed >= count) {
                        return Ok(());
                    }
                }
                Ok(None) => {}
                Err(err) => {
                    log::warn!("lost the subscription on {peer}: {err}");
                    first += 1;
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::borrow::Cow;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["subscriber", "--lot", "A", "--lot", "B", "C"]).unwrap();
        assert_eq!(
            cli.topics(),
            [Topic::Lot("A"), Topic::Lot("B"), Topic::Lot("C")]
        );
        let cli = Cli::try_parse_from(["subscriber"]).unwrap();
        assert_eq!(cli.topics(), [Topic::All]);
        assert!(Cli::try_parse_from(["subscriber", "--all", "--lot", "A"]).is_err());
        assert!(Cli::try_parse_from(["subscriber", "--count", "0"]).is_err());
    }

    #[test]
    fn readable_event_line() {
        let event = OwnedEvent {
            lot_id: Cow::Borrowed("A"),
            free: 12,
            status: None,
            timestamp: 1_795_428_000.123,
        };
        assert_eq!(format_event(&event), "2026-11-23T10:00:00.123Z  A  free=12");
    }
}
