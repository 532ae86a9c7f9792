//! The configured keys: their ids, roles, lots and token hashes, as the config file has them.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use state::{LotId, shown};

/// Longest key id.
pub const MAX_KEY_ID_LEN: usize = 64;

/// A key's name, shown in replies (`OK kiosk-1 client`), logs and as a reservation's owner:
/// 1 to 64 characters of `A-Z a-z 0-9 _ - .`, starting with a letter. The first letter keeps
/// `OK <keyId>` apart from the numeric `OK <free>` and `OK <subId>` replies of the line ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::BadId(id.to_owned());
        if id.is_empty() || id.len() > MAX_KEY_ID_LEN {
            return Err(bad());
        }
        if !id.starts_with(|c: char| c.is_ascii_alphabetic())
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(bad());
        }
        Ok(KeyId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = KeyError;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        KeyId::new(&id)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> Self {
        id.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a key may do; see the role table in the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: lots, availability, subscriptions.
    Viewer,
    /// A viewer that also reserves, and cancels its own reservations.
    Client,
    /// Reports occupancy for its lots.
    Sensor,
    /// Everything.
    Operator,
}

impl Role {
    /// The role as configured and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Client => "client",
            Role::Sensor => "sensor",
            Role::Operator => "operator",
        }
    }

    /// The role called `name`, as configured.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Viewer, Role::Client, Role::Sensor, Role::Operator]
            .into_iter()
            .find(|role| role.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured key: `{"id": "gate-A", "role": "sensor", "lots": ["A"], "sha256": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key's name.
    pub id: KeyId,
    /// What it may do.
    pub role: Role,
    /// For a `sensor` key, the lots it may update (required); no other role takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lots: Option<Vec<LotId>>,
    /// The SHA-256 of the token, as 64 hex digits (either case).
    pub sha256: String,
}

impl KeyConfig {
    /// The hash as bytes, or why it is not 64 hex digits.
    pub(crate) fn digest(&self) -> Result<[u8; 32], KeyError> {
        let bad = || KeyError::BadHash {
            id: self.id.clone(),
        };
        let hex = self.sha256.as_bytes();
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut digest = [0; 32];
        for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(digest)
    }
}

/// The `auth` section of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The keys; with none, every port is open (and protected mode keeps it on loopback).
    pub keys: Vec<KeyConfig>,
}

impl AuthConfig {
    /// Checks what the types alone do not: hashes are hex, ids and hashes unique, `lots`
    /// given exactly for sensor keys.
    pub fn validate(&self) -> Result<(), KeyError> {
        let mut ids = HashSet::new();
        let mut digests = HashSet::new();
        for key in &self.keys {
            let digest = key.digest()?;
            if !ids.insert(&key.id) {
                return Err(KeyError::DuplicateId(key.id.clone()));
            }
            // Two keys with one token could not be told apart.
            if !digests.insert(digest) {
                return Err(KeyError::DuplicateHash(key.id.clone()));
            }
            match (&key.lots, key.role) {
                (Some(lots), Role::Sensor) if !lots.is_empty() => {}
                (_, Role::Sensor) => return Err(KeyError::SensorWithoutLots(key.id.clone())),
                (Some(_), role) => {
                    return Err(KeyError::LotsNotForRole {
                        id: key.id.clone(),
                        role,
                    });
                }
                (None, _) => {}
            }
        }
        Ok(())
    }
}

/// Why a configured key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The id breaks the id rules.
    BadId(String),
    /// The hash is not 64 hex digits.
    BadHash {
        /// The key.
        id: KeyId,
    },
    /// Two keys have this id.
    DuplicateId(KeyId),
    /// This key has the same hash (so the same token) as an earlier one.
    DuplicateHash(KeyId),
    /// A sensor key lists no lots.
    SensorWithoutLots(KeyId),
    /// A key of another role lists lots.
    LotsNotForRole {
        /// The key.
        id: KeyId,
        /// Its role.
        role: Role,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::BadId(id) => write!(
                f,
                "key id {} must be 1-{MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 _ - ., \
                 starting with a letter",
                shown(id)
            ),
            KeyError::BadHash { id } => write!(
                f,
                "key {id}: sha256 must be 64 hex digits (the SHA-256 of the token; \
                 `parking-server keygen` prints it)"
            ),
            KeyError::DuplicateId(id) => write!(f, "key id {id} appears twice"),
            KeyError::DuplicateHash(id) => {
                write!(f, "key {id} has the same sha256 as an earlier key")
            }
            KeyError::SensorWithoutLots(id) => {
                write!(f, "sensor key {id} needs \"lots\": the lots it may update")
            }
            KeyError::LotsNotForRole { id, role } => {
                write!(f, "key {id}: \"lots\" is only for sensor keys, not {role}")
            }
        }
    }
}

impl std::error::Error for KeyError {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(json: &str) -> KeyConfig {
        serde_json::from_str(json).unwrap()
    }

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn ids_start_with_a_letter_and_use_few_characters() {
        for good in ["gate-A", "kiosk_1", "ops.eu", "a"] {
            assert!(KeyId::new(good).is_ok(), "{good}");
        }
        for bad in ["", "1gate", "-x", "a b", "ä", &"x".repeat(65)] {
            assert!(KeyId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn configs_are_checked() {
        let sensor = key(&format!(
            r#"{{"id":"gate-A","role":"sensor","lots":["A"],"sha256":"{HASH}"}}"#
        ));
        assert_eq!(sensor.digest().unwrap()[0], 0x9f);
        let config = |keys: Vec<KeyConfig>| AuthConfig { keys }.validate();
        assert_eq!(config(vec![sensor.clone()]), Ok(()));
        assert_eq!(
            config(vec![sensor.clone(), sensor.clone()]),
            Err(KeyError::DuplicateId(sensor.id.clone()))
        );
        let mut other = sensor.clone();
        other.id = KeyId::new("gate-B").unwrap();
        assert_eq!(
            config(vec![sensor.clone(), other.clone()]),
            Err(KeyError::DuplicateHash(other.id.clone()))
        );
        let mut no_lots = sensor.clone();
        no_lots.lots = Some(Vec::new());
        assert!(matches!(
            config(vec![no_lots]),
            Err(KeyError::SensorWithoutLots(_))
        ));
        let mut viewer = sensor.clone();
        viewer.role = Role::Viewer;
        assert!(matches!(
            config(vec![viewer]),
            Err(KeyError::LotsNotForRole { .. })
        ));
        let mut short = sensor.clone();
        short.sha256 = "abc".into();
        assert!(matches!(config(vec![short]), Err(KeyError::BadHash { .. })));
        let mut not_hex = sensor;
        not_hex.sha256 = "z".repeat(64);
        assert!(matches!(
            config(vec![not_hex]),
            Err(KeyError::BadHash { .. })
        ));
        assert!(
            serde_json::from_str::<KeyConfig>(r#"{"id":"x","role":"admin","sha256":"00"}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<KeyConfig>(
                r#"{"id":"x","role":"viewer","sha256":"00","colour":1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn roles_have_their_wire_names() {
        for role in [Role::Viewer, Role::Client, Role::Sensor, Role::Operator] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
