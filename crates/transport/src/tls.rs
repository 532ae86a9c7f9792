//! [`TlsAcceptor`]: the server's certificate chain and key, loaded once and shared by every
//! TLS connection.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::ServerConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Makes the server side of TLS sessions with one certificate chain and key.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads a PEM certificate chain (the server's certificate first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|err| TlsError::Pem {
                path: cert.to_owned(),
                detail: err.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::Pem {
                path: cert.to_owned(),
                detail: "no certificate in the file".into(),
            });
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|err| TlsError::Pem {
            path: key.to_owned(),
            detail: err.to_string(),
        })?;
        Self::new(chain, key_der)
    }

    /// An acceptor for a certificate chain and key already in memory.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        // The provider is named rather than taken from the process default, which rustls
        // refuses to pick when more than one is compiled in.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(TlsError::Rustls)?;
        Ok(TlsAcceptor {
            config: Arc::new(config),
        })
    }

    /// A new server session.
    pub(crate) fn session(&self) -> Result<ServerConnection, TlsError> {
        ServerConnection::new(Arc::clone(&self.config)).map_err(TlsError::Rustls)
    }
}

/// Why TLS could not be set up.
#[derive(Debug)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// rustls refused the certificate or key (a key that does not match the certificate,
    /// say), or could not start a session.
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { path, detail } => write!(f, "cannot load {}: {detail}", path.display()),
            TlsError::Rustls(err) => write!(f, "TLS: {err}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Rustls(err) => Some(err),
            TlsError::Pem { .. } => None,
        }
    }
}
