//! Login tokens: JWTs signed with HS256 that name a driver and run out after a while.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use state::Username;

use crate::secret::JwtSecret;

/// The role a login token carries: a driver may book, cancel and check in its own
/// bookings, wait in line, and read like a viewer.
pub const DRIVER_ROLE: &str = "driver";

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The driver's username.
    pub sub: String,
    /// Always [`DRIVER_ROLE`].
    pub role: String,
    /// When it was issued (Unix seconds).
    pub iat: u64,
    /// When it runs out (Unix seconds): it is refused from then on.
    pub exp: u64,
}

impl Claims {
    /// The driver the token names (checked when the token is verified).
    pub fn username(&self) -> Option<Username> {
        Username::new(&self.sub).ok()
    }
}

/// A token just issued.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The JWT, to hand to the driver once.
    pub token: String,
    /// When it runs out (Unix seconds).
    pub expires_at: u64,
}

/// The token is left out, as everywhere: it is a credential.
impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused. The detail never includes the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT, not signed with our secret, not HS256, or its claims are not ours
    /// (tampered with, or made by someone else).
    Invalid(String),
    /// Its time has run out.
    Expired {
        /// When it ran out (Unix seconds).
        at: u64,
    },
    /// The token could not be made.
    Signing(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Invalid(why) => write!(f, "invalid token: {why}"),
            TokenError::Expired { at } => write!(f, "the token expired at {at}"),
            TokenError::Signing(why) => write!(f, "the token could not be signed: {why}"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Issues and verifies login tokens with one secret and lifetime.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl Tokens {
    /// Tokens signed with `secret` that live for `ttl` (`jwt_ttl_hours`).
    pub fn new(secret: &JwtSecret, ttl: Duration) -> Result<Self, TokenError> {
        let signing = |err: jsonwebtoken::errors::Error| TokenError::Signing(err.to_string());
        let encoding = EncodingKey::from_secret(secret.bytes()).map_err(signing)?;
        let decoding = DecodingKey::from_secret(secret.bytes()).map_err(signing)?;
        // Only HS256: a token that names another algorithm (`none`, or RS256 to confuse the
        // key's use) is refused before its signature is looked at. The expiry is checked
        // below against the server's clock, not the crate's, so that tests can move it.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Tokens {
            encoding,
            decoding,
            validation,
            ttl,
        })
    }

    /// How long a token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `driver`, issued at `now`.
    pub fn issue(&self, driver: &Username, now: SystemTime) -> Result<Issued, TokenError> {
        let iat = unix_secs(now);
        let exp = iat.saturating_add(self.ttl.as_secs());
        let claims = Claims {
            sub: driver.as_str().to_owned(),
            role: DRIVER_ROLE.to_owned(),
            iat,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|err| TokenError::Signing(err.to_string()))?;
        Ok(Issued {
            token,
            expires_at: exp,
        })
    }

    /// The claims of `token` if we signed it, it is a driver's, and it has not run out at
    /// `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| TokenError::Invalid(err.to_string()))?
            .claims;
        if claims.role != DRIVER_ROLE || claims.username().is_none() {
            return Err(TokenError::Invalid("not a driver's token".into()));
        }
        if unix_secs(now) >= claims.exp {
            return Err(TokenError::Expired { at: claims.exp });
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn tokens(secret: &[u8]) -> Tokens {
        Tokens::new(
            &JwtSecret::from_bytes(secret.to_vec()).unwrap(),
            Duration::from_secs(24 * 3600),
        )
        .unwrap()
    }

    fn alice() -> Username {
        Username::new("alice").unwrap()
    }

    #[test]
    fn a_token_verifies_until_it_runs_out() {
        let tokens = tokens(&[7; 32]);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let issued = tokens.issue(&alice(), now).unwrap();
        assert_eq!(issued.expires_at, 1_800_000_000 + 24 * 3600);
        let claims = tokens.verify(&issued.token, now).unwrap();
        assert_eq!(claims.username(), Some(alice()));
        assert_eq!(claims.role, "driver");
        let last = now + Duration::from_secs(24 * 3600 - 1);
        assert!(tokens.verify(&issued.token, last).is_ok());
        assert_eq!(
            tokens.verify(&issued.token, last + Duration::from_secs(1)),
            Err(TokenError::Expired {
                at: issued.expires_at
            })
        );
        assert!(!format!("{issued:?}").contains(&issued.token));
    }

    #[test]
    fn tampered_foreign_and_unsigned_tokens_are_refused() {
        let tokens = tokens(&[7; 32]);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let issued = tokens.issue(&alice(), now).unwrap();
        let parts: Vec<&str> = issued.token.split('.').collect();
        // Another driver's name with the old signature.
        let claims = format!(
            r#"{{"sub":"mallory","role":"driver","iat":0,"exp":{}}}"#,
            issued.expires_at
        );
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims),
            parts[2]
        );
        assert!(matches!(
            tokens.verify(&forged, now),
            Err(TokenError::Invalid(_))
        ));
        // `alg: none`, no signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(tokens.verify(&none, now).is_err());
        // Signed with another secret.
        let other = self::tokens(&[8; 32]).issue(&alice(), now).unwrap();
        assert!(tokens.verify(&other.token, now).is_err());
        for junk in ["", "a.b", "a.b.c", "...", &"x".repeat(5000)] {
            assert!(tokens.verify(junk, now).is_err(), "{junk}");
        }
    }
}
