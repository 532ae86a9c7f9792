#!/usr/bin/env bash
# Compares parking-server with baseline-server (the least a correct RPC server must do) under
# the same load-test rows, and prints the ratio parking-server / baseline for each row.
#
# Usage: scripts/bench.sh [-m MODES] [-w WORKERS] [-d SECS] [-u WARMUP] [-p PIPELINE] [-i IDLE]
#                         [-r] [-o DIR]
#
#   -m MODES     load-test modes, space separated   (env MODES,    default "ping avail reserve mixed")
#   -w WORKERS   connection counts, space separated (env WORKERS,  default "1 4 16")
#   -d SECS      recorded seconds per row           (env DURATION, default 10)
#   -u SECS      warmup seconds per row             (env WARMUP,   default 1)
#   -p N         requests in flight per connection  (env PIPELINE, default 1)
#   -i N         connections held open and silent during every row, on both servers
#                (load-test --idle; env IDLE, default 0)
#   -r           also run redis-benchmark GET with the same connections and pipeline
#                against a throwaway redis-server (needs both on PATH; env REDIS=1), and
#                print parking-server's avail rows against it
#   -o DIR       keep every row's JSON report, table and the server logs in DIR
#                (env OUT, default: a temporary directory, removed at the end)
#
# BIN=DIR takes parking-server, baseline-server and load-test from DIR instead of building
# them (to measure another build, e.g. main's, with the same script).
#
# Both servers run on 127.0.0.1 with ephemeral ports, built in release mode. Rows are
# interleaved (for each mode and connection count: parking-server, then baseline) so that
# drift in the machine's load hits both alike. Each row is a separate load-test run, so the
# parking-server's state carries over from row to row (as it would in production).
#
# Exit status: 0 if every row ran clean, 1 if any row had errors or timeouts (the table is
# printed anyway), 2 on a usage error or if a server did not start.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MODES=${MODES:-"ping avail reserve mixed"}
WORKERS=${WORKERS:-"1 4 16"}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
PIPELINE=${PIPELINE:-1}
IDLE=${IDLE:-0}
REDIS=${REDIS:-0}
OUT=${OUT:-}

while getopts "m:w:d:u:p:i:ro:h" opt; do
    case $opt in
        m) MODES=$OPTARG ;;
        w) WORKERS=$OPTARG ;;
        d) DURATION=$OPTARG ;;
        u) WARMUP=$OPTARG ;;
        p) PIPELINE=$OPTARG ;;
        i) IDLE=$OPTARG ;;
        r) REDIS=1 ;;
        o) OUT=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
no_operands "$@"

HOST=127.0.0.1

cd "$ROOT"
require_python3
if [ -z "${BIN:-}" ]; then
    BIN=$TARGET_DIR/release
    echo "building (release)..." >&2
    cargo build --release --quiet -p parking-server -p load-test
fi
if [ "$REDIS" = 1 ]; then
    for tool in redis-server redis-benchmark; do
        if ! command -v "$tool" > /dev/null; then
            echo "bench: -r needs $tool on PATH (Debian: apt-get install redis-server redis-tools)" >&2
            exit 2
        fi
    done
fi

use_work_dir bench
start_parking_server parking-server "$BIN/parking-server" "$ROOT/config.json" --http-port 0 \
    --data-dir "$WORK/data"
SERVER_PORT=$STARTED_PORT
start_logged baseline "listening on ${HOST//./\\.}:" "$BIN/baseline-server" --host "$HOST" --port 0
BASELINE_PORT=$STARTED_PORT
if [ "$REDIS" = 1 ]; then
    start_redis redis --appendonly no
fi

echo "parking-server on $HOST:$SERVER_PORT, baseline on $HOST:$BASELINE_PORT;" \
    "modes: $MODES; connections: $WORKERS; ${DURATION}s per row (+${WARMUP}s warmup);" \
    "pipeline $PIPELINE; $IDLE idle connections" >&2

