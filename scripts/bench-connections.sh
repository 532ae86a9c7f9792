#!/usr/bin/env bash
# What open connections cost the parking server (issue 13's measurements), in one run against
# one release parking-server (in memory, ephemeral ports), each pair of rows side by side:
#
#   1. RSS per idle connection, measured first on the fresh server: the server's VmRSS before
#      and after IDLE idle connections open (kernel socket buffers are not in RSS: this is
#      what the server itself spends on each)
#   2. ping, 1 connection: with no other connection open, then with IDLE idle RPC connections
#   3. mixed, 16 connections: the same two rows
#   4. 5,000 sensors, one UPDATE each every 5 s (1,000 lines/s in all): sensor-sim's acks
#   5. 5,000 subscribers on ALL: one reserve's reach (cargo bench -p server --bench fanout)
#
# Busy rows against the bare baseline (64 and 256 connections) and pipelining against Redis
# are scripts/bench.sh's: `scripts/bench.sh -m avail -w "1 4 16 64 256"` and
# `scripts/bench.sh -m avail -w 16 -p 16 -r`.
#
# Usage: scripts/bench-connections.sh [-d SECS] [-n IDLE] [-s SENSORS]
#
#   -d SECS     recorded seconds per load-test row and of the sensor run (env DURATION, default 10)
#   -n IDLE     idle connections held open (env IDLE, default 10000; the open-files hard limit
#               must allow about IDLE + 100)
#   -s SENSORS  sensors of row 4, and subscribers of row 5 (env SENSORS, default 5000)
#
# Exit status: 0 if every row ran clean, 1 if a row had errors, 2 on a usage error or if the
# server did not start.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
IDLE=${IDLE:-10000}
SENSORS=${SENSORS:-5000}

while getopts "d:n:s:h" opt; do
    case $opt in
        d) DURATION=$OPTARG ;;
        n) IDLE=$OPTARG ;;
        s) SENSORS=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
no_operands "$@"

HOST=127.0.0.1
BIN=$TARGET_DIR/release

cd "$ROOT"
require_python3
ulimit -n "$(ulimit -Hn)"
echo "building (release)..." >&2
cargo build --release --quiet -p parking-server -p load-test -p sensor-sim

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-connections.XXXXXX")
cleanup() {
    stop_started
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every connection comes from one address, so the per-address limit is lifted; the ports hold
# the idle connections plus the busy ones.
RUST_LOG=info "$BIN/parking-server" --config "$ROOT/config.json" --in-memory --host "$HOST" \
    --rpc-port 0 --sensor-port 0 --pubsub-port 0 --max-connections-per-address 0 \
    --max-connections $((IDLE + SENSORS + 100)) 2>"$WORK/parking-server.log" &
SERVER_PID=$!
STARTED_PIDS+=("$SERVER_PID")
RPC_PORT=$(wait_for_port "$WORK/parking-server.log" "listening: rpc ${HOST//./\\.}:" "$SERVER_PID") || exit 2
SENSOR_PORT=$(sed -n "s/.*sensor ${HOST//./\\.}:\([0-9][0-9]*\).*/\1/p" "$WORK/parking-server.log" | head -n 1)
echo "parking-server on $HOST:$RPC_PORT (sensors :$SENSOR_PORT); ${DURATION}s per row;" \
    "$IDLE idle connections; $SENSORS sensors" >&2

STATUS=0
row() { # row NAME MODE WORKERS IDLE
    echo "  $2, $3 connection(s), $4 idle" >&2
    load_test_row "$WORK/$1" "$BIN/load-test" --host "$HOST" --port "$RPC_PORT" --mode "$2" \
        --workers "$3" --duration "$DURATION" --warmup 1 --idle "$4"
}
# First, on the fresh server: memory the allocator kept from a busy row would hide the cost.
echo "  RSS with $IDLE idle connections" >&2
python3 - "$SERVER_PID" "$HOST" "$RPC_PORT" "$IDLE" >"$WORK/rss.txt" <<'PY'
import os, socket, sys, time

pid, host, port, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def rss_bytes():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise SystemExit("no VmRSS")

def open_fds():
    return len(os.listdir(f"/proc/{pid}/fd"))

before_fds, before = open_fds(), rss_bytes()
conns = [socket.create_connection((host, port)) for _ in range(count)]
deadline = time.monotonic() + 60
while open_fds() < before_fds + count:
    if time.monotonic() > deadline:
        raise SystemExit(f"the server took {open_fds() - before_fds} of {count} connections")
    time.sleep(0.05)
# The server has accepted them all; let the acceptor hand the last ones to the poller.
time.sleep(1)
after = rss_bytes()
print(f"{before} {after} {(after - before) / count:.0f}")
PY

row ping-quiet ping 1 0
row ping-idle ping 1 "$IDLE"
row mixed-quiet mixed 16 0
row mixed-idle mixed 16 "$IDLE"

echo "  $SENSORS sensors, 1 update each every 5 s" >&2
code=0
"$BIN/sensor-sim" --host "$HOST" --port "$SENSOR_PORT" --lots A B C --sensors "$SENSORS" \
    --rate $((SENSORS / 5)) --duration "$DURATION" >"$WORK/sensors.txt" 2>"$WORK/sensors.log" || code=$?
if [ "$code" != 0 ]; then
    STATUS=1
fi

echo "  $SENSORS subscribers on ALL (cargo bench)" >&2
SUBSCRIBERS=$SENSORS cargo bench --quiet -p server --bench fanout >"$WORK/fanout.txt" 2>&1 || STATUS=1

python3 - "$WORK" "$IDLE" <<'PY'
import json, os, sys

work, idle = sys.argv[1], sys.argv[2]

def row(name):
    with open(os.path.join(work, f"{name}.json")) as f:
        return json.load(f)["rows"][0]

def p(r, key):
    return r["latency_us"][key] / 1000.0

print(f"{'row':<18} | {'req/s quiet':>11} {'idle':>9} {'ratio':>6} | "
      f"{'p99 ms quiet':>12} {'idle':>7} {'ratio':>6} | {'err+to':>6}")
for mode, label in (("ping", "ping, 1 conn"), ("mixed", "mixed, 16 conns")):
    q, i = row(f"{mode}-quiet"), row(f"{mode}-idle")
    failures = q["errors"] + q["timeouts"] + i["errors"] + i["timeouts"]
    print(f"{label:<18} | {q['throughput']:>11.0f} {i['throughput']:>9.0f} "
          f"{i['throughput'] / q['throughput']:>6.2f} | {p(q, 'p99'):>12.3f} "
          f"{p(i, 'p99'):>7.3f} {p(i, 'p99') / p(q, 'p99'):>6.2f} | {failures:>6}")
print(f"(idle = with {idle} idle RPC connections open; ratio = idle / quiet)")
before, after, each = open(os.path.join(work, "rss.txt")).read().split()
print(f"RSS: {int(before) / 2**20:.1f} MiB, {int(after) / 2**20:.1f} MiB with {idle} idle "
      f"connections: {each} bytes each")
print("sensors:", open(os.path.join(work, "sensors.txt")).read().strip())
for line in open(os.path.join(work, "fanout.txt")):
    if line.strip() and not line.startswith(("running", "test result")):
        print("fanout:", line.rstrip())
PY
exit "$STATUS"
