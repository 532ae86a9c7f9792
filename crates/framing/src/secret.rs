//! [`Secret`]: a token as it crosses the wire, which never shows itself in logs.

use std::borrow::Cow;
use std::fmt;

/// A token sent to authenticate (`auth [token]`, `AUTH <token>`). Its `Debug` prints
/// `Secret(..)`, so logging a request that carries one never logs the token; the text is
/// reached only on purpose, through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<'a>(Cow<'a, str>);

impl<'a> Secret<'a> {
    /// Wraps a token.
    pub fn new(token: impl Into<Cow<'a, str>>) -> Self {
        Secret(token.into())
    }

    /// The token's text, for checking it or sending it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The same secret owning its text.
    pub fn into_owned(self) -> Secret<'static> {
        Secret(Cow::Owned(self.0.into_owned()))
    }
}

impl<'a> From<Cow<'a, str>> for Secret<'a> {
    fn from(token: Cow<'a, str>) -> Self {
        Secret(token)
    }
}

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
