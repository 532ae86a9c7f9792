//! The HTTP port's event stream: availability events as Server-Sent Events
//! (`text/event-stream`), the format a browser's `EventSource` reads.
//!
//! Each change is one event:
//!
//! ```text
//! event: availability
//! id: 17
//! data: {"lotId":"A","free":12,"status":"open","timestamp":1712345678.9}
//!
//! ```
//!
//! `id` is the lot's change number (`state::LotChange::seq`), so a client can tell, per lot,
//! which of two events is the later one. The `data` object is the pub/sub event without its
//! `type`. A comment line ([`KEEP_ALIVE`]) keeps an idle stream's connection open through
//! proxies that close silent ones.

use std::io::Write;

use crate::pubsub::Event;

/// The `event:` name of every availability event.
pub const EVENT_NAME: &str = "availability";

/// A comment that carries nothing, sent on a stream that has been quiet for a while.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Appends one event (`event:`, `id:`, `data:` and the blank line that ends it).
pub fn encode_event(out: &mut Vec<u8>, event: &Event<'_>, id: u64) {
    let mark = out.len();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "event: {EVENT_NAME}\nid: {id}\ndata: ");
    // JSON written by serde_json never holds a raw newline, so the data stays one line.
    if serde_json::to_writer(&mut *out, event).is_err() {
        out.truncate(mark);
        return;
    }
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use state::Availability;

    #[test]
    fn an_event_is_three_fields_and_a_blank_line() {
        let mut out = Vec::new();
        let event = Event {
            lot_id: "A\n".into(),
            free: 3,
            status: Some(Availability::AlmostFull),
            timestamp: 1.5,
        };
        encode_event(&mut out, &event, 17);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: availability\nid: 17\n\
             data: {\"lotId\":\"A\\n\",\"free\":3,\"status\":\"almostFull\",\"timestamp\":1.5}\n\n"
        );
    }
}
