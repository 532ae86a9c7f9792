//! [`Shown`]: peer input as error replies and logs may echo it.
//!
//! A peer controls what it sends, so echoing it whole lets one request write megabytes into
//! a reply and into the log (a 4 MiB frame of control bytes once came back as a 20 MB
//! detail and log line). Everything that echoes peer input goes through [`shown`]: at most
//! [`SHOWN_CHARS`] characters, escaped (no raw control bytes), then `... (N bytes)`.

use std::fmt;

/// Characters of peer input an error echoes before cutting it short.
pub const SHOWN_CHARS: usize = 64;

/// Peer input cut to [`SHOWN_CHARS`] characters and escaped, for an error or a log line.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(&'a str);

/// Shows `text` as an error may echo it: quoted and escaped like `{:?}`, cut short.
pub fn shown(text: &str) -> Shown<'_> {
    Shown(text)
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SHOWN_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_long_text_is_cut_and_measured() {
        assert_eq!(shown("FLY").to_string(), "\"FLY\"");
        assert_eq!(shown("a\u{1}b").to_string(), "\"a\\u{1}b\"");
        let long = "\u{1}".repeat(4 * 1024 * 1024);
        let text = shown(&long).to_string();
        assert!(text.len() < 64 * 8 + 32, "{}", text.len());
        assert!(text.ends_with("... (4194304 bytes)"), "{text}");
        // Cut on a character boundary, never inside one.
        let wide = "é".repeat(100);
        assert_eq!(
            shown(&wide).to_string(),
            format!("{:?}... (200 bytes)", "é".repeat(64))
        );
    }
}
