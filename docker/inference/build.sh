#!/usr/bin/env bash
# Build the offline inference image (docker/inference/Dockerfile) unless it is present and was
# built from the same Dockerfile (its label yolo.inference.inputs: a digest of what the build reads).
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
#   FORCE=1           build even if the tag exists and is current
#   NO_CACHE=1        build without the BuildKit cache (cold-build measurements)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docker/lib.sh
. "$here/../lib.sh"
pick_docker_client

TAG="${INFERENCE_IMAGE:-yolo-inference:local}"
# An image loaded from a tar (air-gapped hosts) carries the label too, so it is kept as well.
inputs="$(cat "$here/Dockerfile" "$here/../with-build-ca.sh" | sha256sum | cut -c1-16)"
if [ "${FORCE:-0}" != 1 ] && [ "$(image_label "$TAG" yolo.inference.inputs)" = "$inputs" ]; then
    log "$TAG present and current (FORCE=1 rebuilds)"
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

args=(build --progress=plain -f "$here/Dockerfile" -t "$TAG" --build-arg "BASE_IMAGE=$base"
      --label "yolo.inference.inputs=$inputs")
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
