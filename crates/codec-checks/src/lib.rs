//! The checks behind the fuzz targets in `fuzz/fuzz_targets/`, one function per target, and
//! [`TARGETS`], which names them.
//!
//! Each decodes its bytes with the `framing` crate and, for whatever decodes, re-encodes the
//! value and decodes it again. Any disagreement panics, which libFuzzer reports as a crash and
//! saves under `fuzz/artifacts/<target>/`. The checks live in this workspace crate rather than
//! in `fuzz/` (a workspace of its own, built with cargo-fuzz) so that `cargo test` can replay
//! the committed seed corpus through exactly the same code (`tests/seeds.rs`), and so that a
//! change to `framing` that breaks them fails CI. The same properties, on generated rather than
//! mutated inputs, are in `crates/framing/tests/properties.rs`.

#![forbid(unsafe_code)]
// A check's only way to report a disagreement is to panic, as libFuzzer expects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{self, Read};

use framing::frame::{self, FrameError, HEADER_LEN, MAX_FRAME_LEN};
use framing::pubsub::{self, ServerLine};
use framing::{line, rpc, sensor};

/// How walking a buffer of frames ended.
#[derive(Debug, PartialEq, Eq)]
enum FramesEnd {
    /// Waiting for more: `buffered` bytes held, `needed` for the next frame.
    Incomplete { buffered: usize, needed: usize },
    /// A header announced `len` bytes, over the limit.
    TooLarge { len: usize },
}

fn walk_frames(data: &[u8]) -> (Vec<&[u8]>, FramesEnd) {
    let mut frames = Vec::new();
    let mut rest = data;
    loop {
        match frame::decode(rest) {
            Ok(frame::Decoded::Frame { payload, consumed }) => {
                assert_eq!(payload, HEADER_LEN..consumed);
                frames.push(&rest[payload]);
                rest = &rest[consumed..];
            }
            Ok(frame::Decoded::Incomplete { needed }) => {
                assert!(needed > rest.len());
                let end = FramesEnd::Incomplete {
                    buffered: rest.len(),
                    needed,
                };
                return (frames, end);
            }
            Err(FrameError::TooLarge { len }) => {
                assert!(len > MAX_FRAME_LEN);
                return (frames, FramesEnd::TooLarge { len });
            }
            Err(other) => panic!("decode does no i/o, yet failed with {other}"),
        }
    }
}

/// Read sizes for the chunked and short-read runs, taken from the input so that the fuzzer
/// explores them too; 0 stands for an `Interrupted` read (and a chunk of one byte).
fn read_sizes(data: &[u8]) -> Vec<usize> {
    data.iter().take(8).map(|&b| usize::from(b % 9)).collect()
}

/// A reader over `data` that returns at most `sizes[i]` bytes on its i-th call (cycling), and
/// `ErrorKind::Interrupted` for a size of 0, like a socket under load. Shared with the
/// `framing` property tests.
pub struct ShortReads<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    calls: usize,
}

impl<'a> ShortReads<'a> {
    /// Reads `data` in pieces of the given sizes.
    pub fn new(data: &'a [u8], mut sizes: Vec<usize>) -> Self {
        // A non-zero size in every cycle, so the reader always makes progress.
        sizes.push(1);
        ShortReads {
            data,
            sizes,
            calls: 0,
        }
    }

    /// The bytes not read yet.
    pub fn unread(&self) -> &'a [u8] {
        self.data
    }
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.calls % self.sizes.len()];
        self.calls += 1;
        if size == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Target `frame_decode`.
