//! Who a peer is and what it may do: [`Identity`], [`Action`], the role table, and
//! [`Session`], one connection's authentication state.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use state::LotId;
use warn_limit::peer_warn;

use crate::authenticator::{AuthFailure, Authenticator, Verdict};
use crate::key::{KeyId, Role};

/// Failed attempts one connection may make; the last one closes it.
pub const MAX_FAILURES: u32 = 5;

/// What a request asks to do, in the role table's terms. `PING` and authenticating are not
/// actions: anyone may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read lots and availability, subscribe to changes, find lots that can take a booking.
    Read,
    /// Reserve a space.
    Reserve,
    /// Cancel a reservation or a booking; whose it may cancel is [`Identity::may_handle`]'s
    /// answer.
    Cancel,
    /// Book a space (or a named spot) over a time window.
    Book,
    /// Read a booking by its id; whose, as for [`Action::Cancel`].
    ReadBooking,
    /// Check a booking in by its id (the RPC `checkIn`); whose, as for [`Action::Cancel`].
    CheckIn,
    /// List a lot's bookings, everyone's: an operator's view.
    ListBookings,
    /// Report the occupancy of `lot`.
    UpdateOccupancy {
        /// The lot reported on.
        lot: &'a str,
    },
    /// Report a car through `lot`'s gate (`ENTER`/`EXIT`), which checks bookings in and
    /// completes them.
    PassGate {
        /// The lot whose gate it is.
        lot: &'a str,
    },
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Read => f.write_str("read"),
            Action::Reserve => f.write_str("reserve"),
            Action::Cancel => f.write_str("cancel"),
            Action::Book => f.write_str("book"),
            Action::ReadBooking => f.write_str("read bookings"),
            Action::CheckIn => f.write_str("check bookings in"),
            Action::ListBookings => f.write_str("list bookings"),
            Action::UpdateOccupancy { lot } => {
                write!(f, "update lot {}", state::shown(lot))
            }
            Action::PassGate { lot } => {
                write!(f, "pass the gate of lot {}", state::shown(lot))
            }
        }
    }
}

/// An authenticated key: its id, role and (for a sensor) lots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    id: KeyId,
    role: Role,
    lots: Vec<LotId>,
}

impl Identity {
    /// The identity of key `id`.
    pub fn new(id: KeyId, role: Role, lots: Vec<LotId>) -> Self {
        Identity { id, role, lots }
    }

    /// The key's id, which owns the reservations it makes.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The key's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The role table. What a client may do to a reservation or booking is further limited
    /// to its own ([`Identity::may_handle`]).
    pub fn may(&self, action: Action<'_>) -> bool {
        match (self.role, action) {
            (Role::Operator, _) => true,
            (Role::Viewer | Role::Client | Role::Driver, Action::Read) => true,
            // A driver may book, cancel and check in its own bookings, but holds no
            // reservations: those are for kiosks.
            (
                Role::Driver,
                Action::Cancel | Action::Book | Action::ReadBooking | Action::CheckIn,
            ) => true,
            (
                Role::Client,
                Action::Reserve
                | Action::Cancel
                | Action::Book
                | Action::ReadBooking
                | Action::CheckIn,
            ) => true,
            (Role::Sensor, Action::UpdateOccupancy { lot } | Action::PassGate { lot }) => {
                self.lots.iter().any(|mine| mine.as_str() == lot)
            }
            _ => false,
        }
    }

    /// Whether this key may cancel, read or check in a reservation or booking made by
    /// `owner` (`None`: made while access control was off). An operator may handle any;
    /// anyone else only its own.
    pub fn may_handle(&self, owner: Option<&str>) -> bool {
        self.role == Role::Operator || owner == Some(self.id.as_str())
    }
}

/// Why a request was refused before it was carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Keys are configured and the connection has not authenticated: `UNAUTHORIZED`.
    Unauthenticated,
    /// The connection's key may not do this: `FORBIDDEN`.
    Forbidden {
        /// The key's id.
        id: KeyId,
        /// Its role.
        role: Role,
        /// What it asked, as the reply names it.
        action: String,
    },
}

