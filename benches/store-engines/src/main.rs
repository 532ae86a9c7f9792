//! Writes per second of the embedded store's journal against SQLite, redb and fjall, on the
//! workload the server gives a store: one small record per reserve and per cancel, written
//! by 1 and by 16 threads at once, each write durable before it returns.
//!
//! Two durability modes, run side by side for every engine:
//!
//! - `always`: a write returns once it is on the disk. Ours: `fsync: always` (group commit).
//!   SQLite: WAL, `synchronous=FULL`, one connection behind a mutex (SQLite takes one writer
//!   at a time; a connection per thread only adds busy-waiting). redb:
//!   `Durability::Immediate` per transaction (one writer at a time). fjall: the write, then
//!   `persist(SyncData)`.
//! - `everysec`: a write returns once the OS has it, synced about once a second. Ours:
//!   `fsync: everysec`. SQLite: WAL, `synchronous=NORMAL` (the WAL is synced at checkpoints,
//!   not every second). redb: `Durability::None` per write and an `Immediate` commit once a
//!   second; *weaker*: redb keeps a non-durable commit in the process's memory, so a killed
//!   process loses up to a second. fjall: its default (each write flushed to the OS) and
//!   `persist(SyncData)` once a second.
//!
//! Rows run one after another in one process, the engines of a row next to each other, so
//! drift in the machine's load hits them alike; compare the ratios.
//!
//! Then recovery: each engine is filled with `--records` reservations (distinct plates, in
//! batches of [`FILL_BATCH`], one record each in our journal), closed, and opened again, and
//! everything it holds is read back into memory, as the server must at start-up (its reads
//! are served from memory). The table gives that time and the size of the files.
//!
//! Usage: `store-engines [--secs N] [--writers 1,16] [--rounds N] [--records N] [--dir DIR]`

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use state::{LotId, LotSpec, ParkingState, Plate, SystemClock};
use store::{EmbeddedStore, Fsync, Options, Store};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// How often the `everysec` rows sync the engines that do not do it themselves.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Always,
    Everysec,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Always => "always",
            Mode::Everysec => "everysec",
        }
    }
}

#[derive(Clone, Copy)]
enum Engine {
    Journal,
    Sqlite,
    Redb,
    Fjall,
}

const ENGINES: [Engine; 4] = [Engine::Journal, Engine::Sqlite, Engine::Redb, Engine::Fjall];

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Journal => "journal",
            Engine::Sqlite => "sqlite",
            Engine::Redb => "redb",
            Engine::Fjall => "fjall",
        }
    }

    fn open(self, mode: Mode, dir: &Path) -> Result<Arc<dyn Target>> {
        Ok(match self {
            Engine::Journal => Arc::new(Journal::open(mode, dir)?),
            Engine::Sqlite => Arc::new(Sqlite::open(mode, dir)?),
            Engine::Redb => Arc::new(Redb::open(mode, dir)?),
            Engine::Fjall => Arc::new(Fjall::open(mode, dir)?),
        })
    }
}

