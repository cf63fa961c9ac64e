#!/usr/bin/env bash
# Checks the layer zips that layer-build/build.sh made (run by `make layer-check`, itself run by `make test`):
#   - each zip holds exactly `extensions/`, `extensions/perfmon` and `perfmon-wrapper`, both files with mode 755
#     (rwxr-xr-x), the wrapper identical to layer-build/perfmon-wrapper;
#   - the x86_64 zip is at most 3.0 MB (3,000,000 bytes) and the arm64 zip at most 2.9 MB (2,900,000 bytes):
#     every MB of the layer is unpacked into /opt and, as the binary's pages, into the function's memory
#     (docs/benchmarks.md, "Lean: memory, layer size and CPU"; the budget was 3.5 MB for both since the OTLP intake);
#   - `file` shows the right architecture and a statically linked executable (no interpreter: it runs on
#     Amazon Linux 2 and 2023 and in custom runtimes, whatever their libc);
#   - the x86_64 binary answers `perfmon --version` natively, the arm64 one under qemu-user
#     (qemu-aarch64-static), with the workspace version; both print the same `perfmon dashboard` JSON,
#     so the arm64 code path does real work under emulation, not just argument parsing.
# The end-to-end run of the unpacked zips in the sandbox is tests/tests/suite/layer_e2e.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LAYER_DIR=${LAYER_DIR:-${CARGO_TARGET_DIR:-target}/layer}
budget_bytes() { # arch -> the zip's budget in bytes
    case "$1" in x86_64) echo 3000000 ;; arm64) echo 2900000 ;; esac
}
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "layer-check: no [workspace.package] version in Cargo.toml" >&2; exit 1; }

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok:   $*"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_binary() { # arch, args...: runs the unpacked binary of that arch (under qemu for arm64)
    local arch=$1; shift
    local bin="$work/$arch/extensions/perfmon"
    if [ "$arch" = arm64 ]; then timeout 60 qemu-aarch64-static "$bin" "$@"; else timeout 60 "$bin" "$@"; fi
}

for arch in x86_64 arm64; do
    zipfile="$LAYER_DIR/perfmon-layer-$arch.zip"
    if [ ! -f "$zipfile" ]; then fail "$zipfile missing: run \`make layer\`"; continue; fi

    size=$(stat -c %s "$zipfile")
    budget=$(budget_bytes "$arch")
    if [ "$size" -le "$budget" ]; then ok "$arch zip is $size bytes (budget $budget)"
    else fail "$arch zip is $size bytes, over the $budget budget"; fi

    # zipinfo lines: mode, zip version, host system, size, type, method, date, time, name.
    listing=$(unzip -Z "$zipfile" | awk '$1 ~ /^[d-]/ {print $1, $3, $NF}' | sort)
    expected=$(printf '%s\n' '-rwxr-xr-x unx extensions/perfmon' '-rwxr-xr-x unx perfmon-wrapper' \
        'drwxr-xr-x unx extensions/' | sort)
    if [ "$listing" = "$expected" ]; then ok "$arch zip layout: extensions/, extensions/perfmon, perfmon-wrapper, mode 755"
    else fail "$arch zip layout/modes: got"$'\n'"$listing"$'\n'"expected"$'\n'"$expected"; fi

    mkdir -p "$work/$arch"
    unzip -q "$zipfile" -d "$work/$arch"
    bin="$work/$arch/extensions/perfmon"
    if cmp -s "$work/$arch/perfmon-wrapper" layer-build/perfmon-wrapper; then ok "$arch perfmon-wrapper is layer-build/perfmon-wrapper"
    else fail "$arch perfmon-wrapper differs from layer-build/perfmon-wrapper"; fi
    if [ -x "$bin" ]; then ok "$arch unpacked binary is executable"; else fail "$arch unpacked binary not executable"; continue; fi

    desc=$(file -b "$bin")
    echo "      file: $desc"
    case "$arch" in
        x86_64) want_arch="x86-64" ;;
        arm64) want_arch="ARM aarch64" ;;
    esac
    case "$desc" in
        ELF\ 64-bit*"$want_arch"*) ok "$arch ELF for $want_arch" ;;
        *) fail "$arch: not a 64-bit $want_arch ELF" ;;
    esac
    case "$desc" in
        *"statically linked"* | *"static-pie linked"*) ok "$arch statically linked" ;;
        *) fail "$arch: not statically linked" ;;
    esac
    case "$desc" in
        *"dynamically linked"* | *interpreter*) fail "$arch: has an ELF interpreter" ;;
    esac
    case "$desc" in
        *stripped*) case "$desc" in *"not stripped"*) fail "$arch: not stripped" ;; *) ok "$arch stripped" ;; esac ;;
    esac

    out=$(run_binary "$arch" --version 2>&1) || fail "$arch --version exited $?: $out"
    echo "      $arch \$ perfmon --version -> $out"
    if [ "$out" = "perfmon $version" ]; then ok "$arch answers --version with the workspace version"
    else fail "$arch --version printed '$out', expected 'perfmon $version'"; fi

    if run_binary "$arch" dashboard --function layer-check >"$work/dashboard-$arch.json" 2>"$work/dashboard-$arch.err"; then
        ok "$arch runs \`perfmon dashboard\` ($(stat -c %s "$work/dashboard-$arch.json") bytes of JSON)"
    else
        fail "$arch \`perfmon dashboard\` failed: $(cat "$work/dashboard-$arch.err")"
    fi
done

if [ -s "$work/dashboard-x86_64.json" ] && [ -s "$work/dashboard-arm64.json" ]; then
    if cmp -s "$work/dashboard-x86_64.json" "$work/dashboard-arm64.json"; then
        ok "x86_64 and arm64 (qemu) print the same dashboard"
    else
        fail "x86_64 and arm64 dashboards differ"
    fi
fi

if [ "$failures" -gt 0 ]; then
    echo "layer-check: $failures failed" >&2
    exit 1
fi
echo "layer-check: all zip, ELF and emulation checks passed"
