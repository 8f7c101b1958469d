# shellcheck shell=bash
# Shared by the container tests (tests/deploy/containers_test.sh, tests/deploy/kube_test.sh):
# argument parsing, the checks of what they need, image building, the demo import over TLS and
# the timed stop of a registry container.
#
#   source tests/deploy/container_test_lib.sh
#   ct_init "$@"    # [--prebuilt] REPO_ROOT BUILD_DIR; sets root, build_dir, prebuilt,
#                   # health_bin, token_bin, import_bin; sources scripts/lib.sh,
#                   # deploy/images/podman-env.sh and deploy/images/secrets.sh
# Then ct_require CMD..., ct_compose_project, ct_compose_down, ct_trap_exit, ct_build_images, ct_step, ct_redis_password_used,
# ct_no_secret_in, ct_import_demo,
# ct_stop_registry, fail.

# shellcheck disable=SC2034  # used by the scripts that source this
readonly CT_REGISTRY_SERVICE=dangjian.registry.v1.OrgRegistry
# An idle registry exits its shutdown delay (1 s in compose and deploy/k8s) after SIGTERM, the
# drain then takes milliseconds; podman adds 0.5-2.5 s here (a SIGKILL after the 30 s timeout
# would show as exit 137, which ct_stop_registry refuses).
readonly CT_STOP_LIMIT_S=8

fail() {
  printf 'FAILED: %s\n' "$*" >&2
  exit 1
}

