#!/usr/bin/env bash
# Entrypoint of the offline postgres stand-in. Behaves like the official image's for the
# variables this stack uses:
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER
#   (default postgres), POSTGRES_DB (default $POSTGRES_USER), POSTGRES_INITDB_ARGS,
#   POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), PGDATA.
# On the first start (empty PGDATA) it runs initdb, creates POSTGRES_DB, then runs
# /docker-entrypoint-initdb.d/* in name order (*.sh executed if executable, else sourced;
# *.sql and *.sql.gz through psql) against a server that listens on the unix socket only.
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

say() { printf 'entrypoint: %s\n' "$*" >&2; }

psql_init() {
    psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --username "$POSTGRES_USER" "$@"
}

run_init_files() {
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then
                    say "running $f"
                    "$f"
                else
                    say "sourcing $f"
                    # shellcheck disable=SC1090
                    . "$f"
                fi
                ;;
            *.sql) say "running $f"; psql_init --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) say "running $f"; gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB" ;;
            *) say "ignoring $f" ;;
        esac
    done
}

init_cluster() {
    : "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_DB:=$POSTGRES_USER}"
    : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
    export POSTGRES_USER POSTGRES_DB
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        say "POSTGRES_PASSWORD is not set (set it, or POSTGRES_HOST_AUTH_METHOD=trust)"
        exit 1
    fi

    say "initialising $PGDATA"
    # The password travels through a pipe, never a file on disk or an argument in `ps`.
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words on purpose
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
        --auth-local=trust --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >&2
    {
        echo
        echo "host all all all $POSTGRES_HOST_AUTH_METHOD"
    } >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"

    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -t 60 start >&2
    export PGPASSWORD="${POSTGRES_PASSWORD:-}"
    if [ "$POSTGRES_DB" != postgres ]; then
        psql_init --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    run_init_files
    unset PGPASSWORD
    pg_ctl -D "$PGDATA" -m fast -w stop >&2
    say "initialisation done"
}

# `docker run IMAGE -c foo=bar` means options for postgres.
if [ "${1:0:1}" = - ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ]; then
    if [ "$(id -u)" = 0 ]; then
        # Started as root: fix ownership of the data dir (e.g. a fresh bind mount) and
        # drop to the postgres user for everything else.
        mkdir -p "$PGDATA" /var/run/postgresql
        chmod 700 "$PGDATA"
        if [ "$(stat -c %u "$PGDATA")" != "$(id -u postgres)" ]; then
            chown -R postgres:postgres "$PGDATA"
        fi
        chown postgres:postgres /var/run/postgresql
        exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
    fi
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        init_cluster
    fi
fi

exec "$@"
