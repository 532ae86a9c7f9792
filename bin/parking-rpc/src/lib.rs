//! `parking-rpc`: the command-line client for the parking server's RPC port.
//!
//! `main.rs` only parses the command line and maps the outcome to an exit code; everything the
//! tool does is here, on top of [`client::ParkingClient`], so it can be tested without a
//! process.
//!
//! # Layout
//! - this file: the command line ([`Cli`], [`Command`]), [`run`] and the error-to-exit-code
//!   mapping ([`Exit`], and `client::Failure` for the errors).
//! - [`output`]: how results are printed, as text or JSON.
//! - [`smoke`]: the end-to-end check behind `parking-rpc smoke`.

#![forbid(unsafe_code)]

pub mod output;
pub mod smoke;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use client::cli::{AccessArgs, parse_seconds, parse_time};
use client::{
    Booking, ClientError, ErrorCode, Failure, Hosts, LotFilter, ParkingClient, Reservation,
};

const LONG_ABOUT: &str = "\
Query and book the parking server over its RPC port (length-prefixed JSON requests).

Each invocation opens one connection, runs one command and prints the result as text, or as \
JSON with --json.

Times (bookings, waitlists, find-lots) are Unix seconds, `now`, a duration from now (+90m, \
+2h30m, +1d) or RFC 3339 with an offset (2026-12-01T18:00:00Z); they print as RFC 3339 UTC \
(JSON output keeps the RPC port's Unix seconds).

Examples:
  parking-rpc lots
  parking-rpc --host parking.example --port 9000 avail A
  parking-rpc reserve A 7ABC123 && echo reserved
  parking-rpc find-lots +1h +3h --feature ev
  parking-rpc book A 7ABC123 +1h +3h --spot A-EV1
  parking-rpc book A 7ABC123 2026-12-01T18:00:00Z 2026-12-01T20:00:00Z
  parking-rpc book A 7ABC123 +1h +3h || parking-rpc join-waitlist A 7ABC123 +1h +3h
  parking-rpc my-bookings 7ABC123
  parking-rpc --json smoke
  PARKING_TOKEN=... parking-rpc --tls --ca ca.pem --host parking.example lots";

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  a negative answer: reservation or booking refused (FULL, SPOT_TAKEN), nothing to cancel \
or leave, no offer to accept (NO_OFFER), a lot with room refusing a waitlist (NOT_FULL) or \
the plate already waiting (ALREADY_WAITING), a check-in not due yet (NOT_DUE), or a failed \
smoke check
  2  usage error, or the server could not be reached or did not answer in time
  3  the server answered with an error (unknown lot, bad plate, bad window, ...) or an \
unreadable reply";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "parking-rpc",
    version,
    about = "Query and book the parking server over its RPC port",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Server host name or IP address; several nodes comma-separated (`a:9000,b:9000`, a
    /// host without a port takes --port) are tried in turn.
    #[arg(long, global = true, default_value = "127.0.0.1", value_parser = Hosts::parse)]
    pub host: Hosts,
    /// The server's RPC port.
    #[arg(long, global = true, default_value_t = 9000)]
    pub port: u16,
    /// Seconds to wait for the connection and for each reply.
    #[arg(long, global = true, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// TLS and the key's token.
    #[command(flatten)]
    pub access: AccessArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// One RPC operation.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every lot with capacity, occupied, reserved and free spaces.
    Lots,
    /// Show a lot's free spaces.
    Avail {
        /// The lot's id.
        lot: String,
    },
    /// Reserve a space in a lot for a plate (exit 1 if refused).
    Reserve {
        /// The lot's id.
        lot: String,
        /// The vehicle's plate.
        plate: String,
    },
    /// Cancel a plate's reservation in a lot (exit 1 if there was none).
    Cancel {
        /// The lot's id.
        lot: String,
        /// The vehicle's plate.
        plate: String,
    },
    /// Check that the server answers, and how fast.
    Ping,
    /// Send a text alias (PING, LOTS, AVAIL A, RESERVE A P, CANCEL A P) and print the reply.
    Raw {
        /// The command and its arguments, e.g. `AVAIL A`.
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
    },
    /// End-to-end check: ping, list lots, reserve, check availability, cancel (exit 1 on any
    /// mismatch).
    Smoke,
    /// Find the lots (and their named spots) that can take a booking over a window, with how
    /// many bookable spaces remain.
    FindLots {
        /// The window.
        #[command(flatten)]
        window: WindowArgs,
        /// Only lots in this zone.
        #[arg(long)]
        zone: Option<String>,
        /// Only spaces with this feature (`ev`, `covered`, ...).
        #[arg(long)]
        feature: Option<String>,
    },
    /// Book a space (or a named spot) for a plate over a window (exit 1 if it is taken: the
    /// lot full, or the spot booked; join-waitlist then waits for it).
    Book(SlotArgs),
    /// Show a booking (`<lot>.<n>`).
    GetBooking {
        /// The booking's id, as `book` printed it.
        id: String,
    },
    /// Cancel a confirmed booking (exit 1 if there was none to cancel).
    CancelBooking {
        /// The booking's id.
        id: String,
    },
    /// Check a booking in, as the gate does when the car arrives (exit 1 if check-in has not
    /// opened yet: it opens early_checkin_minutes before the window).
    CheckIn {
        /// The booking's id.
        id: String,
    },
    /// List a lot's bookings overlapping a window, by id, one page (operators).
    ListBookings {
        /// The lot's id.
        lot: String,
        /// The window.
        #[command(flatten)]
        window: WindowArgs,
        /// Most bookings in the page (1 to 1000; the server's default is 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// Start after this booking id (the last one of the previous page).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
    },
    /// Wait in line for a window the lot cannot book now; when a space frees, the oldest
    /// entry gets an offer, held for offer_minutes (exit 1 if the lot is not full: book it).
    JoinWaitlist(SlotArgs),
    /// Accept the offer made to a waitlist entry: it becomes a confirmed booking (exit 1 if
    /// no offer has been made yet).
    AcceptOffer {
        /// The entry's id (`<lot>.w<n>`), as join-waitlist printed it.
        entry: String,
    },
    /// Leave a waitlist, letting any offer go (exit 1 if the entry was not there).
    LeaveWaitlist {
        /// The entry's id.
        entry: String,
    },
    /// A plate's bookings (the caller's own), newest first; offers show as OFFERED.
    MyBookings {
        /// The vehicle's plate.
        plate: String,
    },
    /// A plate's waitlist entries (the caller's own), oldest first.
    MyWaitlist {
        /// The vehicle's plate.
        plate: String,
    },
}

/// A time window `[start, end)`, as `book`, `join-waitlist`, `find-lots` and `list-bookings`
/// take it.
#[derive(Debug, Clone, Copy, Args)]
pub struct WindowArgs {
    /// When the window starts: Unix seconds, `now`, +DURATION from now (+90m, +2h30m, +1d)
    /// or RFC 3339 (2026-12-01T18:00:00Z).
    #[arg(value_parser = parse_time)]
    pub start: u64,
    /// When it ends (the first second after it), in the same forms; +DURATION also counts
    /// from now.
    #[arg(value_parser = parse_time)]
    pub end: u64,
}

/// What `book` and `join-waitlist` ask for: a space of a lot (or one named spot) for a plate
/// over a window.
#[derive(Debug, Clone, Args)]
pub struct SlotArgs {
    /// The lot's id.
    pub lot: String,
    /// The vehicle's plate.
    pub plate: String,
    /// The window.
    #[command(flatten)]
    pub window: WindowArgs,
    /// A named spot of the lot (`A-EV1`), instead of any space.
    #[arg(long)]
    pub spot: Option<String>,
}

impl Command {
    /// The server's error codes that are a negative answer to this command (exit 1) rather
    /// than a failure (exit 3): the request was fine, the state said no.
    fn negative_codes(&self) -> &'static [ErrorCode] {
        match self {
            Command::Book(_) => &[ErrorCode::Full, ErrorCode::SpotTaken],
            Command::JoinWaitlist(_) => &[ErrorCode::NotFull, ErrorCode::AlreadyWaiting],
            Command::AcceptOffer { .. } => &[ErrorCode::NoOffer],
            Command::CheckIn { .. } => &[ErrorCode::NotDue],
            _ => &[],
        }
    }
}

