#!/usr/bin/env bash
# Proves the Grafana dashboards in deploy/grafana without Grafana (not packaged for Debian 12)
# (ctest: deploy_dashboards_test):
#   1. static: tests/deploy/check_dashboards.py checks every dashboard JSON (unique ids, titles,
#      descriptions, units, the provisioned datasource uid) and that each metric its exprs use is
#      registered by our code or is `up` or a recording rule;
#   2. live: starts PostgreSQL, Redis, dj-registry and Prometheus (the run command's config with
#      its rules, scraping every second) on free 127.0.0.1 ports in a temporary folder, imports the
#      demo tree, puts a little load on the registry (GetOrg, ListOrgs, GetOrg of a missing id for
#      NotFound, and terminated PostgreSQL backends so the pool counts a connection error), then
#      runs every expr of every dashboard through Prometheus' /api/v1/query: each must answer
#      without error and with data (not only NaN).
# The live part is bounded to 90 s; every process started is stopped by its PID on any exit.
#
#   bash tests/deploy/dashboards_test.sh REPO_ROOT BUILD_DIR
# BUILD_DIR must hold dj-registry, dj-import, dj-token, dj-health and bench/dj-loadgen.
# (The script runs its live part as `dashboards_test.sh --live ROOT BUILD_DIR` under timeout.)
# DJ_DASHBOARDS_VERBOSE=1 prints a sample of what each query returned.
set -euo pipefail

readonly live_limit=90

fail() {
  printf 'FAILED: %s\n' "$*" >&2
  exit 1
}

