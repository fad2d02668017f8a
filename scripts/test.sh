#!/usr/bin/env bash
# Runs the test suites. Integration tests mount, so they run in a private mount namespace:
# whatever a failing test leaves mounted disappears with the namespace. The integration suite
# runs once per transport: the kernel transport (the default for root) and fuse-native; the
# engine suites once.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
tap=node_modules/.bin/tap
# tap's loader strips types without checking them: check the tests as the build checks src/.
npx --no-install tsc -p tsconfig.test.json
if [ "$what" = all ] || [ "$what" = unit ]; then
  "$tap" test/unit
fi
if [ "$what" = all ] || [ "$what" = integration ]; then
  # Two files at a time: most of a file's time is spent waiting on daemons, mounts and the
  # tools it runs. These run alone, after the others: they assert on the whole namespace
  # (`status` lists nothing), bind over /dev/fuse, /etc/fuse.conf or /sbin for the namespace,
  # or cut power under a loop device.
  alone=(lifecycle-daemon cli-helper nonroot power-cut fd-limit)
  shared=() alone_files=()
  for f in test/integration/*.test.ts; do
    n=$(basename "$f" .test.ts)
    if [[ " ${alone[*]} " == *" $n "* ]]; then alone_files+=("$f"); else shared+=("$f"); fi
  done
  for transport in ${OVERLAYD_TEST_TRANSPORTS:-kernel fuse-native}; do
    echo "# integration suite on the $transport transport"
    OVERLAYD_TRANSPORT=$transport unshare --mount --propagation private -- \
      "$tap" --jobs=2 "${shared[@]}"
    OVERLAYD_TRANSPORT=$transport unshare --mount --propagation private -- \
      "$tap" "${alone_files[@]}"
  done
fi
# The real container engines (podman, buildah, dockerd, containerd's mount helper) with overlayd
# as their mount program: once, on the default transport. Each suite stops what it started.
if [ "$what" = all ] || [ "$what" = engines ]; then
  echo "# container engines"
  # Two suites at a time: an engine mostly waits for the processes it starts.
  unshare --mount --propagation private -- "$tap" --jobs=2 test/engines
fi
