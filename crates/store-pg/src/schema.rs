//! The database's schema: versioned migrations applied at start, and the lots a node brings.
//!
//! Migrations are numbered SQL files in `migrations/`, each applied once, in order, in its
//! own transaction together with its row in `parking_schema`, under a session advisory lock
//! so that nodes starting together apply each one once. A migration's version is its file's
//! number, not its place in the list, so that migrations written on branches at the same
//! time keep their numbers when they meet (one that a database lacks is applied even if a
//! later one is there). They only ever add (tables, columns, functions) or change what a
//! function does in a way the previous release still works with: a node of the previous
//! release keeps working against the newer schema during a rolling upgrade, which is why a
//! database ahead of this node is accepted with a warning rather than refused.

use postgres::Client;
use postgres::types::Type;
use state::{LotId, LotSpec, StateError, Unavailable};

use crate::OpenError;

/// One migration: its version (the file's number), its name and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The number in the file's name; recorded in `parking_schema`.
    pub version: i32,
    /// What it does, in a word or three (the rest of the file's name).
    pub name: &'static str,
    /// The statements, run in one transaction.
    pub sql: &'static str,
}

/// Every migration this node knows, in order of version.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "lots_and_reservations",
        sql: include_str!("../migrations/0001_lots_and_reservations.sql"),
    },
    Migration {
        version: 2,
        name: "accounts",
        sql: include_str!("../migrations/0002_accounts.sql"),
    },
    Migration {
        version: 3,
        name: "bookings",
        sql: include_str!("../migrations/0003_bookings.sql"),
    },
    Migration {
        version: 4,
        name: "announce_after_commit",
        sql: include_str!("../migrations/0004_announce_after_commit.sql"),
    },
    Migration {
        version: 6,
        name: "gate_lines",
        sql: include_str!("../migrations/0006_gate_lines.sql"),
    },
    Migration {
        version: 7,
        name: "waitlists",
        sql: include_str!("../migrations/0007_waitlists.sql"),
    },
];

/// The advisory lock key that migrations are applied under ("parking" and 1).
const MIGRATION_LOCK: i64 = 0x7061_726b_696e_6701;

/// Applies the migrations the database lacks.
pub(crate) fn migrate(client: &mut Client) -> Result<(), OpenError> {
    client
        .query_typed(
            "SELECT pg_advisory_lock($1)",
            &[(&MIGRATION_LOCK, Type::INT8)],
        )
        .map_err(OpenError::Database)?;
    let applied = apply_missing(client);
    // Released whatever happened; a connection that failed has lost it anyway.
    let _ = client.query_typed(
        "SELECT pg_advisory_unlock($1)",
        &[(&MIGRATION_LOCK, Type::INT8)],
    );
    applied
}

fn apply_missing(client: &mut Client) -> Result<(), OpenError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS parking_schema (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .map_err(OpenError::Database)?;
    let applied: Vec<i32> = client
        .query_typed("SELECT version FROM parking_schema ORDER BY version", &[])
        .map_err(OpenError::Database)?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(OpenError::Database)?;
    let unknown: Vec<i32> = applied
        .iter()
        .copied()
        .filter(|version| !MIGRATIONS.iter().any(|m| m.version == *version))
        .collect();
    if !unknown.is_empty() {
        log::warn!(
            "the database's schema has migration(s) {unknown:?}, which this node does not \
             know: migrations only add, so this node goes on (finish the rolling upgrade)"
        );
    }
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let mut transaction = client.transaction().map_err(OpenError::Database)?;
        transaction
            .batch_execute(migration.sql)
            .map_err(OpenError::Database)?;
        transaction
            .execute(
                "INSERT INTO parking_schema (version, name) VALUES ($1, $2)",
                &[&migration.version, &migration.name],
            )
            .map_err(OpenError::Database)?;
        transaction.commit().map_err(OpenError::Database)?;
        log::info!(
            "PostgreSQL schema: applied migration {} ({})",
            migration.version,
            migration.name
        );
    }
    Ok(())
}

/// Adds the configured lots the database lacks, and returns the lots with the database's
/// capacities: a lot that exists keeps its capacity (a different configured one is logged),
/// so every node agrees on it whatever its configuration says.
pub(crate) fn ensure_lots(
    client: &mut Client,
    lots: Vec<LotSpec>,
) -> Result<Vec<LotSpec>, OpenError> {
    let ids: Vec<&str> = lots.iter().map(|lot| lot.id.as_str()).collect();
    let capacities: Vec<i32> = lots
        .iter()
        .map(|lot| i32::try_from(lot.capacity).unwrap_or(i32::MAX))
        .collect();
    client
        .execute(
            "INSERT INTO parking_lots (id, capacity) SELECT * FROM unnest($1::text[], $2::int[]) \
             ON CONFLICT (id) DO NOTHING",
            &[&ids, &capacities],
        )
        .map_err(OpenError::Database)?;
    let rows = client
        .query(
            "SELECT id, capacity FROM parking_lots WHERE id = ANY($1)",
            &[&ids],
        )
        .map_err(OpenError::Database)?;
    let mut stored = std::collections::HashMap::new();
    for row in rows {
        let id: String = row.try_get(0).map_err(OpenError::Database)?;
        let capacity: i32 = row.try_get(1).map_err(OpenError::Database)?;
        stored.insert(id, capacity);
    }
    Ok(lots
        .into_iter()
        .map(|mut lot| {
            if let Some(&capacity) = stored.get(lot.id.as_str())
                && let Ok(capacity) = u32::try_from(capacity)
                && capacity != lot.capacity
            {
                log::warn!(
                    "lot {}: capacity {capacity} in the database, {} in the configuration; \
                     using the database's (change it there for every node)",
                    lot.id,
                    lot.capacity
                );
                lot.capacity = capacity;
            }
            lot
        })
        .collect())
}

/// A lot this node serves is missing from the database (someone deleted it by hand).
pub(crate) fn missing_lot(lot: &LotId) -> StateError {
    StateError::Unavailable(Unavailable(format!(
        "PostgreSQL: lot {lot} is missing from parking_lots; restart the node to add it"
    )))
}
