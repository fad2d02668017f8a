#!/usr/bin/env bash
# Runs the test suites. Integration tests mount, so they run in a private mount namespace:
# whatever a failing test leaves mounted disappears with the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
tap=node_modules/.bin/tap
if [ "$what" = all ] || [ "$what" = unit ]; then
  "$tap" test/unit
fi
if [ "$what" = all ] || [ "$what" = integration ]; then
  unshare --mount --propagation private -- "$tap" test/integration
fi
