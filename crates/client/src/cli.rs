//! What the command-line tools share besides the clients: setting up the process
//! ([`init_logging`], [`stop_on_signal`]), the access flags ([`AccessArgs`]: `--token`,
//! `--tls`, `--ca`), value parsers for clap's `value_parser` (each takes the argument's text
//! and returns the value or a one-line reason; [`parse_time`] and [`format_time`] for the
//! times of bookings), and [`Failure`], the one-line error a tool reports before exiting.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use shutdown::ShutdownHandle;

use crate::access::{Access, TlsClient};

/// The environment variable the tools read a token from.
pub const TOKEN_VAR: &str = "PARKING_TOKEN";

/// The flags with which every tool reaches a server that has access control or TLS on;
/// flattened into each tool's arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AccessArgs {
    /// The key's token, to authenticate every connection with. Prefer setting PARKING_TOKEN
    /// in the environment: a command line can be read by other users of the machine (ps).
    #[arg(long, global = true, env = TOKEN_VAR, hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Connect with TLS, checking the server's certificate against --ca (or the system's
    /// roots) and the host name.
    #[arg(long, global = true)]
    pub tls: bool,
    /// PEM file of the CA, or of the server's self-signed certificate, that --tls trusts.
    #[arg(long, global = true, value_name = "FILE", requires = "tls")]
    pub ca: Option<PathBuf>,
}

impl AccessArgs {
    /// The [`Access`] these flags ask for; a CA file that cannot be used fails with `exit`.
    pub fn access(&self, exit: u8) -> Result<Access, Failure> {
        let mut access = Access::none();
        if self.tls {
            let tls = match &self.ca {
                Some(ca) => TlsClient::from_ca_file(ca),
                None => TlsClient::system_roots(),
            }
            .map_err(|err| Failure::new(exit, err.to_string()))?;
            access = access.with_tls(tls);
        }
        if let Some(token) = &self.token {
            access = access.with_token(token.clone());
        }
        Ok(access)
    }
}

/// Logs to stderr at `default_filter` (e.g. `info`), unless `RUST_LOG` says otherwise.
pub fn init_logging(default_filter: &str) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .init();
}

/// A shutdown handle that Ctrl-C and SIGTERM trigger. If the handler cannot be installed, the
/// warning says what that means for this tool (`without_it`).
pub fn stop_on_signal(without_it: &str) -> ShutdownHandle {
    let stop = ShutdownHandle::new();
    let on_signal = stop.clone();
    if let Err(err) = ctrlc::set_handler(move || {
        log::info!("stop requested (Ctrl-C or SIGTERM)");
        on_signal.trigger();
    }) {
        log::warn!("cannot install the Ctrl-C/SIGTERM handler ({err}): {without_it}");
    }
    stop
}

/// Why a tool stops early: one line for stderr and the process exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The line to print (without the tool's name).
    pub message: String,
    /// The process exit code.
    pub exit: u8,
}

impl Failure {
    /// A failure that exits with `exit`.
    pub fn new(exit: impl Into<u8>, message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            exit: exit.into(),
        }
    }

    /// Prints `<tool>: <message>` on stderr and returns the exit code, for `main`.
    pub fn report(&self, tool: &str) -> ExitCode {
        eprintln!("{tool}: {}", self.message);
        ExitCode::from(self.exit)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Longest number of seconds accepted (about 31 years), so that deadlines computed from a
/// duration or timeout always fit in an `Instant`.
pub const MAX_SECONDS: f64 = 1e9;

/// Parses a positive, finite number.
pub fn parse_positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("{text:?} must be a positive number")),
    }
}

