//! Support for the workspace's integration tests, so that each test file does not grow its own
//! copy: starting a server on ephemeral ports, waiting for a condition with a deadline
//! instead of sleeping, connecting from a chosen local address (another 127.0.0.0/8
//! address stands for another client machine), temporary data directories ([`TempDir`]),
//! a TLS certificate made at run time ([`TestCert`]), access control with test keys
//! ([`keys`]), and a throwaway PostgreSQL cluster ([`pg::TempPostgres`]) for the tests of the
//! PostgreSQL store.
//!
//! Only tests depend on this crate (as a dev-dependency); it may panic, since a panic is how a
//! test fails.
//!
//! # Layout
//! - this file: servers, waiting, connecting from another address, keys, certificates.
//! - `http`: [`http::Http`], a raw HTTP/1.1 client that reads responses and event streams.
//! - `pg`: [`pg::TempPostgres`].

#![forbid(unsafe_code)]
#![allow(clippy::expect_used)]

pub mod http;
pub mod pg;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use auth::{AuthConfig, KeyConfig, KeyId, Role, token_hash};
use server::{Config, RunningServer, Server, StartError, TlsConfig};
use shutdown::ShutdownHandle;
use socket2::{Domain, Socket, Type};

/// Generous bound for anything a test waits on; only reached when the test is failing.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Access control with one key per `(id, role)`, for every lot; a key's token is
/// `token-<id>`.
pub fn keys(keys: &[(&str, Role)]) -> AuthConfig {
    AuthConfig {
        jwt_secret_file: None,
        keys: keys
            .iter()
            .map(|&(id, role)| KeyConfig {
                id: KeyId::new(id).expect("a test key's id is valid"),
                role,
                lots: None,
                sha256: token_hash(&format!("token-{id}")),
            })
            .collect(),
    }
}

/// A configuration for tests of the tools: every port ephemeral on 127.0.0.1, and pools sized
/// for a 2-core machine that runs many tests at once.
pub fn small_config() -> Config {
    Config {
        thread_pool_size: 2,
        sensor_pool_size: 1,
        notifier_threads: 1,
        shutdown_grace: Duration::from_millis(200),
        ..Config::ephemeral()
    }
}

/// Starts a server with `config` (its shutdown handle is the server's own; drop or shut down
/// the returned server to stop it). Logging goes to the test harness's capture.
pub fn start(config: Config) -> RunningServer {
    let _ = env_logger::builder().is_test(true).try_init();
    Server::new(config)
        .start(ShutdownHandle::new())
        .expect("the test server starts")
}

/// Starts a server with [`small_config`] adjusted by `tweak`, on ports that were just in use:
/// while a port is still taken (a reconnecting client on this machine may hold it for a
/// moment, connected to itself), binding is retried until [`DEADLINE`].
pub fn restart_server(tweak: impl Fn(&mut Config)) -> RunningServer {
    let _ = env_logger::builder().is_test(true).try_init();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut config = small_config();
        tweak(&mut config);
        match Server::new(config).start(ShutdownHandle::new()) {
            Ok(running) => return running,
            Err(StartError::Bind(err)) if Instant::now() < deadline => {
                log::debug!("restart: {err}; retrying");
                thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("the test server does not restart: {err}"),
        }
    }
}

/// Starts a server with [`small_config`], adjusted by `tweak`.
pub fn start_server(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = small_config();
    tweak(&mut config);
    start(config)
}

/// Polls `condition` until it holds, failing the test if [`DEADLINE`] passes first.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh directory under the system's temporary directory, removed with everything in it
/// when dropped. Tests keep their data directories here, never in the repository's `data/`.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates an empty directory whose name starts with `name`.
    pub fn new(name: &str) -> TempDir {
        static CREATED: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "parking-{name}-{}-{}",
            std::process::id(),
            CREATED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temporary directory can be created");
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connects to `addr` from the local address `from` (for example `127.0.0.2`), which
/// `std::net` cannot do: it always lets the kernel pick the source address.
pub fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .expect("binds to the local address");
    socket.connect(&addr.into()).expect("connects");
    socket.into()
}

/// An address on 127.0.0.1 where nothing listens, held for as long as the returned socket
/// lives: the socket is bound but never listens, so a connection to it is refused, and no
/// other test's server can be given its port meanwhile (as a port bound and dropped can be).
pub fn refused_port() -> (Socket, SocketAddr) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("binds to 127.0.0.1");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .expect("its address");
    (socket, addr)
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, made fresh with rcgen: PEM files
/// in a directory of its own (removed on drop) for the server's `tls`, and the certificate's
/// PEM text for a client to trust.
pub struct TestCert {
    dir: PathBuf,
    /// The certificate's PEM file.
    pub cert: PathBuf,
    /// The private key's PEM file.
    pub key: PathBuf,
    /// The certificate as PEM text.
    pub pem: String,
}

impl TestCert {
    /// Makes the certificate and writes its files.
    pub fn new() -> TestCert {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("rcgen makes a certificate");
        let dir = std::env::temp_dir().join(format!(
            "parking-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temp directory");
        let pem = made.cert.pem();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &pem).expect("writes the certificate");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("writes the key");
        TestCert {
            dir,
            cert,
            key,
            pem,
        }
    }

    /// The server's `tls` setting for this certificate.
    pub fn config(&self) -> TlsConfig {
        TlsConfig {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

impl Default for TestCert {
    fn default() -> Self {
        TestCert::new()
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
