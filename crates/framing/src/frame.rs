//! Length-prefixed frames: `[len: u32 big-endian][payload: len bytes]`.
//!
//! Two ways in: [`decode`] looks at bytes a connection has already buffered (the server's
//! path, which must never block on a half-sent frame), and [`read_frame`] reads one frame from
//! any blocking [`Read`] (the client's path; [`read_buffered_frame`] is the same for a
//! [`BufReader`], taking a frame it already holds in one copy). Writing goes through [`encode_with`], which lets a
//! caller serialise a payload straight into its output buffer and patches the length in
//! afterwards, so a reply costs no extra copy.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::Range;

use byteorder::{BigEndian, ByteOrder, ReadBytesExt};

/// Largest payload accepted in either direction (4 MiB). Anything larger is refused before a
/// byte of it is buffered, so a peer cannot make the server allocate more than this per
/// connection.
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The length prefix announces more than [`MAX_FRAME_LEN`] bytes.
    TooLarge {
        /// The announced payload length.
        len: usize,
    },
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes the frame needed (header plus payload).
        expected: usize,
        /// Bytes that arrived before the end of the stream.
        received: usize,
    },
    /// The underlying reader or writer failed.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len } => {
                write!(
                    f,
                    "frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit"
                )
            }
            FrameError::Truncated { expected, received } => write!(
                f,
                "stream ended inside a frame ({received} of {expected} bytes received)"
            ),
            FrameError::Io(err) => write!(f, "i/o error: {err}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(err: io::Error) -> Self {
        FrameError::Io(err)
    }
}

/// What [`decode`] found at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame: its payload's position in the buffer and how many bytes it used in all.
    Frame {
        /// Where the payload sits in the decoded buffer.
        payload: Range<usize>,
        /// Header plus payload length: what to drop from the buffer once handled.
        consumed: usize,
    },
    /// Not enough bytes yet; the frame needs `needed` bytes in total (header included) once the
    /// header is known, or at least [`HEADER_LEN`] before that.
    Incomplete {
        /// Total bytes the frame at the front of the buffer needs.
        needed: usize,
    },
}

/// Decodes the frame at the front of `buf` without consuming anything.
///
/// Fails only with [`FrameError::TooLarge`], as soon as the header is complete.
pub fn decode(buf: &[u8]) -> Result<Decoded, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(Decoded::Incomplete { needed: HEADER_LEN });
    }
    let len = BigEndian::read_u32(&buf[..HEADER_LEN]) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Ok(Decoded::Incomplete { needed: total });
    }
    Ok(Decoded::Frame {
        payload: HEADER_LEN..total,
        consumed: total,
    })
}

