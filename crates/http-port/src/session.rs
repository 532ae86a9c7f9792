//! Dashboard sessions: `POST /v1/session` with a key's token opens one, and its id, sent back
//! as an `HttpOnly; SameSite=Strict` cookie, stands for that key on the browser's later
//! requests, the event stream included (an `EventSource` cannot send `Authorization`, and a
//! token in the URL lands in proxy logs).
//!
//! A session id is 256 random bits, like a key's token. Only its SHA-256 is kept, so that the
//! table, if it ever leaked (a core dump), opens no session. Sessions live in this node's
//! memory: a restart or another node behind a load balancer does not know them, and the
//! dashboard then asks for the token again. The table is bounded ([`MAX_SESSIONS`]); a
//! session unused for [`SESSION_IDLE`] has ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::{Identity, token_hash};
use cookie::{Cookie, SameSite};
use parking_lot::Mutex;

/// The cookie's name.
pub(crate) const COOKIE: &str = "parking_session";

/// Most sessions open at once; signing in past it ends the least recently used one. A
/// dashboard per wall screen and per operator is far fewer, and a sign-in needs a valid
/// token, so only key holders can fill it.
pub(crate) const MAX_SESSIONS: usize = 4096;

/// A session with no request for this long has ended: the browser's cookie lasts until it
/// is closed, but a dashboard left signed in on a shared screen does not stay so for ever.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(24 * 60 * 60);

/// The open sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// By the SHA-256 (hex) of the session id.
    open: Mutex<HashMap<String, Open>>,
}

#[derive(Debug)]
struct Open {
    identity: Arc<Identity>,
    last_used: Instant,
}

impl Sessions {
    /// Opens a session for `identity` at `now`; returns its id (the cookie's value).
    pub(crate) fn open(
        &self,
        identity: Arc<Identity>,
        now: Instant,
    ) -> Result<String, getrandom::Error> {
        let id = auth::generate_token()?;
        let mut open = self.open.lock();
        if open.len() >= MAX_SESSIONS {
            open.retain(|_, session| !session.ended(now));
        }
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, session)| session.last_used)
                .map(|(digest, _)| digest.clone())
        {
            open.remove(&oldest);
        }
        open.insert(
            token_hash(&id),
            Open {
                identity,
                last_used: now,
            },
        );
        Ok(id)
    }

    /// The key session `id` stands for, if it is open at `now` (which counts as a use).
    pub(crate) fn identity(&self, id: &str, now: Instant) -> Option<Arc<Identity>> {
        let digest = token_hash(id);
        let mut open = self.open.lock();
        let session = open.get_mut(&digest)?;
        if session.ended(now) {
            open.remove(&digest);
            return None;
        }
        session.last_used = now;
        Some(Arc::clone(&session.identity))
    }

    /// Ends session `id`; false if it was not open.
    pub(crate) fn close(&self, id: &str) -> bool {
        self.open.lock().remove(&token_hash(id)).is_some()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().len()
    }
}

impl Open {
    fn ended(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_used) >= SESSION_IDLE
    }
}

/// The `Set-Cookie` value that gives the browser session `id`: `HttpOnly` (no script reads
/// it), `SameSite=Strict` (no other site's page sends it: no cross-site request forgery),
/// `Path=/`, and `Secure` on a TLS port (never sent over plain HTTP). No `Max-Age`: it goes
/// when the browser closes.
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    Cookie::build((COOKIE, id))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build()
        .to_string()
}

/// The `Set-Cookie` value that makes the browser forget the session cookie.
pub(crate) fn clear_cookie(secure: bool) -> String {
    let mut cookie = Cookie::build((COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build();
    cookie.make_removal();
    cookie.to_string()
}

/// The session id in a `Cookie` header's value, if it has one.
pub(crate) fn from_header(value: &str) -> Option<&str> {
    Cookie::split_parse(value)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == COOKIE)
        .map(|cookie| cookie.value_raw().unwrap_or(""))
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use auth::{KeyId, Role};

    fn viewer() -> Arc<Identity> {
        Arc::new(Identity::new(
            KeyId::new("signs").unwrap(),
            Role::Viewer,
            Vec::new(),
        ))
    }

    #[test]
    fn a_session_stands_for_its_key_until_closed_or_idle() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let id = sessions.open(viewer(), start).unwrap();
        assert_eq!(
            sessions.identity(&id, start).unwrap().id().as_str(),
            "signs"
        );
        assert!(sessions.identity("other", start).is_none());
        // Each use restarts the idle time.
        let later = start + SESSION_IDLE - Duration::from_secs(1);
        assert!(sessions.identity(&id, later).is_some());
        assert!(sessions.identity(&id, later + SESSION_IDLE).is_none());
        assert_eq!(sessions.len(), 0);

        let id = sessions.open(viewer(), start).unwrap();
        assert!(sessions.close(&id));
        assert!(!sessions.close(&id));
        assert!(sessions.identity(&id, start).is_none());
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_least_recently_used() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let first = sessions.open(viewer(), start).unwrap();
        let second = sessions.open(viewer(), start).unwrap();
        for i in 2..MAX_SESSIONS {
            sessions
                .open(viewer(), start + Duration::from_millis(i as u64))
                .unwrap();
        }
        // `first` is used again; `second` is now the least recently used.
        let now = start + Duration::from_secs(60);
        assert!(sessions.identity(&first, now).is_some());
        sessions.open(viewer(), now).unwrap();
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.identity(&second, now).is_none());
        assert!(sessions.identity(&first, now).is_some());
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_on_tls() {
        let attributes = |cookie: String| {
            let mut parts: Vec<String> = cookie.split("; ").map(str::to_owned).collect();
            parts.sort_unstable();
            parts
        };
        assert_eq!(
            attributes(set_cookie("abc", false)),
            [
                "HttpOnly",
                "Path=/",
                "SameSite=Strict",
                "parking_session=abc"
            ]
        );
        assert!(attributes(set_cookie("abc", true)).contains(&"Secure".to_owned()));
        let cleared = clear_cookie(false);
        assert!(cleared.starts_with("parking_session=;"));
        assert!(cleared.contains("Max-Age=0"));
        assert_eq!(from_header("a=1; parking_session=xyz; b=2"), Some("xyz"));
        assert_eq!(from_header("a=1"), None);
        assert_eq!(from_header("parking_session="), None);
        assert_eq!(from_header(";;; =; ="), None);
    }
}
