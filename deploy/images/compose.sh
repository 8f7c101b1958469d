#!/usr/bin/env bash
# Runs the suite in containers (deploy/compose.yaml, podman-compose): PostgreSQL, Redis and
# dj-registry, every port on 127.0.0.1 only.
#
#   bash deploy/images/compose.sh up [--no-build] [--build-dir DIR] [--project NAME]
#       builds dj-registry and the tools in DIR (default build/), the images (deploy/images/
#       build.sh; the Debian base only on a new machine), makes the secrets once, starts the
#       containers, waits until each is healthy, mints an operator token, and prints how to call.
#   bash deploy/images/compose.sh down [--volumes] [--project NAME]
#       stops the containers (the registry drains its calls first) and removes them and the
#       project's network; --volumes also deletes PostgreSQL's data.
#
# Secrets and the token live in DJ_COMPOSE_DIR (default .run/containers/, ignored by git), made
# on first use by deploy/images/secrets.sh: JWT key, PostgreSQL and Redis passwords, a CA and the
# registry's TLS certificate for the names registry, localhost and 127.0.0.1. Host ports: DJ_GRPC_PORT=50051 DJ_METRICS_PORT=9464
# DJ_PG_PORT=55432 DJ_REDIS_PORT=56379. The project name defaults to dangjian (DJ_PROJECT).
# As root on Debian 12 (podman as root; the secrets are chowned to the containers' users).
set -euo pipefail
# shellcheck source=deploy/images/podman-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/podman-env.sh"
# shellcheck source=scripts/lib.sh
source "$DJ_IMAGES_DIR/../../scripts/lib.sh"
# shellcheck source=deploy/images/secrets.sh
source "$DJ_IMAGES_DIR/secrets.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }

readonly health_timeout=120