pub fn check_frames(data: &[u8]) {
    let (frames, end) = walk_frames(data);

    // Every frame found re-encodes to the same bytes.
    let mut offset = 0;
    for payload in &frames {
        let mut again = Vec::new();
        frame::encode(&mut again, payload).unwrap();
        assert_eq!(&again[..], &data[offset..offset + again.len()]);
        offset += again.len();
    }

    // The same bytes arriving in chunks, as a server's buffer sees them.
    let sizes = read_sizes(data);
    let mut buf = Vec::new();
    let mut chunked = Vec::new();
    let mut chunked_end = None;
    let mut fed = 0;
    let mut call = 0;
    'feed: while fed < data.len() {
        let size = sizes[call % sizes.len()].max(1).min(data.len() - fed);
        call += 1;
        buf.extend_from_slice(&data[fed..fed + size]);
        fed += size;
        loop {
            match frame::decode(&buf) {
                Ok(frame::Decoded::Frame { payload, consumed }) => {
                    chunked.push(buf[payload].to_vec());
                    buf.drain(..consumed);
                }
                Ok(frame::Decoded::Incomplete { .. }) => break,
                Err(FrameError::TooLarge { len }) => {
                    chunked_end = Some(FramesEnd::TooLarge { len });
                    break 'feed;
                }
                Err(other) => panic!("decode does no i/o, yet failed with {other}"),
            }
        }
    }
    let chunked_end = chunked_end.unwrap_or_else(|| match frame::decode(&buf) {
        Ok(frame::Decoded::Incomplete { needed }) => FramesEnd::Incomplete {
            buffered: buf.len(),
            needed,
        },
        other => panic!("a fully fed buffer still decodes to {other:?}"),
    });
    assert_eq!(chunked, frames);
    assert_eq!(chunked_end, end);

    // A blocking reader with short and interrupted reads.
    let mut reader = ShortReads::new(data, sizes);
    let mut payload = Vec::new();
    let mut read = Vec::new();
    let outcome = loop {
        match frame::read_frame(&mut reader, &mut payload) {
            Ok(true) => read.push(payload.clone()),
            other => break other,
        }
    };
    assert_eq!(read, frames);
    match (outcome, end) {
        (Ok(false), FramesEnd::Incomplete { buffered: 0, .. }) => {}
        (
            Err(FrameError::Truncated { expected, received }),
            FramesEnd::Incomplete { buffered, needed },
        ) => {
            assert_eq!(received, buffered);
            assert!(received > 0);
            // Before the header is whole, both only know a header is needed.
            assert_eq!(expected, needed);
        }
        (Err(FrameError::TooLarge { len }), FramesEnd::TooLarge { len: announced }) => {
            assert_eq!(len, announced);
        }
        (outcome, end) => panic!("read_frame ended with {outcome:?}, decode with {end:?}"),
    }
}

/// Target `json_request`.
pub fn check_json_payload(data: &[u8]) {
    match rpc::decode_json_request(data) {
        Ok((rpc_id, request)) => {
            // What the server accepts as JSON it also routes as JSON.
            assert!(rpc::is_json(data));
            let mut again = Vec::new();
            rpc::encode_json_request(&mut again, rpc_id, &request);
            assert_eq!(rpc::decode_json_request(&again), Ok((rpc_id, request)));
        }
        Err(rejected) => {
            // A reply to the rejection is always valid JSON the client can read back.
            let mut reply = Vec::new();
            rpc::encode_json_reply(&mut reply, rejected.rpc_id, Err(&rejected.error));
            let envelope = rpc::decode_json_reply(&reply).unwrap();
            assert_eq!(envelope.rpc_id, rejected.rpc_id);
            let text = envelope.error.unwrap();
            let parsed = rpc::WireError::parse_json_form(&text).unwrap();
            assert_eq!(parsed.code, rejected.error.code);
        }
    }
    // The same bytes as a reply, the client's side.
    if let Ok(envelope) = rpc::decode_json_reply(data)
        && let Some(error) = envelope.error
    {
        let _ = rpc::WireError::parse_json_form(&error);
    }
}

/// Target `text_request`.
pub fn check_text_payload(data: &[u8]) {
    if let Ok(request) = rpc::decode_text_request(data) {
        let mut again = Vec::new();
        rpc::encode_text_request(&mut again, &request);
        assert!(!rpc::is_json(&again));
        assert_eq!(rpc::decode_text_request(&again), Ok(request));
    }
}

