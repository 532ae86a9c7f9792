#!/usr/bin/env bash
# Crash test: an acknowledged change survives kill -9.
#
# Usage: scripts/crash-test.sh [ITERATIONS]   (default 20)
#        FSYNC=everysec scripts/crash-test.sh   (the policy, default always: kill -9 loses
#                                                nothing acknowledged under any of them)
#
# Starts the release parking-server in a temporary data directory (fsync $FSYNC, small
# journal segments so that compactions happen too), then ITERATIONS times: runs crash-client
# (12 connections reserving and cancelling, 4 sensor connections moving counts, every
# acknowledged result logged), kill -9s the server at a random moment, restarts it in the
# same directory, and checks the restarted server against the log: every reservation
# acknowledged true and not cancelled is held, every acknowledged cancel stays cancelled,
# every sensor lot's count is its last acknowledged one (or the one in flight).
#
# Exit status: 0 if no iteration found a violation, 1 otherwise, 2 if something could not
# run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ITERATIONS=${1:-20}
FSYNC=${FSYNC:-always}
case $FSYNC in
    always|everysec|no) ;;
    *) echo "crash-test: FSYNC=$FSYNC is not always, everysec or no" >&2; exit 2 ;;
esac
BIN=$TARGET_DIR/release
cd "$ROOT"

echo "building (release)..." >&2
cargo build --release --quiet -p parking-server -p load-test

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crash-test.XXXXXX")
cleanup() {
    stop_started
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat > "$WORK/config.json" <<JSON
{
  "rpc_port": 0, "sensor_port": 0, "pubsub_port": 0, "http_port": 0,
  "data_dir": "data", "fsync": "$FSYNC", "journal_segment_bytes": 262144,
  "reservation_ttl": 3600,
  "lots": [
    { "id": "R", "capacity": 1000000 },
    { "id": "S0", "capacity": 100 }, { "id": "S1", "capacity": 100 },
    { "id": "S2", "capacity": 100 }, { "id": "S3", "capacity": 100 }
  ]
}
JSON

# start_server N: starts the server (log $WORK/server-N.log); sets SERVER, RPC, SENSOR.
start_server() {
    local log=$WORK/server-$1.log
    RUST_LOG=info "$BIN/parking-server" --config "$WORK/config.json" 2> "$log" &
    SERVER=$!
    STARTED_PIDS+=("$SERVER")
    RPC=127.0.0.1:$(wait_for_port "$log" "listening: rpc 127\.0\.0\.1:" "$SERVER") || exit 2
    SENSOR=127.0.0.1:$(wait_for_port "$log" ", sensor 127\.0\.0\.1:" "$SERVER") || exit 2
}

violations=0
start_server 0
for i in $(seq "$ITERATIONS"); do
    "$BIN/crash-client" run --rpc "$RPC" --sensor "$SENSOR" --log "$WORK/log-$i.json" \
        --run "$i" > "$WORK/run-$i.out" &
    client=$!
    STARTED_PIDS+=("$client")
    # Somewhere between 0.2 s and 2.5 s into the run.
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.2 + r / 32768 * 2.3 }')"
    kill -9 "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    if ! wait "$client"; then
        echo "iteration $i: crash-client run failed" >&2
        exit 2
    fi
    start_server "$i"
    recovered=$(grep -o 'recovered [0-9]* reservation(s)' "$WORK/server-$i.log" || echo "nothing recovered")
    set +e
    verdict=$("$BIN/crash-client" check --rpc "$RPC" --log "$WORK/log-$i.json")
    status=$?
    set -e
    if [ "$status" -eq 2 ]; then
        echo "iteration $i: crash-client check failed" >&2
        exit 2
    fi
    echo "iteration $i: $(cat "$WORK/run-$i.out"); $recovered; $verdict"
    if [ "$status" -ne 0 ]; then
        violations=$((violations + 1))
    fi
done
kill "$SERVER"
wait "$SERVER" 2>/dev/null || true
echo "$ITERATIONS iteration(s), $violations with violations"
[ "$violations" -eq 0 ]
