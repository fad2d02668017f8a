#!/usr/bin/env bash
# Installs overlayd for mount(8), fstab and systemd:
#   /sbin/mount.fuse.overlayd   mount(8)'s helper for the type fuse.overlayd
#   /sbin/overlayd              the command itself (mount.fuse3 also runs it for fuse.overlayd)
# Both are small scripts that run this checkout's mount client (native/build/overlayd-client),
# which runs its bin/overlayd with this machine's node for anything but a mount; the
# checkout must stay where it is (and be built: scripts/setup.sh).
#
#   scripts/install-helper.sh [--prefix DIR]       install (DIR defaults to /sbin)
#   scripts/install-helper.sh --uninstall [--prefix DIR]
#   scripts/install-helper.sh --fuse-overlayfs [--uninstall] [--prefix DIR]
#       instead: overlayd as DIR/fuse-overlayfs (DIR defaults to /usr/local/bin), the name
#       Docker's fuse-overlayfs driver and containerd's snapshotter look up on PATH. Says so
#       when it will come first on PATH before a real fuse-overlayfs elsewhere.
# Idempotent. Never overwrites a file it did not write.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=
action=install
names=(mount.fuse.overlayd overlayd)
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --uninstall) action=uninstall; shift ;;
    --fuse-overlayfs) names=(fuse-overlayfs); shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install-helper: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$prefix" ]; then
  if [ "${names[0]}" = fuse-overlayfs ]; then prefix=/usr/local/bin; else prefix=/sbin; fi
fi
marker='# installed by overlayd scripts/install-helper.sh'
node=$(command -v node || true)
[ -n "$node" ] || { echo "install-helper: node is not on PATH" >&2; exit 1; }
node=$(readlink -f "$node")

sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
ours() { [ -f "$1" ] && grep -qF "$marker" "$1"; }

install_one() { # NAME: writes $prefix/NAME from scripts/mount.fuse.overlayd
  local dest=$prefix/$1 tmp
  if [ -e "$dest" ] && ! ours "$dest"; then
    echo "install-helper: $dest exists and was not installed by overlayd; leaving it alone" >&2
    return 1
  fi
  tmp=$(mktemp "$prefix/.$1.XXXXXX")
  {
    echo '#!/bin/sh'
    echo "$marker from $here"
    echo "OVERLAYD_HOME=$(sq "$here")"
    echo "OVERLAYD_NODE=$(sq "$node")"
    sed -n '/^if \[ ! -x/,$p' "$here/scripts/mount.fuse.overlayd"
  } > "$tmp"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$dest"
  echo "install-helper: installed $dest" >&2
}

case $action in
  install)
    [ -f "$here/dist/cli/main.js" ] || { echo "install-helper: overlayd is not built; run scripts/setup.sh first" >&2; exit 1; }
    mkdir -p "$prefix"
    for n in "${names[@]}"; do install_one "$n"; done
    if [ "${names[0]}" = fuse-overlayfs ]; then
      # A real fuse-overlayfs stays where it is; say which one PATH finds first.
      mine=$(readlink -f "$prefix/fuse-overlayfs")
      first= real=
      for p in $(type -ap fuse-overlayfs); do
        [ -n "$first" ] || first=$(readlink -f "$p")
        if [ -z "$real" ] && [ "$(readlink -f "$p")" != "$mine" ] && ! ours "$p"; then real=$p; fi
      done
      if [ -n "$real" ] && [ "$first" = "$mine" ]; then
        echo "install-helper: on this PATH $prefix/fuse-overlayfs (overlayd) now comes before $real, which is untouched; --uninstall --fuse-overlayfs undoes it" >&2
      elif [ -n "$real" ]; then
        echo "install-helper: note: on this PATH $real comes first; overlayd is used where $prefix comes before $(dirname "$real")" >&2
      fi
    fi
    ;;
  uninstall)
    for n in "${names[@]}"; do
      if ours "$prefix/$n"; then rm -f "$prefix/$n"; echo "install-helper: removed $prefix/$n" >&2; fi
    done
    ;;
esac
