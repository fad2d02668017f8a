#!/usr/bin/env bash
# Freezes the current build of overlayd (dist/, bin/, the native addons) under a name, so a
# later benchmark can run it side by side with the working tree, interleaved on one machine:
#   bash scripts/bench-snapshot.sh before
#   ... change and rebuild ...
#   npm run bench -- --variant before --bin before:/var/tmp/overlayd-bench/builds/before/bin/overlayd
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: bench-snapshot.sh NAME [DIR]}
root=${2:-/var/tmp/overlayd-bench}/builds/$name
npx --no-install tsc -p tsconfig.json
rm -rf "$root" && mkdir -p "$root/native"
cp -a dist bin package.json "$root/"
cp -a native/build "$root/native/"
ln -s "$(pwd)/node_modules" "$root/node_modules"
echo "$root/bin/overlayd"
