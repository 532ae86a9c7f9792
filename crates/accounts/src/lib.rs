//! Drivers' accounts, outside the state's locks: checking a registration, hashing and
//! verifying passwords, the login tokens (JWT) a driver presents afterwards, the secret that
//! signs them, and how often a login may fail.
//!
//! The state ([`state::ParkingState`]) keeps each [`state::Account`] with its password's
//! hash and makes it durable; everything slow or secret happens here, before or after it:
//! an Argon2id hash takes tens of milliseconds on purpose and must never run under a lock.
//!
//! A login answers a JWT (HS256, through the `jsonwebtoken` crate) that names the driver
//! (`sub`) and its role (`driver`) and runs out after `jwt_ttl_hours`; each request presents
//! it as a bearer token and [`Tokens::verify`] checks it against the injected clock, so tests
//! can make tokens expire without waiting.
//!
//! # Layout
//! - `drivers`: [`Drivers`]: registration, login (limited) and token checks together.
//! - `password`: [`Passwords`] (Argon2id with the OWASP parameters), the password rules.
//! - `token`: [`Tokens`], [`Claims`], [`Issued`], [`TokenError`].
//! - `secret`: [`JwtSecret`]: read from `auth.jwt_secret_file`, or generated into the data
//!   directory on first start; never logged.
//! - `limiter`: [`LoginLimiter`]: failed logins per username and per peer address, and
//!   registrations per peer address.

#![forbid(unsafe_code)]

mod drivers;
mod limiter;
mod password;
mod secret;
mod token;

pub use drivers::{Drivers, LoginError, RegisterError};
pub use limiter::{
    FAILURE_WINDOW, FAILURES_PER_ADDRESS, FAILURES_PER_USERNAME, LoginLimiter, MAX_TRACKED,
    REGISTRATIONS_PER_ADDRESS, RetryAfter,
};
pub use password::{
    ARGON2_M_COST_KIB, ARGON2_P_COST, ARGON2_T_COST, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN,
    PasswordError, Passwords,
};
pub use secret::{JwtSecret, MIN_SECRET_LEN, SECRET_FILE_NAME, SecretError};
pub use token::{Claims, DRIVER_ROLE, Issued, TokenError, Tokens};
