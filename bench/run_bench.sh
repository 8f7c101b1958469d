#!/usr/bin/env bash
# Benchmarks the registry against bare gRPC echo baselines, in one run:
#   build -> PostgreSQL, Redis, dj-registry and dj-echo-server on loopback ports (fresh data, a
#   fresh HS256 key) -> token (dj-token) -> import of the city tree (dj-import: rate and seconds)
#   -> alternating rounds, each subject right after its baseline:
#        echo with a 32-byte reply       | GetOrg (cache hits)
#        echo with a reply as large as the ListOrgs page | ListOrgs street page (from Redis)
#                                        | ListOrgs of random roots (from PostgreSQL)
#        echo 32 bytes, one call at a time | ListOrgs branch page, one call at a time
#   -> the province: a second database, a tree of --province orgs imported through ImportOrgs,
#      then every org listed with page_size 1000 at once (no waiting for autovacuum)
#   -> a table of medians (throughput, and each round's ratio to its own baseline), where each
#      answer was served from (memory, Redis, PostgreSQL: the registry's own /metrics), the
#      client's CPU, and PASS/MISS against the targets.
# The targets are a report, not an assertion: the exit status is 0 unless something failed to
# run (a build, a server, the import, or a load run with more than 0.1% failed calls).
# Every process started here is stopped by PID on exit, also on failure or Ctrl-C.
#
# Usage: bench/run_bench.sh [--smoke] [--build-dir DIR] [--no-build] [--orgs N] [--seed S]
#          [--province N] [--rounds R] [--duration 3s] [--warmup 0.5s] [--concurrency N]
#          [--fsync on|off] [--registry-log-level info] [--keep]
#   --smoke     a tiny tree (~200 orgs, a 3,000-org province), one round of 1 s runs: proves the
#               script works (CI).
#   --seed S    seed of the generated trees (default 1); the load generator's id draws take a
#               seed from the clock, printed with each run (dj-loadgen --seed repeats one).
#   --province  orgs of the province tree (default 200000; 0 skips the province).
#   --keep      keep the work folder (logs, CSV, ids, raw results) instead of deleting it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build-bench"
BUILD=1
ORGS=20000
PROVINCE=200000
SEED=1
ROUNDS=3
DURATION=3s
WARMUP=0.5s
CONCURRENCY=64
FSYNC=on
REGISTRY_LOG_LEVEL=info
KEEP=0
SMOKE=0

usage() { sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --smoke) SMOKE=1; ORGS=200; PROVINCE=3000; ROUNDS=1; DURATION=1s; WARMUP=0.2s; CONCURRENCY=8 ;;
    --build-dir) BUILD_DIR="$(realpath -m "$2")"; shift ;;
    --no-build) BUILD=0 ;;
    --orgs) ORGS="$2"; shift ;;
    --province) PROVINCE="$2"; shift ;;
    --seed) SEED="$2"; shift ;;
    --rounds) ROUNDS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --concurrency) CONCURRENCY="$2"; shift ;;
    --fsync) FSYNC="$2"; shift ;;
    --registry-log-level) REGISTRY_LOG_LEVEL="$2"; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_bench: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ "$FSYNC" == on || "$FSYNC" == off ]] || { echo "run_bench: --fsync must be on or off" >&2; exit 2; }

PG_BIN=/usr/lib/postgresql/15/bin
PYTHON=/usr/bin/python3
SERVER_USER=dangjian
START_TIME=$SECONDS