ct_init() {
  prebuilt=false
  if [[ ${1:-} == --prebuilt ]]; then
    prebuilt=true
    shift
  fi
  (($# == 2)) || fail "usage: $0 [--prebuilt] REPO_ROOT BUILD_DIR"
  root=$(cd "$1" && pwd)
  build_dir=$(cd "$2" && pwd)
  # shellcheck source=scripts/lib.sh
  source "$root/scripts/lib.sh"
  # shellcheck source=deploy/images/podman-env.sh
  source "$root/deploy/images/podman-env.sh"
  # shellcheck source=deploy/images/secrets.sh
  source "$root/deploy/images/secrets.sh"
  [[ $(id -u) -eq 0 ]] || fail "run as root (podman as root; secrets are chowned to container users)"
  health_bin=$build_dir/tools/dj-health
  token_bin=$build_dir/tools/dj-token
  import_bin=$build_dir/tools/dj-import
  local bin
  for bin in "$build_dir/services/registry/dj-registry" "$health_bin" "$token_bin" "$import_bin"; do
    [[ -x $bin ]] || fail "$bin is missing: build it first"
  done
  dj_podman_env
  # shellcheck disable=SC2034  # read by the scripts that source this
  ct_started=$SECONDS
  ct_step_started=$SECONDS
}

# ct_require CMD...: each must be on PATH (scripts/deps.sh installs them).
ct_require() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || fail "$cmd is missing: run scripts/deps.sh as root"
  done
}

# Logs the wall time of the step that ends and names the next.
ct_step() {
  dj_log "[$((SECONDS - ct_step_started))s] done; next: $*"
  ct_step_started=$SECONDS
}

# Builds the images from build_dir's binaries, unless --prebuilt said ctest's fixture did.
ct_build_images() {
  if ! $prebuilt; then
    dj_log "building the images (base reused when podman or $DJ_IMAGE_CACHE holds it)"
    bash "$root/deploy/images/build.sh" --build-dir "$build_dir" || fail "deploy/images/build.sh"
  fi
}

# ct_compose_project NAME TMP_PREFIX: sets up a compose project for deploy/images/compose.sh:
# `project` (NAME-PID-RANDOM), its folder `work` (/tmp/TMP_PREFIX.XXXXXX, exported as
# DJ_COMPOSE_DIR) and free 127.0.0.1 ports grpc_port, metrics_port, pg_port and redis_port
# (exported as DJ_GRPC_PORT...); and `leftovers`, which names what the project still has
# (containers, volumes, network; nothing when all is gone), for ct_trap_exit.
ct_compose_project() {
  project=$1-$$-$RANDOM
  work=$(mktemp -d "/tmp/$2.XXXXXX")
  chmod 0755 "$work"
  export DJ_COMPOSE_DIR=$work
  grpc_port='' metrics_port='' pg_port='' redis_port=''
  dj_pick_free_port grpc_port
  dj_pick_free_port metrics_port
  dj_pick_free_port pg_port
  dj_pick_free_port redis_port
  export DJ_GRPC_PORT=$grpc_port DJ_METRICS_PORT=$metrics_port DJ_PG_PORT=$pg_port
  export DJ_REDIS_PORT=$redis_port
  # shellcheck disable=SC2317  # called by ct_on_exit
  leftovers() {
    podman ps --all --quiet --filter "label=io.podman.compose.project=$project"
    podman volume ls --quiet --filter "label=io.podman.compose.project=$project"
    podman network exists "${project}_default" 2>/dev/null && echo "network ${project}_default"
    return 0
  }
}

# ct_compose_down: `compose.sh down --volumes` of the project must succeed and leave nothing.
ct_compose_down() {
  bash "$root/deploy/images/compose.sh" down --volumes --project "$project" >"$work/down.log" 2>&1 || {
    cat "$work/down.log" >&2
    fail "compose.sh down"
  }
  local left
  left=$(leftovers)
  [[ -z $left ]] || fail "left behind after compose down: $left"
}

# ct_token KEYS_FILE OUT: an admin token for the whole city, valid 10 minutes, in OUT (0600).
ct_token() {
  local token
  token=$("$token_bin" --keys_file "$1" --kid local --subject ci --roles admin --org_scope '*' \
    --ttl 10m) || fail "dj-token"
  (
    umask 077
    printf '%s\n' "$token" >"$2"
  )
}

# ct_redis_password_used PORT PASSWORD_FILE: Redis on 127.0.0.1:PORT refused none of the calls
# so far for want of the password (the registry's gave it), and refuses a client without it.
ct_redis_password_used() {
  local refusals
  refusals=$(dj_redis_auth_refusals "$1" "$2") || fail "Redis on port $1 refuses its password"
  [[ -z $refusals ]] || fail "Redis refused the registry's calls for want of the password: $refusals"
  dj_redis_refuses_anonymous "$1" || fail "Redis on port $1 answers a client without a password"
}

# ct_no_secret_in FILE SECRET_FILE...: FILE (a command's output) shows no secret of the files.
ct_no_secret_in() {
  local shown
  if shown=$(dj_shows_secret "$@"); then fail "$1 shows the secret of $shown"; fi
}

# ct_import_demo TARGET CA_FILE TOKEN_FILE WORK EXPECT: imports deploy/demo/orgs.csv over TLS and
# requires every row to be EXPECT (created or unchanged) and none to fail. Prints the summary.
ct_import_demo() {
  local target=$1 ca=$2 token_file=$3 work=$4 expect=$5
  local csv=$root/deploy/demo/orgs.csv summary rows
  rows=$(($(wc -l <"$csv") - 1))
  "$import_bin" --target "$target" --tls_ca_file "$ca" --token_file "$token_file" --csv "$csv" \
    --timeout 60s >"$work/import.log" 2>&1 || {
    cat "$work/import.log" >&2
    fail "dj-import through $target"
  }
  summary=$(grep -m 1 '^received' "$work/import.log") || fail "no summary from dj-import"
  [[ $(ct_count_of "$expect" "$summary") == "$rows" && $(ct_count_of failed "$summary") == 0 ]] ||
    fail "import through $target: expected $rows $expect and 0 failed: $summary"
  printf '%s\n' "$summary"
}
ct_count_of() { grep -oE "\b$1[=: ]+[0-9]+" <<<"$2" | grep -oE '[0-9]+$' | head -n 1; }

# ct_stop_registry CONTAINER WORK: `podman stop` must return within CT_STOP_LIMIT_S and the
# registry exit 0 (it drained). Sets ct_stop_ms.
ct_stop_registry() {
  local c=$1 work=$2 begin code
  begin=$(date +%s%N)
  # (podman's stderr goes to a log: without systemd it complains about its health-check timers.)
  podman stop --time 30 "$c" >"$work/stop.log" 2>&1 || {
    cat "$work/stop.log" >&2
    fail "podman stop $c"
  }
  ct_stop_ms=$((($(date +%s%N) - begin) / 1000000))
  code=$(podman container inspect --format '{{.State.ExitCode}}' "$c")
  [[ $code == 0 ]] || fail "$c exited with $code on SIGTERM, not 0"
  ((ct_stop_ms < CT_STOP_LIMIT_S * 1000)) ||
    fail "podman stop $c took ${ct_stop_ms} ms (limit ${CT_STOP_LIMIT_S}s)"
}

# ct_trap_exit TEARDOWN: on any exit (failure, Ctrl-C, success) runs `TEARDOWN STATUS` (the
# test's own: logs on failure, stop and remove what it started), then fails the run if the
# test's `leftovers` function still names anything, and removes $work.
ct_trap_exit() {
  ct_teardown=$1
  trap ct_on_exit EXIT
  trap 'exit 130' INT TERM
}

# shellcheck disable=SC2317  # called by the EXIT trap
ct_on_exit() {
  local rc=$? left
  trap '' INT TERM
  trap - EXIT
  "$ct_teardown" "$rc"
  left=$(leftovers)
  if [[ -n $left ]]; then
    echo "FAILED: left behind:"$'\n'"$left" >&2
    rc=1
  fi
  rm -rf "$work"
  exit "$rc"
}
