#!/usr/bin/env bash
# First start of the postgres service only (the image runs /docker-entrypoint-initdb.d/*
# when the data directory is empty): one login role and one database for the API, another
# pair for Kestra. Neither is a superuser; each owns only its own database, and PUBLIC
# loses CONNECT, so the API cannot read Kestra's tables and vice versa.
# Works executed or sourced (the official image sources non-executable *.sh files).
# Values are passed as psql variables (quoted by psql), never pasted into SQL.
set -eo pipefail  # no -u: when sourced it would leak into the entrypoint

: "${APP_DB_NAME:?APP_DB_NAME is required}"
: "${APP_DB_USER:?APP_DB_USER is required}"
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD is required}"
: "${KESTRA_DB_NAME:?KESTRA_DB_NAME is required}"
: "${KESTRA_DB_USER:?KESTRA_DB_USER is required}"
: "${KESTRA_DB_PASSWORD:?KESTRA_DB_PASSWORD is required}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v app_db="$APP_DB_NAME" -v app_user="$APP_DB_USER" -v app_password="$APP_DB_PASSWORD" \
    -v kestra_db="$KESTRA_DB_NAME" -v kestra_user="$KESTRA_DB_USER" \
    -v kestra_password="$KESTRA_DB_PASSWORD" <<'SQL'
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password';
CREATE DATABASE :"app_db" OWNER :"app_user";
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"app_db" TO :"app_user";

CREATE ROLE :"kestra_user" LOGIN PASSWORD :'kestra_password';
CREATE DATABASE :"kestra_db" OWNER :"kestra_user";
REVOKE ALL ON DATABASE :"kestra_db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"kestra_db" TO :"kestra_user";
SQL
