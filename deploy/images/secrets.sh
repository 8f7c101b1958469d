# shellcheck shell=bash
# Sourced by deploy/images/compose.sh and tests/deploy/kube_test.sh: makes the secrets of a local
# run of the suite in containers (compose or `podman play kube`). One layout for both, mirroring
# the Secrets that deploy/k8s mounts, so the registry reads its files at the same paths everywhere:
#
#   DIR/registry/auth/jwt_keys   JWT verification keys ("kid:hs256:SECRET" lines)    Secret dangjian-registry-auth
#   DIR/registry/tls/tls.crt     the registry's certificate (names: registry,        Secret dangjian-registry-tls
#                    tls.key       localhost, 127.0.0.1) and its key                  (kubernetes.io/tls)
#                    ca.crt        the local CA that signed it
#   DIR/registry/db/pgpass       libpq password file for host "postgres" (compose;    Kubernetes: PGPASSWORD
#                                  Kubernetes passes the password as PGPASSWORD)      from dangjian-registry-db
#   DIR/registry/redis/password  the password Redis asks for (AUTH)                  Secret dangjian-registry-redis
#   DIR/postgres/password        the password of the role dj_registry (PostgreSQL's container)
#   DIR/redis/auth.conf          the same Redis password as a "requirepass" line, which Redis'
#                                  config includes (Redis' container; Kubernetes: the managed Redis)
#   DIR/../ca.pem                a copy of the CA certificate the host's tools can read
#   DIR/../ca.key                the CA's key (outside the mounted folders)
#
# A secret that exists is never replaced (the database keeps its password). Files are handed to
# the images' users: the registry runs as uid 10001, PostgreSQL as 901, Redis as 902. Needs root
# and openssl.

readonly DJ_REGISTRY_UID=10001 DJ_POSTGRES_UID=901 DJ_REDIS_UID=902

# dj_make_secrets DIR
dj_make_secrets() {
  local secrets=$1
  [[ $(id -u) -eq 0 ]] || dj_die "run as root: the secrets are handed to the containers' users"
  command -v openssl >/dev/null || dj_die "openssl is missing: run scripts/deps.sh"
  local r=$secrets/registry
  local work
  work=$(dirname "$secrets")
  mkdir -p "$r/auth" "$r/tls" "$r/db" "$r/redis" "$secrets/postgres" "$secrets/redis"
  chmod 0755 "$work" "$secrets"
  (
    umask 077
    if [[ ! -s $r/auth/jwt_keys ]]; then
      {
        printf '# HS256 keys for local tokens, one "kid:hs256:SECRET" per line (secrets.sh).\n'
        printf 'local:hs256:%s\n' "$(openssl rand -hex 32)"
      } >"$r/auth/jwt_keys"
    fi
    if [[ ! -s $secrets/postgres/password ]]; then
      openssl rand -hex 24 >"$secrets/postgres/password"
      rm -f "$r/db/pgpass"
    fi
    if [[ ! -s $r/redis/password ]]; then
      openssl rand -hex 32 >"$r/redis/password"
      rm -f "$secrets/redis/auth.conf"
    fi
    [[ -s $secrets/redis/auth.conf ]] ||
      printf 'requirepass %s\n' "$(cat "$r/redis/password")" >"$secrets/redis/auth.conf"
    # libpq's password file: host:port:database:user:password, for the host name "postgres".
    [[ -s $r/db/pgpass ]] ||
      printf 'postgres:5432:dj_registry:dj_registry:%s\n' "$(cat "$secrets/postgres/password")" \
        >"$r/db/pgpass"
    if [[ ! -s $r/tls/tls.crt ]]; then
      local t=$r/tls
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
        -subj "/CN=dangjian local CA" -keyout "$work/ca.key" -out "$t/ca.crt" 2>/dev/null
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=registry" -keyout "$t/tls.key" -out "$t/server.csr" 2>/dev/null
      printf 'subjectAltName=DNS:registry,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
        >"$t/server.ext"
      openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
        -days 825 -extfile "$t/server.ext" -out "$t/tls.crt" 2>/dev/null
      rm -f "$t/server.csr" "$t/server.ext" "$t/ca.srl"
    fi
  )
  chmod 0644 "$r/tls/ca.crt" "$r/tls/tls.crt"
  chown -R "$DJ_REGISTRY_UID:$DJ_REGISTRY_UID" "$r"
  chmod 0500 "$r" "$r/auth" "$r/tls" "$r/db" "$r/redis"
  chmod 0400 "$r/auth/jwt_keys" "$r/db/pgpass" "$r/tls/tls.key" "$r/redis/password"
  chown "$DJ_POSTGRES_UID:$DJ_POSTGRES_UID" "$secrets/postgres/password"
  chmod 0400 "$secrets/postgres/password"
  chown -R "$DJ_REDIS_UID:$DJ_REDIS_UID" "$secrets/redis"
  chmod 0500 "$secrets/redis"
  chmod 0400 "$secrets/redis/auth.conf"
  install -m 0644 "$r/tls/ca.crt" "$work/ca.pem"
}
