#!/usr/bin/env bash
# Where an extension's resident memory is, read from /proc of the live process (docs/benchmarks.md, "Lean:
# memory, layer size and CPU"): runs the Rust sample function with one extension in the local sandbox
# (resource model on, embedded CloudWatch), and WAIT_S seconds in, during the invokes, prints the
# extension's VmHWM / VmRSS (status), its file-backed and anonymous RSS (smaps_rollup), its threads,
# and the RSS of its largest mappings (smaps).
#
#   scripts/rss-probe.sh EXTENSION_BINARY [PAYLOAD_JSON] [-- EXTRA perfmon-sandbox ARGS]
#
# Environment: SANDBOX (default target/release/perfmon-sandbox), FUNCTION (default
# target/release/sample-function), INVOKES (default 40), WAIT_S (default 3.5).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ext=$(realpath "${1:?usage: scripts/rss-probe.sh EXTENSION_BINARY [PAYLOAD_JSON] [-- ARGS]}")
shift
payload='{"sleep_ms":100,"metrics":[{"name":"probe","value":1,"unit":"Milliseconds"}]}'
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    payload=$1
    shift
fi
[ "${1:-}" != "--" ] || shift
# shellcheck source=scripts/sandbox-extension.sh
. scripts/sandbox-extension.sh
start_extension "$ext" "${INVOKES:-40}" "$payload" "$@"
sleep "${WAIT_S:-3.5}"

echo "extension $ext (pid $pid), payload $payload"
grep -E '^(VmHWM|VmRSS|RssAnon|RssFile|Threads)' "/proc/$pid/status"
grep -E '^(Rss|Anonymous|Private_Dirty|Shared_Clean|Private_Clean)' "/proc/$pid/smaps_rollup"
for t in /proc/"$pid"/task/*; do printf '%s ' "$(cat "$t/comm")"; done
echo
echo "largest mappings (kB RSS, kB anonymous, kB size, mapping):"
awk '/^[0-9a-f]+-[0-9a-f]+ /{name=$6" "$1} /^Size:/{size=$2} /^Rss:/{rss=$2} /^Anonymous:/{print rss, $2, size, name}' \
    "/proc/$pid/smaps" | sort -rn | head -"${MAPPINGS:-8}"
wait "$sandbox" || { echo "sandbox failed:" >&2; cat "$log" >&2; exit 1; }
