#!/usr/bin/env bash
# grpc.health.v1 through server reflection, as an integrator's tools see it (ctest:
# proto_health_reflection_test). Starts PostgreSQL, Redis and dj-registry (with a JWT key, as in
# production: health and reflection need no token) on free 127.0.0.1 ports, with the plaintext
# health-only listener too, then asks with `buf curl`, which has no .proto file and learns every
# type from the server's reflection service:
#   1. `buf curl --list-methods` on both listeners lists grpc.health.v1.Health/Check and Watch;
#   2. grpc.health.v1.Health/Check answers SERVING on both, for the server ("") and for
#      dangjian.registry.v1.OrgRegistry, and NOT_FOUND for a service the server does not have.
# Every process started is stopped by its PID on any exit; the whole run is bounded to 120 s.
#
#   bash tests/proto/health_reflection_test.sh REPO_ROOT BUILD_DIR
# BUILD_DIR must hold dj-registry and dj-health; buf comes from tools/proto (scripts/deps.sh).
set -euo pipefail

readonly time_limit=120

fail() {
  printf 'FAILED: %s\n' "$*" >&2
  exit 1
}

if [[ ${1:-} != --run ]]; then
  (($# == 2)) || fail "usage: $0 REPO_ROOT BUILD_DIR"
  # timeout signals the run (and what it runs) with TERM; its EXIT trap then stops the servers.
  status=0
  timeout -s TERM "$time_limit" bash "${BASH_SOURCE[0]}" --run "$1" "$2" || status=$?
  ((status != 124)) || fail "took more than ${time_limit}s"
  exit "$status"
fi

root=$(cd "$2" && pwd)
build_dir=$(cd "$3" && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

buf=$root/tools/proto/node_modules/.bin/buf
registry_bin=$build_dir/services/registry/dj-registry
health_bin=$build_dir/tools/dj-health
[[ -x $buf ]] || fail "buf is missing ($buf): run scripts/deps.sh (or tools/proto/install.sh)"
for bin in "$registry_bin" "$health_bin"; do
  [[ -x $bin ]] || fail "$bin is missing: build it"
done
for cmd in redis-server psql setsid; do
  command -v "$cmd" >/dev/null || fail "$cmd is missing: run scripts/deps.sh as root"
done
readonly registry_service=dangjian.registry.v1.OrgRegistry

work=$(mktemp -d /tmp/dj-health-reflection.XXXXXX)
chmod 0755 "$work"
logs=$work/logs
mkdir -p "$logs"
grpc_port='' health_port='' metrics_port='' pg_port='' redis_port=''
for port in grpc_port health_port metrics_port pg_port redis_port; do dj_pick_free_port "$port"; done

registry_pid='' redis_pid='' pg_started=false
# shellcheck disable=SC2317  # called by the EXIT trap
on_exit() {
  local rc=$?
  trap '' INT TERM
  trap - EXIT
  [[ -n $registry_pid ]] && { dj_stop_pid "$registry_pid" 15 || true; }
  [[ -n $redis_pid ]] && { dj_stop_pid "$redis_pid" 5 || true; }
  $pg_started && dj_pg_stop "$work/pg"
  ((rc == 0)) || dj_tail_logs "$logs" 15
  rm -rf "$work"
  exit "$rc"
}
trap on_exit EXIT
trap 'echo "interrupted (time limit?)" >&2; exit 143' INT TERM

dj_pg_init "$work/pg"
pg_started=true
dj_pg_start "$work/pg" "$pg_port" "$logs/postgresql.log" -c fsync=off
dj_pg_create_db "$pg_port" dj_registry
dj_redis_start "$redis_port" "$work/redis"
redis_pid=$DJ_REDIS_PID
(
  umask 077
  printf 'local:hs256:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$work/jwt_keys"
)
setsid "$registry_bin" --grpc_address="127.0.0.1:$grpc_port" \
  --health_address="127.0.0.1:$health_port" --metrics_address="127.0.0.1:$metrics_port" \
  --pg_conninfo="host=127.0.0.1 port=$pg_port dbname=dj_registry user=postgres" \
  --redis_address="127.0.0.1:$redis_port" --jwt_keys_file="$work/jwt_keys" \
  >>"$logs/registry.log" 2>&1 &
registry_pid=$!
deadline=$((SECONDS + 30))
until "$health_bin" --target "127.0.0.1:$grpc_port" --service "$registry_service" --timeout 2s \
  >/dev/null 2>"$logs/health.log"; do
  dj_pid_alive "$registry_pid" || fail "dj-registry exited during start-up"
  ((SECONDS < deadline)) || fail "dj-registry not SERVING after 30s: $(cat "$logs/health.log")"
  sleep 0.2
done
dj_log "dj-registry SERVING on 127.0.0.1:$grpc_port (health-only listener on $health_port)"

# buf curl over plaintext HTTP/2 (gRPC's own protocol, not the Connect or gRPC-Web ones).
curl_grpc() {
  "$buf" curl --protocol grpc --http2-prior-knowledge --connect-timeout 5 "$@"
}

for port in "$grpc_port" "$health_port"; do
  url=http://127.0.0.1:$port
  methods=$(curl_grpc --list-methods "$url" 2>&1) || fail "buf curl --list-methods $url: $methods"
  for method in grpc.health.v1.Health/Check grpc.health.v1.Health/Watch; do
    grep -qx "$method" <<<"$methods" ||
      fail "reflection on $url does not list $method; it lists: $(tr '\n' ' ' <<<"$methods")"
  done
  echo "ok: reflection on $url lists grpc.health.v1.Health/Check and Watch"

  for service in '' "$registry_service"; do
    reply=$(curl_grpc -d "{\"service\": \"$service\"}" "$url/grpc.health.v1.Health/Check" 2>&1) ||
      fail "buf curl $url/grpc.health.v1.Health/Check for '$service': $reply"
    python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1]).get("status") != "SERVING")' \
      "$reply" || fail "Check for '$service' on $url answered $reply, not SERVING"
    echo "ok: Check for '$service' on $url: SERVING"
  done

  # A service the server does not have: NOT_FOUND, as the standard says (buf curl exits non-zero
  # and prints the gRPC error).
  if reply=$(curl_grpc -d '{"service": "no.such.v1.Service"}' \
    "$url/grpc.health.v1.Health/Check" 2>&1); then
    fail "Check for an unknown service on $url answered $reply"
  fi
  grep -q '"code": "not_found"' <<<"$reply" || fail "Check for an unknown service on $url: $reply, not NOT_FOUND"
  echo "ok: Check for an unknown service on $url: NOT_FOUND"
done
