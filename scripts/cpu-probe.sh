#!/usr/bin/env bash
# CPU time of one extension per thread, over one local-sandbox run (docs/benchmarks.md, "CPU per invoke,
# second pass"): runs the Rust sample function with the extension (resource model on, embedded
# CloudWatch), reads the first field of /proc/<pid>/task/*/schedstat (ns on a CPU) every 50 ms until the
# extension exits, and prints each thread's last reading in ms and their total. Init, the invokes and
# SHUTDOWN are all in it; divide by the invokes for a per-invoke figure, and compare builds back to back.
#
#   scripts/cpu-probe.sh EXTENSION_BINARY INVOKES [EXTRA perfmon-sandbox ARGS]
#
# Environment: PAYLOAD (default {}), SANDBOX (default target/release/perfmon-sandbox), FUNCTION (default
# target/release/sample-function). A thread that exited before the end (tokio's blocking pool after 10 s
# idle) keeps its last reading.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ext=$(realpath "${1:?usage: scripts/cpu-probe.sh EXTENSION_BINARY INVOKES [ARGS]}")
invokes=${2:?usage: scripts/cpu-probe.sh EXTENSION_BINARY INVOKES [ARGS]}
shift 2
# shellcheck source=scripts/sandbox-extension.sh
. scripts/sandbox-extension.sh
start_extension "$ext" "$invokes" "${PAYLOAD:-"{}"}" "$@"

declare -A last
while kill -0 "$pid" 2>/dev/null; do
    for t in /proc/"$pid"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        ns=$(cut -d' ' -f1 "$t/schedstat" 2>/dev/null) || continue
        [ -z "$ns" ] || last["$(basename "$t") $comm"]=$ns
    done
    sleep 0.05
done
wait "$sandbox" || { echo "sandbox failed:" >&2; cat "$log" >&2; exit 1; }

echo "extension $ext, $invokes invokes, payload ${PAYLOAD:-"{}"}"
for k in "${!last[@]}"; do echo "$k ${last[$k]}"; done |
    awk '{ printf "  %-8s %-16s %9.1f ms\n", $1, $2, $3 / 1e6; total += $3 } END { printf "  total %27.1f ms\n", total / 1e6 }'
