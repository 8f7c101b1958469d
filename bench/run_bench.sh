#!/usr/bin/env bash
# Benchmarks the registry against the bare gRPC echo baseline, in one run:
#   build -> PostgreSQL, Redis, dj-registry and dj-echo-server on loopback ports (fresh data, a
#   fresh HS256 key) -> token (dj-token) -> import of the city tree (dj-import: rate and seconds)
#   -> alternating rounds of echo, GetOrg (cache hits), ListOrgs (a branch's subtree page) ->
#   a table of medians with the ratio to echo and PASS/MISS against the targets.
# The targets are a report, not an assertion: the exit status is 0 unless something failed to
# run (a build, a server, the import, or a load run with more than 0.1% failed calls).
# Every process started here is stopped by PID on exit, also on failure or Ctrl-C.
#
# Usage: bench/run_bench.sh [--smoke] [--build-dir DIR] [--no-build] [--orgs N] [--seed S]
#          [--rounds R] [--duration 3s] [--warmup 0.5s] [--concurrency N] [--fsync on|off]
#          [--registry-log-level info] [--keep]
#   --smoke   a tiny tree (~200 orgs), one round of 1 s runs: proves the script works (CI).
#   --keep    keep the work folder (logs, CSV, ids, raw results) instead of deleting it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build-bench"
BUILD=1
ORGS=20000
SEED=1
ROUNDS=3
DURATION=3s
WARMUP=0.5s
CONCURRENCY=32
FSYNC=on
REGISTRY_LOG_LEVEL=info
KEEP=0
SMOKE=0

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --smoke) SMOKE=1; ORGS=200; ROUNDS=1; DURATION=1s; WARMUP=0.2s; CONCURRENCY=8 ;;
    --build-dir) BUILD_DIR="$(realpath -m "$2")"; shift ;;
    --no-build) BUILD=0 ;;
    --orgs) ORGS="$2"; shift ;;
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

# Free ports for both listeners, retried if the registry cannot bind (it refuses SO_REUSEPORT).
# Ready when ListOrgs answers through the full stack (auth, PostgreSQL).
REGISTRY_PORT=""
for attempt in 1 2 3 4 5; do
  port="$(free_port)"
  metrics_port="$(free_port)"
  "$REGISTRY_BIN" --grpc_address="127.0.0.1:$port" --metrics_address="127.0.0.1:$metrics_port" \
    --pg_conninfo="host=127.0.0.1 port=$PG_PORT dbname=dj_registry user=postgres" \
    --redis_address="127.0.0.1:$REDIS_PORT" --jwt_keys_file="$KEYS_FILE" \
    --log_level="$REGISTRY_LOG_LEVEL" --shutdown_grace=2s >"$WORK/registry.log" 2>&1 &
  pid=$!
  PIDS+=("$pid"); PID_NAMES+=(dj-registry)  # stopped on exit even if the script dies here
  registry_ready() {
    kill -0 "$pid" 2>/dev/null || return 2
    "$LOADGEN_BIN" --target "127.0.0.1:$port" --token_file "$TOKEN_FILE" --dump_orgs /dev/null
  }
  deadline=$((SECONDS + 60))
  until registry_ready >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || break
    ((SECONDS < deadline)) || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null && registry_ready >/dev/null 2>&1; then
    REGISTRY_PID=$pid REGISTRY_PORT=$port METRICS_PORT=$metrics_port
    break
  fi
  stop_pid dj-registry "$pid"
  log "dj-registry did not come up on port $port (attempt $attempt); last log lines:"
  tail -3 "$WORK/registry.log" >&2
done
[[ -n "$REGISTRY_PORT" ]] || die "dj-registry did not start"
TARGET="127.0.0.1:$REGISTRY_PORT"
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

