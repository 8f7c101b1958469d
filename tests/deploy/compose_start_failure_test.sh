#!/usr/bin/env bash
# deploy/images/compose.sh on a machine where containers cannot start (ctest:
# deploy_compose_start_failure_test): the fresh-machine failure of issue 10, netavark without
# iptables, made here by running compose.sh with a PATH that has every command of /usr/sbin and
# /sbin but iptables (netavark finds iptables on the PATH podman hands it). podman-compose then
# creates the containers, cannot start them, logs that and exits 0. compose.sh must stop at once
# with podman's own error ("netavark: No such file or directory") instead of waiting out its health
# timeout with empty logs; `compose.sh down` must then leave nothing of the project.
#
#   bash tests/deploy/compose_start_failure_test.sh [--prebuilt] REPO_ROOT BUILD_DIR
# Needs root, podman, podman-compose and the images (deploy/images/build.sh; --prebuilt when
# ctest's deploy_images_build fixture has just built them).
set -euo pipefail
# shellcheck source=tests/deploy/container_test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/container_test_lib.sh"
ct_init "$@"
ct_require podman podman-compose openssl iptables

ct_compose_project djfail dj-compose-fail-test
# shellcheck disable=SC2317  # called by ct_on_exit
teardown() {
  bash "$root/deploy/images/compose.sh" down --volumes --project "$project" >/dev/null 2>&1 || true
}
ct_trap_exit teardown

ct_build_images

# Every command of the sbin folders except iptables and its kin, then the usual bin folders.
sbin=$work/sbin-without-iptables
mkdir "$sbin"
for dir in /usr/local/sbin /usr/sbin /sbin; do
  [[ -d $dir && ! -L $dir ]] || continue
  for cmd in "$dir"/*; do
    name=${cmd##*/}
    [[ $name == *tables* || -e $sbin/$name ]] || ln -s "$cmd" "$sbin/$name"
  done
done
no_iptables_path=$sbin:/usr/local/bin:/usr/bin:/bin
if PATH=$no_iptables_path command -v iptables >/dev/null; then
  fail "iptables is still on the reduced PATH"
fi

ct_step "compose up with no iptables on podman's PATH (project $project)"
begin=$SECONDS
if PATH=$no_iptables_path bash "$root/deploy/images/compose.sh" up --no-build \
  --build-dir "$build_dir" --project "$project" >"$work/up.log" 2>&1; then
  cat "$work/up.log" >&2
  fail "compose.sh up succeeded although no container can start"
fi
took=$((SECONDS - begin))
cat "$work/up.log" >&2
grep -q 'was created but could not start' "$work/up.log" ||
  fail "compose.sh did not say that a container could not start"
grep -q 'netavark: No such file or directory' "$work/up.log" ||
  fail "compose.sh did not show podman's own error (netavark: No such file or directory)"
if grep -q 'not healthy after' "$work/up.log"; then
  fail "compose.sh waited for health instead of failing at once"
fi
dj_log "ok: compose.sh up failed in ${took}s with podman's error"

ct_step "compose down"
ct_compose_down
dj_log "ok: nothing of $project is left; test passed in $((SECONDS - ct_started))s"
