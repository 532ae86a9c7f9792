#!/usr/bin/env bash
# Soak test: the server under sensors, subscribers and RPC load for MINUTES (default 5), then
# checks that nothing failed and nothing was lost, that the state invariant holds, memory did
# not grow, and nothing panicked. Prints every figure it judged and a verdict.
#
#   scripts/soak.sh [MINUTES]
#
# Starts, all on 127.0.0.1 and ephemeral ports: parking-server; 20 sensors (one sensor-sim with
# --sensors 20); 20 subscribers to ALL; load-test in mixed mode on 16 connections. Everything it
# started is stopped on exit. Exit status 0 only if every check passed:
#   - load-test and sensor-sim exit 0; no load-test error or timeout; every sensor line acked;
#   - every subscriber is still running and was never disconnected while the server ran, and
#     the subscribers received exactly the events the broker published minus those it dropped;
#   - the server stops with status 0 on SIGTERM, its log has no panic and no slow subscriber
#     disconnected, every lot satisfies the state invariant, and RSS grew at most 10 % after
#     the first minute (after the first half of a 1-minute run).
# The final checks need python3 (for its JSON parser).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

minutes=${1:-5}
if ! [[ $minutes =~ ^[0-9]+$ ]] || (( minutes < 1 )); then
    echo "usage: scripts/soak.sh [MINUTES >= 1]" >&2
    exit 2
fi
seconds=$(( minutes * 60 ))
warm=$(( seconds < 120 ? seconds / 2 : 60 ))
subscribers=20
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
echo "work directory: $work"

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$server/status"; }

"$bin/sensor-sim" --port "$sensor" --rpc-port "$rpc" --lots A B C --sensors 20 --rate 200 \
    --duration "$seconds" > "$work/sensors.out" 2> "$work/sensors.log" &
sensors=$!
STARTED_PIDS+=("$sensors")
subscriber_pids=()
for n in $(seq "$subscribers"); do
    "$bin/subscriber" --port "$pubsub" --all --json > "$work/subscriber-$n.out" \
        2> "$work/subscriber-$n.log" &
    subscriber_pids+=("$!")
    STARTED_PIDS+=("$!")
done
"$bin/load-test" --port "$rpc" --workers 16 --duration "$(( seconds - 5 ))" --warmup 0 \
    --mode mixed --json "$work/load.json" > "$work/load.out" 2> "$work/load.log" &
load=$!
STARTED_PIDS+=("$load")

sleep "$warm"
rss_first=$(rss_kib)
echo "RSS after ${warm} s: ${rss_first} KiB"
wait "$load" && load_status=0 || load_status=$?
wait "$sensors" && sensors_status=0 || sensors_status=$?
rss_last=$(rss_kib)

# While the server still runs: every subscriber alive, and none ever lost its subscription.
: > "$work/dead"
: > "$work/disconnected"
for n in $(seq "$subscribers"); do
    kill -0 "${subscriber_pids[n - 1]}" 2> /dev/null || echo "$n" >> "$work/dead"
    if grep -q "lost the subscription\|re-subscribed" "$work/subscriber-$n.log"; then
        echo "$n" >> "$work/disconnected"
    fi
done

"$bin/parking-rpc" --port "$rpc" --json lots > "$work/lots.json"
kill -TERM "$server"
wait "$server" && server_status=0 || server_status=$?

# The server flushed what was queued and closed the subscriptions: once a subscriber has seen
# the end of its connection it has printed every event it got, and Ctrl-C stops it cleanly.
: > "$work/subscriber-status"
for n in $(seq "$subscribers"); do
    pid=${subscriber_pids[n - 1]}
    for _ in $(seq 100); do
        grep -q "lost the subscription" "$work/subscriber-$n.log" && break
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    kill -INT "$pid" 2> /dev/null || true
    wait "$pid" && status=0 || status=$?
    echo "$n $status" >> "$work/subscriber-status"
done

python3 - "$work" "$rss_first" "$rss_last" "$server_status" "$load_status" "$sensors_status" \
    "$subscribers" <<'PY'
import glob, json, re, sys
work = sys.argv[1]
rss_first, rss_last, server_status, load_status, sensors_status, subscribers = map(int, sys.argv[2:])
failures = []
def lines(name):
    return open(f"{work}/{name}").read().split()

