//! The node's link to the database for writes: a pool of connections, each with the
//! statements it has prepared, and whether the database is reachable. While it is known not
//! to be, writes are refused at once instead of each waiting out the timeout.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use postgres::types::{FromSql, ToSql, Type};
use postgres::{Client, Config, NoTls, Row, Statement};
use r2d2::{ManageConnection, Pool};
use r2d2_postgres::PostgresConnectionManager;
use state::Unavailable;

use crate::{OpenError, PgOptions};

/// Statements one pooled connection keeps prepared, at most: the store's statements are a
/// fixed few, so this only bounds a caller that would build statement texts on the fly.
const MAX_PREPARED: usize = 64;

/// Why writes are refused after [`Link::close`].
const CLOSED: &str = "the server is stopping";

/// The connection settings every connection of a node uses: `options.timeout` bounds the
/// connect, the statement (server side) and unacknowledged sends (a dead host or a
/// partition), so no write waits longer than that for a database that does not answer.
pub(crate) fn client_config(options: &PgOptions) -> Result<Config, OpenError> {
    let mut config: Config = options.url.parse().map_err(OpenError::Url)?;
    let millis = options.timeout.as_millis().max(1);
    // `parking.announce`: this node sends each write's announcement itself once the write
    // has committed (migration 0004, `crate::announce`).
    let ours = format!("-c statement_timeout={millis} -c parking.announce=after_commit");
    let server_options = match config.get_options() {
        Some(given) => format!("{given} {ours}"),
        None => ours,
    };
    config
        .options(&server_options)
        .connect_timeout(options.timeout)
        .tcp_user_timeout(options.timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5));
    if config.get_application_name().is_none() {
        config.application_name("parking-server");
    }
    Ok(config)
}

/// The pool and the database's reachability.
pub(crate) struct Link {
    config: Config,
    pool_size: u32,
    timeout: Duration,
    /// Replaced by a fresh one after an outage, so that no write draws a connection that
    /// died with the old server process.
    pool: RwLock<Pool<Manager>>,
    /// Why writes are refused now; `None` while the database is reachable.
    down: Mutex<Option<String>>,
}

impl Link {
    pub(crate) fn new(config: Config, options: &PgOptions) -> Link {
        let pool = build_pool(&config, options.pool_size, options.timeout);
        Link {
            config,
            pool_size: options.pool_size,
            timeout: options.timeout,
            pool: RwLock::new(pool),
            down: Mutex::new(None),
        }
    }

    /// The settings of this node's connections, for the listening thread's own.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// How long anything waits for the database.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one statement that returns one row, on a pooled connection, as a statement that
    /// connection has prepared: after its first time, a write is one round trip that the
    /// server neither parses nor plans (what `pgbench -M prepared` sends).
    pub(crate) fn query_one(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Row, Unavailable> {
        self.with_prepared(|connection| connection.query_one(sql, params))
    }

    /// Runs `work` on a pooled connection, unless the database is known to be unreachable.
    /// A connection-level failure marks it so.
    pub(crate) fn with_connection<R>(
        &self,
        work: impl FnOnce(&mut postgres::Client) -> Result<R, postgres::Error>,
    ) -> Result<R, Unavailable> {
        self.with_prepared(|connection| work(&mut connection.client))
    }

    fn with_prepared<R>(
        &self,
        work: impl FnOnce(&mut Prepared) -> Result<R, postgres::Error>,
    ) -> Result<R, Unavailable> {
        if let Some(why) = self.down_reason() {
            return Err(Unavailable(why));
        }
        let pool = self.pool.read().clone();
        // A pool that cannot hand out a connection in time is busy or cannot connect; the
        // listening thread finds out which (its own connection fails if the server is
        // gone), so this alone does not mark the database down.
        let mut connection = pool.get().map_err(|err| {
            log::debug!("no PostgreSQL connection: {err}");
            Unavailable(format!(
                "PostgreSQL: no connection within {} ms",
                self.timeout.as_millis()
            ))
        })?;
        work(&mut connection).map_err(|err| self.failed(&err))
    }

    /// Why writes are refused, if they are.
    pub(crate) fn down_reason(&self) -> Option<String> {
        self.down.lock().clone()
    }

    /// Refuses writes from now on, for `why`; logged once per outage.
    pub(crate) fn mark_down(&self, why: &str) {
        let mut down = self.down.lock();
        if down.is_none() {
            log::warn!(
                "PostgreSQL unreachable ({why}): refusing writes, serving reads from the copy"
            );
            *down = Some(format!("PostgreSQL unreachable: {why}"));
        }
    }

    /// Takes writes again, on a fresh pool, once a connection from it works. Called by the
    /// listening thread after it has reconnected and resynchronised.
    pub(crate) fn mark_up(&self) -> Result<(), postgres::Error> {
        let pool = build_pool(&self.config, self.pool_size, self.timeout);
        // Proves the database takes new connections before any write relies on it.
        let mut client = self.config.connect(NoTls)?;
        client.is_valid(self.timeout)?;
        drop(client);
        let mut down = self.down.lock();
        if down.as_deref() == Some(CLOSED) {
            return Ok(());
        }
        *self.pool.write() = pool;
        if down.take().is_some() {
            log::info!("PostgreSQL reachable again: taking writes");
        }
        Ok(())
    }

    /// Refuses every later write; the store is closing.
    pub(crate) fn close(&self) {
        *self.down.lock() = Some(CLOSED.to_owned());
    }

    /// Whether [`Link::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.down.lock().as_deref() == Some(CLOSED)
    }

