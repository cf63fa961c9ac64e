#!/usr/bin/env bash
# The demo behind `make demo`: the Rust sample function with an extension (perfmon by default) in the
# local sandbox, against the sandbox's embedded CloudWatch: 1 cold + $INVOKES warm invokes, each posting a
# custom timing to perfmon's HTTP listener and a StatsD counter, then a shutdown. perfmon-sandbox prints
# the invokes, the extension's figures and every metric that reached CloudWatch.
#
# Environment: EXTENSION (a binary name in target/PROFILE: perfmon, or noop-extension for the floor),
# INVOKES (warm invokes, default 30), PERFMON_FLUSH (default adaptive), SINK (PERFMON_SINK, default cloudwatch),
# PERFMON_SPARSE_FLUSH (default end here: the sandbox's CloudWatch does not read EMF, which the default writes at a
# sparse invoke without the wrapper),
# PROFILE (debug, the default, or release: the shipped build's figures; `PROFILE=release make demo` builds it).
# Expects `make build` to have run (make demo does it). The figures are labelled with the build they come
# from; after a debug run, the release figures `make bench` measured (benches/results/bench.json) follow.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
profile="${PROFILE:-debug}"
case "$profile" in debug | release) ;; *) echo "demo: PROFILE must be debug or release, not '$profile'" >&2; exit 2 ;; esac
bin="$target/$profile"
extension="${EXTENSION:-perfmon}"
invokes="${INVOKES:-30}"

for exe in perfmon-sandbox sample-function "$extension"; do
    [[ -x "$bin/$exe" ]] || { echo "demo: $bin/$exe missing: run 'make build' (PROFILE=release: 'PROFILE=release make demo')" >&2; exit 1; }
done

# The function keeps a 1 MiB file in its /tmp, waits 200 ms (a downstream call), and reports its "checkout"
# timings (4 per invoke) over HTTP, and a StatsD counter. The sandbox applies Lambda's resource model (on by
# default): at 256 MB the function and perfmon share 14.5 % of one CPU, a 256 MB memory limit and their own
# 512 MB tmpfs /tmp, so TmpUsed is the function's file (not the host's /tmp) and CPUUtilization is relative
# to that share (0-100 %). perfmon reads CPU time in 10 ms ticks: a 200 ms invoke keeps a tick or two's weight
# under 100 % of the share (a 20 ms invoke at 0.14 vCPU would read a single tick as ~300 %).
payload='{"sleep_ms": 200, "tmp_bytes": 1048576,
  "metrics": [{"name": "CheckoutTime", "values": [12.5, 18.5, 31.0, 95.0], "unit": "Milliseconds", "dimensions": {"Route": "/checkout"}}],
  "operations": [{"operation": "checkout", "durationMs": 21.0, "success": true}],
  "statsd": ["demo.cart_items:3|c|#route:/checkout"]}'

echo "demo: sample-function + extension '$extension' ($profile build), 1 cold + $invokes warm invokes, embedded CloudWatch" >&2
set -x
"$bin/perfmon-sandbox" run \
    --runtime "$bin/sample-function" \
    --extension "$extension=$bin/$extension" \
    --function-name perfmon-demo \
    --memory-mb 256 \
    --timeout-ms 3000 \
    --invokes "$((invokes + 1))" \
    --payload "$payload" \
    --env "PERFMON_FLUSH=${PERFMON_FLUSH:-adaptive}" \
    --env "PERFMON_SINK=${SINK:-cloudwatch}" \
    --env "PERFMON_SPARSE_FLUSH=${PERFMON_SPARSE_FLUSH:-end}" \
    --env "PERFMON_DIMENSIONS=Environment=demo" \
    --cloudwatch embedded
{ set +x; } 2>/dev/null

echo
if [[ "$profile" == debug ]]; then
    echo "NOTE: the extension figures above are a DEBUG build's (unoptimised; make demo builds debug to stay quick)."
    echo "      perfmon ships as a release build (make layer). Run 'PROFILE=release make demo' to see its figures here."
    # The release figures of the last committed benchmark run, as measured (not typed in here).
    python3 - "$root/benches/results/bench.json" <<'PY' || true
import json, sys
d = json.load(open(sys.argv[1]))
fig = {f["id"]: f for f in d["figures"]}
def show(fid, text):
    f = fig.get(fid)
    if f:
        print(f"      {text}: {f['perfmon']['median']:.3g} {f['unit']} (median of {f['perfmon']['n']})")
print(f"      The release build, as `make bench` measured it ({d['run'].get('mode')} run, benches/results/bench.json):")
show("peak_rss_idle_mib", "peak RSS, idle")
show("peak_rss_load_mib", "peak RSS, 100 metrics/invoke")
show("exec_to_first_next_ms", "exec -> first /next")
show("overhead_p99/adaptive/cloudwatch/0", "per-invoke overhead p99, adaptive flush (the default)")
show("overhead_p50/end/cloudwatch/0", "per-invoke overhead p50, PERFMON_FLUSH=end (one PutMetricData per invoke)")
PY
else
    echo "NOTE: the extension figures above are the RELEASE build's (target/release/$extension), as shipped in the layer."
fi
