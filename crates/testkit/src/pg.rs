//! A throwaway PostgreSQL cluster for tests: `initdb` into a fresh temporary directory and
//! `pg_ctl` on a free port, with its socket in that directory, stopped and removed on drop.
//!
//! The binaries are found on `PATH` or under `/usr/lib/postgresql/*/bin` (Debian's
//! `postgresql` package). `initdb` refuses to run as root, so as root (CI) the cluster runs as
//! the unprivileged `postgres` user through `runuser`, in a directory that user owns. Where
//! PostgreSQL is missing, [`TempPostgres::start`] prints one line saying how to get it and
//! returns `None` (the test then skips), except under `CI=true`, where a missing PostgreSQL
//! fails the test: CI must run them.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The unprivileged user a cluster runs as when the tests run as root.
const RUN_AS: &str = "postgres";

/// A running throwaway cluster.
#[derive(Debug)]
pub struct TempPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    settings: Vec<String>,
    as_root: bool,
}

impl TempPostgres {
    /// Starts a cluster tuned for tests (`fsync=off`: a process crash loses nothing, only a
    /// machine crash would); `None` when PostgreSQL is not installed (see the module doc).
    pub fn start() -> Option<TempPostgres> {
        TempPostgres::start_with(&["fsync=off"])
    }

    /// Starts a cluster with these extra `name=value` settings (benchmarks want `fsync=on`).
    pub fn start_with(settings: &[&str]) -> Option<TempPostgres> {
        let Some(bin) = find_bin() else {
            let advice = "PostgreSQL tests skipped: no initdb on PATH or under \
                          /usr/lib/postgresql/*/bin (install Debian's `postgresql` package)";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{advice}; under CI=true they must run"
            );
            let _ = writeln!(std::io::stderr(), "\n*** {advice} ***\n");
            return None;
        };
        let as_root = running_as_root();
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).expect("creates the cluster's directory");
        if as_root {
            run(Command::new("chown").args([RUN_AS, path(&dir)]), "chown");
        }
        let mut cluster = TempPostgres {
            dir,
            bin,
            port: 0,
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
            as_root,
        };
        let data = cluster.data();
        let mut initdb = cluster.command("initdb");
        initdb.args([
            "-D",
            path(&data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
        ]);
        initdb.args(["--locale=C", "--no-sync"]);
        run(&mut initdb, "initdb");
        cluster.boot();
        Some(cluster)
    }

    /// The URL to connect to it (as the superuser `postgres`, database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new client connection, for a test to look at or change the tables.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connects to the cluster")
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop(&self) {
        let mut stop = self.command("pg_ctl");
        stop.args(["-D", path(&self.data()), "-m", "immediate", "-w", "stop"]);
        run(&mut stop, "pg_ctl stop");
    }

    /// Starts it again after [`TempPostgres::stop`], on the same port.
    pub fn start_again(&mut self) {
        self.boot();
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts the server; on a fresh cluster, on a free port (retried if the port is taken
    /// in between).
    fn boot(&mut self) {
        let keep_port = self.port != 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if !keep_port {
                self.port = free_port();
            }
            let mut options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
                self.port,
                path(&self.dir)
            );
            for setting in &self.settings {
                options.push_str(&format!(" -c {setting}"));
            }
            let mut start = self.command("pg_ctl");
            let log = self.dir.join("server.log");
            start.args(["-D", path(&self.data()), "-l", path(&log), "-w", "-t", "60"]);
            start.args(["-o", &options, "start"]);
            let status = start
                .stdout(Stdio::null())
                .status()
                .expect("runs pg_ctl start");
            if status.success() {
                return;
            }
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                Instant::now() < deadline && log.contains("could not bind"),
                "pg_ctl start failed ({status}):\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A command running one of the cluster's binaries, as the unprivileged user if root.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", RUN_AS, "--"]).arg(program);
            command.current_dir(&self.dir);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.args(["-D", path(&self.data()), "-m", "immediate", "-w", "stop"]);
        let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {what}: {err}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, else the newest under
/// `/usr/lib/postgresql`.
fn find_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    // Newest last: versions are whole numbers (15, 16, ...).
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str()?.parse::<u32>().ok())
    });
    versions.pop()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            Some(line.split_whitespace().nth(1)? == "0")
        })
        .unwrap_or(false)
}

/// A fresh directory name under the system's temporary directory.
fn temp_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    std::env::temp_dir().join(format!(
        "parking-pg-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binds an ephemeral port")
        .port()
}
