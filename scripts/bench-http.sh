#!/usr/bin/env bash
# What the HTTP port costs and how fast its event stream is (issue 16's benchmark rows), side
# by side in one run, as ratios:
#
#   1. `GET /v1/lots/A` with keep-alive (wrk) next to the RPC port's `getAvailability`
#      (load-test --mode avail), at 1 and at 16 connections: HTTP / RPC (target >= 0.7)
#   2. SSE fan-out: STREAMS open `GET /v1/events?lot=A` streams; CHANGES changes to lot A, one
#      at a time (a reservation made, then cancelled, over HTTP); for every stream, the time
#      from sending the change to reading its event: p50, p99, max (target p99 < 100 ms)
#   3. load-test at 16 connections (avail and mixed) against a server with `"metrics": false`
#      and one with metrics on: on / off (target within 5 %)
#
# Usage: scripts/bench-http.sh [-r ROUNDS] [-d SECS] [-u WARMUP] [-s STREAMS] [-c CHANGES]
#                              [-b PROFILE] [-o DIR]
#
#   -r ROUNDS   rounds of rows 1 and 3 (env ROUNDS, default 3); the report takes the median
#   -d SECS     recorded seconds per row (env DURATION, default 5)
#   -u SECS     warmup seconds per row   (env WARMUP,   default 1)
#   -s STREAMS  event streams of row 2   (env STREAMS,  default 1000)
#   -c CHANGES  changes sent in row 2    (env CHANGES,  default 20)
#   -b PROFILE  cargo profile to build and run (env PROFILE, default release; `-b dev` runs the
#               debug build: only to check that the script works, its numbers mean nothing)
#   -o DIR      keep the reports and the servers' logs in DIR
#
# Two in-memory servers on 127.0.0.1, ephemeral ports, per-address limit lifted: `on` (metrics
# on, as shipped) serves rows 1 and 2, `off` adds itself in row 3. Within a round every row
# runs each variant in turn, so drift in the machine's load hits all alike. The load
# generators (wrk: one event loop per thread; load-test: one thread per connection; the SSE
# client: one Python thread) share the machine with the server: on a 2-core machine their
# own CPU is a large part of what is measured, so compare ratios, not absolute numbers.
#
# Needs wrk (Debian's `wrk`) and python3. Exit status: 0 if every row ran clean, 1 if any had
# errors, timeouts or lost events, 2 on a usage error or if a server did not start.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
STREAMS=${STREAMS:-1000}
CHANGES=${CHANGES:-20}
PROFILE=${PROFILE:-release}
OUT=${OUT:-}

while getopts "r:d:u:s:c:b:o:h" opt; do
    case $opt in
        r) ROUNDS=$OPTARG ;;
        d) DURATION=$OPTARG ;;
        u) WARMUP=$OPTARG ;;
        s) STREAMS=$OPTARG ;;
        c) CHANGES=$OPTARG ;;
        b) PROFILE=$OPTARG ;;
        o) OUT=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
no_operands "$@"
case $PROFILE in
    release) PROFILE_DIR=release ;;
    dev | debug) PROFILE=dev; PROFILE_DIR=debug ;;
    *) echo "bench-http: -b takes release or dev" >&2; exit 2 ;;
esac

HOST=127.0.0.1
BIN=$TARGET_DIR/$PROFILE_DIR

cd "$ROOT"
require_python3
if ! command -v wrk > /dev/null; then
    echo "bench-http: wrk is needed for the HTTP rows (Debian: apt-get install wrk)" >&2
    exit 2
fi
# The event streams and the busy connections, plus the servers' own files.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((STREAMS + 200)) ]; then
    echo "bench-http: $STREAMS streams need about $((STREAMS + 200)) open files; the limit is $(ulimit -n)" >&2
    exit 2
fi
echo "building ($PROFILE)..." >&2
cargo build --profile "$PROFILE" --quiet -p parking-server -p load-test