/// One engine set up for a mode: `reserve` stores a plate's record, `cancel` removes it.
trait Target: Send + Sync {
    fn reserve(&self, writer: usize) -> Result<()>;
    fn cancel(&self, writer: usize) -> Result<()>;
    /// Syncs everything written so far (the `everysec` rows' once-a-second sync), for the
    /// engines that do not do it themselves.
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

/// Reservations written before the recovery rows, per transaction where the engine has them.
const FILL_BATCH: usize = 1000;

/// The plate of the `n`th reservation of the recovery rows.
fn fill_key(n: usize) -> String {
    format!("A/R{n}")
}

/// Writes `records` reservations into an engine freshly created in `dir`, durably, and
/// closes it.
fn fill(engine: Engine, records: usize, dir: &Path) -> Result<()> {
    let value = value(0);
    match engine {
        Engine::Journal => {
            let journal = Journal::open(Mode::Everysec, dir)?;
            for n in 0..records {
                journal
                    .store
                    .state()
                    .reserve("A", Plate::parse(&format!("R{n}"))?)?;
            }
            // Dropping the store flushes and syncs.
        }
        Engine::Sqlite => {
            let sqlite = Sqlite::open(Mode::Always, dir)?;
            let mut conn = sqlite.0.lock().map_err(|_| "sqlite mutex poisoned")?;
            for start in (0..records).step_by(FILL_BATCH) {
                let tx = conn.transaction()?;
                {
                    let mut insert = tx.prepare_cached("INSERT INTO r (k, v) VALUES (?1, ?2)")?;
                    for n in start..records.min(start + FILL_BATCH) {
                        insert.execute((fill_key(n), &value))?;
                    }
                }
                tx.commit()?;
            }
        }
        Engine::Redb => {
            let redb = Redb::open(Mode::Always, dir)?;
            for start in (0..records).step_by(FILL_BATCH) {
                redb.write(redb::Durability::Immediate, |table| {
                    for n in start..records.min(start + FILL_BATCH) {
                        table.insert(fill_key(n).as_str(), value.as_slice())?;
                    }
                    Ok(())
                })?;
            }
        }
        Engine::Fjall => {
            let fjall = Fjall::open(Mode::Everysec, dir)?;
            for start in (0..records).step_by(FILL_BATCH) {
                let mut batch = fjall.db.batch();
                for n in start..records.min(start + FILL_BATCH) {
                    batch.insert(&fjall.items, fill_key(n), value.as_slice());
                }
                batch.commit()?;
            }
            fjall.db.persist(fjall::PersistMode::SyncAll)?;
        }
    }
    Ok(())
}

/// Opens what [`fill`] left in `dir` and reads every record into memory; returns how many.
fn recover(engine: Engine, dir: &Path) -> Result<usize> {
    Ok(match engine {
        Engine::Journal => {
            // Opening replays the journal into the state.
            let journal = Journal::open(Mode::Everysec, dir)?;
            let free = journal.store.state().free("A")?;
            (JOURNAL_CAPACITY - free) as usize
        }
        Engine::Sqlite => {
            let sqlite = Sqlite::open_existing(dir)?;
            let conn = sqlite.0.lock().map_err(|_| "sqlite mutex poisoned")?;
            let mut select = conn.prepare("SELECT k, v FROM r")?;
            let mut rows = select.query([])?;
            let mut held = HashMap::new();
            while let Some(row) = rows.next()? {
                held.insert(row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?);
            }
            held.len()
        }
        Engine::Redb => {
            use redb::{ReadableDatabase, ReadableTable};
            let db = redb::Database::open(dir.join("db.redb"))?;
            let tx = db.begin_read()?;
            let table = tx.open_table(REDB_TABLE)?;
            let mut held = HashMap::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                held.insert(k.value().to_owned(), v.value().to_vec());
            }
            held.len()
        }
        Engine::Fjall => {
            let fjall = Fjall::open(Mode::Everysec, dir)?;
            let mut held = HashMap::new();
            for guard in fjall.items.iter() {
                let (k, v) = guard.into_inner()?;
                held.insert(k.to_vec(), v.to_vec());
            }
            held.len()
        }
    })
}

