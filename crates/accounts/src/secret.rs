//! The secret that signs login tokens: read from `auth.jwt_secret_file`, or made on first
//! start and kept in the data directory so that tokens outlive a restart. Never logged.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Fewest bytes a secret file may hold: HS256's key should be at least as long as its
/// 256-bit output.
pub const MIN_SECRET_LEN: usize = 32;
/// The file a generated secret is kept in, inside the data directory.
pub const SECRET_FILE_NAME: &str = "jwt-secret";
/// Random bytes in a generated secret.
const GENERATED_BYTES: usize = 32;

/// Why no secret could be had.
#[derive(Debug)]
pub enum SecretError {
    /// The file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: io::Error,
    },
    /// The file holds fewer than [`MIN_SECRET_LEN`] bytes (surrounding whitespace aside).
    TooShort {
        /// The file.
        path: PathBuf,
    },
    /// The operating system gave no randomness.
    Random(String),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Io { path, error } => {
                write!(f, "JWT secret file {}: {error}", path.display())
            }
            SecretError::TooShort { path } => write!(
                f,
                "JWT secret file {} must hold at least {MIN_SECRET_LEN} bytes",
                path.display()
            ),
            SecretError::Random(why) => write!(f, "no randomness for the JWT secret: {why}"),
        }
    }
}

impl std::error::Error for SecretError {}

/// The token-signing secret. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret([redacted])")
    }
}

impl JwtSecret {
    /// A secret of these bytes, if there are enough of them.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= MIN_SECRET_LEN).then_some(JwtSecret(bytes))
    }

    /// A fresh random secret, kept nowhere: tokens signed with it die with the process.
    pub fn random() -> Result<Self, SecretError> {
        let mut random = [0; GENERATED_BYTES];
        getrandom::fill(&mut random).map_err(|err| SecretError::Random(err.to_string()))?;
        Ok(JwtSecret(random.to_vec()))
    }

    /// The secret's bytes, to sign and verify with.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret in `path` (`auth.jwt_secret_file`): its bytes, surrounding whitespace
    /// aside (so that `openssl rand -base64 48 > file` works).
    pub fn read(path: &Path) -> Result<Self, SecretError> {
        let bytes = fs::read(path).map_err(|error| SecretError::Io {
            path: path.to_owned(),
            error,
        })?;
        let trimmed = bytes.trim_ascii().to_vec();
        JwtSecret::from_bytes(trimmed).ok_or_else(|| SecretError::TooShort {
            path: path.to_owned(),
        })
    }

    /// The secret kept in `data_dir`, made (random, readable by the owner only) on first
    /// start. Returns it and whether it was just made.
    pub fn in_data_dir(data_dir: &Path) -> Result<(Self, bool), SecretError> {
        let path = data_dir.join(SECRET_FILE_NAME);
        match JwtSecret::read(&path) {
            Ok(secret) => return Ok((secret, false)),
            Err(SecretError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {}
            Err(other) => return Err(other),
        }
        let mut random = [0; GENERATED_BYTES];
        getrandom::fill(&mut random).map_err(|err| SecretError::Random(err.to_string()))?;
        let text = URL_SAFE_NO_PAD.encode(random);
        let io = |error| SecretError::Io {
            path: path.clone(),
            error,
        };
        fs::create_dir_all(data_dir).map_err(io)?;
        // `create_new`: two servers starting on one directory cannot both write one; the
        // loser reads the winner's.
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                file.write_all(text.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok((JwtSecret(text.into_bytes()), true))
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                JwtSecret::read(&path).map(|secret| (secret, false))
            }
            Err(error) => Err(io(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_secret_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (made, fresh) = JwtSecret::in_data_dir(dir.path()).unwrap();
        assert!(fresh);
        let (again, fresh) = JwtSecret::in_data_dir(dir.path()).unwrap();
        assert!(!fresh);
        assert_eq!(made.bytes(), again.bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SECRET_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        assert_eq!(format!("{made:?}"), "JwtSecret([redacted])");
    }

    #[test]
    fn a_configured_file_must_hold_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, "  short\n").unwrap();
        assert!(matches!(
            JwtSecret::read(&path),
            Err(SecretError::TooShort { .. })
        ));
        fs::write(&path, format!("{}\n", "k".repeat(40))).unwrap();
        assert_eq!(
            JwtSecret::read(&path).unwrap().bytes(),
            "k".repeat(40).as_bytes()
        );
        assert!(matches!(
            JwtSecret::read(&dir.path().join("missing")),
            Err(SecretError::Io { .. })
        ));
    }
}
