#!/usr/bin/env bash
# Where a reserve's time goes inside PostgreSQL: pgbench (16 clients, prepared statements)
# running variants of the reserve and cancel SQL on the same three lot rows, side by side in
# one run on a throwaway cluster with durable settings, as ratios to the issue's yardstick,
# the bare conditional UPDATE. Every write to a lot holds the lot's row lock through its
# commit's WAL flush, so what a transaction does after it takes that lock is what the lot's
# other writers wait for; the variants move that work around:
#
#   update       the yardstick: one conditional UPDATE of the lot, no reservation row
#   pair         reserve = UPDATE of the lot then INSERT of the reservation (one statement,
#                a CTE), cancel = DELETE then UPDATE: the least a reserve/cancel writes
#   last         the same with the lot's lock taken last (INSERT, then UPDATE), with the
#                reservations' foreign key to the lot as shipped (checked at once), deferred
#                to the commit, or dropped
#   functions    the nodes' own statements (parking_reserve_quietly, and the cancel with the
#                waitlist look of parking_offer_room), as crates/store-pg/src/lib.rs sends them
#   functions without the waitlist look (parking_cancel_quietly alone)
#   functions, lock last: the same checks with the INSERT before the lot's UPDATE and the
#                cancel's DELETE before it (deferred foreign key; dropped)
#
# Usage: scripts/bench-pg-sql.sh [SECS]   (seconds per row, default 8; BENCH_ROUNDS=N rounds,
#                                          default 2, interleaved; BENCH_ROWS="NAME.DB ..."
#                                          runs only those rows, e.g. "update.shipped")
# Two-statement rows (a reserve and a cancel) count statements per second (tps x 2). Needs
# PostgreSQL with pgbench and python3; as root the cluster runs as the postgres user.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${1:-8}
ROUNDS=${BENCH_ROUNDS:-2}
cd "$ROOT"
require_python3
pg_cluster parking-bench-pg-sql