STATUS=0
for mode in $MODES; do
    for workers in $WORKERS; do
        for server in parking baseline; do
            if [ "$server" = parking ]; then port=$SERVER_PORT; else port=$BASELINE_PORT; fi
            name="$mode-c$workers-$server"
            echo "  $mode, $workers connection(s): $server" >&2
            code=0
            "$BIN/load-test" --host "$HOST" --port "$port" --mode "$mode" --workers "$workers" \
                --duration "$DURATION" --warmup "$WARMUP" --pipeline "$PIPELINE" \
                --idle "$IDLE" --json "$WORK/$name.json" >"$WORK/$name.txt" || code=$?
            case $code in
                0) ;;
                1) STATUS=1 ;;
                *) echo "bench: load-test failed (exit $code):" >&2
                   cat "$WORK/$name.txt" >&2
                   exit 2 ;;
            esac
        done
    done
done

if [ "$REDIS" = 1 ]; then
    for workers in $WORKERS; do
        echo "  redis GET, $workers connection(s)" >&2
        # About as many requests as the parking rows answer in DURATION seconds at this depth.
        requests=$(( 50000 * DURATION * PIPELINE ))
        redis-benchmark -h "$HOST" -p "$REDIS_PORT" -t get -c "$workers" -P "$PIPELINE" \
            -n "$requests" --csv >"$WORK/redis-c$workers.csv"
    done
fi

MODES=$MODES WORKERS=$WORKERS REDIS=$REDIS python3 - "$WORK" <<'PY'
import json, os, sys

work = sys.argv[1]

def row(mode, workers, server):
    with open(os.path.join(work, f"{mode}-c{workers}-{server}.json")) as f:
        return json.load(f)["rows"][0]

def latency(r, key):
    lat = r.get("latency_us")
    return None if lat is None else lat[key] / 1000.0

def ratio(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"

def num(x, fmt):
    return "-" if x is None else format(x, fmt)

head = (f"{'mode':<8} {'conns':>5} | {'req/s':>10} {'base req/s':>10} {'ratio':>6} | "
        f"{'p50 ms':>7} {'base':>7} {'ratio':>6} | {'p99 ms':>7} {'base':>7} {'ratio':>6} | "
        f"{'p99.9 ms':>8} {'base':>8} {'ratio':>6} | {'err+to':>6}")
print(head)
print("-" * len(head))
for mode in os.environ["MODES"].split():
    for workers in os.environ["WORKERS"].split():
        s, b = row(mode, workers, "parking"), row(mode, workers, "baseline")
        failures = s["errors"] + s["timeouts"] + b["errors"] + b["timeouts"]
        cols = [f"{mode:<8} {workers:>5}"]
        cols.append(f"{s['throughput']:>10.0f} {b['throughput']:>10.0f} "
                    f"{ratio(s['throughput'], b['throughput']):>6}")
        for key, w in (("p50", 7), ("p99", 7), ("p99.9", 8)):
            a, c = latency(s, key), latency(b, key)
            cols.append(f"{num(a, f'>{w}.3f'):>{w}} {num(c, f'>{w}.3f'):>{w}} {ratio(a, c):>6}")
        cols.append(f"{failures:>6}")
        print(" | ".join(cols))
print()
print("ratio = parking-server / baseline: below 1 for req/s and above 1 for latency mean the "
      "parking server is slower. err+to: errors and timeouts of both rows.")

if os.environ["REDIS"] == "1" and "avail" in os.environ["MODES"].split():
    import csv
    print()
    head = (f"{'conns':>5} | {'avail req/s':>11} {'redis GET':>10} {'ratio':>6} | "
            f"{'p50 ms':>7} {'redis':>7} {'ratio':>6} | {'p99 ms':>7} {'redis':>7} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for workers in os.environ["WORKERS"].split():
        s = row("avail", workers, "parking")
        with open(os.path.join(work, f"redis-c{workers}.csv")) as f:
            r = next(csv.DictReader(f))
        rps, p50, p99 = float(r["rps"]), float(r["p50_latency_ms"]), float(r["p99_latency_ms"])
        print(f"{workers:>5} | {s['throughput']:>11.0f} {rps:>10.0f} {ratio(s['throughput'], rps):>6} | "
              f"{latency(s, 'p50'):>7.3f} {p50:>7.3f} {ratio(latency(s, 'p50'), p50):>6} | "
              f"{latency(s, 'p99'):>7.3f} {p99:>7.3f} {ratio(latency(s, 'p99'), p99):>6}")
    print()
    print("ratio = parking-server getAvailability / Redis GET, same connections and pipeline "
          "(redis-benchmark measures its own latency, from its own client).")
PY
exit $STATUS