/// Reads one whole frame from a blocking reader into `payload` (replacing its contents).
///
/// Returns `Ok(false)` on a clean end of stream before any byte of a new frame, `Ok(true)` when
/// a frame was read.
pub fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> Result<bool, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut received = 0;
    while received < HEADER_LEN {
        match reader.read(&mut header[received..]) {
            Ok(0) if received == 0 => return Ok(false),
            Ok(0) => {
                return Err(FrameError::Truncated {
                    expected: HEADER_LEN,
                    received,
                });
            }
            Ok(n) => received += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
    let len = (&header[..]).read_u32::<BigEndian>()? as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    payload.clear();
    payload.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        match reader.read(&mut payload[filled..]) {
            Ok(0) => {
                return Err(FrameError::Truncated {
                    expected: HEADER_LEN + len,
                    received: HEADER_LEN + filled,
                });
            }
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(true)
}

/// [`read_frame`] for a buffered reader: the same frames, end of stream and errors, but a frame
/// that is already whole in `reader`'s buffer is copied out of it at once.
///
/// Why: a pipelined client finds most replies already buffered, and [`read_frame`] takes each
/// with two reads through the buffer and a zero-filled resize, which cost a load generator
/// about as much as decoding the reply. Anything else (a frame still arriving, an oversized
/// header, an empty buffer) is left to [`read_frame`], so both report exactly the same; nothing
/// here reads from the socket itself.
pub fn read_buffered_frame<R: Read>(
    reader: &mut BufReader<R>,
    payload: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    if let Ok(Decoded::Frame {
        payload: range,
        consumed,
    }) = decode(reader.buffer())
    {
        payload.clear();
        payload.extend_from_slice(&reader.buffer()[range]);
        reader.consume(consumed);
        return Ok(true);
    }
    read_frame(reader, payload)
}

/// Appends one frame to `out` whose payload is whatever `body` appends, serialised straight
/// into `out` with the length patched in afterwards, so a payload costs no extra copy. This is
/// the one place a frame header is written.
///
/// A payload over [`MAX_FRAME_LEN`] is removed again (`out` is as it was) and reported as
/// [`FrameError::TooLarge`].
pub fn encode_with(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    body(out);
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(FrameError::TooLarge { len });
    }
    // The limit above keeps `len` well inside u32.
    BigEndian::write_u32(&mut out[start..start + HEADER_LEN], len as u32);
    Ok(())
}

/// Appends `payload` to `out` as one frame.
pub fn encode(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), FrameError> {
    encode_with(out, |out| out.extend_from_slice(payload))
}

/// Writes `payload` as one frame with a single `write_all`, so a frame never leaves in two
/// segments because of the codec.
pub fn write_frame(writer: &mut impl Write, payload: &[u8]) -> Result<(), FrameError> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode(&mut out, payload)?;
    writer.write_all(&out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn decode_whole_frame() {
        let buf = framed(b"PING");
        assert_eq!(
            decode(&buf).unwrap(),
            Decoded::Frame {
                payload: 4..8,
                consumed: 8
            }
        );
    }

    #[test]
    fn decode_reports_what_is_missing() {
        let buf = framed(b"PING");
        assert_eq!(
            decode(&buf[..2]).unwrap(),
            Decoded::Incomplete { needed: 4 }
        );
        assert_eq!(
            decode(&buf[..6]).unwrap(),
            Decoded::Incomplete { needed: 8 }
        );
    }

    #[test]
    fn zero_length_frame_is_a_frame() {
        let buf = framed(b"");
        assert_eq!(
            decode(&buf).unwrap(),
            Decoded::Frame {
                payload: 4..4,
                consumed: 4
            }
        );
    }

    #[test]
    fn oversized_header_is_refused() {
        let mut buf = vec![0; 4];
        BigEndian::write_u32(&mut buf, MAX_FRAME_LEN as u32 + 1);
        assert!(
            matches!(decode(&buf), Err(FrameError::TooLarge { len }) if len == MAX_FRAME_LEN + 1)
        );
        BigEndian::write_u32(&mut buf, MAX_FRAME_LEN as u32);
        assert!(matches!(decode(&buf), Ok(Decoded::Incomplete { .. })));
    }

    #[test]
    fn read_frame_round_trips_and_sees_eof() {
        let mut stream = framed(b"one");
        stream.extend(framed(b""));
        let mut reader = &stream[..];
        let mut payload = Vec::new();
        assert!(read_frame(&mut reader, &mut payload).unwrap());
        assert_eq!(payload, b"one");
        assert!(read_frame(&mut reader, &mut payload).unwrap());
        assert!(payload.is_empty());
        assert!(!read_frame(&mut reader, &mut payload).unwrap());
    }

    #[test]
    fn read_frame_reports_truncation() {
        let stream = framed(b"hello");
        let mut payload = Vec::new();
        let err = read_frame(&mut &stream[..6], &mut payload).unwrap_err();
        assert!(matches!(
            err,
            FrameError::Truncated {
                expected: 9,
                received: 6
            }
        ));
        let err = read_frame(&mut &stream[..2], &mut payload).unwrap_err();
        assert!(matches!(
            err,
            FrameError::Truncated {
                expected: 4,
                received: 2
            }
        ));
    }

    /// A reader that fails with `kind` once `data` is used up.
    struct FailingReader<'a> {
        data: &'a [u8],
        kind: io::ErrorKind,
    }

    impl Read for FailingReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(self.kind.into());
            }
            let n = buf.len().min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// A reader that hands out at most `chunk` bytes per read, then fails with `end` (`None`:
    /// end of stream), like a socket that delivers a stream in pieces.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
        end: Option<io::ErrorKind>,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return self.end.map_or(Ok(0), |kind| Err(kind.into()));
            }
            let n = buf.len().min(self.data.len()).min(self.chunk);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Every result `read` gives until the first error or end of stream, as comparable text.
    fn every_frame(mut read: impl FnMut(&mut Vec<u8>) -> Result<bool, FrameError>) -> Vec<String> {
        let mut results = Vec::new();
        let mut payload = Vec::new();
        // Every stream here holds fewer frames than this; more means a reader that does not
        // advance.
        for _ in 0..64 {
            match read(&mut payload) {
                Ok(true) => results.push(format!("{payload:?}")),
                Ok(false) => return results,
                Err(err) => {
                    results.push(format!("{err:?}"));
                    return results;
                }
            }
        }
        panic!("the reader does not advance: {results:?}");
    }

    #[test]
    fn read_buffered_frame_reads_what_read_frame_reads() {
        let mut whole = Vec::new();
        for payload in [
            &b"one"[..],
            b"",
            b"a longer payload of some bytes",
            b"x",
            b"two",
        ] {
            whole.extend(framed(payload));
        }
        let mut oversized = framed(b"ok");
        oversized.extend((MAX_FRAME_LEN as u32 + 1).to_be_bytes());
        // Whole streams, and the same cut inside a header and inside a payload.
        let streams = [
            &whole[..],
            &whole[..whole.len() - 2],
            &whole[..9],
            &oversized[..],
        ];
        let ends = [None, Some(io::ErrorKind::ConnectionReset)];
        // The comparison sees frames, a clean end, a truncation, an error and an oversized
        // header.
        let mut whole_reader = &whole[..];
        let whole_read = every_frame(|payload| read_frame(&mut whole_reader, payload));
        assert_eq!(whole_read.len(), 5);
        assert_eq!(whole_read[3], format!("{:?}", b"x".to_vec()));
        for (stream, end) in streams.iter().flat_map(|s| ends.map(|end| (*s, end))) {
            let mut unbuffered = Trickle {
                data: stream,
                chunk: usize::MAX,
                end,
            };
            let expected = every_frame(|payload| read_frame(&mut unbuffered, payload));
            // Buffers smaller than, equal to and larger than a frame, filled in small pieces
            // and all at once: the buffer holds a whole frame, part of one, or several.
            for capacity in [1, 3, 4, 7, 11, 64, 8192] {
                for chunk in [1, 2, 5, 13, usize::MAX] {
                    let mut reader = BufReader::with_capacity(
                        capacity,
                        Trickle {
                            data: stream,
                            chunk,
                            end,
                        },
                    );
                    assert_eq!(
                        every_frame(|payload| read_buffered_frame(&mut reader, payload)),
                        expected,
                        "capacity {capacity}, chunk {chunk}, end {end:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_limit_is_four_mebibytes() {
        // The protocol's number (docs/protocol.md), not just whatever the constant says.
        assert_eq!(MAX_FRAME_LEN, 4_194_304);
    }

    #[test]
    fn read_frame_takes_a_frame_at_the_limit_and_refuses_one_past_it() {
        let payload = vec![b'x'; MAX_FRAME_LEN];
        let stream = framed(&payload);
        let mut read = Vec::new();
        assert!(read_frame(&mut &stream[..], &mut read).unwrap());
        assert_eq!(read.len(), MAX_FRAME_LEN);
        let mut header = [0u8; HEADER_LEN];
        BigEndian::write_u32(&mut header, MAX_FRAME_LEN as u32 + 1);
        assert!(matches!(
            read_frame(&mut &header[..], &mut read),
            Err(FrameError::TooLarge { len }) if len == MAX_FRAME_LEN + 1
        ));
    }

    #[test]
    fn read_frame_passes_on_errors_other_than_interrupted() {
        let stream = framed(b"hello");
        // Failing inside the header, and inside the payload.
        for cut in [2, 6] {
            let mut reader = FailingReader {
                data: &stream[..cut],
                kind: io::ErrorKind::ConnectionReset,
            };
            let err = read_frame(&mut reader, &mut Vec::new()).unwrap_err();
            assert!(
                matches!(&err, FrameError::Io(io) if io.kind() == io::ErrorKind::ConnectionReset),
                "{err:?}"
            );
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let too_large = FrameError::TooLarge { len: 5_000_000 };
        assert_eq!(
            too_large.to_string(),
            "frame of 5000000 bytes exceeds the 4194304-byte limit"
        );
        assert!(std::error::Error::source(&too_large).is_none());
        let truncated = FrameError::Truncated {
            expected: 9,
            received: 6,
        };
        assert_eq!(
            truncated.to_string(),
            "stream ended inside a frame (6 of 9 bytes received)"
        );
        let io = FrameError::from(io::Error::new(io::ErrorKind::BrokenPipe, "gone"));
        assert_eq!(io.to_string(), "i/o error: gone");
        let source = std::error::Error::source(&io).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("gone"));
    }

    #[test]
    fn write_frame_writes_one_frame() {
        let mut out = Vec::new();
        write_frame(&mut out, b"PING").unwrap();
        assert_eq!(out, framed(b"PING"));
        let too_large = vec![0; MAX_FRAME_LEN + 1];
        assert!(matches!(
            write_frame(&mut Vec::new(), &too_large),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn encode_with_takes_a_payload_at_the_limit() {
        let mut out = Vec::new();
        encode_with(&mut out, |out| out.resize(out.len() + MAX_FRAME_LEN, b'x')).unwrap();
        assert_eq!(out.len(), HEADER_LEN + MAX_FRAME_LEN);
        assert_eq!(
            BigEndian::read_u32(&out[..HEADER_LEN]) as usize,
            MAX_FRAME_LEN
        );
    }

    #[test]
    fn oversized_payload_is_removed_again() {
        let mut out = b"keep".to_vec();
        let result = encode_with(&mut out, |out| {
            out.resize(out.len() + MAX_FRAME_LEN + 1, b'x')
        });
        assert!(matches!(result, Err(FrameError::TooLarge { .. })));
        assert_eq!(out, b"keep");
    }
}
