//! Drivers' accounts as the state keeps them: a [`Account`] per [`Username`], with the
//! password's hash (never the password). Hashing and checking passwords, and the tokens a
//! login hands out, are the `accounts` crate's job, outside any lock: the state only stores
//! what it is given, durably, and refuses a second account of the same name.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::change::Unavailable;
use crate::ids::Username;

/// A driver's account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The name the driver logs in with.
    pub username: Username,
    /// The password's hash as a PHC string (`$argon2id$v=19$m=...`), which carries its own
    /// salt and parameters.
    pub password_hash: String,
    /// When it was made (Unix seconds).
    pub created_at: u64,
}

/// The hash is left out, so that it never reaches a log by way of `{:?}`.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("username", &self.username)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Why an account was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountError {
    /// An account has that name already.
    Exists(Username),
    /// The server keeps `max_accounts` accounts already.
    TooMany {
        /// The limit.
        max: usize,
    },
    /// The change could not be made durable, so it was not made.
    Unavailable(Unavailable),
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::Exists(name) => write!(f, "username {name} is taken"),
            AccountError::TooMany { max } => {
                write!(f, "the server already keeps {max} accounts")
            }
            AccountError::Unavailable(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for AccountError {}

/// Every account, by name.
#[derive(Debug, Default)]
pub(crate) struct Accounts {
    pub(crate) by_name: HashMap<Username, Account>,
    /// Most accounts kept.
    pub(crate) max: usize,
}

impl Accounts {
    /// Sets `name`'s account to `account`, or removes it, whatever it was.
    pub(crate) fn set(&mut self, name: &Username, account: Option<Account>) {
        match account {
            Some(account) => {
                self.by_name.insert(name.clone(), account);
            }
            None => {
                self.by_name.remove(name);
            }
        }
    }
}
