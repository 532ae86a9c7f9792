//! [`Authenticator`]: the key table, verifying presented tokens, and the per-address window
//! of failed attempts.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use subtle::ConstantTimeEq;

use accounts::Drivers;
use state::Clock;

use crate::access::{Identity, MAX_FAILURES};
use crate::key::{AuthConfig, KeyError, KeyId, Role};
use crate::token::digest;

/// Failed attempts one client address may make per [`FAILURE_WINDOW`] (over all its
/// connections and ports); past it, each further failure closes its connection at once. A
/// right token is always accepted, so that one misconfigured sensor behind a gateway's
/// address cannot lock out the gateway's other sensors.
pub const FAILURES_PER_ADDRESS: u32 = 20;

/// The window [`FAILURES_PER_ADDRESS`] counts in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Most addresses whose failures are tracked at once, so that a spray of addresses cannot
/// grow the table without bound; when it is full, windows that have ended are dropped, and if
/// none has, new addresses go uncounted until one does.
const MAX_TRACKED_ADDRESSES: usize = 4096;

/// Why a presented token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No keys are configured: there is nothing to authenticate against.
    NotConfigured,
    /// No key has this token; `left` more attempts are allowed on the connection.
    WrongToken {
        /// Attempts left before the connection is closed.
        left: u32,
    },
    /// The connection has made [`MAX_FAILURES`] failed attempts: it is closed.
    TooManyFailures,
    /// The client's address is over [`FAILURES_PER_ADDRESS`]: the connection is closed.
    Throttled,
}

impl AuthFailure {
    /// Whether the connection must be closed after the reply.
    pub fn closes(self) -> bool {
        matches!(self, AuthFailure::TooManyFailures | AuthFailure::Throttled)
    }
}

/// The detail sent to the peer after the error code (never the token).
impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthFailure::NotConfigured => {
                f.write_str("this server has no keys configured; there is nothing to authenticate")
            }
            AuthFailure::WrongToken { left } => {
                write!(f, "wrong token; {left} attempt(s) left on this connection")
            }
            AuthFailure::TooManyFailures => {
                write!(f, "wrong token; {MAX_FAILURES} failed attempts, closing")
            }
            AuthFailure::Throttled => f.write_str(
                "wrong token; too many failed attempts from this address, closing (retry later)",
            ),
        }
    }
}

/// A token verdict before the connection's own count is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Wrong,
    Throttled,
}

struct Key {
    digest: [u8; 32],
    identity: Arc<Identity>,
}

/// One address's failures in its current window.
struct Window {
    started: Instant,
    failures: u32,
}

/// The key table, shared by every port (and the HTTP port, which calls [`verify`] for each
/// `Authorization: Bearer` header).
///
/// [`verify`]: Authenticator::verify
pub struct Authenticator {
    keys: Vec<Key>,
    failures: Mutex<HashMap<IpAddr, Window>>,
    /// Drivers' login tokens (JWTs) are accepted too when set, checked on this clock.
    drivers: Option<(Arc<Drivers>, Arc<dyn Clock>)>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// The key table of a validated `config`; `None` when it has no keys (every port open).
    pub fn new(config: &AuthConfig) -> Result<Option<Authenticator>, KeyError> {
        config.validate()?;
        if config.keys.is_empty() {
            return Ok(None);
        }
        let keys = config
            .keys
            .iter()
            .map(|key| {
                Ok(Key {
                    digest: key.digest()?,
                    identity: Arc::new(Identity::new(
                        key.id.clone(),
                        key.role,
                        key.lots.clone().unwrap_or_default(),
                    )),
                })
            })
            .collect::<Result<_, KeyError>>()?;
        Ok(Some(Authenticator {
            keys,
            failures: Mutex::new(HashMap::new()),
            drivers: None,
        }))
    }

