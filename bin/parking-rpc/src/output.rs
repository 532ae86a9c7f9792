//! How `parking-rpc` prints results: aligned text for people, one JSON value per command for
//! scripts (`--json`).

use std::io::{self, Write};
use std::time::Duration;

use client::cli::format_time;
use client::{Booking, BookingStatus, LotInfo, LotOffer, Reservation, WaitEntry};
use serde::Serialize;
use serde_json::json;

/// Prints each command's result in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    json: bool,
}

impl Printer {
    /// A printer for text (`json == false`) or JSON output.
    pub fn new(json: bool) -> Self {
        Printer { json }
    }

    fn json_line(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut *out, value)?;
        writeln!(out)
    }

    /// `lots`: a table, or the array of lots.
    pub fn lots(&self, out: &mut dyn Write, lots: &[LotInfo]) -> io::Result<()> {
        if self.json {
            return Self::json_line(out, &lots);
        }
        out.write_all(lots_table(lots).as_bytes())
    }

    /// `avail`: the lot's free spaces.
    pub fn availability(&self, out: &mut dyn Write, lot: &str, free: u32) -> io::Result<()> {
        if self.json {
            return Self::json_line(out, &json!({ "lot": lot, "free": free }));
        }
        writeln!(out, "lot {lot}: {free} free")
    }

    /// `reserve`: whether the space is held, and if not, why.
    pub fn reserved(
        &self,
        out: &mut dyn Write,
        lot: &str,
        plate: &str,
        reservation: Reservation,
    ) -> io::Result<()> {
        let reason = match reservation {
            Reservation::Refused => Some("UNKNOWN"),
            known => known.reason(),
        };
        if self.json {
            return Self::json_line(
                out,
                &json!({
                    "lot": lot,
                    "plate": plate,
                    "reserved": reservation == Reservation::Reserved,
                    "reason": reason,
                }),
            );
        }
        match reservation {
            Reservation::Reserved => writeln!(out, "reserved: {plate} in lot {lot}"),
            Reservation::Full => writeln!(out, "refused: lot {lot} is full"),
            Reservation::AlreadyReserved => writeln!(
                out,
                "refused: {plate} already holds a reservation in lot {lot}"
            ),
            Reservation::Refused => writeln!(
                out,
                "refused: lot {lot} is full or {plate} already holds a reservation there \
                 (the server does not say which)"
            ),
        }
    }

    /// `cancel`: whether a reservation was removed.
    pub fn cancelled(
        &self,
        out: &mut dyn Write,
        lot: &str,
        plate: &str,
        cancelled: bool,
    ) -> io::Result<()> {
        if self.json {
            return Self::json_line(
                out,
                &json!({ "lot": lot, "plate": plate, "cancelled": cancelled }),
            );
        }
        if cancelled {
            writeln!(out, "cancelled: {plate} in lot {lot}")
        } else {
            writeln!(out, "not found: {plate} holds no reservation in lot {lot}")
        }
    }

    /// `ping`: the round-trip time.
    pub fn pong(&self, out: &mut dyn Write, target: &str, rtt: Duration) -> io::Result<()> {
        let ms = rtt.as_secs_f64() * 1000.0;
        if self.json {
            return Self::json_line(out, &json!({ "pong": true, "server": target, "ms": ms }));
        }
        writeln!(out, "PONG from {target} in {ms:.1} ms")
    }

    /// A failed command, in JSON mode only (in text mode the failure goes to stderr alone):
    /// `{"error": CODE, "detail": ...}`, so that a script reading stdout sees it.
    pub fn failure(&self, out: &mut dyn Write, code: &str, detail: &str) -> io::Result<()> {
        if self.json {
            return Self::json_line(out, &json!({ "error": code, "detail": detail }));
        }
        Ok(())
    }

    /// `book`, `get-booking`, `check-in`, `accept-offer`, `list-bookings`, `my-bookings`: a
    /// table of bookings, or the array of them with the RPC port's fields (Unix seconds).
    pub fn bookings(&self, out: &mut dyn Write, bookings: &[Booking]) -> io::Result<()> {
        if self.json {
            return Self::json_line(out, &bookings);
        }
        let rows = bookings.iter().map(|booking| {
            vec![
                booking.id.to_string(),
                booking.lot().to_string(),
                optional(booking.spot.as_ref()),
                booking.plate.to_string(),
                format_time(booking.window.start),
                format_time(booking.window.end),
                booking_status(booking),
            ]
        });
        out.write_all(
            table(
                &["BOOKING", "LOT", "SPOT", "PLATE", "START", "END", "STATUS"],
                rows,
            )
            .as_bytes(),
        )
    }

    /// `join-waitlist`, `my-waitlist`: a table of waitlist entries, or the array of them.
    pub fn entries(&self, out: &mut dyn Write, entries: &[WaitEntry]) -> io::Result<()> {
        if self.json {
            return Self::json_line(out, &entries);
        }
        let rows = entries.iter().map(|entry| {
            let status = match &entry.offer {
                Some(offer) => format!(
                    "OFFERED {} until {} (accept-offer {})",
                    offer.booking,
                    format_time(offer.expires_at),
                    entry.id
                ),
                None => "WAITING".to_owned(),
            };
            vec![
                entry.id.to_string(),
                entry.lot().to_string(),
                optional(entry.spot.as_ref()),
                entry.plate.to_string(),
                format_time(entry.window.start),
                format_time(entry.window.end),
                status,
            ]
        });
        out.write_all(
            table(
                &["ENTRY", "LOT", "SPOT", "PLATE", "START", "END", "STATUS"],
                rows,
            )
            .as_bytes(),
        )
    }

    /// `find-lots`: the lots that can take the booking, with what remains and their free
    /// named spots.
    pub fn lot_offers(&self, out: &mut dyn Write, lots: &[LotOffer]) -> io::Result<()> {
        if self.json {
            return Self::json_line(out, &lots);
        }
        let rows = lots.iter().map(|lot| {
            let spots: Vec<String> = lot.spots.iter().map(|spot| spot.id.to_string()).collect();
            vec![
                lot.id.to_string(),
                optional(lot.zone.as_ref()),
                joined(&lot.features),
                lot.remaining.to_string(),
                if spots.is_empty() {
                    "-".to_owned()
                } else {
                    spots.join(",")
                },
            ]
        });
        out.write_all(table(&["LOT", "ZONE", "FEATURES", "REMAINING", "SPOTS"], rows).as_bytes())
    }

    /// `cancel-booking`, `leave-waitlist`: whether `what` `id` was `done`; if not, that there
    /// was `none` of that id to act on.
    pub fn done(
        &self,
        out: &mut dyn Write,
        what: &str,
        id: &str,
        done: bool,
        verb: &str,
        none: &str,
    ) -> io::Result<()> {
        if self.json {
            let mut answer = serde_json::Map::new();
            answer.insert("id".to_owned(), id.into());
            answer.insert(verb.to_owned(), done.into());
            return Self::json_line(out, &answer);
        }
        if done {
            writeln!(out, "{verb}: {what} {id}")
        } else {
            writeln!(out, "not found: {none} {id} (or not yours)")
        }
    }

    /// `raw`: the text reply as it came.
    pub fn raw(&self, out: &mut dyn Write, reply: &str) -> io::Result<()> {
        if self.json {
            return Self::json_line(out, &json!({ "reply": reply }));
        }
        writeln!(out, "{reply}")
    }
}