if [ -n "$OUT" ]; then
    mkdir -p "$OUT"
    WORK=$(cd "$OUT" && pwd)
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-http.XXXXXX")
fi
cleanup() {
    stop_started
    if [ -z "$OUT" ]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 - "$ROOT/config.json" "$WORK" <<'PY'
import json, sys
base = json.load(open(sys.argv[1]))
for name, metrics in (("on", True), ("off", False)):
    json.dump({**base, "metrics": metrics}, open(f"{sys.argv[2]}/{name}.json", "w"))
PY

declare -A RPC HTTP
start_server() { # NAME
    local name=$1 pid log="$WORK/server-$1.log"
    # Every benchmark connection comes from one address, so the per-address limit is lifted.
    RUST_LOG=info "$BIN/parking-server" --config "$WORK/$name.json" --in-memory --host "$HOST" \
        --rpc-port 0 --sensor-port 0 --pubsub-port 0 --http-port 0 \
        --max-connections-per-address 0 --max-connections $((STREAMS + 1000)) 2> "$log" &
    pid=$!
    STARTED_PIDS+=("$pid")
    RPC[$name]=$(wait_for_port "$log" "listening: rpc ${HOST//./\\.}:" "$pid") || exit 2
    HTTP[$name]=$(sed -n "s/.*http ${HOST//./\\.}:\([0-9][0-9]*\).*/\1/p" "$log" | head -n 1)
}
start_server on
start_server off
echo "servers: on rpc :${RPC[on]} http :${HTTP[on]}; off rpc :${RPC[off]} http :${HTTP[off]};" \
    "${DURATION}s per row (+${WARMUP}s warmup), $ROUNDS round(s)" >&2

STATUS=0
load_test() { # NAME VARIANT MODE CONNECTIONS
    load_test_row "$WORK/$1" "$BIN/load-test" --host "$HOST" --port "${RPC[$2]}" --mode "$3" \
        --workers "$4" --duration "$DURATION" --warmup "$WARMUP"
}
http_test() { # NAME CONNECTIONS
    local threads=$(($2 < 2 ? 1 : 2)) url="http://$HOST:${HTTP[on]}/v1/lots/A"
    # wrk refuses a zero duration, so `-u 0` means no warmup run at all.
    if [ "$WARMUP" != 0 ]; then
        wrk -t "$threads" -c "$2" -d "${WARMUP}s" "$url" > /dev/null
    fi
    wrk -t "$threads" -c "$2" -d "${DURATION}s" --latency "$url" > "$WORK/$1.txt"
}

for round in $(seq "$ROUNDS"); do
    for connections in 1 16; do
        echo "  round $round: GET /v1/lots/A and getAvailability, $connections connection(s)" >&2
        http_test "http-c$connections-r$round" "$connections"
        load_test "rpc-c$connections-r$round" on avail "$connections"
    done
    for mode in avail mixed; do
        for variant in on off; do
            echo "  round $round: load-test $mode, 16 connections, metrics $variant" >&2
            load_test "metrics-$mode-$variant-r$round" "$variant" "$mode" 16
        done
    done
done

echo "  $STREAMS event streams, $CHANGES changes" >&2
python3 - "$HOST" "${HTTP[on]}" "$STREAMS" "$CHANGES" > "$WORK/sse.json" <<'PY' || STATUS=1
# Opens the streams, waits for each one's snapshot, then sends the changes one at a time and
# times, for every stream, the send of a change to the read of its event.
import json, selectors, socket, sys, time

host, port, count, changes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
DEADLINE = 10.0

class Stream:
    def __init__(self):
        self.sock = socket.create_connection((host, port))
        self.sock.sendall(f"GET /v1/events?lot=A HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        self.sock.setblocking(False)
        self.buffer = b""
        self.head = False
        self.free = []

    def read(self):
        """Reads what is there; the free counts of the complete events it holds."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        if not data:
            raise SystemExit("a stream was closed by the server")
        self.buffer += data
        if not self.head:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.buffer.split(b"\r\n", 1)[0]
            if b" 200 " not in status:
                raise SystemExit(f"the stream was refused: {status!r}")
            self.buffer, self.head = self.buffer[end + 4:], True
        *events, self.buffer = self.buffer.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    self.free.append(json.loads(line[6:])["free"])

selector = selectors.DefaultSelector()
streams = []
for _ in range(count):
    stream = Stream()
    streams.append(stream)
    selector.register(stream.sock, selectors.EVENT_READ, stream)

def wait_for(done):
    """Reads streams until done(stream) holds for all; the time each first held."""
    at = {}
    deadline = time.monotonic() + DEADLINE
    pending = {id(s) for s in streams if not done(s)}
    now = time.monotonic()
    for s in streams:
        if id(s) not in pending:
            at[id(s)] = now
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            stream = key.data
            stream.read()
            if id(stream) in pending and done(stream):
                pending.discard(id(stream))
                at[id(stream)] = time.monotonic()
    return at, len(pending)

_, missing = wait_for(lambda s: len(s.free) >= 1)
if missing:
    raise SystemExit(f"{missing} of {count} streams got no snapshot within {DEADLINE} s")
free = streams[0].free[-1]

writer = socket.create_connection((host, port))
writer.settimeout(DEADLINE)
def change(i):
    # Even changes reserve, odd ones cancel the same plate: lot A never fills up.
    if i % 2 == 0:
        body = b'{"plate":"BENCH1"}'
        request = (f"POST /v1/lots/A/reservations HTTP/1.1\r\nHost: {host}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    else:
        request = f"DELETE /v1/lots/A/reservations/BENCH1 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    writer.sendall(request)

latencies, lost = [], 0
for i in range(changes):
    for s in streams:
        s.free.clear()
    expected = free - 1 if i % 2 == 0 else free
    sent = time.monotonic()
    change(i)
    at, missing = wait_for(lambda s, expected=expected: expected in s.free)
    lost += missing
    latencies.extend((t - sent) * 1000 for t in at.values())
    # The writer's response, read only now so that it cannot delay the streams.
    response = writer.recv(65536)
    if not response.startswith(b"HTTP/1.1 20"):
        raise SystemExit(f"change {i} was refused: {response[:80]!r}")
    time.sleep(0.05)

latencies.sort()
def pct(p):
    return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else None
print(json.dumps({"streams": count, "changes": changes, "events": len(latencies), "lost": lost,
                  "p50": pct(0.50), "p99": pct(0.99), "max": latencies[-1] if latencies else None}))
if lost:
    sys.exit(1)
PY

REPORT=0
ROUNDS=$ROUNDS python3 - "$WORK" <<'PY' || REPORT=$?
import json, os, re, statistics, sys

work = sys.argv[1]
rounds = range(1, int(os.environ["ROUNDS"]) + 1)
failures = 0

def load_test(name):
    global failures
    row = json.load(open(os.path.join(work, f"{name}.json")))["rows"][0]
    failures += row["errors"] + row["timeouts"]
    latency = row.get("latency_us") or {}
    return row["throughput"], latency.get("p50", 0) / 1000, latency.get("p99", 0) / 1000

def wrk(name):
    global failures
    text = open(os.path.join(work, f"{name}.txt")).read()
    def ms(label):
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\b", text, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    failures += sum(map(int, errors.groups())) if errors else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    failures += int(non_2xx.group(1)) if non_2xx else 0
    return float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)), ms(50), ms(99)

def median(name, read):
    got = [read(name.format(r=r)) for r in rounds]
    return tuple(statistics.median(values) for values in zip(*got))

def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"

print("| row | req/s | p50 ms | p99 ms | ratio |")
print("|---|---|---|---|---|")
for c in (1, 16):
    http = median(f"http-c{c}-r{{r}}", wrk)
    rpc = median(f"rpc-c{c}-r{{r}}", load_test)
    print(f"| HTTP `GET /v1/lots/A` (wrk), {c} conn | {http[0]:,.0f} | {http[1]:.3f} | {http[2]:.3f} "
          f"| {ratio(http[0], rpc[0])}x RPC |")
    print(f"| RPC `getAvailability` (load-test), {c} conn | {rpc[0]:,.0f} | {rpc[1]:.3f} | {rpc[2]:.3f} | 1 |")
for mode in ("avail", "mixed"):
    on = median(f"metrics-{mode}-on-r{{r}}", load_test)
    off = median(f"metrics-{mode}-off-r{{r}}", load_test)
    print(f"| load-test {mode}, 16 conn, metrics on | {on[0]:,.0f} | {on[1]:.3f} | {on[2]:.3f} "
          f"| {ratio(on[0], off[0])}x off |")
    print(f"| load-test {mode}, 16 conn, metrics off | {off[0]:,.0f} | {off[1]:.3f} | {off[2]:.3f} | 1 |")
try:
    sse = json.load(open(os.path.join(work, "sse.json")))
    print(f"\nSSE: {sse['streams']} streams, {sse['changes']} changes, {sse['events']} events "
          f"read, {sse['lost']} lost; send-to-read latency p50 {sse['p50']:.1f} ms, "
          f"p99 {sse['p99']:.1f} ms, max {sse['max']:.1f} ms (target p99 < 100 ms)")
except (OSError, ValueError, TypeError) as error:
    failures += 1
    print(f"\nSSE: no result ({error})")
print(f"\nmedians over {len(rounds)} round(s); ratio = req/s of the row / req/s of the row it "
      f"names, same round set; errors, timeouts and non-2xx: {failures}")
sys.exit(1 if failures else 0)
PY
[ "$REPORT" = 0 ] || STATUS=1
exit "$STATUS"
