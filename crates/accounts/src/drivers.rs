//! [`Drivers`]: registration, login and token checks, put together the way every port uses
//! them (the HTTP routes `/v1/auth/*`, and the bearer-token check of each request).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use state::{Account, AccountError, Username, UsernameError, shown};
use store::Store;
use warn_limit::peer_warn;

use crate::limiter::{LoginLimiter, RetryAfter};
use crate::password::{PasswordError, Passwords};
use crate::secret::JwtSecret;
use crate::token::{Issued, TokenError, Tokens};

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The username breaks the rules.
    BadUsername(UsernameError),
    /// The password breaks the rules (or could not be hashed).
    BadPassword(PasswordError),
    /// The account could not be made: the name is taken, too many accounts, or storage.
    Account(AccountError),
    /// Too many registrations from this address: try again later. Nothing was hashed.
    RateLimited(RetryAfter),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::BadUsername(err) => err.fmt(f),
            RegisterError::BadPassword(err) => err.fmt(f),
            RegisterError::Account(err) => err.fmt(f),
            RegisterError::RateLimited(RetryAfter(after)) => write!(
                f,
                "too many registrations from this address; try again in {} s",
                after.as_secs().max(1)
            ),
        }
    }
}

impl std::error::Error for RegisterError {}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Too many failures for this username or from this address: try again later. The
    /// password was not looked at.
    RateLimited(RetryAfter),
    /// No such account, or the wrong password (which of the two is not said).
    BadCredentials,
    /// The token could not be made.
    Token(TokenError),
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::RateLimited(RetryAfter(after)) => write!(
                f,
                "too many failed logins; try again in {} s",
                after.as_secs().max(1)
            ),
            LoginError::BadCredentials => write!(f, "wrong username or password"),
            LoginError::Token(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for LoginError {}

/// Drivers' registration, login and tokens; shared by every worker.
#[derive(Debug)]
pub struct Drivers {
    passwords: Passwords,
    tokens: Tokens,
    limiter: LoginLimiter,
}

impl Drivers {
    /// Tokens signed with `secret`, living `ttl` (`jwt_ttl_hours`).
    pub fn new(secret: &JwtSecret, ttl: Duration) -> Result<Self, TokenError> {
        Ok(Drivers {
            passwords: Passwords::new().map_err(|err| TokenError::Signing(err.to_string()))?,
            tokens: Tokens::new(secret, ttl)?,
            limiter: LoginLimiter::new(),
        })
    }

    /// Makes an account for `username` with `password` (hashed here, outside any lock),
    /// durable through `store`, at wall time `now`.
    pub fn register(
        &self,
        store: &dyn Store,
        username: &str,
        password: &str,
        now: SystemTime,
    ) -> Result<Account, RegisterError> {
        self.register_limited(store, username, password, None, now)
    }

    /// [`Drivers::register`] for a request from `peer` at monotonic time `at`: refused when
    /// the address has made [`REGISTRATIONS_PER_ADDRESS`](crate::REGISTRATIONS_PER_ADDRESS)
    /// registrations in the window. Only a registration that gets as far as the hash counts,
    /// so that a driver fixing a mistyped name is not locked out.
    pub fn register_from(
        &self,
        store: &dyn Store,
        username: &str,
        password: &str,
        (peer, at): (IpAddr, Instant),
        now: SystemTime,
    ) -> Result<Account, RegisterError> {
        self.register_limited(store, username, password, Some((peer, at)), now)
    }

    fn register_limited(
        &self,
        store: &dyn Store,
        username: &str,
        password: &str,
        from: Option<(IpAddr, Instant)>,
        now: SystemTime,
    ) -> Result<Account, RegisterError> {
        let username = Username::new(username).map_err(RegisterError::BadUsername)?;
        Passwords::check_rules(password).map_err(RegisterError::BadPassword)?;
        // Refused before the slow hash when the name is taken (the state checks again).
        if store.state().account(&username).is_some() {
            return Err(RegisterError::Account(AccountError::Exists(username)));
        }
        if let Some((peer, at)) = from {
            self.limiter.register(peer, at).map_err(|retry| {
                peer_warn!("register from {peer}: over the registration limit");
                RegisterError::RateLimited(retry)
            })?;
        }
        let account = Account {
            username,
            password_hash: self
                .passwords
                .hash(password)
                .map_err(RegisterError::BadPassword)?,
            created_at: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        };
        store
            .create_account(account.clone())
            .map_err(RegisterError::Account)?;
        log::debug!("account {} registered", account.username);
        Ok(account)
    }

    /// Logs `username` in with `password` from `peer`: a token, unless the limits refuse
    /// the attempt or the credentials are wrong. `now` is the monotonic time (for the
    /// limits), `wall` the wall time (for the token).
    pub fn login(
        &self,
        store: &dyn Store,
        username: &str,
        password: &str,
        peer: IpAddr,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Issued, LoginError> {
        self.limiter
            .check(username, peer, now)
            .map_err(LoginError::RateLimited)?;
        let account = Username::new(username)
            .ok()
            .and_then(|name| store.state().account(&name));
        let verified = match &account {
            Some(account) => self.passwords.verify(password, &account.password_hash),
            None => {
                // As slow as a real check, so that the answer's time says nothing.
                self.passwords.verify_decoy(password);
                false
            }
        };
        let Some(account) = account.filter(|_| verified) else {
            self.limiter.failed(username, peer, now);
            peer_warn!("login from {peer}: failed for username {}", shown(username));
            return Err(LoginError::BadCredentials);
        };
        self.limiter.succeeded(username);
        self.tokens
            .issue(&account.username, wall)
            .map_err(LoginError::Token)
    }

    /// The driver a bearer token names, if it is one of ours and has not run out at `wall`.
    pub fn authenticate(&self, token: &str, wall: SystemTime) -> Result<Username, TokenError> {
        let claims = self.tokens.verify(token, wall)?;
        claims
            .username()
            .ok_or_else(|| TokenError::Invalid("not a driver's token".into()))
    }

    /// How long a token lives.
    pub fn token_ttl(&self) -> Duration {
        self.tokens.ttl()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use state::{LotId, LotSpec, ManualClock, ParkingState};
    use store::MemoryStore;

    use super::*;
    use crate::limiter::FAILURES_PER_USERNAME;

    fn store() -> MemoryStore {
        let lot = LotSpec::new(LotId::new("A").unwrap(), 1);
        let state = ParkingState::new([lot], Duration::from_secs(60), Arc::new(ManualClock::new()))
            .unwrap();
        MemoryStore::new(Arc::new(state))
    }

    fn drivers() -> Drivers {
        Drivers::new(
            &JwtSecret::from_bytes(vec![1; 32]).unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    fn ip() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn register_then_log_in_and_present_the_token() {
        let (store, drivers) = (store(), drivers());
        let wall = SystemTime::now();
        let account = drivers
            .register(&store, "alice", "correct horse", wall)
            .unwrap();
        assert!(account.password_hash.starts_with("$argon2id$"));
        assert!(matches!(
            drivers.register(&store, "alice", "another password", wall),
            Err(RegisterError::Account(AccountError::Exists(_)))
        ));
        assert!(matches!(
            drivers.register(&store, "Alice", "correct horse", wall),
            Err(RegisterError::BadUsername(_))
        ));
        assert!(matches!(
            drivers.register(&store, "bob", "short", wall),
            Err(RegisterError::BadPassword(PasswordError::TooShort))
        ));
        let now = Instant::now();
        let issued = drivers
            .login(&store, "alice", "correct horse", ip(), now, wall)
            .unwrap();
        assert_eq!(
            drivers.authenticate(&issued.token, wall).unwrap().as_str(),
            "alice"
        );
        assert_eq!(
            drivers.login(&store, "alice", "wrong horse!", ip(), now, wall),
            Err(LoginError::BadCredentials)
        );
        assert_eq!(
            drivers.login(&store, "nobody", "correct horse", ip(), now, wall),
            Err(LoginError::BadCredentials)
        );
    }

    #[test]
    fn failed_logins_lock_the_username_even_for_the_right_password() {
        let (store, drivers) = (store(), drivers());
        let wall = SystemTime::now();
        drivers
            .register(&store, "alice", "correct horse", wall)
            .unwrap();
        let now = Instant::now();
        for _ in 0..FAILURES_PER_USERNAME {
            let _ = drivers.login(&store, "alice", "guess guess", ip(), now, wall);
        }
        assert!(matches!(
            drivers.login(&store, "alice", "correct horse", ip(), now, wall),
            Err(LoginError::RateLimited(_))
        ));
        let later = now + crate::limiter::FAILURE_WINDOW;
        assert!(
            drivers
                .login(&store, "alice", "correct horse", ip(), later, wall)
                .is_ok()
        );
    }
}