log() { printf '[run_bench %3ds] %s\n' $((SECONDS - START_TIME)) "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# --- build -----------------------------------------------------------------------------------
BINARIES=(dj-registry dj-token dj-import dj-echo-server dj-loadgen)
if ((BUILD)); then
  log "building in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DDJ_BUILD_BENCH=ON >/dev/null ||
    die "cmake failed"
  ninja -C "$BUILD_DIR" -j2 "${BINARIES[@]}" >"$BUILD_DIR/run_bench_build.log" 2>&1 ||
    { tail -30 "$BUILD_DIR/run_bench_build.log" >&2; die "build failed (see $BUILD_DIR/run_bench_build.log)"; }
fi
find_binary() {
  local found
  found="$(find "$BUILD_DIR" -maxdepth 4 -type f -name "$1" -perm -u+x -print -quit 2>/dev/null)"
  [[ -n "$found" ]] || die "$1 not found under $BUILD_DIR (build it, or drop --no-build)"
  printf '%s' "$found"
}
REGISTRY_BIN="$(find_binary dj-registry)"
TOKEN_BIN="$(find_binary dj-token)"
IMPORT_BIN="$(find_binary dj-import)"
ECHO_BIN="$(find_binary dj-echo-server)"
LOADGEN_BIN="$(find_binary dj-loadgen)"
for tool in "$PG_BIN/initdb" "$PG_BIN/pg_ctl" /usr/bin/psql /usr/bin/redis-server /usr/bin/redis-cli \
  /usr/bin/openssl /usr/bin/curl "$PYTHON"; do
  [[ -x "$tool" ]] || die "$tool is missing (run scripts/deps.sh as root)"
done

# --- processes and cleanup -------------------------------------------------------------------
WORK="$(mktemp -d /tmp/dj-bench-XXXXXX)"
AS_SERVER_USER=()
if [[ $(id -u) -eq 0 ]]; then
  id "$SERVER_USER" >/dev/null 2>&1 || die "user $SERVER_USER is missing (run scripts/deps.sh as root)"
  AS_SERVER_USER=(/usr/sbin/runuser -u "$SERVER_USER" --)
  chown "$SERVER_USER": "$WORK"
fi
PGDATA="$WORK/pg"
PG_STARTED=0
PIDS=()      # processes we started, stopped in reverse order
PID_NAMES=()

stop_pid() {  # name pid: SIGTERM, wait up to 10 s, then SIGKILL
  local name="$1" pid="$2"
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PID_NAMES[i]}" "${PIDS[i]}"; done
  if ((PG_STARTED)); then
    "${AS_SERVER_USER[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      "${AS_SERVER_USER[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if ((KEEP)) || ((status != 0)); then
    log "work folder kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Polls a command until it succeeds or the deadline (seconds) passes.
poll() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# --- PostgreSQL --------------------------------------------------------------------------------
log "starting PostgreSQL 15 (fsync=$FSYNC) in $PGDATA"
"${AS_SERVER_USER[@]}" "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
  >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
PG_PORT=""
for _ in 1 2 3 4 5; do
  port="$(free_port)"
  if "${AS_SERVER_USER[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$WORK/pg.log" -w -t 60 \
    -o "-p $port -k $WORK -c listen_addresses=127.0.0.1 -c fsync=$FSYNC -c max_connections=100 -c shared_buffers=128MB" \
    start >/dev/null 2>&1; then
    PG_PORT=$port
    PG_STARTED=1
    break
  fi
done
[[ -n "$PG_PORT" ]] || { tail -20 "$WORK/pg.log" >&2; die "PostgreSQL did not start"; }
/usr/bin/psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
  -c "CREATE DATABASE dj_registry" || die "CREATE DATABASE failed"

# --- Redis ---------------------------------------------------------------------------------------
REDIS_PORT=""
for _ in 1 2 3 4 5; do
  port="$(free_port)"
  /usr/bin/redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  pid=$!
  if poll 10 /usr/bin/redis-cli -h 127.0.0.1 -p "$port" ping && kill -0 "$pid" 2>/dev/null; then
    PIDS+=("$pid"); PID_NAMES+=(redis-server); REDIS_PORT=$port
    break
  fi
  stop_pid redis-server "$pid"
done
[[ -n "$REDIS_PORT" ]] || die "redis-server did not start"
log "PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"

# --- key, registry, token ------------------------------------------------------------------------
umask 077
KEYS_FILE="$WORK/jwt_keys"
printf 'bench:hs256:%s\n' "$(/usr/bin/openssl rand -hex 32)" >"$KEYS_FILE"
umask 022

TOKEN_FILE="$WORK/token"
"$TOKEN_BIN" --keys_file="$KEYS_FILE" --kid=bench --subject=bench --roles=admin --org_scope='*' \
  --ttl=1h >"$TOKEN_FILE" || die "dj-token failed"

# Starts dj-registry on DATABASE (free ports for both listeners, retried if it cannot bind: it
# refuses SO_REUSEPORT); ready when ListOrgs answers through the full stack (auth, PostgreSQL).
# Sets REGISTRY_PID, TARGET and METRICS_PORT.
start_registry() {
  local database="$1" attempt port metrics_port pid deadline
  REGISTRY_PID=""
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    metrics_port="$(free_port)"
    "$REGISTRY_BIN" --grpc_address="127.0.0.1:$port" --metrics_address="127.0.0.1:$metrics_port" \
      --pg_conninfo="host=127.0.0.1 port=$PG_PORT dbname=$database user=postgres" \
      --redis_address="127.0.0.1:$REDIS_PORT" --jwt_keys_file="$KEYS_FILE" \
      --log_level="$REGISTRY_LOG_LEVEL" --shutdown_grace=2s >>"$WORK/registry.log" 2>&1 &
    pid=$!
    PIDS+=("$pid"); PID_NAMES+=(dj-registry)  # stopped on exit even if the script dies here
    deadline=$((SECONDS + 120))
    until "$LOADGEN_BIN" --target "127.0.0.1:$port" --token_file "$TOKEN_FILE" \
      --dump_orgs /dev/null >/dev/null 2>&1; do
      kill -0 "$pid" 2>/dev/null || break
      ((SECONDS < deadline)) || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null && "$LOADGEN_BIN" --target "127.0.0.1:$port" \
      --token_file "$TOKEN_FILE" --dump_orgs /dev/null >/dev/null 2>&1; then
      REGISTRY_PID=$pid TARGET="127.0.0.1:$port" METRICS_PORT=$metrics_port
      return 0
    fi
    stop_pid dj-registry "$pid"
    log "dj-registry did not come up on port $port (attempt $attempt); last log lines:"
    tail -3 "$WORK/registry.log" >&2
  done
  die "dj-registry did not start"
}
start_registry dj_registry
log "dj-registry on $TARGET, /metrics on 127.0.0.1:$METRICS_PORT (log level $REGISTRY_LOG_LEVEL)"

"$ECHO_BIN" --port 0 >"$WORK/echo.port" 2>"$WORK/echo.log" &
PIDS+=("$!"); PID_NAMES+=(dj-echo-server)
poll 10 test -s "$WORK/echo.port" || die "dj-echo-server did not start"
ECHO_TARGET="127.0.0.1:$(head -1 "$WORK/echo.port")"
log "dj-echo-server on $ECHO_TARGET"

# --- import ------------------------------------------------------------------------------------
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
"$IMPORT_BIN" --city "$ORGS" --seed "$SEED" --write_csv "$WORK/tree.csv" 2>/dev/null ||
  die "generating the city tree failed"
log "importing $ORGS orgs (seed $SEED) through ImportOrgs"
"$IMPORT_BIN" --target "$TARGET" --token_file "$TOKEN_FILE" --csv "$WORK/tree.csv" --batch 500 \
  --json >"$WORK/import.json" || { cat "$WORK/import.json" >&2; die "the import failed"; }
printf '{"label":"import","result":%s}\n' "$(cat "$WORK/import.json")" >>"$RESULTS"
# The same file again: ImportOrgs is idempotent, so every row must come back unchanged.
"$IMPORT_BIN" --target "$TARGET" --token_file "$TOKEN_FILE" --csv "$WORK/tree.csv" --batch 500 \
  --json >"$WORK/reimport.json" || { cat "$WORK/reimport.json" >&2; die "the re-import failed"; }
"$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["unchanged"] == int(sys.argv[2]) and r["created"] == 0 else 1)' \
  "$WORK/reimport.json" "$ORGS" || { cat "$WORK/reimport.json" >&2; die "re-importing the same rows was not a no-op"; }
printf '{"label":"reimport","result":%s}\n' "$(cat "$WORK/reimport.json")" >>"$RESULTS"

"$LOADGEN_BIN" --target "$TARGET" --token_file "$TOKEN_FILE" --dump_orgs "$WORK/orgs.tsv" 2>/dev/null ||
  die "listing the imported orgs failed"
cut -f1 "$WORK/orgs.tsv" >"$WORK/ids"
[[ $(wc -l <"$WORK/ids") -eq $ORGS ]] || die "ListOrgs returned $(wc -l <"$WORK/ids") orgs, expected $ORGS"
# The branch with the most groups (its subtree is the page), and a street committee (a full page).
BRANCH_ROOT="$(awk -F'\t' 'NR==FNR { kind[$1] = $2; next }
  $2 == "ORG_KIND_GROUP" && kind[$3] == "ORG_KIND_BRANCH" { n[$3]++ }
  END { best = 0; for (b in n) if (n[b] > best || (n[b] == best && b < id)) { best = n[b]; id = b }
        if (id == "") { for (b in kind) if (kind[b] == "ORG_KIND_BRANCH") { id = b; break } } print id }' \
  "$WORK/orgs.tsv" "$WORK/orgs.tsv")"
STREET_ROOT="$(awk -F'\t' '$2 == "ORG_KIND_COMMITTEE" && $4 == 2 { n[$1] = 0; next }
  ($3 in n) { n[$3]++ } END { best = -1; for (c in n) if (n[c] > best) { best = n[c]; id = c } print id }' \
  "$WORK/orgs.tsv")"
[[ -n "$BRANCH_ROOT" ]] || die "no branch in the imported tree"
[[ -n "$STREET_ROOT" ]] || STREET_ROOT="$(head -1 "$WORK/ids")"
BRANCH_SIZE="$(awk -F'\t' -v r="$BRANCH_ROOT" '$1 == r || $3 == r' "$WORK/orgs.tsv" | wc -l)"
log "ListOrgs roots: branch $BRANCH_ROOT ($BRANCH_SIZE orgs in its subtree), street committee $STREET_ROOT"

# One committee row under the city committee, in the tree's own CSV form: importing it moves the
# feed revision, which every cached ListOrgs page is keyed by, so the next pages come from
# PostgreSQL. (The city committee is the tree's first row; its domain and region are reused.)
CITY_ROW="$(sed -n 2p "$WORK/tree.csv")"
bump_revision() {  # round
  local code parent domain region
  IFS=, read -r parent _ _ _ _ domain region _ <<<"$CITY_ROW"
  code="BENCH-BUMP-$1"
  printf '%s\n%s,%s,基准测试委员会%s,COMMITTEE,false,%s,%s,\n' "$(head -1 "$WORK/tree.csv")" \
    "$code" "$parent" "$1" "$domain" "$region" >"$WORK/bump.csv"
  "$IMPORT_BIN" --target "$TARGET" --token_file "$TOKEN_FILE" --csv "$WORK/bump.csv" --json \
    >"$WORK/bump.json" || { cat "$WORK/bump.json" >&2; die "importing $code failed"; }
}

# --- load rounds ---------------------------------------------------------------------------------
# The registry's own counters: calls answered (OK), in-process tier hits, Redis hits, and the
# PostgreSQL reads of one org and of one page. Printed as "name value" lines.
server_counters() {
  curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | awk '
    /^grpc_server_handled_total\{/ && /grpc_code="OK"/ && /grpc_method="GetOrg"/ { get_ok += $NF }
    /^grpc_server_handled_total\{/ && /grpc_code="OK"/ && /grpc_method="ListOrgs"/ { list_ok += $NF }
    /^dj_cache_local_requests_total\{/ && /result="hit"/ { memory_hits += $NF }
    /^dj_cache_requests_total\{/ && /result="hit"/ { redis_hits += $NF }
    /^dj_db_query_duration_seconds_count\{/ && /query="registry.get_org"/ { pg_get += $NF }
    /^dj_db_query_duration_seconds_count\{/ && /query="registry.list_orgs"/ { pg_list += $NF }
    END { printf "get_ok %d\nlist_ok %d\nmemory_hits %d\nredis_hits %d\npg_get %d\npg_list %d\n",
                 get_ok, list_ok, memory_hits, redis_hits, pg_get, pg_list }'
}

# label target rpc concurrency [extra flags...]: one load run; its JSON result, with the change
# of the registry's counters over the run ("served"), goes to $RESULTS.
run_load() {
  local label="$1" target="$2" rpc="$3" concurrency="$4"; shift 4
  local out="$WORK/run.json"
  server_counters >"$WORK/before.txt"
  if ! "$LOADGEN_BIN" --target "$target" --token_file "$TOKEN_FILE" --rpc "$rpc" \
    --concurrency "$concurrency" --duration "$DURATION" --warmup "$WARMUP" --json "$@" \
    >"$out" 2>"$WORK/run.err"; then
    cat "$out" "$WORK/run.err" >&2
    die "load run $label failed"
  fi
  server_counters >"$WORK/after.txt"
  printf '{"label":"%s","round":%d,"result":%s,"served":%s}\n' "$label" "${ROUND:-0}" "$(cat "$out")" \
    "$(paste "$WORK/before.txt" "$WORK/after.txt" | awk 'BEGIN { printf "{" }
      { printf "%s\"%s\":%d", (NR > 1 ? "," : ""), $1, $4 - $2 } END { printf "}" }')" >>"$RESULTS"
  "$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  %-16s %9.0f calls/s  p50 %7.0f us  p99 %7.0f us  reply %6.0f B  client CPU %.2f cores  seed %d  errors %d" % (sys.argv[2], r["throughput"], r["p50_us"], r["p99_us"], r["reply_bytes_mean"], r["client_cpu_cores"], r["seed"], r["errors"]))' \
    "$out" "$label" >&2
}

# Twice: the first pass reads PostgreSQL and fills Redis, the second copies Redis' entries into the
# registry's in-process tier (which keeps only what Redis served while its feed was current).
log "priming the cache: GetOrg of every imported id, twice"
run_load prime "$TARGET" get_org "$CONCURRENCY" --ids "$WORK/ids" --prime --duration 0.2s --warmup 0s
run_load prime_memory "$TARGET" get_org "$CONCURRENCY" --ids "$WORK/ids" --prime --duration 0.2s --warmup 0s
# The street page's size on the wire, so its echo baseline answers as many bytes; the echo's reply
# is its payload plus about 6 bytes of framing (id and length).
ROUND=0 run_load page_size "$TARGET" list_orgs 1 --root_id "$STREET_ROOT" --page_size 50 \
  --duration 0.3s --warmup 0s
PAGE_BYTES="$("$PYTHON" -c 'import json,sys; print(int(json.loads(open(sys.argv[1]).read().splitlines()[-1])["result"]["reply_bytes_mean"]))' "$RESULTS")"
PAGE_ECHO_BYTES=$((PAGE_BYTES > 6 ? PAGE_BYTES - 6 : 0))
log "the street page is $PAGE_BYTES bytes on the wire; its echo baseline answers $PAGE_ECHO_BYTES payload bytes"

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  log "round $ROUND of $ROUNDS ($DURATION per run after a $WARMUP warmup, concurrency $CONCURRENCY)"
  run_load echo "$ECHO_TARGET" echo "$CONCURRENCY" --reply_bytes 32
  run_load get_org "$TARGET" get_org "$CONCURRENCY" --ids "$WORK/ids"
  run_load echo_page "$ECHO_TARGET" echo "$CONCURRENCY" --reply_bytes "$PAGE_ECHO_BYTES"
  run_load list_street "$TARGET" list_orgs "$CONCURRENCY" --root_id "$STREET_ROOT" --page_size 50
  bump_revision "$ROUND"
  run_load list_random "$TARGET" list_orgs "$CONCURRENCY" --ids "$WORK/ids" --page_size 50
  run_load echo_c1 "$ECHO_TARGET" echo 1 --reply_bytes 32
  run_load list_branch_c1 "$TARGET" list_orgs 1 --root_id "$BRANCH_ROOT" --page_size 50
done
kill -0 "$REGISTRY_PID" 2>/dev/null || die "dj-registry exited during the run"

# --- the province --------------------------------------------------------------------------------
if ((PROVINCE > 0)); then
  stop_pid dj-registry "$REGISTRY_PID"
  /usr/bin/redis-cli -h 127.0.0.1 -p "$REDIS_PORT" flushall >/dev/null
  /usr/bin/psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -c "CREATE DATABASE dj_province" || die "CREATE DATABASE dj_province failed"
  start_registry dj_province
  "$IMPORT_BIN" --city "$PROVINCE" --seed "$SEED" --write_csv "$WORK/province.csv" 2>/dev/null ||
    die "generating the province tree failed"
  log "importing the province: $PROVINCE orgs (seed $SEED) through ImportOrgs"
  "$IMPORT_BIN" --target "$TARGET" --token_file "$TOKEN_FILE" --csv "$WORK/province.csv" \
    --batch 500 --json >"$WORK/province_import.json" ||
    { cat "$WORK/province_import.json" >&2; die "the province import failed"; }
  # At once: what a client sees right after a bulk load, before autovacuum has looked.
  started_ns=$(date +%s%N)
  "$LOADGEN_BIN" --target "$TARGET" --token_file "$TOKEN_FILE" --dump_orgs "$WORK/province.tsv" \
    2>/dev/null || die "listing the province failed"
  list_seconds="$("$PYTHON" -c "print(($(date +%s%N) - $started_ns) / 1e9)")"
  listed=$(wc -l <"$WORK/province.tsv")
  ((listed == PROVINCE)) || die "listing the province returned $listed orgs, expected $PROVINCE"
  analyzed="$(/usr/bin/psql -X -qtA -h 127.0.0.1 -p "$PG_PORT" -U postgres -d dj_province \
    -c "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'orgs'")"
  printf '{"label":"province","result":{"import":%s,"list_seconds":%s,"listed":%d,"analyze_count":%d}}\n' \
    "$(cat "$WORK/province_import.json")" "$list_seconds" "$listed" "${analyzed:-0}" >>"$RESULTS"
  log "province: listed $listed orgs in $list_seconds s right after the import (ANALYZE ran ${analyzed:-0} times)"
fi

# --- report --------------------------------------------------------------------------------------
"$PYTHON" - "$RESULTS" <<EOF
import json, os, statistics, sys

results = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]

def runs(label):
    return [r for r in results if r["label"] == label]

def median(label, key):
    values = [r["result"][key] for r in runs(label)]
    return statistics.median(values) if values else float("nan")

def ratio(subject, baseline):
    """Median over the rounds of each round's subject throughput over its own baseline's."""
    base = {r["round"]: r["result"]["throughput"] for r in runs(baseline)}
    values = [r["result"]["throughput"] / base[r["round"]] for r in runs(subject)
              if base.get(r["round"])]
    return statistics.median(values) if values else float("nan")

def served(label, calls_key, memory_key, redis_key, pg_key):
    """Shares of the answers from memory, Redis and PostgreSQL, from the registry's counters."""
    calls = sum(r["served"][calls_key] for r in runs(label))
    if not calls:
        return "n/a"
    memory = sum(r["served"][memory_key] for r in runs(label)) if memory_key else 0
    pg = sum(r["served"][pg_key] for r in runs(label))
    redis = calls - memory - pg
    return "memory %.1f%%, Redis %.1f%%, PostgreSQL %.1f%%" % (
        100.0 * memory / calls, 100.0 * redis / calls, 100.0 * pg / calls)

def verdict(ok):
    return "PASS" if ok else "MISS"

def latency(label):
    return "p50 %.2f ms, p99 %.2f ms" % (median(label, "p50_us") / 1e3, median(label, "p99_us") / 1e3)

rows = []  # figure, value, ratio, target, verdict
def load_row(figure, label, baseline=None, target=None, goal=None):
    tp = median(label, "throughput")
    r = ratio(label, baseline) if baseline else None
    rows.append((figure, "%.0f calls/s, %s, %.0f B replies, client CPU %.2f cores" % (
        tp, latency(label), median(label, "reply_bytes_mean"), median(label, "client_cpu_cores")),
        "1.00" if baseline is None else "%.2f" % r, target or "",
        verdict(r >= goal) if goal is not None else ""))

load_row("echo, 32 B reply (c=$CONCURRENCY)", "echo")
load_row("GetOrg cache hit (c=$CONCURRENCY)", "get_org", "echo", ">= 0.80 of echo 32 B", 0.80)
rows.append(("  GetOrg served from", served("get_org", "get_ok", "memory_hits", "redis_hits", "pg_get"), "", "", ""))
load_row("echo, page-sized reply (c=$CONCURRENCY)", "echo_page")
load_row("ListOrgs street page of 50, cached (c=$CONCURRENCY)", "list_street", "echo_page",
         ">= 0.50 of page echo", 0.50)
rows.append(("  street page served from", served("list_street", "list_ok", None, None, "pg_list"), "", "", ""))
load_row("ListOrgs random roots, fresh revision (c=$CONCURRENCY)", "list_random", "echo_page")
rows.append(("  random-root page served from", served("list_random", "list_ok", None, None, "pg_list"), "", "", ""))
load_row("echo, 32 B reply (c=1)", "echo_c1")
load_row("ListOrgs branch page (c=1)", "list_branch_c1", "echo_c1")
rows.append(("  branch page (c=1) p99 < 5 ms", latency("list_branch_c1"), "", "p99 < 5 ms",
             verdict(median("list_branch_c1", "p99_us") < 5000)))
imp = runs("import")[0]["result"]
rows.append(("ImportOrgs of the city tree ($ORGS orgs)", "%.2f s (%.0f orgs/s)" % (
    imp["seconds"], imp["rows_per_second"]), "", "< 10 s",
    verdict(imp["seconds"] < 10.0) if $ORGS >= 20000 else "(smaller tree)"))
reimp = runs("reimport")[0]["result"]
rows.append(("ImportOrgs re-run (all unchanged)", "%.2f s (%.0f orgs/s)" % (
    reimp["seconds"], reimp["rows_per_second"]), "", "", ""))
for p in runs("province"):
    r = p["result"]
    rows.append(("Province: ImportOrgs of %d orgs" % r["listed"], "%.2f s (%.0f orgs/s)" % (
        r["import"]["seconds"], r["import"]["rows_per_second"]), "", "", ""))
    rows.append(("Province: list every org (page_size 1000) at once", "%.2f s (ANALYZE ran %d times during the import)" % (
        r["list_seconds"], r["analyze_count"]), "", "", ""))

seeds = sorted({r["result"].get("seed") for r in results if r["label"] not in ("import", "reimport", "province")})
# Every run draws its ids from its own clock seed: a fixed seed repeats the same ids every run,
# which flatters a cache that remembers the previous run.
if len(seeds) < 2 or None in seeds:
    sys.exit("run_bench: the load runs did not each take a seed of their own: %s" % seeds)
print()
print("dangjian registry benchmark: $ORGS orgs (tree seed $SEED), $ROUNDS round(s) of $DURATION runs "
      "after $WARMUP warmups, medians; PostgreSQL fsync=$FSYNC; registry log level $REGISTRY_LOG_LEVEL;")
print("loadgen, registry, PostgreSQL and Redis share this machine's %d CPU(s); each ratio is the median "
      "of each round's subject over the baseline run just before it." % os.cpu_count())
print("street page root $STREET_ROOT ($PAGE_BYTES B on the wire), branch root $BRANCH_ROOT "
      "($BRANCH_SIZE orgs); loadgen seeds %s" % ", ".join(str(s) for s in seeds))
header = ("figure", "value", "ratio", "target", "result")
widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
def line(cells):
    print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
line(header)
line(tuple("-" * w for w in widths))
for r in rows:
    line(r)
EOF
log "done in $((SECONDS - START_TIME)) s"
