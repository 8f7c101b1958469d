#!/usr/bin/env bash
# Plays the Kubernetes manifests of deploy/k8s with `podman play kube` (ctest: deploy_kube_test):
#   1. builds the images (deploy/images/build.sh; skipped with --prebuilt, when ctest's
#      deploy_images_build fixture has just built them) and makes fresh secrets in a temporary
#      folder (deploy/images/secrets.sh: the same files the manifests' Secrets hold);
#   2. renders the local variant of deploy/k8s (tests/deploy/k8s_manifests.py local: the same pod
#      templates; every replica its own one-pod Deployment on the host network with 127.0.0.1
#      ports; PostgreSQL and Redis as pods; hostPath instead of Secrets; exec probes running
#      dj-health instead of native gRPC probes) and plays it;
#   3. checks through 127.0.0.1 only: both replicas answer the startup, readiness and liveness
#      questions of their probes on the plaintext health port; the API port refuses plaintext and
#      answers over TLS; the demo tree imported through replica 0 is found unchanged through
#      replica 1 (one database, migrations applied once though both replicas started together);
#      Redis refused none of the replicas' calls (they read its password from their Secret
#      volume) and refuses a client without it; podman applied the manifests' limits: read-only
#      root filesystem, non-root user, memory limit; the liveness probe, which podman runs as
#      the container's health check, passes;
#   4. stops the registry pods (each must drain and exit 0 within a few seconds), then
#      `podman play kube --down`, and checks no pod, container or volume of the run is left.
#
#   bash tests/deploy/kube_test.sh [--prebuilt] REPO_ROOT BUILD_DIR
# Needs root, podman (with catatonit for the pods' infra containers), debootstrap, openssl,
# python3-yaml; BUILD_DIR holds dj-registry, dj-health, dj-token and dj-import.
set -euo pipefail
# shellcheck source=tests/deploy/container_test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/container_test_lib.sh"
ct_init "$@"
ct_require podman debootstrap openssl curl redis-cli
python=/usr/bin/python3
"$python" -c 'import yaml' 2>/dev/null || fail "python3-yaml is missing: run scripts/deps.sh"

readonly replicas=2 health_timeout=120
work=$(mktemp -d /tmp/dj-kube-test.XXXXXX)
manifest=$work/local.yaml
# Every pod, container and volume name of this run ends in -$run_id or -$run_id-pod-0...
run_id=$(printf '%x%04x' "$$" "$RANDOM")
leftovers() {
  podman pod ps --format '{{.Name}}' | grep -E -- "-$run_id-pod-" || true
  podman ps --all --format '{{.Names}}' | grep -E -- "-$run_id-pod-" || true
  podman volume ls --format '{{.Name}}' | grep -E -- "$run_id" || true
}
registry_container() { echo "dangjian-registry-$1-$run_id-pod-0-registry"; }

# shellcheck disable=SC2317  # called by ct_on_exit
teardown() {
  if (($1 != 0)) && [[ -s $manifest ]]; then
    local c
    for c in $(podman ps --all --format '{{.Names}}' | grep -E -- "-$run_id-pod-0-"); do
      echo "---- last lines of $c ----" >&2
      podman logs --tail 15 "$c" >&2 2>&1 || true
    done
  fi
  if [[ -s $manifest ]]; then
    podman play kube --down "$manifest" >"$work/down.log" 2>&1 || true
  fi
  # --down stops at the first pod it cannot find (a half-played manifest): remove the rest.
  local pod
  for pod in $(podman pod ps --format '{{.Name}}' | grep -E -- "-$run_id-pod-"); do
    podman pod rm --force --time 10 "$pod" >>"$work/down.log" 2>&1 || true
  done
}
ct_trap_exit teardown

# --- 1. images and secrets ------------------------------------------------------------------
ct_build_images
for image in localhost/dangjian-registry:latest localhost/dangjian-postgres:15 \
  localhost/dangjian-redis:7; do
  podman image exists "$image" || fail "no image $image: run deploy/images/build.sh"
done
secrets=$work/secrets
dj_make_secrets "$secrets"
ca=$work/ca.pem

# --- 2. render and play ---------------------------------------------------------------------
ct_step "render the local variant of deploy/k8s and play it"
pg_port='' redis_port=''
dj_pick_free_port pg_port
dj_pick_free_port redis_port
grpc_ports=() metrics_ports=() health_ports=() port_args=()
for ((i = 0; i < replicas; i++)); do
  g='' m='' h=''
  dj_pick_free_port g
  dj_pick_free_port m
  dj_pick_free_port h
  grpc_ports+=("$g") metrics_ports+=("$m") health_ports+=("$h")
  port_args+=(--ports "$g:$m:$h")
done
"$python" "$root/tests/deploy/k8s_manifests.py" local "$root/deploy/k8s" --out "$manifest" \
  --image-tag latest --secrets "$secrets" --pg-port "$pg_port" --redis-port "$redis_port" \
  "${port_args[@]}" --run-id "$run_id" || fail "rendering the local variant"
# (podman's stderr goes to a log: without systemd it complains about its health-check timers.)
podman play kube "$manifest" >"$work/play.log" 2>&1 || {
  cat "$work/play.log" >&2
  fail "podman play kube"
}
mapfile -t registry_pods < <(podman pod ps --format '{{.Name}}' |
  grep -E -- "^dangjian-registry-[0-9]+-$run_id-pod-0$" | sort)
