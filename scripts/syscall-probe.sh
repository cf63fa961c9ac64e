#!/usr/bin/env bash
# The system calls of one extension over one local-sandbox run (docs/benchmarks.md, "CPU per invoke,
# fourth pass"): runs the Rust sample function with the extension (resource model on, embedded
# CloudWatch) as scripts/cpu-probe.sh does, attaches `strace -f -c` to the extension once it is
# found (its first calls of Init may be missed), and prints the summary table when the run is over.
# Divide the calls by the invokes for a per-invoke figure; strace slows every call it counts, so read
# the counts, not its times.
#
#   scripts/syscall-probe.sh EXTENSION_BINARY INVOKES [EXTRA perfmon-sandbox ARGS]
#
# Environment: PAYLOAD (default {}), SANDBOX, FUNCTION (as scripts/cpu-probe.sh). Needs strace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ext=$(realpath "${1:?usage: scripts/syscall-probe.sh EXTENSION_BINARY INVOKES [ARGS]}")
invokes=${2:?usage: scripts/syscall-probe.sh EXTENSION_BINARY INVOKES [ARGS]}
shift 2
command -v strace >/dev/null || { echo "strace is not installed (apt-get install strace)" >&2; exit 1; }
# shellcheck source=scripts/sandbox-extension.sh
. scripts/sandbox-extension.sh
start_extension "$ext" "$invokes" "${PAYLOAD:-"{}"}" "$@"
out=$(mktemp)
trap 'rm -f "$log" "$out"' EXIT
strace -f -c -o "$out" -p "$pid" 2>/dev/null &
tracer=$!
wait "$sandbox" || { echo "sandbox failed:" >&2; cat "$log" >&2; kill -INT "$tracer" 2>/dev/null; exit 1; }
# The extension exits at SHUTDOWN and strace with it; stop it in case it is still attached.
sleep 0.3
kill -INT "$tracer" 2>/dev/null || true
wait "$tracer" 2>/dev/null || true
echo "extension $ext, $invokes invokes, payload ${PAYLOAD:-"{}"}"
cat "$out"
