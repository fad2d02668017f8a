#!/usr/bin/env bash
# The long differential run against kernel overlayfs: `npm run fuzz -- --seeds 200`.
# Mounts happen in a private mount namespace, so nothing outlives the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec unshare --mount --propagation private -- node_modules/.bin/ts-node-transpile-only test/fuzz/cli.ts "$@"
