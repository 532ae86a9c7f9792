#!/usr/bin/env bash
# What access control and TLS cost: load-test against one parking-server per variant, side by
# side in one run, and the ratios of each variant to access control off.
#
# Usage: scripts/bench-access.sh [-r ROUNDS] [-d SECS] [-u WARMUP] [-w WORKERS] [-o DIR]
#
#   -r ROUNDS    rounds of every row (env ROUNDS,   default 3); the report takes the median
#   -d SECS      recorded seconds per row (env DURATION, default 5)
#   -u SECS      warmup seconds per row   (env WARMUP,   default 1)
#   -w WORKERS   connections per row      (env WORKERS,  default 16)
#   -o DIR       keep the reports, the servers' logs and the generated key and certificate
#
# Variants, each its own server on 127.0.0.1 with ephemeral ports:
#   off    no keys, no TLS (the protocol as it was before access control)
#   auth   one operator key; each load-test connection authenticates once, when it connects
#   tls    TLS on every port (a certificate made with openssl for this run), no keys
#   before (only with BASE_SERVER=path/to/parking-server built from another commit) that
#          binary, no keys: the hot path before and after, as a ratio
# Rows: `avail` at depth 1, `avail` with --pipeline 16, `mixed` at depth 1. Within a round
# every variant runs each row in turn, so drift in the machine's load hits all alike.
#
# Exit status: 0 if every row ran clean, 1 if any had errors or timeouts, 2 on a usage error or
# if a server did not start.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
WORKERS=${WORKERS:-16}
OUT=${OUT:-}
BASE_SERVER=${BASE_SERVER:-}

while getopts "r:d:u:w:o:h" opt; do
    case $opt in
        r) ROUNDS=$OPTARG ;;
        d) DURATION=$OPTARG ;;
        u) WARMUP=$OPTARG ;;
        w) WORKERS=$OPTARG ;;
        o) OUT=$OPTARG ;;
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
if ! command -v openssl > /dev/null; then
    echo "bench-access: openssl is needed to make the TLS certificate" >&2
    exit 2
fi
echo "building (release)..." >&2
cargo build --release --quiet -p parking-server -p load-test

use_work_dir bench-access

# One operator key; its token reaches load-test through the environment, as the docs advise.
"$BIN/parking-server" keygen --id bench --role operator > "$WORK/key.txt"
TOKEN=$(sed -n 2p "$WORK/key.txt" | tr -d ' ')
ENTRY=$(sed -n 4p "$WORK/key.txt")
# CA:FALSE: openssl marks a self-signed certificate as a CA by default, and rustls refuses a
# CA certificate as a server's own (CaUsedAsEndEntity).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2> "$WORK/openssl.log"

ENTRY=$ENTRY WORK=$WORK python3 - "$ROOT/config.json" <<'PY'
import json, os, sys
# In memory ("data_dir": null): the variants would otherwise share one data directory next to
# their configs, and a second server refuses a directory in use; and access control's cost
# is measured without the disk's noise in the mixed rows' reserves.
base = {**json.load(open(sys.argv[1])), "data_dir": None}
work = os.environ["WORK"]
variants = {
    "off": {},
    "auth": {"auth": {"keys": [json.loads(os.environ["ENTRY"])]}},
    "tls": {"tls": {"cert": f"{work}/cert.pem", "key": f"{work}/key.pem"}},
}
for name, extra in variants.items():
    json.dump({**base, **extra}, open(f"{work}/{name}.json", "w"))
# An older binary refuses keys it does not know (deny_unknown_fields): give it the
# configuration without the access-control ones.
access_keys = {"auth", "auth_timeout", "protected_mode", "tls", "tls_ports"}
before = {key: value for key, value in base.items() if key not in access_keys}
json.dump(before, open(f"{work}/before.json", "w"))
PY

VARIANTS="off auth tls"
declare -A PORT
start_server() { # NAME BINARY CONFIG: a variant's server, its RPC port in PORT[NAME]
    start_parking_server "server-$1" "$2" "$3" --http-port 0
    PORT[$1]=$STARTED_PORT
}
for variant in $VARIANTS; do
    start_server "$variant" "$BIN/parking-server" "$WORK/$variant.json"
done
if [ -n "$BASE_SERVER" ]; then
    start_server before "$BASE_SERVER" "$WORK/before.json"
    VARIANTS="before $VARIANTS"
fi

ROWS="avail:1 avail:16 mixed:1"
echo "variants: $VARIANTS; rows: $ROWS at $WORKERS connections; ${DURATION}s per row" \
    "(+${WARMUP}s warmup), $ROUNDS round(s)" >&2
STATUS=0
for round in $(seq "$ROUNDS"); do
    for row in $ROWS; do
        mode=${row%%:*}
        depth=${row##*:}
        for variant in $VARIANTS; do
            args=(--host "$HOST" --port "${PORT[$variant]}")
            env=()
            case $variant in
                auth) env=(PARKING_TOKEN="$TOKEN") ;;
                tls) args=(--host localhost --port "${PORT[$variant]}" --tls --ca "$WORK/cert.pem") ;;
            esac
            name="$mode-p$depth-$variant-r$round"
            echo "  round $round: $mode, depth $depth: $variant" >&2
            load_test_row "$WORK/$name" env "${env[@]}" "$BIN/load-test" "${args[@]}" \
                --mode "$mode" --workers "$WORKERS" --pipeline "$depth" \
                --duration "$DURATION" --warmup "$WARMUP"
        done
    done
done

VARIANTS=$VARIANTS ROWS=$ROWS ROUNDS=$ROUNDS python3 - "$WORK" <<'PY'
import json, os, statistics, sys

work = sys.argv[1]
variants = os.environ["VARIANTS"].split()
rounds = range(1, int(os.environ["ROUNDS"]) + 1)

def rows(mode, depth, variant):
    for r in rounds:
        with open(os.path.join(work, f"{mode}-p{depth}-{variant}-r{r}.json")) as f:
            yield json.load(f)["rows"][0]

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

head = f"{'row':<12} {'variant':<7} | {'req/s':>9} {'x off':>6} | {'p50 ms':>7} {'x off':>6} | {'p99 ms':>7} {'x off':>6} | {'err+to':>6}"
print(head)
print("-" * len(head))
for row in os.environ["ROWS"].split():
    mode, depth = row.split(":")
    stats = {}
    for variant in variants:
        got = list(rows(mode, depth, variant))
        stats[variant] = (
            median(r["throughput"] for r in got),
            median((r.get("latency_us") or {}).get("p50", 0) / 1000 for r in got),
            median((r.get("latency_us") or {}).get("p99", 0) / 1000 for r in got),
            sum(r["errors"] + r["timeouts"] for r in got),
        )
    off = stats["off"]
    for variant in variants:
        tput, p50, p99, failures = stats[variant]
        ratio = lambda a, b: f"{a / b:.3f}" if a and b else "-"
        print(f"{mode + ' p' + depth:<12} {variant:<7} | {tput:>9.0f} {ratio(tput, off[0]):>6} | "
              f"{p50:>7.3f} {ratio(p50, off[1]):>6} | {p99:>7.3f} {ratio(p99, off[2]):>6} | {failures:>6}")
print()
print("medians over the rounds; x off = the variant / access control off, same row.")
PY
exit $STATUS
