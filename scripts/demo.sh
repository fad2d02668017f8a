#!/usr/bin/env bash
# Sets everything up, then mounts the bundled demo layers so you can look at the merged view.
# Idempotent: a second run remounts the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
demo=$(pwd)/demo
run=${OVERLAYD_DEMO_DIR:-/tmp/overlayd-demo}
merged=$run/merged
if grep -q " $merged " /proc/self/mountinfo 2>/dev/null; then
  node bin/overlayd umount "$merged" || umount -l "$merged"
fi
# The bundled layers are read-only lowers; the writable upper and work dirs live outside the repo.
# Whiteouts and opaque dirs cannot live in git, so they are made here from the layer recipe.
rm -rf "$run" && mkdir -p "$run"/{upper,work,merged}
cp -a "$demo/layers/." "$run/"
bash "$demo/markers.sh" "$run"
node bin/overlayd mount -o "lowerdir=$run/app:$run/base:$run/os,upperdir=$run/upper,workdir=$run/work" "$merged"
echo "overlayd: demo mounted at $merged (layers in $run; unmount with: node bin/overlayd umount $merged)"
ls -la "$merged"
