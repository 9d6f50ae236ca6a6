#!/bin/bash
# Entrypoint of the region's PostgreSQL image (Debian's PostgreSQL 15): at the first start (empty
# PGDATA) initdb with the superuser `postgres` whose password is read from POSTGRES_PASSWORD_FILE
# (a mounted secret), password (scram) logins over TCP; then the server as the postgres user on
# PGPORT (default 5432), listening on POSTGRES_LISTEN (default *). Databases and roles of the
# agencies are made by the region's provisioning (deploy/compose/region.py), not here.
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
data="${PGDATA:-/var/lib/postgresql/data}"
port="${PGPORT:-5432}"
die() { echo "jiexu-postgres: $*" >&2; exit 64; }
if [ "${1:-postgres}" != postgres ]; then exec "$@"; fi
install -d -o postgres -g postgres -m 0700 "$data" /run/postgresql
if [ ! -s "$data/PG_VERSION" ]; then
  [ -n "${POSTGRES_PASSWORD_FILE:-}" ] && [ -r "$POSTGRES_PASSWORD_FILE" ] \
    || die "POSTGRES_PASSWORD_FILE must name a readable file (the superuser's password)"
  pw="$(mktemp)"
  cat "$POSTGRES_PASSWORD_FILE" >"$pw"
  chown postgres "$pw"
  chmod 0400 "$pw"
  setpriv --reuid=postgres --regid=postgres --init-groups "$bin/initdb" -D "$data" -U postgres \
    --pwfile="$pw" --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pw"
  {
    echo "host all all 0.0.0.0/0 scram-sha-256"
    echo "host all all ::/0 scram-sha-256"
  } >>"$data/pg_hba.conf"
  echo "jiexu-postgres: initialised $data"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$data" \
  -c "listen_addresses=${POSTGRES_LISTEN:-*}" -p "$port" -c max_connections=200
