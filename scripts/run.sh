#!/usr/bin/env bash
# Runs the suite on this machine: PostgreSQL, Redis, every service built so far (today
# dj-registry), Prometheus scraping them, and the demo org tree (deploy/demo/orgs.csv) loaded.
# Data lives in .run/ (ignored by git) and persists between runs. Should Redis or Prometheus exit,
# it is started again (the registry serves from PostgreSQL meanwhile); should PostgreSQL or the
# registry exit, everything stops. Ctrl-C stops everything.
#
#   bash scripts/run.sh [--insecure-no-auth]      as root on Debian 12: installs what is missing,
#                                                 builds build/, starts everything
#   bash scripts/run.sh --smoke                   the same on free ports in a temporary folder,
#                                                 checks it all works, stops, exits 0 or 1
# Options: --no-build (use binaries already in the build folder), --build-dir DIR (default build/).
# Ports (127.0.0.1 only), overridable by environment:
#   DJ_GRPC_PORT=50051 DJ_METRICS_PORT=9464 DJ_PG_PORT=55432 DJ_REDIS_PORT=56379
#   DJ_PROMETHEUS_PORT=9090; DJ_RUN_DIR moves the data folder (default .run/).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Prints the comment block at the top of this file.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }

smoke=false insecure=false build=true build_dir=$DJ_ROOT/build
while (($#)); do
  case $1 in
    --smoke) smoke=true ;;
    --insecure-no-auth) insecure=true ;;
    --no-build) build=false ;;
    --build-dir)
      (($# >= 2)) || dj_die "--build-dir needs a folder"
      build_dir=$(realpath -m "$2")
      shift
      ;;
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

# Checked by --smoke: the demo tree's size, and how long Prometheus may take to report the
# registry's target as up (it scrapes every second in smoke mode).
readonly demo_csv=$DJ_ROOT/deploy/demo/orgs.csv
readonly registry_service=dangjian.registry.v1.OrgRegistry
readonly prometheus_up_timeout=45
readonly start_timeout=60

# --- build ----------------------------------------------------------------------------------
tools=(services/registry/dj-registry tools/dj-import tools/dj-token tools/dj-health)
if $build; then
  bash "$DJ_ROOT/scripts/deps.sh"
  dj_log "building ${tools[*]##*/} in $build_dir"
  dj_build "$build_dir" -- "${tools[@]##*/}"
fi
for t in "${tools[@]}"; do
  [[ -x $build_dir/$t ]] || dj_die "$build_dir/$t is missing: build it first (drop --no-build)"
done
registry_bin=$build_dir/services/registry/dj-registry
import_bin=$build_dir/tools/dj-import
token_bin=$build_dir/tools/dj-token
health_bin=$build_dir/tools/dj-health
for cmd in redis-server prometheus promtool psql openssl curl python3 setsid; do
  command -v "$cmd" >/dev/null || dj_die "$cmd is missing: run scripts/deps.sh as root"
done

# --- folder and ports -----------------------------------------------------------------------
if $smoke; then
  work=$(mktemp -d /tmp/dj-smoke.XXXXXX)
  dj_pick_free_port grpc_port
  dj_pick_free_port metrics_port
  dj_pick_free_port pg_port
  dj_pick_free_port redis_port
  dj_pick_free_port prometheus_port
else
  work=$(realpath -m "${DJ_RUN_DIR:-$DJ_ROOT/.run}")
  grpc_port=${DJ_GRPC_PORT:-50051}
  metrics_port=${DJ_METRICS_PORT:-9464}
  pg_port=${DJ_PG_PORT:-55432}
  redis_port=${DJ_REDIS_PORT:-56379}
  prometheus_port=${DJ_PROMETHEUS_PORT:-9090}
  if [[ -f $work/pg/postmaster.pid ]] && dj_pid_alive "$(head -n 1 "$work/pg/postmaster.pid")"; then
    dj_die "a PostgreSQL from an earlier run still uses $work/pg; stop it with" \
      "runuser -u $DJ_SERVER_USER -- $(dj_pg_bin)/pg_ctl -D $work/pg -m fast stop"
  fi
  dj_require_free_port "registry gRPC" "$grpc_port" DJ_GRPC_PORT
  dj_require_free_port "registry metrics" "$metrics_port" DJ_METRICS_PORT
  dj_require_free_port PostgreSQL "$pg_port" DJ_PG_PORT
  dj_require_free_port Redis "$redis_port" DJ_REDIS_PORT
  dj_require_free_port Prometheus "$prometheus_port" DJ_PROMETHEUS_PORT
  ports=$(printf '%s\n' "$grpc_port" "$metrics_port" "$pg_port" "$redis_port" "$prometheus_port")
  [[ $(sort -u <<<"$ports" | wc -l) -eq 5 ]] || dj_die "two DJ_*_PORT variables name the same port"
fi
mkdir -p "$work/logs"
# The server user must reach pg/ inside; the secrets inside are 0600 files of their own.
chmod 0755 "$work"
logs=$work/logs

# --- stopping -------------------------------------------------------------------------------
registry_pid='' redis_pid='' prometheus_pid='' pg_started=false

# Stops everything that was started, newest first, each by its PID (PostgreSQL by pg_ctl).
# Returns non-zero if the registry did not exit cleanly: a graceful shutdown is part of the deal.
stop_all() {
  local rc=0 status=0
  if [[ -n $registry_pid ]]; then
    dj_stop_pid "$registry_pid" 30 || status=$?
    registry_pid=''
    if ((status != 0)); then
      echo "error: dj-registry exited with status $status; see $logs/registry.log" >&2
      rc=1
    fi
  fi
  [[ -n $prometheus_pid ]] && { dj_stop_pid "$prometheus_pid" 15 || true; }
  prometheus_pid=''
  [[ -n $redis_pid ]] && { dj_stop_pid "$redis_pid" 10 || true; }
  redis_pid=''
  if $pg_started; then
    dj_pg_stop "$work/pg"
    pg_started=false
  fi
  return "$rc"
}

# shellcheck disable=SC2317  # called by the EXIT trap
on_exit() {
  local rc=$?
  # A second Ctrl-C must not cut the orderly stop short (every step below has a time limit).
  trap '' INT TERM
  trap - EXIT
  stop_all || rc=1
  if $smoke; then
    if ((rc != 0)); then
      dj_tail_logs "$logs" 25
    fi
    rm -rf "$work"
  fi
  exit "$rc"
}
trap on_exit EXIT
# Ctrl-C and SIGTERM end a run normally (exit 0 after the orderly stop in on_exit); they
# interrupt a smoke test (exit 130).
trap 'echo >&2; dj_log "stopping"; if $smoke; then exit 130; else exit 0; fi' INT TERM

# --- PostgreSQL and Redis -------------------------------------------------------------------
dj_log "PostgreSQL on 127.0.0.1:$pg_port (data in $work/pg)"
dj_pg_init "$work/pg"
# Set first: should the start time out, the stop still runs (a no-op when nothing started).
pg_started=true
# fsync stays on (the default): this data is meant to survive a crash of the machine.
dj_pg_start "$work/pg" "$pg_port" "$logs/postgresql.log"
dj_pg_create_db "$pg_port" dj_registry
pg_pid=$(head -n 1 "$work/pg/postmaster.pid")

# Redis asks clients for a password, made once (mode 0600) and handed to the registry as a file.
redis_password_file=$work/redis.password
dj_secret_file "$redis_password_file"
dj_log "Redis on 127.0.0.1:$redis_port (password in $redis_password_file)"
dj_redis_start "$redis_port" "$work/redis" "$redis_password_file"
redis_pid=$DJ_REDIS_PID

# --- keys and the registry ------------------------------------------------------------------
keys_file=$work/jwt_keys
if [[ ! -s $keys_file ]]; then
  (
    umask 077
    {
      printf '# HS256 keys for local tokens, one "kid:hs256:SECRET" per line (made by run.sh).\n'
      printf 'local:hs256:%s\n' "$(openssl rand -hex 32)"
    } >"$keys_file.tmp"
  )
  mv "$keys_file.tmp" "$keys_file"
fi

registry_flags=(
  --grpc_address="127.0.0.1:$grpc_port"
  --metrics_address="127.0.0.1:$metrics_port"
  --pg_conninfo="host=127.0.0.1 port=$pg_port dbname=dj_registry user=postgres"
  --redis_address="127.0.0.1:$redis_port"
  --redis_password_file="$redis_password_file"
  --jwt_keys_file="$keys_file"
  # On Ctrl-C: NOT_SERVING, still serving for a moment, then the drain (as Kubernetes' preStop).
  --shutdown_delay=1s
)
if $insecure; then
  registry_flags+=(--insecure_disable_auth=true)
  cat >&2 <<'EOF'

  ###########################################################################
  ##  WARNING: --insecure-no-auth: the services accept calls WITHOUT any   ##
  ##  token; anyone who can reach 127.0.0.1 can read and change the data.  ##
  ##  For local debugging only.                                            ##
  ###########################################################################

EOF
fi
dj_log "dj-registry on 127.0.0.1:$grpc_port (metrics on $metrics_port)"
setsid "$registry_bin" "${registry_flags[@]}" >>"$logs/registry.log" 2>&1 &
registry_pid=$!

# Health: SERVING once migrations are applied and PostgreSQL answers. Each probe waits up to 2 s
# for the connection; the loop gives up early if the process has exited.
deadline=$((SECONDS + start_timeout))
until "$health_bin" --target "127.0.0.1:$grpc_port" --service "$registry_service" --timeout 2s \
  >/dev/null 2>"$logs/health.log"; do
  dj_pid_alive "$registry_pid" || dj_die "dj-registry exited during start-up; see $logs/registry.log"
  ((SECONDS < deadline)) || dj_die "dj-registry not SERVING after ${start_timeout}s:" \
    "$(cat "$logs/health.log")"
  sleep 0.2
done
"$health_bin" --target "127.0.0.1:$grpc_port" --timeout 2s >/dev/null ||
  dj_die "dj-registry: the server as a whole is not SERVING"

# Straight into a 0600 file: the token is never printed (a terminal's scrollback or a nohup log
# would keep an 8-hour city-wide admin token).
(
  umask 077
  "$token_bin" --keys_file "$keys_file" --kid local --subject operator --roles admin \
    --org_scope '*' --ttl 8h >"$work/operator.token.tmp"
) || dj_die "dj-token could not mint the operator token"
mv "$work/operator.token.tmp" "$work/operator.token"

# --- the demo tree --------------------------------------------------------------------------
demo_rows=$(($(wc -l <"$demo_csv") - 1))
# Imports the demo tree; prints dj-import's summary line ("received N, created N, unchanged N,
# failed N in ..."). Re-importing rows that are already registered changes nothing, so this runs
# on every start.
import_demo() {
  "$import_bin" --target "127.0.0.1:$grpc_port" --token_file "$work/operator.token" \
    --csv "$demo_csv" >"$logs/import.log" 2>&1 ||
    dj_die "dj-import failed:" $'\n' "$(head -n 12 "$logs/import.log")"
  grep -m 1 '^received' "$logs/import.log" || dj_die "no summary from dj-import; see $logs/import.log"
}
dj_log "importing the demo tree ($demo_rows orgs)"
import_summary=$(import_demo)
dj_log "dj-import: $import_summary"

# --- Prometheus -----------------------------------------------------------------------------
# The copy differs from deploy/prometheus/prometheus.yml only in the ports, the rule files'
# paths (made absolute: Prometheus reads them relative to the config file, and the rules stay in
# the repository) and, for --smoke, a 1 s scrape interval so the check does not wait long.
prometheus_config=$work/prometheus.yml
# shellcheck disable=SC2001  # in bash 5.2's ${x//} replacement & means the match; not in sed's
rules_dir=$(sed 's/[\\|&]/\\&/g' <<<"$DJ_ROOT/deploy/prometheus/rules")
sed -e "s/127\.0\.0\.1:9464/127.0.0.1:$metrics_port/g" \
  -e "s/127\.0\.0\.1:9090/127.0.0.1:$prometheus_port/g" \
  -e "s|^\(  - \)rules/|\1$rules_dir/|" \
  "$DJ_ROOT/deploy/prometheus/prometheus.yml" >"$prometheus_config"
if $smoke; then
  sed -i -e 's/^\(  scrape_interval:\).*/\1 1s/' -e 's/^\(  scrape_timeout:\).*/\1 1s/' "$prometheus_config"
fi
promtool check config "$prometheus_config" >"$logs/promtool.log" 2>&1 ||
  dj_die "invalid Prometheus config; see $logs/promtool.log"
mkdir -p "$work/prometheus"
# Starts Prometheus in the background and sets prometheus_pid; non-zero if it does not listen
# within 30 s (then it is stopped).
spawn_prometheus() {
  setsid prometheus --config.file="$prometheus_config" --storage.tsdb.path="$work/prometheus" \
    --web.listen-address="127.0.0.1:$prometheus_port" >>"$logs/prometheus.log" 2>&1 &
  prometheus_pid=$!
  dj_wait_for_port "$prometheus_port" 30 "$prometheus_pid" && return 0
  dj_stop_pid "$prometheus_pid" 5 || true
  prometheus_pid=''
  return 1
}
dj_log "Prometheus on 127.0.0.1:$prometheus_port"
spawn_prometheus || dj_die "Prometheus did not start; see $logs/prometheus.log"

# --- --smoke: check, then stop --------------------------------------------------------------
# Prints the number of rows dj-import's summary reports as $1 (e.g. "created").
count_of() { grep -oE "\b$1[=: ]+[0-9]+" <<<"$2" | grep -oE '[0-9]+$' | head -n 1; }

if $smoke; then
  created=$(count_of created "$import_summary") unchanged=$(count_of unchanged "$import_summary")
  failed_rows=$(count_of failed "$import_summary")
  [[ -n $created && -n $failed_rows ]] ||
    dj_die "cannot read dj-import's summary: $import_summary"
  ((failed_rows == 0 && created + ${unchanged:-0} == demo_rows)) ||
    dj_die "demo import: expected $demo_rows rows created or unchanged and 0 failed: $import_summary"
  # A second import must find every row already there: what the next start of run.sh does.
  again=$(import_demo)
  [[ $(count_of unchanged "$again") == "$demo_rows" && $(count_of failed "$again") == 0 ]] ||
    dj_die "re-importing the demo tree changed something: $again"
  dj_log "ok: demo tree imported ($import_summary), re-import unchanged"

  curl -fsS --max-time 5 "http://127.0.0.1:$metrics_port/metrics" >"$work/metrics.txt" ||
    dj_die "/metrics on port $metrics_port does not answer"
  grep -q '^grpc_server_started_total' "$work/metrics.txt" ||
    dj_die "/metrics has no grpc_server_started_total after calls"
  dj_log "ok: /metrics has grpc_server_started_total"

  # Redis: the registry's calls carried the right password (Redis counts each refusal by its
  # error code), and a client without the password is refused.
  refusals=$(dj_redis_auth_refusals "$redis_port" "$redis_password_file") ||
    dj_die "Redis does not answer with its password"
  [[ -z $refusals ]] || dj_die "Redis refused the registry's calls for want of the password" \
    "(is --redis_password_file passed on?): $refusals"
  dj_redis_refuses_anonymous "$redis_port" || dj_die "Redis answers a client that has no password"
  dj_log "ok: Redis asks for its password, and the registry gives it"

  deadline=$((SECONDS + prometheus_up_timeout))
  until curl -fsS --max-time 5 "http://127.0.0.1:$prometheus_port/api/v1/targets?state=active" \
    2>/dev/null | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
sys.exit(0 if any(t["labels"].get("job") == "dj-registry" and t["health"] == "up"
                  for t in targets) else 1)'; do
    ((SECONDS < deadline)) ||
      dj_die "Prometheus does not report the dj-registry target up after ${prometheus_up_timeout}s"
    sleep 0.5
  done
  dj_log "ok: Prometheus scrapes dj-registry (target up)"

  stop_all || dj_die "the suite did not stop cleanly"
  dj_log "ok: everything stopped; smoke test passed"
  exit 0
fi

# --- run until Ctrl-C -----------------------------------------------------------------------
rel() { realpath --relative-to="$PWD" "$1"; }
auth_note=''
$insecure && auth_note='   AUTH DISABLED (--insecure-no-auth): no token needed'
cat <<EOF

dangjian is running. Data: $(rel "$work")/   Logs: $(rel "$logs")/
  registry gRPC     127.0.0.1:$grpc_port   (${registry_service}; grpc.health.v1, reflection)$auth_note
  registry metrics  http://127.0.0.1:$metrics_port/metrics
  Prometheus UI     http://127.0.0.1:$prometheus_port   (scrape targets: /targets)
  PostgreSQL        psql -h 127.0.0.1 -p $pg_port -U postgres dj_registry
  Redis             REDISCLI_AUTH="\$(cat $(rel "$redis_password_file"))" redis-cli -p $redis_port
Demo tree ($(rel "$demo_csv")): $import_summary
Operator token (roles admin, whole city, valid 8 h): in $(rel "$work")/operator.token

Try:
  $(rel "$health_bin") --target 127.0.0.1:$grpc_port --service $registry_service
  $(rel "$import_bin") --target 127.0.0.1:$grpc_port --token_file $(rel "$work")/operator.token --csv $(rel "$demo_csv")
  curl -s http://127.0.0.1:$metrics_port/metrics | grep ^grpc_server_handled_total

Ctrl-C stops everything.
EOF

# --- supervise ------------------------------------------------------------------------------
# Redis is only a cache and Prometheus only watches: when one exits, it is started again and the
# registry goes on serving (from PostgreSQL until Redis is back). One that fails to start, or
# exits within 10 s of its start, is tried again after 1, 2, 4 ... up to 30 s. PostgreSQL or the
# registry exiting stops everything (exit 1). Ctrl-C / SIGTERM runs the trap above instead.
declare -A started_at=([redis]=$SECONDS [prometheus]=$SECONDS) retry_at=([redis]=0 [prometheus]=0)
declare -A backoff=([redis]=1 [prometheus]=1)

# later NAME: the next start of NAME waits for its back-off, which then doubles.
later() {
  retry_at[$1]=$((SECONDS + backoff[$1]))
  dj_log "$1: next start in ${backoff[$1]}s"
  backoff[$1]=$((backoff[$1] * 2 > 30 ? 30 : backoff[$1] * 2))
}

# restart NAME: starts redis or prometheus again once its back-off has passed.
restart() {
  local name=$1
  ((SECONDS >= retry_at[$name])) || return 0
  started_at[$name]=$SECONDS
  if [[ $name == redis ]]; then
    dj_redis_spawn "$redis_port" "$work/redis" "$redis_password_file" && redis_pid=$DJ_REDIS_PID
  else
    spawn_prometheus
  fi || {
    dj_log "$name did not start again; see $logs/"
    later "$name"
    return 0
  }
  local pid_var=${name}_pid
  dj_log "$name started again (pid ${!pid_var})"
}

while :; do
  if ! dj_pid_alive "$registry_pid"; then
    wait "$registry_pid" 2>/dev/null && status=0 || status=$?
    registry_pid=''
    echo "error: dj-registry exited on its own (status $status); stopping everything;" \
      "see $logs/registry.log" >&2
    exit 1
  fi
  if ! dj_pid_alive "$pg_pid"; then
    echo "error: PostgreSQL (pid $pg_pid) exited on its own; stopping everything;" \
      "see $logs/postgresql.log" >&2
    exit 1
  fi
  for name in redis prometheus; do
    pid_var=${name}_pid
    if [[ -n ${!pid_var} ]] && ! dj_pid_alive "${!pid_var}"; then
      wait "${!pid_var}" 2>/dev/null && status=0 || status=$?
      dj_log "$name (pid ${!pid_var}) exited with status $status; starting it again" \
        "(the registry goes on serving; see $logs/)"
      printf -v "$pid_var" '%s' ''
      if ((SECONDS - started_at[$name] < 10)); then
        later "$name"
      else
        backoff[$name]=1
      fi
    fi
    [[ -n ${!pid_var} ]] || restart "$name"
  done
  # A background sleep: `wait` returns at once when a signal's trap is due.
  sleep 0.5 &
  wait $! 2>/dev/null || true
done