    /// Accepts drivers' login tokens as well, verified by `drivers` on `clock` (whose wall
    /// time says whether a token has run out): such a token authenticates as the driver
    /// (`@<username>`, role `driver`), on every port that takes a key.
    pub fn with_drivers(mut self, drivers: Arc<Drivers>, clock: Arc<dyn Clock>) -> Self {
        self.drivers = Some((drivers, clock));
        self
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the table is empty (never, for one [`Authenticator::new`] returned).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The identity whose token `token` is, for a request from `peer` at `now`; or
    /// [`AuthFailure::WrongToken`] (with `left` 0: one-shot callers such as HTTP requests)
    /// or [`AuthFailure::Throttled`]. Failures are counted against `peer`.
    pub fn verify(
        &self,
        token: &str,
        peer: IpAddr,
        now: Instant,
    ) -> Result<Arc<Identity>, AuthFailure> {
        self.check(token, peer, now)
            .map_err(|verdict| match verdict {
                Verdict::Wrong => AuthFailure::WrongToken { left: 0 },
                Verdict::Throttled => AuthFailure::Throttled,
            })
    }

    pub(crate) fn check(
        &self,
        token: &str,
        peer: IpAddr,
        now: Instant,
    ) -> Result<Arc<Identity>, Verdict> {
        let presented = digest(token);
        // Every key is compared, in constant time, so that the time taken says nothing about
        // which hash (or how much of one) the token came close to.
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&presented)) {
                found = Some(&key.identity);
            }
        }
        if found.is_none()
            && let Some((drivers, clock)) = &self.drivers
            // A JWT has three parts; a key's token (URL-safe base64) has no dot.
            && token.bytes().filter(|&b| b == b'.').count() == 2
            && let Ok(driver) = drivers.authenticate(token, clock.wall())
        {
            return Ok(Arc::new(Identity::new(
                KeyId::driver(&driver),
                Role::Driver,
                Vec::new(),
            )));
        }
        match found {
            Some(identity) => Ok(Arc::clone(identity)),
            None if self.count_failure(peer, now) => Err(Verdict::Throttled),
            None => Err(Verdict::Wrong),
        }
    }

    /// Counts a failure from `peer`; true if the address is now over its budget.
    fn count_failure(&self, peer: IpAddr, now: Instant) -> bool {
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_TRACKED_ADDRESSES && !failures.contains_key(&peer) {
            failures
                .retain(|_, window| now.saturating_duration_since(window.started) < FAILURE_WINDOW);
            if failures.len() >= MAX_TRACKED_ADDRESSES {
                return false;
            }
        }
        let window = failures.entry(peer).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.saturating_duration_since(window.started) >= FAILURE_WINDOW {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures += 1;
        window.failures > FAILURES_PER_ADDRESS
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::key::{KeyConfig, KeyId, Role};
    use crate::token::token_hash;

    pub(crate) fn table() -> Authenticator {
        let key = |id: &str, role, token: &str| KeyConfig {
            id: KeyId::new(id).unwrap(),
            role,
            lots: (role == Role::Sensor).then(|| vec![state::LotId::new("A").unwrap()]),
            sha256: token_hash(token),
        };
        Authenticator::new(&AuthConfig {
            jwt_secret_file: None,
            keys: vec![
                key("gate-A", Role::Sensor, "t-sensor"),
                key("kiosk-1", Role::Client, "t-client"),
            ],
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn tokens_find_their_key_and_nothing_else_does() {
        let auth = table();
        let peer = IpAddr::from([127, 0, 0, 1]);
        let now = Instant::now();
        assert_eq!(
            auth.verify("t-client", peer, now).unwrap().id().as_str(),
            "kiosk-1"
        );
        assert_eq!(
            auth.verify("t-sensor", peer, now).unwrap().role(),
            Role::Sensor
        );
        for wrong in ["", "t-client ", "T-CLIENT", &token_hash("t-client")] {
            assert_eq!(
                auth.verify(wrong, peer, now).unwrap_err(),
                AuthFailure::WrongToken { left: 0 }
            );
        }
        assert!(
            Authenticator::new(&AuthConfig::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_address_over_its_budget_is_throttled_for_the_window_only() {
        let auth = table();
        let peer = IpAddr::from([127, 0, 0, 2]);
        let other = IpAddr::from([127, 0, 0, 3]);
        let start = Instant::now();
        for _ in 0..FAILURES_PER_ADDRESS {
            assert!(matches!(
                auth.verify("x", peer, start),
                Err(AuthFailure::WrongToken { .. })
            ));
        }
        assert_eq!(auth.verify("x", peer, start), Err(AuthFailure::Throttled));
        // The right token still works, and other addresses are not affected.
        assert!(auth.verify("t-client", peer, start).is_ok());
        assert!(matches!(
            auth.verify("x", other, start),
            Err(AuthFailure::WrongToken { .. })
        ));
        assert!(matches!(
            auth.verify("x", peer, start + FAILURE_WINDOW),
            Err(AuthFailure::WrongToken { .. })
        ));
    }

    #[test]
    fn the_address_table_is_bounded() {
        let auth = table();
        let start = Instant::now();
        for n in 0..(MAX_TRACKED_ADDRESSES as u32 + 10) {
            let _ = auth.verify("x", IpAddr::from(n.to_be_bytes()), start);
        }
        assert_eq!(auth.failures.lock().len(), MAX_TRACKED_ADDRESSES);
        let _ = auth.verify("x", IpAddr::from([127, 9, 9, 9]), start + FAILURE_WINDOW);
        assert_eq!(auth.failures.lock().len(), 1);
    }

    #[test]
    fn a_driver_s_login_token_authenticates_as_the_driver_until_it_runs_out() {
        use accounts::JwtSecret;
        use state::{LotId, LotSpec, ManualClock, ParkingState};
        use store::MemoryStore;

        let clock = Arc::new(ManualClock::new());
        let lot = LotSpec::new(LotId::new("A").unwrap(), 1);
        let store = MemoryStore::new(Arc::new(
            ParkingState::new([lot], Duration::from_secs(60), clock.clone()).unwrap(),
        ));
        let drivers = Arc::new(
            Drivers::new(
                &JwtSecret::from_bytes(vec![3; 32]).unwrap(),
                Duration::from_secs(3600),
            )
            .unwrap(),
        );
        let auth = table().with_drivers(Arc::clone(&drivers), clock.clone());
        let peer = IpAddr::from([127, 0, 0, 1]);
        drivers
            .register(&store, "alice", "correct horse", clock.wall())
            .unwrap();
        let issued = drivers
            .login(
                &store,
                "alice",
                "correct horse",
                peer,
                clock.now(),
                clock.wall(),
            )
            .unwrap();
        let identity = auth.verify(&issued.token, peer, Instant::now()).unwrap();
        assert_eq!(identity.id().as_str(), "@alice");
        assert_eq!(identity.role(), Role::Driver);
        assert!(identity.may(crate::Action::Book));
        assert!(identity.may(crate::Action::Read));
        assert!(!identity.may(crate::Action::Reserve));
        assert!(!identity.may(crate::Action::ListBookings));
        assert!(identity.may_handle(Some("@alice")) && !identity.may_handle(Some("alice")));
        // Tampered with: refused like a wrong key.
        let mut forged = issued.token.clone();
        forged.pop();
        assert_eq!(
            auth.verify(&forged, peer, Instant::now()).unwrap_err(),
            AuthFailure::WrongToken { left: 0 }
        );
        // Run out: refused.
        clock.advance(Duration::from_secs(3600));
        assert!(auth.verify(&issued.token, peer, Instant::now()).is_err());
        // Without drivers configured, a login token is just a wrong token.
        assert!(table().verify(&issued.token, peer, Instant::now()).is_err());
    }
}
