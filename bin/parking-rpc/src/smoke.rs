//! `parking-rpc smoke`: an end-to-end check of a running server through its RPC port.
//!
//! The check pings, lists the lots, picks the first lot with at least two free spaces (else
//! one), reserves a plate no one else uses, checks that availability dropped by exactly one,
//! that a second reservation for the same plate is refused *as already reserved*, cancels, and
//! checks that availability is back. It cleans up its reservation even when a later step fails.
//!
//! The duplicate check needs the refusal's reason: a `false` alone could also mean the lot
//! just filled. Against a server that does not give reasons, it is proven only on a lot that
//! still had a free space after the first reservation, and otherwise reported as skipped.
//!
//! The availability checks assume nothing else changes that lot meanwhile (no sensor updates,
//! no other bookings); run it against a quiet server.

use std::io::{self, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use client::{ClientError, ParkingClient, Reservation};
use serde::Serialize;
use serde_json::json;

/// The longest plate the server accepts.
const MAX_PLATE_LEN: usize = 16;

/// One check and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed (a skipped check counts as passed).
    pub ok: bool,
    /// Whether it could not be judged on this server, and was skipped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// What was seen.
    pub detail: String,
}

/// A plate that no other run is using: `SMK` and a base-36 mix of the clock and process id,
/// within the server's plate rules (up to 16 of `A-Z 0-9 -`).
pub fn unique_plate() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    // Truncating the nanoseconds keeps their fast-moving low bits, which is what makes the
    // plate unique; the process id separates runs started in the same instant.
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    let mut plate = format!("SMK{}", base36(mixed));
    plate.truncate(MAX_PLATE_LEN);
    plate
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut digits = Vec::new();
    loop {
        digits.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().map(|&d| char::from(d)).collect()
}

/// Records steps and prints each one as it completes (text), or all at the end (JSON).
struct Report<'a> {
    out: &'a mut dyn Write,
    json: bool,
    steps: Vec<Step>,
}

impl Report<'_> {
    fn record(&mut self, name: &'static str, ok: bool, detail: String) -> io::Result<bool> {
        self.push(Step {
            name,
            ok,
            skipped: false,
            detail,
        })
    }

    fn skip(&mut self, name: &'static str, detail: String) -> io::Result<bool> {
        self.push(Step {
            name,
            ok: true,
            skipped: true,
            detail,
        })
    }

    fn push(&mut self, step: Step) -> io::Result<bool> {
        if !self.json {
            let mark = match (step.ok, step.skipped) {
                (_, true) => "skip",
                (true, false) => "ok",
                (false, false) => "FAIL",
            };
            writeln!(self.out, "{mark:<4}  {}: {}", step.name, step.detail)?;
            self.out.flush()?;
        }
        let ok = step.ok;
        self.steps.push(step);
        Ok(ok)
    }

    fn check(&mut self, name: &'static str, ok: bool, detail: String) -> io::Result<bool> {
        self.record(name, ok, detail)
    }

    fn error(&mut self, name: &'static str, err: &ClientError) -> io::Result<bool> {
        self.record(name, false, err.to_string())
    }
}

/// Runs the check with `plate`, writing the steps to `out`; returns whether every step passed.
pub fn run(
    client: &mut ParkingClient,
    plate: &str,
    out: &mut dyn Write,
    json: bool,
) -> io::Result<bool> {
    let mut report = Report {
        out,
        json,
        steps: Vec::new(),
    };
    checks(client, plate, &mut report)?;
    let failed = report.steps.iter().filter(|step| !step.ok).count();
    let passed = failed == 0;
    if json {
        serde_json::to_writer(
            &mut *report.out,
            &json!({ "ok": passed, "plate": plate, "steps": report.steps }),
        )?;
        writeln!(report.out)?;
    } else if passed {
        let skipped = report.steps.iter().filter(|step| step.skipped).count();
        let total = report.steps.len();
        if skipped == 0 {
            writeln!(report.out, "smoke: passed ({total} checks)")?;
        } else {
            writeln!(
                report.out,
                "smoke: passed ({total} checks, {skipped} skipped)"
            )?;
        }
    } else {
        writeln!(
            report.out,
            "smoke: FAILED ({failed} of {} checks)",
            report.steps.len()
        )?;
    }
    Ok(passed)
}

