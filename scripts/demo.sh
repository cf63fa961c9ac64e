#!/usr/bin/env bash
# The demo behind `make demo`: the Rust sample function with an extension (perfmon by default) in the
# local sandbox, against the sandbox's embedded CloudWatch: 1 cold + $INVOKES warm invokes, each posting a
# custom timing to perfmon's HTTP listener and a StatsD counter, then a shutdown. perfmon-sandbox prints
# the invokes, the extension's figures and every metric that reached CloudWatch.
#
# Environment: EXTENSION (a binary name in target/debug: perfmon, or noop-extension for the floor),
# INVOKES (warm invokes, default 30), PERFMON_FLUSH (default adaptive), SINK (PERFMON_SINK, default cloudwatch).
# Expects `make build` to have run (make demo does it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="$target/debug"
extension="${EXTENSION:-perfmon}"
invokes="${INVOKES:-30}"

for exe in perfmon-sandbox sample-function "$extension"; do
    [[ -x "$bin/$exe" ]] || { echo "demo: $bin/$exe missing: run 'make build'" >&2; exit 1; }
done

# The function answers after 20 ms and reports its "checkout" timings (4 per invoke) over HTTP, and a StatsD counter.
payload='{"sleep_ms": 20,
  "metrics": [{"name": "CheckoutTime", "values": [12.5, 18.5, 31.0, 95.0], "unit": "Milliseconds", "dimensions": {"Route": "/checkout"}}],
  "operations": [{"operation": "checkout", "durationMs": 21.0, "success": true}],
  "statsd": ["demo.cart_items:3|c|#route:/checkout"]}'

echo "demo: sample-function + extension '$extension', 1 cold + $invokes warm invokes, embedded CloudWatch" >&2
set -x
exec "$bin/perfmon-sandbox" run \
    --runtime "$bin/sample-function" \
    --extension "$extension=$bin/$extension" \
    --function-name perfmon-demo \
    --memory-mb 256 \
    --timeout-ms 3000 \
    --invokes "$((invokes + 1))" \
    --payload "$payload" \
    --env "PERFMON_FLUSH=${PERFMON_FLUSH:-adaptive}" \
    --env "PERFMON_SINK=${SINK:-cloudwatch}" \
    --env "PERFMON_DIMENSIONS=Environment=demo" \
    --cloudwatch embedded
