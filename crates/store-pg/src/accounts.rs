//! Drivers' accounts in the database: one row per username, so a driver registered
//! through one node logs in through any other at once. Logins read the row (not the copy,
//! which holds no accounts): an account is a key the database decides, like a reservation.

use postgres::types::Type;
use state::{Account, AccountError, Unavailable, Username};

use crate::link::{self, Link};

/// Makes `account` unless its name is taken or `max` accounts exist (decided by
/// `parking_create_account` under one advisory lock; the key backs the name up).
pub(crate) fn create(link: &Link, account: &Account, max: usize) -> Result<(), AccountError> {
    let created_at = i64::try_from(account.created_at).unwrap_or(i64::MAX);
    let max_rows = i64::try_from(max).unwrap_or(i64::MAX);
    let row = link
        .query_one(
            "SELECT parking_create_account($1, $2, $3, $4)",
            &[
                (&account.username.as_str(), Type::TEXT),
                (&account.password_hash.as_str(), Type::TEXT),
                (&created_at, Type::INT8),
                (&max_rows, Type::INT8),
            ],
        )
        .map_err(AccountError::Unavailable)?;
    let outcome: &str = link::column(&row, 0).map_err(AccountError::Unavailable)?;
    match outcome {
        "made" => Ok(()),
        "exists" => Err(AccountError::Exists(account.username.clone())),
        "too_many" => Err(AccountError::TooMany { max }),
        other => Err(AccountError::Unavailable(link::unexpected(format!(
            "parking_create_account answered {other:?}"
        )))),
    }
}

/// The account named `username`, if there is one.
pub(crate) fn find(link: &Link, username: &Username) -> Result<Option<Account>, Unavailable> {
    let rows = link.with_connection(|client| {
        client.query_typed(
            "SELECT password_hash, created_at FROM parking_accounts WHERE username = $1",
            &[(&username.as_str(), Type::TEXT)],
        )
    })?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let password_hash: String = link::column(row, 0)?;
    let created_at: i64 = link::column(row, 1)?;
    Ok(Some(Account {
        username: username.clone(),
        password_hash,
        created_at: u64::try_from(created_at).unwrap_or(0),
    }))
}
