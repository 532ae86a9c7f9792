//! [`Access`]: what a client brings besides the address: TLS ([`TlsClient`]) and a key's token.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use framing::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// How a client reaches a server that has access control or TLS on: the default is plain TCP
/// and no token, which is what a server without either wants.
#[derive(Clone, Default)]
pub struct Access {
    pub(crate) tls: Option<TlsClient>,
    pub(crate) token: Option<Secret<'static>>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("tls", &self.tls.is_some())
            .field("token", &self.token)
            .finish()
    }
}

impl Access {
    /// Plain TCP, no token.
    pub fn none() -> Self {
        Access::default()
    }

    /// Authenticates each connection with `token` right after connecting.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret::new(token.into()));
        self
    }

    /// Speaks TLS, verifying the server's certificate as `tls` says.
    pub fn with_tls(mut self, tls: TlsClient) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_ref().map(Secret::expose)
    }

    /// Whether connections speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// The certificates a TLS client trusts: a CA file (for a private CA, the usual case for a
/// parking deployment) or the system's roots.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient").finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trusts the certificates in the PEM file `ca` (a CA, or the server's own certificate if
    /// it is self-signed).
    pub fn from_ca_file(ca: &Path) -> Result<Self, TlsSetupError> {
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|err| TlsSetupError::Ca {
                path: ca.to_owned(),
                detail: err.to_string(),
            })?;
        Self::trusting(certs).map_err(|detail| TlsSetupError::Ca {
            path: ca.to_owned(),
            detail,
        })
    }

    /// Trusts the certificates in `pem` (PEM text), for tests and embedding.
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, TlsSetupError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| TlsSetupError::Ca {
                path: PathBuf::from("<pem>"),
                detail: err.to_string(),
            })?;
        Self::trusting(certs).map_err(|detail| TlsSetupError::Ca {
            path: PathBuf::from("<pem>"),
            detail,
        })
    }

    /// Trusts the operating system's root certificates.
    pub fn system_roots() -> Result<Self, TlsSetupError> {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            return Err(TlsSetupError::NoSystemRoots(
                found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), ToString::to_string),
            ));
        }
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(found.certs);
        Self::with_roots(roots).map_err(TlsSetupError::NoSystemRoots)
    }

    fn trusting(certs: Vec<CertificateDer<'static>>) -> Result<Self, String> {
        if certs.is_empty() {
            return Err("no certificate in the file".to_owned());
        }
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|err| err.to_string())?;
        }
        Self::with_roots(roots)
    }

    fn with_roots(roots: RootCertStore) -> Result<Self, String> {
        // Named, not the process default, which rustls refuses to pick when several
        // providers are compiled in.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// A client session for a server called `host` (a name or an IP address, which the
    /// certificate must name).
    pub(crate) fn session(&self, host: &str) -> Result<ClientConnection, String> {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|err| format!("{host:?} cannot be checked against a certificate: {err}"))?
            .to_owned();
        ClientConnection::new(Arc::clone(&self.config), name).map_err(|err| err.to_string())
    }
}

/// Why a TLS client could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetupError {
    /// The CA file could not be read or holds no usable certificate.
    Ca {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// No `--ca` was given and the system has no usable root certificates.
    NoSystemRoots(String),
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSetupError::Ca { path, detail } => {
                write!(f, "cannot use CA file {}: {detail}", path.display())
            }
            TlsSetupError::NoSystemRoots(detail) => write!(
                f,
                "no system root certificates ({detail}); give the server's CA with --ca FILE"
            ),
        }
    }
}

impl std::error::Error for TlsSetupError {}
