# Shell functions shared by bench.sh and soak.sh; source it, it runs nothing by itself.

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