if [[ ${1:-} != --live ]]; then
  (($# == 2)) || fail "usage: $0 REPO_ROOT BUILD_DIR"
  root=$(cd "$1" && pwd)
  build_dir=$(cd "$2" && pwd)
  for cmd in python3 prometheus promtool redis-server psql curl setsid timeout; do
    command -v "$cmd" >/dev/null || fail "$cmd is missing: run scripts/deps.sh as root"
  done
  echo "== static checks of deploy/grafana"
  python3 "$root/tests/deploy/check_dashboards.py" static "$root" ||
    fail "tests/deploy/check_dashboards.py static"
  echo "== live: every dashboard query against the running suite (at most ${live_limit}s)"
  # timeout signals the live part (and the commands it runs) with TERM; its EXIT trap then stops
  # the servers, which run in sessions of their own.
  status=0
  timeout -s TERM "$live_limit" bash "${BASH_SOURCE[0]}" --live "$root" "$build_dir" || status=$?
  ((status != 124)) || fail "the live check took more than ${live_limit}s"
  ((status == 0)) || fail "the live check"
  echo "ok: every dashboard query answers with data"
  exit 0
fi

# --- live part ------------------------------------------------------------------------------
root=$2 build_dir=$3
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
started=$SECONDS

registry_bin=$build_dir/services/registry/dj-registry
import_bin=$build_dir/tools/dj-import
token_bin=$build_dir/tools/dj-token
health_bin=$build_dir/tools/dj-health
loadgen_bin=$build_dir/bench/dj-loadgen
for bin in "$registry_bin" "$import_bin" "$token_bin" "$health_bin" "$loadgen_bin"; do
  [[ -x $bin ]] || fail "$bin is missing: build it (dj-loadgen needs -DDJ_BUILD_BENCH=ON)"
done

work=$(mktemp -d /tmp/dj-dashboards.XXXXXX)
chmod 0755 "$work"
logs=$work/logs
mkdir -p "$logs"
prometheus_pid=''
# shellcheck disable=SC2317  # called by the EXIT trap
on_exit() {
  local rc=$?
  trap '' INT TERM
  trap - EXIT
  [[ -n $prometheus_pid ]] && { dj_stop_pid "$prometheus_pid" 10 || true; }
  dj_test_registry_stop
  if ((rc != 0)); then
    dj_tail_logs "$logs" 15
  fi
  rm -rf "$work"
  exit "$rc"
}
trap on_exit EXIT
trap 'echo "interrupted (time limit?)" >&2; exit 143' INT TERM

# --- the suite ------------------------------------------------------------------------------
# PostgreSQL, Redis and dj-registry (scripts/lib.sh). Org counts (dj_registry_orgs) are refreshed
# every --gauges_interval (30 s by default): every second here, so the business panels see the
# imported tree.
dj_test_registry_start "$work" "$build_dir" --gauges_interval=1s
grpc_port=$DJ_TEST_GRPC_PORT metrics_port=$DJ_TEST_METRICS_PORT pg_port=$DJ_TEST_PG_PORT
prometheus_port=''
dj_pick_free_port prometheus_port

# Prometheus as the run command configures it (same rules), scraping and evaluating every second.
# shellcheck disable=SC2001  # in bash 5.2's ${x//} replacement & means the match; not in sed's
rules_dir=$(sed 's/[\\|&]/\\&/g' <<<"$root/deploy/prometheus/rules")
sed -e "s/127\.0\.0\.1:9464/127.0.0.1:$metrics_port/g" \
  -e "s/127\.0\.0\.1:9090/127.0.0.1:$prometheus_port/g" \
  -e "s|^\(  - \)rules/|\1$rules_dir/|" \
  -e 's/^\(  scrape_interval:\).*/\1 1s/' -e 's/^\(  scrape_timeout:\).*/\1 1s/' \
  -e 's/^\(  evaluation_interval:\).*/\1 1s/' \
  "$root/deploy/prometheus/prometheus.yml" >"$work/prometheus.yml"
promtool check config "$work/prometheus.yml" >"$logs/promtool.log" 2>&1 ||
  fail "invalid Prometheus config; see promtool.log"
dj_log "Prometheus on 127.0.0.1:$prometheus_port"
mkdir -p "$work/prometheus"
setsid prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
  --web.listen-address="127.0.0.1:$prometheus_port" >>"$logs/prometheus.log" 2>&1 &
prometheus_pid=$!
dj_wait_for_port "$prometheus_port" 20 "$prometheus_pid" || fail "Prometheus did not start"
# The load below must span several scrapes (rate() needs two samples that differ), and
# Prometheus' first scrape comes some seconds after it listens: wait for it.
deadline=$((SECONDS + 20))
until curl -fsS --max-time 2 "http://127.0.0.1:$prometheus_port/api/v1/targets?state=active" \
  2>/dev/null | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
sys.exit(0 if any(t["labels"].get("job") == "dj-registry" and t["health"] == "up"
                  for t in targets) else 1)'; do
  ((SECONDS < deadline)) || fail "Prometheus has not scraped dj-registry after 20s"
  sleep 0.2
done

# --- data and load --------------------------------------------------------------------------
token_file=$work/operator.token
"$token_bin" --keys_file "$work/jwt_keys" --kid local --subject dashboards-test --roles admin \
  --org_scope '*' --ttl 1h >"$token_file" || fail "dj-token could not mint a token"
"$import_bin" --target "127.0.0.1:$grpc_port" --token_file "$token_file" \
  --csv "$root/deploy/demo/orgs.csv" >"$logs/import.log" 2>&1 || fail "dj-import of the demo tree"
dj_log "$(grep -m 1 '^received' "$logs/import.log" || echo 'dj-import: no summary')"

target=(--target "127.0.0.1:$grpc_port" --token_file "$token_file")
"$loadgen_bin" "${target[@]}" --dump_orgs "$work/orgs.tsv" 2>>"$logs/loadgen.log" ||
  fail "dj-loadgen --dump_orgs"
load() {
  "$loadgen_bin" "${target[@]}" --warmup 0s "$@" >>"$logs/loadgen.log" 2>&1 ||
    fail "dj-loadgen $*"
  dj_log "load: $(tail -n 1 "$logs/loadgen.log")"
}
load --rpc get_org --ids "$work/orgs.tsv" --prime --concurrency 4 --duration 3s
load --rpc list_orgs --ids "$work/orgs.tsv" --concurrency 4 --duration 3s
# A caller's mistake, so the failed-calls panels have a series: NotFound for an id no org has.
load --rpc get_org --id-range 999999999..999999999 --concurrency 1 --duration 2s \
  --max_error_ratio 1
grep -q 'NOT_FOUND' "$logs/loadgen.log" || fail "GetOrg of a missing id did not fail NOT_FOUND"
# dj_db_errors_total{kind} children appear with the first error of each kind: end the registry's
# PostgreSQL sessions; its pool counts a connection error when it next leases one (the change
# feed polls every 200 ms) and opens a fresh connection. No load runs meanwhile.
terminated=$(dj_psql "$pg_port" "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
  WHERE datname = 'dj_registry' AND pid <> pg_backend_pid()")
dj_log "terminated $terminated PostgreSQL sessions of dj-registry"
load --rpc list_orgs --ids "$work/orgs.tsv" --concurrency 2 --duration 2s

# --- every dashboard query ------------------------------------------------------------------
remaining=$((live_limit - (SECONDS - started) - 15))
((remaining >= 10)) || fail "no time left for the queries after starting the suite"
python3 "$root/tests/deploy/check_dashboards.py" live "$root" \
  "http://127.0.0.1:$prometheus_port" "$remaining" || fail "dashboard queries (see above)"
dj_log "live check done in $((SECONDS - started))s"
