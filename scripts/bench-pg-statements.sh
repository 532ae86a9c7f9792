#!/usr/bin/env bash
# What PostgreSQL does per write when the writes come through the nodes, against pgbench
# sending the nodes' own reserve and cancel statements: statements (round trips) and
# transactions per write from pg_stat_statements and pg_stat_database, and PostgreSQL's CPU
# per write split by the backend that spent it (from /proc): the nodes' writers, their
# announcing threads' backends (parking_publish), their listening backends (LISTEN, the
# version checks), the expiry threads', the background processes. Explains a gap between
# the "pgbench of the nodes' functions" and "reserve over 2 nodes" rows of bench-pg.sh.
#
# Usage: scripts/bench-pg-statements.sh [SECS]   (seconds per row, default 8; BENCH_ROUNDS=N
#                                                 rounds, default 1)
#        BENCH_BIN=DIR ...   (DIR's release binaries, not built here)
#        BENCH_BASE=DIR ...  (also a nodes row of DIR's binaries, on the same cluster)
# Needs PostgreSQL (with pg_stat_statements, part of Debian's postgresql package) and
# python3. As root the cluster runs as the postgres user. Statement counts are top-level
# statements (what a client sends: one round trip each); a number per write is the count
# divided by the writes of the row (a reserve and a cancel are two writes).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${1:-8}
ROUNDS=${BENCH_ROUNDS:-1}
BIN=${BENCH_BIN:-$TARGET_DIR/release}
BASE=${BENCH_BASE:-}
cd "$ROOT"
require_python3
if [ -z "${BENCH_BIN:-}" ]; then
    echo "building (release)..." >&2
    cargo build --release --quiet -p parking-server -p load-test
fi
pg_cluster parking-bench-pg-statements
PSQL=("${AS[@]}" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres postgres)
"${PSQL[@]}" -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
"${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w -m fast \
    -o "-p $PGPORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200" restart > /dev/null
"${PSQL[@]}" -c "CREATE EXTENSION pg_stat_statements"
URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
LOTS='[{"id": "A", "capacity": 1000000}, {"id": "B", "capacity": 1000000}, {"id": "C", "capacity": 1000000}]'
# Not called as $(node ...): the started pid must reach this shell's STARTED_PIDS.
node() { # node NAME BINDIR: starts a postgres-backed server, sets RPC to its port
    local pid
    cat > "$WORK/$1.json" <<EOF
{"rpc_port": 0, "sensor_port": 0, "pubsub_port": 0, "http_port": 0, "max_connections_per_address": 0,
 "lots": $LOTS, "store": {"kind": "postgres", "url": "$URL", "pool_size": 16}, "data_dir": "$1-data"}
EOF
    RUST_LOG=info "$2/parking-server" --config "$WORK/$1.json" > "$WORK/$1.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    RPC=$(wait_for_port "$WORK/$1.log" 'listening: rpc 127.0.0.1:' "$pid") || exit 2
}
node_functions_script "$WORK/functions.sql"
POST=$(head -n 1 "$WORK/data/postmaster.pid")

