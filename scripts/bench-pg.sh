#!/usr/bin/env bash
# Benchmarks the PostgreSQL store against what the database alone does, side by side in one
# run, on a throwaway cluster with durable settings (fsync on, synchronous_commit on):
#
#   1. `reserve` through 16 connections spread over 2 nodes (load-test --mode reserve, each
#      request a committed reserve or cancel), against pgbench running the equivalent
#      conditional UPDATE on the same lot rows with 16 clients;
#   2. `getAvailability` on a postgres-backed node against an embedded one (16 connections);
#   3. commit-to-event latency across nodes: reserves sent one at a time to node 1, each
#      event timed on a subscriber of node 2, from the reserving transaction's start (the
#      reservation's expires_at minus the TTL, PostgreSQL's clock, the same machine's), so it
#      includes the commit's own WAL flush.
#
# Usage: scripts/bench-pg.sh [SECS]     (recorded seconds per throughput row, default 10)
#        BENCH_BIN=DIR scripts/bench-pg.sh [SECS]   (DIR's release binaries, not built here:
#                                                    e.g. another branch's, to compare)
#
# Needs PostgreSQL (initdb, pg_ctl, pgbench on PATH or under /usr/lib/postgresql/*/bin) and
# python3. As root the cluster runs as the postgres user. Everything started is stopped and
# the cluster's directory removed at the end.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${1:-10}
BIN=${BENCH_BIN:-$TARGET_DIR/release}
cd "$ROOT"
require_python3

# Through any symlink: a PATH entry may link initdb alone (not pgbench) to the real directory.
PGBIN=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")")
if [ ! -x "$PGBIN/pgbench" ]; then
    echo "bench-pg: pgbench not found next to $PGBIN/initdb (Debian: apt-get install postgresql)" >&2
    exit 2
fi
WORK=$(mktemp -d /tmp/parking-bench-pg.XXXXXX)
AS=()
if [ "$(id -u)" = 0 ]; then
    chown postgres "$WORK"
    AS=(runuser -u postgres --)
fi
PGPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
    stop_started
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate -w stop > /dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${BENCH_BIN:-}" ]; then
    echo "building (release)..." >&2
    cargo build --release --quiet -p parking-server -p load-test -p subscriber
fi

"${AS[@]}" "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C > /dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w \
    -o "-p $PGPORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200" start > /dev/null
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
node embedded '{"kind": "embedded"}'
RPCE=$RPC

cat > "$WORK/update.sql" <<'EOF'
\set lot random(1, 3)
UPDATE parking_lots SET reserved = reserved + 1, version = version + 1
    WHERE id = (ARRAY['A', 'B', 'C'])[:lot]
      AND greatest(0, least(counted, capacity)) + reserved < capacity;
EOF
chmod a+r "$WORK/update.sql"

loadtest() { # loadtest MODE HOSTS: prints req/s of one 16-connection row
    "$BIN/load-test" --mode "$1" --host "$2" --workers 16 --warmup 1 --duration "$DURATION" \
        --json "$WORK/row.json" > /dev/null || true
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rows"][0]; print("%.0f %d" % (r["throughput"], r["errors"]))' "$WORK/row.json"
}
pgbench_tps() {
    "${AS[@]}" "$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U postgres -n -c 16 -j 2 -M prepared \
        -T "$DURATION" -f "$WORK/update.sql" postgres 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1
}

echo "throughput rows, ${DURATION}s each, interleaved (run 1, run 2)..." >&2
results=()
for run in 1 2; do
    results+=("pgbench $run $(pgbench_tps)")
    results+=("reserve2 $run $(loadtest reserve "127.0.0.1:$RPC1,127.0.0.1:$RPC2")")
    results+=("availpg $run $(loadtest avail "127.0.0.1:$RPC1")")
    results+=("availemb $run $(loadtest avail "127.0.0.1:$RPCE")")
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

python3 - "$WORK/latency.txt" "${results[@]}" <<'EOF'
import sys, collections
rows = collections.defaultdict(list)
for item in sys.argv[2:]:
    name, run, value, *errors = item.split()
    rows[name].append((float(value or 0), int(errors[0]) if errors else 0))
def avg(name): return sum(v for v, _ in rows[name]) / len(rows[name])
def runs(name): return " / ".join(f"{v:.0f}" for v, _ in rows[name])
print("| what | run 1 / run 2 | mean | ratio |")
print("|---|---|---|---|")
print(f"| pgbench conditional UPDATE, 16 clients (tps) | {runs('pgbench')} | {avg('pgbench'):.0f} | 1 |")
print(f"| reserve over 2 nodes, 16 connections (req/s) | {runs('reserve2')} | {avg('reserve2'):.0f} | {avg('reserve2') / avg('pgbench'):.2f}x pgbench |")
print(f"| getAvailability, embedded node (req/s) | {runs('availemb')} | {avg('availemb'):.0f} | 1 |")
print(f"| getAvailability, postgres-backed node (req/s) | {runs('availpg')} | {avg('availpg'):.0f} | {avg('availpg') / avg('availemb'):.2f}x embedded |")
errors = sum(e for r in rows.values() for _, e in r)
n, p50, p99, worst = open(sys.argv[1]).read().split()
print(f"\ncommit-to-event across nodes ({n} events): p50 {p50} ms, p99 {p99} ms, max {worst} ms")
print(f"load-test errors in all rows: {errors}")
EOF
