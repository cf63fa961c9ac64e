#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz target of protocol/fuzz for FUZZ_SECONDS each (default 1800), all at
# once (FUZZ_JOBS at a time, default: all), nice'd, and writes protocol/fuzz/results/<target>.log and a
# summary table protocol/fuzz/results/summary.md (executions, corpus size, coverage). Crashes land in
# protocol/fuzz/artifacts/<target>/ and make the script exit 1.
# The corpus grows in protocol/fuzz/corpus/<target> (not committed); the committed seeds are in
# protocol/fuzz/seeds/<target>. Needs the nightly toolchain and cargo-fuzz (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/../protocol/fuzz"
SECONDS_EACH=${FUZZ_SECONDS:-1800}
ALL_TARGETS=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' Cargo.toml | grep -v '^perfmon' | tr '\n' ' ')
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz build -O
mkdir -p results
pids=()
for t in $TARGETS; do
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  nice -n "${FUZZ_NICE:-10}" cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -print_final_stats=1 -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" >"results/$t.log" 2>&1 &
  pids+=($!)
  echo "fuzzing $t for ${SECONDS_EACH}s (pid $!)"
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
{
  # Every target with a log, from this run or an earlier one (FUZZ_TARGETS reruns some).
  echo "| target | seconds | executions | exec/s | corpus (files) | corpus (kB) | coverage (edges: cov) | instrumented PCs | features (ft) | crashes |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for t in $ALL_TARGETS; do
    log="results/$t.log"
    [ -f "$log" ] || continue
    secs=$(sed -n 's/.*-max_total_time=\([0-9]*\).*/\1/p' "$log" | head -1)
    pcs=$(sed -n 's/^INFO: Loaded [0-9]* PC tables (\([0-9]*\) PCs).*/\1/p' "$log" | head -1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    files=$(find "corpus/$t" -type f | wc -l)
    kb=$(du -sk "corpus/$t" | cut -f1)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    echo "| $t | ${secs:-?} | ${execs:-?} | ${rate:-?} | $files | $kb | ${cov:-?} | ${pcs:-?} | ${ft:-?} | $crashes |"
  done
} > results/summary.md
cat results/summary.md
exit $status
