#!/usr/bin/env bash
# Checks the Prometheus config and alert rules under deploy/prometheus (ctest: deploy_promtool_test;
# no servers needed):
#   1. promtool check config prometheus.yml (which also checks the rule files it lists),
#   2. promtool check rules rules/*.yml,
#   3. promtool test rules tests/*.test.yml (each alert firing and silent around its thresholds),
#   4. tests/deploy/check_rules.py: every metric the rules use is registered by our code (or is
#      `up` or a recording rule), every alert has severity, summary, a runbook section in
#      deploy/README.md and tests both ways, and every rules file is loaded by prometheus.yml.
# Fails at the first failing step, saying which.
#
#   bash tests/deploy/promtool_test.sh [REPO_ROOT]    REPO_ROOT defaults to this checkout
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "${1:-$here/../..}" && pwd)
prom=$root/deploy/prometheus

fail() {
  printf 'FAILED: %s\n' "$*" >&2
  exit 1
}

for cmd in promtool python3; do
  command -v "$cmd" >/dev/null || fail "$cmd is missing: run scripts/deps.sh as root"
done

shopt -s nullglob
rule_files=("$prom"/rules/*.yml)
test_files=("$prom"/tests/*.test.yml)
shopt -u nullglob
((${#rule_files[@]} > 0)) || fail "no rules files in $prom/rules"
((${#test_files[@]} > 0)) || fail "no promtool tests in $prom/tests"

echo "== promtool check config"
promtool check config "$prom/prometheus.yml" || fail "promtool check config $prom/prometheus.yml"

echo "== promtool check rules"
out=$(promtool check rules "${rule_files[@]}" 2>&1) || {
  printf '%s\n' "$out" >&2
  fail "promtool check rules"
}
printf '%s\n' "$out"
# promtool prints "SUCCESS: N rules found" per file; check_rules.py must read as many.
rule_count=$(grep -oE 'SUCCESS: [0-9]+ rules found' <<<"$out" | grep -oE '[0-9]+' |
  awk '{ n += $1 } END { print n + 0 }')

echo "== promtool test rules"
# promtool resolves rule_files relative to each test file, so run it from the tests folder.
(cd "$prom/tests" && promtool test rules "${test_files[@]##*/}") || fail "promtool test rules"

echo "== metric names, runbook sections and test coverage"
python3 "$here/check_rules.py" "$root" "$rule_count" || fail "tests/deploy/check_rules.py"

echo "ok: Prometheus config and rules pass"
