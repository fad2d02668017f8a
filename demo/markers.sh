#!/usr/bin/env bash
# Markers git cannot store: a whiteout (0/0 char device) in base deleting os's /etc/motd,
# and an opaque /var/cache in base hiding os's cache.
set -euo pipefail
run=$1
mknod "$run/base/etc/motd" c 0 0
mkdir -p "$run/base/var/cache"
setfattr -n trusted.overlay.opaque -v y "$run/base/var/cache"
echo "fresh cache (base layer, opaque dir)" > "$run/base/var/cache/README"
