//! How `parking-rpc` prints results: aligned text for people, one JSON value per command for
//! scripts (`--json`).

use std::io::{self, Write};
use std::time::Duration;

use client::{LotInfo, Reservation};
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
    const HEADERS: [&str; 6] = ["LOT", "CAPACITY", "OCCUPIED", "RESERVED", "BOOKED", "FREE"];
    let rows: Vec<[String; 6]> = lots
        .iter()
        .map(|lot| {
            [
                lot.id.to_string(),
                lot.capacity.to_string(),
                lot.occupied.to_string(),
                lot.reserved.to_string(),
                lot.booked.to_string(),
                lot.free.to_string(),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut table = String::new();
    let headers = HEADERS.map(str::to_owned);
    for row in std::iter::once(&headers).chain(&rows) {
        let mut line = format!("{:<w$}", row[0], w = widths[0]);
        for (cell, width) in row.iter().zip(widths).skip(1) {
            line.push_str(&format!("  {cell:>width$}"));
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
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