/// The page size `list-bookings --after` asks for without `--limit`: the server's default.
const LIST_DEFAULT: u32 = 100;

/// How a run ended; the discriminant is the process exit code (see `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// A negative answer: refused, not found, or a failed smoke check.
    Negative = 1,
    /// The server was unreachable, too slow, or went away (and clap's usage errors).
    Unreachable = 2,
    /// The server answered with an error or something unreadable.
    ServerError = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

impl From<Exit> for u8 {
    fn from(exit: Exit) -> Self {
        exit as u8
    }
}

/// A failed run: what to print and exit with, and a short code for `--json` output.
struct Failed {
    /// The server's error code (`UNKNOWN_LOT`), or what went wrong on our side
    /// (`UNREACHABLE`, `TIMEOUT`, `CLOSED`, `IO`, `BAD_REPLY`, `OUTPUT`).
    code: String,
    failure: Failure,
}

/// Describes a client error as the tool's failure, naming the server as `target`.
fn client_failure(
    err: ClientError,
    target: &str,
    timeout: Duration,
    negative: &[ErrorCode],
) -> Failed {
    let (code, exit, message) = match err {
        ClientError::Connect { source, .. } => (
            "UNREACHABLE".to_owned(),
            Exit::Unreachable,
            format!("cannot connect to the RPC port at {target}: {source}"),
        ),
        ClientError::Timeout => (
            "TIMEOUT".to_owned(),
            Exit::Unreachable,
            format!("no answer from {target} within {} s", timeout.as_secs_f64()),
        ),
        ClientError::Closed => (
            "CLOSED".to_owned(),
            Exit::Unreachable,
            format!("{target} closed the connection"),
        ),
        ClientError::Io(err) => (
            "IO".to_owned(),
            Exit::Unreachable,
            format!("i/o error talking to {target}: {err}"),
        ),
        ClientError::Server(err) if negative.contains(&err.code) => (
            err.code.to_string(),
            Exit::Negative,
            format!("refused: {err}"),
        ),
        ClientError::Server(err) => (
            err.code.to_string(),
            Exit::ServerError,
            format!("server error {err}"),
        ),
        ClientError::Protocol(detail) => (
            "BAD_REPLY".to_owned(),
            Exit::ServerError,
            format!("unexpected reply from {target}: {detail}"),
        ),
    };
    Failed {
        code,
        failure: Failure::new(exit, message),
    }
}

