#!/bin/bash
# Entrypoint of localhost/dangjian-postgres:15. On first start (no cluster in $PGDATA) creates
# it: superuser postgres reachable only through the Unix socket inside the container (peer),
# role $POSTGRES_USER with the password in the file $POSTGRES_PASSWORD_FILE (never in the
# environment or the image), database $POSTGRES_DB owned by that role, TCP clients by password
# (scram-sha-256). Then execs postgres listening on every interface of the container.
# Extra arguments are passed to postgres (e.g. -c shared_buffers=256MB).
set -euo pipefail

die() {
  echo "postgres-entrypoint: $*" >&2
  exit 1
}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  [[ -n ${POSTGRES_PASSWORD_FILE:-} && -r $POSTGRES_PASSWORD_FILE ]] ||
    die "POSTGRES_PASSWORD_FILE must name a readable file holding the password of $POSTGRES_USER"
  [[ $POSTGRES_USER =~ ^[a-z_][a-z0-9_]*$ && $POSTGRES_DB =~ ^[a-z_][a-z0-9_]*$ ]] ||
    die "POSTGRES_USER and POSTGRES_DB must be plain lower-case identifiers"
  echo "postgres-entrypoint: creating the cluster in $PGDATA" >&2
  initdb --pgdata="$PGDATA" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  cat >"$PGDATA/pg_hba.conf" <<'HBA'
# TYPE  DATABASE  USER  ADDRESS  METHOD
local   all       all            peer
host    all       all   all      scram-sha-256
HBA
  # Only the socket while the role and database are made: no client can come in half-way.
  pg_ctl --pgdata="$PGDATA" --wait --silent \
    --options="-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" start
  # psql reads the password from the file itself (\set with backquotes): it never appears in a
  # command line or the environment.
  psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 --host=/var/run/postgresql --username=postgres \
    --dbname=postgres --set=role="$POSTGRES_USER" --set=db="$POSTGRES_DB" \
    --set=pwfile="$POSTGRES_PASSWORD_FILE" <<'SQL'
\set password `head -n 1 :'pwfile'`
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
SQL
  pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
  echo "postgres-entrypoint: database $POSTGRES_DB owned by $POSTGRES_USER is ready" >&2
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql \
  -c jit=off -c log_line_prefix='%m [%p] %q%u@%d ' "$@"
