#!/usr/bin/env bash
# Benchmarks the PostgreSQL store against what the database alone does, side by side in one
# run, on a throwaway cluster with durable settings (fsync on, synchronous_commit on):
#
#   1. `reserve` through 16 connections spread over 2 nodes (load-test --mode reserve, each
#      request a committed reserve or cancel), against pgbench running the equivalent
#      conditional UPDATE on the same lot rows with 16 clients; and against two more pgbench
#      rows, in statements per second: a reserve and a cancel as bare SQL (the conditional
#      UPDATE joined with the INSERT of the reservation row; the DELETE joined with the
#      UPDATE), and the nodes' own write functions called by pgbench (the SQL's cost alone);
#   2. `getAvailability` on a postgres-backed node against an embedded one (16 connections)
#      (after a VACUUM and a CHECKPOINT, the two rows in alternate order each round);
#   3. commit-to-event latency across nodes: reserves sent one at a time to node 1, each
#      event timed on a subscriber of node 2, from the reserving transaction's start (the
#      reservation's expires_at minus the TTL, PostgreSQL's clock, the same machine's), so it
#      includes the commit's own WAL flush;
#   4. the CPU each throughput row cost per request, from /proc: PostgreSQL's processes, the
#      two postgres-backed nodes, the embedded node, the client (pgbench or load-test), and
#      how busy the whole machine was (on a machine that is 100% busy, throughput follows
#      the CPU per request).
#
# Usage: scripts/bench-pg.sh [SECS]     (recorded seconds per throughput row, default 10)
#        BENCH_BIN=DIR scripts/bench-pg.sh [SECS]   (DIR's release binaries, not built here:
#                                                    e.g. another branch's, to compare)
#        BENCH_BASE=DIR scripts/bench-pg.sh [SECS]  (also the reserve row of DIR's binaries,
#                     two nodes of their own on a database of their own, in every round)
#        BENCH_ROUNDS=N (interleaved rounds of the throughput rows, default 2)
#
# Needs PostgreSQL (initdb, pg_ctl, pgbench on PATH or under /usr/lib/postgresql/*/bin) and
# python3. As root the cluster runs as the postgres user. Everything started is stopped and
# the cluster's directory removed at the end.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${1:-10}
ROUNDS=${BENCH_ROUNDS:-2}
BASE=${BENCH_BASE:-}
BIN=${BENCH_BIN:-$TARGET_DIR/release}
cd "$ROOT"
require_python3

if [ -z "${BENCH_BIN:-}" ]; then
    echo "building (release)..." >&2
    cargo build --release --quiet -p parking-server -p load-test -p subscriber
fi
pg_cluster parking-bench-pg
URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"

LOTS='[{"id": "A", "capacity": 1000000}, {"id": "B", "capacity": 1000000}, {"id": "C", "capacity": 1000000}]'
# Not called as $(node ...): the started pid must reach this shell's STARTED_PIDS, or the
# cleanup would not stop the server.
node() { # node NAME STORE_JSON: starts a server, sets RPC and PUBSUB to its ports
    local name=$1 store=$2 pid
    # data_dir is the embedded store's (next to the config, in $WORK, not PostgreSQL's data).
    cat > "$WORK/$name.json" <<EOF
{"rpc_port": 0, "sensor_port": 0, "pubsub_port": 0, "http_port": 0, "max_connections_per_address": 0,
 "lots": $LOTS, "store": $store, "data_dir": "$name-data"}
EOF
    RUST_LOG=info "$BIN/parking-server" --config "$WORK/$name.json" > "$WORK/$name.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    RPC=$(wait_for_port "$WORK/$name.log" 'listening: rpc 127.0.0.1:' "$pid") || exit 2
    PUBSUB=$(wait_for_port "$WORK/$name.log" 'pubsub 127.0.0.1:' "$pid") || exit 2
}
PG_STORE="{\"kind\": \"postgres\", \"url\": \"$URL\", \"pool_size\": 16}"
node node1 "$PG_STORE"
RPC1=$RPC PUB1=$PUBSUB
node node2 "$PG_STORE"
RPC2=$RPC PUB2=$PUBSUB
NODE_PIDS=("${STARTED_PIDS[@]}")
node embedded '{"kind": "embedded"}'
RPCE=$RPC
EMBEDDED_PID=${STARTED_PIDS[-1]}
if [ -n "$BASE" ]; then
    # A database of their own: NOTIFY stays within a database, so neither pair of nodes
    # hears (and spends time on) the other's announcements.
    "${AS[@]}" "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE base" postgres
    BASE_STORE="{\"kind\": \"postgres\", \"url\": \"postgres://postgres@127.0.0.1:$PGPORT/base\", \"pool_size\": 16}"
    MAIN_BIN=$BIN BIN=$BASE
    node base1 "$BASE_STORE"
    RPCB1=$RPC
    node base2 "$BASE_STORE"
    RPCB2=$RPC
    BIN=$MAIN_BIN