/// The detail sent after the error code.
impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Unauthenticated => f.write_str("authenticate first (AUTH <token>)"),
            Denied::Forbidden { id, role, action } => {
                write!(f, "key {id} ({role}) may not {action}")
            }
        }
    }
}

/// One connection's access: open (no keys configured), waiting for a token, or
/// authenticated as a key; and its failed attempts. Cheap when access control is off: every
/// check is one branch.
#[derive(Debug, Clone, Default)]
pub struct Session {
    auth: Option<Arc<Authenticator>>,
    identity: Option<Arc<Identity>>,
    failures: u32,
}

impl Session {
    /// A session for a connection to a server with key table `auth` (`None`: access control
    /// is off and every request is allowed).
    pub fn new(auth: Option<&Arc<Authenticator>>) -> Self {
        Session {
            auth: auth.cloned(),
            identity: None,
            failures: 0,
        }
    }

    /// Whether the connection must still authenticate before doing anything but `PING`
    /// (and so is subject to `auth_timeout`).
    pub fn needs_auth(&self) -> bool {
        self.auth.is_some() && self.identity.is_none()
    }

    /// The key the connection authenticated as.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
    }

    /// Whether `action` is allowed now.
    pub fn check(&self, action: Action<'_>) -> Result<(), Denied> {
        if self.auth.is_none() {
            return Ok(());
        }
        match &self.identity {
            None => Err(Denied::Unauthenticated),
            Some(identity) if identity.may(action) => Ok(()),
            Some(identity) => Err(Denied::Forbidden {
                id: identity.id.clone(),
                role: identity.role,
                action: action.to_string(),
            }),
        }
    }

    /// Who owns what this connection reserves or books: its key's id, or nobody with access
    /// control off.
    pub fn owner(&self) -> Option<&str> {
        self.identity.as_ref().map(|identity| identity.id.as_str())
    }

    /// Whether this connection may cancel, read or check in a reservation or booking made
    /// by `owner`.
    pub fn may_handle(&self, owner: Option<&str>) -> bool {
        match (&self.auth, &self.identity) {
            (None, _) => true,
            (Some(_), Some(identity)) => identity.may_handle(owner),
            (Some(_), None) => false,
        }
    }

    /// Counts a wrong token presented on this connection to a one-shot check (an HTTP
    /// request's, [`Authenticator::verify`]), which counted it against the address: the
    /// failure to answer, [`AuthFailure::TooManyFailures`] (close) at the
    /// [`MAX_FAILURES`]th, as [`Session::authenticate`] counts.
    pub fn wrong_token(&mut self) -> AuthFailure {
        self.failures += 1;
        match MAX_FAILURES.checked_sub(self.failures) {
            Some(left) if left > 0 => AuthFailure::WrongToken { left },
            _ => AuthFailure::TooManyFailures,
        }
    }

    /// Authenticates with `token`, as connection `peer` of port `port` (for the log). A
    /// failure is logged (rate-limited, without the token) and counted; see
    /// [`AuthFailure::closes`]. A connection may authenticate again (as another key); a
    /// failed attempt keeps the key it had.
    pub fn authenticate(
        &mut self,
        token: &str,
        port: &str,
        peer: SocketAddr,
        now: Instant,
    ) -> Result<&Identity, AuthFailure> {
        let Some(auth) = &self.auth else {
            return Err(AuthFailure::NotConfigured);
        };
        match auth.check(token, peer.ip(), now) {
            Ok(identity) => {
                log::debug!("{port} {peer}: authenticated as {}", identity.id);
                Ok(self.identity.insert(identity))
            }
            Err(verdict) => {
                self.failures += 1;
                let failure = match verdict {
                    Verdict::Throttled => AuthFailure::Throttled,
                    Verdict::Wrong if self.failures >= MAX_FAILURES => AuthFailure::TooManyFailures,
                    Verdict::Wrong => AuthFailure::WrongToken {
                        left: MAX_FAILURES - self.failures,
                    },
                };
                peer_warn!(
                    "{port} {peer}: authentication failed ({} on this connection){}",
                    self.failures,
                    match failure {
                        AuthFailure::Throttled => "; too many from this address, closing",
                        AuthFailure::TooManyFailures => "; closing",
                        _ => "",
                    }
                );
                Err(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::key::{AuthConfig, KeyConfig};
    use crate::token::token_hash;

    fn auth() -> Arc<Authenticator> {
        let key = |id: &str, role, lots: Option<Vec<&str>>| KeyConfig {
            id: KeyId::new(id).unwrap(),
            role,
            lots: lots.map(|lots| lots.into_iter().map(|l| LotId::new(l).unwrap()).collect()),
            sha256: token_hash(&format!("token-{id}")),
        };
        Arc::new(
            Authenticator::new(&AuthConfig {
                jwt_secret_file: None,
                keys: vec![
                    key("gate-A", Role::Sensor, Some(vec!["A"])),
                    key("kiosk-1", Role::Client, None),
                    key("kiosk-2", Role::Client, None),
                    key("signs", Role::Viewer, None),
                    key("ops", Role::Operator, None),
                ],
            })
            .unwrap()
            .unwrap(),
        )
    }

    fn session(auth: &Arc<Authenticator>, id: &str) -> Session {
        let mut session = Session::new(Some(auth));
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        session
            .authenticate(&format!("token-{id}"), "test", peer, Instant::now())
            .unwrap();
        session
    }

    #[test]
    fn the_role_table() {
        let auth = auth();
        let update = |lot| Action::UpdateOccupancy { lot };
        let gate = |lot| Action::PassGate { lot };
        let table = [
            ("signs", [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            ("kiosk-1", [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]),
            ("gate-A", [0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0]),
            ("ops", [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
        ];
        for (id, allowed) in table {
            let session = session(&auth, id);
            let actions = [
                Action::Read,
                Action::Reserve,
                Action::Cancel,
                Action::Book,
                Action::ReadBooking,
                Action::CheckIn,
                Action::ListBookings,
                update("A"),
                update("B"),
                gate("A"),
                gate("B"),
            ];
            for (action, allowed) in actions.into_iter().zip(allowed) {
                assert_eq!(session.check(action).is_ok(), allowed == 1, "{id} {action}");
            }
        }
        let denied = session(&auth, "signs").check(Action::Reserve).unwrap_err();
        assert_eq!(denied.to_string(), "key signs (viewer) may not reserve");
        let denied = session(&auth, "kiosk-1").check(Action::ListBookings);
        assert_eq!(
            denied.unwrap_err().to_string(),
            "key kiosk-1 (client) may not list bookings"
        );
    }

    #[test]
    fn ownership() {
        let auth = auth();
        let kiosk = session(&auth, "kiosk-1");
        assert_eq!(kiosk.owner(), Some("kiosk-1"));
        assert!(kiosk.may_handle(Some("kiosk-1")));
        assert!(!kiosk.may_handle(Some("kiosk-2")));
        assert!(!kiosk.may_handle(None));
        let ops = session(&auth, "ops");
        assert!(ops.may_handle(Some("kiosk-2")) && ops.may_handle(None));
        let open = Session::new(None);
        assert_eq!(open.owner(), None);
        assert!(open.may_handle(Some("kiosk-2")));
        assert_eq!(open.check(Action::UpdateOccupancy { lot: "Z" }), Ok(()));
        assert!(!open.needs_auth());
    }

    #[test]
    fn five_failures_close_and_a_failure_keeps_the_key() {
        let auth = auth();
        let peer = SocketAddr::from(([127, 0, 0, 4], 1));
        let now = Instant::now();
        let mut session = Session::new(Some(&auth));
        assert!(session.needs_auth());
        assert_eq!(session.check(Action::Read), Err(Denied::Unauthenticated));
        session
            .authenticate("token-signs", "test", peer, now)
            .unwrap();
        assert!(!session.needs_auth());
        for left in (1..MAX_FAILURES).rev() {
            assert_eq!(
                session.authenticate("nope", "test", peer, now).unwrap_err(),
                AuthFailure::WrongToken { left }
            );
            assert_eq!(session.owner(), Some("signs"));
        }
        let last = session.authenticate("nope", "test", peer, now).unwrap_err();
        assert_eq!(last, AuthFailure::TooManyFailures);
        assert!(last.closes());
        assert_eq!(
            Session::new(None)
                .authenticate("x", "test", peer, now)
                .unwrap_err(),
            AuthFailure::NotConfigured
        );
    }
}
