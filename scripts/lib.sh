# shellcheck shell=bash
# Shared shell functions for scripts/run.sh, scripts/test.sh (and later bench scripts).
# Source it from bash: `source "$(dirname "$0")/lib.sh"`. Every server is bound to 127.0.0.1 and
# stopped by its PID; nothing here touches the system-wide PostgreSQL or Redis services.

DJ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# PostgreSQL refuses to run as root; scripts/deps.sh creates this unprivileged user.
DJ_SERVER_USER=dangjian

dj_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
dj_die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Runs a command as $DJ_SERVER_USER when we are root, else as ourselves.
dj_as_server_user() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$DJ_SERVER_USER" -- "$@"
  else
    "$@"
  fi
}

# Creates folder $1 (and parents) owned by the server user, so PostgreSQL can write there.
dj_server_dir() {
  mkdir -p "$1"
  if [[ $(id -u) -eq 0 ]]; then
    id "$DJ_SERVER_USER" >/dev/null 2>&1 ||
      dj_die "user $DJ_SERVER_USER is missing: run scripts/deps.sh as root first"
    chown "$DJ_SERVER_USER:" "$1"
    # Every parent must be searchable by the server user (/root, for one, is 0700 on Debian).
    dj_as_server_user test -w "$1" ||
      dj_die "user $DJ_SERVER_USER cannot reach $1 (a parent folder is not searchable by others);" \
        "put the repository or DJ_RUN_DIR somewhere it can reach, e.g. under /srv or /tmp"
  fi
}

# --- ports ----------------------------------------------------------------------------------

# True if something accepts TCP connections on 127.0.0.1:$1 (this also sees 0.0.0.0 listeners).
# dj_tail_logs DIR LINES: the last LINES lines of every non-empty DIR/*.log on stderr, to show
# why a run failed.
dj_tail_logs() {
  local f
  for f in "$1"/*.log; do
    [[ -s $f ]] || continue
    echo "---- last lines of ${f##*/} ----" >&2
    tail -n "$2" "$f" >&2
  done
}

dj_port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Refuses, naming the owner's variable, if port $2 (for $1, overridable by $3) is taken.
dj_require_free_port() {
  local what=$1 port=$2 var=$3
  if ! [[ $port =~ ^[0-9]+$ ]] || ((port == 0 || port > 65535)); then
    dj_die "$var=$port is not a port"
  fi
  if dj_port_in_use "$port"; then
    dj_die "port $port for $what is already taken on 127.0.0.1; stop whatever listens there" \
      "(ss -ltnp 'sport = :$port') or choose another port with $var=..."
  fi
}

# Sets variable $1 to a port nothing listens on, from 20000-32767: below Linux's ephemeral range,
# so it does not collide with ports the kernel hands out to outgoing connections or to port-0
# binds (which the test harness uses), nor with a port this shell picked before. Another process
# may still take it first; starts check for that.
DJ_PICKED_PORTS=' '
dj_pick_free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 12768))
    if [[ $DJ_PICKED_PORTS != *" $port "* ]] && ! dj_port_in_use "$port"; then
      DJ_PICKED_PORTS+="$port "
      printf -v "$1" '%s' "$port"
      return 0
    fi
  done
  dj_die "found no free port in 20000-32767"
}

# Waits until 127.0.0.1:$1 accepts connections, for at most $2 seconds. If PID $3 is given and
# exits first, fails at once (the process could not start: see its log).
dj_wait_for_port() {
  local port=$1 timeout=$2 pid=${3:-}
  local deadline=$((SECONDS + timeout))
  until dj_port_in_use "$port"; do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# --- processes ------------------------------------------------------------------------------

# True while PID $1 runs (a zombie, exited but not yet reaped, does not count).
dj_pid_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }  # the state follows the command name, which is in parentheses
  [[ ${stat:0:1} != Z ]]
}