# snapshot FILE: each of the cluster's processes with its role and CPU ticks so far (the
# postmaster's line includes its exited children: backends of connections that closed).
snapshot() {
    "${PSQL[@]}" -F '|' -c "SELECT pid, backend_type, coalesce(application_name, ''),
        left(regexp_replace(query, '\s+', ' ', 'g'), 200) FROM pg_stat_activity" > "$WORK/activity.txt"
    python3 - "$POST" "$WORK/activity.txt" > "$1" <<'PY'
import os, sys
post, roles = int(sys.argv[1]), {}
for line in open(sys.argv[2]):
    p = line.rstrip("\n").split("|", 3)
    if len(p) < 4 or not p[0].isdigit():
        continue
    kind, app, q = p[1], p[2], p[3]
    if kind != "client backend":
        role = kind
    elif app != "parking-server":
        role = app or "client"
    elif "parking_publish" in q:
        role = "nodes: announcing threads"
    elif any(k in q for k in ("LISTEN", "= ANY", "COMMIT", "START TRANSACTION")):
        role = "nodes: listening threads"
    elif any(k in q for k in ("least(", "min(expires_at)", "DISTINCT lot", "parking_settle")):
        role = "nodes: expiry threads"
    else:
        role = "nodes: writers"
    roles[int(p[0])] = role
for name in os.listdir("/proc"):
    if not name.isdigit():
        continue
    try:
        s = open(f"/proc/{name}/stat").read()
    except OSError:
        continue
    f = s[s.rindex(")") + 2:].split()
    pid, ppid = int(name), int(f[1])
    if pid == post:
        print(f"{pid}\tpostmaster and exited backends (pgbench's, once it ends)\t{sum(int(x) for x in f[11:15])}")
    elif ppid == post:
        print(f"{pid}\t{roles.get(pid, 'unknown')}\t{int(f[11]) + int(f[12])}")
PY
}
counters() {
    "${PSQL[@]}" -F ' ' -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'postgres'"
}
# measure NAME COMMAND...: runs COMMAND (which writes its count of writes to $WORK/writes)
# and reports per write.
measure() {
    local name=$1 t0 t1 c0 c1
    shift
    "${PSQL[@]}" -c "SELECT pg_stat_statements_reset()" > /dev/null
    snapshot "$WORK/before.txt"
    c0=$(counters)
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    # Backends report their counters when idle, at most once a second.
    sleep 1.5
    c1=$(counters)
    snapshot "$WORK/after.txt"
    "${PSQL[@]}" -F '|' -c "SELECT calls, left(regexp_replace(query, '\s+', ' ', 'g'), 90)
        FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%pg_database%'
        ORDER BY calls DESC LIMIT 8" > "$WORK/statements.txt"
    python3 - "$name" "$WORK/before.txt" "$WORK/after.txt" "$c0" "$c1" "$t0" "$t1" \
        "$(cat "$WORK/writes")" "$WORK/statements.txt" <<'PY'
import collections, os, sys
name, before, after, c0, c1, t0, t1, writes, statements = sys.argv[1:10]
writes, secs = int(writes), float(t1) - float(t0)
def load(path):
    return {int(p): (r, int(t)) for p, r, t in (l.rstrip("\n").split("\t") for l in open(path))}
b, a = load(before), load(after)
spent = collections.Counter()
for pid, (role, ticks) in a.items():
    was_role, was = b.get(pid, (role, 0))
    spent[role if role != "unknown" else was_role] += ticks - was
per = 1e6 / os.sysconf("SC_CLK_TCK") / max(writes, 1)
rows = [(l.split("|", 1)) for l in open(statements) if "|" in l]
calls = sum(int(c) for c, _ in rows)
print(f"### {name}: {writes} writes in {secs:.1f} s ({writes / secs:.0f}/s)")
print(f"transactions per write {(int(c1) - int(c0)) / max(writes, 1):.2f} (includes the "
      f"listening and expiry threads'); statements per write {calls / max(writes, 1):.2f}\n")
print("| PostgreSQL CPU per write, by backend | us |\n|---|---|")
for role, ticks in spent.most_common():
    if ticks:
        print(f"| {role} | {ticks * per:.0f} |")
print(f"| **all of PostgreSQL** | **{sum(spent.values()) * per:.0f}** |\n")
print("| statement (top level) | calls per write |\n|---|---|")
for c, q in rows:
    print(f"| `{q.strip()}` | {int(c) / max(writes, 1):.2f} |")
print()
PY
}
pgbench_row() {
    "${AS[@]}" "$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U postgres -n -c 16 -j 2 -M prepared \
        -T "$DURATION" -f "$WORK/functions.sql" postgres > "$WORK/pgbench.txt" 2>/dev/null
    sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pgbench.txt" \
        | python3 -c 'import sys; print(2 * int(sys.stdin.read() or 0))' > "$WORK/writes"
}
nodes_row() { # nodes_row HOSTS LOAD_TEST_DIR
    "$2/load-test" --mode reserve --host "$1" --workers 16 --warmup 0 --duration "$DURATION" \
        --json "$WORK/row.json" > /dev/null || true
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["rows"][0]["requests"])' \
        "$WORK/row.json" > "$WORK/writes"
}

node node1 "$BIN"
HOSTS="127.0.0.1:$RPC"
node node2 "$BIN"
HOSTS="$HOSTS,127.0.0.1:$RPC"
for run in $(seq "$ROUNDS"); do
    measure "pgbench of the nodes' reserve and cancel statements, 16 clients (round $run)" pgbench_row
    measure "reserve over 2 nodes, 16 connections (round $run)" nodes_row "$HOSTS" "$BIN"
done
if [ -n "$BASE" ]; then
    # The same database: the other build's nodes are stopped first, so that neither pair
    # hears (and spends time on) the other's announcements.
    stop_started
    STARTED_PIDS=()
    node base1 "$BASE"
    HOSTS="127.0.0.1:$RPC"
    node base2 "$BASE"
    HOSTS="$HOSTS,127.0.0.1:$RPC"
    for run in $(seq "$ROUNDS"); do
        measure "reserve over 2 nodes, BENCH_BASE build (round $run)" nodes_row "$HOSTS" "$BASE"
    done
fi