/// Bytes of every file under `dir`.
fn size_of(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            size_of(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn key(writer: usize) -> String {
    format!("A/W{writer}")
}

/// What a reservation record holds in our journal: lot, plate, wall-clock expiry.
fn value(writer: usize) -> Vec<u8> {
    let until_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() + 300_000);
    format!(r#"{{"Reservation":{{"lot":"A","plate":"W{writer}","until_ms":{until_ms}}}}}"#)
        .into_bytes()
}

/// The benchmark lot's capacity: room for every reservation of the recovery rows.
const JOURNAL_CAPACITY: u32 = 10_000_000;

struct Journal {
    store: EmbeddedStore,
    plates: Vec<Plate>,
}

impl Journal {
    fn open(mode: Mode, dir: &Path) -> Result<Journal> {
        let lots = [LotSpec::new(LotId::new("A")?, JOURNAL_CAPACITY)];
        let state = ParkingState::new(lots, Duration::from_secs(300), Arc::new(SystemClock))?;
        let fsync = match mode {
            Mode::Always => Fsync::Always,
            Mode::Everysec => Fsync::Everysec,
        };
        let options = Options {
            fsync,
            ..Options::new(dir)
        };
        let plates = (0..MAX_WRITERS)
            .map(|writer| Plate::parse(&format!("W{writer}")))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Journal {
            store: EmbeddedStore::open(Arc::new(state), options)?,
            plates,
        })
    }
}

impl Target for Journal {
    fn reserve(&self, writer: usize) -> Result<()> {
        self.store.state().reserve("A", self.plates[writer])?;
        Ok(())
    }

    fn cancel(&self, writer: usize) -> Result<()> {
        self.store.state().cancel("A", self.plates[writer])?;
        Ok(())
    }
}

struct Sqlite(Mutex<rusqlite::Connection>);

impl Sqlite {
    fn open(mode: Mode, dir: &Path) -> Result<Sqlite> {
        let conn = rusqlite::Connection::open(dir.join("db.sqlite"))?;
        let synchronous = match mode {
            Mode::Always => "FULL",
            Mode::Everysec => "NORMAL",
        };
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.execute_batch("CREATE TABLE r (k TEXT PRIMARY KEY, v BLOB NOT NULL)")?;
        Ok(Sqlite(Mutex::new(conn)))
    }

    fn open_existing(dir: &Path) -> Result<Sqlite> {
        let conn = rusqlite::Connection::open(dir.join("db.sqlite"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Ok(Sqlite(Mutex::new(conn)))
    }

    fn run(&self, sql: &str, params: impl rusqlite::Params) -> Result<()> {
        let conn = self.0.lock().map_err(|_| "sqlite mutex poisoned")?;
        conn.prepare_cached(sql)?.execute(params)?;
        Ok(())
    }
}

impl Target for Sqlite {
    fn reserve(&self, writer: usize) -> Result<()> {
        self.run(
            "INSERT OR REPLACE INTO r (k, v) VALUES (?1, ?2)",
            (key(writer), value(writer)),
        )
    }

    fn cancel(&self, writer: usize) -> Result<()> {
        self.run("DELETE FROM r WHERE k = ?1", (key(writer),))
    }
}

const REDB_TABLE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("r");

struct Redb {
    db: redb::Database,
    durability: redb::Durability,
}

impl Redb {
    fn open(mode: Mode, dir: &Path) -> Result<Redb> {
        let durability = match mode {
            Mode::Always => redb::Durability::Immediate,
            Mode::Everysec => redb::Durability::None,
        };
        Ok(Redb {
            db: redb::Database::create(dir.join("db.redb"))?,
            durability,
        })
    }

    fn write(
        &self,
        durability: redb::Durability,
        op: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(durability)?;
        {
            let mut table = tx.open_table(REDB_TABLE)?;
            op(&mut table)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Target for Redb {
    fn reserve(&self, writer: usize) -> Result<()> {
        self.write(self.durability, |table| {
            table.insert(key(writer).as_str(), value(writer).as_slice())?;
            Ok(())
        })
    }

    fn cancel(&self, writer: usize) -> Result<()> {
        self.write(self.durability, |table| {
            table.remove(key(writer).as_str())?;
            Ok(())
        })
    }

    fn sync(&self) -> Result<()> {
        self.write(redb::Durability::Immediate, |_| Ok(()))
    }
}

struct Fjall {
    db: fjall::Database,
    items: fjall::Keyspace,
    mode: Mode,
}

impl Fjall {
    fn open(mode: Mode, dir: &Path) -> Result<Fjall> {
        let db = fjall::Database::builder(dir.join("fjall")).open()?;
        let items = db.keyspace("r", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, items, mode })
    }

    fn settle(&self) -> Result<()> {
        if self.mode == Mode::Always {
            self.db.persist(fjall::PersistMode::SyncData)?;
        }
        Ok(())
    }
}

impl Target for Fjall {
    fn reserve(&self, writer: usize) -> Result<()> {
        self.items.insert(key(writer), value(writer))?;
        self.settle()
    }

    fn cancel(&self, writer: usize) -> Result<()> {
        self.items.remove(key(writer))?;
        self.settle()
    }

    fn sync(&self) -> Result<()> {
        self.db.persist(fjall::PersistMode::SyncData)?;
        Ok(())
    }
}

/// Most writer threads a row may have (one plate each).
const MAX_WRITERS: usize = 64;

/// Runs `writers` threads reserving and cancelling their plate for `secs`; returns writes
/// per second.
fn row(engine: Engine, mode: Mode, writers: usize, secs: f64, dir: &Path) -> Result<f64> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let target = engine.open(mode, dir)?;
    let stop = Arc::new(AtomicBool::new(false));
    let syncer = (mode == Mode::Everysec).then(|| {
        let (target, stop) = (Arc::clone(&target), Arc::clone(&stop));
        thread::spawn(move || -> Result<()> {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(SYNC_INTERVAL);
                target.sync()?;
            }
            Ok(())
        })
    });
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let target = Arc::clone(&target);
            thread::spawn(move || -> Result<u64> {
                let mut writes = 0;
                while Instant::now() < until {
                    target.reserve(writer)?;
                    target.cancel(writer)?;
                    writes += 2;
                }
                Ok(writes)
            })
        })
        .collect();
    let mut writes = 0;
    for thread in threads {
        writes += thread.join().map_err(|_| "a writer panicked")??;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(syncer) = syncer {
        syncer.join().map_err(|_| "the syncer panicked")??;
    }
    drop(target);
    let _ = std::fs::remove_dir_all(dir);
    Ok(writes as f64 / secs)
}

struct Args {
    secs: f64,
    writers: Vec<usize>,
    rounds: usize,
    records: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        secs: 5.0,
        writers: vec![1, 16],
        rounds: 1,
        records: 100_000,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => args.secs = value()?.parse()?,
            "--rounds" => args.rounds = value()?.parse()?,
            "--records" => args.records = value()?.parse()?,
            "--dir" => args.dir = value()?.into(),
            "--writers" => {
                args.writers = value()?
                    .split([',', ' '])
                    .filter(|part| !part.is_empty())
                    .map(str::parse)
                    .collect::<std::result::Result<_, _>>()?;
            }
            _ => {
                return Err(format!(
                    "unknown argument {flag:?}; usage: store-engines [--secs N] \
                     [--writers 1,16] [--rounds N] [--records N] [--dir DIR]"
                )
                .into());
            }
        }
    }
    if let Some(&too_many) = args.writers.iter().find(|&&w| w == 0 || w > MAX_WRITERS) {
        return Err(format!("--writers {too_many}: 1 to {MAX_WRITERS}").into());
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let dir = args
        .dir
        .join(format!("store-engines-{}", std::process::id()));
    print!("{:>5} {:>9} {:>7}", "round", "mode", "writers");
    for engine in ENGINES {
        print!(" {:>10}", format!("{}/s", engine.name()));
    }
    for engine in &ENGINES[1..] {
        print!(" {:>8}", format!("{}/ours", engine.name()));
    }
    println!();
    for round in 1..=args.rounds {
        for mode in [Mode::Always, Mode::Everysec] {
            for &writers in &args.writers {
                let mut rates = Vec::new();
                for engine in ENGINES {
                    rates.push(row(engine, mode, writers, args.secs, &dir)?);
                }
                print!("{round:>5} {:>9} {writers:>7}", mode.name());
                for rate in &rates {
                    print!(" {rate:>10.0}");
                }
                for rate in &rates[1..] {
                    print!(" {:>8.2}", rate / rates[0]);
                }
                println!();
            }
        }
    }
    println!();
    println!(
        "{:>8} {:>9} {:>12} {:>10} {:>12}",
        "engine", "records", "recovery ms", "MB", "bytes/record"
    );
    for engine in ENGINES {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        fill(engine, args.records, &dir)?;
        let bytes = size_of(&dir)?;
        let started = Instant::now();
        let held = recover(engine, &dir)?;
        let took = started.elapsed();
        if held != args.records {
            return Err(format!("{}: recovered {held} of {}", engine.name(), args.records).into());
        }
        println!(
            "{:>8} {:>9} {:>12.0} {:>10.1} {:>12.0}",
            engine.name(),
            args.records,
            took.as_secs_f64() * 1000.0,
            bytes as f64 / 1e6,
            bytes as f64 / args.records as f64
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
