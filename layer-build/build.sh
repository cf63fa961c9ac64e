#!/usr/bin/env bash
# Builds the perfmon Lambda layer: a statically linked (musl) release binary per architecture, zipped as
# `extensions/perfmon` (mode 755), the layout Lambda unpacks into /opt, beside `perfmon-wrapper` (mode 755,
# a POSIX sh script: AWS_LAMBDA_EXEC_WRAPPER=/opt/perfmon-wrapper points the runtime at perfmon's Runtime API
# proxy when perfmon listens).
#
#   layer-build/build.sh [x86_64] [arm64]      (default: both)
#
# Cross-compiling and the C in the dependency tree (ring under rustls; aws-lc-sys with feature tls-aws-lc) go
# through `cargo zigbuild`: zig ships a C compiler, linker and musl headers for every target, so the same
# command builds both arches.
# `make layer` installs zig and cargo-zigbuild into layer-build/.tools and puts it first on PATH.
#
# Environment: LAYER_DIR (output and cargo target dir, default target/layer), LAYER_PROFILE (cargo profile,
# default `layer`: release with opt-level "z", see Cargo.toml), LAYER_FEATURES (perfmon features instead of
# the default ones, e.g. `tls-aws-lc` to build the other TLS backend for a comparison), CARGO (default
# cargo). Both targets are built by one cargo invocation, so the host build scripts and proc macros are
# compiled once and the two fat-LTO links can run side by side.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LAYER_DIR=${LAYER_DIR:-${CARGO_TARGET_DIR:-target}/layer}
LAYER_PROFILE=${LAYER_PROFILE:-layer}
CARGO=${CARGO:-cargo}
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(x86_64 arm64)

triple() {
    case "$1" in
        x86_64) echo x86_64-unknown-linux-musl ;;
        arm64) echo aarch64-unknown-linux-musl ;;
        *) echo "unknown architecture '$1' (x86_64 or arm64)" >&2; exit 2 ;;
    esac
}

command -v cargo-zigbuild >/dev/null 2>&1 || { echo "cargo-zigbuild not on PATH: run \`make layer\`" >&2; exit 1; }
command -v zip >/dev/null 2>&1 || { echo "zip not found: run \`make layer\`" >&2; exit 1; }

feature_args=()
[ -z "${LAYER_FEATURES:-}" ] || feature_args=(--no-default-features --features "$LAYER_FEATURES")
target_args=()
for arch in "${archs[@]}"; do
    target_args+=(--target "$(triple "$arch")")
done

start=$(date +%s)
# nice: the layer build is two long LTO links; it must not starve interactive work on a shared machine.
nice -n 19 "$CARGO" zigbuild --profile "$LAYER_PROFILE" -p perfmon --bin perfmon "${feature_args[@]}" \
    "${target_args[@]}" --target-dir "$LAYER_DIR"
echo "layer: cargo zigbuild took $(( $(date +%s) - start )) s"

# A fixed timestamp per commit makes the zip reproducible (zip stores mtimes; -X drops uid/gid extras).
stamp=$(git log -1 --format=%ct 2>/dev/null || echo 946684800)
for arch in "${archs[@]}"; do
    bin="$LAYER_DIR/$(triple "$arch")/$LAYER_PROFILE/perfmon"
    stage="$LAYER_DIR/stage-$arch"
    zipfile="$LAYER_DIR/perfmon-layer-$arch.zip"
    rm -rf "$stage" "$zipfile"
    mkdir -p "$stage/extensions"
    cp "$bin" "$stage/extensions/perfmon"
    cp layer-build/perfmon-wrapper "$stage/perfmon-wrapper"
    chmod 755 "$stage/extensions" "$stage/extensions/perfmon" "$stage/perfmon-wrapper"
    touch -d "@$stamp" "$stage/extensions/perfmon" "$stage/extensions" "$stage/perfmon-wrapper"
    (cd "$stage" && TZ=UTC zip -q -9 -X -r "$(realpath -m "../$(basename "$zipfile")")" extensions perfmon-wrapper)
    rm -rf "$stage"
    printf 'layer: %-6s binary %9d bytes, zip %9d bytes  %s\n' "$arch" \
        "$(stat -c %s "$bin")" "$(stat -c %s "$zipfile")" "$zipfile"
done
