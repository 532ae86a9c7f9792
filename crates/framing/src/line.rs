//! Newline-terminated lines, as the sensor and pub/sub ports speak them.
//!
//! A line ends at `\n`; one trailing `\r` before it is dropped so that `telnet`-style clients
//! work. A line longer than the caller's limit is reported as soon as the limit is passed,
//! without waiting for its end, so a peer cannot make the server buffer without bound.

use std::ops::Range;

/// What [`decode`] found at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole line: its content (without `\r\n`) and the bytes to drop from the buffer.
    Line {
        /// Where the line's content sits in the buffer.
        content: Range<usize>,
        /// Bytes used, terminator included.
        consumed: usize,
    },
    /// No terminator yet and the limit is not reached.
    Incomplete,
    /// The line is longer than the limit (terminator not counted).
    TooLong,
}

/// Whether `buf` starts like an RPC frame rather than a line: a frame's big-endian length
/// under 16 MiB starts with a NUL byte, which no line of the text protocols holds. A line
/// port that sees one is talking to an RPC client pointed at the wrong port, and says so at
/// once instead of waiting for a newline that never comes.
pub fn starts_like_a_frame(buf: &[u8]) -> bool {
    buf.first() == Some(&0)
}

/// Finds the first line in `buf`, allowing at most `max_len` bytes of content.
pub fn decode(buf: &[u8], max_len: usize) -> Decoded {
    // A trailing '\r' is not content, so the terminator may sit one byte past the limit.
    let window = &buf[..buf.len().min(max_len.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(newline) => {
            let end = if newline > 0 && buf[newline - 1] == b'\r' {
                newline - 1
            } else {
                newline
            };
            if end > max_len {
                Decoded::TooLong
            } else {
                Decoded::Line {
                    content: 0..end,
                    consumed: newline + 1,
                }
            }
        }
        None if buf.len() > max_len.saturating_add(1) => Decoded::TooLong,
        None if buf.len() == max_len.saturating_add(1) && buf[max_len] != b'\r' => Decoded::TooLong,
        None => Decoded::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_strips_carriage_return() {
        assert_eq!(
            decode(b"PING\r\nrest", 16),
            Decoded::Line {
                content: 0..4,
                consumed: 6
            }
        );
        assert_eq!(
            decode(b"\n", 16),
            Decoded::Line {
                content: 0..0,
                consumed: 1
            }
        );
        assert_eq!(decode(b"PIN", 16), Decoded::Incomplete);
    }

    #[test]
    fn limit_is_exact() {
        let at_limit = [b"a".repeat(8), b"\r\n".to_vec()].concat();
        assert!(matches!(decode(&at_limit, 8), Decoded::Line { .. }));
        let over = [b"a".repeat(9), b"\n".to_vec()].concat();
        assert_eq!(decode(&over, 8), Decoded::TooLong);
        assert_eq!(decode(&b"a".repeat(9), 8), Decoded::TooLong);
        assert_eq!(decode(&b"a".repeat(8), 8), Decoded::Incomplete);
        assert_eq!(decode(b"aaaaaaaa\r", 8), Decoded::Incomplete);
    }
}