    /// Sorts a failed statement: one that lost its connection marks the database down.
    fn failed(&self, err: &postgres::Error) -> Unavailable {
        let why = describe(err);
        if is_connection_error(err) {
            self.mark_down(&why);
        } else {
            log::error!("PostgreSQL refused a statement: {why}");
        }
        // The outcome of a statement whose connection died while it ran is unknown: it may
        // have committed. A retry is safe all the same (a reserve answers "already
        // reserved", a cancel "not found"); docs/scaling.md says so.
        Unavailable(format!("PostgreSQL: {why}"))
    }
}

fn build_pool(config: &Config, size: u32, timeout: Duration) -> Pool<Manager> {
    Pool::builder()
        .max_size(size)
        // A checkout test costs a round trip per write; a dead connection is found by the
        // statement itself instead, and the pool is replaced after an outage.
        .test_on_check_out(false)
        .connection_timeout(timeout.max(Duration::from_millis(1)))
        // Failed connects are logged once per outage by `mark_down`, not once per attempt.
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build_unchecked(Manager(PostgresConnectionManager::new(
            config.clone(),
            NoTls,
        )))
}

/// r2d2_postgres's manager, whose connections also keep the statements they prepared.
#[derive(Debug)]
struct Manager(PostgresConnectionManager<NoTls>);

impl ManageConnection for Manager {
    type Connection = Prepared;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Prepared, postgres::Error> {
        Ok(Prepared {
            client: self.0.connect()?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, connection: &mut Prepared) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut connection.client)
    }

    fn has_broken(&self, connection: &mut Prepared) -> bool {
        self.0.has_broken(&mut connection.client)
    }
}

/// A pooled connection and the statements it has prepared, by their text. A prepared
/// statement belongs to its connection, so the pool's connections each keep their own.
pub(crate) struct Prepared {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Prepared {
    /// Runs `sql` as this connection's prepared statement, preparing it the first time.
    fn query_one(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Row, postgres::Error> {
        let types: Vec<Type> = params.iter().map(|(_, ty)| ty.clone()).collect();
        let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(value, _)| *value).collect();
        // The same text with other parameter types (no caller does this) is prepared anew.
        let statement = match self.statements.get(sql) {
            Some(statement) if statement.params() == types.as_slice() => statement.clone(),
            _ => {
                let statement = self.client.prepare_typed(sql, &types)?;
                if self.statements.len() < MAX_PREPARED || self.statements.contains_key(sql) {
                    self.statements.insert(sql.to_owned(), statement.clone());
                }
                statement
            }
        };
        self.client.query_one(&statement, &values)
    }
}

/// Whether `err` means the connection or the server is gone (rather than a statement the
/// server refused).
pub(crate) fn is_connection_error(err: &postgres::Error) -> bool {
    match err.code() {
        None => true,
        // 08: connection exception; 57P01-57P03: the server is shutting down or starting.
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
    }
}

/// A short description of `err` for logs and replies.
pub(crate) fn describe(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    }
}

/// Column `idx` of `row`, as `T`.
pub(crate) fn column<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, Unavailable> {
    row.try_get(idx)
        .map_err(|err| unexpected(format!("column {idx}: {err}")))
}

/// The announcements a write made, which its statement takes with `parking_unsent()` as
/// its last column, to be sent once it has committed.
pub(crate) fn unsent(row: &Row) -> Result<Vec<String>, Unavailable> {
    column(row, row.len().saturating_sub(1))
}

/// A lot version in column `idx`, absent (NULL) when nothing changed.
pub(crate) fn optional_version(row: &Row, idx: usize) -> Result<Option<u64>, Unavailable> {
    let version: Option<i64> = column(row, idx)?;
    version
        .map(|version| u64::try_from(version).map_err(|_| unexpected(format!("version {version}"))))
        .transpose()
}

/// A lot version in column `idx`, which must be there.
pub(crate) fn version(row: &Row, idx: usize) -> Result<u64, Unavailable> {
    optional_version(row, idx)?.ok_or_else(|| unexpected("no version".to_owned()))
}

/// The database answered something this node's schema does not explain (a newer node's
/// migration changed a function incompatibly, or a bug): logged, and the write refused.
pub(crate) fn unexpected(detail: String) -> Unavailable {
    log::error!("unexpected answer from PostgreSQL: {detail}");
    Unavailable(format!("PostgreSQL: unexpected answer: {detail}"))
}
