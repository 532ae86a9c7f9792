#!/usr/bin/env bash
# Benchmarks the embedded durable store against Redis with an fsync'd append-only file, side
# by side in one run, as issue 14 asks:
#
#   1. load-test --mode reserve (each request a reserve or a cancel, durable before its reply)
#      on a server with fsync "always", against redis-benchmark -t set on a redis-server with
#      --appendonly yes --appendfsync always, at each connection count;
#   2. the same reserve rows with fsync "everysec" and with the state in memory only
#      (--in-memory), the cost of durability when a second of loss is acceptable.
#
# Rows are interleaved (for each connection count: always, Redis, everysec, memory, and with -b
# the earlier build's always and everysec rows next to them) so that
# drift in the machine's load hits them alike; compare the ratios, not the absolute numbers.
# Also prints the disk the data lies on and its fdatasync latency (python3 probe).
#
# Usage: scripts/bench-durable.sh [-w WORKERS] [-d SECS] [-o DIR] [-b BINARY]
#
#   -w WORKERS   connection counts, space separated (env WORKERS,  default "1 16")
#   -d SECS      recorded seconds per row           (env DURATION, default 10)
#   -b BINARY    another parking-server (a build of an earlier commit, say) whose fsync
#                "always" and "everysec" rows run next to this build's, to compare the two
#                in one run (env BEFORE)
#   -o DIR       where the data directories, Redis's AOF, reports and logs go (env OUT).
#                Default: a new temporary directory under ${TMPDIR:-/tmp}, removed at the
#                end. The disk under it is the disk measured.
#
# Needs redis-server and redis-benchmark (Debian: apt-get install redis-server redis-tools).
# Exit status: 0 if every row ran clean, 1 if a row had errors, 2 on a usage error or a
# server that did not start.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORKERS=${WORKERS:-"1 16"}
DURATION=${DURATION:-10}
OUT=${OUT:-}
BEFORE=${BEFORE:-}

while getopts "w:d:o:b:h" opt; do
    case $opt in
        w) WORKERS=$OPTARG ;;
        d) DURATION=$OPTARG ;;
        o) OUT=$OPTARG ;;
        b) BEFORE=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
no_operands "$@"
if [ -n "$BEFORE" ] && [ ! -x "$BEFORE" ]; then
    echo "bench-durable: -b $BEFORE: not an executable" >&2
    exit 2
fi

HOST=127.0.0.1
BIN=$TARGET_DIR/release
cd "$ROOT"
require_python3
for tool in redis-server redis-benchmark; do
    if ! command -v "$tool" > /dev/null; then
        echo "bench-durable: needs $tool on PATH (Debian: apt-get install redis-server redis-tools)" >&2
        exit 2
    fi
done
echo "building (release)..." >&2
cargo build --release --quiet -p parking-server -p load-test

use_work_dir bench-durable
# Every server takes an ephemeral HTTP port: two on the default 8080 would clash (so -b needs
# a build with --http-port, any since the HTTP port exists).
CONFIG=$ROOT/config.json
start_parking_server always "$BIN/parking-server" "$CONFIG" --http-port 0 \
    --data-dir "$WORK/always-data" --fsync always
ALWAYS_PORT=$STARTED_PORT
start_parking_server everysec "$BIN/parking-server" "$CONFIG" --http-port 0 \
    --data-dir "$WORK/everysec-data" --fsync everysec
EVERYSEC_PORT=$STARTED_PORT
start_parking_server memory "$BIN/parking-server" "$CONFIG" --http-port 0 --in-memory
MEMORY_PORT=$STARTED_PORT
if [ -n "$BEFORE" ]; then
    start_parking_server before-always "$BEFORE" "$CONFIG" --http-port 0 \
        --data-dir "$WORK/before-always-data" --fsync always
    BEFORE_ALWAYS_PORT=$STARTED_PORT
    start_parking_server before "$BEFORE" "$CONFIG" --http-port 0 --data-dir "$WORK/before-data" \
        --fsync everysec
    BEFORE_PORT=$STARTED_PORT
fi
start_redis redis --appendonly yes --appendfsync always

# The disk, and what one small append plus fdatasync costs on it (the floor of fsync always).
disk_report "$WORK" > "$WORK/disk.txt"
cat "$WORK/disk.txt" >&2

