#!/usr/bin/env bash
# Compares parking-server with baseline-server (the least a correct RPC server must do) under
# the same load-test rows, and prints the ratio parking-server / baseline for each row.
#
# Usage: scripts/bench.sh [-m MODES] [-w WORKERS] [-d SECS] [-u WARMUP] [-p PIPELINE] [-i IDLE]
#                         [-R ROUNDS] [-r] [-o DIR]
#
#   -m MODES     load-test modes, space separated   (env MODES,    default "ping avail reserve mixed")
#   -w WORKERS   connection counts, space separated (env WORKERS,  default "1 4 16")
#   -d SECS      recorded seconds per row           (env DURATION, default 10)
#   -u SECS      warmup seconds per row             (env WARMUP,   default 1)
#   -p N         requests in flight per connection  (env PIPELINE, default 1)
#   -i N         connections held open and silent during every row, on both servers
#                (load-test --idle; env IDLE, default 0)
#   -R ROUNDS    run every row ROUNDS times, interleaved (round 1 of every server, then
#                round 2, ...), print each round and the medians (env ROUNDS, default 1);
#                one row per server is too noisy on a shared machine to compare by
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
# interleaved (for each mode and connection count: parking-server, then baseline; Redis after
# them, in the same round) so that drift in the machine's load hits all alike. With -R, the
# ratio reported is the median of the rounds' ratios, each taken within one round. Each row is a separate load-test run, so the
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
ROUNDS=${ROUNDS:-1}
REDIS=${REDIS:-0}
OUT=${OUT:-}

while getopts "m:w:d:u:p:i:R:ro:h" opt; do
    case $opt in
        m) MODES=$OPTARG ;;
        w) WORKERS=$OPTARG ;;
        d) DURATION=$OPTARG ;;
        u) WARMUP=$OPTARG ;;
        p) PIPELINE=$OPTARG ;;
        i) IDLE=$OPTARG ;;
        R) ROUNDS=$OPTARG ;;
        r) REDIS=1 ;;
        o) OUT=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
no_operands "$@"
case $ROUNDS in
    '' | *[!0-9]* | 0) echo "bench: -R takes a number of rounds from 1" >&2; exit 2 ;;
esac

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
    "pipeline $PIPELINE; $IDLE idle connections; $ROUNDS round(s)" >&2

STATUS=0
for round in $(seq "$ROUNDS"); do
    for mode in $MODES; do
        for workers in $WORKERS; do
            for server in parking baseline; do
                if [ "$server" = parking ]; then port=$SERVER_PORT; else port=$BASELINE_PORT; fi
                name="$mode-c$workers-$server-r$round"
                echo "  round $round, $mode, $workers connection(s): $server" >&2
                load_test_row "$WORK/$name" "$BIN/load-test" --host "$HOST" --port "$port" \
                    --mode "$mode" --workers "$workers" --duration "$DURATION" \
                    --warmup "$WARMUP" --pipeline "$PIPELINE" --idle "$IDLE"
            done
        done
    done

    if [ "$REDIS" = 1 ]; then
        for workers in $WORKERS; do
            echo "  round $round, redis GET, $workers connection(s)" >&2
            # About as many requests as the parking rows answer in DURATION seconds at this
            # depth.
            requests=$(( 50000 * DURATION * PIPELINE ))
            redis-benchmark -h "$HOST" -p "$REDIS_PORT" -t get -c "$workers" -P "$PIPELINE" \
                -n "$requests" --csv >"$WORK/redis-c$workers-r$round.csv"
        done
    fi
done

MODES=$MODES WORKERS=$WORKERS REDIS=$REDIS ROUNDS=$ROUNDS python3 - "$WORK" <<'PY'
import json, os, statistics, sys

work = sys.argv[1]
rounds = range(1, int(os.environ["ROUNDS"]) + 1)

def row(mode, workers, server, r):
    with open(os.path.join(work, f"{mode}-c{workers}-{server}-r{r}.json")) as f:
        return json.load(f)["rows"][0]

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def latency(r, key):
    lat = r.get("latency_us")
    return None if lat is None else lat[key] / 1000.0

def quotient(a, b):
    return None if a is None or b is None or b == 0 else a / b

