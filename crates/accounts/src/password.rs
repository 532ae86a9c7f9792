//! Passwords: the rules a new one must keep, and Argon2id hashes of them as PHC strings.

use std::fmt;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest password accepted at registration.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest password accepted: past this it is not a password, and hashing it costs a
/// request's worth of memory for nothing.
pub const MAX_PASSWORD_LEN: usize = 256;

/// Argon2id memory cost in KiB: 19 MiB, the OWASP Password Storage Cheat Sheet's first
/// recommended setting (with [`ARGON2_T_COST`] and [`ARGON2_P_COST`]).
pub const ARGON2_M_COST_KIB: u32 = 19 * 1024;
/// Argon2id passes over the memory.
pub const ARGON2_T_COST: u32 = 2;
/// Argon2id lanes.
pub const ARGON2_P_COST: u32 = 1;

/// Why a password could not be used or hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordError {
    /// Shorter than [`MIN_PASSWORD_LEN`] characters.
    TooShort,
    /// Longer than [`MAX_PASSWORD_LEN`] bytes.
    TooLong,
    /// The hash could not be made (no randomness for the salt, say).
    Hashing(String),
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::TooShort => write!(
                f,
                "the password must be at least {MIN_PASSWORD_LEN} characters"
            ),
            PasswordError::TooLong => {
                write!(f, "the password must be at most {MAX_PASSWORD_LEN} bytes")
            }
            PasswordError::Hashing(why) => write!(f, "the password could not be hashed: {why}"),
        }
    }
}

impl std::error::Error for PasswordError {}

/// Hashes and verifies passwords with Argon2id (version 0x13) and fixed parameters.
pub struct Passwords {
    argon2: Argon2<'static>,
    /// A hash of a password nobody knows, verified when the username is unknown so that a
    /// login takes as long whether or not the account exists.
    decoy: String,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

impl Passwords {
    /// Argon2id with the parameters above.
    pub fn new() -> Result<Self, PasswordError> {
        let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
            .map_err(|err| PasswordError::Hashing(err.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let decoy = argon2
            .hash_password(b"no account has this password")
            .map_err(|err| PasswordError::Hashing(err.to_string()))?
            .to_string();
        Ok(Passwords { argon2, decoy })
    }

    /// Checks the rules a new password must keep.
    pub fn check_rules(password: &str) -> Result<(), PasswordError> {
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(PasswordError::TooShort);
        }
        if password.len() > MAX_PASSWORD_LEN {
            return Err(PasswordError::TooLong);
        }
        Ok(())
    }

    /// A new password's hash as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`)
    /// with a fresh random salt, once it keeps the rules.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        Self::check_rules(password)?;
        self.argon2
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|err| PasswordError::Hashing(err.to_string()))
    }

    /// Whether `password` is the one `hash` was made from. A hash that does not parse never
    /// matches. The parameters are the hash's own, so hashes made with older parameters keep
    /// working.
    pub fn verify(&self, password: &str, hash: &str) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        self.argon2
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    }

    /// Spends the time a verification takes, for a username with no account.
    pub fn verify_decoy(&self, password: &str) {
        let _ = self.verify(password, &self.decoy);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hashes_are_argon2id_with_the_parameters_in_force_and_verify() {
        let passwords = Passwords::new().unwrap();
        let hash = passwords.hash("correct horse battery").unwrap();
        let parsed = PasswordHash::new(&hash).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert_eq!(parsed.version, Some(0x13));
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST)
        );
        assert!(passwords.verify("correct horse battery", &hash));
        assert!(!passwords.verify("correct horse batterY", &hash));
        assert!(!passwords.verify("correct horse battery", "not a hash"));
        // The same password twice: two salts, two hashes.
        assert_ne!(hash, passwords.hash("correct horse battery").unwrap());
        passwords.verify_decoy("whatever it is");
    }

    #[test]
    fn new_passwords_keep_the_rules() {
        assert_eq!(
            Passwords::check_rules("123456789"),
            Err(PasswordError::TooShort)
        );
        // Counted in characters, not bytes.
        assert_eq!(
            Passwords::check_rules("ääääääääá"),
            Err(PasswordError::TooShort)
        );
        assert_eq!(Passwords::check_rules("1234567890"), Ok(()));
        assert_eq!(
            Passwords::check_rules(&"x".repeat(MAX_PASSWORD_LEN + 1)),
            Err(PasswordError::TooLong)
        );
    }
}