fi

cat > "$WORK/update.sql" <<'EOF'
\set lot random(1, 3)
UPDATE parking_lots SET reserved = reserved + 1, version = version + 1
    WHERE id = (ARRAY['A', 'B', 'C'])[:lot]
      AND greatest(0, least(counted, capacity)) + reserved < capacity;
EOF
# A reserve and a cancel as bare SQL, one statement each, as load-test's reserve mode sends
# them (a plate per client, reserved then cancelled): what a reserve must write at least.
cat > "$WORK/pair.sql" <<'EOF'
\set lot random(1, 3)
WITH l AS (UPDATE parking_lots SET reserved = reserved + 1, version = version + 1
        WHERE id = (ARRAY['A', 'B', 'C'])[:lot]
          AND greatest(0, least(counted, capacity)) + reserved < capacity RETURNING id)
    INSERT INTO parking_reservations (lot, plate, expires_at)
        SELECT id, 'PGB' || :client_id, now() + interval '5 minutes' FROM l;
WITH d AS (DELETE FROM parking_reservations
        WHERE lot = (ARRAY['A', 'B', 'C'])[:lot] AND plate = 'PGB' || :client_id RETURNING lot)
    UPDATE parking_lots SET reserved = reserved - 1, version = version + 1
        WHERE id IN (SELECT lot FROM d);
EOF
node_functions_script "$WORK/functions.sql"
chmod a+r "$WORK/update.sql" "$WORK/pair.sql"

