#!/usr/bin/env bash
# make image: build the trainer image for PLATFORM with whichever OCI builder DOCKER names, then print its size.
#
# Environment (the Makefile passes them): PLATFORM (cpu|gpu|ascend), IMAGE (tag), BASE_IMAGE (the platform's base),
# PYTHON_DONOR (GPU: the image the standalone CPython is made in; empty elsewhere), DOCKER (docker | podman |
# buildah | a path to one of them; default docker).
# The Dockerfile is builder-neutral, so every builder gets the same plain `build` command: a Docker client with
# buildx builds with BuildKit, one without it (Docker >= 23 without the plugin, or a forced DOCKER_BUILDKIT=0) with
# the legacy builder, podman and buildah with buildah. DOCKER_BUILDKIT=1 without buildx is the one combination that
# cannot work (Docker >= 23 stops with "Install the buildx component"); it is caught here with what to do.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${PLATFORM:?PLATFORM is required (cpu, gpu or ascend)}" "${IMAGE:?IMAGE is required}"
: "${BASE_IMAGE:?BASE_IMAGE is required: the Makefile sets each platform default}"
DOCKER=${DOCKER:-docker}
PYTHON_DONOR=${PYTHON_DONOR:-}

builder=$(basename "$DOCKER")
# True when DOCKER_BUILDKIT=1 is forced on a Docker >= 23 client without the buildx plugin.
buildkit_unavailable() {
  local major
  [ "$builder" = docker ] && [ "${DOCKER_BUILDKIT:-}" = 1 ] || return 1
  "$DOCKER" buildx version >/dev/null 2>&1 && return 1
  major=$("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
  [ "${major:-0}" -ge 23 ] 2>/dev/null
}
if buildkit_unavailable; then
  echo "make image: DOCKER_BUILDKIT=1 but this docker client has no buildx: unset DOCKER_BUILDKIT (the legacy" \
    "builder builds this Dockerfile too) or install the docker-buildx plugin" >&2
  exit 2
fi

args=(build --network host -f docker/Dockerfile --build-arg PLATFORM="$PLATFORM" --build-arg BASE_IMAGE="$BASE_IMAGE")
[ -z "$PYTHON_DONOR" ] || args+=(--build-arg PYTHON_DONOR="$PYTHON_DONOR")
args+=(-t "$IMAGE" .)
echo "+ $DOCKER ${args[*]}"
start=$(date +%s)
"$DOCKER" "${args[@]}"

if [ "$builder" = buildah ]; then
  size=$("$DOCKER" inspect --type image --format '{{.Size}}' "$IMAGE" 2>/dev/null || echo '?')
else
  size=$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE")
fi
case "$size" in
  '' | *[!0-9]*) echo "image $IMAGE ($PLATFORM): built in $(($(date +%s) - start)) s, size: $size" ;;
  *) echo "image $IMAGE ($PLATFORM): built in $(($(date +%s) - start)) s, $((size / 1000000)) MB" ;;
esac
