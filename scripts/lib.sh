# Shell functions shared by the scripts (bench*.sh, soak.sh, crash-test.sh); source it first
# (`source "$(dirname "$0")/lib.sh"`): it runs nothing by itself but set ROOT and TARGET_DIR.
# The start_* functions set variables instead of printing: call them directly, never as
# $(start_...), or the started pid would not reach this shell's STARTED_PIDS and the cleanup
# would not stop it.

# The repository (this file's directory's parent) and cargo's target directory, where a
# script's BIN (its binaries) is.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# usage: prints the script's help, its header comment (line 2 up to `set -euo pipefail`).
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# no_operands ARGS...: what is left after getopts; exits with the usage and status 2 unless
# nothing is (the scripts take options only).
no_operands() {
    if [ $# -gt 0 ]; then
        usage >&2
        exit 2
    fi
}

# load_test_row OUT COMMAND...: runs COMMAND (a load-test invocation, perhaps behind `env`)
# with `--json OUT.json`, its output in OUT.txt. Exit 1 (the row had errors or timeouts) sets
# STATUS=1 and the script goes on, so the table is still printed; any other exit prints the
# output and ends the script with status 2.
load_test_row() {
    local out=$1 code=0
    shift
    "$@" --json "$out.json" >"$out.txt" || code=$?
    case $code in
        0) ;;
        1) STATUS=1 ;;
        *) echo "$(basename "$0" .sh): load-test failed (exit $code):" >&2
           cat "$out.txt" >&2
           exit 2 ;;
    esac
}

# The processes a script started, by id; stop_started stops exactly these.
STARTED_PIDS=()

# stop_started: kills every process in STARTED_PIDS and waits for each.
stop_started() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}

# wait_for_port FILE PATTERN PID: prints the port once FILE holds "PATTERN<port>" (PATTERN is
# a sed regular expression). Fails, showing FILE, if process PID exits or 10 s pass first.
wait_for_port() {
    local file=$1 pattern=$2 pid=$3 port
    for _ in $(seq 100); do
        port=$(sed -n "s/.*${pattern}\([0-9][0-9]*\).*/\1/p" "$file" 2>/dev/null | head -n 1)
        if [ -n "$port" ]; then
            echo "$port"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "$(basename "$0"): server did not start; its output:" >&2
    cat "$file" >&2
    return 1
}

# require_python3: exits with status 2 unless python3 is on PATH (the scripts' reports use it).
require_python3() {
    if ! command -v python3 > /dev/null; then
        echo "$(basename "$0"): python3 is needed for the final report" >&2
        exit 2
    fi
}

# use_work_dir NAME: sets WORK to $OUT (created if need be) when OUT is set, else to a new
# temporary directory ${TMPDIR:-/tmp}/NAME.XXXXXX; and on exit stops every started process
# and removes WORK if it was temporary. INT and TERM exit with 130 (through that cleanup).
use_work_dir() {
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT"
        WORK=$(cd "$OUT" && pwd)
        WORK_IS_TEMPORARY=0
    else
        WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
        WORK_IS_TEMPORARY=1
    fi
    trap cleanup_work EXIT
    trap 'exit 130' INT TERM
}

# cleanup_work: use_work_dir's exit trap.
cleanup_work() {
    stop_started
    if [ "${WORK_IS_TEMPORARY:-0}" = 1 ]; then
        rm -rf "$WORK"
    fi
}

# start_logged NAME PATTERN COMMAND...: starts COMMAND in the background with its stdout and
# stderr in $WORK/NAME.log, adds it to STARTED_PIDS, and sets STARTED_PID to its pid and
# STARTED_PORT to the port it logs after PATTERN (as wait_for_port). Exits with status 2 if
# it does not start.
start_logged() {
    local name=$1 pattern=$2
    shift 2
    "$@" > "$WORK/$name.log" 2>&1 &
    STARTED_PID=$!
    STARTED_PIDS+=("$STARTED_PID")
    STARTED_PORT=$(wait_for_port "$WORK/$name.log" "$pattern" "$STARTED_PID") || exit 2
}

# start_parking_server NAME BINARY CONFIG [FLAGS...]: starts parking-server BINARY with
# CONFIG on $HOST (default 127.0.0.1), every port ephemeral and the per-address connection
# limit lifted (a benchmark's connections all come from one address), logging at info to
# $WORK/NAME.log; sets STARTED_PID and STARTED_PORT (its RPC port). FLAGS go last, so they
# can add --http-port 0, --data-dir, --fsync, --in-memory (an older build may lack a flag;
# its caller leaves that flag out).
start_parking_server() {
    local name=$1 binary=$2 config=$3 host=${HOST:-127.0.0.1}
    shift 3
    RUST_LOG=${RUST_LOG:-info} start_logged "$name" "listening: rpc ${host//./\\.}:" \
        "$binary" --config "$config" --host "$host" --rpc-port 0 --sensor-port 0 \
        --pubsub-port 0 --max-connections-per-address 0 "$@"
}

