#!/usr/bin/env bash
# Runs the integration suite inside a container: builds Dockerfile.test (on node:20 from Docker
# Hub, or, where Docker Hub cannot be reached, on a local base from scripts/container-base.sh),
# then runs it with /dev/fuse and the capabilities FUSE and mount need, layers on a tmpfs.
#
#   scripts/test-container.sh [--build-only | --run-only] [COMMAND...]
#       (COMMAND defaults to: bash scripts/test.sh integration)
#
# The layers (the container's /tmp) live in a fresh directory of the host's /var/tmp, bind-
# mounted: the same kind of file system as on the host, and overlayfs takes it as an upper
# layer, as it does not take the container's own overlay2 root. OVERLAYD_CONTAINER_TMP=tmpfs
# puts them on a tmpfs instead.
#
# Needs a Docker engine: if none answers, installs Debian's docker.io (as root) and starts
# dockerd for the run, stopping it again at the end (OVERLAYD_KEEP_DOCKERD=1 keeps it).
# Base image and Docker's layer cache persist between runs, so a second run builds little.
set -euo pipefail
cd "$(dirname "$0")/.."

phase=all
case ${1:-} in
  --build-only) phase=build; shift ;;
  --run-only) phase=run; shift ;;
esac
image=${OVERLAYD_TEST_IMAGE:-overlayd-test:latest}
hub_base=${OVERLAYD_HUB_BASE:-node:20-bookworm}
t_start=$(date +%s)
log() { printf 'test-container: %s\n' "$*" >&2; }
since() { echo "$(( $(date +%s) - $1 ))s"; }

# --- a Docker engine -------------------------------------------------------------------------
started_dockerd=
cleanup() {
  if [ -n "$started_dockerd" ] && [ -z "${OVERLAYD_KEEP_DOCKERD:-}" ]; then
    log "stopping the dockerd this script started (pid $started_dockerd)"
    kill "$started_dockerd" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.2; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || { log "no Docker engine, and installing one needs root"; exit 1; }
    log "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: /var/log/overlayd-dockerd.log)"
    setsid dockerd >/var/log/overlayd-dockerd.log 2>&1 < /dev/null &
    started_dockerd=$!
    # A caller that keeps it (OVERLAYD_KEEP_DOCKERD) learns which pid to stop later.
    if [ -n "${OVERLAYD_DOCKERD_PIDFILE:-}" ]; then echo "$started_dockerd" > "$OVERLAYD_DOCKERD_PIDFILE"; fi
    for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { tail -20 /var/log/overlayd-dockerd.log >&2; log "dockerd did not come up"; exit 1; }
  fi
fi

if [ "$phase" != run ]; then
# --- the base image --------------------------------------------------------------------------
t0=$(date +%s)
if docker image inspect "$hub_base" >/dev/null 2>&1 || timeout 120 docker pull -q "$hub_base" >/dev/null 2>&1; then
  base=$hub_base
  log "base: $base from Docker Hub ($(since "$t0"))"
else
  log "Docker Hub unreachable: building a local base from Debian's and npm's registries"
  base=$(bash scripts/container-base.sh)
  log "base: $base ($(since "$t0"))"
fi

# --- the test image --------------------------------------------------------------------------
t0=$(date +%s)
# Host networking for the build: the registries are reachable from the host's network.
# Certificate authorities this machine adds to Debian's (as update-ca-certificates takes them).
extra_ca=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)
# The build's output goes to a log of this run's own, shown (its end) only when the build fails.
build_out=$(mktemp "${TMPDIR:-/tmp}/overlayd-docker-build.XXXXXX")
if ! docker build --force-rm --network host --build-arg "BASE=$base" --build-arg "EXTRA_CA_CERTS=$extra_ca" \
    -f Dockerfile.test -t "$image" . > "$build_out" 2>&1; then
  tail -30 "$build_out" >&2
  rm -f "$build_out"
  log "docker build failed"
  exit 1
fi
rm -f "$build_out"
log "image $image built ($(since "$t0"))"

fi
[ "$phase" != build ] || exit 0

# --- run -------------------------------------------------------------------------------------
# --privileged where the engine can grant it; where this machine's capability bounding set
# lacks some capability (so --privileged fails), every capability it has instead, unconfined.
caps=(--cap-add ALL)
bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
names=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE
  NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT
  SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE
  AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ
  PERFMON BPF CHECKPOINT_RESTORE)
for i in "${!names[@]}"; do
  if (( (16#$bnd >> i & 1) == 0 )); then caps+=(--cap-drop "${names[$i]}"); fi
done
run_opts=(--rm --device /dev/fuse --network none)
if [ "${OVERLAYD_CONTAINER_TMP:-host}" = tmpfs ]; then
  run_opts+=(--tmpfs /tmp:rw,exec,mode=1777)
else
  layers=$(mktemp -d /var/tmp/overlayd-container-tmp.XXXXXX)
  chmod 1777 "$layers"
  run_opts+=(-v "$layers:/tmp")
  trap 'rm -rf --one-file-system "$layers"; cleanup' EXIT
fi
if docker run "${run_opts[@]}" --privileged "$image" true >/dev/null 2>&1; then
  run_opts+=(--privileged)
  log "running privileged"
else
  run_opts+=("${caps[@]}" --security-opt apparmor=unconfined --security-opt seccomp=unconfined)
  log "--privileged is refused here; running with: ${caps[*]} apparmor/seccomp unconfined"
fi
t0=$(date +%s)
cmd=("$@")
[ ${#cmd[@]} -gt 0 ] || cmd=(bash scripts/test.sh integration)
set +e
# The host's npm test covers both transports; in the container, the default one is enough.
docker run "${run_opts[@]}" -e CI=true -e OVERLAYD_TEST_TRANSPORTS="${OVERLAYD_TEST_TRANSPORTS:-kernel}" "$image" "${cmd[@]}"
rc=$?
set -e
log "suite exited $rc ($(since "$t0")); total $(since "$t_start")"
exit $rc
