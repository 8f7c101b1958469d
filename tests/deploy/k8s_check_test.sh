#!/usr/bin/env bash
# Static checks of deploy/k8s (ctest: deploy_k8s_check_test): the manifests pass
# tests/deploy/k8s_manifests.py's checks (replicas, probes, securityContext, resources, PDB,
# Services, Secrets by reference only (no secret in a ConfigMap, secret files from mounted
# Secrets, a Redis password), ConfigMap keys that are flags of the binaries), and a
# copy with typical mistakes is refused line by line, so the checker itself is proven to bite.
#
#   bash tests/deploy/k8s_check_test.sh REPO_ROOT BUILD_DIR
set -euo pipefail
(($# == 2)) || {
  echo "usage: $0 REPO_ROOT BUILD_DIR" >&2
  exit 2
}
root=$(cd "$1" && pwd)
build_dir=$(cd "$2" && pwd)
checker=$root/tests/deploy/k8s_manifests.py
registry=$build_dir/services/registry/dj-registry
# Debian's interpreter, which has python3-yaml (scripts/deps.sh), whatever python3 PATH finds.
python=/usr/bin/python3

fail() {
  printf 'FAILED: %s\n' "$*" >&2
  exit 1
}

"$python" "$checker" check "$root/deploy/k8s" --flags-from "$registry" ||
  fail "deploy/k8s does not pass the checks"

work=$(mktemp -d /tmp/dj-k8s-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$root/deploy/k8s" "$work/k8s"
m=$work/k8s/registry.yaml
sed -i -e 's/^  replicas: 2$/  replicas: 1/' \
  -e 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' \
  -e '/livenessProbe:/,/periodSeconds/ s/service: liveness/service: ""/' \
  -e 's/^  DANGJIAN_SHUTDOWN_GRACE: .*/  DANGJIAN_SHUTDOWN_GRACE: "30s"\n  DANGJIAN_NO_SUCH_FLAG: "1"/' \
  -e 's/^  DANGJIAN_REDIS_TIMEOUT: .*/&\n  DANGJIAN_REDIS_PASSWORD: "in-plain-sight"/' \
  -e 's|mountPath: /run/secrets/dangjian/redis$|mountPath: /run/secrets/dangjian/cache|' \
  -e '/readinessProbe:/,/periodSeconds/ s/port: 8086/port: 50051/' \
  -e 's/drop: \["ALL"\]/drop: []/' "$m"
printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: leaked, namespace: dangjian}\nstringData: {password: x}\n' \
  >"$work/k8s/leaked-secret.yaml"
if "$python" "$checker" check "$work/k8s" --flags-from "$registry" >"$work/out" 2>&1; then
  cat "$work/out" >&2
  fail "the checker accepted broken manifests"
fi
for expected in \
  'leaked-secret.yaml: not listed in kustomization.yaml' \
  'DANGJIAN_NO_SUCH_FLAG is not the twin of any flag' \
  'replicas must be at least 2' \
  'readOnlyRootFilesystem: true' \
  'capabilities.drop: \[ALL\]' \
  'readinessProbe must probe the plaintext health port' \
  "livenessProbe must ask for 'liveness'" \
  'preStop 5s \+ shutdown delay 1s \+ shutdown grace 30s must be under terminationGracePeriodSeconds 30' \
  'DANGJIAN_REDIS_PASSWORD would put a secret in a ConfigMap' \
  'DANGJIAN_REDIS_PASSWORD_FILE names /run/secrets/dangjian/redis/password, which no mounted Secret'; do
  grep -q -E -- "$expected" "$work/out" || {
    cat "$work/out" >&2
    fail "the checker did not report: $expected"
  }
done
# A Secret with values is refused even when listed.
sed -i 's/^  - registry.yaml$/  - registry.yaml\n  - leaked-secret.yaml/' "$work/k8s/kustomization.yaml"
"$python" "$checker" check "$work/k8s" >"$work/out" 2>&1 && fail "a Secret with values passed"
grep -q 'Secrets are referenced, never committed with values' "$work/out" || {
  cat "$work/out" >&2
  fail "the checker did not report the Secret with values"
}
echo "ok: deploy/k8s passes; 11 planted mistakes are each reported"