# start_redis NAME [REDIS-SERVER FLAGS...]: starts a throwaway redis-server on $HOST (default
# 127.0.0.1) on a free port, with no RDB snapshots and its files in $WORK/NAME, logging to
# $WORK/NAME.log; sets STARTED_PID and REDIS_PORT once it accepts connections.
start_redis() {
    local name=$1 host=${HOST:-127.0.0.1}
    shift
    # redis-server cannot pick its own port; take a free one (the window to lose it is tiny).
    REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$WORK/$name"
    redis-server --bind "$host" --port "$REDIS_PORT" --dir "$WORK/$name" --save '' "$@" \
        > "$WORK/$name.log" 2>&1 &
    STARTED_PID=$!
    STARTED_PIDS+=("$STARTED_PID")
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/$host/$REDIS_PORT") 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$STARTED_PID" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "$(basename "$0"): redis-server did not start; its output:" >&2
    cat "$WORK/$name.log" >&2
    exit 2
}

# disk_report DIR: prints the disk under DIR and what one 64-byte append plus fdatasync
# costs on it (p50 and p99 of 500): the floor of any write that is synced before its reply.
disk_report() {
    python3 - "$1" <<'PY'
import os, subprocess, sys, time
work = sys.argv[1]
source = subprocess.run(["df", "-T", work], capture_output=True, text=True).stdout.splitlines()[-1].split()
path = os.path.join(work, "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT)
times = []
for _ in range(500):
    os.write(fd, b"x" * 64)
    start = time.perf_counter()
    os.fdatasync(fd)
    times.append((time.perf_counter() - start) * 1000)
os.close(fd)
os.remove(path)
times.sort()
print(f"disk: {source[0]} ({source[1]}), mounted on {source[-1]}; "
      f"64-byte append + fdatasync: p50 {times[250]:.3f} ms, p99 {times[495]:.3f} ms")
PY
}

# pg_cluster NAME: creates a throwaway PostgreSQL cluster (durable settings: fsync and
# synchronous_commit on) in a new temporary directory WORK (${TMPDIR:-/tmp}/NAME.XXXXXX) and
# starts it on a free port of 127.0.0.1 with its socket in WORK. Sets WORK, PGBIN (initdb's
# directory, with pgbench and psql), PGPORT and AS (the prefix that runs a PostgreSQL tool as
# the cluster's owner: the postgres user when run as root, since initdb refuses root). On
# exit it stops every started process and the cluster and removes WORK. Exits with status 2
# when PostgreSQL or pgbench is missing.
pg_cluster() {
    local initdb
    initdb=$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
    # Through any symlink: a PATH entry may link initdb alone (not pgbench) to the real directory.
    PGBIN=$(dirname "$(readlink -f "${initdb:-/nonexistent/initdb}")")
    if [ ! -x "$PGBIN/initdb" ] || [ ! -x "$PGBIN/pgbench" ]; then
        echo "$(basename "$0"): initdb and pgbench are needed (Debian: apt-get install postgresql)" >&2
        exit 2
    fi
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    AS=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$WORK"
        AS=(runuser -u postgres --)
    fi
    trap cleanup_pg_cluster EXIT
    trap 'exit 130' INT TERM
    PGPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${AS[@]}" "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C > /dev/null
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w \
        -o "-p $PGPORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200" start > /dev/null
}

# node_functions_script FILE: writes the pgbench script of the nodes' own statements for a
# reserve and a cancel (crates/store-pg/src/lib.rs) on lots A, B and C, readable by the
# cluster's owner.
node_functions_script() {
    cat > "$1" <<'EOF'
\set lot random(1, 3)
SELECT outcome, version, expires_at_ms
    FROM parking_reserve_quietly((ARRAY['A', 'B', 'C'])[:lot], 'PGF' || :client_id, 300000, NULL);
SELECT c.version, parking_offer_room((ARRAY['A', 'B', 'C'])[:lot], 1000000, 900), parking_unsent()
    FROM parking_cancel_quietly((ARRAY['A', 'B', 'C'])[:lot], 'PGF' || :client_id, NULL) AS c;
EOF
    chmod a+r "$1"
}

# cleanup_pg_cluster: pg_cluster's exit trap.
cleanup_pg_cluster() {
    stop_started
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate -w stop > /dev/null 2>&1 || true
    rm -rf "$WORK"
}
