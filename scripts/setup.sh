#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian 12 machine with Node 20, run as root:
# Debian packages, npm packages, the TypeScript build, the native addon and the mount client.
# Every step checks first, so a second run costs a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

# libfuse2 backs fuse-native; fuse3 gives fusermount3 and mount.fuse3 for the mount helper;
# fuse-overlayfs is the peer the benchmark measures; attr and psmisc are used by tests;
# build-essential builds the addons and the bench driver; python3 runs node-gyp and test workers;
# xfsprogs gives xfs_io, whose shutdown command cuts the power under the durability test;
# libcap2-bin gives setcap/getcap, with which a test gives a lower file a capability; acl
# gives setfacl/getfacl, with which the ACL test sets and reads ACLs; strace counts the syscalls
# a daemon makes (the volatile test, the bench's syscall report).
apt_pkgs=(libfuse2 fuse3 fuse-overlayfs attr psmisc util-linux kmod build-essential python3 xfsprogs
  libcap2-bin acl strace)
# The container engines the engine tests and the bench's podman job run: podman and buildah
# (with runc, which they are configured to use, and uidmap for rootless podman), docker.io
# (dockerd, containerd), and busybox-static for a base image without a registry. Not in the
# container suite's image (OVERLAYD_NO_ENGINES=1, Dockerfile.test), which runs no engine.
if [ "${OVERLAYD_NO_ENGINES:-}" != 1 ]; then
  apt_pkgs+=(podman buildah runc uidmap docker.io busybox-static)
fi
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]} (run as root, or install them first)"; exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages: reinstall only when the manifest or lockfile changed since the last install.
stamp=node_modules/.overlayd-install-stamp
want=$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing npm packages"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error >&2; else npm install --no-audit --no-fund --loglevel=error >&2; fi
  want=$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
  echo "$want" > "$stamp"
fi

# `setup.sh deps` stops here: Dockerfile.test caches the packages in a layer of their own.
if [ "${1:-}" = deps ]; then exit 0; fi

# Native addon: rebuild when its source is newer than the built module.
addon=native/build/Release/overlayd_native.node
if [ ! -f "$addon" ] || [ ! -f native/build/Release/overlayd_fuse.node ] || [ -n "$(find native -maxdepth 1 ! -name client.c \( -name '*.c' -o -name '*.h' -o -name binding.gyp \) -newer "$addon" -print -quit)" ]; then
  log "building native addon"
  npx --no-install node-gyp rebuild --directory native --loglevel=error >&2
fi

# The mount client (native/client.c), with the node it runs for everything but a mount.
client=native/build/overlayd-client
if [ ! -x "$client" ] || [ native/client.c -nt "$client" ]; then
  log "building the mount client"
  mkdir -p native/build
  node=$(readlink -f "$(command -v node)")
  cc -O2 -Wall -Wextra -o "$client.tmp" -DOVERLAYD_NODE_PATH="\"$node\"" native/client.c
  mv -f "$client.tmp" "$client"
fi

# TypeScript: tsc is incremental enough at this size; build when any source is newer than the output.
if [ ! -f dist/.build-stamp ] || [ -n "$(find src tsconfig.json -newer dist/.build-stamp -print -quit)" ]; then
  log "compiling TypeScript"
  npx --no-install tsc -p tsconfig.json
  touch dist/.build-stamp
fi
