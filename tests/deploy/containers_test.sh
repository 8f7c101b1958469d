#!/usr/bin/env bash
# Proves the container images and deploy/compose.yaml (ctest: deploy_containers_test):
#   1. builds the images with deploy/images/build.sh from BUILD_DIR's binaries (the Debian base
#      is debootstrapped only on a new machine, then reused from podman or its cached save);
#      skipped with --prebuilt, when ctest's deploy_images_build fixture has just built them;
#   2. starts the compose project under a unique name, with fresh secrets (JWT key, database
#      password, TLS certificate) in a temporary folder and free 127.0.0.1 ports, and waits until
#      PostgreSQL, Redis and the registry pass their images' health checks;
#   3. checks, through the published ports only: every published port is bound to 127.0.0.1;
#      the gRPC port refuses plaintext and answers grpc.health.v1 over TLS (dj-health, trusting
#      the CA compose.sh made); compose.sh's output holds no secret; a token minted with
#      dj-token imports the demo tree (deploy/demo/orgs.csv) with every row created and none
#      failed, and a second import finds them all unchanged; /metrics counts the calls; Redis
#      refused none of the registry's calls for want of the password, and refuses a client
#      without it; inside, the registry runs as a non-root user, as PID 1, with no compiler in
#      the image;
#   4. stops the registry with `podman stop` (it must drain and exit 0 within a few seconds),
#      then the rest (compose down, volumes removed) and checks nothing of the project is left:
#      containers, volume, network. The EXIT trap does the same cleanup on any failure.
#
#   bash tests/deploy/containers_test.sh [--prebuilt] REPO_ROOT BUILD_DIR
# BUILD_DIR holds dj-registry, dj-health, dj-token and dj-import. Needs root, podman,
# podman-compose, debootstrap and openssl. Prints the wall time of each step.
set -euo pipefail
# shellcheck source=tests/deploy/container_test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/container_test_lib.sh"
ct_init "$@"
ct_require podman podman-compose debootstrap openssl curl redis-cli

ct_compose_project djtest dj-containers-test
registry=${project}_registry_1

# shellcheck disable=SC2317  # called by ct_on_exit
teardown() {
  if (($1 != 0)); then
    for service in registry postgres redis; do
      podman container exists "${project}_${service}_1" 2>/dev/null || continue
      echo "---- last lines of the $service container's log ----" >&2
      podman logs --tail 25 "${project}_${service}_1" >&2 2>&1 || true
    done
  fi
  bash "$root/deploy/images/compose.sh" down --volumes --project "$project" >/dev/null 2>&1 || true
}
ct_trap_exit teardown

# --- 1. images ------------------------------------------------------------------------------
ct_build_images
for image in localhost/dangjian-base:12 localhost/dangjian-registry:latest \
  localhost/dangjian-postgres:15 localhost/dangjian-redis:7; do
  size=$(podman image inspect --format '{{.Size}}' "$image") || fail "no image $image"
  dj_log "image $image: $(awk '{ printf "%.0f MB", $1 / 1e6 }' <<<"$size")"
done
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null) || rev=''
if [[ -n $rev ]]; then
  podman image exists "localhost/dangjian-registry:$rev" ||
    fail "the registry image is not tagged with the revision $rev"
fi

# --- 2. start -------------------------------------------------------------------------------
ct_step "compose up (project $project)"
bash "$root/deploy/images/compose.sh" up --no-build --build-dir "$build_dir" --project "$project" \
  >"$work/up.log" 2>&1 || {
  cat "$work/up.log" >&2
  fail "compose.sh up"
}
ca=$work/ca.pem
[[ -s $ca ]] || fail "compose.sh made no $ca"