# --- load rounds ---------------------------------------------------------------------------------
cache_counters() {  # prints "memory_hits memory_total redis_hits redis_total" of the registry
  curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | awk '
    /^dj_cache_local_requests_total\{/ { lt += $NF; if ($0 ~ /result="hit"/) lh += $NF }
    /^dj_cache_requests_total\{/ { rt += $NF; if ($0 ~ /result="hit"/) rh += $NF }
    END { printf "%d %d %d %d\n", lh, lt, rh, rt }'
}
CACHE=(0 0 0 0)  # sums over the get_org runs, as cache_counters prints them

run_load() {  # label target rpc concurrency [extra flags...]
  local label="$1" target="$2" rpc="$3" concurrency="$4"; shift 4
  local out="$WORK/run.json"
  if ! "$LOADGEN_BIN" --target "$target" --token_file "$TOKEN_FILE" --rpc "$rpc" \
    --concurrency "$concurrency" --duration "$DURATION" --warmup "$WARMUP" --json "$@" \
    >"$out" 2>"$WORK/run.err"; then
    cat "$out" "$WORK/run.err" >&2
    die "load run $label failed"
  fi
  printf '{"label":"%s","result":%s}\n' "$label" "$(cat "$out")" >>"$RESULTS"
  "$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  %-22s %9.0f calls/s  p50 %7.0f us  p99 %7.0f us  errors %d" % (sys.argv[2], r["throughput"], r["p50_us"], r["p99_us"], r["errors"]))' \
    "$out" "$label" >&2
}

# Twice: the first pass reads PostgreSQL and fills Redis, the second copies Redis' entries into the
# registry's in-process tier (which keeps only what Redis served while its feed was current).
log "priming the cache: GetOrg of every imported id, twice"
run_load prime "$TARGET" get_org "$CONCURRENCY" --ids "$WORK/ids" --prime --duration 0.2s --warmup 0s
run_load prime_memory "$TARGET" get_org "$CONCURRENCY" --ids "$WORK/ids" --prime --duration 0.2s --warmup 0s
for ((round = 1; round <= ROUNDS; round++)); do
  log "round $round of $ROUNDS ($DURATION per run after a $WARMUP warmup, concurrency $CONCURRENCY)"
  run_load echo "$ECHO_TARGET" echo "$CONCURRENCY"
  read -r -a before < <(cache_counters)
  run_load get_org "$TARGET" get_org "$CONCURRENCY" --ids "$WORK/ids"
  read -r -a after < <(cache_counters)
  for i in 0 1 2 3; do CACHE[i]=$((CACHE[i] + after[i] - before[i])); done
  run_load echo_c1 "$ECHO_TARGET" echo 1
  run_load list_branch_c1 "$TARGET" list_orgs 1 --root_id "$BRANCH_ROOT" --page_size 50
  run_load echo "$ECHO_TARGET" echo "$CONCURRENCY"
  run_load list_branch "$TARGET" list_orgs "$CONCURRENCY" --root_id "$BRANCH_ROOT" --page_size 50
  run_load list_street "$TARGET" list_orgs "$CONCURRENCY" --root_id "$STREET_ROOT" --page_size 50
done
kill -0 "$REGISTRY_PID" 2>/dev/null || die "dj-registry exited during the run"

# --- report --------------------------------------------------------------------------------------
"$PYTHON" - "$RESULTS" "${CACHE[@]}" <<EOF
import json, statistics, sys

results = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
memory_hits, memory_total, redis_hits, redis_total = (int(a) for a in sys.argv[2:6])

def runs(label):
    return [r["result"] for r in results if r["label"] == label]

def median(label, key):
    values = [r[key] for r in runs(label)]
    return statistics.median(values) if values else float("nan")

imp = runs("import")[0]
echo_tp = median("echo", "throughput")
echo1_tp = median("echo_c1", "throughput")
rows = []  # figure, value, ratio, target, verdict

def verdict(ok):
    return "PASS" if ok else "MISS"

rows.append(("echo throughput (c=$CONCURRENCY)", "%.0f calls/s" % echo_tp, "1.00", "", ""))
rows.append(("echo p50 / p99 (c=$CONCURRENCY)",
             "%.2f / %.2f ms" % (median("echo", "p50_us") / 1e3, median("echo", "p99_us") / 1e3), "", "", ""))
rows.append(("echo throughput (c=1)", "%.0f calls/s" % echo1_tp, "1.00 (c=1)", "", ""))
get_tp = median("get_org", "throughput")
rows.append(("GetOrg cache-hit throughput (c=$CONCURRENCY)", "%.0f calls/s" % get_tp,
             "%.2f" % (get_tp / echo_tp), ">= 0.50 of echo", verdict(get_tp >= 0.5 * echo_tp)))
rows.append(("GetOrg p50 / p99 (c=$CONCURRENCY)",
             "%.2f / %.2f ms" % (median("get_org", "p50_us") / 1e3, median("get_org", "p99_us") / 1e3), "", "", ""))
# Every GetOrg asks memory first (memory_total); what memory lacks goes to Redis, Redis' misses to
# PostgreSQL.
if memory_total:
    served = "memory %.1f%%, Redis %.1f%%, PostgreSQL %.1f%%" % (
        100.0 * memory_hits / memory_total, 100.0 * redis_hits / memory_total,
        100.0 * (redis_total - redis_hits) / memory_total)
else:
    served = "n/a (no cache requests counted)"
rows.append(("GetOrg served from", served, "", "", ""))
l1_tp = median("list_branch_c1", "throughput")
l1_p99 = median("list_branch_c1", "p99_us") / 1e3
rows.append(("ListOrgs branch page throughput (c=1)", "%.0f calls/s" % l1_tp,
             "%.2f (c=1)" % (l1_tp / echo1_tp), "", ""))
rows.append(("ListOrgs branch page p50 / p99 (c=1)",
             "%.2f / %.2f ms" % (median("list_branch_c1", "p50_us") / 1e3, l1_p99), "",
             "p99 < 5 ms", verdict(l1_p99 < 5.0)))
ln_tp = median("list_branch", "throughput")
rows.append(("ListOrgs branch page throughput (c=$CONCURRENCY)", "%.0f calls/s" % ln_tp,
             "%.2f" % (ln_tp / echo_tp), "", ""))
rows.append(("ListOrgs branch page p50 / p99 (c=$CONCURRENCY)",
             "%.2f / %.2f ms" % (median("list_branch", "p50_us") / 1e3, median("list_branch", "p99_us") / 1e3), "", "", ""))
ls_tp = median("list_street", "throughput")
rows.append(("ListOrgs street page of 50 (c=$CONCURRENCY)", "%.0f calls/s" % ls_tp,
             "%.2f" % (ls_tp / echo_tp), "", ""))
rows.append(("ListOrgs street page p50 / p99 (c=$CONCURRENCY)",
             "%.2f / %.2f ms" % (median("list_street", "p50_us") / 1e3, median("list_street", "p99_us") / 1e3), "", "", ""))
rows.append(("ImportOrgs of the city tree ($ORGS orgs)", "%.2f s" % imp["seconds"], "",
             "< 10 s", verdict(imp["seconds"] < 10.0) if $ORGS >= 20000 else "(smaller tree)"))
rows.append(("ImportOrgs rate", "%.0f orgs/s" % imp["rows_per_second"], "", "", ""))
reimp = runs("reimport")[0]
rows.append(("ImportOrgs re-run (all unchanged)", "%.2f s, %.0f orgs/s" % (reimp["seconds"], reimp["rows_per_second"]), "", "", ""))

print()
print("dangjian registry benchmark: $ORGS orgs (seed $SEED), $ROUNDS round(s) of $DURATION runs "
      "after $WARMUP warmups, medians; PostgreSQL fsync=$FSYNC; registry log level $REGISTRY_LOG_LEVEL;")
print("loadgen, registry, PostgreSQL and Redis share this machine's %s CPU(s)." % __import__("os").cpu_count())
print("import: created %d, unchanged %d, failed %d; ListOrgs branch root $BRANCH_ROOT "
      "(%s orgs in its subtree), street root $STREET_ROOT" % (imp["created"], imp["unchanged"], imp["failed"], "$BRANCH_SIZE"))
widths = [max(len(r[i]) for r in rows + [("figure", "value", "ratio to echo", "target", "result")]) for i in range(5)]
def line(cells):
    print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
line(("figure", "value", "ratio to echo", "target", "result"))
line(tuple("-" * w for w in widths))
for r in rows:
    line(r)
EOF
log "done in $((SECONDS - START_TIME)) s"
