#!/usr/bin/env bash
# The run command as an operator leaves it running (ctest: run_restart_test): scripts/run.sh
# --no-build on free ports with its data in a temporary folder, then:
#   1. what it printed holds no secret: not the operator token, the Redis password or the JWT key
#      (only where their files are);
#   2. Redis killed (SIGKILL): run.sh says so, starts it again on the same port, with the same
#      password, and meanwhile and afterwards the registry, the same process, answers (health
#      SERVING, the demo tree re-imported unchanged) and gives the new Redis its password;
#   3. the same for Prometheus;
#   4. SIGTERM to run.sh: everything stops in order, run.sh exits 0, every port is free.
#
#   bash tests/scripts/run_restart_test.sh REPO_ROOT BUILD_DIR
# Run as root (run.sh runs PostgreSQL as the user dangjian) or as that user; BUILD_DIR holds
# dj-registry, dj-import, dj-token and dj-health.
set -euo pipefail
(($# == 2)) || {
  echo "usage: $0 REPO_ROOT BUILD_DIR" >&2
  exit 2
}
root=$(cd "$1" && pwd)
build_dir=$(cd "$2" && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

readonly start_timeout=240 restart_timeout=60
fail() {
  printf 'FAILED: %s\n' "$*" >&2
  exit 1
}

work=$(mktemp -d /tmp/dj-run-restart-test.XXXXXX)
chmod 0755 "$work"
run=$work/run
grpc_port='' metrics_port='' pg_port='' redis_port='' prometheus_port=''
for var in grpc_port metrics_port pg_port redis_port prometheus_port; do dj_pick_free_port "$var"; done
export DJ_RUN_DIR=$run DJ_GRPC_PORT=$grpc_port DJ_METRICS_PORT=$metrics_port DJ_PG_PORT=$pg_port
export DJ_REDIS_PORT=$redis_port DJ_PROMETHEUS_PORT=$prometheus_port
run_pid=''

# shellcheck disable=SC2317  # called by the EXIT trap
on_exit() {
  local rc=$?
  trap - EXIT
  if [[ -n $run_pid ]]; then
    dj_stop_pid "$run_pid" 90 || true
  fi
  if ((rc != 0)); then
    echo "---- run.sh's output ----" >&2
    cat "$work/out.log" "$work/err.log" >&2 2>/dev/null || true
    dj_tail_logs "$run/logs" 20
    dj_tail_logs "$run/redis" 10
  fi
  # PostgreSQL, should run.sh have been killed before it could stop it.
  if [[ -f $run/pg/postmaster.pid ]]; then dj_pg_stop "$run/pg"; fi
  rm -rf "$work"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# The PID listening on 127.0.0.1:$1 (empty if none).
listener_pid() {
  ss -Hltnp "sport = :$1" | grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2
}
health() {
  "$build_dir/tools/dj-health" --target "127.0.0.1:$grpc_port" --timeout 5s \
    --service dangjian.registry.v1.OrgRegistry >/dev/null
}
# Re-imports the demo tree: every row must be unchanged, none failed.
reimport() {
  local out rows
  rows=$(($(wc -l <"$root/deploy/demo/orgs.csv") - 1))
  out=$("$build_dir/tools/dj-import" --target "127.0.0.1:$grpc_port" \
    --token_file "$run/operator.token" --csv "$root/deploy/demo/orgs.csv" 2>&1) ||
    fail "dj-import: $out"
  grep -qE "unchanged[=: ]+$rows\b" <<<"$out" && grep -qE "failed[=: ]+0\b" <<<"$out" ||
    fail "re-import: expected $rows unchanged and 0 failed: $out"
}
# Waits until run.sh's log says $1 started again and it listens on port $2 under a new PID ($3).
await_restart() {
  local name=$1 port=$2 old_pid=$3 deadline=$((SECONDS + restart_timeout)) pid
  until grep -q "$name started again" "$work/err.log" && pid=$(listener_pid "$port") &&
    [[ -n $pid && $pid != "$old_pid" ]]; do
    dj_pid_alive "$run_pid" || fail "run.sh exited after $name died"
    ((SECONDS < deadline)) || fail "$name not started again within ${restart_timeout}s"
    sleep 0.2
  done
}

# --- start ----------------------------------------------------------------------------------
dj_log "run.sh --no-build (data in $run)"
bash "$root/scripts/run.sh" --no-build --build-dir "$build_dir" >"$work/out.log" 2>"$work/err.log" &
run_pid=$!
deadline=$((SECONDS + start_timeout))
until grep -q 'dangjian is running' "$work/out.log"; do
  dj_pid_alive "$run_pid" || fail "run.sh exited during start-up"
  ((SECONDS < deadline)) || fail "run.sh not running after ${start_timeout}s"
  sleep 0.2
done
registry_pid=$(listener_pid "$grpc_port")
[[ -n $registry_pid ]] || fail "nothing listens on the registry's port $grpc_port"
health || fail "the registry is not SERVING"
dj_log "ok: running (registry pid $registry_pid)"

# --- 1. no secret in the output -------------------------------------------------------------
secrets=("$run/operator.token" "$run/redis.password" "$run/jwt_keys")
for secret_file in "${secrets[@]}"; do
  [[ -s $secret_file ]] || fail "$secret_file is missing"
  [[ $(stat -c %a "$secret_file") == 600 ]] || fail "$secret_file is not mode 0600"
done
cat "$work/out.log" "$work/err.log" >"$work/printed.log"
if shown=$(dj_shows_secret "$work/printed.log" "${secrets[@]}"); then
  fail "run.sh printed the secret of $shown"
fi
grep -qF "operator.token" "$work/out.log" || fail "run.sh does not say where the token is"
dj_log "ok: no token, password or key in run.sh's output; it names the token's file"

# --- 2. Redis dies --------------------------------------------------------------------------
redis_pid=$(listener_pid "$redis_port")
[[ -n $redis_pid ]] || fail "nothing listens on Redis' port $redis_port"
kill -KILL "$redis_pid"
health || fail "the registry is not SERVING while Redis is down"
await_restart redis "$redis_port" "$redis_pid"
grep -qE "redis \(pid $redis_pid\) exited" "$work/err.log" || fail "run.sh did not log Redis' exit"
[[ $(listener_pid "$grpc_port") == "$registry_pid" ]] || fail "the registry was restarted"
health || fail "the registry is not SERVING after Redis came back"
reimport
refusals=$(dj_redis_auth_refusals "$redis_port" "$run/redis.password") ||
  fail "the restarted Redis does not answer with its password"
[[ -z $refusals ]] || fail "the restarted Redis refused the registry's calls: $refusals"
dj_redis_refuses_anonymous "$redis_port" || fail "the restarted Redis answers without the password"
dj_log "ok: Redis killed, started again by run.sh; the registry (same pid) went on serving"

# --- 3. Prometheus dies ---------------------------------------------------------------------
prometheus_pid=$(listener_pid "$prometheus_port")
[[ -n $prometheus_pid ]] || fail "nothing listens on Prometheus' port $prometheus_port"
kill -KILL "$prometheus_pid"
await_restart prometheus "$prometheus_port" "$prometheus_pid"
health || fail "the registry is not SERVING after Prometheus came back"
dj_log "ok: Prometheus killed and started again"

# --- 4. stop --------------------------------------------------------------------------------
kill -TERM "$run_pid"
status=0
wait "$run_pid" || status=$?
run_pid=''
((status == 0)) || fail "run.sh exited with $status on SIGTERM"
for port in "$grpc_port" "$metrics_port" "$pg_port" "$redis_port" "$prometheus_port"; do
  ! dj_port_in_use "$port" || fail "port $port still taken after run.sh stopped"
done
dj_log "ok: SIGTERM stopped everything; run restart test passed"