(($#)) || {
  usage >&2
  exit 2
}
action=$1
shift
build=true build_dir=$DJ_ROOT/build project=${DJ_PROJECT:-dangjian} volumes=false
while (($#)); do
  case $1 in
    --no-build) build=false ;;
    --build-dir)
      (($# >= 2)) || dj_die "--build-dir needs a folder"
      build_dir=$(realpath -m "$2")
      shift
      ;;
    --project)
      (($# >= 2)) || dj_die "--project needs a name"
      project=$2
      shift
      ;;
    --volumes) volumes=true ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      dj_die "unknown argument: $1"
      ;;
  esac
  shift
done
[[ $project =~ ^[a-z0-9][a-z0-9_-]*$ ]] || dj_die "--project: lower-case letters, digits, _ and -"

work=$(realpath -m "${DJ_COMPOSE_DIR:-$DJ_ROOT/.run/containers}")
secrets=$work/secrets
compose_file=$DJ_ROOT/deploy/compose.yaml
export DJ_SECRETS_DIR=$secrets
export DJ_GRPC_PORT=${DJ_GRPC_PORT:-50051} DJ_METRICS_PORT=${DJ_METRICS_PORT:-9464}
export DJ_PG_PORT=${DJ_PG_PORT:-55432} DJ_REDIS_PORT=${DJ_REDIS_PORT:-56379}
dj_podman_env

# podman-compose prints every podman command it runs; that goes to the log.
compose() { podman-compose --project-name "$project" --file "$compose_file" "$@"; }
container() { echo "${project}_$1_1"; }

# --- health ---------------------------------------------------------------------------------

# Fails at once, with podman's own error, if container $1 was created but never started:
# podman-compose only logs such a failure (a network podman cannot set up, say netavark without
# iptables) and goes on, and the container would then sit in "created" with no log of its own.
# Starting it again shows the error; should that start succeed, all is well.
require_started() {
  local name=$1 never err
  never=$(podman container inspect --format '{{.State.StartedAt.IsZero}}' "$name" 2>/dev/null) ||
    return 0  # missing: wait_healthy says so
  [[ $never == true ]] || return 0
  err=$(podman start "$name" 2>&1 >/dev/null) && return 0
  # (Without systemd podman also complains about its health-check timers: not the cause.)
  err=$(grep -v 'level=' <<<"$err") || true
  dj_die "container $name was created but could not start; podman says:"$'\n'"$err"
}

# Waits until every container of the project passes its image's HEALTHCHECK (run here with
# `podman healthcheck run`: podman's periodic checks need systemd timers, which a container
# host without systemd lacks). Fails at once if a container never started or stopped for good.
wait_healthy() {
  local deadline=$((SECONDS + health_timeout)) service name state
  for service in postgres redis registry; do
    require_started "$(container "$service")"
  done
  for service in postgres redis registry; do
    name=$(container "$service")
    until podman healthcheck run "$name" >/dev/null 2>&1; do
      state=$(podman container inspect --format '{{.State.Status}}' "$name" 2>/dev/null) ||
        state=missing
      if [[ $state == missing || ($state == exited && $service != registry) ]]; then
        podman logs --tail 20 "$name" >&2 2>&1 || true
        dj_die "container $name is $state"
      fi
      if ((SECONDS >= deadline)); then
        podman logs --tail 20 "$name" >&2 2>&1 || true
        dj_die "container $name not healthy after ${health_timeout}s"
      fi
      sleep 0.5
    done
    dj_log "$service: healthy"
  done
}

# --- up / down ------------------------------------------------------------------------------

up() {
  command -v podman-compose >/dev/null ||
    dj_die "podman-compose is missing: run scripts/deps.sh as root"
  if $build; then
    bash "$DJ_ROOT/scripts/deps.sh"
    dj_build "$build_dir" -- dj-registry dj-health dj-token dj-import
    bash "$DJ_IMAGES_DIR/build.sh" --build-dir "$build_dir"
  fi
  local port var
  for var in DJ_GRPC_PORT DJ_METRICS_PORT DJ_PG_PORT DJ_REDIS_PORT; do
    port=${!var}
    dj_require_free_port "$var" "$port" "$var"
  done
  dj_make_secrets "$secrets"
  mkdir -p "$work/logs"
  dj_log "starting project $project (log: $work/logs/compose.log)"
  compose up -d >>"$work/logs/compose.log" 2>&1 || {
    tail -n 20 "$work/logs/compose.log" >&2
    dj_die "podman-compose up failed"
  }
  wait_healthy
  local token_bin=$build_dir/tools/dj-token
  if [[ -x $token_bin ]]; then
    (
      umask 077
      "$token_bin" --keys_file "$secrets/registry/auth/jwt_keys" --kid local --subject operator \
        --roles admin --org_scope '*' --ttl 8h >"$work/operator.token"
    )
  fi
  local rel_work
  rel_work=$(realpath --relative-to="$PWD" "$work")
  cat <<EOF

dangjian runs in containers (project $project). Secrets and token: $rel_work/
  registry gRPC     127.0.0.1:$DJ_GRPC_PORT   (TLS; CA: $rel_work/ca.pem)
  registry metrics  http://127.0.0.1:$DJ_METRICS_PORT/metrics
  PostgreSQL        127.0.0.1:$DJ_PG_PORT   (database and role dj_registry, password in $rel_work/secrets/postgres/)
  Redis             127.0.0.1:$DJ_REDIS_PORT   (password in $rel_work/secrets/registry/redis/)
Try:
  $(realpath --relative-to="$PWD" "$build_dir")/tools/dj-health --target 127.0.0.1:$DJ_GRPC_PORT --tls_ca_file $rel_work/ca.pem --service dangjian.registry.v1.OrgRegistry
  $(realpath --relative-to="$PWD" "$build_dir")/tools/dj-import --target 127.0.0.1:$DJ_GRPC_PORT --tls_ca_file $rel_work/ca.pem --token_file $rel_work/operator.token --csv deploy/demo/orgs.csv
  podman ps --filter label=io.podman.compose.project=$project
Stop: bash deploy/images/compose.sh down --project $project   (add --volumes to delete the data)
EOF
}

down() {
  mkdir -p "$work/logs"
  local rc=0 service name status
  # In order, each given time to finish: the registry serves on for its shutdown delay (1 s),
  # then drains calls (shutdown grace 10 s).
  for service in registry redis postgres; do
    name=$(container "$service")
    podman container exists "$name" || continue
    podman stop --time 30 "$name" >/dev/null 2>&1 || true
    status=$(podman container inspect --format '{{.State.ExitCode}}' "$name" 2>/dev/null) || status=''
    if [[ $service == registry && -n $status && $status != 0 ]]; then
      dj_log "registry exited with status $status (see podman logs $name)"
      rc=1
    fi
  done
  local down_args=()
  $volumes && down_args+=(--volumes)
  compose down "${down_args[@]}" >>"$work/logs/compose.log" 2>&1 || rc=1
  # podman-compose 1.0.3 leaves the network it created.
  if podman network exists "${project}_default" 2>/dev/null; then
    podman network rm "${project}_default" >/dev/null || rc=1
  fi
  return "$rc"
}

case $action in
  up) up ;;
  down) down ;;
  *)
    usage >&2
    exit 2
    ;;
esac
