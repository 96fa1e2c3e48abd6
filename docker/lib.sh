# Shared helpers for the shell scripts under docker/ and scripts/ (sourced, not executed).
# shellcheck shell=bash

# Pick a docker client that can build with BuildKit (RUN --mount, --secret).
# A client with the buildx plugin works as is; otherwise Debian's 20.10 client
# (/usr/bin/docker) has BuildKit built in and only needs DOCKER_BUILDKIT=1.
# The result is exported as DOCKER (a command) and DOCKER_BUILDKIT.
pick_docker_client() {
    if [ -n "${DOCKER:-}" ]; then
        export DOCKER
        export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-1}"
        return 0
    fi
    if docker buildx version >/dev/null 2>&1; then
        DOCKER=docker
    elif [ -x /usr/bin/docker ]; then
        DOCKER=/usr/bin/docker
    else
        DOCKER=docker
    fi
    export DOCKER
    export DOCKER_BUILDKIT=1
}

# The CA bundle handed to builds as a BuildKit secret (id "ca"); never copied into a layer.
# EXTRA_CA_BUNDLE wins; otherwise the host bundle if there is one; otherwise nothing is
# printed and callers pass no secret (the Dockerfile then trusts the image's own CAs).
ca_bundle_path() {
    if [ -n "${EXTRA_CA_BUNDLE:-}" ]; then
        printf '%s\n' "$EXTRA_CA_BUNDLE"
    elif [ -r /etc/ssl/certs/ca-certificates.crt ]; then
        printf '%s\n' /etc/ssl/certs/ca-certificates.crt
    fi
}

image_exists() {
    ${DOCKER:-docker} image inspect "$1" >/dev/null 2>&1
}

# The value of label $2 on image $1; empty when either is missing.
image_label() {
    ${DOCKER:-docker} image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

log() {
    printf '[%s] %s\n' "$(basename "$0")" "$*" >&2
}