loadtest() { # loadtest MODE HOSTS: prints req/s of one 16-connection row
    "$BIN/load-test" --mode "$1" --host "$2" --workers 16 --warmup 1 --duration "$DURATION" \
        --json "$WORK/row.json" > /dev/null || true
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rows"][0]; print("%.0f %d" % (r["throughput"], r["errors"]))' "$WORK/row.json"
}
pgbench_tps() { # pgbench_tps SCRIPT STATEMENTS: statements per second of SCRIPT at 16 clients
    local tps
    tps=$("${AS[@]}" "$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U postgres -n -c 16 -j 2 -M prepared \
        -T "$DURATION" -f "$WORK/$1" postgres 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1)
    python3 -c 'import sys; print("%.0f" % (float(sys.argv[1] or 0) * int(sys.argv[2])))' "$tps" "$2"
}

# cpu_snapshot: prints the CPU time used so far, in clock ticks, by this cluster's PostgreSQL
# (the postmaster and its children, exited ones included), by the two postgres-backed nodes,
# by the embedded node, by this shell's finished children (pgbench, load-test: the clients),
# and the machine's busy and total ticks (over all cores: busy / total is how loaded the
# whole machine was, other engineers' work included).
cpu_snapshot() {
    python3 - "$$" "$(head -n 1 "$WORK/data/postmaster.pid")" "$EMBEDDED_PID" "${NODE_PIDS[@]}" <<'PY'
import os, sys
shell, post, embedded = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
nodes = {int(p) for p in sys.argv[4:]}
def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return [int(x) for x in s[s.rindex(")") + 2:].split()[1:15]]  # ppid .. cstime
pg = nd = emb = 0
for name in os.listdir("/proc"):
    if not name.isdigit():
        continue
    try:
        f = stat(name)
    except (OSError, ValueError):
        continue
    pid, ppid, own, children = int(name), f[0], f[10] + f[11], f[12] + f[13]
    if pid == post:
        pg += own + children
    elif ppid == post:
        pg += own
    if pid in nodes:
        nd += own
    if pid == embedded:
        emb += own
f = stat(shell)
cpu = [int(x) for x in open("/proc/stat").readline().split()[1:]]
print(pg, nd, emb, f[12] + f[13], sum(cpu) - cpu[3] - cpu[4], sum(cpu))
PY
}
row() { # row NAME RUN COMMAND...: runs one throughput row, recording its result and its CPU
    local before after
    before=$(cpu_snapshot)
    results+=("$1 $2 $("${@:3}")")
    after=$(cpu_snapshot)
    cpu+=("$1 $before $after")
}

echo "throughput rows, ${DURATION}s each, $ROUNDS interleaved round(s)..." >&2
results=()
cpu=()
for run in $(seq "$ROUNDS"); do
    row pgbench "$run" pgbench_tps update.sql 1
    row pgpair "$run" pgbench_tps pair.sql 2
    row pgfunctions "$run" pgbench_tps functions.sql 2
    row reserve2 "$run" loadtest reserve "127.0.0.1:$RPC1,127.0.0.1:$RPC2"
    if [ -n "$BASE" ]; then
        row reservebase "$run" loadtest reserve "127.0.0.1:$RPCB1,127.0.0.1:$RPCB2"
    fi
    # The reads once PostgreSQL has settled after the writes (vacuum and checkpoint now,
    # not during the next rows: the postgres-backed read row used to follow the write rows
    # and share the cores with their aftermath), and in alternate order each round.
    "${AS[@]}" "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "VACUUM" -c "CHECKPOINT" postgres
    if [ $((run % 2)) = 1 ]; then
        row availpg "$run" loadtest avail "127.0.0.1:$RPC1"
        row availemb "$run" loadtest avail "127.0.0.1:$RPCE"
    else
        row availemb "$run" loadtest avail "127.0.0.1:$RPCE"
        row availpg "$run" loadtest avail "127.0.0.1:$RPC1"
    fi
done

echo "commit-to-event latency (500 reserves, one at a time)..." >&2
python3 - "$RPC1" "$PUB2" "$URL" "$WORK" "$PGBIN" "${AS[@]}" <<'EOF' > "$WORK/latency.txt"
import json, socket, struct, subprocess, sys, threading, time
rpc, pub, url, work, pgbin, run_as = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
events = []
sub = socket.create_connection(("127.0.0.1", pub))
sub.sendall(b"SUBSCRIBE A\n")
reader = sub.makefile("rb")
reader.readline()  # OK <id>
def listen():
    for line in reader:
        event = json.loads(line)
        if event.get("type") == "EVENT":
            events.append(event)
threading.Thread(target=listen, daemon=True).start()
time.sleep(0.5)
conn = socket.create_connection(("127.0.0.1", rpc))
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
n = 500
for k in range(n):
    body = f"RESERVE A LAT{k}".encode()
    conn.sendall(struct.pack(">I", len(body)) + body)
    size = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))[0]
    assert conn.recv(size, socket.MSG_WAITALL) == b"OK"
    time.sleep(0.002)
deadline = time.time() + 10
while len(events) < n and time.time() < deadline:
    time.sleep(0.05)
sql = ("SELECT plate, extract(epoch FROM expires_at) - 300 FROM parking_reservations "
       "WHERE plate LIKE 'LAT%' ORDER BY expires_at")