/// The lots as an aligned table with a header row: the id left-aligned, counts right-aligned.
pub fn lots_table(lots: &[LotInfo]) -> String {
    let rows = lots.iter().map(|lot| {
        vec![
            lot.id.to_string(),
            lot.capacity.to_string(),
            lot.occupied.to_string(),
            lot.reserved.to_string(),
            lot.booked.to_string(),
            lot.free.to_string(),
        ]
    });
    aligned(
        &["LOT", "CAPACITY", "OCCUPIED", "RESERVED", "BOOKED", "FREE"],
        rows,
        Align::Right,
    )
}

/// A table of words: every column left-aligned (ids, times and statuses read better so).
fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    aligned(headers, rows, Align::Left)
}

/// How the columns after the first are aligned.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// An aligned table with a header row; the first column is left-aligned, the others as
/// `rest` says, and trailing spaces are trimmed.
fn aligned(headers: &[&str], rows: impl Iterator<Item = Vec<String>>, rest: Align) -> String {
    let headers: Vec<String> = headers.iter().map(|&header| header.to_owned()).collect();
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = headers.iter().map(String::len).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    for row in std::iter::once(&headers).chain(&rows) {
        let mut line = String::new();
        for (index, (cell, &width)) in row.iter().zip(&widths).enumerate() {
            match (index, rest) {
                (0, _) => line.push_str(&format!("{cell:<width$}")),
                (_, Align::Left) => line.push_str(&format!("  {cell:<width$}")),
                (_, Align::Right) => line.push_str(&format!("  {cell:>width$}")),
            }
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// An optional value as a table cell: `-` when there is none.
fn optional(value: Option<&impl std::fmt::Display>) -> String {
    value.map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// A list as one table cell, `a,b`; `-` when empty.
fn joined(values: &[impl std::fmt::Display]) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    let words: Vec<String> = values.iter().map(ToString::to_string).collect();
    words.join(",")
}

/// A booking's status with what else a reader needs: an offer's deadline, a car inside or
/// overstaying.
fn booking_status(booking: &Booking) -> String {
    let mut status = booking.status.to_string();
    if let (BookingStatus::Offered, Some(until)) = (booking.status, booking.offered_until) {
        status.push_str(&format!(" until {}", format_time(until)));
    }
    if booking.inside {
        status.push_str(" (inside)");
    }
    if booking.overstay {
        status.push_str(" (overstay)");
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lot(id: &str, capacity: u32, occupied: u32, reserved: u32, free: u32) -> LotInfo {
        LotInfo {
            id: id.to_owned().into(),
            capacity,
            occupied,
            counted: i64::from(occupied),
            reserved,
            booked: 0,
            free,
            status: None,
        }
    }

    #[test]
    fn table_is_aligned() {
        let table = lots_table(&[lot("A", 100, 3, 2, 95), lot("LONG-LOT", 12000, 0, 0, 12000)]);
        assert_eq!(
            table,
            "\
LOT       CAPACITY  OCCUPIED  RESERVED  BOOKED   FREE
A              100         3         2       0     95
LONG-LOT     12000         0         0       0  12000
"
        );
        assert_eq!(
            lots_table(&[]),
            "LOT  CAPACITY  OCCUPIED  RESERVED  BOOKED  FREE\n"
        );
    }

    #[test]
    fn json_output_is_one_value_per_line() {
        let mut out = Vec::new();
        let printer = Printer::new(true);
        printer.lots(&mut out, &[lot("A", 1, 0, 0, 1)]).unwrap();
        printer
            .reserved(&mut out, "A", "P", Reservation::Full)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines[0][0]["free"], 1);
        assert_eq!(lines[1]["reserved"], false);
        assert_eq!(lines[1]["reason"], "FULL");
    }
}
