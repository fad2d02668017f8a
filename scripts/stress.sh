#!/usr/bin/env bash
# `npm run stress`: the leak stress run (src/bench/stress.ts; see the README's "Stress run").
# Installs and builds what it needs first, as the other npm scripts do.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/bench/stress.js "$@"