((${#registry_pods[@]} == replicas)) || fail "expected $replicas registry pods, got: ${registry_pods[*]}"
dj_log "playing (run $run_id): $(podman pod ps --format '{{.Name}}' | grep -c -- "-$run_id-pod-") pods"

# --- 3. checks ------------------------------------------------------------------------------
ct_step "wait until both replicas pass their probes"
probe() { "$health_bin" --target "127.0.0.1:$1" --timeout 2s ${2:+--service "$2"} >/dev/null 2>&1; }
deadline=$((SECONDS + health_timeout))
for ((i = 0; i < replicas; i++)); do
  until probe "${health_ports[i]}" "$CT_REGISTRY_SERVICE"; do
    ((SECONDS < deadline)) || fail "replica $i not ready after ${health_timeout}s"
    sleep 0.5
  done
  probe "${health_ports[i]}" liveness || fail "replica $i: liveness (the livenessProbe) not SERVING"
  dj_log "replica $i: ready and live on its health port 127.0.0.1:${health_ports[i]}"
done

# Both replicas started on the same empty database: together they applied each migration once.
applied=0
for ((i = 0; i < replicas; i++)); do
  n=$(podman logs "$(registry_container "$i")" 2>&1 | grep -c '"msg":"migration applied"') || true
  applied=$((applied + n))
done
expected=$(podman exec "dangjian-local-postgres-$run_id-pod-0-postgres" psql --no-psqlrc -qAt \
  --host=/var/run/postgresql --port="$pg_port" --username=postgres --dbname=dj_registry \
  --command='SELECT count(*) FROM schema_migrations') || fail "reading schema_migrations"
((expected > 0)) || fail "schema_migrations is empty"
((applied == expected)) ||
  fail "the replicas applied $applied migrations between them; the database records $expected"
dj_log "ok: $expected migrations applied once between the two replicas"

for ((i = 0; i < replicas; i++)); do
  c=$(registry_container "$i")
  podman healthcheck run "$c" >/dev/null 2>&1 ||
    fail "$c: its health check (the manifest's livenessProbe) fails"
  [[ $(podman container inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$c") == true ]] ||
    fail "$c: root filesystem is writable (readOnlyRootFilesystem)"
  podman exec "$c" /bin/sh -c ': >/usr/local/bin/probe' 2>/dev/null &&
    fail "$c: could write into the image"
  [[ $(podman exec "$c" id -u) == 10001 ]] || fail "$c: not running as uid 10001"
  mem=$(podman container inspect --format '{{.HostConfig.Memory}}' "$c")
  ((mem == 512 * 1024 * 1024)) || fail "$c: memory limit $mem, the manifest says 512Mi"
done
dj_log "ok: read-only root, uid 10001, 512Mi limit; podman's health checks pass"

grpc0=127.0.0.1:${grpc_ports[0]} grpc1=127.0.0.1:${grpc_ports[1]}
if "$health_bin" --target "$grpc0" --service "$CT_REGISTRY_SERVICE" --timeout 2s >/dev/null 2>&1; then
  fail "replica 0 answered plaintext on its API port"
fi
for target in "$grpc0" "$grpc1"; do
  "$health_bin" --target "$target" --service "$CT_REGISTRY_SERVICE" --timeout 5s \
    --tls_ca_file "$ca" >/dev/null || fail "dj-health over TLS on $target"
done
dj_log "ok: the API ports refuse plaintext and answer over TLS"

ct_token "$secrets/registry/auth/jwt_keys" "$work/test.token"
first=$(ct_import_demo "$grpc0" "$ca" "$work/test.token" "$work" created)
again=$(ct_import_demo "$grpc1" "$ca" "$work/test.token" "$work" unchanged)
dj_log "ok: imported through replica 0 ($first); replica 1 finds them: $again"

for ((i = 0; i < replicas; i++)); do
  # Read whole, then searched: `curl | grep -q` fails under pipefail once /metrics outgrows the
  # pipe, because grep exits at the first match and curl cannot finish writing.
  metrics=$(curl -fsS --max-time 5 "http://127.0.0.1:${metrics_ports[i]}/metrics") ||
    fail "/metrics of replica $i did not answer"
  grep -q '^grpc_server_started_total' <<<"$metrics" || fail "/metrics of replica $i"
done
dj_log "ok: both replicas expose /metrics"
ct_redis_password_used "$redis_port" "$secrets/registry/redis/password"
dj_log "ok: Redis refused none of the replicas' calls and refuses a client without the password"

# --- 4. stop --------------------------------------------------------------------------------
ct_step "stop"
for ((i = 0; i < replicas; i++)); do
  c=$(registry_container "$i")
  ct_stop_registry "$c" "$work"
  dj_log "ok: $c drained and exited 0 in ${ct_stop_ms} ms"
done
podman play kube --down "$manifest" >"$work/down.log" 2>&1 || {
  cat "$work/down.log" >&2
  fail "podman play kube --down"
}
left=$(leftovers)
[[ -z $left ]] || fail "left behind after --down: $left"
dj_log "ok: every pod and container of the run is gone"
ct_step "finish"
dj_log "kube test passed in $((SECONDS - ct_started))s"
