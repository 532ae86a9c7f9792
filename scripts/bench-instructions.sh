#!/usr/bin/env bash
# Counts what one request costs the parking-server (and load-test) in CPU instructions and
# system calls, measures that do not move with the machine's load (wall-clock numbers on a
# shared machine do), so that a change to the hot path can be judged before it is timed.
#
# Usage: scripts/bench-instructions.sh [-m MODE] [-w CONNS] [-p PIPELINE] [-d SECS] [-s]
#
#   -m MODE      load-test mode               (env MODE,     default avail)
#   -w CONNS     connections                  (env CONNS,    default 16)
#   -p N         requests in flight each      (env PIPELINE, default 16)
#   -d SECS      seconds of load per run      (env SECS,     default 5)
#   -s           also count system calls per request (strace -c -f on the server)
#
# BIN=DIR takes parking-server and load-test from DIR instead of building them (to measure an
# older build side by side); CONFIG=FILE starts the server with FILE instead of config.json
# (e.g. one whose "store" is a PostgreSQL database, to compare stores); KEEP=1 keeps the work directory (callgrind files, logs) and names it.
# Three runs against release builds: the server under callgrind (counting only while the load
# runs), load-test under callgrind against a plain server, and with -s the server under
# `strace -c -f`. Each prints instructions (or system calls) divided by the requests answered
# in that run. Needs valgrind (Debian: apt-get install valgrind) and, for -s, strace.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MODE=${MODE:-avail}
CONNS=${CONNS:-16}
PIPELINE=${PIPELINE:-16}
SECS=${SECS:-5}
SYSCALLS=0
CONFIG=${CONFIG:-$ROOT/config.json}

while getopts "m:w:p:d:sh" opt; do
    case $opt in
        m) MODE=$OPTARG ;;
        w) CONNS=$OPTARG ;;
        p) PIPELINE=$OPTARG ;;
        d) SECS=$OPTARG ;;
        s) SYSCALLS=1 ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

HOST=127.0.0.1
cd "$ROOT"
for tool in valgrind callgrind_control python3; do
    if ! command -v "$tool" > /dev/null; then
        echo "bench-instructions: needs $tool on PATH (Debian: apt-get install valgrind)" >&2
        exit 2
    fi
done
if [ -z "${BIN:-}" ]; then
    BIN=$TARGET_DIR/release
    echo "building (release)..." >&2
    cargo build --release --quiet -p parking-server -p load-test
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-instructions.XXXXXX")
cleanup() {
    stop_started
    if [ -z "${KEEP:-}" ]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
if [ -n "${KEEP:-}" ]; then
    echo "work directory: $WORK" >&2
fi
trap 'exit 130' INT TERM

# start_server NAME WRAPPER...: starts parking-server under WRAPPER, sets PORT and PID.
start_server() {
    local name=$1
    shift
    RUST_LOG=info "$@" "$BIN/parking-server" --config "$CONFIG" --host "$HOST" \
        --rpc-port 0 --sensor-port 0 --pubsub-port 0 --http-port 0 \
        --max-connections-per-address 0 --data-dir "$WORK/data-$name" \
        2>"$WORK/$name.log" &
    PID=$!
    STARTED_PIDS+=("$PID")
    # Valgrind starts slowly: wait_for_port's 10 s are tried three times.
    PORT=""
    for _ in 1 2 3; do
        PORT=$(wait_for_port "$WORK/$name.log" "listening: rpc ${HOST//./\\.}:" "$PID" 2>/dev/null) && break
    done
    if [ -z "$PORT" ]; then
        echo "bench-instructions: server did not start:" >&2
        cat "$WORK/$name.log" >&2
        exit 2
    fi
}

# load NAME [WRAPPER...]: runs load-test (under WRAPPER) and prints the requests it had answered.
load() {
    local name=$1
    shift
    "$@" "$BIN/load-test" --host "$HOST" --port "$PORT" --mode "$MODE" --workers "$CONNS" \
        --pipeline "$PIPELINE" --duration "$SECS" --warmup 0 --json "$WORK/$name.json" \
        >/dev/null
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rows"][0]; print(r["requests"] + r["errors"] + r["timeouts"])' "$WORK/$name.json"
}

# total_ir FILE...: the instructions callgrind counted in its output files.
total_ir() {
    local sum=0 n
    for file in "$@"; do
        n=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$file" | tail -n 1)
        sum=$((sum + ${n:-0}))
    done
    echo "$sum"
}

# breakdown FILE REQUESTS: instructions per request spent inside the request path's steps
# (inclusive: a function with all it calls).
breakdown() {
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null | python3 -c '
import re, sys
requests = int(sys.argv[1])
steps = ["decode_json_request", "encode_json_reply", "decode_text_request", "encode_text_reply",
         "ParkingState::free", "RequestMetrics::record", "Connection::read_some",
         "Connection::write_some", "decode_json_reply", "encode_json_request",
         "ParkingClient::recv", "ParkingClient::queue"]
seen = {}
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(\S+?):(?!:)(.*)", line)
    if not m:
        continue
    ir, function = int(m.group(1).replace(",", "")), m.group(3)
    for step in steps:
        # The line naming the function itself (not a callee inlined into it) carries its cost.
        if re.search(r"(^|::)" + re.escape(step) + r"\s*(\[|$)", function.strip()):
            seen[step] = max(seen.get(step, 0), ir)
for step in steps:
    if step in seen:
        print(f"    {step:<28} {seen[step] / requests:8.0f} per request")
' "$2"
}

echo "mode $MODE, $CONNS connection(s), pipeline $PIPELINE, ${SECS}s per run" >&2

start_server server valgrind --tool=callgrind --instr-atstart=no --separate-threads=no \
    --callgrind-out-file="$WORK/server.callgrind"
callgrind_control -i on "$PID" >/dev/null
requests=$(load server)
callgrind_control -i off "$PID" >/dev/null
kill "$PID"
wait "$PID" 2>/dev/null || true
server_ir=$(total_ir "$WORK"/server.callgrind*)
echo "server:    $server_ir instructions / $requests requests = $((server_ir / requests)) per request"
breakdown "$WORK/server.callgrind" "$requests" > "$WORK/server.top"

start_server client
requests=$(load client valgrind --tool=callgrind --callgrind-out-file="$WORK/client.callgrind")
client_ir=$(total_ir "$WORK"/client.callgrind*)
echo "load-test: $client_ir instructions / $requests requests = $((client_ir / requests)) per request"
breakdown "$WORK/client.callgrind" "$requests" > "$WORK/client.top"
kill "$PID"
wait "$PID" 2>/dev/null || true

if [ "$SYSCALLS" = 1 ]; then
    start_server syscalls strace -c -f -o "$WORK/strace.txt"
    requests=$(load syscalls)
    # strace, killed, detaches from every thread slowly; the server's own exit ends it.
    server_pid=$(pgrep -P "$PID" | head -n 1)
    kill "${server_pid:-$PID}"
    wait "$PID" 2>/dev/null || true
    python3 - "$WORK/strace.txt" "$requests" <<'PY'
import sys
calls, rows = 0, []
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] not in ("total",):
        n = int(parts[3])
        calls += n
        rows.append((n, parts[-1]))
requests = int(sys.argv[2])
print(f"server:    {calls} system calls / {requests} requests = {calls / requests:.3f} per request")
for n, name in sorted(rows, reverse=True)[:6]:
    print(f"           {name:<16} {n / requests:.3f}")
PY
fi
echo
echo "server, inside each step (callgrind, inclusive):"
cat "$WORK/server.top"
echo "load-test, inside each step:"
cat "$WORK/client.top"