# Sends SIGTERM to PID $1 and waits up to $2 seconds (default 15) for it to exit, then SIGKILLs
# it. Returns the process's exit status when it is a child of this shell (else 0).
dj_stop_pid() {
  local pid=$1 timeout=${2:-15}
  [[ -n $pid ]] || return 0
  if dj_pid_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while dj_pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if dj_pid_alive "$pid"; then
      dj_log "pid $pid did not stop within ${timeout}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null
}

# --- PostgreSQL -----------------------------------------------------------------------------

# The newest installed PostgreSQL server binaries (Debian keeps them off PATH).
dj_pg_bin() {
  local dir
  dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  [[ -x $dir/pg_ctl ]] || dj_die "PostgreSQL server binaries not found: run scripts/deps.sh"
  echo "$dir"
}

# Creates a cluster in $1 unless one is there: superuser postgres, trust authentication (it only
# ever listens on 127.0.0.1), UTF-8.
dj_pg_init() {
  local data=$1
  [[ -f $data/PG_VERSION ]] && return 0
  dj_server_dir "$data"
  dj_as_server_user "$(dj_pg_bin)/initdb" -D "$data" -A trust -U postgres -E UTF8 \
    --locale=C.UTF-8 >"$data.initdb.log" 2>&1 ||
    dj_die "initdb failed; see $data.initdb.log"
}

# Starts the cluster in $1 on 127.0.0.1:$2, logging to $3; extra server settings may follow as
# "-c name=value" words. Only TCP: no Unix socket, so a long folder path cannot break it. Runs in
# a session of its own, so Ctrl-C in the terminal reaches only the script, which stops it in order.
dj_pg_start() {
  local data=$1 port=$2 log=$3
  shift 3
  local as_user=()
  if [[ $(id -u) -eq 0 ]]; then
    as_user=(runuser -u "$DJ_SERVER_USER" --)
    touch "$log"
    chown "$DJ_SERVER_USER:" "$log"
  fi
  setsid --wait "${as_user[@]}" "$(dj_pg_bin)/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' $*" start \
    >/dev/null || dj_die "PostgreSQL did not start on port $port; see $log"
}

