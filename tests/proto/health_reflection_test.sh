#!/usr/bin/env bash
# grpc.health.v1 through server reflection, as an integrator's tools see it (ctest:
# proto_health_reflection_test). Starts PostgreSQL, Redis and dj-registry (with a JWT key, as in
# production: health and reflection need no token) on free 127.0.0.1 ports, with the plaintext
# health-only listener too, then asks with `buf curl`, which has no .proto file and learns every
# type from the server's reflection service:
#   1. `buf curl --list-methods` on both listeners lists grpc.health.v1.Health/Check and Watch;
#   2. grpc.health.v1.Health/Check answers SERVING on both, for the server ("") and for
#      dangjian.registry.v1.OrgRegistry, and NOT_FOUND for a service the server does not have.
# The servers are started by dj_test_registry_start (scripts/lib.sh) and stopped by their PIDs on
# any exit (also on SIGTERM); every wait is bounded (start-up 30 s, each buf curl 10 s).
#
#   bash tests/proto/health_reflection_test.sh REPO_ROOT BUILD_DIR
# BUILD_DIR must hold dj-registry and dj-health; buf comes from tools/proto (scripts/deps.sh).
set -euo pipefail

fail() {
  printf 'FAILED: %s\n' "$*" >&2
  exit 1
}

(($# == 2)) || fail "usage: $0 REPO_ROOT BUILD_DIR"
root=$(cd "$1" && pwd)
build_dir=$(cd "$2" && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

buf=$root/tools/proto/node_modules/.bin/buf
[[ -x $buf ]] || fail "buf is missing ($buf): run scripts/deps.sh (or tools/proto/install.sh)"
for bin in services/registry/dj-registry tools/dj-health; do
  [[ -x $build_dir/$bin ]] || fail "$build_dir/$bin is missing: build it"
done
readonly registry_service=dangjian.registry.v1.OrgRegistry

work=$(mktemp -d /tmp/dj-health-reflection.XXXXXX)
chmod 0755 "$work"
# shellcheck disable=SC2317  # called by the EXIT trap
on_exit() {
  local rc=$?
  trap '' INT TERM
  trap - EXIT
  dj_test_registry_stop
  ((rc == 0)) || dj_tail_logs "$work/logs" 15
  rm -rf "$work"
  exit "$rc"
}
trap on_exit EXIT
trap 'echo "interrupted" >&2; exit 143' INT TERM

health_port=''
dj_pick_free_port health_port
dj_test_registry_start "$work" "$build_dir" --health_address="127.0.0.1:$health_port"
grpc_port=$DJ_TEST_GRPC_PORT

# buf curl over plaintext HTTP/2 (gRPC's own protocol, not the Connect or gRPC-Web ones).
curl_grpc() {
  "$buf" curl --protocol grpc --http2-prior-knowledge --connect-timeout 5 --timeout 10s "$@"
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