/// The steps up to the reservation; each one needs the previous to have worked.
fn checks(client: &mut ParkingClient, plate: &str, report: &mut Report<'_>) -> io::Result<()> {
    let start = Instant::now();
    if let Err(err) = client.ping() {
        report.error("ping", &err)?;
        return Ok(());
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    report.check("ping", true, format!("PONG in {ms:.1} ms"))?;

    let lots = match client.get_lots() {
        Ok(lots) => lots,
        Err(err) => {
            report.error("getLots", &err)?;
            return Ok(());
        }
    };
    let ids: Vec<&str> = lots.iter().map(|lot| &*lot.id).collect();
    let listed = format!("{} lot(s): {}", lots.len(), ids.join(", "));
    if !report.check("getLots", !lots.is_empty(), listed)? {
        return Ok(());
    }

    // Two free spaces let the duplicate check tell "already reserved" from "full" even on a
    // server that gives no reasons.
    let chosen = lots
        .iter()
        .find(|lot| lot.free >= 2)
        .or_else(|| lots.iter().find(|lot| lot.free > 0));
    let Some(chosen) = chosen else {
        report.check("pick lot", false, "no lot has a free space".to_owned())?;
        return Ok(());
    };
    let lot = chosen.id.to_string();
    let detail = format!("lot {lot} ({} of {} free)", chosen.free, chosen.capacity);
    report.check("pick lot", true, detail)?;

    let before = match client.get_availability(&lot) {
        Ok(free) => free,
        Err(err) => {
            report.error("getAvailability", &err)?;
            return Ok(());
        }
    };
    report.check("getAvailability", true, format!("lot {lot}: {before} free"))?;

    match client.reserve(&lot, plate) {
        Ok(true) => {
            report.check("reserve", true, format!("{plate} in lot {lot}: reserved"))?;
        }
        Ok(false) => {
            report.check("reserve", false, format!("{plate} in lot {lot}: refused"))?;
            return Ok(());
        }
        Err(err) => {
            report.error("reserve", &err)?;
            return Ok(());
        }
    }
    let cancelled = reserved_checks(client, &lot, plate, before, report)?;
    if !cancelled {
        // Best effort: leave no reservation behind. The connection may be unusable by now.
        let _ = client.cancel(&lot, plate);
    }
    Ok(())
}

/// The steps once the plate holds a reservation; returns whether it was cancelled.
fn reserved_checks(
    client: &mut ParkingClient,
    lot: &str,
    plate: &str,
    before: u32,
    report: &mut Report<'_>,
) -> io::Result<bool> {
    match client.get_availability(lot) {
        Ok(free) => {
            let expected = before.saturating_sub(1);
            let detail = format!("lot {lot}: {free} free (expected {expected})");
            report.check("availability dropped by one", free == expected, detail)?;
        }
        Err(err) => {
            report.error("availability dropped by one", &err)?;
            return Ok(false);
        }
    }
    const DUPLICATE: &str = "duplicate reserve refused";
    match client.reserve_with_reason(lot, plate) {
        Ok(Reservation::AlreadyReserved) => {
            report.check(
                DUPLICATE,
                true,
                format!("{plate} refused as already reserved"),
            )?;
        }
        Ok(Reservation::Reserved) => {
            report.check(
                DUPLICATE,
                false,
                format!("{plate} was reserved a second time"),
            )?;
        }
        Ok(Reservation::Full) => {
            let detail = format!("{plate} refused as FULL, not as already reserved");
            report.check(DUPLICATE, false, detail)?;
        }
        // No reason given: the refusal proves the duplicate rule only if the lot still had
        // room for another car.
        Ok(Reservation::Refused) if before >= 2 => {
            let detail = format!("{plate} refused with {} space(s) still free", before - 1);
            report.check(DUPLICATE, true, detail)?;
        }
        Ok(Reservation::Refused) => {
            let detail = format!(
                "lot {lot} had one free space and the server gives no reason, \
                 so a refusal cannot tell already reserved from full"
            );
            report.skip(DUPLICATE, detail)?;
        }
        Err(err) => {
            report.error(DUPLICATE, &err)?;
            return Ok(false);
        }
    }
    let cancelled = match client.cancel(lot, plate) {
        Ok(cancelled) => {
            let detail = if cancelled {
                format!("{plate} in lot {lot}: cancelled")
            } else {
                format!("{plate} in lot {lot}: no reservation found")
            };
            report.check("cancel", cancelled, detail)?;
            cancelled
        }
        Err(err) => {
            report.error("cancel", &err)?;
            return Ok(false);
        }
    };
    match client.get_availability(lot) {
        Ok(free) => {
            let detail = format!("lot {lot}: {free} free (expected {before})");
            report.check("availability restored", free == before, detail)?;
        }
        Err(err) => {
            report.error("availability restored", &err)?;
        }
    }
    Ok(cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_follow_the_plate_rules() {
        let plate = unique_plate();
        assert!(plate.len() <= MAX_PLATE_LEN, "{plate}");
        assert!(plate.starts_with("SMK"));
        assert!(
            plate
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "Z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(u64::MAX).len(), 13);
    }
}
