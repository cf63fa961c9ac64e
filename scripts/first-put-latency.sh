#!/usr/bin/env bash
# Time from exec to the first PutMetricData of a fresh perfmon process (docs/design.md, TLS backend).
#
#   scripts/first-put-latency.sh PATH/TO/perfmon N [RUNNER]     (RUNNER: e.g. qemu-aarch64-static for arm64)
#
# N fresh sandboxes (`target/debug/perfmon-sandbox`, `make build`), each: the Rust sample function, one
# invoke, PERFMON_FLUSH=end, the embedded CloudWatch (plain HTTP). A wrapper script records `date +%s.%N` and
# execs the binary (which must be named `perfmon`: it registers under its file name); the figure is from
# there to the embedded CloudWatch's debug log line for request 1. Prints one line per run:
#   <exec -> first PutMetricData ms> <exec -> register ms> <extension overhead ms> <init ms> <requests>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=$(realpath "$1"); n=$2; runner=${3:+$(command -v "$3")}
[ "$(basename "$bin")" = perfmon ] || { echo "the binary must be named perfmon" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '#!/bin/bash\n/usr/bin/date +%%s.%%N > %s/exec\nexec %s %s "$@"\n' "$work" "$runner" "$bin" >"$work/wrap"
chmod +x "$work/wrap"
for _ in $(seq "$n"); do
    rm -f "$work/exec"
    PERFMON_SANDBOX_LOG=debug timeout 60 target/debug/perfmon-sandbox run \
        --runtime target/debug/sample-function --extension "perfmon=$work/wrap" --cloudwatch embedded \
        --invokes 1 --env PERFMON_FLUSH=end --json 2>"$work/log" >"$work/out.json"
    first=$(sed 's/\x1b\[[0-9;]*m//g' "$work/log" | grep -m1 'cloudwatch request seq=1 ' | cut -d' ' -f1)
    python3 - "$(cat "$work/exec")" "$first" "$work/out.json" <<'PY'
import datetime, json, sys
t0 = float(sys.argv[1])
t1 = datetime.datetime.strptime(sys.argv[2], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
d = json.load(open(sys.argv[3]))
e = d["extensions"][0]
print(f"{(t1 - t0) * 1e3:.2f} {e['exec_to_register_ms']} {e['overhead_ms'][0]} {d['invokes'][0]['initDurationMs']} {d['cloudwatch']['requests']}")
PY
done