# Stops the cluster in $1 if it runs: fast mode (rolls back open transactions, then a clean
# shutdown checkpoint), waiting for it.
dj_pg_stop() {
  local data=$1
  [[ -f $data/postmaster.pid ]] || return 0
  dj_as_server_user "$(dj_pg_bin)/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

# Runs SQL $2 against database postgres on 127.0.0.1:$1; prints the unaligned result.
dj_psql() {
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -tAc "$2"
}

# Creates database $2 on 127.0.0.1:$1 unless it exists.
dj_pg_create_db() {
  local port=$1 db=$2
  [[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || dj_die "bad database name $db"
  if [[ -z $(dj_psql "$port" "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
    dj_psql "$port" "CREATE DATABASE $db" >/dev/null
  fi
}

# --- Redis ----------------------------------------------------------------------------------

# dj_secret_file FILE: makes FILE (mode 0600) holding 32 random bytes in hex, from openssl rand,
# unless it exists; a secret once made is kept (whoever holds it goes on working).
dj_secret_file() {
  [[ -s $1 ]] && return 0
  (
    umask 077
    openssl rand -hex 32 >"$1.tmp"
  ) || dj_die "openssl rand failed"
  mv "$1.tmp" "$1"
}

# dj_shows_secret OUTPUT SECRET_FILE...: true, printing the SECRET_FILE's name, if the file OUTPUT
# (a command's output, a log) holds the secret of one of them: a whole line, or the part after
# the last ':' ("kid:hs256:SECRET" key lines); '#' comment lines are not secrets. For tests.
dj_shows_secret() {
  local out=$1 secret_file line
  shift
  for secret_file in "$@"; do
    while IFS= read -r line; do
      [[ -z $line || $line == \#* ]] && continue
      if grep -qF -- "${line##*:}" "$out"; then
        echo "$secret_file"
        return 0
      fi
    done <"$secret_file"
  done
  return 1
}

# dj_redis_spawn PORT DIR [PASSWORD_FILE]: starts redis-server on 127.0.0.1:PORT with working
# folder DIR in the background, as a cache only (no snapshots, no append-only file), and sets
# DJ_REDIS_PID. With PASSWORD_FILE, clients must AUTH with the password on its first line: it goes
# into DIR/redis.conf (mode 0600), which redis-server reads, so it is on no command line. Returns
# non-zero (and stops what it started) if Redis does not answer within 10 s.
dj_redis_spawn() {
  local port=$1 dir=$2 password_file=${3:-}
  local config=()
  mkdir -p "$dir"
  if [[ -n $password_file ]]; then
    local password
    password=$(head -n 1 "$password_file") || dj_die "cannot read $password_file"
    # One word of printable characters: it is written into Redis' config as it is.
    [[ $password =~ ^[A-Za-z0-9._~+/=-]+$ ]] ||
      dj_die "$password_file: the password must be one word of letters, digits and ._~+/=-"
    (
      umask 077
      printf '# Made by scripts/lib.sh from %s.\nrequirepass %s\n' "$password_file" "$password" \
        >"$dir/redis.conf"
    )
    config=("$dir/redis.conf")
  fi
  setsid redis-server "${config[@]}" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$dir" --logfile "$dir/redis.log" &
  DJ_REDIS_PID=$!
  dj_wait_for_port "$port" 10 "$DJ_REDIS_PID" && return 0
  dj_stop_pid "$DJ_REDIS_PID" 5 || true
  return 1
}

# dj_redis_auth_refusals PORT PASSWORD_FILE: prints how many calls Redis on 127.0.0.1:PORT
# refused for want of the right password (its errorstat_NOAUTH and errorstat_WRONGPASS lines;
# nothing when there were none). Fails if Redis does not answer us with the password. redis-cli
# takes the password from REDISCLI_AUTH, not its command line.
dj_redis_auth_refusals() {
  local stats
  stats=$(REDISCLI_AUTH=$(head -n 1 "$2") redis-cli --no-auth-warning -h 127.0.0.1 -p "$1" \
    info errorstats 2>&1) && [[ $stats == *Errorstats* ]] || {
    printf '%s\n' "$stats" >&2
    return 1
  }
  grep -E '^errorstat_(NOAUTH|WRONGPASS)' <<<"$stats" || true
}

# dj_redis_refuses_anonymous PORT: true if Redis on 127.0.0.1:PORT refuses a client that gives no
# password (redis-cli exits 0 on a refusal: the reply tells). The refusal counts as a NOAUTH.
dj_redis_refuses_anonymous() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>&1) == *NOAUTH* ]]; }

# dj_redis_start PORT DIR [PASSWORD_FILE]: dj_redis_spawn, or fails the script.
dj_redis_start() {
  dj_redis_spawn "$@" || dj_die "redis-server did not start on port $1; see $2/redis.log"
}

# --- building -------------------------------------------------------------------------------

# Configures build folder $1 (Ninja, RelWithDebInfo; the remaining arguments up to `--` are
# extra cmake arguments) and builds the targets after `--` (all when none are given).
# DJ_JOBS sets the build's parallelism (ninja's default otherwise).
dj_build() {
  local dir=$1
  shift
  local cmake_args=() targets=()
  while (($#)); do
    if [[ $1 == -- ]]; then
      shift
      targets=("$@")
      break
    fi
    cmake_args+=("$1")
    shift
  done
  # One compiler cache for every clone and build folder of the suite (the build enables ccache).
  export CCACHE_DIR=${CCACHE_DIR:-$HOME/.ccache}
  mkdir -p "$dir"
  cmake -S "$DJ_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cmake_args[@]}" \
    >"$dir/configure.log" 2>&1 || {
    cat "$dir/configure.log" >&2
    dj_die "cmake configure of $dir failed"
  }
  ninja -C "$dir" ${DJ_JOBS:+-j "$DJ_JOBS"} "${targets[@]}"
}

# --- dj-registry on free ports, for tests ---------------------------------------------------

# dj_test_registry_start WORK BUILD_DIR [dj-registry flags...]: PostgreSQL (throwaway data: no
# fsync), Redis and BUILD_DIR's dj-registry on free 127.0.0.1 ports, data in folder WORK, logs in
# WORK/logs, and a fresh HS256 key (kid "local") in WORK/jwt_keys; returns once the registry is
# SERVING (dies after 30 s). Sets DJ_TEST_GRPC_PORT, DJ_TEST_METRICS_PORT, DJ_TEST_PG_PORT and
# DJ_TEST_REDIS_PORT. The caller's EXIT trap calls dj_test_registry_stop, which stops by PID
# whatever of these was started.
DJ_TEST_REGISTRY_PID='' DJ_TEST_REDIS_PID='' DJ_TEST_PG_DATA=''
dj_test_registry_start() {
  local work=$1 build_dir=$2
  shift 2
  local logs=$work/logs
  mkdir -p "$logs"
  dj_pick_free_port DJ_TEST_GRPC_PORT
  dj_pick_free_port DJ_TEST_METRICS_PORT
  dj_pick_free_port DJ_TEST_PG_PORT
  dj_pick_free_port DJ_TEST_REDIS_PORT

  dj_log "PostgreSQL on 127.0.0.1:$DJ_TEST_PG_PORT"
  DJ_TEST_PG_DATA=$work/pg
  dj_pg_init "$DJ_TEST_PG_DATA"
  dj_pg_start "$DJ_TEST_PG_DATA" "$DJ_TEST_PG_PORT" "$logs/postgresql.log" -c fsync=off
  dj_pg_create_db "$DJ_TEST_PG_PORT" dj_registry

  dj_log "Redis on 127.0.0.1:$DJ_TEST_REDIS_PORT"
  dj_redis_start "$DJ_TEST_REDIS_PORT" "$work/redis"
  DJ_TEST_REDIS_PID=$DJ_REDIS_PID

  (
    umask 077
    printf 'local:hs256:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
      >"$work/jwt_keys"
  )
  dj_log "dj-registry on 127.0.0.1:$DJ_TEST_GRPC_PORT (metrics on $DJ_TEST_METRICS_PORT)"
  setsid "$build_dir/services/registry/dj-registry" \
    --grpc_address="127.0.0.1:$DJ_TEST_GRPC_PORT" \
    --metrics_address="127.0.0.1:$DJ_TEST_METRICS_PORT" \
    --pg_conninfo="host=127.0.0.1 port=$DJ_TEST_PG_PORT dbname=dj_registry user=postgres" \
    --redis_address="127.0.0.1:$DJ_TEST_REDIS_PORT" \
    --jwt_keys_file="$work/jwt_keys" "$@" >>"$logs/registry.log" 2>&1 &
  DJ_TEST_REGISTRY_PID=$!
  local deadline=$((SECONDS + 30))
  until "$build_dir/tools/dj-health" --target "127.0.0.1:$DJ_TEST_GRPC_PORT" \
    --service dangjian.registry.v1.OrgRegistry --timeout 2s >/dev/null 2>"$logs/health.log"; do
    dj_pid_alive "$DJ_TEST_REGISTRY_PID" || dj_die "dj-registry exited during start-up"
    ((SECONDS < deadline)) || dj_die "dj-registry not SERVING after 30s: $(cat "$logs/health.log")"
    sleep 0.2
  done
}

dj_test_registry_stop() {
  [[ -z $DJ_TEST_REGISTRY_PID ]] || dj_stop_pid "$DJ_TEST_REGISTRY_PID" 15 || true
  [[ -z $DJ_TEST_REDIS_PID ]] || dj_stop_pid "$DJ_TEST_REDIS_PID" 5 || true
  [[ -z $DJ_TEST_PG_DATA ]] || dj_pg_stop "$DJ_TEST_PG_DATA"
  DJ_TEST_REGISTRY_PID='' DJ_TEST_REDIS_PID='' DJ_TEST_PG_DATA=''
}