out = subprocess.run(run_as + [f"{pgbin}/psql", url, "-At", "-F", " ", "-c", sql],
                     capture_output=True, text=True, check=True).stdout.split("\n")
starts = [float(line.split()[1]) for line in out if line.strip()]
lat = sorted((e["timestamp"] - s) * 1000 for e, s in zip(events[-n:], starts))
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{len(lat)} {pick(0.5):.2f} {pick(0.99):.2f} {lat[-1]:.2f}")
EOF

printf '%s\n' "${cpu[@]}" > "$WORK/cpu.txt"
python3 - "$WORK/latency.txt" "$WORK/cpu.txt" "${results[@]}" <<'EOF'
import os, sys, collections
rows = collections.defaultdict(list)
for item in sys.argv[3:]:
    name, run, value, *errors = item.split()
    rows[name].append((float(value or 0), int(errors[0]) if errors else 0))
def avg(name): return sum(v for v, _ in rows[name]) / len(rows[name])
def runs(name): return " / ".join(f"{v:.0f}" for v, _ in rows[name])
def ratios(name):
    return (f"{avg(name) / avg('pgbench'):.2f}x UPDATE, "
            f"{avg(name) / avg('pgpair'):.2f}x UPDATE+INSERT")
print("| what | each round | mean | ratio |")
print("|---|---|---|---|")
print(f"| pgbench conditional UPDATE, 16 clients (tps) | {runs('pgbench')} | {avg('pgbench'):.0f} | 1 |")
print(f"| pgbench UPDATE+INSERT reserve, DELETE+UPDATE cancel (statements/s) | {runs('pgpair')} | {avg('pgpair'):.0f} | {avg('pgpair') / avg('pgbench'):.2f}x UPDATE |")
print(f"| pgbench of the nodes' reserve and cancel functions (statements/s) | {runs('pgfunctions')} | {avg('pgfunctions'):.0f} | {ratios('pgfunctions')} |")
print(f"| reserve over 2 nodes, 16 connections (req/s) | {runs('reserve2')} | {avg('reserve2'):.0f} | {ratios('reserve2')} |")
if rows['reservebase']:
    print(f"| reserve over 2 nodes, BENCH_BASE build (req/s) | {runs('reservebase')} | {avg('reservebase'):.0f} | {ratios('reservebase')} |")
print(f"| getAvailability, embedded node (req/s) | {runs('availemb')} | {avg('availemb'):.0f} | 1 |")
print(f"| getAvailability, postgres-backed node (req/s) | {runs('availpg')} | {avg('availpg'):.0f} | {avg('availpg') / avg('availemb'):.2f}x embedded |")
errors = sum(e for r in rows.values() for _, e in r)
n, p50, p99, worst = open(sys.argv[1]).read().split()
print(f"\ncommit-to-event across nodes ({n} events): p50 {p50} ms, p99 {p99} ms, max {worst} ms")
print(f"load-test errors in all rows: {errors}")

# CPU per request of each row, from /proc: a share of one core over the row's wall time
# (warm-up included), divided by the row's throughput.
cores = os.cpu_count() or 1
shares = collections.defaultdict(list)
for line in open(sys.argv[2]):
    name, *t = line.split()
    b, a = [int(x) for x in t[:6]], [int(x) for x in t[6:]]
    wall = (a[5] - b[5]) / cores
    shares[name].append([(a[i] - b[i]) / wall for i in range(5)])
print("\n| CPU per request (us) | PostgreSQL | the 2 postgres-backed nodes | embedded node "
      "| client (pgbench / load-test) | machine busy |")
print("|---|---|---|---|---|---|")
for name, each in shares.items():
    n, rate = len(each), avg(name)
    mean = [sum(s[i] for s in each) / n for i in range(5)]
    us = " | ".join(f"{m / rate * 1e6:.0f}" for m in mean[:4])
    print(f"| {name} | {us} | {mean[4] / cores * 100:.0f}% |")
EOF