def num(x, fmt):
    return "-" if x is None else format(x, fmt)

def line(label, values):
    """One table line: label, then (parking, other) pairs with their ratio; with several
    rounds the median line's ratios are the medians of the rounds' ratios."""
    cols = [label]
    for (a, b, ratio), w, fmt in values:
        cols.append(f"{num(a, fmt):>{w}} {num(b, fmt):>{w}} {num(ratio, '.2f'):>6}")
    return cols

def with_medians(label_of, per_round):
    """Lines for each round (when there are several) and the median line. per_round: a list
    (one per round) of lists of (parking, other) pairs."""
    lines = []
    pairs = [[(a, b, quotient(a, b)) for a, b in values] for values in per_round]
    if len(pairs) > 1:
        for r, values in zip(rounds, pairs):
            lines.append((label_of(f"r{r}"), values))
    medians = [
        tuple(median(column[i] for column in columns) for i in range(3))
        for columns in zip(*pairs)
    ]
    lines.append((label_of("median" if len(pairs) > 1 else ""), medians))
    return lines

several = len(rounds) > 1
round_head = f" {'round':>6}" if several else ""

head = (f"{'mode':<8} {'conns':>5}{round_head} | {'req/s':>10} {'base req/s':>10} {'ratio':>6} | "
        f"{'p50 ms':>7} {'base':>7} {'ratio':>6} | {'p99 ms':>7} {'base':>7} {'ratio':>6} | "
        f"{'p99.9 ms':>8} {'base':>8} {'ratio':>6} | {'err+to':>6}")
print(head)
print("-" * len(head))
for mode in os.environ["MODES"].split():
    for workers in os.environ["WORKERS"].split():
        per_round, failures = [], []
        for r in rounds:
            s, b = row(mode, workers, "parking", r), row(mode, workers, "baseline", r)
            failures.append(s["errors"] + s["timeouts"] + b["errors"] + b["timeouts"])
            per_round.append([(s["throughput"], b["throughput"])]
                             + [(latency(s, key), latency(b, key)) for key in ("p50", "p99", "p99.9")])
        label = lambda tag: f"{mode:<8} {workers:>5}" + (f" {tag:>6}" if several else "")
        lines = with_medians(label, per_round)
        for index, (text, values) in enumerate(lines):
            cols = line(text, zip(values, (10, 7, 7, 8), (".0f", ".3f", ".3f", ".3f")))
            # The median line carries every round's failures.
            fail = sum(failures) if index == len(lines) - 1 else failures[index]
            cols.append(f"{fail:>6}")
            print(" | ".join(cols))
print()
print("ratio = parking-server / baseline: below 1 for req/s and above 1 for latency mean the "
      "parking server is slower. err+to: errors and timeouts of both rows.")
if several:
    print("median: the rounds' medians, and for each ratio the median of the rounds' ratios.")

if os.environ["REDIS"] == "1" and "avail" in os.environ["MODES"].split():
    import csv
    print()
    head = (f"{'conns':>5}{round_head} | {'avail req/s':>11} {'redis GET':>11} {'ratio':>6} | "
            f"{'p50 ms':>7} {'redis':>7} {'ratio':>6} | {'p99 ms':>7} {'redis':>7} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for workers in os.environ["WORKERS"].split():
        per_round = []
        for r in rounds:
            s = row("avail", workers, "parking", r)
            with open(os.path.join(work, f"redis-c{workers}-r{r}.csv")) as f:
                redis = next(csv.DictReader(f))
            per_round.append([
                (s["throughput"], float(redis["rps"])),
                (latency(s, "p50"), float(redis["p50_latency_ms"])),
                (latency(s, "p99"), float(redis["p99_latency_ms"])),
            ])
        label = lambda tag: f"{workers:>5}" + (f" {tag:>6}" if several else "")
        for text, values in with_medians(label, per_round):
            print(" | ".join(line(text, zip(values, (11, 7, 7), (".0f", ".3f", ".3f")))))
    print()
    print("ratio = parking-server getAvailability / Redis GET, same connections and pipeline "
          "(redis-benchmark measures its own latency, from its own client).")
PY
exit $STATUS
