#!/bin/sh
# Runs one build command (pip, uv) trusting the image's CA bundle plus the optional BuildKit
# secret "ca" (a TLS-inspecting proxy's CA). Every Dockerfile bind-mounts this file and the
# secret into the RUN that downloads, with /tmp on a tmpfs: the merged bundle never reaches
# a layer.
#   RUN --mount=type=bind,source=docker/with-build-ca.sh,target=/with-build-ca.sh \
#       --mount=type=secret,id=ca --mount=type=tmpfs,target=/tmp \
#       sh /with-build-ca.sh pip install ...
set -eu
bundle=/tmp/build-ca.pem
cat /etc/ssl/certs/ca-certificates.crt > "$bundle"
if [ -s /run/secrets/ca ]; then cat /run/secrets/ca >> "$bundle"; fi
PIP_CERT="$bundle" SSL_CERT_FILE="$bundle" exec "$@"
