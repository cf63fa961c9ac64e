#!/usr/bin/env bash
# Type-checks the CDK example of README "Attach it" with `tsc --strict` and synthesizes it with aws-cdk-lib
# into OUTDIR/cdk.out (PerfmonExample.template.json), as `cdk synth` would. Needs `make layer` (the stack
# packages the two zips as assets) and the example's npm packages (`make layer-check` runs `npm ci` there).
#
#   layer-build/cdk-synth.sh OUTDIR [STACK.ts]      (default STACK.ts: layer-build/examples/cdk/perfmon-stack.ts)
#
# Run from the repository root: the stack names the zips relative to where `cdk` runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${1:?usage: layer-build/cdk-synth.sh OUTDIR [STACK.ts]}
modules=$PWD/layer-build/examples/cdk/node_modules
stack=${2:-layer-build/examples/cdk/perfmon-stack.ts}
[ -x "$modules/.bin/tsc" ] || { echo "$modules missing: run \`make layer-check\` (npm ci there)" >&2; exit 1; }

mkdir -p "$out"
# --baseUrl: aws-cdk-lib and constructs resolve from the example's node_modules wherever STACK.ts is;
# --skipLibCheck: the stack is checked against the libraries' declarations, which are not re-checked themselves.
"$modules/.bin/tsc" --strict --skipLibCheck --noEmitOnError --target es2020 --module commonjs --moduleResolution node \
    --types node --typeRoots "$modules/@types" --baseUrl "$modules" --outDir "$out" "$stack"
NODE_PATH=$modules node -e '
const { App } = require("aws-cdk-lib");
const { PerfmonStack } = require(process.argv[1]);
const app = new App({ outdir: process.argv[2] });
new PerfmonStack(app, "PerfmonExample", { env: { account: "123456789012", region: "us-east-1" } });
app.synth();
' "$(realpath "$out")/$(basename "${stack%.ts}").js" "$out/cdk.out"
echo "$out/cdk.out/PerfmonExample.template.json"