STATUS=0
run_load() { # run_load NAME PORT WORKERS
    echo "  reserve, $3 connection(s): $1" >&2
    load_test_row "$WORK/$1-c$3" "$BIN/load-test" --host "$HOST" --port "$2" --mode reserve \
        --workers "$3" --duration "$DURATION" --warmup 1
}
for workers in $WORKERS; do
    run_load always "$ALWAYS_PORT" "$workers"
    if [ -n "$BEFORE" ]; then
        run_load before-always "$BEFORE_ALWAYS_PORT" "$workers"
    fi
    echo "  redis SET (appendfsync always), $workers connection(s)" >&2
    # redis-benchmark takes a request count, not a duration: about DURATION seconds at the
    # rate the fsync-always row just ran at (both are bound by the same disk), taken as at least 100/s.
    per_second=$(python3 -c 'import json, sys; print(max(100, int(json.load(open(sys.argv[1]))["rows"][0]["throughput"])))' "$WORK/always-c$workers.json")
    redis-benchmark -h "$HOST" -p "$REDIS_PORT" -t set -c "$workers" \
        -n $(( per_second * DURATION )) --csv > "$WORK/redis-c$workers.csv"
    run_load everysec "$EVERYSEC_PORT" "$workers"
    run_load memory "$MEMORY_PORT" "$workers"
    if [ -n "$BEFORE" ]; then
        run_load before "$BEFORE_PORT" "$workers"
    fi
done

WORKERS=$WORKERS BEFORE=$BEFORE python3 - "$WORK" <<'PY'
import csv, json, os, sys
work = sys.argv[1]

def load(name, workers):
    with open(os.path.join(work, f"{name}-c{workers}.json")) as f:
        r = json.load(f)["rows"][0]
    return r["throughput"], r["latency_us"]["p50"] / 1000, r["latency_us"]["p99"] / 1000, r["errors"] + r["timeouts"]

def redis(workers):
    with open(os.path.join(work, f"redis-c{workers}.csv")) as f:
        r = next(csv.DictReader(f))
    return float(r["rps"]), float(r["p50_latency_ms"]), float(r["p99_latency_ms"])

print(open(os.path.join(work, "disk.txt")).read().strip())
print()
head = (f"{'conns':>5} | {'always/s':>9} {'redis/s':>9} {'ratio':>6} | {'p50 ms':>7} {'redis':>7} | "
        f"{'p99 ms':>7} {'redis':>7} | {'everysec/s':>10} {'memory/s':>9} {'ratio':>6} | {'err+to':>6}")
print(head)
print("-" * len(head))
for workers in os.environ["WORKERS"].split():
    a, e, m, r = load("always", workers), load("everysec", workers), load("memory", workers), redis(workers)
    failures = a[3] + e[3] + m[3]
    print(f"{workers:>5} | {a[0]:>9.0f} {r[0]:>9.0f} {a[0] / r[0]:>6.2f} | {a[1]:>7.3f} {r[1]:>7.3f} | "
          f"{a[2]:>7.3f} {r[2]:>7.3f} | {e[0]:>10.0f} {m[0]:>9.0f} {e[0] / m[0]:>6.2f} | {failures:>6}")
print()
print("always/s: reserve mode with fsync always (a reply means the change is on disk); redis/s: "
      "redis-benchmark -t set with appendfsync always; ratio = always / redis. "
      "everysec/s and memory/s: the same reserve rows with fsync everysec and --in-memory; "
      "ratio = everysec / memory.")
if os.environ["BEFORE"]:
    print()
    print(f"fsync always, this build against {os.environ['BEFORE']} (before):")
    head = f"{'conns':>5} | {'before/s':>9} {'always/s':>9} {'redis/s':>9} | {'before/redis':>12} {'this/redis':>10} {'this/before':>11}"
    print(head)
    print("-" * len(head))
    for workers in os.environ["WORKERS"].split():
        b, a, r = load("before-always", workers), load("always", workers), redis(workers)
        print(f"{workers:>5} | {b[0]:>9.0f} {a[0]:>9.0f} {r[0]:>9.0f} | {b[0] / r[0]:>12.2f} "
              f"{a[0] / r[0]:>10.2f} {a[0] / b[0]:>11.2f}")
    print()
    print(f"fsync everysec, this build against {os.environ['BEFORE']} (before):")
    head = f"{'conns':>5} | {'before/s':>9} {'everysec/s':>10} {'memory/s':>9} | {'before/mem':>10} {'this/mem':>8} {'this/before':>11}"
    print(head)
    print("-" * len(head))
    for workers in os.environ["WORKERS"].split():
        b, e, m = load("before", workers), load("everysec", workers), load("memory", workers)
        print(f"{workers:>5} | {b[0]:>9.0f} {e[0]:>10.0f} {m[0]:>9.0f} | {b[0] / m[0]:>10.2f} "
              f"{e[0] / m[0]:>8.2f} {e[0] / b[0]:>11.2f}")
PY
exit $STATUS