lots = json.load(open(f"{work}/lots.json"))
lots = lots.get("lots", lots) if isinstance(lots, dict) else lots
for lot in lots:
    expected = max(0, lot["capacity"] - lot["occupied"] - lot["reserved"])
    if lot["reserved"] > lot["capacity"] or lot["free"] != expected:
        failures.append(f"lot {lot['id']} breaks the invariant: {lot}")
growth = (rss_last - rss_first) / rss_first * 100
if growth > 10:
    failures.append(f"RSS grew {growth:.1f}% after the warm-up ({rss_first} -> {rss_last} KiB)")

log = open(f"{work}/server.log").read()
if "panicked" in log:
    failures.append("the server log contains a panic")
if server_status != 0:
    failures.append(f"the server exited with status {server_status} on SIGTERM")
summary = next((l.split("] ", 1)[-1] for l in log.splitlines() if "stopped in" in l), None)
published = dropped = slow = None
if summary is None:
    failures.append("the server logged no shutdown summary")
else:
    # Event lines queued for subscribers (a change goes to each subscriber of its lot); the
    # SNAPSHOT lines sent on subscribing are not among them.
    found = re.search(r"(\d+) event line\(s\) queued for subscribers, (\d+) dropped, "
                      r"(\d+) slow subscriber", summary)
    if found is None:
        failures.append(f"the shutdown summary has no pub/sub counts: {summary}")
    else:
        published, dropped, slow = map(int, found.groups())
    if slow:
        failures.append(f"the server disconnected {slow} slow subscriber(s)")

if load_status != 0:
    failures.append(f"load-test exited with status {load_status}")
rows = json.load(open(f"{work}/load.json")).get("rows", [])
if not rows:
    failures.append("load-test reported no rows")
for row in rows:
    if row["errors"] or row["timeouts"] or not row["requests"]:
        failures.append(f"load-test: {row['requests']} requests, {row['errors']} errors, "
                        f"{row['timeouts']} timeouts")

if sensors_status != 0:
    failures.append(f"sensor-sim exited with status {sensors_status}")
sensors = open(f"{work}/sensors.out").read().strip().splitlines()
counts = dict(pair.split("=", 1) for pair in sensors[-1].split()) if sensors else {}
if not counts:
    failures.append("sensor-sim printed no summary")
else:
    sent, acked, errors = int(counts["sent"]), int(counts["acked"]), int(counts["errors"])
    if errors or acked != sent or not sent:
        failures.append(f"sensor-sim: sent {sent}, acked {acked}, errors {errors}")

dead, disconnected = lines("dead"), lines("disconnected")
if dead:
    failures.append(f"subscriber(s) {', '.join(dead)} died during the run")
if disconnected:
    failures.append(f"subscriber(s) {', '.join(disconnected)} lost their subscription during the run")
statuses = [line.split() for line in open(f"{work}/subscriber-status")]
bad = [f"{n} (status {s})" for n, s in statuses if s != "0"]
if bad:
    failures.append(f"subscriber(s) {', '.join(bad)} did not exit cleanly on Ctrl-C")
received = sum(1 for path in glob.glob(f"{work}/subscriber-*.out") for line in open(path)
               if json.loads(line).get("type") == "EVENT")
if published is not None and received != published - dropped:
    failures.append(f"subscribers received {received} events, not {published} published - "
                    f"{dropped} dropped = {published - dropped}")

print("== soak summary")
for row in rows:
    print("load-test: " + ", ".join(f"{k}={row[k]}" for k in row if row[k] is not None and not isinstance(row[k], (list, dict))))
print("sensor-sim: " + (sensors[-1] if sensors else "(no summary)"))
print(f"subscribers: {received} events received by {subscribers} subscribers; "
      f"{len(dead)} died, {len(disconnected)} disconnected during the run")
if published is not None:
    print(f"events: {published} published - {dropped} dropped = {published - dropped}, "
          f"{received} received")
print(f"server RSS: {rss_first} KiB after the warm-up, {rss_last} KiB at the end ({growth:+.1f}%)")
print("server: " + (summary or "(no summary)"))
print("lots at the end: " + "; ".join(f"{l['id']}: cap {l['capacity']} occ {l['occupied']} res {l['reserved']} free {l['free']}" for l in lots))
for failure in failures:
    print("FAIL: " + failure)
print("soak: " + ("FAILED" if failures else "passed"))
sys.exit(1 if failures else 0)
PY