# --- 3. checks ------------------------------------------------------------------------------
ct_step "checks through the published ports"
for service in postgres redis registry; do
  ports=$(podman port "${project}_${service}_1") || fail "podman port ${project}_${service}_1"
  [[ -n $ports ]] || fail "$service publishes no port"
  if grep -v -E -- '-> 127\.0\.0\.1:[0-9]+$' <<<"$ports"; then
    fail "$service publishes a port beyond 127.0.0.1: $ports"
  fi
done
dj_log "ok: every published port is on 127.0.0.1"

ct_no_secret_in "$work/up.log" "$work/operator.token" "$work/secrets/registry/redis/password" \
  "$work/secrets/postgres/password" "$work/secrets/registry/auth/jwt_keys"
dj_log "ok: compose.sh printed no secret"

if "$health_bin" --target "127.0.0.1:$grpc_port" --service "$CT_REGISTRY_SERVICE" --timeout 2s \
  >/dev/null 2>&1; then
  fail "the registry answered plaintext on its published port (TLS is required off loopback)"
fi
"$health_bin" --target "127.0.0.1:$grpc_port" --service "$CT_REGISTRY_SERVICE" --timeout 5s \
  --tls_ca_file "$ca" || fail "dj-health over TLS on the published port"
dj_log "ok: plaintext refused; grpc.health.v1 SERVING over TLS on 127.0.0.1:$grpc_port"

ct_token "$work/secrets/registry/auth/jwt_keys" "$work/test.token"
first=$(ct_import_demo "127.0.0.1:$grpc_port" "$ca" "$work/test.token" "$work" created)
again=$(ct_import_demo "127.0.0.1:$grpc_port" "$ca" "$work/test.token" "$work" unchanged)
dj_log "ok: demo tree imported over TLS ($first); again: $again"

metrics=$(curl -fsS --max-time 5 "http://127.0.0.1:$metrics_port/metrics") ||
  fail "/metrics on 127.0.0.1:$metrics_port"
grep -q '^grpc_server_started_total.*ImportOrgs' <<<"$metrics" ||
  fail "/metrics does not count the ImportOrgs calls"
dj_log "ok: /metrics counts the calls"

ct_redis_password_used "$redis_port" "$work/secrets/registry/redis/password"
dj_log "ok: Redis refused none of the registry's calls and refuses a client without the password"

uid=$(podman exec "$registry" id -u) || fail "podman exec $registry"
[[ $uid != 0 ]] || fail "the registry runs as root"
pid1=$(podman exec "$registry" cat /proc/1/comm)
[[ $pid1 == dj-registry ]] || fail "PID 1 in the registry container is $pid1, not dj-registry"
if podman exec "$registry" sh -c 'command -v cc || command -v gcc || command -v c++ || command -v ld'; then
  fail "the registry image holds a compiler or linker"
fi
podman exec "$registry" /usr/local/bin/dj-healthcheck || fail "the image's HEALTHCHECK fails"
dj_log "ok: registry runs as uid $uid, as PID 1, with no compiler; its HEALTHCHECK passes"

# --- 4. stop --------------------------------------------------------------------------------
ct_step "stop"
ct_stop_registry "$registry" "$work"
registry_log=$(podman logs "$registry" 2>&1)
# The drain itself, from the registry's own log: "shutting down" to "stopped".
drain=$(grep -E '"msg":"(shutting down|stopped)"' <<<"$registry_log" | tail -n 2 |
  sed -E 's/.*"ts":"[^"]*T([0-9:.]+)Z".*/\1/' |
  awk -F: '{ t[NR] = $1 * 3600 + $2 * 60 + $3 } END { if (NR == 2) printf "%.0f", (t[2] - t[1]) * 1000 }')
[[ -n $drain ]] || fail "the registry's log lacks \"shutting down\" and \"stopped\" after SIGTERM"
dj_log "ok: podman stop of the registry: ${ct_stop_ms} ms (the drain: ${drain} ms), exit 0"

ct_compose_down
dj_log "ok: containers, volume and network of $project are gone"
ct_step "finish"
dj_log "containers test passed in $((SECONDS - ct_started))s"