fn output_failure(err: io::Error) -> Failed {
    Failed {
        code: "OUTPUT".to_owned(),
        failure: Failure::new(Exit::Unreachable, format!("cannot write the output: {err}")),
    }
}

/// Writes `bookings` (a command's answer); a command that got them succeeded.
fn shown(
    printer: &output::Printer,
    out: &mut dyn Write,
    bookings: &[Booking],
) -> Result<Exit, Failed> {
    printer.bookings(out, bookings).map_err(output_failure)?;
    Ok(Exit::Ok)
}

/// Connects to the server named by `cli`, runs its command and writes the result to `out`.
/// With `--json`, a failure is also written to `out` as `{"error", "detail"}`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<Exit, Failure> {
    execute(cli, out).map_err(|failed| {
        // Best effort: stdout may be what failed.
        let _ = output::Printer::new(cli.json)
            .failure(out, &failed.code, &failed.failure.message)
            .and_then(|()| out.flush());
        failed.failure
    })
}

fn execute(cli: &Cli, out: &mut dyn Write) -> Result<Exit, Failed> {
    let endpoints = cli.host.on(cli.port);
    let target = endpoints.to_string();
    let fail = |err| client_failure(err, &target, cli.timeout, cli.command.negative_codes());
    log::debug!("connecting to {target}");
    let access = cli
        .access
        .access(Exit::Unreachable.into())
        .map_err(|failure| Failed {
            code: "TLS".to_owned(),
            failure,
        })?;
    let mut client = ParkingClient::connect_with(&endpoints, cli.timeout, &access).map_err(fail)?;
    let printer = output::Printer::new(cli.json);
    let exit = match &cli.command {
        Command::Lots => {
            let lots = client.get_lots().map_err(fail)?;
            printer.lots(out, &lots).map_err(output_failure)?;
            Exit::Ok
        }
        Command::Avail { lot } => {
            let free = client.get_availability(lot).map_err(fail)?;
            printer
                .availability(out, lot, free)
                .map_err(output_failure)?;
            Exit::Ok
        }
        Command::Reserve { lot, plate } => {
            let reservation = client.reserve_with_reason(lot, plate).map_err(fail)?;
            printer
                .reserved(out, lot, plate, reservation)
                .map_err(output_failure)?;
            if reservation == Reservation::Reserved {
                Exit::Ok
            } else {
                Exit::Negative
            }
        }
        Command::Cancel { lot, plate } => {
            let cancelled = client.cancel(lot, plate).map_err(fail)?;
            printer
                .cancelled(out, lot, plate, cancelled)
                .map_err(output_failure)?;
            if cancelled { Exit::Ok } else { Exit::Negative }
        }
        Command::Ping => {
            let start = Instant::now();
            client.ping().map_err(fail)?;
            printer
                .pong(out, &target, start.elapsed())
                .map_err(output_failure)?;
            Exit::Ok
        }
        Command::Raw { words } => {
            let reply = client.call_text(&words.join(" ")).map_err(fail)?;
            printer.raw(out, &reply).map_err(output_failure)?;
            if reply.starts_with("ERR ") {
                Exit::ServerError
            } else {
                Exit::Ok
            }
        }
        Command::Smoke => {
            let plate = smoke::unique_plate();
            let passed = smoke::run(&mut client, &plate, out, cli.json).map_err(output_failure)?;
            if passed { Exit::Ok } else { Exit::Negative }
        }
        Command::FindLots {
            window,
            zone,
            feature,
        } => {
            let query = LotFilter {
                zone: zone.as_deref().map(Into::into),
                feature: feature.as_deref().map(Into::into),
                start: window.start,
                end: window.end,
            };
            let lots = client.find_lots(&query).map_err(fail)?;
            printer.lot_offers(out, &lots).map_err(output_failure)?;
            Exit::Ok
        }
        Command::Book(slot) => {
            let booking = client
                .book(
                    &slot.lot,
                    &slot.plate,
                    slot.window.start,
                    slot.window.end,
                    slot.spot.as_deref(),
                )
                .map_err(fail)?;
            shown(&printer, out, &[booking])?
        }
        Command::GetBooking { id } => {
            let booking = client.get_booking(id).map_err(fail)?;
            shown(&printer, out, &[booking])?
        }
        Command::CheckIn { id } => {
            let booking = client.check_in(id).map_err(fail)?;
            shown(&printer, out, &[booking])?
        }
        Command::CancelBooking { id } => {
            let cancelled = client.cancel_booking(id).map_err(fail)?;
            printer
                .done(
                    out,
                    "booking",
                    id,
                    cancelled,
                    "cancelled",
                    "no confirmed booking",
                )
                .map_err(output_failure)?;
            if cancelled { Exit::Ok } else { Exit::Negative }
        }
        Command::ListBookings {
            lot,
            window,
            limit,
            after,
        } => {
            let bookings = match limit {
                Some(limit) => client.list_bookings_page(
                    lot,
                    window.start,
                    window.end,
                    *limit,
                    after.as_deref(),
                ),
                // Without --limit, --after still pages: the server's default size.
                None if after.is_some() => client.list_bookings_page(
                    lot,
                    window.start,
                    window.end,
                    LIST_DEFAULT,
                    after.as_deref(),
                ),
                None => client.list_bookings(lot, window.start, window.end),
            }
            .map_err(fail)?;
            shown(&printer, out, &bookings)?
        }
        Command::JoinWaitlist(slot) => {
            let entry = client
                .join_waitlist(
                    &slot.lot,
                    &slot.plate,
                    slot.window.start,
                    slot.window.end,
                    slot.spot.as_deref(),
                )
                .map_err(fail)?;
            printer.entries(out, &[entry]).map_err(output_failure)?;
            Exit::Ok
        }
        Command::AcceptOffer { entry } => {
            let booking = client.accept_offer(entry).map_err(fail)?;
            shown(&printer, out, &[booking])?
        }
        Command::LeaveWaitlist { entry } => {
            let left = client.leave_waitlist(entry).map_err(fail)?;
            printer
                .done(
                    out,
                    "waitlist entry",
                    entry,
                    left,
                    "left",
                    "no waitlist entry",
                )
                .map_err(output_failure)?;
            if left { Exit::Ok } else { Exit::Negative }
        }
        Command::MyBookings { plate } => {
            let bookings = client.my_bookings(plate).map_err(fail)?;
            shown(&printer, out, &bookings)?
        }
        Command::MyWaitlist { plate } => {
            let entries = client.my_waitlist(plate).map_err(fail)?;
            printer.entries(out, &entries).map_err(output_failure)?;
            Exit::Ok
        }
    };
    out.flush().map_err(output_failure)?;
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["parking-rpc", "lots", "--json", "--port", "1"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.port, 1);
        assert!(Cli::try_parse_from(["parking-rpc", "reserve", "A"]).is_err());
    }
}
