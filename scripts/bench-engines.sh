#!/usr/bin/env bash
# Issue 14's choice of format, by measurement: the embedded store's journal against SQLite
# (rusqlite, bundled), redb and fjall on the same workload, side by side in one run. Each
# writer thread reserves and cancels its own plate in a loop, one small record per write,
# every write durable before it returns, at each writer count and in two modes:
#
#   always     on the disk before it returns (ours: fsync always, group commit)
#   everysec   in the OS before it returns, synced about once a second
#
# benches/store-engines/src/main.rs says what each engine does in each mode (they differ:
# redb's non-durable commits live in the process's memory, so its everysec row is weaker).
# Then each engine's recovery: RECORDS reservations written, the engine closed, opened again
# and every record read back into memory (the server's start-up); time and size on disk.
#
# The benchmark is its own Cargo project outside the workspace, so CI never builds the three
# engines; it is built (release) into a target directory of its own, target-engines/ (about
# 1 GB, kept for the next run: `rm -rf target-engines` when done).
#
# Usage: scripts/bench-engines.sh [-w WRITERS] [-d SECS] [-r ROUNDS] [-n RECORDS]
#
#   -w WRITERS   writer threads, space separated (env WRITERS,  default "1 16")
#   -d SECS      seconds per row                 (env DURATION, default 5)
#   -r ROUNDS    rounds of every row             (env ROUNDS,   default 1)
#   -n RECORDS   reservations in the recovery rows (env RECORDS, default 100000)
#
# The data goes under ${TMPDIR:-/tmp}: the disk under it is the disk measured, named at the
# top with its fdatasync latency. Exit status: 0 on success, 2 on a usage or build error.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WRITERS=${WRITERS:-"1 16"}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-1}
RECORDS=${RECORDS:-100000}

while getopts "w:d:r:n:h" opt; do
    case $opt in
        w) WRITERS=$OPTARG ;;
        d) DURATION=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        n) RECORDS=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
no_operands "$@"

export CARGO_TARGET_DIR=${ENGINES_TARGET_DIR:-$ROOT/target-engines}
cd "$ROOT"
require_python3
echo "building benches/store-engines (release; SQLite's C source the first time)..." >&2
cargo build --release --quiet --manifest-path benches/store-engines/Cargo.toml

OUT= use_work_dir bench-engines
disk_report "$WORK"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$CARGO_TARGET_DIR/release/store-engines" --dir "$WORK" --secs "$DURATION" --rounds "$ROUNDS" \
    --records "$RECORDS" --writers "${WRITERS// /,}"
echo
echo "writes/s: reserve and cancel records written by WRITERS threads, each durable before it"
echo "returns as the mode says; ENGINE/ours = that engine's rate / the journal's, same row."
echo "recovery: open the closed engine and read all RECORDS into memory; MB: its files."