/// Splits `data` into lines as a connection would, stopping at a line over the limit, and
/// checks each line decode's answer.
fn lines(data: &[u8], max_len: usize) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = data;
    while let line::Decoded::Line { content, consumed } = line::decode(rest, max_len) {
        assert_eq!(rest[consumed - 1], b'\n');
        assert!(content.end <= max_len);
        assert!(!rest[content.clone()].contains(&b'\n'));
        lines.push(&rest[content]);
        rest = &rest[consumed..];
    }
    lines
}

/// Target `sensor_line`.
pub fn check_sensor_stream(data: &[u8]) {
    for line in lines(data, sensor::MAX_LINE_LEN) {
        if let Ok(command) = sensor::parse_command(line) {
            let mut again = Vec::new();
            sensor::encode_command(&mut again, &command);
            assert_eq!(again.pop(), Some(b'\n'));
            assert_eq!(sensor::parse_command(&again), Ok(command));
        }
        if let Ok(reply) = sensor::parse_reply(line) {
            let mut again = Vec::new();
            sensor::encode_reply(&mut again, reply.as_ref());
            assert_eq!(again.pop(), Some(b'\n'));
            assert_eq!(sensor::parse_reply(&again), Ok(reply));
        }
    }
}

/// Equality of server lines, with events' timestamps compared bit for bit: `framing` enables
/// serde_json's `float_roundtrip`, so a timestamp must come back as exactly the same f64 (and
/// `-0.0` as `-0.0`), not merely a neighbour of it. Shared with the `framing` property tests.
pub fn same_server_line(a: &ServerLine<'_>, b: &ServerLine<'_>) -> bool {
    match (a, b) {
        (ServerLine::Event(a), ServerLine::Event(b))
        | (ServerLine::Snapshot(a), ServerLine::Snapshot(b)) => {
            a.lot_id == b.lot_id
                && a.free == b.free
                && a.timestamp.to_bits() == b.timestamp.to_bits()
        }
        _ => a == b,
    }
}

/// Target `pubsub_command`.
pub fn check_pubsub_stream(data: &[u8]) {
    for line in lines(data, pubsub::MAX_LINE_LEN) {
        if let Ok(command) = pubsub::parse_command(line) {
            let mut again = Vec::new();
            match &command {
                pubsub::Command::Subscribe(topic) => pubsub::encode_command(&mut again, *topic),
                pubsub::Command::Auth { token } => pubsub::encode_auth(&mut again, token),
            }
            assert_eq!(again.pop(), Some(b'\n'));
            assert_eq!(pubsub::parse_command(&again), Ok(command));
        }
        if let Ok(parsed) = pubsub::parse_server_line(line) {
            let mut again = Vec::new();
            match &parsed {
                ServerLine::Subscribed(id) => pubsub::encode_subscribed(&mut again, *id),
                ServerLine::Authenticated(id) => pubsub::encode_authenticated(&mut again, id),
                ServerLine::Refused(error) => pubsub::encode_error(&mut again, error),
                ServerLine::Event(event) => pubsub::encode_event(&mut again, event),
                ServerLine::Snapshot(event) => pubsub::encode_snapshot(&mut again, event),
            }
            assert_eq!(again.pop(), Some(b'\n'));
            let reparsed = pubsub::parse_server_line(&again).unwrap();
            assert!(
                same_server_line(&reparsed, &parsed),
                "{parsed:?} came back as {reparsed:?}"
            );
        }
    }
}

/// A fuzz target's check of one input; it panics on any disagreement.
pub type Check = fn(&[u8]);

/// Every fuzz target by name (the name of its file in `fuzz/fuzz_targets/` and of its seed
/// directory in `fuzz/seeds/`), with its check.
pub const TARGETS: [(&str, Check); 5] = [
    ("frame_decode", check_frames),
    ("json_request", check_json_payload),
    ("text_request", check_text_payload),
    ("sensor_line", check_sensor_stream),
    ("pubsub_command", check_pubsub_stream),
];
