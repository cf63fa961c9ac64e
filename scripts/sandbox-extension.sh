# Sourced by scripts/rss-probe.sh and scripts/cpu-probe.sh: starts the Rust sample function with one
# extension in the local sandbox (resource model on, embedded CloudWatch) in the background, and finds the
# extension's process under it.
#
#   start_extension EXTENSION_PATH INVOKES PAYLOAD [EXTRA perfmon-sandbox ARGS]
#
# Sets `sandbox` (the sandbox's pid), `pid` (the extension's), `name` and `log` (the sandbox's output,
# removed at exit); exits with the log when the extension does not appear. Environment: SANDBOX (default
# target/release/perfmon-sandbox), FUNCTION (default target/release/sample-function).
start_extension() {
    local ext=$1 invokes=$2 payload=$3
    shift 3
    name=$(basename "$ext")
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    "${SANDBOX:-target/release/perfmon-sandbox}" run --runtime "${FUNCTION:-target/release/sample-function}" \
        --extension "$name=$ext" --cloudwatch embedded --invokes "$invokes" --payload "$payload" "$@" >"$log" 2>&1 &
    sandbox=$!
    pid=
    for _ in $(seq 1000); do
        pid=$(pgrep -P "$sandbox" -x "${name:0:15}" || true)
        [ -z "$pid" ] || return 0
        sleep 0.01
    done
    echo "extension $name not found under the sandbox (pid $sandbox)" >&2
    cat "$log" >&2
    exit 1
}
