#!/usr/bin/env bash
# Soak test: the server under sensors, subscribers and RPC load for MINUTES (default 5), then
# checks that the state invariant holds, memory did not grow, and nothing panicked.
#
#   scripts/soak.sh [MINUTES]
#
# Starts, all on 127.0.0.1 and ephemeral ports: parking-server; 20 sensors (one sensor-sim with
# --sensors 20); 20 subscribers to ALL; load-test in mixed mode on 16 connections. Everything it
# started is stopped on exit. Exit status 0 only if every check passed. The final checks need
# python3 (for its JSON parser).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-5}
if ! [[ $minutes =~ ^[0-9]+$ ]] || (( minutes < 2 )); then
    echo "usage: scripts/soak.sh [MINUTES >= 2]" >&2
    exit 2
fi
seconds=$(( minutes * 60 ))
source scripts/lib.sh
require_python3
work=$(mktemp -d)
trap stop_started EXIT

echo "building (release)..."
cargo build --release --quiet --bin parking-server --bin sensor-sim --bin subscriber \
    --bin load-test --bin parking-rpc
bin=target/release

RUST_LOG=info "$bin/parking-server" --rpc-port 0 --sensor-port 0 --pubsub-port 0 --http-port 0 \
    --data-dir "$work/data" 2> "$work/server.log" &
server=$!
STARTED_PIDS+=("$server")
rpc=$(wait_for_port "$work/server.log" "listening: rpc [0-9.]*:" "$server") || exit 1
sensor=$(wait_for_port "$work/server.log" ", sensor [0-9.]*:" "$server") || exit 1
pubsub=$(wait_for_port "$work/server.log" ", pubsub [0-9.]*:" "$server") || exit 1
echo "server pid $server: rpc $rpc, sensor $sensor, pubsub $pubsub; soaking for $minutes min"

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$server/status"; }

"$bin/sensor-sim" --port "$sensor" --rpc-port "$rpc" --lots A B C --sensors 20 --rate 200 \
    --duration "$seconds" > "$work/sensors.out" 2> "$work/sensors.log" &
sensors=$!
STARTED_PIDS+=("$sensors")
for n in $(seq 20); do
    "$bin/subscriber" --port "$pubsub" --all --json > "$work/subscriber-$n.out" \
        2> "$work/subscriber-$n.log" &
    STARTED_PIDS+=("$!")
done
"$bin/load-test" --port "$rpc" --workers 16 --duration "$(( seconds - 5 ))" --warmup 0 \
    --mode mixed --json "$work/load.json" > "$work/load.out" 2> "$work/load.log" &
load=$!
STARTED_PIDS+=("$load")

sleep 60
rss_first=$(rss_kib)
echo "RSS after the first minute: ${rss_first} KiB"
wait "$load" || true
wait "$sensors" || true
rss_last=$(rss_kib)

"$bin/parking-rpc" --port "$rpc" --json lots > "$work/lots.json"
kill -TERM "$server"
wait "$server" && server_status=0 || server_status=$?

python3 - "$work" "$rss_first" "$rss_last" "$server_status" <<'PY'
import glob, json, sys
work, rss_first, rss_last, server_status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
failures = []
lots = json.load(open(f"{work}/lots.json"))
lots = lots.get("lots", lots) if isinstance(lots, dict) else lots
for lot in lots:
    expected = max(0, lot["capacity"] - lot["occupied"] - lot["reserved"])
    if lot["reserved"] > lot["capacity"] or lot["free"] != expected:
        failures.append(f"lot {lot['id']} breaks the invariant: {lot}")
growth = (rss_last - rss_first) / rss_first * 100
if growth > 10:
    failures.append(f"RSS grew {growth:.1f}% after the first minute ({rss_first} -> {rss_last} KiB)")
log = open(f"{work}/server.log").read()
if "panicked" in log:
    failures.append("the server log contains a panic")
if server_status != 0:
    failures.append(f"the server exited with status {server_status} on SIGTERM")
load = json.load(open(f"{work}/load.json"))
rows = load.get("rows", [])
sensors = open(f"{work}/sensors.out").read().strip().splitlines()
events = sum(1 for path in glob.glob(f"{work}/subscriber-*.out") for _ in open(path))
print("== soak summary")
for row in rows:
    print("load-test: " + ", ".join(f"{k}={row[k]}" for k in row if row[k] is not None and not isinstance(row[k], (list, dict))))
print("sensor-sim: " + (sensors[-1] if sensors else "(no summary)"))
print(f"subscribers: {events} events received by 20 subscribers")
print(f"server RSS: {rss_first} KiB after 1 min, {rss_last} KiB at the end ({growth:+.1f}%)")
print("server: " + next((l.split("] ", 1)[-1] for l in log.splitlines() if "stopped in" in l), "(no summary)"))
print("lots at the end: " + "; ".join(f"{l['id']}: cap {l['capacity']} occ {l['occupied']} res {l['reserved']} free {l['free']}" for l in lots))
for failure in failures:
    print("FAIL: " + failure)
print("soak: " + ("FAILED" if failures else "passed"))
sys.exit(1 if failures else 0)
PY
