#!/usr/bin/env bash
# Build local stand-ins for the base images this stack needs, from a Debian mirror only
# (no container registry involved):
#
#   ${OFFLINE_PREFIX}/debian:trixie-slim   debootstrap minbase + `docker import`
#   ${OFFLINE_PREFIX}/python:3.13-slim     the same + Debian's Python 3.13, stands in for
#                                          python:3.13-slim
#   ${OFFLINE_PREFIX}/postgres:17          Debian's PostgreSQL 17 on the Debian image (a
#                                          Dockerfile in postgres/), stands in for postgres:17
#
# docker-compose.offline.yml points compose at these tags. Existing images are kept unless
# FORCE=1. Needs root (debootstrap), a running Docker engine and debootstrap installed.
#
# Environment: OFFLINE_PREFIX (default "offline"), DEBIAN_MIRROR
# (default http://deb.debian.org/debian), FORCE=1 to rebuild, EXTRA_CA_BUNDLE (not needed
# here: apt talks plain http to the mirror).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docker/lib.sh
. "$here/../lib.sh"
pick_docker_client

PREFIX="${OFFLINE_PREFIX:-offline}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=trixie
DEBIAN_TAG="$PREFIX/debian:$SUITE-slim"
PYTHON_TAG="$PREFIX/python:3.13-slim"
POSTGRES_TAG="$PREFIX/postgres:17"
FORCE="${FORCE:-0}"

# Refuse to delete a rootfs that still has something mounted in it (proc, a bind of /dev):
# rm -rf would walk into the host's files.
remove_rootfs() {
    if grep -qF " $1/" /proc/mounts; then
        log "not removing $1: still has mounts"
        return 1
    fi
    rm -rf "$1"
}

need_build() {
    [ "$FORCE" = 1 ] || ! image_exists "$1"
}

# make_image TAG PACKAGES CMD [ENV...]: debootstrap a minbase rootfs with PACKAGES, trim it
# like the official slim images, and `docker import` it as a single layer (a single layer
# matters: dive counts every file rewritten by a later layer as waste).
make_image() {
    local tag="$1" packages="$2" cmd="$3"
    shift 3
    if ! need_build "$tag"; then
        log "$tag present (FORCE=1 rebuilds)"
        return 0
    fi
    command -v debootstrap >/dev/null || { log "debootstrap not installed"; exit 1; }
    [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }

    local rootfs
    rootfs="$(mktemp -d "${TMPDIR:-/tmp}/offline-rootfs.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
    trap "remove_rootfs '$rootfs'" EXIT

    log "debootstrap $SUITE (minbase + $packages) from $MIRROR"
    debootstrap --variant=minbase --include="$packages" "$SUITE" "$rootfs" "$MIRROR" >&2
    if grep -qF " $rootfs/" /proc/mounts; then
        log "debootstrap left mounts under $rootfs"
        exit 1
    fi

    # The settings the official slim images carry, written here by hand:
    # 1. apt keeps no package cache (otherwise every install layer keeps ~90 MB of *.bin).
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    # 2. no translations, no suggested/recommended packages kept around.
    cat >"$rootfs/etc/apt/apt.conf.d/docker-no-languages" <<'APT'
Acquire::Languages "none";
APT
    cat >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests" <<'APT'
Apt::AutoRemove::SuggestsImportant "false";
APT
    # 3. dpkg skips docs, man pages and locales in every later install (licences stay).
    mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
    # Apply the same trimming to what debootstrap already installed.
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "${rootfs:?}"/usr/share/man/* "${rootfs:?}"/usr/share/groff/* "${rootfs:?}"/usr/share/info/* \
        "${rootfs:?}"/usr/share/lintian/* "${rootfs:?}"/usr/share/linda/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    # Nothing from the bootstrap run itself: caches, lists, logs, device nodes.
    rm -rf "${rootfs:?}"/var/cache/apt/*.bin "${rootfs:?}"/var/cache/apt/archives/*.deb \
        "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/var/log/* "${rootfs:?}"/var/cache/debconf/*-old \
        "${rootfs:?}"/var/cache/ldconfig/aux-cache "${rootfs:?}"/tmp/* "${rootfs:?}"/debootstrap "${rootfs:?}"/dev/*
    mkdir -p "$rootfs/var/lib/apt/lists/partial"
    : >"$rootfs/etc/hostname"
    # python:3.13-slim has `python` as well as `python3`.
    if [ -e "$rootfs/usr/bin/python3" ] && [ ! -e "$rootfs/usr/bin/python" ]; then
        ln -s python3 "$rootfs/usr/bin/python"
    fi

    log "importing $tag"
    # `docker import` records no environment: PATH must be set here, or `useradd` (in
    # /usr/sbin) is "not found" in every later RUN.
    local changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
        --change "CMD $cmd")
    local env
    for env in "$@"; do
        changes+=(--change "ENV $env")
    done
    tar --numeric-owner -C "$rootfs" -c . | $DOCKER import "${changes[@]}" - "$tag" >/dev/null
    remove_rootfs "$rootfs"
    trap - EXIT
}

build_from_dockerfile() {
    local tag="$1" dir="$2"
    if ! need_build "$tag"; then
        log "$tag present (FORCE=1 rebuilds)"
        return 0
    fi
    log "building $tag"
    $DOCKER build --build-arg "DEBIAN_IMAGE=$DEBIAN_TAG" -t "$tag" "$dir" >&2
}

# debian:trixie-slim carries passwd (useradd/groupadd), which minbase lacks.
make_image "$DEBIAN_TAG" passwd '["bash"]'
# python:3.13-slim: Python plus CA certificates, netbase (/etc/services, /etc/protocols) and
# tzdata; python3-venv brings ensurepip, so `python -m venv` works as in the official image.
make_image "$PYTHON_TAG" passwd,ca-certificates,netbase,tzdata,python3,python3-venv \
    '["python3"]' LANG=C.UTF-8
build_from_dockerfile "$POSTGRES_TAG" "$here/postgres"
$DOCKER image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep "^$PREFIX/" >&2
