#!/usr/bin/env bash
# Build the offline inference image (docker/inference/Dockerfile) unless it is present.
#
#   docker/inference/build.sh            # -> yolo-inference:local
#   FORCE=1 docker/inference/build.sh    # rebuild (the BuildKit cache still applies)
#
# Environment:
#   INFERENCE_IMAGE   tag to build (default yolo-inference:local); compose passes the same
#                     variable to the flow as ENV_YOLO_IMAGE
#   BASE_IMAGE        Debian trixie base (default: offline/debian:trixie-slim when present,
#                     else debian:trixie-slim)
#   EXTRA_CA_BUNDLE   CA bundle for pip behind a TLS-inspecting proxy (default: the host's
#                     bundle when there is one); a BuildKit secret, never in a layer
#   FORCE=1           build even if the tag exists
#   NO_CACHE=1        build without the BuildKit cache (cold-build measurements)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docker/lib.sh
. "$here/../lib.sh"
pick_docker_client

TAG="${INFERENCE_IMAGE:-yolo-inference:local}"
if [ "${FORCE:-0}" != 1 ] && image_exists "$TAG"; then
    log "$TAG present (FORCE=1 rebuilds)"
    exit 0
fi

base="${BASE_IMAGE:-}"
if [ -z "$base" ]; then
    if image_exists "${OFFLINE_PREFIX:-offline}/debian:trixie-slim"; then
        base="${OFFLINE_PREFIX:-offline}/debian:trixie-slim"
    else
        base=debian:trixie-slim
    fi
fi

args=(build --progress=plain -f "$here/Dockerfile" -t "$TAG" --build-arg "BASE_IMAGE=$base")
ca="$(ca_bundle_path)"
if [ -n "$ca" ]; then
    args+=(--secret "id=ca,src=$ca")
fi
if [ "${NO_CACHE:-0}" = 1 ]; then
    args+=(--no-cache)
fi

log "building $TAG from $base"
started=$SECONDS
# The context is the repository root; Dockerfile.dockerignore lets only the CA helper in.
$DOCKER "${args[@]}" "$here/../.." >&2
log "built $TAG in $((SECONDS - started)) s ($($DOCKER image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1 / 1e6}'))"