psql_as() { "${AS[@]}" "$PGBIN/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }

# The lock-last functions: the same answers as parking_reserve_quietly and
# parking_cancel_quietly (migration 0005), the row change before the lot's UPDATE.
cat > "$WORK/last.sql.fn" <<'SQL'
CREATE FUNCTION bench_reserve_last(p_lot text, p_plate text, p_ttl_ms bigint, p_owner text,
                                   OUT outcome text, OUT version bigint, OUT expires_at_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    until timestamptz := now() + p_ttl_ms * interval '1 millisecond';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM parking_lots l WHERE l.id = p_lot AND parking_free(l) > 0) THEN
        outcome := CASE WHEN EXISTS (SELECT 1 FROM parking_lots WHERE id = p_lot) THEN 'full'
                        ELSE 'unknown_lot' END;
        RETURN;
    END IF;
    INSERT INTO parking_reservations (lot, plate, expires_at, owner)
        VALUES (p_lot, p_plate, until, p_owner) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        outcome := 'exists';
        RETURN;
    END IF;
    UPDATE parking_lots l SET reserved = l.reserved + 1, version = l.version + 1
        WHERE l.id = p_lot AND parking_free(l) > 0
        RETURNING l.version INTO version;
    IF NOT FOUND THEN
        DELETE FROM parking_reservations r WHERE r.lot = p_lot AND r.plate = p_plate;
        outcome := 'full';
        RETURN;
    END IF;
    outcome := 'reserved';
    expires_at_ms := parking_ms(until);
END $$;
CREATE FUNCTION bench_cancel_last(p_lot text, p_plate text, p_owner text, OUT version bigint)
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM parking_reservations r
        WHERE r.lot = p_lot AND r.plate = p_plate AND r.owner IS NOT DISTINCT FROM p_owner;
    IF FOUND THEN
        UPDATE parking_lots l SET reserved = l.reserved - 1, version = l.version + 1
            WHERE l.id = p_lot RETURNING l.version INTO version;
    END IF;
END $$;
SQL
for db in shipped deferred nofk; do
    psql_as -c "CREATE DATABASE $db" postgres
    for migration in crates/store-pg/migrations/*.sql; do
        psql_as -1 -f "$migration" "$db" > /dev/null
    done
    psql_as -f "$WORK/last.sql.fn" "$db"
    psql_as -c "INSERT INTO parking_lots (id, capacity) VALUES ('A', 1000000), ('B', 1000000), ('C', 1000000)" "$db"
done
psql_as -c "ALTER TABLE parking_reservations ALTER CONSTRAINT parking_reservations_lot_fkey DEFERRABLE INITIALLY DEFERRED" deferred
psql_as -c "ALTER TABLE parking_reservations DROP CONSTRAINT parking_reservations_lot_fkey" nofk

script() { # script NAME RESERVE CANCEL: a pgbench script of one reserve and one cancel
    printf '\\set lot random(1, 3)\n%s;\n%s;\n' "$2" "$3" > "$WORK/$1.sql"
}
LOT="(ARRAY['A', 'B', 'C'])[:lot]"
FREE="greatest(0, least(counted, capacity)) + reserved < capacity"
printf '\\set lot random(1, 3)\nUPDATE parking_lots SET reserved = reserved + 1, version = version + 1 WHERE id = %s AND %s;\n' "$LOT" "$FREE" > "$WORK/update.sql"
CANCEL_DELETE_FIRST="WITH d AS (DELETE FROM parking_reservations WHERE lot = $LOT AND plate = 'P' || :client_id RETURNING lot) UPDATE parking_lots SET reserved = reserved - 1, version = version + 1 WHERE id IN (SELECT lot FROM d)"
script pair \
    "WITH l AS (UPDATE parking_lots SET reserved = reserved + 1, version = version + 1 WHERE id = $LOT AND $FREE RETURNING id) INSERT INTO parking_reservations (lot, plate, expires_at) SELECT id, 'P' || :client_id, now() + interval '5 minutes' FROM l" \
    "$CANCEL_DELETE_FIRST"
script last \
    "WITH i AS (INSERT INTO parking_reservations (lot, plate, expires_at) VALUES ($LOT, 'P' || :client_id, now() + interval '5 minutes') RETURNING lot) UPDATE parking_lots SET reserved = reserved + 1, version = version + 1 WHERE id IN (SELECT lot FROM i) AND $FREE" \
    "$CANCEL_DELETE_FIRST"
script functions \
    "SELECT outcome, version, expires_at_ms FROM parking_reserve_quietly($LOT, 'P' || :client_id, 300000, NULL)" \
    "SELECT c.version, parking_offer_room($LOT, 1000000, 900), parking_unsent() FROM parking_cancel_quietly($LOT, 'P' || :client_id, NULL) AS c"
script bare \
    "SELECT outcome, version, expires_at_ms FROM parking_reserve_quietly($LOT, 'P' || :client_id, 300000, NULL)" \
    "SELECT version FROM parking_cancel_quietly($LOT, 'P' || :client_id, NULL)"
script fnlast \
    "SELECT outcome, version, expires_at_ms FROM bench_reserve_last($LOT, 'P' || :client_id, 300000, NULL)" \
    "SELECT c.version, parking_offer_room($LOT, 1000000, 900), parking_unsent() FROM bench_cancel_last($LOT, 'P' || :client_id, NULL) AS c"
chmod a+r "$WORK"/*.sql

ROWS=(
    "update shipped 1 conditional UPDATE (the yardstick)"
    "pair shipped 2 UPDATE+INSERT / DELETE+UPDATE"
    "last shipped 2 INSERT+UPDATE (lock last), foreign key as shipped"
    "last deferred 2 INSERT+UPDATE (lock last), foreign key deferred"
    "last nofk 2 INSERT+UPDATE (lock last), no foreign key"
    "functions shipped 2 the nodes' functions"
    "bare shipped 2 the nodes' functions without the waitlist look"
    "fnlast deferred 2 the functions, lock last, foreign key deferred"
    "fnlast nofk 2 the functions, lock last, no foreign key"
)
echo "${#ROWS[@]} rows, ${DURATION}s each, $ROUNDS interleaved round(s)..." >&2
# A warm-up, not recorded: the first row of a fresh cluster would otherwise pay for its start.
"${AS[@]}" "$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U postgres -n -c 16 -j 2 -M prepared \
    -T 2 -f "$WORK/update.sql" shipped > /dev/null 2>&1
results=()
for run in $(seq "$ROUNDS"); do
    for row in "${ROWS[@]}"; do
        read -r name db statements _ <<< "$row"
        if [ -n "${BENCH_ROWS:-}" ] && [[ " $BENCH_ROWS " != *" $name.$db "* ]]; then
            continue
        fi
        # No row left by an earlier one (a plate is reserved again by its client).
        psql_as -c "TRUNCATE parking_reservations" "$db"
        tps=$("${AS[@]}" "$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U postgres -n -c 16 -j 2 \
            -M prepared -T "$DURATION" -f "$WORK/$name.sql" "$db" 2>/dev/null \
            | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1)
        results+=("$name.$db $(python3 -c 'import sys; print(float(sys.argv[1] or 0) * int(sys.argv[2]))' "$tps" "$statements")")
    done
done
python3 - "${ROWS[@]}" -- "${results[@]}" <<'PY'
import sys, collections
split = sys.argv.index("--")
rows, results = sys.argv[1:split], sys.argv[split + 1:]
each = collections.defaultdict(list)
for item in results:
    key, value = item.split()
    each[key].append(float(value))
mean = {key: sum(v) / len(v) for key, v in each.items()}
print("| variant (database) | each round | mean (statements/s) | ratio to the UPDATE |")
print("|---|---|---|---|")
for row in rows:
    name, db, _, label = row.split(" ", 3)
    key = f"{name}.{db}"
    if key not in each:
        continue
    runs = " / ".join(f"{v:.0f}" for v in each[key])
    print(f"| {label} ({db}) | {runs} | {mean[key]:.0f} | {mean[key] / mean['update.shipped']:.2f}x |")
PY
