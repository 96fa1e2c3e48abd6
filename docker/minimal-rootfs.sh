#!/usr/bin/env bash
# Gather the whole filesystem of the API's minimal image (api/Dockerfile, --target minimal)
# in $1: the interpreter and /opt/venv at the paths they were built for, the standard library
# without what a server never imports, exactly the shared libraries all of these load (ldd),
# and an /etc with the app user. No shell, no package manager, no coreutils. Run as root in
# the builder stage, which has the same Debian libraries as the runtime stage.
set -euo pipefail

root="$1"
mkdir -p "$root"
stdlib="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"

# The venv's python is a symlink chain to the base's interpreter: keep every link of it.
link=/opt/venv/bin/python3
while [ -L "$link" ]; do
    cp -a --parents "$link" "$root"
    target="$(readlink "$link")"
    case "$target" in /*) link="$target" ;; *) link="$(dirname "$link")/$target" ;; esac
done
cp -a --parents "$link" /opt/venv "$root"
# Shell activation scripts: there is no shell to source them.
rm -f "$root"/opt/venv/bin/activate*

# The standard library, less tests, GUIs, the REPL's terminal modules, installers and the
# static library for embedding (Debian's config-3.x; the official image's site-packages
# holds its pip).
tar -C / -cf - \
    --exclude='*/test' --exclude='*/tests' --exclude='*/idlelib' --exclude='*/tkinter' \
    --exclude='*/turtledemo' --exclude='*/turtle.py' --exclude='*/ensurepip' \
    --exclude='*/pydoc_data' --exclude='*/config-3*' --exclude='*/site-packages' \
    --exclude='*/dist-packages' --exclude='*/_tkinter*' --exclude='*/_curses*' \
    --exclude='*/readline*' --exclude='*/_dbm*' --exclude='*/_gdbm*' \
    "${stdlib#/}" | tar -C "$root" -xf -

# Every shared object the interpreter and the extension modules load, copied to the path the
# loader found it at, as a real file (ldd fails the build on any library it cannot find).
{ echo "$link"; find "$root" -type f -name '*.so*'; } \
    | { xargs ldd || true; } \
    | awk '/not found/ {print "missing: " $0 > "/dev/stderr"; bad = 1}
           /=> \// {print $3}
           /^\t\/[^ ]*ld-linux/ {print $1}
           END {exit bad}' \
    | sort -u | xargs cp -L --parents -t "$root"

# The user the image runs as, for getpwuid(); hosts from /etc/hosts first (Docker's links).
mkdir -p "$root/etc" "$root/tmp" "$root/app"
printf '%s\n' 'root:x:0:0:root:/root:/nonexistent' \
    'app:x:1000:1000:app:/nonexistent:/nonexistent' > "$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'app:x:1000:' > "$root/etc/group"
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"
install -d -o 1000 -g 1000 -m 0755 "$root/data"