/// Parses a positive number of seconds up to [`MAX_SECONDS`] (fractions allowed).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs = parse_positive(text)?;
    if secs > MAX_SECONDS {
        return Err(format!("{text:?} is more than {MAX_SECONDS} seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Accepts a lot id that fits in one field of a sensor or pub/sub line: non-empty, no
/// whitespace. Whether the server knows the lot is the server's answer to give.
pub fn parse_lot(text: &str) -> Result<String, String> {
    if text.is_empty() || text.bytes().any(|b| b.is_ascii_whitespace()) {
        Err(format!(
            "{text:?} is not a lot id (it must be non-empty, without spaces)"
        ))
    } else {
        Ok(text.to_owned())
    }
}

/// The forms [`parse_time`] takes, for help texts and error messages.
pub const TIME_FORMS: &str = "Unix seconds (1796140800), `now`, a duration from now (+90m, \
+2h30m, +1d) or an RFC 3339 time with its offset (2026-12-01T18:00:00Z)";

/// Parses a moment given on a command line (see [`TIME_FORMS`]) as whole Unix seconds, the
/// unit of the RPC port's times. A relative time counts from the moment it is parsed.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    parse_time_at(text, now)
}

/// [`parse_time`] with `now` (Unix seconds) given, so that relative times are testable.
pub fn parse_time_at(text: &str, now: u64) -> Result<u64, String> {
    let bad = |why: &str| {
        format!(
            "{:?} is not a time ({why}); give {TIME_FORMS}",
            prefix(text)
        )
    };
    if text == "now" {
        return Ok(now);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad("too many seconds"));
    }
    if let Some(after) = text.strip_prefix('+') {
        let span: jiff::Span = after
            .parse()
            .map_err(|_| bad("not a duration such as 90m, 2h30m or 1d"))?;
        // A day on a booking's clock is 24 hours: times here are UTC instants, with no
        // calendar in which a day could be 23 or 25.
        let secs = span
            .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
            .ok()
            .and_then(|duration| u64::try_from(duration.as_secs()).ok())
            .ok_or_else(|| {
                bad("a duration from now must be positive, in weeks or smaller units")
            })?;
        return now
            .checked_add(secs)
            .ok_or_else(|| bad("too far in the future"));
    }
    // jiff's own reason ("failed to parse four digit integer as year") would puzzle more
    // than it helps: the forms taken are what the user needs.
    let at: jiff::Timestamp = text
        .parse()
        .map_err(|_| bad("not Unix seconds, now, +DURATION or RFC 3339 with an offset"))?;
    u64::try_from(at.as_second()).map_err(|_| bad("before 1970"))
}

/// Unix seconds as an RFC 3339 UTC time (`2026-12-01T18:00:00Z`), as the tools print
/// times; a number beyond the calendar's range is printed as it is.
pub fn format_time(unix_seconds: u64) -> String {
    i64::try_from(unix_seconds)
        .ok()
        .and_then(|secs| jiff::Timestamp::from_second(secs).ok())
        .map_or_else(|| unix_seconds.to_string(), |at| at.to_string())
}

/// Event time (Unix seconds with a fraction, as events carry it) as RFC 3339 UTC rounded to
/// the millisecond (`2026-11-23T10:00:00.123Z`); a value that is not finite or is beyond the
/// calendar's range is printed as the plain number.
pub fn format_event_time(unix_seconds: f64) -> String {
    let millis = (unix_seconds * 1000.0).round();
    // The range check comes first: `as` saturates, and a saturated count is not the time.
    if !millis.is_finite() || millis.abs() > 1e15 {
        return format!("{unix_seconds}");
    }
    jiff::Timestamp::from_millisecond(millis as i64)
        .map_or_else(|_| format!("{unix_seconds}"), |at| format!("{at:.3}"))
}

/// A command-line argument as an error message shows it: at most 64 characters.
fn prefix(text: &str) -> &str {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_must_be_positive_numbers_within_the_bound() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("1e9"), Ok(Duration::from_secs(1_000_000_000)));
        for bad in ["0", "-1", "x", "", "NaN", "inf", "1.1e9", "1e18"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn positive_numbers() {
        assert_eq!(parse_positive("2.5"), Ok(2.5));
        for bad in ["0", "-0.1", "x", "NaN", "inf"] {
            assert!(parse_positive(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lot_ids_are_one_field() {
        assert_eq!(parse_lot("A-1"), Ok("A-1".to_owned()));
        for bad in ["", "A B", "A\t", "\n"] {
            assert!(parse_lot(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_are_unix_seconds_now_from_now_or_rfc_3339() {
        let now = 1_796_140_800; // 2026-12-01T16:00:00Z
        assert_eq!(parse_time_at("1796140800", now), Ok(now));
        assert_eq!(parse_time_at("now", now), Ok(now));
        assert_eq!(parse_time_at("+90m", now), Ok(now + 5400));
        assert_eq!(parse_time_at("+2h30m", now), Ok(now + 9000));
        assert_eq!(parse_time_at("+1d", now), Ok(now + 86_400));
        assert_eq!(parse_time_at("+PT15M", now), Ok(now + 900));
        assert_eq!(parse_time_at("2026-12-01T18:00:00Z", now), Ok(now + 7200));
        assert_eq!(
            parse_time_at("2026-12-01T19:00:00+01:00", now),
            Ok(now + 7200)
        );
        for bad in [
            "",
            "soon",
            "+",
            "+-1h",
            "-5",
            "12:00",
            "2026-12-01T18:00:00",
            "1969-12-31T00:00:00Z",
            "1.5",
        ] {
            let err = parse_time_at(bad, now).unwrap_err();
            assert!(
                err.contains("is not a time") && err.contains("RFC 3339"),
                "{bad}: {err}"
            );
        }
        let long = "x".repeat(200);
        assert!(parse_time_at(&long, now).unwrap_err().len() < 400);
    }

    #[test]
    fn times_print_as_rfc_3339_utc() {
        assert_eq!(format_time(1_796_140_800), "2026-12-01T16:00:00Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(u64::MAX), u64::MAX.to_string());
        let now = 1_796_140_800;
        assert_eq!(parse_time_at(&format_time(now + 61), now), Ok(now + 61));
    }

    #[test]
    fn event_times_print_to_the_millisecond() {
        assert_eq!(format_event_time(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_event_time(1712345678.5), "2024-04-05T19:34:38.500Z");
        assert_eq!(format_event_time(951_782_400.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            format_event_time(1_795_428_000.123),
            "2026-11-23T10:00:00.123Z"
        );
        assert_eq!(
            format_event_time(4_107_542_399.999_4),
            "2100-02-28T23:59:59.999Z"
        );
        assert_eq!(format_event_time(-1.5), "1969-12-31T23:59:58.500Z");
        assert_eq!(format_event_time(0.0006), "1970-01-01T00:00:00.001Z");
        assert_eq!(format_event_time(f64::NAN), "NaN");
        assert_eq!(format_event_time(f64::INFINITY), "inf");
        assert_eq!(format_event_time(1e300), 1e300_f64.to_string());
        // Past year 9999, jiff's range.
        assert_eq!(format_event_time(3e11), 3e11_f64.to_string());
    }
}
